//! Runtime state per alias in jssh's state dir (`<state>/<alias>/`, 0700): the session file
//! (ports, token, counters; 0600), the supervisor's lease (a lock it holds for its whole life,
//! with its pid) and log, a lock that makes concurrent `jssh up`s agree on one server, and the
//! local port to reuse next time.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::envspec::EnvSpec;
use crate::fsutil::{self, PRIVATE_FILE};
use crate::jupyter::JupyterInfo;
use crate::paths::Paths;
use crate::profile::LoginKind;
use crate::slurm::{Job, Reach};
use crate::ssh::RemoteEnd;
use crate::target::Alias;

/// What the supervisor is doing, as `jssh status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Phase {
    Starting,
    Up,
    Reconnecting,
    /// The supervisor gave up (e.g. Jupyter kept dying); see `last_error`.
    Failed,
    /// Only the user can go on: the login a human answered has ended, or the server refused
    /// the key (or its host key changed). Nothing is attempted until `jssh login` (or `jssh
    /// up`), and the local port holds connections meanwhile.
    NeedsLogin,
    /// The tunnel was stopped; the remote server may still run.
    Stopped,
    /// The Slurm job Jupyter ran as has ended (walltime, scancel, a node failure): see
    /// `last_error`. Nothing is resubmitted.
    JobEnded,
}

/// One alias's server and tunnel, shared by `up`, the supervisor, `status`, `url` and `down`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) alias: Alias,
    pub(crate) tmux_name: String,
    pub(crate) local_port: u16,
    pub(crate) remote_port: Option<u16>,
    pub(crate) remote_socket: Option<String>,
    pub(crate) remote_pid: Option<u32>,
    /// The ssh master currently carrying the tunnel (the supervisor's child).
    #[serde(default)]
    pub(crate) ssh_pid: Option<u32>,
    /// The machine Jupyter runs on (`uname -n`): a login address may lead to several.
    #[serde(default)]
    pub(crate) remote_node: Option<String>,
    pub(crate) token: String,
    pub(crate) notebook: bool,
    pub(crate) dir: Option<String>,
    pub(crate) env: Vec<EnvSpec>,
    #[serde(default)]
    pub(crate) jupyter: JupyterInfo,
    pub(crate) phase: Phase,
    /// Whether logins need a human: then the supervisor rides on the one login `jssh up`
    /// made in the user's terminal, and never logs in itself.
    #[serde(default)]
    pub(crate) login: LoginKind,
    pub(crate) started_unix: u64,
    pub(crate) reconnects: u32,
    pub(crate) restarts: u32,
    pub(crate) last_error: Option<String>,
    /// The Slurm job Jupyter runs as (`--slurm`); then `remote_node` is its compute node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) job: Option<Job>,
}

impl Session {
    pub(crate) fn remote_end(&self) -> RemoteEnd {
        // The login host resolves the node's name, as for its own connections to it.
        if let Some(job) = self.job.as_ref().filter(|j| j.reach == Reach::NodePort)
            && let (Some(node), Some(port)) = (&job.node, self.remote_port)
        {
            return RemoteEnd::Host(node.clone(), port);
        }
        match (&self.remote_socket, self.remote_port) {
            (Some(sock), _) => RemoteEnd::Socket(sock.clone()),
            (None, port) => RemoteEnd::Port(port.unwrap_or_default()),
        }
    }

    /// The clickable URL (it carries the token, so it is only printed, never put in argv).
    pub(crate) fn url(&self) -> String {
        format!("{}?token={}", self.page_url(), self.token)
    }

    /// The URL without its token, for logs and status lines others may read.
    pub(crate) fn page_url(&self) -> String {
        let page = if self.jupyter.notebook_ui(self.notebook) {
            "tree"
        } else {
            "lab"
        };
        format!("http://127.0.0.1:{}/{page}", self.local_port)
    }
}

/// What [`StateDir::load_session`] found.
#[derive(Debug)]
pub(crate) enum SessionFile {
    Missing,
    Session(Box<Session>),
    /// The file exists but is not a session (damaged, or from another jssh): why.
    Unreadable(String),
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `<state dir>/<alias>/`: this machine's state for one alias (the remote side has its own
/// run dir, `~/.jssh/run/jssh-<alias>/`, which only the scripts in `remote/` name).
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub(crate) fn new(paths: &Paths, alias: &Alias) -> Self {
        Self {
            dir: paths.state_dir.join(alias.as_str()),
        }
    }

    pub(crate) fn ensure(&self) -> Result<()> {
        fsutil::ensure_private_dir(&self.dir)
    }

    pub(crate) fn exists(&self) -> bool {
        self.dir.exists()
    }

    /// Host keys of Slurm compute nodes, trusted on first use (see [`crate::ssh::NodeHop`]):
    /// one file beside the aliases' dirs, as a cluster's nodes serve several aliases.
    pub(crate) fn node_known_hosts(&self) -> PathBuf {
        self.dir.parent().unwrap_or(&self.dir).join("slurm_known_hosts")
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }

