//! The key manager: use an existing key or make a new ed25519 one, and only put a new key in
//! its final place once the server has accepted it (a failed setup leaves no key behind).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::fsutil;
use crate::ssh;

/// `KEY.pub` for `KEY`.
pub(crate) fn public_path(key: &Path) -> PathBuf {
    let mut name = OsString::from(key.as_os_str());
    name.push(".pub");
    PathBuf::from(name)
}

/// The comment ssh-keygen puts on new keys: shows up in authorized_keys, so say who made it.
fn comment() -> String {
    let host = nix::unistd::gethostname().map_or_else(|_| "localhost".into(), |h| h.to_string_lossy().into_owned());
    format!("jssh@{host}")
}

/// Whether the key must be created, decided before anything is written.
#[derive(Debug)]
pub(crate) enum KeyPlan {
    Existing,
    Create,
}

impl KeyPlan {
    pub(crate) fn for_key(key: &Path, need_public: bool) -> Result<Self> {
        if !key.exists() {
            return Ok(Self::Create);
        }
        if need_public && !public_path(key).exists() {
            bail!(
                "{} is missing: recreate it with `ssh-keygen -y -f {} > {}`",
                public_path(key).display(),
                key.display(),
                public_path(key).display()
            );
        }
        Ok(Self::Existing)
    }
}

/// Makes a new key named like `final_key` inside `scratch` (same filesystem, so it can be
/// renamed into place later) and returns its path.
pub(crate) fn generate_in(scratch: &Path, final_key: &Path, no_passphrase: bool) -> Result<PathBuf> {
    let name = final_key.file_name().context("the key path has no file name")?;
    let key = scratch.join(name);
    let cmd = ssh::keygen(&key, &comment(), no_passphrase);
    let status = cmd.run_interactive()?;
    if !status.success() {
        bail!("`{cmd}` failed ({status})");
    }
    Ok(key)
}

/// Moves a freshly made key pair to its final place: private key 0600 in a 0700 dir.
pub(crate) fn install(new_key: &Path, final_key: &Path) -> Result<()> {
    let dir = final_key.parent().context("the key path has no parent directory")?;
    fsutil::ensure_private_dir(dir)?;
    if final_key.exists() {
        bail!("{} appeared while setup ran: not overwriting it", final_key.display());
    }
    fs::set_permissions(new_key, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("could not set the mode of {}", new_key.display()))?;
    fs::rename(public_path(new_key), public_path(final_key))
        .with_context(|| format!("could not move the public key to {}", public_path(final_key).display()))?;
    fs::rename(new_key, final_key).with_context(|| format!("could not move the key to {}", final_key.display()))
}
