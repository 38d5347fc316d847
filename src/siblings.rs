//! What the supervisors of the aliases on one server share, through files in the state dir
//! (0700, the user's alone): who looks whether its port answers again ([`ServerReach`]), how
//! many of them log in at once ([`LoginSlots`]), and their logged-in connections, on which one
//! that lost its own may ride until it has one again ([`Lenders`]).
//!
//! Why: one sshd restart (or one wake from sleep) cuts every tunnel to that server at once.
//! Twenty supervisors logging in together cost twenty key exchanges before any notebook
//! answers (on a laptop, each ~0.1 s of the client's CPU with OpenSSH's default
//! `sntrup761x25519`), and past ten unauthenticated connections sshd's `MaxStartups` drops
//! some of them, which then come back last. With a few slots, the first logins are done in
//! the time of a few, the others ride on them at once (a channel each, as through their own
//! connection), and make their own connections afterwards, a few at a time.
//!
//! Only aliases that reach the same account (`user@host:port`, directly) share: a master
//! logged in there carries channels to any port of that server as well as the alias's own.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

use crate::fsutil;
use crate::paths::Paths;
use crate::state::{fnv, open_lock};
use crate::target::Alias;

const REACH_PREFIX: &str = "reach-";
const SLOT_PREFIX: &str = "login-";
const LEND_PREFIX: &str = "lend-";

/// The name of what the aliases reaching `server` (`host:port`, or `user@host:port` for what
/// only one account's aliases share) share.
fn name(prefix: &str, server: &str) -> String {
    format!("{prefix}{:016x}", fnv(server.as_bytes()))
}

/// Whether a server whose port refused connections answers again, looked at by one
/// supervisor for all the aliases on it. Each look that the server answers starts an sshd
/// process for nothing, which counts against sshd's `MaxStartups` while the real logins
/// arrive: twenty such looks after one sshd restart made it drop about half of the twenty
/// tunnels' logins, against a fifth of twenty plain ones. The one that holds the file's lock
/// looks; when the port answers it sets the file's mtime, which the others read.
#[derive(Debug)]
pub(crate) struct ServerReach {
    path: PathBuf,
    lead: Option<Flock<File>>,
}

impl ServerReach {
    /// For the server at `address` (`host:port`), in the state dir `dir`.
    pub(crate) fn new(dir: &Path, address: &str) -> Self {
        Self {
            path: dir.join(name(REACH_PREFIX, address)),
            lead: None,
        }
    }

    /// Whether another supervisor saw the server answer at `since` or later.
    pub(crate) fn answered_since(&self, since: SystemTime) -> bool {
        fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at >= since)
    }

    /// Whether this supervisor is the one that looks (it stays so until it stops waiting).
    /// Where the file cannot be had, every supervisor looks for itself, as before.
    pub(crate) fn lead(&mut self) -> bool {
        if self.lead.is_some() {
            return true;
        }
        let Ok(file) = open_lock(&self.path) else { return true };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => {
                self.lead = Some(lock);
                true
            }
            Err(_) => false,
        }
    }

    /// Tells the others that the server answers, and stops looking.
    pub(crate) fn answered(&mut self) {
        if let Some(lock) = self.lead.take() {
            let _ = lock.set_modified(SystemTime::now());
        }
    }

    /// Stops looking (an attempt starts): another supervisor may take over.
    pub(crate) fn stop_leading(&mut self) {
        self.lead = None;
    }
}

