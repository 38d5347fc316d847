//! Following the supervisor's log, for `jssh logs -f` and a foreground `jssh up`: new text as
//! it is appended, made safe for the terminal, across a rotation (the supervisor renames a
//! full log and starts a new one, see `supervisor::log`) and a truncation.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::sanitize::for_terminal;

pub(crate) struct Follower {
    path: PathBuf,
    file: File,
}

impl Follower {
    /// Follows the log at `path` from byte `from` on.
    pub(crate) fn open(path: &Path, from: u64) -> Result<Self> {
        let mut file = File::open(path).with_context(|| format!("could not open {}", path.display()))?;
        file.seek(SeekFrom::Start(from))
            .with_context(|| format!("could not read {}", path.display()))?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Writes what was appended since the last call to `out`, including the rest of a log
    /// that was rotated meanwhile and the start of its successor. A write error (the reader
    /// went away) is the caller's to judge.
    pub(crate) fn copy_new(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        loop {
            let pos = self.file.stream_position()?;
            if std::fs::metadata(&self.path).is_ok_and(|m| m.len() < pos) && self.replaced().is_none() {
                self.file.seek(SeekFrom::Start(0))?; // Truncated: start over.
            }
            let mut text = String::new();
            self.file.read_to_string(&mut text)?;
            out.write_all(for_terminal(&text).as_bytes())?;
            match self.replaced() {
                Some(new) => self.file = new,
                None => return out.flush(),
            }
        }
    }

    /// The file now at the path, when it is no longer the one open (the log was rotated).
    fn replaced(&self) -> Option<File> {
        use std::os::unix::fs::MetadataExt;
        let (now, was) = (std::fs::metadata(&self.path).ok()?, self.file.metadata().ok()?);
        if (now.dev(), now.ino()) == (was.dev(), was.ino()) {
            return None;
        }
        File::open(&self.path).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_appends_a_rotation_and_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("supervisor.log");
        std::fs::write(&path, "old\nnew 1\n").unwrap();
        let mut follow = Follower::open(&path, 4).unwrap();
        let mut out = Vec::new();
        follow.copy_new(&mut out).unwrap();
        assert_eq!(out, b"new 1\n");

        let mut log = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        log.write_all(b"new 2 \x1b]0;title\x07\n").unwrap();
        // Rotated: the old file gets its last line, then a new file starts.
        log.write_all(b"last of the old\n").unwrap();
        std::fs::rename(&path, dir.path().join("supervisor.log.1")).unwrap();
        std::fs::write(&path, "first of the new\n").unwrap();
        out.clear();
        follow.copy_new(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            format!(
                "{}last of the old\nfirst of the new\n",
                for_terminal("new 2 \x1b]0;title\x07\n")
            )
        );

        std::fs::write(&path, "x\n").unwrap();
        out.clear();
        follow.copy_new(&mut out).unwrap();
        assert_eq!(out, b"x\n", "truncated: from the start");
    }
}
