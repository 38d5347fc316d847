//! `jssh attach`: replace jssh with `ssh -t ALIAS tmux attach`, so ssh's exit status is ours.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::Ctx;
use crate::remote;
use crate::state::StateDir;
use crate::target::Alias;

pub(crate) fn run(ctx: &Ctx, alias: &Alias) -> Result<ExitCode> {
    ctx.profile(alias)?;
    let session = StateDir::new(&ctx.paths, alias).read_session()?;
    if let Some(session) = session.as_ref().filter(|s| s.job.is_some()) {
        let id = session.job.as_ref().and_then(|j| j.id.as_deref()).unwrap_or("?");
        bail!(
            "{alias}'s Jupyter runs as Slurm job {id}, not in a tmux session: `jssh logs {alias} --remote -f` \
             follows its log"
        );
    }
    let node = session.and_then(|s| s.remote_node);
    let cmd = ctx
        .ssh
        .exec_tty(alias, &remote::attach(&remote::session_name(alias), node.as_deref()));
    let err = cmd.command()?.exec();
    Err(err).with_context(|| format!("could not run `{cmd}`"))
}
