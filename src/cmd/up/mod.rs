//! `jssh up`: arguments → a [`Plan`], then for each alias: start (or reuse) the remote
//! Jupyter, start the supervisor, and hand out a URL only once it answers. Several aliases
//! start in parallel ([`many`]). The rooms: [`plan`] (what was asked), [`ports`] (port
//! policy), [`launch`] (the remote launch protocol), [`ready`] (waiting for the tunnel),
//! [`ui`] (the terminal).

mod launch;
mod many;
mod plan;
mod ports;
mod ready;
pub(crate) mod slurm;
mod ui;

use std::process::{Child, ExitCode};
use std::time::Instant;

use anyhow::{Result, bail};

use self::launch::Launch;
use self::plan::Plan;
use self::ui::Ui;
use super::login::{self, Login};
use super::{Ctx, open_url};
use crate::cli::UpArgs;
use crate::fsutil;
use crate::profile::{LoginKind, Profile};
use crate::remote::{self, DirCheck, JupyterSpec, Marker};
use crate::state::{Phase, Session, StateDir, unix_now};
use crate::supervisor::handle;

pub(crate) fn run(ctx: &Ctx, args: &UpArgs) -> Result<ExitCode> {
    let mut profiles = ctx.profiles()?;
    let (mut plan, changed) = Plan::new(args, &mut profiles)?;
    if changed {
        profiles.save(&ctx.paths.hosts_file())?;
    }
    // `--socket` can be honoured only where OpenSSH forwards to a socket (9.4); otherwise a
    // port, and the supervisor checks who holds it before anything carries the token there.
    if plan.socket && !crate::ssh::forwards_to_sockets() {
        plan.socket = false;
        let note = "note: --socket needs OpenSSH 9.4 or newer on this machine (`ssh -V`); Jupyter listens on a \
                    port of the remote's 127.0.0.1 instead";
        if plan.hosts.len() == 1 {
            println!("{note}");
        } else {
            eprintln!("{note}");
        }
    }
    match plan.hosts.as_slice() {
        [host] => one(ctx, &plan, host),
        _ => Ok(many::run(ctx, &plan)),
    }
}

