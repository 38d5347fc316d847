//! Everything setup checks before it writes: the config ssh would use, whether the host
//! answers, the key install, and the login that proves the key works (and whether a second
//! factor follows it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::edits::Edits;
use super::taken::{rejected, undefined_name};
use crate::cmd::Ctx;
use crate::keys;
use crate::profile::{LoginKind, Profile};
use crate::sanitize::{for_terminal, ssh_stderr};
use crate::ssh::{Direct, LoginFailure, Ssh, accepted_key, key_load_error, parse_resolved, partial_success};
use crate::sshconfig;
use crate::target::{Alias, Jump};

/// A config for the checks before anything is written: the new block first (first value wins),
/// then the user's config and, when that is OpenSSH's default, the system one (`-F` skips it).
pub(super) fn verification_config(
    ctx: &Ctx,
    profile: &Profile,
    key: &Path,
    user_config_exists: bool,
) -> Result<String> {
    let mut text = sshconfig::render_block(profile, key, &ctx.paths.control_path())?;
    if user_config_exists {
        let _ = write!(text, "\nHost *\nInclude \"{}\"\n", ctx.paths.ssh_config.display());
    }
    if ctx.paths.is_default_config {
        text.push_str("\nHost *\nInclude /etc/ssh/ssh_config\n");
    }
    Ok(text)
}

/// What setup's errors say about reaching the host: a command that works before the alias
/// exists, and a proxy the user's config gives the alias, which ssh runs for every connection.
pub(super) struct Advice {
    pub(super) alias: Alias,
    pub(super) direct: Direct,
    pub(super) proxy: Option<String>,
    /// The key as the user knows it (a new one is verified from the scratch dir first).
    pub(super) key: PathBuf,
}

impl Advice {
    fn explain(&self, failure: LoginFailure) -> String {
        let advice = failure.explain(&self.alias, &self.direct);
        match (&self.proxy, failure) {
            (Some(proxy), LoginFailure::Unreachable | LoginFailure::Other) => format!("{advice} ({proxy})"),
            _ => advice,
        }
    }
}

/// ssh's stderr for a message, on one line: what went wrong, without `-v` chatter and without
/// ssh-copy-id's progress notes.
pub(super) fn ssh_said(stderr: &[u8]) -> String {
    let lines: Vec<String> = ssh_stderr(stderr)
        .into_iter()
        .filter(|l| !l.contains(": INFO: "))
        .collect();
    if lines.is_empty() {
        "ssh said nothing more".to_owned()
    } else {
        format!("ssh said: {}", lines.join("; "))
    }
}

/// A ProxyCommand or ProxyJump that the user's config gives the new alias (jssh's block sets
/// neither, unless `--jump`): it runs for every connection to the alias, so connection errors
/// must name it, and where it comes from (case 9 of issue 11). `resolved` and `trace` are
/// `ssh -G -vvv ALIAS` with the verification config.
pub(super) fn inherited_proxy(
    ssh: &Ssh,
    profile: &Profile,
    resolved: &BTreeMap<String, String>,
    trace: &str,
    check_config: &Path,
) -> Result<Option<String>> {
    let set = |key: &str| resolved.get(key).filter(|v| *v != "none");
    let (keyword, value) = match (set("proxycommand"), set("proxyjump")) {
        (Some(command), _) => ("ProxyCommand", command),
        (None, Some(jump)) if profile.jump.is_none() => ("ProxyJump", jump),
        _ => return Ok(None),
    };
    let other = ssh.resolve(&undefined_name("0")?).output()?;
    let every =
        parse_resolved(&String::from_utf8_lossy(&other.stdout)).get(&keyword.to_ascii_lowercase()) == Some(value);
    let files: Vec<(PathBuf, String)> = sshconfig::parse_trace(trace)
        .map(|t| t.files)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != check_config)
        .filter_map(|f| fs::read_to_string(&f).ok().map(|text| (f, text)))
        .collect();
    let at = sshconfig::setting_at(&files, keyword, value)
        .map(|(file, line)| format!(" ({} line {line})", file.display()))
        .unwrap_or_default();
    let alias = &profile.alias;
    let whom = if every { "every host" } else { alias.as_str() };
    Ok(Some(for_terminal(&format!(
        "your ssh config gives {whom} `{keyword} {value}`{at}, and jssh's {alias} inherits it"
    ))))
}

