//! File effects: atomic, mode-keeping, idempotent writes; private directories; randomness.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;

/// Mode for files jssh creates: private to the user.
pub(crate) const PRIVATE_FILE: u32 = 0o600;

/// `n` random bytes from the kernel's CSPRNG, hex-encoded.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("could not read /dev/urandom")?;
    Ok(buf.iter().fold(String::with_capacity(2 * n), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Creates `dir` (and parents) with mode 0700 where it creates them; existing dirs are left as
/// they are (`jssh doctor` reports loose modes rather than changing a user's directory).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("could not create directory {}", dir.display()))
}

/// Reads a file that may not exist yet.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
    }
}

/// Most symlinks followed before giving up, as the kernel's own limit (`ELOOP`).
const MAX_LINKS: usize = 40;

/// The file a write to `path` must replace: `path` itself, or where its chain of symlinks
/// ends. stow, yadm and home-manager link `~/.ssh/config` into a dotfiles tree; replacing the
/// link with a regular file would cut it from its source, so jssh writes to the target, in
/// the target's directory, and the link stays. (Only the last component matters: a symlinked
/// directory on the way is just a path to the real one.)
pub(crate) fn write_target(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&current)
                    .with_context(|| format!("could not read the link {}", current.display()))?;
                current = current.parent().unwrap_or(Path::new("/")).join(link);
            }
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("could not read {}", current.display()));
            }
            _ => return Ok(current),
        }
    }
    bail!("{} is a loop of symlinks", path.display())
}

/// Why a write to `path` (through its links) would fail, found before anything is written:
/// `None` when its target and the target's directory (or the nearest existing ancestor, which
/// jssh would create the rest under) are writable. A read-only target, such as a file that
/// home-manager links from its read-only store, is for the caller to explain, not to replace.
pub(crate) fn unwritable(path: &Path) -> Result<Option<(PathBuf, String)>> {
    let target = write_target(path)?;
    let dir = target.parent().unwrap_or(Path::new("/"));
    let checked = if fs::symlink_metadata(&target).is_ok() {
        vec![target.clone(), dir.to_path_buf()]
    } else {
        vec![
            dir.ancestors()
                .find(|d| d.exists())
                .unwrap_or(Path::new("/"))
                .to_path_buf(),
        ]
    };
    for place in checked {
        if let Err(errno) = nix::unistd::access(&place, nix::unistd::AccessFlags::W_OK) {
            let what = if place == target { "it" } else { "its directory" };
            let why = match errno {
                Errno::EROFS => format!("{what} is on a read-only file system"),
                Errno::EACCES | Errno::EPERM => format!("{what} is read-only"),
                _ => format!("{what} cannot be written ({})", errno.desc().to_lowercase()),
            };
            return Ok(Some((target, why)));
        }
    }
    Ok(None)
}

/// Replaces `path` with `contents` atomically: a temp file in the same directory, fsync,
/// rename, fsync of the directory. A symlink is written through: its target is replaced (see
/// [`write_target`]) and the link stays. An existing file keeps its mode and owner; a new one
/// gets `new_mode`. Returns false (and touches nothing) when the contents are already equal.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], new_mode: u32) -> Result<bool> {
    let path = write_target(path)?;
    let path = path.as_path();
    let old = fs::metadata(path).ok();
    if old.is_some() && read_optional(path)?.as_deref() == Some(contents) {
        return Ok(false);
    }
    let dir = path.parent().context("a file path has no parent directory")?;
    ensure_private_dir(dir)?;
    let tmp = temp_sibling(path)?;
    let result = (|| -> Result<()> {
        let mode = old.as_ref().map_or(new_mode, |m| m.mode() & 0o7777);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("could not create {}", tmp.display()))?;
        // The umask may have narrowed the mode given to open(2).
        file.set_permissions(fs::Permissions::from_mode(mode))
            .with_context(|| format!("could not set the mode of {}", tmp.display()))?;
        if let Some(m) = &old {
            // Root editing another user's file must not hand it to root.
            if m.uid() != nix::unistd::getuid().as_raw() {
                nix::unistd::fchown(&file, Some(m.uid().into()), Some(m.gid().into()))
                    .with_context(|| format!("could not keep the owner of {}", path.display()))?;
            }
        }
        file.write_all(contents)
            .with_context(|| format!("could not write {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("could not sync {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("could not replace {}", path.display()))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("could not sync directory {}", dir.display()))
    })();
    if result.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

/// Copies `path` to `backup` unless a backup already exists (the first one is the user's own
/// file, before jssh ever touched it). Returns whether a backup was made.
pub(crate) fn backup_once(path: &Path, backup: &Path) -> Result<bool> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(false);
    };
    if backup.exists() {
        return Ok(false);
    }
    let mode = fs::metadata(path).map_or(PRIVATE_FILE, |m| m.mode() & 0o777);
    write_atomic(backup, &bytes, mode).with_context(|| format!("could not back up {}", path.display()))?;
    Ok(true)
}

