//! `jssh down`: stop the supervisor (and its ssh), then the remote Jupyter unless kept.

use anyhow::{Context, Result};

use super::{Ctx, lookup_profile, stop_supervisor};
use crate::cli::DownArgs;
use crate::profile::Profiles;
use crate::remote;
use crate::state::RunDir;
use crate::target::Alias;

pub(crate) fn run(ctx: &Ctx, args: &DownArgs) -> Result<()> {
    let profiles = Profiles::load(&ctx.paths.hosts_file())?;
    let aliases: Vec<Alias> = match &args.alias {
        Some(alias) => vec![lookup_profile(&profiles, alias)?.alias],
        None => profiles
            .iter()
            .map(|p| p.alias.clone())
            .filter(|a| RunDir::new(&ctx.paths, a).exists())
            .collect(),
    };
    let mut first_error = None;
    for alias in &aliases {
        if let Err(e) = down(ctx, alias, args.keep_remote) {
            eprintln!("jssh: error: {e:#}");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn down(ctx: &Ctx, alias: &Alias, keep_remote: bool) -> Result<()> {
    let run = RunDir::new(&ctx.paths, alias);
    let _lock = run.lock()?;
    if let Some(pid) = run.live_supervisor() {
        stop_supervisor(&run, pid)?;
        println!("{alias}: stopped the tunnel");
    }
    if keep_remote {
        println!("{alias}: Jupyter keeps running (`jssh up {alias}` reconnects)");
        return Ok(());
    }
    let cmd = ctx.ssh.exec(alias, &remote::stop(&remote::session_name(alias)), true);
    let out = cmd
        .run()
        .with_context(|| format!("could not stop Jupyter on {alias}"))?;
    if String::from_utf8_lossy(&out.stdout).contains("stopped") {
        println!("{alias}: stopped Jupyter and removed its tmux session and token");
    } else {
        println!("{alias}: no Jupyter was running");
    }
    run.clear();
    Ok(())
}
