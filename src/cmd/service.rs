//! `jssh service install|remove|status`, and the hidden `jssh service run ALIAS` that a
//! service starts (see [`crate::service`]).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, Signal};

use super::Ctx;
use crate::cli::{GlobalArgs, ServiceAction, ServiceAliases};
use crate::platform::sd_notify::Notifier;
use crate::service::{self, Manager, Program, STOPPED_ON_PURPOSE, ServiceDir};
use crate::state::{Phase, StateDir};
use crate::supervisor::handle;
use crate::target::Alias;

/// The default timeout of `--connect-timeout` (see [`GlobalArgs`]): not repeated in a unit.
const DEFAULT_CONNECT_TIMEOUT: u32 = 10;

pub(crate) fn run(ctx: &Ctx, global: &GlobalArgs, action: &ServiceAction) -> Result<ExitCode> {
    let dir = service_dir()?;
    match action {
        ServiceAction::Install(which) => install(ctx, global, &dir, which),
        ServiceAction::Remove(which) => remove(&dir, which),
        ServiceAction::Status => status(ctx, &dir),
        ServiceAction::Run(alias) => return run_unit(ctx, global, &alias.alias),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// Where the user's units live: `JSSH_SERVICE_DIR` (for tests and packagers), else the
/// manager's own per-user directory. `JSSH_SERVICE_MANAGER=systemd|launchd` overrides the
/// system's manager (so the tests here can write and check a LaunchAgent).
fn service_dir() -> Result<ServiceDir> {
    let manager = match std::env::var("JSSH_SERVICE_MANAGER").ok().as_deref() {
        None | Some("") => {
            if crate::platform::LAUNCH_AGENTS {
                Manager::Launchd
            } else {
                Manager::Systemd
            }
        }
        Some("systemd") => Manager::Systemd,
        Some("launchd") => Manager::Launchd,
        Some(other) => {
            return Err(
                crate::UsageError(format!("JSSH_SERVICE_MANAGER={other:?} is neither systemd nor launchd")).into(),
            );
        }
    };
    let from_env = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = || from_env("HOME").context("HOME is not set: cannot find the user's service directory");
    let dir = match (from_env("JSSH_SERVICE_DIR"), manager) {
        (Some(dir), _) => std::path::absolute(dir).context("could not read the current directory")?,
        (None, Manager::Systemd) => match from_env("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
            Some(config) => config.join("systemd/user"),
            None => home()?.join(".config/systemd/user"),
        },
        (None, Manager::Launchd) => home()?.join("Library/LaunchAgents"),
    };
    Ok(ServiceDir { manager, dir })
}

/// The aliases named (each must be set up), or with `--all` every set-up alias.
fn aliases(ctx: &Ctx, which: &ServiceAliases) -> Result<Vec<Alias>> {
    let profiles = ctx.profiles()?;
    if which.all {
        return Ok(profiles.iter().map(|p| p.alias.clone()).collect());
    }
    which
        .aliases
        .iter()
        .map(|alias| Ok(profiles.lookup(alias)?.alias.clone()))
        .collect()
}

/// What the unit runs: this jssh, the global flags given now, and the resolved config and
/// state dirs (the service manager's environment may lack the variables that chose them).
fn program(ctx: &Ctx, global: &GlobalArgs) -> Result<Program> {
    let exe = std::env::current_exe().context("could not find the jssh executable")?;
    Ok(Program {
        exe,
        global: global_flags(ctx, global),
        env: vec![
            ("JSSH_CONFIG_DIR".into(), ctx.paths.config_dir.clone()),
            ("JSSH_STATE_DIR".into(), ctx.paths.state_dir.clone()),
        ],
    })
}

fn global_flags(ctx: &Ctx, global: &GlobalArgs) -> Vec<std::ffi::OsString> {
    let mut flags = Vec::new();
    if let Some(config) = ctx.paths.ssh_config_flag() {
        flags.extend(["--ssh-config".into(), config.as_os_str().to_owned()]);
    }
    if global.connect_timeout != DEFAULT_CONNECT_TIMEOUT {
        flags.extend(["--connect-timeout".into(), global.connect_timeout.to_string().into()]);
    }
    flags
}

fn install(ctx: &Ctx, global: &GlobalArgs, dir: &ServiceDir, which: &ServiceAliases) -> Result<()> {
    let aliases = aliases(ctx, which)?;
    if aliases.is_empty() {
        println!("no aliases are set up yet: `jssh setup ALIAS --host HOST` first");
        return Ok(());
    }
    let changed = dir.install(&program(ctx, global)?, &aliases)?;
    for path in &changed {
        println!("wrote {}", path.display());
    }
    if changed.is_empty() {
        println!("already installed in {}", dir.dir.display());
    }
    let names: Vec<String> = aliases.iter().map(ToString::to_string).collect();
    match dir.manager {
        Manager::Systemd => {
            let units: Vec<String> = aliases.iter().map(service::systemd_instance).collect();
            println!(
                "{} start at each login; to start them now:\n  systemctl --user daemon-reload && systemctl --user start {}",
                names.join(", "),
                units.join(" ")
            );
            if !lingering() {
                println!(
                    "to start them at boot, before anyone logs in (jssh does not do this for you):\n  loginctl enable-linger {}",
                    user_name()
                );
            }
        }
        Manager::Launchd => {
            let uid = nix::unistd::getuid();
            println!("{} start at each login; to start them now:", names.join(", "));
            for alias in &aliases {
                println!("  launchctl bootstrap gui/{uid} {}", dir.unit_path(alias).display());
            }
        }
    }
    println!("`jssh down ALIAS` stops a tunnel until the next login; `jssh service remove ALIAS` stops keeping it up");
    Ok(())
}

fn remove(dir: &ServiceDir, which: &ServiceAliases) -> Result<()> {
    let aliases = if which.all {
        dir.installed()?
    } else {
        which.aliases.clone()
    };
    let removed = dir.remove(&aliases)?;
    for path in &removed {
        println!("removed {}", path.display());
    }
    if removed.is_empty() {
        println!("nothing to remove in {}", dir.dir.display());
        return Ok(());
    }
    match dir.manager {
        Manager::Systemd => {
            let units: Vec<String> = aliases.iter().map(service::systemd_instance).collect();
            println!(
                "a running tunnel keeps running until stopped:\n  systemctl --user stop {} && systemctl --user daemon-reload",
                units.join(" ")
            );
        }
        Manager::Launchd => {
            let uid = nix::unistd::getuid();
            println!("a running tunnel keeps running until stopped:");
            for alias in &aliases {
                println!(
                    "  launchctl bootout gui/{uid}/{}",
                    service::launchd_label(alias.as_str())
                );
            }
        }
    }
    Ok(())
}

fn status(ctx: &Ctx, dir: &ServiceDir) -> Result<()> {
    let installed = dir.installed()?;
    if installed.is_empty() {
        println!("no jssh service is installed (in {})", dir.dir.display());
        return Ok(());
    }
    for alias in &installed {
        let run = StateDir::new(&ctx.paths, alias);
        let tunnel = match handle::find(&run) {
            Some(pid) => format!("tunnel up (supervisor pid {pid})"),
            None => "tunnel down (it comes back at the next login, or when the service is started)".to_owned(),
        };
        println!("{alias}: {} — {tunnel}", dir.unit_path(alias).display());
    }
    if dir.manager == Manager::Systemd {
        if lingering() {
            println!("lingering is on: the services start at boot");
        } else {
            println!(
                "the services start at login; at boot too after `loginctl enable-linger {}`",
                user_name()
            );
        }
    }
    Ok(())
}

fn user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "$USER".to_owned(), |u| u.name)
}

