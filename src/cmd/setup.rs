//! `jssh setup`: key, key install, verification, then (and only then) the managed config.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Ctx;
use crate::UsageError;
use crate::cli::SetupArgs;
use crate::fsutil::{self, PRIVATE_FILE, ScratchDir};
use crate::keys::{self, KeyPlan};
use crate::profile::{Profile, Profiles};
use crate::sanitize::ssh_stderr;
use crate::ssh::{LoginFailure, Ssh, accepted_key, key_load_error, parse_resolved};
use crate::sshconfig;
use crate::target::{Alias, IdentityPath, Port, UserName};

/// The three files setup may change, before and after.
struct Edits {
    profiles: Profiles,
    managed_old: String,
    managed_new: String,
    user_old: Option<String>,
    user_new: Option<String>,
    hosts_old: String,
}

fn read_text(path: &Path) -> Result<Option<String>> {
    fsutil::read_optional(path)?
        .map(|b| {
            String::from_utf8(b)
                .with_context(|| format!("{} is not UTF-8: jssh only edits UTF-8 files", path.display()))
        })
        .transpose()
}

impl Edits {
    fn plan(ctx: &Ctx, profiles: Profiles) -> Result<Self> {
        let paths = &ctx.paths;
        let managed_new = sshconfig::render_managed(&profiles, &paths.control_path(), &paths.hosts_file())?;
        let user_old = read_text(&paths.ssh_config)?;
        let user_new = sshconfig::with_include(user_old.as_deref().unwrap_or(""), &paths.include_target());
        Ok(Self {
            managed_old: read_text(&paths.managed_file())?.unwrap_or_default(),
            hosts_old: read_text(&paths.hosts_file())?.unwrap_or_default(),
            profiles,
            managed_new,
            user_old,
            user_new,
        })
    }

    fn print_diff(&self, ctx: &Ctx) {
        let paths = &ctx.paths;
        let old_user = self.user_old.as_deref().unwrap_or("");
        let diffs = [
            sshconfig::diff(
                &paths.ssh_config,
                old_user,
                self.user_new.as_deref().unwrap_or(old_user),
            ),
            sshconfig::diff(&paths.managed_file(), &self.managed_old, &self.managed_new),
            sshconfig::diff(&paths.hosts_file(), &self.hosts_old, &self.profiles.render()),
        ];
        if diffs.iter().all(String::is_empty) {
            println!("no file would change");
        }
        for d in diffs {
            print!("{d}");
        }
    }

    /// Writes the managed file, then the Include line (after a one-time backup), then the
    /// profiles. Each write is atomic and skipped when the bytes are already equal.
    fn commit(&self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
        let managed = paths.managed_file();
        fsutil::write_atomic(&managed, self.managed_new.as_bytes(), PRIVATE_FILE)
            .with_context(|| format!("could not write {}", managed.display()))?;
        if let Some(new) = &self.user_new {
            if fsutil::backup_once(&paths.ssh_config, &paths.backup_file())? {
                println!(
                    "backed up {} to {}",
                    paths.ssh_config.display(),
                    paths.backup_file().display()
                );
            }
            fsutil::write_atomic(&paths.ssh_config, new.as_bytes(), PRIVATE_FILE)
                .with_context(|| format!("could not write {}", paths.ssh_config.display()))?;
            println!(
                "added `Include {}` to {}",
                paths.include_target().display(),
                paths.ssh_config.display()
            );
        }
        self.profiles.save(&paths.hosts_file())?;
        Ok(())
    }
}