/// A unique, not-yet-existing name next to `path` (same filesystem, so rename is atomic).
fn temp_sibling(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .context("a file path has no file name")?
        .to_string_lossy();
    Ok(path.with_file_name(format!(".{name}.jssh-tmp-{}", random_hex(6)?)))
}

/// A private scratch directory that is removed with everything in it when dropped.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `.jssh-<purpose>-<random>` (0700) inside `parent`.
    pub(crate) fn new_in(parent: &Path, purpose: &str) -> Result<Self> {
        ensure_private_dir(parent)?;
        let dir = parent.join(format!(".jssh-{purpose}-{}", random_hex(6)?));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("could not create {}", dir.display()))?;
        Ok(Self(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Nothing useful can be done about a failure while unwinding or returning.
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_keeps_mode_and_is_idempotent() {
        let dir = ScratchDir::new_in(&std::env::temp_dir(), "unit").unwrap();
        let file = dir.path().join("config");
        assert!(write_atomic(&file, b"a\n", PRIVATE_FILE).unwrap());
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(write_atomic(&file, b"b\n", PRIVATE_FILE).unwrap());
        assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o640);
        assert!(!write_atomic(&file, b"b\n", PRIVATE_FILE).unwrap());
        assert_eq!(fs::read(&file).unwrap(), b"b\n");
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp files left behind");
    }

    /// Case 2 of issue 11: a symlinked file (stow, yadm, home-manager) is written through
    /// its link, in the target's directory, keeping the target's mode; the link stays.
    #[test]
    fn case2_writes_go_through_symlinks_to_their_target() {
        let dir = ScratchDir::new_in(&std::env::temp_dir(), "unit").unwrap();
        let (home, dotfiles) = (dir.path().join("home"), dir.path().join("dotfiles"));
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(dotfiles.join("ssh")).unwrap();
        let target = dotfiles.join("ssh/config");
        fs::write(&target, "old\n").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
        // A chain: home/config -> home/hop (absolute) -> ../dotfiles/ssh/config (relative).
        std::os::unix::fs::symlink("../dotfiles/ssh/config", home.join("hop")).unwrap();
        std::os::unix::fs::symlink(home.join("hop"), home.join("config")).unwrap();
        assert_eq!(
            write_target(&home.join("config")).unwrap(),
            home.join("../dotfiles/ssh/config")
        );
        assert!(write_atomic(&home.join("config"), b"new\n", PRIVATE_FILE).unwrap());
        assert!(
            fs::symlink_metadata(home.join("config"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(fs::symlink_metadata(home.join("hop")).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"new\n");
        assert_eq!(fs::metadata(&target).unwrap().mode() & 0o777, 0o644);
        let names = |d: &Path| fs::read_dir(d).unwrap().count();
        assert_eq!(
            (names(&home), names(&dotfiles.join("ssh"))),
            (2, 1),
            "no temp files left"
        );
        assert!(!write_atomic(&home.join("config"), b"new\n", PRIVATE_FILE).unwrap());
        // A dangling link gets its target created; a loop is an error.
        std::os::unix::fs::symlink("../dotfiles/ssh/new", home.join("dangling")).unwrap();
        write_atomic(&home.join("dangling"), b"x", PRIVATE_FILE).unwrap();
        assert_eq!(fs::read(dotfiles.join("ssh/new")).unwrap(), b"x");
        std::os::unix::fs::symlink("loop", home.join("loop")).unwrap();
        assert!(write_atomic(&home.join("loop"), b"x", PRIVATE_FILE).is_err());
        // The backup is a copy of the content, next to the link.
        assert!(backup_once(&home.join("config"), &home.join("config.bak")).unwrap());
        assert!(fs::symlink_metadata(home.join("config.bak")).unwrap().is_file());
        assert_eq!(fs::read(home.join("config.bak")).unwrap(), b"new\n");
    }

    #[test]
    fn writable_places_are_found_writable() {
        let dir = ScratchDir::new_in(&std::env::temp_dir(), "unit").unwrap();
        assert_eq!(unwritable(&dir.path().join("a/b/c")).unwrap(), None);
        fs::write(dir.path().join("f"), "").unwrap();
        assert_eq!(unwritable(&dir.path().join("f")).unwrap(), None);
        if !nix::unistd::geteuid().is_root() {
            fs::set_permissions(dir.path().join("f"), fs::Permissions::from_mode(0o444)).unwrap();
            let (target, why) = unwritable(&dir.path().join("f")).unwrap().unwrap();
            assert_eq!((target, why.as_str()), (dir.path().join("f"), "it is read-only"));
        }
    }

    #[test]
    fn backup_is_taken_once() {
        let dir = ScratchDir::new_in(&std::env::temp_dir(), "unit").unwrap();
        let (file, backup) = (dir.path().join("c"), dir.path().join("c.bak"));
        assert!(!backup_once(&file, &backup).unwrap(), "nothing to back up");
        fs::write(&file, "first").unwrap();
        assert!(backup_once(&file, &backup).unwrap());
        fs::write(&file, "second").unwrap();
        assert!(!backup_once(&file, &backup).unwrap());
        assert_eq!(fs::read_to_string(&backup).unwrap(), "first");
    }
}
