//! The supervisor's log, `supervisor.log` in the alias's state dir: one timestamped line per
//! event, which a foreground `jssh up` shows as it comes and `jssh logs` prints.
//!
//! Writing it never stops the supervisor. With `panic = "abort"`, std's `eprintln!` on a full
//! disk would abort the process (it panics when the write fails): lines go through
//! [`Log::line`] instead, which counts a line it could not write and says how many were lost
//! once writing works again.
//!
//! It never grows without bound: a line that would take it past [`LIMIT`] first moves it to
//! `supervisor.log.1` (replacing the one before) and starts a new one, so the two files hold at
//! most twice that. 1 MiB is ~8000 events at ~130 bytes a reconnect: weeks of an unsteady
//! link's history, enough to see how it went wrong, and little to keep.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where the log is rotated, in bytes.
pub(crate) const LIMIT: u64 = 1 << 20;

/// Sets another limit (bytes), for tests: rotation is then seen without writing a megabyte.
const LIMIT_ENV: &str = "JSSH_SUPERVISOR_LOG_LIMIT";

pub(crate) struct Log {
    path: PathBuf,
    file: File,
    limit: u64,
    /// Lines that could not be written since the last one that could.
    lost: u64,
}

impl Log {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let limit = std::env::var(LIMIT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(LIMIT);
        Ok(Self {
            path: path.to_owned(),
            file: append(path)?,
            limit,
            lost: 0,
        })
    }

    /// The log's file descriptor, for a child's stderr: ssh's own messages land in the log.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Appends a timestamped line; never fails (see the module's doc).
    pub(crate) fn line(&mut self, message: &str) {
        let now = clock();
        let mut text = String::new();
        if self.lost > 0 {
            let _ = writeln!(
                text,
                "{now} ({} log lines lost: could not write {})",
                self.lost,
                self.path.display()
            );
        }
        let _ = writeln!(text, "{now} {message}");
        self.rotate_before(text.len());
        match self.file.write_all(text.as_bytes()) {
            Ok(()) => self.lost = 0,
            Err(_) => self.lost += 1,
        }
    }

    /// Moves a log that `adding` more bytes would take past the limit to `supervisor.log.1`
    /// and starts a new one. The supervisor's own stdout and stderr, which `jssh up` pointed
    /// at the log, follow it; the ssh children that have it as their stderr keep writing to
    /// the old one until they end (a few lines at most: ssh says little).
    fn rotate_before(&mut self, adding: usize) {
        let Ok(meta) = self.file.metadata() else { return };
        // Only a regular file grows (not /dev/null, or a pipe someone made the log).
        if !meta.is_file() || meta.len() + adding as u64 <= self.limit {
            return;
        }
        let Some(file) = self.rotate() else { return };
        let was_log = |fd: BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .and_then(|fd| File::from(fd).metadata())
                .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
        };
        if was_log(std::io::stdout().as_fd()) {
            let _ = nix::unistd::dup2_stdout(&file);
        }
        if was_log(std::io::stderr().as_fd()) {
            let _ = nix::unistd::dup2_stderr(&file);
        }
        self.file = file;
    }
}

impl Log {
    /// Moves the log's text to `supervisor.log.1` and opens a new, empty log. Neither name
    /// is ever missing, for those who follow the log by name (`jssh logs -f`, a foreground
    /// `up`): the text gets its second name first, then a new file takes the first one, each
    /// by an atomic rename. Where hard links are not possible, by a plain rename instead.
    fn rotate(&self) -> Option<File> {
        let with = |suffix: &str| {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            PathBuf::from(path)
        };
        let (old, staged) = (crate::state::rotated(&self.path), with(".new"));
        let _ = std::fs::remove_file(&staged);
        if std::fs::hard_link(&self.path, &staged).is_ok() && std::fs::rename(&staged, &old).is_ok() {
            let file = append(&staged).ok()?;
            std::fs::rename(&staged, &self.path).ok()?;
            return Some(file);
        }
        std::fs::rename(&self.path, &old).ok()?;
        append(&self.path).ok()
    }
}

fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("could not open {}", path.display()))
}

/// Wall-clock `HH:MM:SS` (UTC) for log lines.
fn clock() -> String {
    let secs = crate::state::unix_now() % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_in(dir: &Path, limit: u64) -> Log {
        let mut log = Log::open(&dir.join("supervisor.log")).unwrap();
        log.limit = limit;
        log
    }

    #[test]
    fn case10_the_log_rotates_at_its_limit_and_stays_bounded() {
        let scratch = crate::fsutil::ScratchDir::new_in(&std::env::temp_dir(), "log").unwrap();
        let mut log = log_in(scratch.path(), 1000);
        for n in 0..500 {
            log.line(&format!("event {n}"));
        }
        let current = std::fs::read_to_string(scratch.path().join("supervisor.log")).unwrap();
        let old = std::fs::read_to_string(scratch.path().join("supervisor.log.1")).unwrap();
        assert!(
            current.len() <= 1000 && old.len() <= 1000,
            "{} {}",
            current.len(),
            old.len()
        );
        assert!(current.ends_with("event 499\n"), "{current}");
        // Nothing is lost between the two files.
        let first = current.lines().next().unwrap();
        let before: u32 = first.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(old.ends_with(&format!("event {}\n", before - 1)), "{old}");
        let files = std::fs::read_dir(scratch.path()).unwrap().count();
        assert_eq!(files, 2, "only the log and one older one");
    }

    #[test]
    fn case10_a_failed_write_is_counted_and_said_later() {
        if !Path::new("/dev/full").exists() {
            eprintln!("no /dev/full here: the failed write was not simulated");
            return;
        }
        let scratch = crate::fsutil::ScratchDir::new_in(&std::env::temp_dir(), "log").unwrap();
        let mut log = log_in(scratch.path(), LIMIT);
        let good = std::mem::replace(&mut log.file, append(Path::new("/dev/full")).unwrap());
        log.line("one");
        log.line("two");
        assert_eq!(log.lost, 2);
        log.file = good;
        log.line("three");
        let text = std::fs::read_to_string(scratch.path().join("supervisor.log")).unwrap();
        assert!(text.contains("(2 log lines lost: could not write "), "{text}");
        assert!(text.ends_with(" three\n") && !text.contains("one"), "{text}");
        assert_eq!(log.lost, 0);
    }
}
