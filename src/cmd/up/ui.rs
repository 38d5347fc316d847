//! What `up` shows on the terminal: notes, a spinner while it waits, and a foreground
//! tunnel's events.

use std::io::IsTerminal;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

use crate::cmd::tail::Follower;
use crate::state::StateDir;
use crate::target::Alias;

/// Where one alias's `up` says things: straight to the terminal (one alias), or kept to be
/// shown after the summary line (several at once, whose lines would interleave).
pub(super) struct Ui {
    kept: Option<Vec<String>>,
}

impl Ui {
    /// One alias in the terminal: notes as they come, a spinner, ssh may ask (a passphrase).
    pub(super) fn terminal() -> Self {
        Self { kept: None }
    }

    /// One of several aliases starting at once: notes kept, no spinner, ssh never asks.
    pub(super) fn quiet() -> Self {
        Self { kept: Some(Vec::new()) }
    }

    pub(super) fn note(&mut self, line: String) {
        match &mut self.kept {
            Some(kept) => kept.push(line),
            None => println!("{line}"),
        }
    }

    /// The notes kept (none in the terminal: they were printed).
    pub(super) fn into_notes(self) -> Vec<String> {
        self.kept.unwrap_or_default()
    }

    /// Whether ssh may ask the user something (a key's passphrase) while this alias starts.
    pub(super) fn may_ask(&self) -> bool {
        self.kept.is_none() && std::io::stdin().is_terminal()
    }

    /// A spinner with `message` until the returned value is finished (in the terminal only).
    pub(super) fn progress(&self, message: &str) -> Progress {
        if self.kept.is_some() {
            return Progress::none();
        }
        Progress::start(message)
    }
}

/// A spinner on stderr while `up` waits, only on a terminal; it blocks the stop signals in
/// its thread so Ctrl-C reaches the main thread.
pub(super) struct Progress {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn none() -> Self {
        Self {
            stop: None,
            thread: None,
        }
    }

    pub(super) fn start(message: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::none();
        }
        let (tx, rx) = mpsc::channel();
        let message = message.to_owned();
        let thread = std::thread::spawn(move || {
            let _ = all_signals().thread_block();
            let started = Instant::now();
            for frame in ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"].iter().cycle() {
                eprint!("\r\x1b[2K{frame} {message} ({:.1} s)", started.elapsed().as_secs_f64());
                if rx.recv_timeout(Duration::from_millis(80)) != Err(mpsc::RecvTimeoutError::Timeout) {
                    break;
                }
            }
            eprint!("\r\x1b[2K");
        });
        Self {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub(super) fn finish(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The signals that stop jssh.
pub(super) fn all_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Shows the foreground supervisor's log from `log_start` on (the events of this run) until
/// it exits — Ctrl-C reaches it directly, not this process — and returns how it ended.
pub(super) fn follow_foreground(
    alias: &Alias,
    run: &StateDir,
    supervisor: &mut Child,
    log_start: u64,
) -> Result<ExitStatus> {
    all_signals().thread_block().context("could not block signals")?;
    println!("Ctrl-C stops the tunnel; the server keeps running on {alias}");
    let mut log = Follower::open(&run.log_path(), log_start).context("could not open the supervisor log")?;
    loop {
        // Not print!, which panics (an abort, in a release build) once the reader has gone.
        let _ = log.copy_new(&mut std::io::stdout().lock());
        if let Some(status) = supervisor.try_wait().context("could not wait for the supervisor")? {
            let _ = log.copy_new(&mut std::io::stdout().lock());
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