    /// Where the log's older events are, after its last rotation (see `supervisor::log`).
    pub(crate) fn rotated_log_path(&self) -> PathBuf {
        rotated(&self.log_path())
    }

    /// The supervisor's lease: it holds a lock on this file for its whole life (released by
    /// the kernel even on SIGKILL), and its pid is written in it.
    pub(crate) fn lease_path(&self) -> PathBuf {
        self.dir.join("supervisor.lock")
    }

    fn session_path(&self) -> PathBuf {
        self.dir.join("session.json")
    }

    /// The supervisor's two ssh control sockets (a connection and its standby): in the alias's
    /// dir, unless that path is too long for a socket (see [`CONTROL_PATH_MAX`]); then in a
    /// private dir of this user's under /tmp, named after the alias's dir (see
    /// [`StateDir::prepare_control_dir`]).
    pub(crate) fn control_path(&self, n: u32) -> PathBuf {
        let path = self.dir.join(format!("ctl{n}"));
        if path.as_os_str().len() <= CONTROL_PATH_MAX {
            return path;
        }
        let hash = fnv(self.dir.as_os_str().as_bytes());
        short_control_dir().join(format!("{hash:016x}-ctl{n}"))
    }

    /// What the ssh behind control socket `n` says (`ssh -E`): the supervisor reads it when
    /// that ssh ends, to log it and to tell a server that dropped the connection before any
    /// login from one that refused the login.
    pub(crate) fn ssh_errors_path(&self, n: u32) -> PathBuf {
        self.dir.join(format!("ssh{n}.err"))
    }

    /// The control socket of the login a human answered (see [`crate::ssh::Ssh::login_master`]).
    pub(crate) fn login_control(&self) -> PathBuf {
        self.control_path(2)
    }

    /// Makes sure the dir of [`StateDir::control_path`] exists and is this user's alone.
    pub(crate) fn prepare_control_dir(&self) -> Result<()> {
        let control = self.control_path(0);
        let dir = control.parent().context("a control path has no parent")?;
        if dir == self.dir {
            return self.ensure();
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .or_else(|e| {
                if e.kind() == ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .with_context(|| format!("could not create {}", dir.display()))?;
        let meta = fs::symlink_metadata(dir).with_context(|| format!("could not read {}", dir.display()))?;
        if !meta.is_dir() || meta.uid() != nix::unistd::getuid().as_raw() || meta.mode() & 0o077 != 0 {
            bail!(
                "{} (for ssh's control sockets, as {} is too long a path for one) is not a \
                 private directory of yours: remove it, or set a shorter JSSH_STATE_DIR",
                dir.display(),
                self.dir.display()
            );
        }
        Ok(())
    }

    /// The supervisor's ssh masters (`PID CONTROL` lines), for the next supervisor to end
    /// should this one be killed.
    fn masters_path(&self) -> PathBuf {
        self.dir.join("masters")
    }

    pub(crate) fn write_masters(&self, masters: &[(u32, PathBuf)]) -> Result<()> {
        let mut text = String::new();
        for (pid, control) in masters {
            let _ = writeln!(text, "{pid} {}", control.display());
        }
        fsutil::write_atomic(&self.masters_path(), text.as_bytes(), PRIVATE_FILE).map(|_| ())
    }

    pub(crate) fn read_masters(&self) -> Vec<(u32, PathBuf)> {
        fs::read_to_string(self.masters_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (pid, control) = l.split_once(' ')?;
                Some((pid.parse().ok()?, PathBuf::from(control)))
            })
            .collect()
    }

    pub(crate) fn open_page(&self) -> PathBuf {
        self.dir.join("open.html")
    }

    /// Blocks until this process holds the alias's lock (released on drop).
    pub(crate) fn lock(&self) -> Result<Flock<File>> {
        self.ensure()?;
        lock_file(&self.dir.join("lock"))
    }

    /// The session, or `None` when there is none or it cannot be understood (a file from an
    /// older jssh, or a damaged one: see [`StateDir::load_session`]).
    pub(crate) fn read_session(&self) -> Result<Option<Session>> {
        Ok(match self.load_session()? {
            SessionFile::Session(session) => Some(*session),
            SessionFile::Missing | SessionFile::Unreadable(_) => None,
        })
    }

    /// The session file, telling a missing one from one that cannot be understood (which
    /// `status` reports instead of calling a running tunnel down).
    pub(crate) fn load_session(&self) -> Result<SessionFile> {
        let path = self.session_path();
        let Some(bytes) = fsutil::read_optional(&path)? else {
            return Ok(SessionFile::Missing);
        };
        Ok(match serde_json::from_slice(&bytes) {
            Ok(session) => SessionFile::Session(Box::new(session)),
            Err(e) => SessionFile::Unreadable(format!("{}: {e}", path.display())),
        })
    }

    pub(crate) fn write_session(&self, session: &Session) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(session).context("could not encode the session")?;
        fsutil::write_atomic(&self.session_path(), &bytes, PRIVATE_FILE)
            .with_context(|| format!("could not write {}", self.session_path().display()))?;
        Ok(())
    }

    /// Takes the supervisor's lease for this process, or fails when another supervisor holds
    /// it. The file keeps this process's pid for [`crate::supervisor::handle::find`].
    pub(crate) fn take_lease(&self) -> Result<Lease> {
        let path = self.lease_path();
        let mut file = open_lock(&path)?;
        // `handle::find` asks whether the lease is held by taking it shared for an instant: a
        // supervisor starting in that instant would think another one runs. A real holder
        // keeps it for its whole life, so a short retry tells the two apart.
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut lock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => break lock,
                Err((back, e)) if Instant::now() >= deadline => {
                    drop(back);
                    return Err(e).with_context(|| format!("another supervisor holds {}", path.display()));
                }
                Err((back, _)) => {
                    file = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        lock.set_len(0).context("could not write the lease")?;
        std::io::Write::write_all(&mut *lock, format!("{}\n", std::process::id()).as_bytes())
            .context("could not write the lease")?;
        let inode = lock.metadata().map(|m| m.ino()).unwrap_or_default();
        Ok(Lease {
            _lock: lock,
            path,
            inode,
        })
    }

    /// Forgets the session (after `down`); the remembered port and the log stay.
    pub(crate) fn clear(&self) {
        for path in [self.session_path(), self.open_page()] {
            let _ = fs::remove_file(path);
        }
    }

    pub(crate) fn remembered_port(&self) -> Option<u16> {
        fs::read_to_string(self.dir.join("port")).ok()?.trim().parse().ok()
    }

    pub(crate) fn remember_port(&self, port: u16) -> Result<()> {
        fsutil::write_atomic(&self.dir.join("port"), format!("{port}\n").as_bytes(), PRIVATE_FILE).map(|_| ())
    }
}

/// The longest control socket path jssh gives ssh: a socket's path holds at most 103 bytes
/// on macOS and the BSDs (107 on Linux; the smaller one everywhere), and ssh binds
/// `PATH.` plus 16 random characters first, then renames it.
const CONTROL_PATH_MAX: usize = 103 - 17;

/// FNV-1a: a stable name for a long state dir's control sockets and for a server's shared
/// files, the same in every jssh version (std's hasher may change between Rust releases).
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0100_0000_01b3;
    bytes
        .iter()
        .fold(FNV_OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// Where control sockets go when the state dir's path is too long for them.
fn short_control_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/jssh-{}", nix::unistd::getuid()))
}

/// A lock over all aliases' port choices (held only while one is picked and recorded).
pub(crate) fn lock_ports(paths: &Paths) -> Result<Flock<File>> {
    fsutil::ensure_private_dir(&paths.state_dir)?;
    lock_file(&paths.state_dir.join("ports.lock"))
}

/// The name a log moves to when it rotates: `supervisor.log.1`.
pub(crate) fn rotated(log: &Path) -> PathBuf {
    let mut path = log.as_os_str().to_owned();
    path.push(".1");
    PathBuf::from(path)
}

/// Blocks until this process holds an exclusive lock on `path` (released on drop).
fn lock_file(path: &Path) -> Result<Flock<File>> {
    let file = open_lock(path)?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("could not lock {}", path.display()))
}

pub(crate) fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(PRIVATE_FILE)
        .open(path)
        .with_context(|| format!("could not open {}", path.display()))
}

