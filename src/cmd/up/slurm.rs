//! `up` for a Slurm profile: submit Jupyter as a job over the one login to the login host (or
//! find the job a previous `up` submitted), learn from the job itself when it runs and when
//! Jupyter listens, and make sure the node can be reached before the supervisor takes over.

use std::io::Write as _;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::launch::read_events;
use super::ui::{Progress, Ui, all_signals};
use crate::cmd::Ctx;
use crate::cmd::login::{self, Login};
use crate::profile::{LoginKind, Profile};
use crate::remote::{self, JupyterSpec, LaunchEvent, Marker};
use crate::sanitize::{for_terminal, ssh_stderr};
use crate::slurm::{self, Job, Query, Reach, SbatchOptions, WaitEvent};
use crate::state::{Phase, Session, StateDir};
use crate::target::Alias;

/// With `-d`, how long `up` waits for a queued job before it returns (the job stays queued
/// and `jssh up` attaches once it runs).
const DETACHED_WAIT: Duration = Duration::from_secs(10);

/// What [`start`] ended with.
pub(super) enum JobStart {
    /// The job runs and its node can be reached: the supervisor can take over while Jupyter
    /// starts. Whether the job was found running (not submitted by this run); its report,
    /// still followed.
    Running(Session, bool, JobWait),
    /// `-d`, and the job still waits in the queue.
    Queued(Session),
}

/// What the user asked of the job.
pub(super) struct JobPlan<'a> {
    pub(super) options: &'a SbatchOptions,
    pub(super) detach: bool,
    pub(super) warn_minutes: u64,
}

/// Submits (or finds) `session`'s job and waits until it runs and its node can be reached.
pub(super) fn start(
    ctx: &Ctx,
    profile: &Profile,
    plan: &JobPlan<'_>,
    run: &StateDir,
    mut session: Session,
    ui: &mut Ui,
) -> Result<JobStart> {
    let alias = &profile.alias;
    if profile.login == LoginKind::Prompt && login::log_in(ctx, alias, run)? == Login::KeyOnly {
        ui.note(format!("note: the key alone logged in to {alias} this time"));
        session.login = LoginKind::Key;
    }
    let previous = run
        .read_session()?
        .filter(|s| s.tmux_name == session.tmux_name && s.job.is_some())
        .map(|s| adopt_unanswered(ctx, alias, run, s))
        .transpose()?
        .filter(|s| s.job.as_ref().is_some_and(|j| j.id.is_some()));
    let mut reused = false;
    if let Some(previous) = previous {
        let id = previous.job.as_ref().and_then(|j| j.id.clone()).unwrap_or_default();
        match query(ctx, alias, run, session.login, &id)? {
            Query::State { state, .. } if slurm::is_live(&state) => {
                ui.note(format!("attaching to {alias}'s Slurm job {id} ({state})"));
                session.token = previous.token;
                session.job = previous.job;
                reused = true;
            }
            Query::Unknown => bail!(
                "Slurm on {alias} did not answer about job {id} (squeue failed): nothing was submitted; try again"
            ),
            ended => {
                let said = match ended {
                    Query::State { state, reason, .. } => slurm::describe(&state, &reason),
                    _ => "gone".to_owned(),
                };
                ui.note(format!(
                    "{alias}'s last Slurm job {id} ended ({said}): submitting a new one"
                ));
            }
        }
    }
    if !reused {
        submit(ctx, plan, run, &mut session, profile.slurm_reach)?;
    }
    let id = session.job.as_ref().and_then(|j| j.id.clone()).unwrap_or_default();
    match wait(ctx, run, &mut session, &id, plan.detach)? {
        Waited::Queued => Ok(JobStart::Queued(session)),
        Waited::Running(hop_check, learned, job_wait) => {
            if let Err(e) = hop_check
                .recv()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the check did not finish")))
            {
                job_wait.end();
                if !reused {
                    cancel(ctx, alias, run, &session);
                }
                // The next `up` asks again: the cluster may have changed its mind.
                remember(ctx, profile, None)?;
                let cancelled = if reused { "" } else { "; the job was cancelled" };
                bail!(
                    "{e:#}{cancelled}. The next `jssh up {alias}` tries ssh to the node again, and \
                     where it stays refused forwards the node's port from {alias} instead"
                );
            }
            if let Some(learned) = learned {
                remember(ctx, profile, Some(learned.reach))?;
                if let Some(why) = learned.why {
                    ui.note(format!(
                        "warning: {why}. So Jupyter on {} listens on its network interface, port {}, \
                         where other users of the cluster can reach it (the token still protects it); \
                         jssh forwards it from {alias}. jssh remembers this for {alias}: `jssh doctor \
                         {alias}` shows why ssh to the node fails",
                        session.remote_node.as_deref().unwrap_or("the node"),
                        session.remote_port.unwrap_or_default()
                    ));
                }
            }
            Ok(JobStart::Running(session, reused, job_wait))
        }
    }
}