/// Whether systemd-logind starts this user's manager at boot (`loginctl enable-linger`).
fn lingering() -> bool {
    std::path::Path::new("/var/lib/systemd/linger")
        .join(user_name())
        .exists()
}

/// The signals that stop a unit (`systemctl stop` sends TERM to every process of it).
fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// What a service runs: the foreground `jssh up ALIAS` (the same supervisor, lease and log as
/// by hand), its output passed on to the journal without the token. A tunnel already running
/// (started by hand) is left alone and waited for. Exits [`STOPPED_ON_PURPOSE`] when the
/// tunnel was stopped on purpose (`jssh down`, a TERM), 1 when it failed (the manager then
/// starts it again).
///
/// Under a `Type=notify` unit the supervisor tells systemd when the tunnel is ready and how
/// it is (see `supervisor/readiness.rs`); this process speaks only for what it does itself.
fn run_unit(ctx: &Ctx, global: &GlobalArgs, alias: &Alias) -> Result<ExitCode> {
    let run = StateDir::new(&ctx.paths, alias);
    let notifier = Notifier::from_env();
    let tell = |lines: &str| {
        if let Some(notifier) = &notifier {
            notifier.send(lines);
        }
    };
    loop {
        if let Some(pid) = handle::find(&run) {
            println!("{alias}: a tunnel already runs (supervisor pid {pid}): waiting for it to end");
            // Started by hand, it does not speak for the unit: its being there is the start.
            tell(&format!(
                "READY=1\nSTATUS=a tunnel started by hand runs (supervisor pid {pid}): waiting for it to end"
            ));
            wait_for_supervisor(&run)?;
            // Its session is gone (`jssh down`) or says it was stopped: leave it down.
            if run.read_session()?.is_none_or(|s| s.phase == Phase::Stopped) {
                tell("STOPPING=1\nSTATUS=stopped on purpose (`jssh down`)");
                return Ok(stopped_on_purpose(alias));
            }
            continue;
        }
        tell(&format!(
            "STATUS=starting: `jssh up {alias}` (Jupyter's start, or a Slurm job's wait in the queue, may take minutes)"
        ));
        // The stop signals wait until `up` has ended (it ends when its supervisor does, which
        // gets them too), so its last lines still reach the journal.
        stop_signals().thread_block().context("could not block signals")?;
        let status = run_up(ctx, global, alias);
        stop_signals().thread_unblock().context("could not unblock signals")?;
        match status?.code() {
            // Another supervisor appeared meanwhile, and `up` reused it.
            Some(0) => {}
            // 128 + SIGHUP, SIGINT, SIGTERM: stopped on purpose.
            Some(129 | 130 | 143) => return Ok(stopped_on_purpose(alias)),
            // A Slurm job that ended (walltime, scancel) is not submitted again behind the
            // user's back: the manager's restart would queue a new job, maybe for hours.
            _ if run
                .read_session()
                .ok()
                .flatten()
                .is_some_and(|s| s.phase == Phase::JobEnded) =>
            {
                println!(
                    "{alias}: the Slurm job ended: the service does not submit another (`jssh up {alias}` \
                     or restarting the service does)"
                );
                return Ok(ExitCode::from(STOPPED_ON_PURPOSE));
            }
            _ => return Ok(ExitCode::FAILURE),
        }
    }
}

