//! The files setup may change, before and after: planned in full first, so a dry run shows the
//! exact diff and nothing is written unless every file can be.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cmd::Ctx;
use crate::fsutil::{self, PRIVATE_FILE};
use crate::keys;
use crate::profile::Profiles;
use crate::sshconfig;

/// The three files setup may change, before and after.
pub(super) struct Edits {
    pub(super) profiles: Profiles,
    pub(super) managed_old: String,
    pub(super) managed_new: String,
    pub(super) user_old: Option<String>,
    pub(super) user_new: Option<String>,
    pub(super) hosts_old: String,
}

pub(super) fn read_text(path: &Path) -> Result<Option<String>> {
    fsutil::read_optional(path)?
        .map(|b| {
            String::from_utf8(b)
                .with_context(|| format!("{} is not UTF-8: jssh only edits UTF-8 files", path.display()))
        })
        .transpose()
}

impl Edits {
    pub(super) fn plan(ctx: &Ctx, profiles: Profiles) -> Result<Self> {
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

    pub(super) fn print_diff(&self, ctx: &Ctx) {
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

    /// Refuses, before anything is written, when a file that would change cannot be: a
    /// read-only target (home-manager links `~/.ssh/config` into its read-only store) is
    /// explained, never replaced, and the error says which line to add where (case 2 of
    /// issue 11). `new_key` is where a newly made key would go.
    pub(super) fn check_writable(&self, ctx: &Ctx, new_key: Option<&Path>) -> Result<()> {
        let paths = &ctx.paths;
        let config = &paths.ssh_config;
        if self.user_new.is_some()
            && let Some((target, why)) = fsutil::unwritable(config)?
        {
            let file = if target == *config {
                format!("{}", config.display())
            } else {
                format!("{} (a link to {})", config.display(), target.display())
            };
            bail!(
                "cannot add jssh's Include line to {file}: {why}; add the line `Include {}` at the top of that \
                 file yourself (or of the file your dotfiles manager makes it from), then rerun; nothing was changed",
                paths.include_target().display()
            );
        }
        let backup = self.user_new.is_some() && self.user_old.is_some() && !paths.backup_file().exists();
        let managed = paths.managed_file();
        let writes = [
            (backup, paths.backup_file()),
            (self.managed_old != self.managed_new, managed),
            (self.hosts_old != self.profiles.render(), paths.hosts_file()),
            (new_key.is_some(), new_key.map(Path::to_path_buf).unwrap_or_default()),
            (new_key.is_some(), new_key.map(keys::public_path).unwrap_or_default()),
        ];
        for (changes, path) in writes {
            if let Some((target, why)) = changes.then(|| fsutil::unwritable(&path)).transpose()?.flatten() {
                bail!(
                    "cannot write {}: {why}; make it writable and rerun; nothing was changed",
                    target.display()
                );
            }
        }
        Ok(())
    }

    /// Writes the managed file, then the Include line (after a one-time backup), then the
    /// profiles. Each write is atomic and skipped when the bytes are already equal.
    pub(super) fn commit(&self, ctx: &Ctx) -> Result<()> {
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
