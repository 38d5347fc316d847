//! One file per subcommand; this module dispatches and holds what several of them share.

mod attach;
mod doctor;
mod down;
mod generate;
mod hosts;
mod jupyter;
mod logs;
mod password;
mod setup;
mod status;
mod up;
mod url;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::UsageError;
use crate::cli::{Cli, Command, GlobalArgs};
use crate::paths::Paths;
use crate::profile::{Profile, Profiles};
use crate::ssh::Ssh;
use crate::state::{self, RunDir};
use crate::target::Alias;

/// What every subcommand needs: where files are, and how to call OpenSSH.
pub(crate) struct Ctx {
    pub(crate) paths: Paths,
    pub(crate) ssh: Ssh,
}

impl Ctx {
    fn new(global: &GlobalArgs) -> Result<Self> {
        let paths = Paths::resolve(global.ssh_config.clone())?;
        let ssh = Ssh::new(paths.ssh_config_flag(), global.connect_timeout);
        Ok(Self { paths, ssh })
    }
}

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    let ok = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Setup(args) => ok(setup::run(&Ctx::new(&cli.global)?, &args)),
        Command::Up(args) => up::run(&Ctx::new(&cli.global)?, &args),
        Command::Down(args) => ok(down::run(&Ctx::new(&cli.global)?, &args)),
        Command::Status(args) => ok(status::run(&Ctx::new(&cli.global)?, &args)),
        Command::Attach(args) => attach::run(&Ctx::new(&cli.global)?, &args.alias),
        Command::Logs(args) => ok(logs::run(&Ctx::new(&cli.global)?, &args)),
        Command::Url(args) => ok(url::print(&Ctx::new(&cli.global)?, &args.alias)),
        Command::Open(args) => ok(url::open(&Ctx::new(&cli.global)?, &args.alias)),
        Command::Jupyter(args) => ok(jupyter::run(&Ctx::new(&cli.global)?, &args)),
        Command::Password(args) => ok(password::run(&Ctx::new(&cli.global)?, &args)),
        Command::Doctor(args) => doctor::run(&Ctx::new(&cli.global)?, &args),
        Command::Hosts(args) => ok(hosts::run(&Ctx::new(&cli.global)?, &args)),
        Command::Completions(args) => ok(generate::completions(args.shell)),
        Command::Man(args) => ok(generate::man(args.subcommand.as_deref())),
        Command::Supervise(args) => supervise(&cli.global, &args.alias, args.foreground),
    }
}

/// `jssh-supervisor supervise ALIAS --ssh-config FILE --connect-timeout N [--foreground]`,
/// exactly as `jssh up` starts it, parsed without clap (see `supervisor_main`).
pub(crate) fn supervise_args(args: &[std::ffi::OsString]) -> Result<ExitCode> {
    let (global, alias, foreground) = parse_supervise(args)
        .ok_or_else(|| crate::UsageError("jssh-supervisor is started by `jssh up`; run that instead".into()))?;
    supervise(&global, &alias, foreground)
}

fn parse_supervise(args: &[std::ffi::OsString]) -> Option<(GlobalArgs, Alias, bool)> {
    let [sub, alias, config_flag, config, timeout_flag, timeout, rest @ ..] = args else {
        return None;
    };
    let foreground = match rest {
        [] => false,
        [flag] if flag == "--foreground" => true,
        _ => return None,
    };
    if sub != "supervise" || config_flag != "--ssh-config" || timeout_flag != "--connect-timeout" {
        return None;
    }
    let alias: Alias = alias.to_str()?.parse().ok()?;
    let connect_timeout = timeout.to_str()?.parse().ok().filter(|t| (1..=3600).contains(t))?;
    Some((
        GlobalArgs {
            ssh_config: Some(config.into()),
            connect_timeout,
        },
        alias,
        foreground,
    ))
}

fn supervise(global: &GlobalArgs, alias: &Alias, foreground: bool) -> Result<ExitCode> {
    // 128 + the signal that stopped it, as a shell reports a signalled process.
    crate::tunnel::supervise(&Ctx::new(global)?, alias, foreground)
        .map(|signal| ExitCode::from(128 + u8::try_from(signal as i32).unwrap_or(0)))
}

/// The profile for `alias`, or a usage error listing the known ones.
pub(crate) fn lookup_profile(profiles: &Profiles, alias: &Alias) -> Result<Profile> {
    if let Some(profile) = profiles.get(alias) {
        return Ok(profile.clone());
    }
    let known: Vec<String> = profiles.iter().map(|p| p.alias.to_string()).collect();
    let known = if known.is_empty() {
        "none yet".to_owned()
    } else {
        known.join(", ")
    };
    Err(UsageError(format!(
        "unknown alias {alias} (known: {known}): add it with `jssh setup {alias} --host HOST`"
    ))
    .into())
}

/// Stops a supervisor: TERM (it stops its ssh and exits), then KILL after a grace period.
pub(crate) fn stop_supervisor(run: &RunDir, pid: u32) -> Result<()> {
    let target = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while state::alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if state::alive(pid) {
        let _ = kill(target, Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(run.pid_path());
    Ok(())
}

/// Opens `url` in a browser through a private redirect page, so the token never shows up in
/// the browser's (or xdg-open's) argv.
pub(crate) fn open_url(run: &RunDir, url: &str) -> Result<()> {
    let page = format!(
        "<!DOCTYPE html>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"0;url={url}\">\n\
         <title>jssh</title>\n<p><a href=\"{url}\">Open Jupyter</a></p>\n"
    );
    crate::fsutil::write_atomic(&run.open_page(), page.as_bytes(), crate::fsutil::PRIVATE_FILE)?;
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let cmd = crate::process::Cmd::new(opener).arg(run.open_page());
    let status = cmd.run_interactive()?;
    if !status.success() {
        anyhow::bail!("`{cmd}` failed ({status}): open this URL yourself: {url}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    #[test]
    fn the_supervisor_starts_without_clap_only_in_its_own_shape() {
        let (global, alias, foreground) =
            parse_supervise(&words("supervise gpu --ssh-config /c --connect-timeout 7 --foreground")).unwrap();
        assert_eq!((alias.as_str(), global.connect_timeout, foreground), ("gpu", 7, true));
        assert_eq!(global.ssh_config.as_deref(), Some(std::path::Path::new("/c")));
        for other in [
            "up gpu --ssh-config /c --connect-timeout 7",
            "supervise -oX --ssh-config /c --connect-timeout 7",
            "supervise gpu --ssh-config /c --connect-timeout x",
            "supervise gpu --ssh-config /c --connect-timeout 0",
            "supervise gpu --ssh-config /c --connect-timeout 7 --extra",
            "supervise gpu",
        ] {
            assert!(parse_supervise(&words(other)).is_none(), "{other}");
        }
    }
}
