//! `jssh logs`: the supervisor's log, or (`--remote`) the remote Jupyter's, made safe for the
//! terminal.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Ctx;
use super::tail::Follower;
use crate::cli::LogsArgs;
use crate::remote::{self, Marker};
use crate::sanitize::for_terminal;
use crate::state::StateDir;

pub(crate) fn run(ctx: &Ctx, args: &LogsArgs) -> Result<()> {
    ctx.profile(&args.alias)?;
    if args.remote {
        return remote_log(ctx, args);
    }
    let run = StateDir::new(&ctx.paths, &args.alias);
    let path = run.log_path();
    let mut out = std::io::stdout().lock();
    // The events before the last rotation first, then the rest.
    let rotated = run.rotated_log_path();
    if let Ok(mut older) = Follower::open(&rotated, 0) {
        older
            .copy_new(&mut out)
            .with_context(|| format!("could not show {}", rotated.display()))?;
    }
    let Ok(mut log) = Follower::open(&path, 0) else {
        bail!(
            "no log for {} yet: it appears with `jssh up {}`",
            args.alias,
            args.alias
        );
    };
    log.copy_new(&mut out)
        .with_context(|| format!("could not show {}", path.display()))?;
    if !args.follow {
        return Ok(());
    }
    loop {
        std::thread::sleep(Duration::from_millis(250));
        log.copy_new(&mut out)
            .with_context(|| format!("could not show {}", path.display()))?;
    }
}

fn remote_log(ctx: &Ctx, args: &LogsArgs) -> Result<()> {
    let session = remote::session_name(&args.alias);
    let marker = Marker::new()?;
    let cmd = ctx
        .ssh
        .exec(&args.alias, &remote::log(&marker, &session, args.follow), false);
    let mut child = cmd.spawn(Stdio::inherit(), Stdio::piped(), Stdio::inherit())?;
    let mut out = std::io::stdout().lock();
    if let Some(stdout) = child.stdout.take() {
        // What a login shell printed before the script (a greeting, a title) is not the log.
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        for line in lines.by_ref() {
            if marker.is(&line) {
                break;
            }
        }
        for line in lines {
            writeln!(out, "{}", for_terminal(&line))?;
            out.flush()?;
        }
    }
    let status = child.wait().context("could not wait for ssh")?;
    if !status.success() {
        bail!("could not read the remote log ({status})");
    }
    Ok(())
}
