//! `jssh url` and `jssh open`: the URL of a running tunnel.

use anyhow::{Result, bail};

use super::{Ctx, open_url};
use crate::state::{Session, StateDir};
use crate::supervisor::handle;
use crate::target::Alias;

/// The session of a live tunnel, or an error saying how to start one.
fn live(ctx: &Ctx, alias: &Alias) -> Result<(StateDir, Session)> {
    let run = StateDir::new(&ctx.paths, alias);
    match (handle::find(&run), run.read_session()?) {
        (Some(_), Some(session)) => Ok((run, session)),
        _ => bail!("no tunnel for {alias} is running: start one with `jssh up {alias} -d`"),
    }
}

pub(crate) fn print(ctx: &Ctx, alias: &Alias) -> Result<()> {
    println!("{}", live(ctx, alias)?.1.url());
    Ok(())
}

pub(crate) fn open(ctx: &Ctx, alias: &Alias) -> Result<()> {
    let (run, session) = live(ctx, alias)?;
    open_url(&run, &session.url())
}
