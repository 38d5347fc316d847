//! `jssh status`: local tunnels from the state dir, plus what still runs on each remote.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Ctx, login, named_profiles};
use crate::cli::StatusArgs;
use crate::profile::{LoginKind, Profile};
use crate::remote::{self, Marker, RemoteSession};
use crate::sanitize::for_terminal;
use crate::slurm::{self, Job, Query, Reach};
use crate::state::{Phase, Session, SessionFile, StateDir, unix_now};
use crate::target::Alias;

/// What `status` says of an alias, from its supervisor's phase and what runs where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum State {
    Up,
    Starting,
    Reconnecting,
    Failed,
    /// The login a human answered ended: `jssh login ALIAS`.
    NeedsLogin,
    /// A supervisor runs, but its state file is unreadable (see `state_file_error`).
    Running,
    /// A server with no tunnel.
    RemoteOnly,
    /// A Slurm job that ended (see `last_error` and `job`).
    JobEnded,
    /// A Slurm job still in the queue (`up -d` returned): `jssh up` attaches once it runs.
    Queued,
    Down,
}

impl State {
    fn of(phase: Phase) -> Self {
        match phase {
            Phase::Up => Self::Up,
            Phase::Starting => Self::Starting,
            Phase::Failed => Self::Failed,
            Phase::NeedsLogin => Self::NeedsLogin,
            Phase::JobEnded => Self::JobEnded,
            Phase::Reconnecting | Phase::Stopped => Self::Reconnecting,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Starting => "starting",
            Self::Reconnecting => "reconnecting",
            Self::Failed => "failed",
            Self::NeedsLogin => "needs-login",
            Self::Running => "running",
            Self::RemoteOnly => "remote-only",
            Self::JobEnded => "job-ended",
            Self::Queued => "queued",
            Self::Down => "down",
        }
    }
}

/// One alias's line of `jssh status`.
#[derive(Debug, Serialize)]
struct Row {
    alias: Alias,
    state: State,
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
    /// The Slurm job Jupyter runs as, as last seen.
    job: Option<JobRow>,
}

#[derive(Debug, Serialize)]
struct JobRow {
    id: Option<String>,
    node: Option<String>,
    state: Option<String>,
    reason: Option<String>,
    /// Until the walltime ends, when known.
    walltime_left_secs: Option<i64>,
    /// Whether the walltime warning was given.
    walltime_warned: bool,
    /// How the tunnel reaches the node.
    reach: Reach,
}

impl JobRow {
    fn of(job: &Job) -> Self {
        Self {
            id: job.id.clone(),
            node: job.node.clone(),
            state: job.state.clone(),
            reason: job.reason.clone(),
            walltime_left_secs: job.walltime_left(unix_now()),
            walltime_warned: job.warned,
            reach: job.reach,
        }
    }
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
    let run = StateDir::new(&ctx.paths, alias);
    let cmd = login::remote_command(ctx, alias, &run, login, &command, true);
    let out = cmd.output_within(REMOTE_LIMIT).ok()?;
    let out = String::from_utf8_lossy(&out.stdout);
    marker.reply(&out).map(remote::parse_list)
}

/// A job left queued by `up -d` has no supervisor to follow it: Slurm is asked, over the
/// login, what it is now (running: `jssh up` attaches).
fn refresh_queued(ctx: &Ctx, run: &StateDir, row: &mut Row) {
    let Some(job) = row.job.as_mut().filter(|_| row.state == State::Queued) else {
        return;
    };
    let (Some(id), Ok(marker)) = (job.id.clone(), Marker::new()) else {
        return;
    };
    let cmd = login::remote_command(ctx, &row.alias, run, row.login, &slurm::query(&marker, &id), true);
    let Ok(out) = cmd.output_within(REMOTE_LIMIT) else {
        return;
    };
    match Query::parse(marker.reply(&String::from_utf8_lossy(&out.stdout)).unwrap_or_default()) {
        Query::State {
            state, reason, node, ..
        } => {
            job.node = (!node.is_empty() && node != "(null)").then_some(node);
            job.state = Some(state);
            job.reason = Some(reason);
        }
        Query::Gone => job.state = Some("gone".into()),
        Query::Unknown => {}
    }
}