/// Blocks until the supervisor holding `run`'s lease ends: a shared lock waits for its
/// exclusive one, without polling.
fn wait_for_supervisor(run: &StateDir) -> Result<()> {
    let path = run.lease_path();
    let file = std::fs::File::open(&path).with_context(|| format!("could not open {}", path.display()))?;
    let _lock = Flock::lock(file, FlockArg::LockShared)
        .map_err(|(_, e)| e)
        .with_context(|| format!("could not wait on {}", path.display()))?;
    Ok(())
}

fn stopped_on_purpose(alias: &Alias) -> ExitCode {
    println!(
        "{alias}: the tunnel was stopped on purpose (`jssh down`?): the service leaves it down until \
         the next login, or until the service is started again"
    );
    ExitCode::from(STOPPED_ON_PURPOSE)
}

/// Runs the foreground `jssh up ALIAS`, passing its output on with any token hidden: the
/// journal is readable by more people than the user (the `adm` group, for one).
fn run_up(ctx: &Ctx, global: &GlobalArgs, alias: &Alias) -> Result<std::process::ExitStatus> {
    let exe = std::env::current_exe().context("could not find the jssh executable")?;
    let mut child = std::process::Command::new(exe)
        .args(global_flags(ctx, global))
        .args(["up".as_ref(), alias.as_str().as_ref()] as [&std::ffi::OsStr; 2])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("could not start `jssh up`")?;
    if let Some(out) = child.stdout.take() {
        let mut stdout = std::io::stdout().lock();
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = writeln!(stdout, "{}", without_token(&line));
            let _ = stdout.flush();
        }
    }
    child.wait().context("could not wait for `jssh up`")
}

/// `line` with the value of every `token=` hidden.
fn without_token(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("token=") {
        let (before, after) = rest.split_at(at + "token=".len());
        out.push_str(before);
        out.push('…');
        let end = after
            .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_reach_the_journal() {
        assert_eq!(
            without_token("http://127.0.0.1:8888/lab?token=abc123"),
            "http://127.0.0.1:8888/lab?token=…"
        );
        assert_eq!(without_token("a?token=x&b=1 token=y z"), "a?token=…&b=1 token=… z");
        assert_eq!(without_token("no secret here"), "no secret here");
        assert_eq!(without_token("token="), "token=…");
    }
}
