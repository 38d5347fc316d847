//! `jssh logs`: the supervisor's log, or (`--remote`) the remote Jupyter's, made safe for the
//! terminal.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Ctx;
use super::tail::Follower;
use crate::cli::LogsArgs;
use crate::remote;
use crate::sanitize::for_terminal;
use crate::state::StateDir;

pub(crate) fn run(ctx: &Ctx, args: &LogsArgs) -> Result<()> {
    ctx.profile(&args.alias)?;
    if args.remote {
        return remote_log(ctx, args);
    }
    let path = StateDir::new(&ctx.paths, &args.alias).log_path();
    let Ok(mut log) = Follower::open(&path, 0) else {
        bail!(
            "no log for {} yet: it appears with `jssh up {}`",
            args.alias,
            args.alias
        );
    };
    let mut out = std::io::stdout().lock();
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
    let cmd = ctx.ssh.exec(&args.alias, &remote::log(&session, args.follow), false);
    let mut child = cmd.spawn(Stdio::inherit(), Stdio::piped(), Stdio::inherit())?;
    let mut out = std::io::stdout().lock();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
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