/// Fails fast, before a key is made or a password asked, when ssh rejects the config or the
/// host cannot be reached at all. Returns what later errors should say about reaching it.
pub(super) fn preflight(ctx: &Ctx, ssh: &Ssh, profile: &Profile, check_config: &Path) -> Result<Advice> {
    let alias = &profile.alias;
    let out = ssh.resolve_traced(alias).output()?;
    if !out.status.success() {
        // The user's files are named as they are; only jssh's new block is in the temporary file.
        return Err(rejected(
            ctx,
            alias,
            &out.stderr,
            check_config,
            Path::new("jssh's new block"),
        ));
    }
    let resolved = parse_resolved(&String::from_utf8_lossy(&out.stdout));
    let advice = Advice {
        alias: alias.clone(),
        direct: Direct::new(
            profile.user.as_str(),
            profile.host.as_str(),
            profile.port.get(),
            profile.jump.as_ref().map(Jump::as_str),
        ),
        proxy: inherited_proxy(
            ssh,
            profile,
            &resolved,
            &String::from_utf8_lossy(&out.stderr),
            check_config,
        )?,
        key: profile.identity.to_path_buf(),
    };
    if advice.proxy.is_some() || profile.jump.is_some() {
        return Ok(advice); // Only ssh itself knows how to get through the jump.
    }
    let host = resolved.get("hostname").map_or(alias.as_str(), String::as_str);
    let port = resolved.get("port").map_or("22", String::as_str);
    let timeout = Duration::from_secs(ctx.ssh.connect_timeout().into());
    let reach = || -> std::io::Result<()> {
        let mut last = std::io::Error::other("the name resolves to no address");
        for addr in (host, port.parse::<u16>().unwrap_or(22)).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    reach().with_context(|| {
        format!(
            "cannot reach {host} port {port}: check --host and --port, that sshd runs there, and your \
             network or VPN (or use --jump)"
        )
    })?;
    Ok(advice)
}

/// Runs ssh-copy-id. ssh asks for a password on the terminal (or SSH_ASKPASS), not stdin, so
/// its output can be captured for a clear error.
pub(super) fn install_key(ssh: &Ssh, public_key: &Path, advice: &Advice, scratch: &Path) -> Result<()> {
    let (home, public_key) = keys::stage_for_copy_id(public_key, scratch)?;
    let cmd = ssh.copy_id(&public_key, &advice.alias, &home);
    let out = cmd.output()?;
    if !out.status.success() {
        let failure = LoginFailure::classify(Some(255), &String::from_utf8_lossy(&out.stderr));
        // Not the command: it names a temporary config that is gone once setup returns.
        bail!(
            "installing the key failed: {}: ssh-copy-id {}: {}",
            advice.explain(failure),
            out.status,
            ssh_said(&out.stderr)
        );
    }
    Ok(())
}

/// Says how the verification login went, and records in the profile whether logins need a
/// human.
pub(super) fn report_verified(edits: &mut Edits, alias: &Alias, verified: Verified) {
    match verified {
        Verified::Key(elapsed) => println!(
            "verified: `ssh {}` logs in with the key ({:.2} s)",
            alias,
            elapsed.as_secs_f64()
        ),
        Verified::Prompted(elapsed) => {
            edits.profiles.set_login(alias, LoginKind::Prompt);
            println!(
                "verified: `ssh {}` logs in with the key and a second factor ({:.2} s); `jssh up {}` will ask \
                 for it once, and reconnects without asking until that login ends",
                alias,
                elapsed.as_secs_f64(),
                alias
            );
        }
        Verified::NeedsPrompt => {
            edits.profiles.set_login(alias, LoginKind::Prompt);
            println!(
                "the server accepts the key, then asks for a second factor, which needs a terminal: not \
                 verified further; `jssh up {alias}` in a terminal will ask for it once"
            );
        }
    }
}

/// How the verification login went.
#[derive(Debug, Clone, Copy)]
pub(super) enum Verified {
    /// The key alone logs in.
    Key(Duration),
    /// The key, then a second factor the user answered on the terminal.
    Prompted(Duration),
    /// The key was accepted and a second factor asked for, with no terminal to answer it.
    NeedsPrompt,
}

/// Logs in with the key only and runs `true`. Returns how the login went when the server
/// accepted `key` itself (alone, or as the first of two factors: then once more with the
/// terminal for the second, if there is one); `None` when it did not but that may still be
/// fixed by installing it (not `strict`); an error saying which step failed otherwise.
pub(super) fn login_with(
    ssh: &Ssh,
    advice: &Advice,
    key: &Path,
    batch: bool,
    strict: bool,
) -> Result<Option<Verified>> {
    let start = Instant::now();
    let cmd = ssh.login_check(&advice.alias, batch);
    let out = cmd.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && accepted_key(&stderr, key) {
        return Ok(Some(Verified::Key(start.elapsed())));
    }
    if partial_success(&stderr, key) {
        if batch {
            return Ok(Some(Verified::NeedsPrompt));
        }
        let start = Instant::now();
        let status = ssh.prompted_login(&advice.alias).run_interactive()?;
        if !status.success() {
            bail!(
                "verification failed: the server accepts {} and then asks for a second factor, which did not \
                 succeed ({status}): rerun and answer the prompt",
                advice.key.display()
            );
        }
        return Ok(Some(Verified::Prompted(start.elapsed())));
    }
    let failure = if out.status.success() {
        LoginFailure::AuthRefused // In, but with another identity.
    } else {
        LoginFailure::classify(out.status.code(), &stderr)
    };
    if failure == LoginFailure::AuthRefused && !strict {
        return Ok(None);
    }
    // Not the command (it names a temporary config that is gone once setup returns), and
    // not ssh's `-v` chatter: what went wrong.
    let why = if let Some(why) = key_load_error(&stderr, key) {
        format!("ssh cannot use {}: {why}", advice.key.display())
    } else if out.status.success() {
        format!("the server let you in with another key, not {}", advice.key.display())
    } else {
        ssh_said(&out.stderr)
    };
    bail!("verification failed: {}: {why}", advice.explain(failure))
}
