//! The client of the remote launch protocol: runs the launch script over ssh (the token on
//! its stdin), reads its events after the per-run marker, and turns how it ended into one
//! message.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::ui::all_signals;
use crate::process::Cmd;
use crate::remote::{EXIT_NO_TMUX, EXIT_TOKEN_LOST, LaunchEvent, Marker};
use crate::sanitize::ssh_stderr;
use crate::target::Alias;

/// A running launch script: after reporting the session, it keeps watching Jupyter's start
/// (its log lines, its exit) until [`Launch::end`].
pub(super) struct Launch {
    child: Child,
    events: Receiver<LaunchEvent>,
}

/// What the launch script said before watching.
#[derive(Debug, Default)]
pub(super) struct Started {
    pub(super) port: Option<u16>,
    pub(super) pid: Option<u32>,
    pub(super) reused: bool,
    pub(super) home: String,
    pub(super) token: Option<String>,
    pub(super) root: bool,
    pub(super) node: Option<String>,
    /// The machine reached, when the session runs on another one (nothing was started).
    pub(super) elsewhere: Option<String>,
    /// The `--dir` does not exist (nothing was started); whether its alternative does.
    pub(super) no_dir: Option<bool>,
}

impl Launch {
    /// Starts `cmd` (the launch script over ssh) and hands it the token on stdin.
    pub(super) fn spawn(cmd: &Cmd, token: &str, marker: Marker) -> Result<Self> {
        let mut child = cmd.spawn(Stdio::piped(), Stdio::piped(), Stdio::piped())?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(token.as_bytes()).context("could not send the token")?;
        }
        let events = read_events(&mut child, marker, LaunchEvent::parse);
        Ok(Self { child, events })
    }

    /// Waits for the script's report of the session (started, reused, or refused).
    pub(super) fn started(&mut self, alias: &Alias, deadline: Instant) -> Result<Started> {
        first_events(&self.events, deadline).map_err(|e| self.failure(e, alias))
    }

    /// The events that follow the report: Jupyter's log lines and its exit.
    pub(super) fn events(&self) -> &Receiver<LaunchEvent> {
        &self.events
    }

    /// Waits for a script that ended on its own (it refused to start anything).
    pub(super) fn wait(mut self) {
        let _ = self.child.wait();
    }

    /// Stops watching.
    pub(super) fn end(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The error for a launch that never reported a session.
    fn failure(&mut self, err: anyhow::Error, alias: &Alias) -> anyhow::Error {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        let stderr = ssh_stderr(stderr.as_bytes()).join("\n");
        match status.and_then(|s| s.code()) {
            Some(EXIT_NO_TMUX) => anyhow::anyhow!(
                "tmux is not installed on {alias} (searched the login PATH): install it there \
                 (e.g. `apt install tmux`, `dnf install tmux`, or `conda install -c conda-forge tmux`)"
            ),
            Some(EXIT_TOKEN_LOST) => anyhow::anyhow!(
                "the token did not reach {alias} whole, so nothing was started: the login shell there \
                 reads its input (a `read` in ~/.bashrc or ~/.profile?), which would have started \
                 Jupyter without authentication. Make that line run only in interactive shells, e.g. \
                 put it after `case $- in *i*) ;; *) return ;; esac`"
            ),
            Some(255) => {
                anyhow::anyhow!("could not connect to {alias}: {stderr}: check `jssh doctor {alias}` or `ssh {alias}`")
            }
            _ => err.context(format!("starting Jupyter on {alias} failed: {stderr}")),
        }
    }
}

/// Events from a remote script's lines after its marker (whatever the login shell printed
/// before is not the script's), read on a thread so waiting can also watch the tunnel.
pub(super) fn read_events<T: Send + 'static>(
    child: &mut Child,
    marker: Marker,
    parse: fn(&str) -> Option<T>,
) -> Receiver<T> {
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            // Signals are for the main thread (a foreground `up` waits out Ctrl-C there).
            let _ = all_signals().thread_block();
            let lines = BufReader::new(stdout).lines().map_while(Result::ok);
            for line in lines.skip_while(|l| !marker.is(l)).skip(1) {
                if let Some(event) = parse(&line)
                    && tx.send(event).is_err()
                {
                    break;
                }
            }
        });
    }
    rx
}

fn first_events(events: &Receiver<LaunchEvent>, deadline: Instant) -> Result<Started> {
    let mut started = Started::default();
    let mut seen_start = false;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(wait) {
            Ok(LaunchEvent::Started { port, pid, reused }) => {
                (started.port, started.pid, started.reused, seen_start) = (port, pid, reused, true);
            }
            Ok(LaunchEvent::Token(t)) => started.token = Some(t),
            Ok(LaunchEvent::Root) => started.root = true,
            Ok(LaunchEvent::Node(node)) => started.node = Some(node),
            Ok(LaunchEvent::Elsewhere(node)) => {
                started.elsewhere = Some(node);
                return Ok(started);
            }
            Ok(LaunchEvent::NoDir { alternative_exists }) => {
                started.no_dir = Some(alternative_exists);
                return Ok(started);
            }
            Ok(LaunchEvent::Home(home)) if seen_start => {
                started.home = home;
                return Ok(started);
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("the remote did not answer in time"),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the launch over ssh ended early"),
        }
    }
}
