//! `jssh setup`: key, key install, verification, then (and only then) the managed config.
//!
//! - [`edits`]: the three files setup may change (managed block, the user's Include line,
//!   `hosts.toml`), planned, shown as a diff, checked for writability, then committed.
//! - [`taken`]: whether the user's own ssh config already defines the alias, asked of ssh.
//! - [`verify`]: the checks before anything is written: the config ssh would use, whether the
//!   host answers, the key install, and the login that proves it (a second factor included).

mod edits;
mod taken;
mod verify;

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};

use super::Ctx;
use crate::UsageError;
use crate::cli::SetupArgs;
use crate::fsutil::{self, PRIVATE_FILE, ScratchDir};
use crate::keys::{self, KeyPlan};
use crate::profile::{LoginKind, Profile, Profiles};
use crate::target::{Alias, IdentityPath, Port, UserName};

use self::edits::Edits;
use self::taken::refuse_user_alias;
use self::verify::{install_key, login_with, preflight, report_verified, verification_config};

pub(crate) fn run(ctx: &Ctx, args: &SetupArgs) -> Result<()> {
    if args.remove {
        return remove(ctx, &args.alias, args.dry_run);
    }
    let paths = &ctx.paths;
    let mut profiles = Profiles::load(&paths.hosts_file())?;
    profiles.check_new(&args.alias)?;
    let existing = profiles.get(&args.alias).cloned();
    let managed_by_jssh = existing.is_some();
    let profile = new_profile(ctx, args, existing)?;
    check_identity(&profile.identity)?;
    let scratch = ScratchDir::new_in(&std::env::temp_dir(), "setup")?;
    if !args.force {
        refuse_user_alias(ctx, &args.alias, managed_by_jssh, scratch.path())?;
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
    // Before a key is made or installed and before any file is written: a file that cannot be
    // written must not leave the others half done.
    let new_key = matches!(plan_key, KeyPlan::Create).then_some(profile.identity.as_ref());
    edits.check_writable(ctx, new_key)?;

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

    let advice = preflight(ctx, &ssh, &profile, &check_config)?;
    if matches!(plan_key, KeyPlan::Create) {
        // Not "created the key" yet: it stays in the scratch dir, and is thrown away, unless
        // the server accepts it.
        keys::generate_in(scratch.path(), &profile.identity, args.no_passphrase)?;
    }
    let batch = !std::io::stdin().is_terminal();
    let verified = if let Some(verified) = login_with(&ssh, &advice, &key_in_use, batch, args.no_copy_id)? {
        println!("the key is already installed on {}", profile.alias);
        verified
    } else {
        install_key(&ssh, &keys::public_path(&key_in_use), &advice, scratch.path())?;
        println!("installed the key on {}", profile.alias);
        login_with(&ssh, &advice, &key_in_use, batch, true)?.expect("strict login returns a time")
    };
    let mut edits = edits;
    report_verified(&mut edits, &profile.alias, verified);

    if matches!(plan_key, KeyPlan::Create) {
        keys::install(&key_in_use, &profile.identity)?;
        println!("created the key {}", profile.identity.display());
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
        // Verification below finds out again.
        login: LoginKind::Key,
        slurm: match (&args.slurm, args.no_slurm) {
            (Some(options), _) => Some(options.clone()),
            (None, true) => None,
            (None, false) => existing.as_ref().and_then(|p| p.slurm.clone()),
        },
        slurm_reach: existing.as_ref().and_then(|p| p.slurm_reach),
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

/// `--identity` names a private key file: a directory or a public key gets a precise error
/// here, before anything runs, rather than ssh's advice about permissions later.
fn check_identity(identity: &Path) -> Result<()> {
    if identity.is_dir() {
        return Err(UsageError(format!(
            "--identity {} is a directory: give the private key file in it (such as {})",
            identity.display(),
            identity.join("id_ed25519").display()
        ))
        .into());
    }
    if let Some(private) = identity.to_str().and_then(|p| p.strip_suffix(".pub")) {
        return Err(UsageError(format!(
            "--identity {} is a public key: give its private key, {private}",
            identity.display()
        ))
        .into());
    }
    Ok(())
}

fn remove(ctx: &Ctx, alias: &Alias, dry_run: bool) -> Result<()> {
    let mut profiles = ctx.profiles()?;
    let identity = profiles.lookup(alias)?.identity.clone();
    profiles.remove(alias);
    let edits = Edits {
        user_new: None,
        ..Edits::plan(ctx, profiles)?
    };
    edits.check_writable(ctx, None)?;
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