/// A session whose submission never got sbatch's answer (the connection dropped): the job, if
/// it was queued, is found by its name, so it is attached to (or cancelled), never left behind.
fn adopt_unanswered(ctx: &Ctx, alias: &Alias, run: &StateDir, mut session: Session) -> Result<Session> {
    if session.job.as_ref().is_none_or(|j| j.id.is_some()) {
        return Ok(session);
    }
    if let Some(id) = find(ctx, alias, run, &session)? {
        if let Some(job) = session.job.as_mut() {
            job.id = Some(id);
        }
        run.write_session(&session)?;
    }
    Ok(session)
}

/// The newest job of the session's name that Slurm knows (see [`adopt_unanswered`]).
pub(crate) fn find(ctx: &Ctx, alias: &Alias, run: &StateDir, session: &Session) -> Result<Option<String>> {
    let marker = Marker::new()?;
    let command = slurm::find(&marker, &session.tmux_name);
    let out = login::remote_command(ctx, alias, run, session.login, &command, true).output()?;
    let said = marker
        .reply(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_default()
        .trim()
        .to_owned();
    match said.split_once(' ') {
        Some(("job", id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(id.to_owned())),
        _ if said == "none" => Ok(None),
        _ => bail!(
            "Slurm on {alias} did not say whether a job named {} exists (squeue failed): try again",
            session.tmux_name
        ),
    }
}

/// `sbatch` over the login: the job is recorded by name before, and by id the moment sbatch
/// answers. The token goes on the command's stdin into a 0600 file in the shared home.
fn submit(ctx: &Ctx, plan: &JobPlan<'_>, run: &StateDir, session: &mut Session, reach: Option<Reach>) -> Result<()> {
    let alias = session.alias.clone();
    session.job = Some(Job {
        name: session.tmux_name.clone(),
        reach: reach.unwrap_or_default(),
        warn_minutes: plan.warn_minutes,
        ..Job::default()
    });
    session.phase = Phase::Starting;
    run.write_session(session)?;
    let ports = super::ports::remote_candidates()?;
    let jupyter = remote::jupyter_script(&JupyterSpec::of(session, false));
    let script = slurm::job_script(&session.tmux_name, &ports, remote::LOGIN, &jupyter, reach);
    let marker = Marker::new()?;
    let command = slurm::submit(&marker, &session.tmux_name, plan.options);
    let stdin = format!("{}\n{script}", session.token).into_bytes();
    let out = login::remote_command(ctx, &alias, run, session.login, &command, true)
        .stdin_bytes(stdin)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let reply = marker.reply(&text).unwrap_or_default();
    let line = reply.lines().next().unwrap_or_default();
    if let Some(id) = line.strip_prefix("job ").map(str::trim)
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        if let Some(job) = session.job.as_mut() {
            job.id = Some(id.to_owned());
            job.state = Some("PENDING".into());
        }
        run.write_session(session)?;
        return Ok(());
    }
    run.clear();
    match line.split_once(' ') {
        Some(("refused", why)) => bail!("sbatch on {alias} refused the job: {}", for_terminal(why)),
        _ if line == "nosbatch" => {
            bail!("sbatch is not on the login PATH of {alias}: is it a Slurm login node? (`jssh doctor {alias}`)")
        }
        _ => bail!(
            "could not submit the job on {alias}: {}",
            ssh_stderr(&out.stderr).join("; ")
        ),
    }
}

enum Waited {
    Queued,
    /// The job runs; the check that the node can be reached reports on this channel; what
    /// this job taught about reaching the cluster's nodes; the wait, still following it.
    Running(Receiver<Result<()>>, Option<Learned>, JobWait),
}

/// The job's report, still followed while the supervisor connects: its end and its log, as
/// the launch events `up` waits with (a job that ends is Jupyter that exited).
pub(super) struct JobWait {
    child: Child,
    events: Receiver<LaunchEvent>,
}

impl JobWait {
    fn follow(child: Child, waited: Receiver<WaitEvent>) -> Self {
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = all_signals().thread_block();
            for event in waited {
                let sent = match event {
                    WaitEvent::Log(line) => tx.send(LaunchEvent::Log(line)),
                    WaitEvent::Ended { state, reason } => tx
                        .send(LaunchEvent::Log(format!(
                            "(the Slurm job ended: {})",
                            slurm::describe(&state, &reason)
                        )))
                        .and_then(|()| tx.send(LaunchEvent::Exited)),
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        });
        Self { child, events }
    }

    pub(super) fn events(&self) -> &Receiver<LaunchEvent> {
        &self.events
    }

    /// Stops following.
    pub(super) fn end(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the job's node was reached, found out this time; why ssh to it failed, if it did.
struct Learned {
    reach: Reach,
    why: Option<String>,
}

/// Saves (or, with `None`, forgets) how `profile`'s cluster lets jssh reach a node.
fn remember(ctx: &Ctx, profile: &Profile, reach: Option<Reach>) -> Result<()> {
    let mut profiles = ctx.profiles()?;
    let Ok(mut saved) = profiles.lookup(&profile.alias).cloned() else {
        return Ok(());
    };
    if saved.slurm_reach != reach {
        saved.slurm_reach = reach;
        profiles.upsert(saved);
        profiles.save(&ctx.paths.hosts_file())?;
    }
    Ok(())
}

/// Follows the job's report (one long-lived command on the login host) until Jupyter
/// listens; shows the queue state on the spinner meanwhile.
fn wait(ctx: &Ctx, run: &StateDir, session: &mut Session, id: &str, detach: bool) -> Result<Waited> {
    let alias = session.alias.clone();
    let marker = Marker::new()?;
    let name = session.tmux_name.clone();
    let cmd = login::remote_command(ctx, &alias, run, session.login, &slurm::wait(&marker, &name, id), true);
    let mut child = cmd.spawn(Stdio::piped(), Stdio::piped(), Stdio::piped())?;
    let mut answer = child.stdin.take();
    let events = read_events(&mut child, marker, WaitEvent::parse);
    let begun = Instant::now();
    let mut progress = Some(Progress::start(&format!("job {id} submitted on {alias}")));
    let mut log = Vec::new();
    let result = loop {
        let event = match events.recv_timeout(Duration::from_millis(200)) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                if detach && begun.elapsed() >= DETACHED_WAIT {
                    break Ok(Waited::Queued);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break Err(lost(&mut child, &alias, id)),
        };
        match event {
            WaitEvent::Waiting { state, reason, start } => {
                if let Some(p) = progress.take() {
                    p.finish();
                }
                progress = Some(Progress::start(&queued(&alias, id, &state, &reason, &start)));
                if let Some(job) = session.job.as_mut() {
                    job.state = Some(state);
                    job.reason = Some(reason);
                }
                let _ = run.write_session(session);
            }
            WaitEvent::Running {
                node,
                pid,
                port,
                listen,
            } => {
                if !node.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
                    break Err(anyhow::anyhow!(
                        "job {id} reported an odd node name: {}",
                        for_terminal(&node)
                    ));
                }
                if let Some(p) = progress.take() {
                    p.finish();
                }
                progress = Some(Progress::start(&format!("job {id} runs on {node}: starting Jupyter")));
                session.remote_node = Some(node.clone());
                session.remote_pid = Some(pid);
                session.remote_port = Some(port);
                if let Some(job) = session.job.as_mut() {
                    job.node = Some(node.clone());
                    job.state = Some("RUNNING".into());
                    job.reason = None;
                }
                let (check, learned) = reach_node(ctx, run, session, &node, &listen, answer.take());
                run.write_session(session)?;
                // The supervisor connects while Jupyter starts: the rest of the job's report
                // (its end, its log) is watched while waiting for the tunnel.
                if let Some(p) = progress.take() {
                    p.finish();
                }
                return Ok(Waited::Running(check, learned, JobWait::follow(child, events)));
            }
            WaitEvent::Ready => {}
            WaitEvent::Log(line) => log.push(for_terminal(&line)),
            WaitEvent::Ended { state, reason } => {
                // The log lines follow the end line: give them a moment.
                while let Ok(WaitEvent::Log(line)) = events.recv_timeout(Duration::from_millis(500)) {
                    log.push(for_terminal(&line));
                }
                if let Some(job) = session.job.as_mut() {
                    job.state = Some(state.clone());
                    job.reason = Some(reason.clone());
                }
                let _ = run.write_session(session);
                let said = slurm::describe(&state, &reason);
                break Err(if log.is_empty() {
                    anyhow::anyhow!("job {id} on {alias} ended before Jupyter answered: {said}")
                } else {
                    anyhow::anyhow!(
                        "job {id} on {alias} ended before Jupyter answered: {said}; its log ends:\n{}",
                        log.join("\n")
                    )
                });
            }
        }
    };
    if let Some(p) = progress.take() {
        p.finish();
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The spinner's line while the job waits: its state, why, and Slurm's expected start.
fn queued(alias: &Alias, id: &str, state: &str, reason: &str, start: &str) -> String {
    let start = if start.is_empty() || start == "N/A" {
        String::new()
    } else {
        format!(", expected to start {start}")
    };
    format!("job {id} on {alias}: {}{start}", slurm::describe(state, reason))
}

/// The wait's connection ended before the job reported.
fn lost(child: &mut Child, alias: &Alias, id: &str) -> anyhow::Error {
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    anyhow::anyhow!(
        "lost the connection to {alias} while waiting for job {id} (the job stays: `jssh up {alias}` \
         attaches, `jssh down {alias}` cancels it): {}",
        ssh_stderr(stderr.as_bytes()).join("; ")
    )
}

/// How the tunnel will reach the job's node, from the job's `listen` word: `loopback` (ssh to
/// the node, checked while Jupyter starts), `interface` (through the login host, nothing to
/// check), or `ask`: ssh to the node is tried now, and the answer goes to the job on the
/// wait's stdin. Returns the check's channel, and what was learned when the job asked.
fn reach_node(
    ctx: &Ctx,
    run: &StateDir,
    session: &mut Session,
    node: &str,
    listen: &str,
    answer: Option<std::process::ChildStdin>,
) -> (Receiver<Result<()>>, Option<Learned>) {
    let done = || {
        let (tx, rx) = mpsc::channel();
        let _ = tx.send(Ok(()));
        rx
    };
    let (reach, check, learned) = match Reach::of_listen(listen) {
        Some(Reach::NodeSsh) => (Reach::NodeSsh, check_node(ctx, run, session, node), None),
        Some(Reach::NodePort) => (Reach::NodePort, done(), None),
        None => {
            let tried = check_node(ctx, run, session, node)
                .recv()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the check did not finish")));
            let (reach, why) = match tried {
                Ok(()) => (Reach::NodeSsh, None),
                Err(e) => (Reach::NodePort, Some(format!("{e:#}"))),
            };
            if let Some(mut stdin) = answer {
                let _ = writeln!(stdin, "{}", reach.listen());
            }
            (reach, done(), Some(Learned { reach, why }))
        }
    };
    if let Some(job) = session.job.as_mut() {
        job.reach = reach;
    }
    (check, learned)
}

/// Checks, while Jupyter starts, that ssh reaches the node through the login host (mode a of
/// issue 12): the supervisor's tunnel goes that way.
fn check_node(ctx: &Ctx, run: &StateDir, session: &Session, node: &str) -> Receiver<Result<()>> {
    let (tx, rx) = mpsc::channel();
    let ssh = slurm::node_ssh(&ctx.ssh, &session.alias, run, session.login, node);
    let alias = session.alias.clone();
    let node = node.to_owned();
    std::thread::spawn(move || {
        let _ = all_signals().thread_block();
        let result = ssh.exec(&alias, "true", true).output().and_then(|out| {
            if out.status.success() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "ssh cannot reach {node} through {alias} ({})",
                    ssh_stderr(&out.stderr).join("; ")
                ))
            }
        });
        let _ = tx.send(result);
    });
    rx
}

/// `squeue` for the job, over the login.
pub(crate) fn query(ctx: &Ctx, alias: &Alias, run: &StateDir, login: LoginKind, id: &str) -> Result<Query> {
    let marker = Marker::new()?;
    let out = login::remote_command(ctx, alias, run, login, &slurm::query(&marker, id), true).output()?;
    Ok(Query::parse(
        marker.reply(&String::from_utf8_lossy(&out.stdout)).unwrap_or_default(),
    ))
}

/// `scancel`, confirmed; what Slurm said last (`cancelled STATE` or `still STATE`).
pub(crate) fn cancel(ctx: &Ctx, alias: &Alias, run: &StateDir, session: &Session) -> Option<String> {
    let id = session.job.as_ref()?.id.as_deref()?;
    let marker = Marker::new().ok()?;
    let command = slurm::cancel(&marker, &session.tmux_name, id);
    let out = login::remote_command(ctx, alias, run, session.login, &command, true)
        .output()
        .ok()?;
    let said = marker.reply(&String::from_utf8_lossy(&out.stdout))?.trim().to_owned();
    Some(said)
}