/// Removes what the supervisors of one server share ([`ServerReach`] files, login slots,
/// lent connections): once no supervisor runs, nobody reads them. (One created meanwhile by
/// a starting supervisor is made again when it next needs it.)
pub(crate) fn remove_server_files(paths: &Paths) {
    let Ok(entries) = fs::read_dir(&paths.state_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(REACH_PREFIX) || name.starts_with(SLOT_PREFIX) {
            let _ = fs::remove_file(entry.path());
        } else if name.starts_with(LEND_PREFIX) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// At most `count` logins at a time to one server from this user's supervisors: each holds
/// the lock of one of `count` files while its ssh logs in.
#[derive(Debug)]
pub(crate) struct LoginSlots {
    base: PathBuf,
    count: usize,
}

/// A login slot, held until dropped. Empty where the files could not be had: then every
/// supervisor logs in when it wants to, as without slots.
#[derive(Debug)]
pub(crate) struct Slot {
    _lock: Option<Flock<File>>,
}

impl Slot {
    /// No slot: for a server whose logins are not counted.
    pub(crate) fn unshared() -> Self {
        Self { _lock: None }
    }
}

impl LoginSlots {
    pub(crate) fn new(dir: &Path, account: &str, count: usize) -> Self {
        Self {
            base: dir.join(name(SLOT_PREFIX, account)),
            count: count.max(1),
        }
    }

    /// A free slot, or `None` while all are held (other aliases' logins under way). Each
    /// process starts looking at another file, so that they seldom try the same one.
    pub(crate) fn take(&self) -> Option<Slot> {
        let first = std::process::id() as usize;
        for i in 0..self.count {
            let mut path = self.base.clone().into_os_string();
            path.push(format!("-{}", (first + i) % self.count));
            let Ok(file) = open_lock(Path::new(&path)) else {
                return Some(Slot { _lock: None });
            };
            if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                return Some(Slot { _lock: Some(lock) });
            }
        }
        None
    }
}

/// The logged-in masters the aliases on one server lend each other: a directory with one
/// symlink per alias, named after it, to its active connection's control socket.
#[derive(Debug)]
pub(crate) struct Lenders {
    dir: PathBuf,
}

impl Lenders {
    pub(crate) fn new(dir: &Path, account: &str) -> Self {
        Self {
            dir: dir.join(name(LEND_PREFIX, account)),
        }
    }

    /// Offers `control`, `alias`'s logged-in master, to the other aliases (replacing what it
    /// offered before, atomically: a rename over the old link).
    pub(crate) fn lend(&self, alias: &Alias, control: &Path) -> anyhow::Result<()> {
        fsutil::ensure_private_dir(&self.dir)?;
        let temporary = self.dir.join(format!(".{alias}.new"));
        let _ = fs::remove_file(&temporary);
        std::os::unix::fs::symlink(control, &temporary)?;
        fs::rename(&temporary, self.dir.join(alias.as_str()))?;
        Ok(())
    }

    /// Stops offering `alias`'s master (it is going, or no longer logged in).
    pub(crate) fn withdraw(&self, alias: &Alias) {
        let _ = fs::remove_file(self.dir.join(alias.as_str()));
    }

    /// The other aliases' masters offered since `since` (an older one may have died with the
    /// connection this alias lost, unnoticed yet), as (alias, control socket), in an order
    /// that starts at a place of `spread`'s choosing, so that those riding at once spread
    /// over the lenders.
    pub(crate) fn offered(&self, alias: &Alias, since: SystemTime, spread: usize) -> Vec<(String, PathBuf)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut offered: Vec<(String, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let fresh = e.metadata().and_then(|m| m.modified()).is_ok_and(|at| at >= since);
                (fresh && !name.starts_with('.') && name != alias.as_str())
                    .then_some((name, fs::read_link(e.path()).ok()?))
            })
            .collect();
        offered.sort();
        if !offered.is_empty() {
            let at = spread % offered.len();
            offered.rotate_left(at);
        }
        offered
    }

    /// Removes whatever `alias` offers to any server: a supervisor starting for it must not
    /// leave a link a killed one left, to control sockets it may now use for another server.
    pub(crate) fn withdraw_everywhere(state_dir: &Path, alias: &Alias) {
        let Ok(entries) = fs::read_dir(state_dir) else { return };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(LEND_PREFIX) {
                let _ = fs::remove_file(entry.path().join(alias.as_str()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;

    fn alias(name: &str) -> Alias {
        name.parse().unwrap()
    }

    #[test]
    fn one_supervisor_looks_whether_a_server_answers_and_tells_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, mut b) = (
            ServerReach::new(dir.path(), "10.0.0.1:22"),
            ServerReach::new(dir.path(), "10.0.0.1:22"),
        );
        let mut elsewhere = ServerReach::new(dir.path(), "10.0.0.2:22");
        let before = SystemTime::now();
        assert!(a.lead(), "the first one looks");
        assert!(a.lead(), "and goes on looking");
        assert!(!b.lead(), "the second one waits for word");
        assert!(elsewhere.lead(), "another server has a looker of its own");
        assert!(!b.answered_since(before));
        a.answered();
        assert!(b.answered_since(before), "word arrived");
        assert!(
            !b.answered_since(SystemTime::now() + Duration::from_secs(1)),
            "old word is no word"
        );
        assert!(b.lead(), "the first one stopped looking once it answered");
        b.stop_leading();
        assert!(a.lead());
        let mode = fs::metadata(&a.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn no_more_logins_to_one_server_than_slots_and_a_dropped_slot_is_free_again() {
        let dir = tempfile::tempdir().unwrap();
        let slots = LoginSlots::new(dir.path(), "ann@10.0.0.1:22", 2);
        let first = slots.take().expect("a first slot");
        let second = slots.take().expect("a second slot");
        assert!(slots.take().is_none(), "both held");
        let elsewhere = LoginSlots::new(dir.path(), "ann@10.0.0.2:22", 2);
        assert!(elsewhere.take().is_some(), "another server has slots of its own");
        drop(first);
        let third = slots.take().expect("the dropped one is free");
        assert!(slots.take().is_none());
        drop((second, third));
        for entry in fs::read_dir(dir.path()).unwrap().flatten() {
            assert_eq!(entry.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        }
        // Where the files cannot be had, logins go on as without slots.
        let nowhere = LoginSlots::new(&dir.path().join("missing"), "ann@10.0.0.1:22", 1);
        assert!(nowhere.take().is_some() && nowhere.take().is_some());
    }

    #[test]
    fn aliases_on_one_account_see_each_others_masters_and_not_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let here = Lenders::new(dir.path(), "ann@10.0.0.1:22");
        let (a, b, c) = (alias("a"), alias("b"), alias("c"));
        let offered = |lenders: &Lenders, to: &Alias, spread| -> Vec<String> {
            lenders
                .offered(to, SystemTime::UNIX_EPOCH, spread)
                .into_iter()
                .map(|(name, control)| format!("{name} {}", control.display()))
                .collect()
        };
        assert!(offered(&here, &a, 0).is_empty(), "nothing offered yet");
        here.lend(&a, Path::new("/s/a/ctl0")).unwrap();
        here.lend(&b, Path::new("/s/b/ctl0")).unwrap();
        here.lend(&b, Path::new("/s/b/ctl1")).unwrap();
        assert_eq!(offered(&here, &a, 0), ["b /s/b/ctl1"], "b's newest, not a's own");
        here.lend(&c, Path::new("/s/c/ctl0")).unwrap();
        assert_eq!(offered(&here, &c, 1), ["b /s/b/ctl1", "a /s/a/ctl0"], "rotated");
        assert_eq!(offered(&here, &c, 3), offered(&here, &c, 1));
        let later = SystemTime::now() + Duration::from_secs(5);
        assert!(
            here.offered(&c, later, 0).is_empty(),
            "what was lent before the loss may be dead"
        );
        let mode = fs::metadata(&here.dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let other_user = Lenders::new(dir.path(), "bob@10.0.0.1:22");
        assert!(offered(&other_user, &c, 0).is_empty(), "another account shares nothing");
        here.withdraw(&b);
        assert_eq!(offered(&here, &c, 0), ["a /s/a/ctl0"]);
        other_user.lend(&a, Path::new("/s/a/ctl1")).unwrap();
        Lenders::withdraw_everywhere(dir.path(), &a);
        assert!(offered(&here, &c, 0).is_empty() && offered(&other_user, &c, 0).is_empty());
    }
}