/// One alias, in the terminal.
fn one(ctx: &Ctx, plan: &Plan, profile: &Profile) -> Result<ExitCode> {
    let run = StateDir::new(&ctx.paths, &profile.alias);
    let alias = &profile.alias;
    let up = bring_up(ctx, plan, profile, &run, &mut Ui::terminal())?;
    if let Up::Queued { session } = &up {
        let id = session.job.as_ref().and_then(|j| j.id.as_deref()).unwrap_or("?");
        println!(
            "Slurm job {id} waits in the queue on {alias}: `jssh up {alias}` attaches once it runs \
             (`jssh status {alias}` shows its state, `jssh down {alias}` cancels it)"
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", up.session().url());
    if plan.open {
        open_url(&run, &up.session().url())?;
    }
    match up {
        _ if plan.detach => Ok(ExitCode::SUCCESS),
        Up::Queued { .. } => Ok(ExitCode::SUCCESS),
        Up::Running { pid, .. } => {
            println!("(the tunnel already runs in the background, pid {pid}; `jssh down {alias}` stops it)");
            Ok(ExitCode::SUCCESS)
        }
        Up::Started {
            mut supervisor,
            log_start,
            ..
        } => {
            let status = ui::follow_foreground(alias, &run, &mut supervisor, log_start)?;
            if plan.stop_remote {
                super::down::stop_remote(ctx, alias, &run)?;
            } else {
                println!("Jupyter still runs on {alias}: `jssh up {alias}` reconnects, `jssh down {alias}` stops it");
            }
            // The supervisor's status: 128 + the signal that stopped it (130 after Ctrl-C).
            Ok(status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .map_or(ExitCode::FAILURE, ExitCode::from))
        }
    }
}

/// How long a Slurm job's Jupyter may take to start, at least (see `--timeout`).
const JOB_START_LIMIT: std::time::Duration = std::time::Duration::from_mins(5);

/// What follows the remote start while the tunnel comes up: the launch script, or the job's
/// report.
enum Following {
    Launch(Launch),
    Job(slurm::JobWait),
}

impl Following {
    fn events(&self) -> &std::sync::mpsc::Receiver<crate::remote::LaunchEvent> {
        match self {
            Self::Launch(launch) => launch.events(),
            Self::Job(job) => job.events(),
        }
    }

    fn end(self) {
        match self {
            Self::Launch(launch) => launch.end(),
            Self::Job(job) => job.end(),
        }
    }
}

/// A tunnel that answers.
enum Up {
    /// A supervisor already ran for the alias.
    Running { session: Session, pid: u32 },
    /// This run started the supervisor (its child, in the foreground) and, unless one was
    /// running, the remote server; its log's events start at `log_start`.
    Started {
        session: Session,
        supervisor: Child,
        log_start: u64,
    },
    /// `-d` with a Slurm job that still waits in the queue: nothing runs here yet.
    Queued { session: Session },
}

impl Up {
    fn session(&self) -> &Session {
        match self {
            Self::Running { session, .. } | Self::Started { session, .. } | Self::Queued { session } => session,
        }
    }
}

/// Brings `profile`'s tunnel up, reusing a running one, under the alias's lock.
fn bring_up(ctx: &Ctx, plan: &Plan, profile: &Profile, run: &StateDir, ui: &mut Ui) -> Result<Up> {
    let _lock = run.lock()?;
    let deadline = Instant::now() + plan.timeout;
    if let Some(pid) = handle::find(run) {
        match run.read_session()? {
            // One that is dying (a kill -9 a moment ago) ends the reuse: then start anew.
            Some(session) => match log_in_again(ctx, run, &session).and_then(|()| reuse(plan, run, &session, deadline))
            {
                Err(_) if handle::find(run).is_none() => {}
                result => return result.map(|()| Up::Running { session, pid }),
            },
            // A supervisor whose session file is unreadable (e.g. from another jssh version)
            // would fight a new one for the port.
            None => handle::stop(run)?,
        }
    }
    // A remote port can be taken between the launch script's check and Jupyter's bind
    // (another server starting): then the start is retried once on other ports.
    let mut tries = 0;
    loop {
        tries += 1;
        match start(ctx, plan, profile, run, deadline, ui) {
            Err(e) if tries == 1 && format!("{e:#}").contains("is already in use") => {}
            result => return result,
        }
    }
}

/// Where the tunnel waits for the user, `up` is how they come back: where logins need a
/// human (the login ended), one prompt, handed to the running supervisor; where the server
/// refused the key (or its host key changed), one more attempt.
fn log_in_again(ctx: &Ctx, run: &StateDir, session: &Session) -> Result<()> {
    match session.login {
        LoginKind::Key if session.phase == Phase::NeedsLogin => {
            login::key_works(ctx, &session.alias)?;
            handle::retry_login(run)
        }
        LoginKind::Prompt if !handle::login_alive(run) => {
            login::log_in(ctx, &session.alias, run)?;
            handle::retry_login(run)
        }
        LoginKind::Key | LoginKind::Prompt => Ok(()),
    }
}

/// The warm path: a supervisor already runs for this alias.
fn reuse(plan: &Plan, run: &StateDir, session: &Session, deadline: Instant) -> Result<()> {
    if plan.port.is_some_and(|p| p != session.local_port) {
        bail!(
            "{alias} is already up on port {}: `jssh down {alias}` first to move it to --port",
            session.local_port,
            alias = session.alias
        );
    }
    ready::wait(session, deadline, None, None, run)
}

/// Starts (or finds) the remote server and a supervisor, and waits until the URL answers.
/// On failure nothing this run started is left behind.
fn start(ctx: &Ctx, plan: &Plan, profile: &Profile, run: &StateDir, deadline: Instant, ui: &mut Ui) -> Result<Up> {
    // No spinner before the launch has logged in: ssh may be asking for a passphrase.
    let (launch, session, reused, deadline) = if let Some(options) = plan.slurm(profile) {
        let job = slurm::JobPlan {
            options,
            detach: plan.detach,
            warn_minutes: plan.walltime_warning,
        };
        let session = new_session(ctx, plan, profile, run)?;
        match slurm::start(ctx, profile, &job, run, session, ui)? {
            slurm::JobStart::Queued(session) => return Ok(Up::Queued { session }),
            // A queue's wait is not Jupyter's: the timeout counts from here, and a node (a
            // cold conda environment, a busy shared filesystem) gets at least 5 minutes.
            slurm::JobStart::Running(session, reused, job) => (
                Following::Job(job),
                session,
                reused,
                Instant::now() + plan.timeout.max(JOB_START_LIMIT),
            ),
        }
    } else {
        let (launch, session, reused) = start_remote(ctx, plan, profile, run, deadline, ui)?;
        (Following::Launch(launch), session, reused, deadline)
    };
    let alias = &profile.alias;
    let progress = ui.progress(&format!(
        "starting Jupyter on {alias}, forwarding it to 127.0.0.1:{}",
        session.local_port
    ));
    let log_start = std::fs::metadata(run.log_path()).map_or(0, |m| m.len());
    let mut supervisor = handle::start(
        &handle::Args {
            alias: alias.clone(),
            ssh_config: ctx.paths.ssh_config.clone(),
            connect_timeout: ctx.ssh.connect_timeout(),
            foreground: !plan.detach,
        },
        run,
    )?;
    let ready = ready::wait(&session, deadline, Some(launch.events()), Some(&mut supervisor), run);
    progress.finish();
    launch.end();
    if session.login != profile.login {
        // The key was enough this time: the supervisor makes its own connections.
        login::end(ctx, alias, run);
    }
    if let Err(e) = ready {
        let _ = handle::stop(run);
        // One that never took its lease is stopped as the child it is.
        let _ = supervisor.kill();
        let _ = supervisor.wait();
        let mut message = format!("{e:#}");
        if !message.contains("its log ends")
            && let Some(tail) = ready::remote_log_tail(ctx, run, &session)
        {
            message = format!("{message}\n{tail}");
        }
        // Leave nothing half-started behind: a server this run started goes too.
        if !reused && session.job.is_some() {
            let _ = slurm::cancel(ctx, alias, run, &session);
            login::end(ctx, alias, run);
            run.clear();
        } else if !reused {
            if let Ok(marker) = Marker::new() {
                let stop = remote::stop(&marker, &session.tmux_name, session.remote_node.as_deref());
                let _ = login::remote_command(ctx, alias, run, session.login, &stop, true).output();
            }
            login::end(ctx, alias, run);
            run.clear();
        }
        bail!(message);
    }
    Ok(Up::Started {
        session,
        supervisor,
        log_start,
    })
}

/// Runs the launch script (starting or finding the remote server) and records the session.
/// Returns the still-watching launch, the session, and whether the server was reused.
fn start_remote(
    ctx: &Ctx,
    plan: &Plan,
    profile: &Profile,
    run: &StateDir,
    deadline: Instant,
    ui: &mut Ui,
) -> Result<(Launch, Session, bool)> {
    let alias = &profile.alias;
    let previous = run
        .read_session()?
        .filter(|s| s.tmux_name == remote::session_name(alias));
    let mut ports = ports::remote_candidates()?;
    if let Some(port) = previous.as_ref().and_then(|s| s.remote_port) {
        ports.insert(0, port);
    }
    let mut session = new_session(ctx, plan, profile, run)?;
    if let Some(previous) = previous.as_ref().filter(|s| s.job.is_some()) {
        bail!(
            "{alias} last ran Jupyter as Slurm job {}: `jssh down {alias}` first (it cancels the job), \
             or leave out --no-slurm",
            previous.job.as_ref().and_then(|j| j.id.as_deref()).unwrap_or("?")
        );
    }
    let expect = previous.as_ref().and_then(|s| s.remote_node.as_deref());
    let check = plan.dir.as_deref().map(DirCheck::new);
    let marker = Marker::new()?;
    // Where logins need a human, the one login comes first, and everything rides on it.
    if profile.login == LoginKind::Prompt && login::log_in(ctx, alias, run)? == Login::KeyOnly {
        ui.note(format!(
            "note: the key alone logged in to {alias} this time: the tunnel reconnects by itself"
        ));
        session.login = LoginKind::Key;
    }
    let script = remote::launch(
        &marker,
        &JupyterSpec::of(&session, plan.socket),
        &ports,
        true,
        true,
        expect,
        check.as_ref(),
    );
    let cmd = login::remote_command(ctx, alias, run, profile.login, &script, !ui.may_ask());
    let mut launch = Launch::spawn(&cmd, &session.token, marker)?;
    let started = launch.started(alias, deadline)?;
    if let (Some(alternative_exists), Some(check)) = (started.no_dir, &check) {
        launch.wait();
        return Err(check.missing(alias, alternative_exists));
    }
    if let (Some(reached), Some(expected)) = (&started.elsewhere, expect) {
        launch.wait();
        bail!(
            "{alias}'s Jupyter from the last `jssh up` runs on {expected}, but this connection \
             reached {reached} (does the alias's address lead to several machines?); nothing was \
             started. Try again after `ssh -O exit {alias}` (a new connection may reach {expected}), \
             point the alias at that machine (`jssh setup {alias} --host {expected}`), or forget \
             that server with `jssh down {alias}`"
        );
    }
    // A socket server has no port, whether it was started now or before.
    session.remote_socket = started
        .port
        .is_none()
        .then(|| format!("{}/.jssh/run/{}/jupyter.sock", started.home, session.tmux_name));
    session.remote_port = started.port;
    session.remote_pid = started.pid;
    session.remote_node = started.node;
    if let Some(token) = started.token {
        session.token = token;
    }
    if started.reused {
        ui.note(format!(
            "reusing the Jupyter already running on {alias} (pid {})",
            started.pid.unwrap_or(0)
        ));
    }
    if started.root {
        ui.note("note: the remote login is root, so Jupyter runs with --allow-root".to_owned());
    }
    run.write_session(&session)?;
    Ok((launch, session, started.reused))
}

/// A new session for `profile`: its local port claimed, a fresh token; the remote start adds
/// where Jupyter runs.
fn new_session(ctx: &Ctx, plan: &Plan, profile: &Profile, run: &StateDir) -> Result<Session> {
    let alias = &profile.alias;
    Ok(Session {
        alias: alias.clone(),
        tmux_name: remote::session_name(alias),
        local_port: ports::claim_local(&ctx.paths, run, alias, plan.port)?,
        remote_port: None,
        remote_socket: None,
        remote_pid: None,
        ssh_pid: None,
        remote_node: None,
        token: fsutil::random_hex(24)?,
        notebook: plan.notebook,
        dir: plan.dir.clone(),
        env: profile.env.clone(),
        jupyter: profile.jupyter.clone(),
        phase: Phase::Starting,
        login: profile.login,
        started_unix: unix_now(),
        reconnects: 0,
        restarts: 0,
        last_error: None,
        job: None,
    })
}
