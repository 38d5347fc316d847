//! `jssh hosts`: the configured aliases.

use std::io::Write;

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::HostsArgs;

pub(crate) fn run(ctx: &Ctx, args: &HostsArgs) -> Result<()> {
    let profiles = ctx.profiles()?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let all: Vec<_> = profiles.iter().collect();
        serde_json::to_writer_pretty(&mut out, &all).context("could not write JSON")?;
        writeln!(out)?;
    } else if args.names {
        for p in profiles.iter() {
            writeln!(out, "{}", p.alias)?;
        }
    } else if profiles.iter().next().is_none() {
        eprintln!("no hosts yet: add one with `jssh setup ALIAS --host HOST`");
    } else {
        writeln!(out, "{:<16} {:<32} {:<12} {:>5}  JUMP", "ALIAS", "HOST", "USER", "PORT")?;
        for p in profiles.iter() {
            let jump = p.jump.as_ref().map_or("-", |j| j.as_str());
            writeln!(
                out,
                "{:<16} {:<32} {:<12} {:>5}  {jump}",
                p.alias, p.host, p.user, p.port
            )?;
        }
    }
    Ok(())
}
