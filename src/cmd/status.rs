//! `jssh status`: local tunnels from the state dir, plus what still runs on each remote.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Ctx, lookup_profile};
use crate::cli::StatusArgs;
use crate::profile::{LoginKind, Profile, Profiles};
use crate::remote::{self, Marker, RemoteSession};
use crate::state::{Phase, RunDir, Session, SessionFile, unix_now};
use crate::target::Alias;

/// One alias's line of `jssh status`.
#[derive(Debug, Serialize)]
struct Row {
    alias: Alias,
    /// up, starting, reconnecting, failed, down, remote-only (a server with no tunnel), or
    /// running (a supervisor runs, but its state file is unreadable: see `state_file_error`).
    state: String,
    url: Option<String>,
    local_port: Option<u16>,
    remote_port: Option<u16>,
    remote_socket: Option<String>,
    remote_pid: Option<u32>,
    /// The machine Jupyter runs on (`uname -n`), as last reported.
    remote_node: Option<String>,
    supervisor_pid: Option<u32>,
    /// The ssh master currently carrying the tunnel.
    tunnel_ssh_pid: Option<u32>,
    uptime_secs: Option<u64>,
    reconnects: u32,
    restarts: u32,
    last_error: Option<String>,
    /// Whether the remote was asked and answered (false: `--local`, or unreachable; remote
    /// facts are then what this machine last knew).
    remote_checked: bool,
    /// Why the session file could not be read, when it exists but is not a session: the
    /// state and pids above then come from the supervisor's lease and the remote alone.
    state_file_error: Option<String>,
    /// `key`, or `prompt` where logins need a human (then nothing logs in on its own).
    login: LoginKind,
}

/// How long `status` waits for a remote's answer: over a ControlMaster it takes
/// milliseconds, a new connection well under a second; a host that is off or blackholed must
/// not hold up the others' lines for the whole connect timeout.
const REMOTE_LIMIT: Duration = Duration::from_secs(3);

/// The remote's jssh sessions, or `None` when it cannot be asked right now.
/// Where logins need a human, only over the login the user answered: `status` never logs in.
fn remote_sessions(ctx: &Ctx, alias: &Alias, login: LoginKind) -> Option<Vec<RemoteSession>> {
    let marker = Marker::new().ok()?;
    let command = remote::list(&marker);
    let cmd = match login {
        LoginKind::Prompt => {
            let control = RunDir::new(&ctx.paths, alias).login_control();
            ctx.ssh.exec_over_only(alias, &control, &command)
        }
        LoginKind::Key => ctx.ssh.exec(alias, &command, true),
    };
    let out = cmd.output_within(REMOTE_LIMIT).ok()?;
    let out = String::from_utf8_lossy(&out.stdout);
    marker.reply(&out).map(remote::parse_list)
}

fn row(alias: &Alias, run: &RunDir, file: SessionFile, remote: Option<&[RemoteSession]>) -> Row {
    let (session, state_file_error) = match file {
        SessionFile::Session(session) => (Some(*session), None),
        SessionFile::Missing => (None, None),
        SessionFile::Unreadable(why) => (None, Some(why)),
    };
    let supervisor = crate::supervisor::handle::find(run);
    let name = remote::session_name(alias);
    let on_remote = remote.and_then(|r| r.iter().find(|s| s.session == name).cloned());
    let state = match (&supervisor, &session, &on_remote) {
        (Some(_), Some(s), _) => match s.phase {
            Phase::Up => "up",
            Phase::Starting => "starting",
            Phase::Failed => "failed",
            Phase::NeedsLogin => "needs-login",
            Phase::Reconnecting | Phase::Stopped => "reconnecting",
        },
        // The lease says a supervisor runs; only its phase is unknown.
        (Some(_), None, _) if state_file_error.is_some() => "running",
        (None, _, Some(_)) => "remote-only",
        _ => "down",
    };
    let live = supervisor.is_some();
    Row {
        alias: alias.clone(),
        state: state.to_owned(),
        url: session.as_ref().filter(|_| live).map(Session::url),
        local_port: session.as_ref().filter(|_| live).map(|s| s.local_port),
        remote_port: on_remote
            .as_ref()
            .and_then(|r| r.port)
            .or(session.as_ref().and_then(|s| s.remote_port)),
        remote_socket: session.as_ref().and_then(|s| s.remote_socket.clone()),
        remote_pid: on_remote
            .as_ref()
            .and_then(|r| r.pid)
            .or(session.as_ref().and_then(|s| s.remote_pid)),
        remote_node: session.as_ref().and_then(|s| s.remote_node.clone()),
        supervisor_pid: supervisor,
        tunnel_ssh_pid: session.as_ref().filter(|_| live).and_then(|s| s.ssh_pid),
        uptime_secs: session
            .as_ref()
            .filter(|_| live)
            .map(|s| unix_now().saturating_sub(s.started_unix)),
        reconnects: session.as_ref().map_or(0, |s| s.reconnects),
        restarts: session.as_ref().map_or(0, |s| s.restarts),
        last_error: session.and_then(|s| s.last_error),
        remote_checked: remote.is_some(),
        state_file_error,
        login: LoginKind::Key,
    }
}

