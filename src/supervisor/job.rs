//! A tunnel to Jupyter running as a Slurm job: the job's end is asked of Slurm whenever the
//! tunnel gives a reason to (Jupyter exited, the node refuses connections) and once a minute,
//! and then the tunnel stops with the job's state; nothing is resubmitted. A warning goes out
//! a while before the walltime ends.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Supervisor;
use crate::platform;
use crate::process::Cmd;
use crate::remote::Marker;
use crate::slurm::{self, Query};
use crate::state::unix_now;

/// How often a healthy tunnel asks Slurm about its job (for the walltime's end, which an
/// admin may move, and a job ended while the tunnel was idle).
pub(super) const JOB_CHECK_EVERY: Duration = Duration::from_mins(1);
/// Set back this much at the start, the first question comes a few seconds in, over the
/// tunnel's connection.
pub(super) const FIRST_JOB_CHECK: Duration = Duration::from_secs(57);
/// After a failed reconnect, Slurm is asked at most this often.
pub(super) const JOB_CHECK_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// The error a supervisor ends with when its job has ended: its phase becomes `job-ended`.
#[derive(Debug)]
pub(crate) struct JobEnded(pub(crate) String);

impl std::fmt::Display for JobEnded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JobEnded {}

impl Supervisor {
    /// A command for the login host, never the node: over the login a human answered, else
    /// a connection of its own.
    fn on_login(&self, command: &str) -> Cmd {
        match self.session.login {
            crate::profile::LoginKind::Prompt => {
                self.login_ssh
                    .exec_over_only(&self.alias, &self.run.login_control(), command)
            }
            crate::profile::LoginKind::Key => self.login_ssh.exec(&self.alias, command, true),
        }
    }

    /// Asks Slurm about the job (on the node over the tunnel's connection where it answers,
    /// else on the login host). Fails with [`JobEnded`] once the job is over.
    pub(super) fn job_check(&mut self) -> Result<()> {
        let Some(id) = self.session.job.as_ref().and_then(|j| j.id.clone()) else {
            return Ok(());
        };
        self.job_checked = Instant::now();
        let Ok(marker) = Marker::new() else { return Ok(()) };
        let script = slurm::query(&marker, &id);
        let ask = |cmd: Cmd| {
            cmd.output_within(Duration::from_secs(20))
                .ok()
                .map_or(Query::Unknown, |out| {
                    Query::parse(marker.reply(&String::from_utf8_lossy(&out.stdout)).unwrap_or_default())
                })
        };
        let mut answer = match &self.active {
            Some(active) => ask(self.over(&active.control.clone(), &script)),
            None => Query::Unknown,
        };
        if answer == Query::Unknown {
            answer = ask(self.on_login(&script));
        }
        let (state, reason) = match answer {
            Query::Unknown => return Ok(()),
            Query::Gone => ("gone".to_owned(), String::new()),
            Query::State {
                state,
                reason,
                ends_unix,
                ..
            } => {
                if let Some(job) = self.session.job.as_mut() {
                    job.ends_unix = ends_unix.or(job.ends_unix);
                }
                (state, reason)
            }
        };
        let live = slurm::is_live(&state);
        if let Some(job) = self.session.job.as_mut() {
            job.state = Some(state.clone());
            job.reason = (!live).then(|| reason.clone());
        }
        self.save();
        if live {
            self.walltime_warning();
            return Ok(());
        }
        let why = format!("the Slurm job {id} ended: {}", slurm::describe(&state, &reason));
        platform::notify("jssh", &format!("{}: {why}", self.alias));
        Err(JobEnded(why).into())
    }

    /// Once, `warn_minutes` before the walltime ends: the log, the status, a notification.
    pub(super) fn walltime_warning(&mut self) {
        let Some(job) = self.session.job.as_ref() else { return };
        let (Some(left), false) = (job.walltime_left(unix_now()), job.warned) else {
            return;
        };
        let warn = i64::try_from(job.warn_minutes.saturating_mul(60)).unwrap_or(i64::MAX);
        if left > warn {
            return;
        }
        let id = job.id.clone().unwrap_or_default();
        let why = format!(
            "the walltime of Slurm job {id} ends in {} min: save your work (the notebook stops with the job)",
            left.max(0) / 60
        );
        if let Some(job) = self.session.job.as_mut() {
            job.warned = true;
        }
        self.event(&why);
        self.session.last_error = Some(why.clone());
        self.save();
        platform::notify("jssh", &format!("{}: {why}", self.alias));
    }

    /// On a tick: the walltime warning (a clock read), and Slurm asked when it is time.
    pub(super) fn job_tick(&mut self, after_failure: bool) -> Result<()> {
        if self.session.job.is_none() {
            return Ok(());
        }
        self.walltime_warning();
        let every = if after_failure {
            JOB_CHECK_AFTER_FAILURE
        } else {
            JOB_CHECK_EVERY
        };
        if self.job_checked.elapsed() >= every {
            self.job_check()?;
        }
        Ok(())
    }
}