/// The local ports other aliases keep.
pub(crate) fn claimed_ports(paths: &Paths, except: &Alias) -> Vec<u16> {
    let Ok(entries) = fs::read_dir(&paths.state_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name() != except.as_str())
        .filter_map(|e| fs::read_to_string(e.path().join("port")).ok()?.trim().parse().ok())
        .collect()
}

/// A supervisor's hold on its alias (see [`StateDir::take_lease`]).
#[derive(Debug)]
pub(crate) struct Lease {
    _lock: Flock<File>,
    path: PathBuf,
    inode: u64,
}

impl Lease {
    /// Whether the lease file is still the one this process locked: once the state dir is
    /// deleted (or the file replaced), nobody can find or stop this supervisor any more.
    pub(crate) fn still_there(&self) -> bool {
        fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sockets_get_a_short_path_when_the_state_dir_is_deep() {
        let near = StateDir {
            dir: PathBuf::from("/Users/alice/.local/state/jssh/gpu"),
        };
        assert_eq!(near.control_path(1), near.dir.join("ctl1"));
        let deep = StateDir {
            dir: PathBuf::from(format!("/Users/{}/.local/state/jssh/gpu", "a".repeat(60))),
        };
        let (zero, one) = (deep.control_path(0), deep.control_path(1));
        assert!(zero.starts_with(short_control_dir()), "{}", zero.display());
        assert!(zero.to_string_lossy().ends_with("-ctl0"), "{}", zero.display());
        assert!(zero.as_os_str().len() <= CONTROL_PATH_MAX, "{}", zero.display());
        assert_ne!(zero, one);
        assert_eq!(deep.control_path(0), zero, "the same every time");
        let other = StateDir {
            dir: deep.dir.with_file_name("cpu"),
        };
        assert_ne!(other.control_path(0), zero, "another alias gets its own");
    }
}
