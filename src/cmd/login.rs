//! The one login a human answers, for hosts that ask for more than the key (a TOTP code, a
//! Duo push): `jssh up` makes it in the user's terminal, and everything else — the launch,
//! the supervisor's tunnel, its probes and remote checks — rides on that connection, so the
//! user answers once per login and nothing automatic ever logs in. When it ends (the network
//! dropped it, the server restarted), `jssh login ALIAS` makes a new one and hands it to the
//! running supervisor: the remote Jupyter and its kernels were never touched.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Ctx;
use crate::cli::LoginArgs;
use crate::process::Cmd;
use crate::profile::LoginKind;
use crate::sanitize::ssh_stderr;
use crate::ssh::LoginFailure;
use crate::state::{Phase, StateDir};
use crate::supervisor::handle;
use crate::target::Alias;

/// How [`log_in`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Login {
    /// The earlier login is still connected: nothing was asked.
    Reused,
    /// The user answered the server's prompts.
    Prompted,
    /// The key alone was enough this time (an ssh certificate, an agent key the server
    /// takes on its own): logins need no human now, and the supervisor may make its own.
    KeyOnly,
}

/// Makes sure the login a human answered for `alias` is connected, asking in the terminal
/// when it is not: one prompt (or push) per call at most, never in a loop.
pub(crate) fn log_in(ctx: &Ctx, alias: &Alias, run: &StateDir) -> Result<Login> {
    if handle::login_alive(run) {
        return Ok(Login::Reused);
    }
    if !can_prompt() {
        bail!(
            "{alias} asks for more than the key at login (a code or a push), and there is no terminal to ask on: \
             run `jssh up {alias}` (or `jssh login {alias}`) in a terminal, or set SSH_ASKPASS"
        );
    }
    run.ensure()?;
    run.prepare_control_dir()?;
    let control = run.login_control();
    // A socket left by a master that died would make the new one run without its own.
    let _ = std::fs::remove_file(&control);
    let log = run.log_path();
    let log_start = std::fs::metadata(&log).map_or(0, |m| m.len());
    eprintln!("{alias} asks for more than the key: log in once, and jssh keeps this login for the tunnel");
    let cmd = ctx.ssh.login_master(alias, &control, &log);
    // ssh asks on /dev/tty; its own stdout and stderr would stay open in the background
    // master, and hold a pipe to a caller (`url=$(jssh up …)`) open for its whole life.
    let status = cmd
        .spawn(Stdio::inherit(), Stdio::null(), Stdio::null())?
        .wait()
        .with_context(|| format!("could not wait for `{cmd}`"))?;
    let said = appended(&log, log_start);
    if !status.success() {
        let lines = ssh_stderr(said.as_bytes());
        let why = lines.last().map_or("no message", String::as_str);
        bail!("logging in to {alias} failed: {why}");
    }
    // With -f, ssh returns once authenticated; its control socket follows at once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !handle::login_alive(run) {
        if Instant::now() > deadline {
            bail!("logged in to {alias}, but its connection went away at once: see `jssh logs {alias}`");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(if key_was_enough(&said) {
        Login::KeyOnly
    } else {
        Login::Prompted
    })
}

/// A key host whose tunnel waits for the user (the server refused the key, or its host key
/// changed): one login with the key first, from here. ssh asks for the key's passphrase on
/// the terminal where the agent lost it (`AddKeysToAgent` then keeps it for the supervisor's
/// own logins), and what still fails is said now, before the supervisor is asked to try.
pub(crate) fn key_works(ctx: &Ctx, alias: &Alias) -> Result<()> {
    let out = ctx.ssh.login_check(alias, !can_prompt()).output()?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = ssh_stderr(&out.stderr).pop().unwrap_or_else(|| "no message".into());
    match LoginFailure::classify(out.status.code(), &stderr) {
        LoginFailure::AuthRefused => {
            bail!("{alias} still refuses the key ({said}): `jssh doctor {alias}` says what is wrong")
        }
        LoginFailure::HostKeyChanged | LoginFailure::HostKeyUnknown => {
            bail!("{alias}'s host key is still not the one known ({said}): `jssh doctor {alias}` says how to check it")
        }
        _ => bail!("could not log in to {alias} ({said})"),
    }
}

/// Ends the login a human answered, if one is connected: `jssh down`, a failed start, or a
/// start that found the key enough after all.
pub(crate) fn end(ctx: &Ctx, alias: &Alias, run: &StateDir) {
    if handle::login_alive(run) {
        let _ = ctx.ssh.exit_master(alias, &run.login_control()).output();
    }
}

/// Whether ssh can ask the user anything: a controlling terminal, or an askpass program.
fn can_prompt() -> bool {
    std::env::var_os("SSH_ASKPASS").is_some() || OpenOptions::new().read(true).write(true).open("/dev/tty").is_ok()
}

/// What ssh appended to its `-E` log since `start`.
fn appended(log: &std::path::Path, start: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log)
        && file.seek(SeekFrom::Start(start)).is_ok()
    {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// Whether the login succeeded on the key alone: at VERBOSE, ssh names the method that
/// completed it (`Authenticated to HOST ([ADDR]:PORT) using "publickey".`); after a second
/// factor that is the second method.
fn key_was_enough(log: &str) -> bool {
    log.lines()
        .rev()
        .find(|l| l.contains("Authenticated to "))
        .is_some_and(|l| l.trim_end().ends_with("using \"publickey\"."))
}

/// A remote command for `alias`: over the login a human answered where logins need one
/// (never a login of its own), else through the alias's own ssh config (`batch`: no prompt,
/// e.g. for a key's passphrase).
pub(crate) fn remote_command(
    ctx: &Ctx,
    alias: &Alias,
    run: &StateDir,
    login: LoginKind,
    command: &str,
    batch: bool,
) -> Cmd {
    match login {
        LoginKind::Prompt => ctx.ssh.exec_over_only(alias, &run.login_control(), command),
        LoginKind::Key => ctx.ssh.exec(alias, command, batch),
    }
}

/// `jssh login ALIAS`: a new login for a running tunnel whose login ended.
pub(crate) fn run(ctx: &Ctx, args: &LoginArgs) -> Result<()> {
    let alias = &args.alias;
    ctx.profile(alias)?;
    let run = StateDir::new(&ctx.paths, alias);
    if handle::find(&run).is_none() {
        bail!("no tunnel runs for {alias}: `jssh up {alias}` starts one, and asks you to log in");
    }
    let session = run.read_session()?.with_context(|| {
        format!("{alias}'s tunnel has no session file: `jssh down {alias}`, then `jssh up {alias}`")
    })?;
    match session.login {
        LoginKind::Key if session.phase != Phase::NeedsLogin => {
            println!("{alias} logs in with the key alone: the tunnel reconnects by itself");
            return Ok(());
        }
        // A key host waits only when the server refused the key (or its host key changed):
        // the user mended that, and asks for one more attempt.
        LoginKind::Key => key_works(ctx, alias)?,
        LoginKind::Prompt => {
            if log_in(ctx, alias, &run)? == Login::Reused && session.phase != Phase::NeedsLogin {
                println!("{alias} is logged in already: {}", session.url());
                return Ok(());
            }
        }
    }
    handle::retry_login(&run)?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while Instant::now() < deadline {
        if let Some(now) = run.read_session()? {
            if now.phase == Phase::Up {
                println!("logged in; {alias} is up again: {}", now.url());
                return Ok(());
            }
            if let Some(why) = handle::waiting_for_user(&run, &now) {
                bail!("{why}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "logged in, but the tunnel is not up after {} s: see `jssh logs {alias}`",
        args.timeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_completing_method_says_whether_a_human_was_needed() {
        let two = "Authenticated using \"publickey\" with partial success.\n\
                   Authenticated to 127.0.0.1 ([127.0.0.1]:2222) using \"keyboard-interactive\".\n";
        assert!(!key_was_enough(two));
        assert!(key_was_enough(
            "Authenticated to h ([10.0.0.1]:22) using \"publickey\".\n"
        ));
        assert!(!key_was_enough("debug1: nothing\n"));
    }
}
