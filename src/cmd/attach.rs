//! `jssh attach`: replace jssh with `ssh -t ALIAS tmux attach`, so ssh's exit status is ours.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::Ctx;
use crate::remote;
use crate::state::StateDir;
use crate::target::Alias;

pub(crate) fn run(ctx: &Ctx, alias: &Alias) -> Result<ExitCode> {
    ctx.profile(alias)?;
    let node = StateDir::new(&ctx.paths, alias)
        .read_session()?
        .and_then(|s| s.remote_node);
    let cmd = ctx
        .ssh
        .exec_tty(alias, &remote::attach(&remote::session_name(alias), node.as_deref()));
    let err = cmd.command()?.exec();
    Err(err).with_context(|| format!("could not run `{cmd}`"))
}