pub(crate) fn run(ctx: &Ctx, args: &SetupArgs) -> Result<()> {
    if args.remove {
        return remove(ctx, &args.alias, args.dry_run);
    }
    let paths = &ctx.paths;
    let mut profiles = Profiles::load(&paths.hosts_file())?;
    profiles.check_new(&args.alias)?;
    let existing = profiles.get(&args.alias).cloned();
    let profile = new_profile(ctx, args, existing)?;
    if !args.force {
        refuse_user_alias(ctx, &args.alias)?;
    }
    let plan_key = KeyPlan::for_key(&profile.identity, !args.no_copy_id)?;
    if matches!(plan_key, KeyPlan::Create) && !args.no_passphrase && !args.dry_run && !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "{} does not exist and there is no terminal to ask for its passphrase: rerun in a terminal, \
             pass --no-passphrase, or --identity an existing key",
            profile.identity.display()
        ))
        .into());
    }
    profiles.upsert(profile.clone());
    let edits = Edits::plan(ctx, profiles)?;

    if args.dry_run {
        edits.print_diff(ctx);
        if matches!(plan_key, KeyPlan::Create) {
            println!("would create the key {}", profile.identity.display());
        }
        if !args.no_copy_id {
            println!(
                "would install {} on {}",
                keys::public_path(&profile.identity).display(),
                profile.alias
            );
        }
        println!("would verify `ssh {} true`", profile.alias);
        return Ok(());
    }

    let scratch = ScratchDir::new_in(&std::env::temp_dir(), "setup")?;
    let key_in_use = match plan_key {
        KeyPlan::Existing => profile.identity.to_path_buf(),
        KeyPlan::Create => scratch
            .path()
            .join(profile.identity.file_name().context("the key path has no file name")?),
    };
    let check_config = scratch.path().join("ssh_config");
    let text = verification_config(ctx, &profile, &key_in_use, edits.user_old.is_some())?;
    fsutil::write_atomic(&check_config, text.as_bytes(), PRIVATE_FILE)?;
    let ssh = ctx.ssh.with_config(&check_config);

    preflight(ctx, &ssh, &profile.alias)?;
    if matches!(plan_key, KeyPlan::Create) {
        keys::generate_in(scratch.path(), &profile.identity, args.no_passphrase)?;
        println!("created the key {}", profile.identity.display());
    }
    let batch = !std::io::stdin().is_terminal();
    let elapsed = if let Some(elapsed) = login_with(&ssh, &profile.alias, &key_in_use, batch, args.no_copy_id)? {
        println!("the key is already installed on {}", profile.alias);
        elapsed
    } else {
        install_key(&ssh, &keys::public_path(&key_in_use), &profile.alias, scratch.path())?;
        println!("installed the key on {}", profile.alias);
        login_with(&ssh, &profile.alias, &key_in_use, batch, true)?.expect("strict login returns a time")
    };
    println!(
        "verified: `ssh {}` logs in with the key ({:.2} s)",
        profile.alias,
        elapsed.as_secs_f64()
    );

    if matches!(plan_key, KeyPlan::Create) {
        keys::install(&key_in_use, &profile.identity)?;
    }
    edits.commit(ctx)?;
    println!(
        "{} is ready: `ssh {}` works; next, `jssh up {}`",
        profile.alias, profile.alias, profile.alias
    );
    Ok(())
}

/// The validated profile this setup asks for, with defaults resolved. What other commands
/// learned (`--env` unless given again, the Jupyter facts) is kept from `existing`.
fn new_profile(ctx: &Ctx, args: &SetupArgs, existing: Option<Profile>) -> Result<Profile> {
    let user = match &args.user {
        Some(u) => u.clone(),
        None => local_user()?,
    };
    let identity = match &args.identity {
        Some(p) => p.clone(),
        None => IdentityPath::new(ctx.paths.default_key()).map_err(UsageError)?,
    };
    Ok(Profile {
        alias: args.alias.clone(),
        host: args.host.clone().context("--host is required")?,
        user,
        port: args.port.unwrap_or(Port::SSH),
        jump: args.jump.clone(),
        identity,
        env: if args.env.is_empty() {
            existing.as_ref().map(|p| p.env.clone()).unwrap_or_default()
        } else {
            args.env.clone()
        },
        jupyter: existing.map(|p| p.jupyter).unwrap_or_default(),
    })
}

fn local_user() -> Result<UserName> {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .context("could not read the password database")?
        .context("the current user has no password database entry")?;
    user.name
        .parse()
        .map_err(|e| UsageError(format!("your login name is unusable ({e}): pass --user")).into())
}

/// Refuses to shadow an alias the user's own config defines.
fn refuse_user_alias(ctx: &Ctx, alias: &Alias) -> Result<()> {
    let text = read_text(&ctx.paths.ssh_config)?.unwrap_or_default();
    if let Some(line) = sshconfig::user_defines(&text, alias.as_str()) {
        bail!(
            "{alias} is already defined in {} (line {line}): pick another alias, or pass --force to \
             shadow it with jssh's block",
            ctx.paths.ssh_config.display()
        );
    }
    Ok(())
}

