//! Where jssh reads and writes, resolved once from flags and environment so that every path is
//! injectable (tests never touch the real `~/.ssh` or jssh state).

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::UsageError;
use crate::sshconfig;
use crate::target::is_plain_path;

/// The files jssh owns or edits.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    /// The user's OpenSSH client config (the file jssh adds one `Include` line to).
    pub(crate) ssh_config: PathBuf,
    /// Whether `ssh_config` is OpenSSH's own default, so no `-F` is needed.
    pub(crate) is_default_config: bool,
    /// jssh's host profiles and settings.
    pub(crate) config_dir: PathBuf,
    /// Runtime state: pidfiles, logs, tokens.
    #[allow(dead_code, reason = "read by `jssh up`, which lands next")]
    pub(crate) state_dir: PathBuf,
}

/// The home directory OpenSSH uses: from the password database, not `$HOME`.
fn passwd_home() -> Result<PathBuf> {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .context("could not read the password database")?
        .context("the current user has no password database entry")?;
    Ok(user.dir)
}

/// `$VAR` when set and absolute (as the XDG spec requires), else `home/fallback`.
fn xdg_dir(var: &str, home: &Path, fallback: &str) -> PathBuf {
    env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(fallback))
}

fn absolute(path: PathBuf) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(env::current_dir()
        .context("could not read the current directory")?
        .join(path))
}

impl Paths {
    /// Resolves the paths from `--ssh-config` and the `JSSH_CONFIG_DIR`/`JSSH_STATE_DIR` knobs.
    pub(crate) fn resolve(ssh_config: Option<PathBuf>) -> Result<Self> {
        let pw_home = passwd_home()?;
        let default_config = pw_home.join(".ssh").join("config");
        let ssh_config = match ssh_config {
            Some(p) if p.as_os_str().is_empty() => bail!("--ssh-config is empty: give a file path"),
            Some(p) => absolute(p)?,
            None => default_config.clone(),
        };
        let home = env::var_os("HOME").map_or_else(|| pw_home.clone(), PathBuf::from);
        let from_env = |var: &str| env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        let config_dir = match from_env("JSSH_CONFIG_DIR") {
            Some(p) => absolute(p)?,
            None => xdg_dir("XDG_CONFIG_HOME", &home, ".config").join("jssh"),
        };
        let state_dir = match from_env("JSSH_STATE_DIR") {
            Some(p) => absolute(p)?,
            None => xdg_dir("XDG_STATE_HOME", &home, ".local/state").join("jssh"),
        };
        let paths = Self {
            is_default_config: ssh_config == default_config,
            ssh_config,
            config_dir,
            state_dir,
        };
        paths.check_ssh_dir()?;
        Ok(paths)
    }

    /// The ssh config's directory is written into ssh_config (the ControlPath, the Include
    /// line), so it must be a path ssh_config can hold. A config other than OpenSSH's default
    /// must also be a plain path: ssh pastes its `-F FILE` unquoted into the shell command it
    /// runs for a ProxyJump, and OpenSSH 9.9 expands `%` and `${…}` in the Include line.
    fn check_ssh_dir(&self) -> Result<()> {
        let dir = self.ssh_dir();
        let why = match dir.to_str() {
            None => Some("it is not UTF-8".to_owned()),
            Some(text) => sshconfig::unwritable_path(text),
        };
        if let Some(why) = why {
            return Err(UsageError(format!(
                "jssh cannot name files in {} from ssh_config ({why}): use --ssh-config with a config in \
                 another directory",
                dir.display()
            ))
            .into());
        }
        if !self.is_default_config && !is_plain_path(&self.ssh_config) {
            return Err(UsageError(format!(
                "--ssh-config {:?}: use a path of letters, digits and / . _ - + , @ : = only (ssh runs a \
                 ProxyJump through a shell with this path in it)",
                self.ssh_config.display()
            ))
            .into());
        }
        Ok(())
    }

    /// The directory holding the ssh config (usually `~/.ssh`).
    pub(crate) fn ssh_dir(&self) -> &Path {
        self.ssh_config.parent().unwrap_or(Path::new("/"))
    }

    /// The one file jssh owns in the ssh config tree.
    pub(crate) fn managed_file(&self) -> PathBuf {
        self.ssh_dir().join("config.d").join("jssh")
    }

    /// The key `setup` creates when no `--identity` is given.
    pub(crate) fn default_key(&self) -> PathBuf {
        self.ssh_dir().join("jssh_ed25519")
    }

    /// ControlPath for the managed blocks: `%C` hashes host, port, user and jump, so it stays
    /// short enough for a Unix socket path. Its file name is ssh's tokens; the directory is
    /// escaped when rendered (see [`sshconfig::render_block`]).
    pub(crate) fn control_path(&self) -> PathBuf {
        self.ssh_dir().join("cm-%C")
    }

    /// The argument of the `Include` line: relative only for the default config, because
    /// OpenSSH resolves relative Include paths against `~/.ssh`, not the including file's dir.
    pub(crate) fn include_target(&self) -> PathBuf {
        if self.is_default_config {
            PathBuf::from("config.d/jssh")
        } else {
            self.managed_file()
        }
    }

    /// `-F FILE` when the config is not OpenSSH's default.
    pub(crate) fn ssh_config_flag(&self) -> Option<&Path> {
        (!self.is_default_config).then_some(self.ssh_config.as_path())
    }

    pub(crate) fn hosts_file(&self) -> PathBuf {
        self.config_dir.join("hosts.toml")
    }

    /// A one-time copy of the user's config taken before jssh first changes it.
    pub(crate) fn backup_file(&self) -> PathBuf {
        let mut name = OsString::from(self.ssh_config.file_name().unwrap_or_default());
        name.push(".jssh-backup");
        self.ssh_config.with_file_name(name)
    }
}