fn row(alias: &Alias, run: &StateDir, file: SessionFile, remote: Option<&[RemoteSession]>) -> Row {
    let (session, state_file_error) = match file {
        SessionFile::Session(session) => (Some(*session), None),
        SessionFile::Missing => (None, None),
        SessionFile::Unreadable(why) => (None, Some(why)),
    };
    let supervisor = crate::supervisor::handle::find(run);
    let name = remote::session_name(alias);
    let on_remote = remote.and_then(|r| r.iter().find(|s| s.session == name).cloned());
    let state = match (&supervisor, &session, &on_remote) {
        (Some(_), Some(s), _) => State::of(s.phase),
        // The lease says a supervisor runs; only its phase is unknown.
        (Some(_), None, _) if state_file_error.is_some() => State::Running,
        (None, _, Some(_)) => State::RemoteOnly,
        (None, Some(s), None) if s.phase == Phase::JobEnded => State::JobEnded,
        (None, Some(s), None)
            if s.job
                .as_ref()
                .is_some_and(|j| j.node.is_none() && j.state.as_deref().is_some_and(slurm::is_live)) =>
        {
            State::Queued
        }
        _ => State::Down,
    };
    let live = supervisor.is_some();
    Row {
        alias: alias.clone(),
        state,
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
        job: session.as_ref().and_then(|s| s.job.as_ref()).map(JobRow::of),
        reconnects: session.as_ref().map_or(0, |s| s.reconnects),
        restarts: session.as_ref().map_or(0, |s| s.restarts),
        last_error: session.and_then(|s| s.last_error),
        remote_checked: remote.is_some(),
        state_file_error,
        login: LoginKind::Key,
    }
}