/// A config for the checks before anything is written: the new block first (first value wins),
/// then the user's config and, when that is OpenSSH's default, the system one (`-F` skips it).
fn verification_config(ctx: &Ctx, profile: &Profile, key: &Path, user_config_exists: bool) -> Result<String> {
    let mut text = sshconfig::render_block(profile, key, &ctx.paths.control_path())?;
    if user_config_exists {
        let _ = write!(text, "\nHost *\nInclude \"{}\"\n", ctx.paths.ssh_config.display());
    }
    if ctx.paths.is_default_config {
        text.push_str("\nHost *\nInclude /etc/ssh/ssh_config\n");
    }
    Ok(text)
}

/// Fails fast, before a key is made or a password asked, when ssh rejects the config or the
/// host cannot be reached at all.
fn preflight(ctx: &Ctx, ssh: &Ssh, alias: &Alias) -> Result<()> {
    let cmd = ssh.resolve(alias);
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "ssh rejects the config {}: {}: fix it (check with `ssh -G {alias}`) and rerun",
            ctx.paths.ssh_config.display(),
            ssh_stderr(&out.stderr).join("\n")
        );
    }
    let resolved = parse_resolved(&String::from_utf8_lossy(&out.stdout));
    if resolved.contains_key("proxyjump") || resolved.contains_key("proxycommand") {
        return Ok(()); // Only ssh itself knows how to get through the jump.
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
    })
}

/// Runs ssh-copy-id. ssh asks for a password on the terminal (or SSH_ASKPASS), not stdin, so
/// its output can be captured for a clear error.
fn install_key(ssh: &Ssh, public_key: &Path, alias: &Alias, scratch: &Path) -> Result<()> {
    let (home, public_key) = keys::stage_for_copy_id(public_key, scratch)?;
    let cmd = ssh.copy_id(&public_key, alias, &home);
    let out = cmd.output()?;
    if !out.status.success() {
        let failure = LoginFailure::classify(Some(255), &String::from_utf8_lossy(&out.stderr));
        return Err(cmd
            .failure(&out)
            .context(format!("installing the key failed: {}", failure.explain(alias))));
    }
    Ok(())
}

/// Logs in with the key only and runs `true`. Returns the time taken when the server accepted
/// `key` itself; `None` when it did not but that may still be fixed by installing it (not
/// `strict`); an error saying which step failed otherwise.
fn login_with(ssh: &Ssh, alias: &Alias, key: &Path, batch: bool, strict: bool) -> Result<Option<Duration>> {
    let start = Instant::now();
    let cmd = ssh.login_check(alias, batch);
    let out = cmd.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && accepted_key(&stderr, key) {
        return Ok(Some(start.elapsed()));
    }
    let failure = if out.status.success() {
        LoginFailure::AuthRefused // In, but with another identity.
    } else {
        LoginFailure::classify(out.status.code(), &stderr)
    };
    if failure == LoginFailure::AuthRefused && !strict {
        return Ok(None);
    }
    let err = if let Some(why) = key_load_error(&stderr, key) {
        anyhow::anyhow!("ssh cannot use {}: {why}", key.display())
    } else if out.status.success() {
        anyhow::anyhow!("the server let you in with another key, not {}", key.display())
    } else {
        cmd.failure(&out)
    };
    Err(err.context(format!("verification failed: {}", failure.explain(alias))))
}

fn remove(ctx: &Ctx, alias: &Alias, dry_run: bool) -> Result<()> {
    let mut profiles = Profiles::load(&ctx.paths.hosts_file())?;
    let Some(identity) = profiles.get(alias).map(|p| p.identity.clone()) else {
        let known: Vec<_> = profiles.iter().map(|p| p.alias.to_string()).collect();
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        return Err(UsageError(format!("no host {alias} to remove (known: {known})")).into());
    };
    profiles.remove(alias);
    let edits = Edits {
        user_new: None,
        ..Edits::plan(ctx, profiles)?
    };
    if dry_run {
        edits.print_diff(ctx);
        return Ok(());
    }
    edits.commit(ctx)?;
    println!(
        "removed {alias}. The key {} stays, and so does its line in the server's ~/.ssh/authorized_keys \
         (delete that line there to revoke it).",
        identity.display()
    );
    Ok(())
}
