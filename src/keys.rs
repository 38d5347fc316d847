//! The key manager: use an existing key or make a new ed25519 one, and only put a new key in
//! its final place once the server has accepted it (a failed setup leaves no key behind).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::fsutil;
use crate::ssh;
use crate::target::is_plain_path;

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

/// Stages `public_key` for ssh-copy-id: a copy named `key.pub` in a fresh private dir in
/// `scratch`, which is also ssh-copy-id's `$HOME` (it makes its temp dir in `~/.ssh`).
/// Returns that home and the copy. ssh-copy-id `eval`s `cat "FILE"` for its `-i FILE`, and
/// its cleanup `rm -rf "DIR"` for the temp dir, so a `$(…)` or backquote in the user's key path
/// would run as shell code (issue 11, case 3): it only ever sees these paths, checked plain.
pub(crate) fn stage_for_copy_id(public_key: &Path, scratch: &Path) -> Result<(PathBuf, PathBuf)> {
    let home = scratch.join("copy-id");
    if !is_plain_path(&home) {
        bail!(
            "the temporary directory {} has characters ssh-copy-id would run as shell code: set TMPDIR \
             to a directory named with letters, digits and / . _ - only",
            scratch.display()
        );
    }
    fsutil::ensure_private_dir(&home.join(".ssh"))?;
    let copy = home.join("key.pub");
    let bytes = fs::read(public_key).with_context(|| format!("could not read {}", public_key.display()))?;
    fsutil::write_atomic(&copy, &bytes, fsutil::PRIVATE_FILE)
        .with_context(|| format!("could not write {}", copy.display()))?;
    Ok((home, copy))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Case 3 of issue 11: ssh-copy-id gets a fixed, plain name whatever the key is called.
    #[test]
    fn case3_copy_id_sees_only_plain_paths() {
        let scratch = fsutil::ScratchDir::new_in(&std::env::temp_dir(), "keys-test").unwrap();
        let odd = scratch.path().join("k$(touch pwned) `id`.pub");
        fs::write(&odd, "ssh-ed25519 AAAA test\n").unwrap();
        let (home, copy) = stage_for_copy_id(&odd, scratch.path()).unwrap();
        assert!(is_plain_path(&copy) && is_plain_path(&home), "{}", copy.display());
        assert_eq!(copy.file_name().unwrap(), "key.pub");
        assert!(copy.starts_with(&home) && home.join(".ssh").is_dir());
        assert_eq!(fs::read_to_string(&copy).unwrap(), "ssh-ed25519 AAAA test\n");
        // A key named `key` next to its own `key.pub` is not overwritten by its copy.
        let own = scratch.path().join("key.pub");
        fs::write(&own, "ssh-ed25519 BBBB own\n").unwrap();
        stage_for_copy_id(&own, scratch.path()).unwrap();
        assert_eq!(fs::read_to_string(&own).unwrap(), "ssh-ed25519 BBBB own\n");
    }

    #[test]
    fn a_scratch_dir_with_shell_syntax_is_refused() {
        let base = fsutil::ScratchDir::new_in(&std::env::temp_dir(), "keys-test").unwrap();
        let odd = base.path().join("t$(x)");
        fs::create_dir(&odd).unwrap();
        let key = odd.join("k.pub");
        fs::write(&key, "k\n").unwrap();
        let err = stage_for_copy_id(&key, &odd).unwrap_err().to_string();
        assert!(err.contains("TMPDIR"), "{err}");
        assert!(!odd.join("copy-id").exists());
    }
}