pub(crate) fn run(ctx: &Ctx, args: &StatusArgs) -> Result<()> {
    let profiles = ctx.profiles()?;
    let selected: Vec<Profile> = if args.aliases.is_empty() {
        profiles.iter().cloned().collect()
    } else {
        named_profiles(&profiles, &args.aliases)?
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
        let run = StateDir::new(&ctx.paths, alias);
        let mut row = row(alias, &run, run.load_session()?, remote.as_deref());
        row.login = profile.login;
        if !args.local {
            refresh_queued(ctx, &run, &mut row);
        }
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
    if let [row] = rows.as_slice()
        && args.aliases.len() == 1
    {
        return details(&mut out, row, args.local);
    }
    let width = std::io::stdout()
        .is_terminal()
        .then(|| terminal_size::terminal_size().map(|(w, _)| usize::from(w.0)))
        .flatten();
    out.write_all(table(&rows, width).as_bytes())?;
    let unreachable: Vec<&str> = rows
        .iter()
        .filter(|r| !r.remote_checked && !args.local)
        .map(|r| r.alias.as_str())
        .collect();
    if !unreachable.is_empty() {
        writeln!(
            out,
            "not reachable just now (shown as last known): {}",
            unreachable.join(", ")
        )?;
    }
    if rows.iter().any(|r| r.url.is_some()) {
        writeln!(
            out,
            "(URLs without their tokens: `jssh url ALIAS` prints one whole, `jssh open ALIAS` opens it)"
        )?;
    }
    Ok(())
}

/// The table of several aliases, each line cut to `width` when there is one. URLs go without
/// their tokens: a table of twenty aliases is what gets shared on a screen or in a ticket.
fn table(rows: &[Row], width: Option<usize>) -> String {
    let header = ["ALIAS", "STATE", "URL", "NODE", "UPTIME", "RECONNECTS", "LAST ERROR"].map(String::from);
    let cells: Vec<[String; 7]> = std::iter::once(header)
        .chain(rows.iter().map(|r| {
            [
                r.alias.to_string(),
                r.state.as_str().to_owned(),
                r.url.as_deref().map_or("-".into(), without_token),
                r.remote_node.clone().unwrap_or_else(|| "-".into()),
                r.uptime_secs.map_or("-".into(), duration),
                r.reconnects.to_string(),
                r.last_error.as_deref().map_or("-".into(), |e| e.replace('\n', " ")),
            ]
        }))
        .collect();
    let widths: Vec<usize> = (0..7)
        .map(|i| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == 6 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        let line = line.trim_end();
        text.push_str(&fit(&for_terminal(line), width));
        text.push('\n');
    }
    text
}

/// One alias in detail.
fn details(out: &mut impl Write, r: &Row, local: bool) -> Result<()> {
    let remote = match (&r.remote_socket, r.remote_port) {
        (Some(sock), _) => sock.clone(),
        (None, Some(port)) => format!("127.0.0.1:{port}"),
        (None, None) => "-".into(),
    };
    let checked = match (r.remote_checked, local) {
        (true, _) | (false, true) => "",
        (false, false) => " (remote not reachable)",
    };
    writeln!(out, "{}: {}{checked}", r.alias, r.state.as_str())?;
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
    if r.state != State::Down {
        let node = r.remote_node.as_ref().map_or(String::new(), |n| format!(" on {n}"));
        writeln!(
            out,
            "  remote:     {remote}{node} (pid {})",
            r.remote_pid.map_or("-".into(), |p| p.to_string())
        )?;
    }
    if let Some(job) = &r.job {
        let said = slurm::describe(
            job.state.as_deref().unwrap_or("?"),
            job.reason.as_deref().unwrap_or_default(),
        );
        let node = job.node.as_ref().map_or(String::new(), |n| format!(" on {n}"));
        let left = job.walltime_left_secs.map_or(String::new(), |s| {
            let warned = if job.walltime_warned { " (warned)" } else { "" };
            format!(
                ", walltime left {}h{:02}m{warned}",
                s.max(0) / 3600,
                s.max(0) % 3600 / 60
            )
        });
        writeln!(
            out,
            "  slurm job:  {} {said}{node}{left}",
            job.id.as_deref().unwrap_or("(not submitted)")
        )?;
        writeln!(out, "  reached by: {}", job.reach.describe())?;
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
    if r.state == State::Queued {
        writeln!(
            out,
            "  no tunnel yet: `jssh up {}` attaches once the job runs, `jssh down {}` cancels it",
            r.alias, r.alias
        )?;
    }
    if r.state == State::RemoteOnly {
        writeln!(
            out,
            "  no tunnel: `jssh up {}` reconnects, `jssh down {}` stops it",
            r.alias, r.alias
        )?;
    }
    Ok(())
}

/// `url` without its `?token=…`.
fn without_token(url: &str) -> String {
    url.split_once("?token=").map_or(url, |(page, _)| page).to_owned()
}

/// An uptime as a person reads it: `42s`, `17m`, `3h05m`, `2d04h`.
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// `line` cut to `width` characters, its end marked, when there is a width.
fn fit(line: &str, width: Option<usize>) -> String {
    match width {
        Some(width) if line.chars().count() > width => {
            let kept: String = line.chars().take(width.saturating_sub(1)).collect();
            format!("{kept}…")
        }
        _ => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(alias: &str, state: State, error: Option<&str>) -> Row {
        Row {
            alias: alias.parse().unwrap(),
            state,
            url: (state == State::Up).then(|| "http://127.0.0.1:8888/lab?token=abc123".to_owned()),
            local_port: None,
            remote_port: None,
            remote_socket: None,
            remote_pid: None,
            remote_node: (state == State::Up).then(|| "node7".to_owned()),
            supervisor_pid: None,
            tunnel_ssh_pid: None,
            uptime_secs: (state == State::Up).then_some(3725),
            reconnects: 2,
            restarts: 0,
            last_error: error.map(str::to_owned),
            remote_checked: true,
            state_file_error: None,
            login: LoginKind::Key,
            job: None,
        }
    }

    #[test]
    fn the_table_has_one_aligned_line_per_alias_without_tokens() {
        let rows = [
            row("gpu", State::Up, None),
            row(
                "hpc-long-name",
                State::NeedsLogin,
                Some("the login ended:\nConnection reset"),
            ),
        ];
        let text = table(&rows, None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ALIAS          STATE        URL"), "{text}");
        assert_eq!(
            lines[1],
            "gpu            up           http://127.0.0.1:8888/lab  node7  1h02m   2           -"
        );
        assert!(lines[2].starts_with("hpc-long-name  needs-login  -  "), "{text}");
        assert!(
            lines[2].ends_with("the login ended: Connection reset"),
            "one line: {text}"
        );
        assert!(!text.contains("abc123"), "no token: {text}");
        assert_eq!(lines[1].find("node7"), lines[0].find("NODE"), "aligned: {text}");
    }

    #[test]
    fn lines_are_cut_to_the_terminal_width_and_text_is_made_safe() {
        let rows = [row(
            "gpu",
            State::Failed,
            Some("evil \u{1b}]0;title\u{7} error that goes on and on"),
        )];
        let text = table(&rows, Some(40));
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(text.lines().nth(1).unwrap().ends_with('…'), "{text}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        let whole = table(&rows, None);
        assert!(
            whole.lines().nth(1).unwrap().ends_with("goes on and on"),
            "not cut without a width: {whole}"
        );
    }

    #[test]
    fn states_serialize_as_scripts_read_them() {
        for (state, text) in [
            (State::NeedsLogin, "needs-login"),
            (State::RemoteOnly, "remote-only"),
            (State::Up, "up"),
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), text);
            assert_eq!(state.as_str(), text);
        }
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(17 * 60 + 5), "17m");
        assert_eq!(duration(2 * 86_400 + 4 * 3600), "2d04h");
    }
}
