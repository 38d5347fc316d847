//! Test fixtures: a private OpenSSH server on 127.0.0.1 and an isolated client side.
//!
//! Nothing here reads or writes the real `~/.ssh`: OpenSSH resolves `~` from the password
//! database, not `$HOME`, so every ssh file is passed explicitly (`-F`, `UserKnownHostsFile`,
//! `IdentityFile`, sshd's `-f`, `-E`, `HostKey`, `PidFile`, `AuthorizedKeysFile`).

use std::collections::HashSet;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid, User, geteuid};
use tempfile::TempDir;

/// sshd re-executes itself for every connection, which requires an absolute path.
const SSHD: &str = "/usr/sbin/sshd";
/// Attempts at finding a free port: another process can take the one we picked before sshd
/// binds it.
const BIND_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A private sshd listening on 127.0.0.1, with everything (host key, config, log, the remote
/// side's HOME, tmux and Jupyter dirs) under one temporary root.
///
/// For the current user, sshd sets `HOME` to [`Sshd::home`] and points `TMUX_TMPDIR` and
/// `JUPYTER_{RUNTIME,CONFIG,DATA}_DIR` under the root, so remote commands never touch the real
/// home. These and the absolute `AuthorizedKeysFile` sit in a `Match User <current user>`
/// block: other users (see [`throwaway_user_with_password`]) get stock sshd behaviour, i.e.
/// their own home from the password database and its `.ssh/authorized_keys`.
///
/// sshd still starts every session in the home from the password database (the real one):
/// relative paths in remote commands resolve there, while `cd` goes to [`Sshd::home`].
pub(crate) struct Sshd {
    root: TempDir,
    home: PathBuf,
    bootstrap_key: PathBuf,
    user: String,
    port: u16,
    /// Where it listens: 127.0.0.1, or an address inside a network namespace of the test's.
    addr: Ipv4Addr,
    /// The network namespace sshd runs in (see `netns.rs`), or `None` for this one.
    netns: Option<String>,
    /// Whether logins need a TOTP code after the key (see [`Sshd::start_with_otp`]).
    otp: bool,
    /// A command prefix that runs sshd inside a host of the test's own (see
    /// [`Sshd::start_on_host`]); empty otherwise.
    enter: Vec<String>,
    /// `None` while stopped by [`Sshd::stop_listener`].
    listener: Option<Child>,
    /// Session processes of stopped listeners: once their parent is gone they are reparented
    /// and can no longer be found as its descendants, yet `Drop` must kill them.
    orphaned_sessions: Vec<ProcId>,
}

/// The `sshd_config` lines of a server that asks for a TOTP code after the key.
const OTP_CONFIG: &str = "UsePAM yes\nKbdInteractiveAuthentication yes\n\
                          AuthenticationMethods publickey,keyboard-interactive:pam";

impl Sshd {
    /// Starts sshd with the default configuration.
    pub(crate) fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// Starts sshd with `extra` `sshd_config` lines. Its global lines come before the fixture's
    /// defaults, so they override them (sshd keeps the first value of a keyword). Any `Match`
    /// blocks in it come after the fixture's `Match User <current user>` block, so they cannot
    /// undo that block's `SetEnv` and `AuthorizedKeysFile` (again, the first match wins).
    pub(crate) fn start_with(extra: &str) -> Sshd {
        Sshd::start_at(extra, Ipv4Addr::LOCALHOST, None, false, None)
    }

    /// Starts sshd with a real second factor: the key, then a TOTP code from PAM's
    /// `pam_google_authenticator` with a secret of the test's own ([`Sshd::otp_code`]). sshd
    /// asks PAM for the service "sshd", so it runs in a private mount namespace where the
    /// fixture's own PAM stack is bound over `/etc/pam.d`; the machine's is never touched.
    /// `None` (with a message) when not root, which that needs.
    pub(crate) fn start_with_otp() -> Option<Sshd> {
        if !geteuid().is_root() {
            eprintln!("skipped: a PAM second factor needs root (a private mount namespace)");
            return None;
        }
        Some(Sshd::start_at(OTP_CONFIG, Ipv4Addr::LOCALHOST, None, true, None))
    }

    /// The TOTP code valid now (`oathtool`).
    pub(crate) fn otp_code(&self) -> String {
        let secret = fs::read_to_string(self.path("otp_secret")).expect("read the OTP secret");
        let secret = secret.lines().next().expect("a secret line");
        let out = Command::new("oathtool")
            .args(["--totp", "-b", secret])
            .output()
            .expect("oathtool (scripts/install-deps installs it)");
        assert!(out.status.success(), "oathtool failed");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Starts sshd inside the network namespace `netns`, listening on `addr` port 22: another
    /// host for the client, reachable only through the links the test made. Nothing else
    /// listens in a fresh namespace, so the port is fixed.
    pub(crate) fn start_in_netns(netns: &str, addr: Ipv4Addr) -> Sshd {
        Sshd::start_at("", addr, Some(netns.to_owned()), false, None)
    }

    /// Starts sshd on a host of the test's own that is more than a network namespace (see
    /// `slurm.rs`): `enter` is a command prefix that runs a program inside that host in place
    /// (so that sshd itself is the child), `netns` its network namespace, `addr` the address
    /// clients use (port 22), `extra` more lines as in [`Sshd::start_with`] (e.g. another
    /// `ListenAddress`), and `home` the current user's HOME, shared with other hosts: the
    /// bootstrap key is appended to its `.ssh/authorized_keys`. `otp`: a second factor, as
    /// [`Sshd::start_with_otp`] (the host's own mount namespace is not touched: sshd gets one
    /// of its own inside it).
    pub(crate) fn start_on_host(
        enter: &[String],
        netns: &str,
        addr: Ipv4Addr,
        extra: &str,
        home: &Path,
        otp: bool,
    ) -> Sshd {
        let host = Some((enter.to_vec(), home.to_owned()));
        let extra = if otp {
            format!("{OTP_CONFIG}\n{extra}")
        } else {
            extra.to_owned()
        };
        Sshd::start_at(&extra, addr, Some(netns.to_owned()), otp, host)
    }

    /// `host`: see [`Sshd::start_on_host`].
    fn start_at(
        extra: &str,
        addr: Ipv4Addr,
        netns: Option<String>,
        otp: bool,
        host: Option<(Vec<String>, PathBuf)>,
    ) -> Sshd {
        if geteuid().is_root() {
            // sshd's privilege separation directory; it refuses to start as root without it.
            fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let root = tempfile::Builder::new()
            .prefix("jssh-sshd-")
            .tempdir()
            .expect("create sshd temp root");
        let path = |name: &str| root.path().join(name);
        let (enter, home) = host.unwrap_or_else(|| (Vec::new(), path("home")));
        for dir in [
            home.join(".ssh"),
            path("tmux"),
            path("jupyter/runtime"),
            path("jupyter/config"),
            path("jupyter/data"),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .expect("create sshd dirs");
        }
        let host_key = path("ssh_host_ed25519_key");
        let bootstrap_key = path("bootstrap_ed25519");
        keygen(&[&host_key, &bootstrap_key]);
        // Appended: a shared home already holds the keys of other hosts' sshds.
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join(".ssh/authorized_keys"))
            .and_then(|mut keys| keys.write_all(&fs::read(bootstrap_key.with_extension("pub"))?))
            .expect("authorize the bootstrap key");

        let mut sshd = Sshd {
            root,
            home,
            bootstrap_key,
            user: User::from_uid(geteuid())
                .expect("read the password database")
                .expect("the current user has a password database entry")
                .name,
            port: 0,
            addr,
            netns,
            otp,
            enter,
            listener: None,
            orphaned_sessions: Vec::new(),
        };
        if otp {
            sshd.write_pam_stack();
        }
        for _ in 0..BIND_ATTEMPTS {
            sshd.port = if sshd.netns.is_some() { 22 } else { free_port() };
            fs::write(sshd.config_path(), sshd.config(extra)).expect("write sshd_config");
            if sshd.spawn_listener() == Ready::Listening {
                return sshd;
            }
        }
        panic!(
            "sshd could not bind a free port in {BIND_ATTEMPTS} attempts; log:\n{}",
            sshd.log()
        );
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The remote side's HOME for the current user (sshd `SetEnv HOME=…`).
    pub(crate) fn home(&self) -> &Path {
        &self.home
    }

    /// `<home>/.ssh/authorized_keys`, which sshd reads (absolute `AuthorizedKeysFile`) and where
    /// `ssh-copy-id`'s `cd; … .ssh/authorized_keys` appends, since `cd` goes to `$HOME`.
    pub(crate) fn authorized_keys(&self) -> PathBuf {
        self.home.join(".ssh/authorized_keys")
    }

    /// An ed25519 private key without passphrase, already in [`Sshd::authorized_keys`].
    pub(crate) fn bootstrap_key(&self) -> &Path {
        &self.bootstrap_key
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA…` (a bare address on port 22): the `known_hosts` line
    /// for this server's host key.
    pub(crate) fn known_hosts_line(&self) -> String {
        let public = fs::read_to_string(self.path("ssh_host_ed25519_key.pub")).expect("read sshd host key");
        let key: Vec<&str> = public.split_whitespace().take(2).collect();
        let host = if self.port == 22 {
            self.addr.to_string()
        } else {
            format!("[{}]:{}", self.addr, self.port)
        };
        format!("{host} {}", key.join(" "))
    }

    /// The address sshd listens on.
    pub(crate) fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The login name of the user sshd runs as, who is the only one it can log in when not root.
    #[allow(
        dead_code,
        reason = "for tests that run plain ssh (`-l USER`); jssh's own tests may not need it"
    )]
    pub(crate) fn user(&self) -> String {
        self.user.clone()
    }

    /// Kills only the listening sshd, like `systemctl restart ssh` does before the new one
    /// starts: established sessions keep running, new connections are refused.
    ///
    /// # Panics
    /// If the listener is already stopped.
    pub(crate) fn stop_listener(&mut self) {
        let mut listener = self.listener.take().expect("sshd listener already stopped");
        let pid = child_pid(&listener);
        // Stopped, it cannot accept a connection between listing its sessions and dying.
        signal(pid, Signal::SIGSTOP);
        self.orphaned_sessions.extend(
            processes()
                .into_iter()
                .filter(|p| p.ppid == pid.as_raw() && !p.zombie)
                .map(|p| p.id),
        );
        signal(pid, Signal::SIGTERM);
        signal(pid, Signal::SIGCONT);
        listener.wait().expect("reap sshd listener");
    }

    /// A full outage, as when the server goes down: the listener and every established
    /// session (their processes and what they run, e.g. a remote `tmux wait-for`; not the
    /// daemonized tmux server, so Jupyter survives, as it would a real sshd restart). Frozen
    /// first, so that no client slips a new session in while the others are ended: a
    /// connection that reaches the frozen listener's backlog is reset when it dies.
    /// [`Sshd::restart`] ends the outage.
    ///
    /// # Panics
    /// If the listener is already stopped.
    pub(crate) fn outage(&mut self) {
        let mut listener = self.listener.take().expect("sshd listener already stopped");
        let pid = child_pid(&listener);
        signal(pid, Signal::SIGSTOP);
        kill_process_trees(|p| p.ppid == pid.as_raw());
        // SIGKILL ends a stopped process too.
        signal(pid, Signal::SIGKILL);
        listener.wait().expect("reap sshd listener");
    }

    /// Starts the listener again, on the same port with the same host key and configuration.
    ///
    /// # Panics
    /// If the listener is running, or the port was taken meanwhile.
    pub(crate) fn restart(&mut self) {
        assert!(self.listener.is_none(), "sshd listener is already running");
        assert!(
            self.spawn_listener() == Ready::Listening,
            "sshd could not bind port {} again; log:\n{}",
            self.port,
            self.log()
        );
    }

    /// The sshd log (`-E`, plus its stderr), for assertion messages.
    pub(crate) fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// `<root>/pam.d`: "sshd" asks for the key's partner, a TOTP code, and every other
    /// service is denied; plus the secret, 0600 as the module insists.
    fn write_pam_stack(&self) {
        let mut random = [0; 20];
        fs::File::open("/dev/urandom")
            .and_then(|mut urandom| urandom.read_exact(&mut random))
            .expect("read /dev/urandom");
        let secret = base32(&random);
        let secret_file = self.path("otp_secret");
        fs::write(&secret_file, format!("{secret}\n\" TOTP_AUTH\n")).expect("write the OTP secret");
        fs::set_permissions(&secret_file, fs::Permissions::from_mode(0o600)).expect("chmod the OTP secret");
        let dir = self.path("pam.d");
        DirBuilder::new().mode(0o755).create(&dir).expect("create pam.d");
        fs::write(
            dir.join("sshd"),
            format!(
                "auth required pam_google_authenticator.so secret={} user=root\n\
                 account required pam_permit.so\nsession required pam_permit.so\npassword required pam_deny.so\n",
                secret_file.display()
            ),
        )
        .expect("write pam.d/sshd");
        fs::write(
            dir.join("other"),
            "auth required pam_deny.so\naccount required pam_deny.so\n\
             session required pam_deny.so\npassword required pam_deny.so\n",
        )
        .expect("write pam.d/other");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn config_path(&self) -> PathBuf {
        self.path("sshd_config")
    }

    fn log_path(&self) -> PathBuf {
        self.path("sshd.log")
    }

    /// Marks every process started by this server's sessions, including ones that leave the
    /// session's process tree (a tmux server daemonizes), so that `Drop` can find them.
    /// Live processes started by this server's sessions whose command line contains `needle`.
    pub(crate) fn remote_processes(&self, needle: &str) -> Vec<u32> {
        let marker = self.marker();
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let live = fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
            });
            let matches = fs::read(entry.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle));
            if live && matches && has_environment_entry(pid, &marker) {
                found.push(pid.unsigned_abs());
            }
        }
        found
    }

    fn marker(&self) -> String {
        format!("JSSH_FIXTURE_SSHD={}", self.root.path().display())
    }

    fn config(&self, extra: &str) -> String {
        // `Match` runs to the end of the file, so extra `Match` blocks must follow all globals.
        let split = extra
            .lines()
            .position(|line| {
                line.split_whitespace()
                    .next()
                    .is_some_and(|word| word.eq_ignore_ascii_case("match"))
            })
            .unwrap_or(usize::MAX);
        let extra_global: Vec<&str> = extra.lines().take(split).collect();
        let extra_match: Vec<&str> = extra.lines().skip(split).collect();
        let path = |name: &str| quote(&self.path(name));
        format!(
            "{extra_global}\n\
             ListenAddress {addr}:{port}\n\
             HostKey {host_key}\n\
             PidFile {pid_file}\n\
             StrictModes no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin yes\n\
             UsePAM no\n\
             LogLevel VERBOSE\n\
             Match User {user}\n\
             \tAuthorizedKeysFile {authorized_keys}\n\
             \tSetEnv \"HOME={home}\" \"TMUX_TMPDIR={tmux}\" \"JUPYTER_RUNTIME_DIR={runtime}\" \
             \"JUPYTER_CONFIG_DIR={jconfig}\" \"JUPYTER_DATA_DIR={data}\" \"{marker}\"\n\
             {extra_match}\n",
            extra_global = extra_global.join("\n"),
            addr = self.addr,
            port = self.port,
            host_key = path("ssh_host_ed25519_key"),
            // Not the default /run/sshd.pid, which belongs to the system's sshd.
            pid_file = path("sshd.pid"),
            user = self.user,
            authorized_keys = quote(&self.authorized_keys()),
            home = self.home.display(),
            tmux = self.path("tmux").display(),
            runtime = self.path("jupyter/runtime").display(),
            jconfig = self.path("jupyter/config").display(),
            data = self.path("jupyter/data").display(),
            marker = self.marker(),
            extra_match = extra_match.join("\n"),
        )
    }

    /// Spawns the listener in the foreground (`-D`) so it stays our child, and waits until it
    /// answers with an SSH banner.
    fn spawn_listener(&mut self) -> Ready {
        let log_path = self.log_path();
        // Errors before sshd opens its `-E` log (a bad config) go to stderr: keep them too.
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open sshd log");
        let log_start =
            usize::try_from(stderr.metadata().expect("stat sshd log").len()).expect("sshd log size fits usize");
        // unshare and sh exec in place too. The bind mount lives and dies with the namespace,
        // which only this sshd and its sessions are in.
        let own_pam = |command: &mut Command| {
            command
                .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
                .arg(r#"mount --bind "$1" /etc/pam.d && shift && exec "$@""#)
                .arg("sh")
                .arg(self.path("pam.d"));
        };
        let mut command = match &self.netns {
            Some(_) if !self.enter.is_empty() => {
                let mut command = Command::new(&self.enter[0]);
                command.args(&self.enter[1..]);
                if self.otp {
                    own_pam(&mut command);
                }
                command.arg(SSHD);
                command
            }
            Some(netns) => {
                // `ip netns exec` execs in place: the child is sshd itself.
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, SSHD]);
                command
            }
            None if self.otp => {
                let mut command = Command::new("env");
                own_pam(&mut command);
                command.arg(SSHD);
                command
            }
            None => Command::new(SSHD),
        };
        let child = command
            .arg("-D")
            .arg("-f")
            .arg(self.config_path())
            .arg("-E")
            .arg(&log_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {SSHD}: {e}"));
        let listener = self.listener.insert(child);
        let listening = format!("Server listening on {} port {}.", self.addr, self.port);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let log = fs::read(&log_path).unwrap_or_default();
            let new_log = String::from_utf8_lossy(log.get(log_start..).unwrap_or_default());
            if let Some(status) = listener.try_wait().expect("poll sshd") {
                self.listener = None;
                if new_log.contains("Address already in use") {
                    return Ready::AddressInUse;
                }
                panic!("sshd exited ({status}) before accepting connections; log:\n{new_log}");
            }
            // The log line proves that our sshd, not another process, owns the port; the banner
            // proves that it accepts connections.
            // (In a namespace of the test's own nothing else can hold the port, and this one
            // cannot connect there: the log line is proof enough.)
            if new_log.contains(&listening) && (self.netns.is_some() || has_ssh_banner(self.port)) {
                return Ready::Listening;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not accept connections on port {} within {READY_TIMEOUT:?}; log:\n{new_log}",
                self.port
            );
            sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Sshd {
    /// A full outage: the listener, every session (also those of stopped listeners) and every
    /// process the sessions started, including daemonized ones such as a tmux server.
    fn drop(&mut self) {
        let listener = self.listener.as_ref().map(child_pid);
        let marker = self.marker();
        kill_process_trees(|p| {
            Some(Pid::from_raw(p.id.pid)) == listener
                || self.orphaned_sessions.contains(&p.id)
                || has_environment_entry(p.id.pid, &marker)
        });
        if let Some(mut listener) = self.listener.take() {
            // Only the listener is our child; PID 1 reaps the sessions.
            let _ = listener.wait();
        }
    }
}

#[derive(PartialEq)]
enum Ready {
    Listening,
    AddressInUse,
}

/// The client side: an ssh config that trusts the fixture's host key and offers the bootstrap
/// key, and empty jssh config and state dirs, all under one temporary root.
pub(crate) struct Client {
    root: TempDir,
}

impl Client {
    /// Creates `<root>/ssh/` (0700) holding a copy of the bootstrap key, `known_hosts` with the
    /// fixture's host key, and `config` containing only
    /// `Host *` / `UserKnownHostsFile …` / `IdentityFile …`: it has no `Host` block for the
    /// fixture, which is for jssh to add. Also creates `<root>/config`, `<root>/state` and an
    /// empty `<root>/.ssh` (see [`Client::envs`]).
    pub(crate) fn new(sshd: &Sshd) -> Client {
        let root = tempfile::Builder::new()
            .prefix("jssh-client-")
            .tempdir()
            .expect("create client temp root");
        let client = Client { root };
        for dir in [
            client.ssh_dir(),
            client.config_dir(),
            client.state_dir(),
            client.root().join(".ssh"),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .expect("create client dirs");
        }
        let identity = client.ssh_dir().join("bootstrap_ed25519");
        // fs::copy keeps the 0600 mode that ssh insists on for private keys.
        fs::copy(sshd.bootstrap_key(), &identity).expect("copy bootstrap key");
        fs::write(client.known_hosts(), sshd.known_hosts_line() + "\n").expect("write known_hosts");
        fs::write(
            client.ssh_config(),
            format!(
                "Host *\n\tUserKnownHostsFile {}\n\tIdentityFile {}\n",
                quote(&client.known_hosts()),
                quote(&identity),
            ),
        )
        .expect("write ssh config");
        client
    }

    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    pub(crate) fn ssh_dir(&self) -> PathBuf {
        self.root().join("ssh")
    }

    pub(crate) fn ssh_config(&self) -> PathBuf {
        self.ssh_dir().join("config")
    }

    pub(crate) fn known_hosts(&self) -> PathBuf {
        self.ssh_dir().join("known_hosts")
    }

    pub(crate) fn config_dir(&self) -> PathBuf {
        self.root().join("config")
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.root().join("state")
    }

    /// `alias`'s supervisor log so far (empty before there is one).
    pub(crate) fn supervisor_log(&self, alias: &str) -> String {
        std::fs::read_to_string(self.state_dir().join(alias).join("supervisor.log")).unwrap_or_default()
    }

    /// Environment for running jssh (or ssh-copy-id) against this client:
    /// `JSSH_SSH_CONFIG`, `JSSH_CONFIG_DIR`, `JSSH_STATE_DIR`, and `HOME=<root>`, because
    /// ssh-copy-id creates its scratch dir with `mktemp -d ~/.ssh/…` (the shell's `~`, i.e.
    /// `$HOME`, so the real `~/.ssh` without this) and fails if that dir is missing.
    pub(crate) fn envs(&self) -> Vec<(String, PathBuf)> {
        vec![
            ("JSSH_SSH_CONFIG".into(), self.ssh_config()),
            ("JSSH_CONFIG_DIR".into(), self.config_dir()),
            ("JSSH_STATE_DIR".into(), self.state_dir()),
            ("HOME".into(), self.root().to_owned()),
        ]
    }
}

/// A local user with a password, for password logins; removed with its processes on drop.
pub(crate) struct ThrowawayUser {
    name: String,
    password: String,
    uid: Uid,
    home: PathBuf,
    /// Holds the home dir; 0711 so that the user can reach it. Removed after `Drop::drop`, which
    /// has userdel remove the home first.
    _dir: TempDir,
}

/// Serializes this process's useradd/chpasswd/userdel calls, which otherwise contend for the
/// /etc/passwd lock and fail or wait for it to be released.
static USER_DB: Mutex<()> = Mutex::new(());

/// Creates a user `jsshtest<pid>_<n>` with a random password and a home under a temporary dir,
/// or returns `None` unless running as root (the caller should print a skip notice).
///
/// The fixture sshd's `SetEnv`/`AuthorizedKeysFile` apply only to the current user, so this
/// user logs in to its own home, with its own `~/.ssh/authorized_keys`: pass
/// [`ThrowawayUser::sshd_config`] to [`Sshd::start_with`].
pub(crate) fn throwaway_user_with_password() -> Option<ThrowawayUser> {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    if !geteuid().is_root() {
        return None;
    }
    let name = format!(
        "jsshtest{}_{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let password = random_hex();
    let dir = tempfile::Builder::new()
        .prefix("jssh-user-")
        .tempdir()
        .expect("create user temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).expect("make user temp dir traversable");
    let home = dir.path().join("home");
    let _lock = USER_DB.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let useradd = Command::new("useradd")
        .args(["--create-home", "--shell", "/bin/bash", "--home-dir"])
        .arg(&home)
        .arg(&name)
        .output()
        .expect("spawn useradd");
    assert!(
        useradd.status.success(),
        "useradd failed: {}",
        String::from_utf8_lossy(&useradd.stderr)
    );
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn chpasswd");
    // Through stdin, not argv, as a password should be.
    writeln!(chpasswd.stdin.take().expect("chpasswd stdin"), "{name}:{password}").expect("write to chpasswd");
    assert!(chpasswd.wait().expect("wait for chpasswd").success(), "chpasswd failed");
    let uid = User::from_name(&name)
        .expect("look up new user")
        .expect("new user exists")
        .uid;
    Some(ThrowawayUser {
        name,
        password,
        uid,
        home,
        _dir: dir,
    })
}

impl ThrowawayUser {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// `<home>/.ssh/authorized_keys`, where sshd looks by default and `ssh-copy-id` appends.
    pub(crate) fn authorized_keys(&self) -> PathBuf {
        self.home.join(".ssh/authorized_keys")
    }

    /// `sshd_config` lines for [`Sshd::start_with`]: password logins for this user only, and its
    /// tmux sockets in its home rather than in `/tmp/tmux-<uid>`, which would outlive the user.
    pub(crate) fn sshd_config(&self) -> String {
        format!(
            "Match User {}\n\tPasswordAuthentication yes\n\tSetEnv \"TMUX_TMPDIR={}\"\n",
            self.name,
            self.home.display()
        )
    }
}

impl Drop for ThrowawayUser {
    fn drop(&mut self) {
        // userdel refuses a user with running processes, and they would outlive the account.
        kill_process_trees(|p| p.uid == self.uid.as_raw());
        let _lock = USER_DB.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // --force: the killed processes may linger as zombies until PID 1 reaps them.
        let out = Command::new("userdel")
            .args(["--force", "--remove"])
            .arg(&self.name)
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            // Not a panic: this may run while unwinding from a failed test.
            other => eprintln!("userdel {} failed: {other:?}", self.name),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
struct ProcId {
    pid: i32,
    /// Start time in clock ticks since boot, which tells a reused pid from the original.
    start: u64,
}

struct Proc {
    id: ProcId,
    ppid: i32,
    uid: u32,
    zombie: bool,
}

/// A test that fails before `jssh down` must not leave its supervisor reconnecting forever:
/// everything whose command line names this client's directory (supervisors, their ssh,
/// ControlMasters) goes with it.
impl Drop for Client {
    fn drop(&mut self) {
        let root = self.root.path().to_string_lossy().into_owned();
        kill_process_trees(|p| {
            fs::read(format!("/proc/{}/cmdline", p.id.pid)).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&root))
        });
    }
}

/// All processes in /proc (those that vanish while being read are skipped).
fn processes() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let uid = entry.metadata().ok()?.uid();
            // The command name, in parentheses, may itself contain spaces and parentheses.
            let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
            Some(Proc {
                id: ProcId {
                    pid,
                    start: fields.get(19)?.parse().ok()?,
                },
                ppid: fields.get(1)?.parse().ok()?,
                uid,
                zombie: *fields.first()? == "Z",
            })
        })
        .collect()
}

/// SIGKILLs every live process matching `is_root` and all their descendants. All of them are
/// first stopped, until no new one turns up, so none can fork a child that escapes.
fn kill_process_trees(mut is_root: impl FnMut(&Proc) -> bool) {
    let me = i32::try_from(std::process::id()).expect("pid fits i32");
    let mut doomed = HashSet::new();
    loop {
        let mut grew = false;
        for p in processes() {
            if p.zombie || p.id.pid == me || doomed.contains(&p.id.pid) {
                continue;
            }
            if doomed.contains(&p.ppid) || is_root(&p) {
                signal(Pid::from_raw(p.id.pid), Signal::SIGSTOP);
                doomed.insert(p.id.pid);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    for pid in doomed {
        signal(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Sends a signal, ignoring failure: the process may have exited meanwhile.
fn signal(pid: Pid, signal: Signal) {
    let _ = kill(pid, signal);
}

/// Whether the process's initial environment has `entry` (`NAME=VALUE`); false if unreadable.
fn has_environment_entry(pid: i32, entry: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
}

fn child_pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
}

/// Generates passphrase-less ed25519 keys, concurrently to save startup time.
fn keygen(paths: &[&Path]) {
    let children: Vec<Child> = paths
        .iter()
        .map(|path| {
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "jssh-fixture", "-f"])
                .arg(path)
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn ssh-keygen")
        })
        .collect();
    for mut child in children {
        assert!(
            child.wait().expect("wait for ssh-keygen").success(),
            "ssh-keygen failed"
        );
    }
}

/// A port that was free a moment ago; sshd may still lose it to another process (see callers).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

fn has_ssh_banner(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    if stream.set_read_timeout(Some(Duration::from_secs(1))).is_err() {
        return false;
    }
    let mut banner = String::new();
    BufReader::new(stream).read_line(&mut banner).is_ok() && banner.starts_with("SSH-2.0-")
}

/// Double-quotes a path for `sshd_config` and `ssh_config`, which split arguments on whitespace.
fn quote(path: &Path) -> String {
    format!("\"{}\"", path.display())
}

/// RFC 4648 base32 without padding, as TOTP secrets are written.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn random_hex() -> String {
    let mut random = [0; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut random))
        .expect("read /dev/urandom");
    format!("{:032x}", u128::from_ne_bytes(random))
}