pub(crate) fn run(ctx: &Ctx, args: &StatusArgs) -> Result<()> {
    let profiles = Profiles::load(&ctx.paths.hosts_file())?;
    let selected: Vec<Profile> = match &args.alias {
        Some(alias) => vec![lookup_profile(&profiles, alias)?],
        None => profiles.iter().cloned().collect(),
    };
    let aliases: Vec<Alias> = selected.iter().map(|p| p.alias.clone()).collect();
    // Ask every remote at once: one slow host must not make the others wait.
    let remotes: Vec<Option<Vec<RemoteSession>>> = if args.local {
        vec![None; aliases.len()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = selected
                .iter()
                .map(|p| scope.spawn(|| remote_sessions(ctx, &p.alias, p.login)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(None)).collect()
        })
    };
    let mut rows = Vec::new();
    for ((alias, remote), profile) in aliases.iter().zip(&remotes).zip(&selected) {
        let run = RunDir::new(&ctx.paths, alias);
        let mut row = row(alias, &run, run.load_session()?, remote.as_deref());
        row.login = profile.login;
        rows.push(row);
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &rows).context("could not write JSON")?;
        writeln!(out)?;
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("no hosts yet: add one with `jssh setup ALIAS --host HOST`");
    }
    for r in &rows {
        let remote = match (&r.remote_socket, r.remote_port) {
            (Some(sock), _) => sock.clone(),
            (None, Some(port)) => format!("127.0.0.1:{port}"),
            (None, None) => "-".into(),
        };
        let checked = match (r.remote_checked, args.local) {
            (true, _) | (false, true) => "",
            (false, false) => " (remote not reachable)",
        };
        writeln!(out, "{}: {}{checked}", r.alias, r.state)?;
        if r.login == LoginKind::Prompt {
            writeln!(
                out,
                "  login:      needs you (more than the key): one login carries everything, no standby; \
                 after a drop, `jssh login {}`",
                r.alias
            )?;
        }
        if let Some(url) = &r.url {
            writeln!(out, "  url:        {url}")?;
        }
        if r.state != "down" {
            let node = r.remote_node.as_ref().map_or(String::new(), |n| format!(" on {n}"));
            writeln!(
                out,
                "  remote:     {remote}{node} (pid {})",
                r.remote_pid.map_or("-".into(), |p| p.to_string())
            )?;
        }
        if let Some(up) = r.uptime_secs {
            writeln!(
                out,
                "  uptime:     {}s, {} reconnects, {} restarts",
                up, r.reconnects, r.restarts
            )?;
        }
        if let Some(err) = &r.last_error {
            writeln!(out, "  last error: {err}")?;
        }
        if let Some(why) = &r.state_file_error {
            let supervisor = r
                .supervisor_pid
                .map_or(String::new(), |p| format!(" (the supervisor, pid {p}, still runs)"));
            writeln!(
                out,
                "  state file: unreadable{supervisor}: {why}; `jssh up {}` rewrites it",
                r.alias
            )?;
        }
        if r.state == "remote-only" {
            writeln!(
                out,
                "  no tunnel: `jssh up {}` reconnects, `jssh down {}` stops it",
                r.alias, r.alias
            )?;
        }
    }
    Ok(())
}
