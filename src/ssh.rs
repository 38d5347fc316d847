//! Every OpenSSH argv jssh runs is built here (`ssh`, `ssh-copy-id`, `ssh-keygen`), so the
//! `-F` knob, the connect timeout and the `--` before every destination are never forgotten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::process::Cmd;
use crate::target::Alias;

/// How to invoke OpenSSH for one run of jssh.
#[derive(Debug, Clone)]
pub(crate) struct Ssh {
    /// `-F` target; `None` means OpenSSH's default config.
    config: Option<PathBuf>,
    connect_timeout: u32,
    /// Every command goes to a Slurm job's compute node instead, through the login host.
    hop: Option<NodeHop>,
}

/// How ssh reaches a compute node through the login host (the alias): `HostName` becomes the
/// node, the connection is carried over the login host (`ssh -W`, riding on the login a human
/// answered where there is one, so no second code is asked), and the node's host key is
/// looked up in jssh's own file first, then the user's. A node never seen before is trusted on
/// first use (`accept-new`) and written to jssh's file: it is reached through the login host,
/// which was verified, and a cluster has too many nodes to ask about each; a node whose key
/// *changed* is still refused.
#[derive(Debug, Clone)]
pub(crate) struct NodeHop {
    pub(crate) alias: Alias,
    pub(crate) node: String,
    pub(crate) login_control: Option<PathBuf>,
    pub(crate) known_hosts: Vec<String>,
}

impl Ssh {
    pub(crate) fn new(config: Option<&Path>, connect_timeout: u32) -> Self {
        Self {
            config: config.map(Path::to_path_buf),
            connect_timeout,
            hop: None,
        }
    }

    /// Seconds to give each connection attempt (`--connect-timeout`).
    pub(crate) fn connect_timeout(&self) -> u32 {
        self.connect_timeout
    }

    /// The same settings, reading another config file (setup's verification config).
    pub(crate) fn with_config(&self, config: &Path) -> Self {
        Self {
            config: Some(config.to_path_buf()),
            ..self.clone()
        }
    }

    fn ssh(&self) -> Cmd {
        let cmd = Cmd::new("ssh");
        let cmd = match &self.config {
            Some(file) => cmd.arg("-F").arg(file),
            None => cmd,
        };
        let cmd = cmd.arg("-o").arg(format!("ConnectTimeout={}", self.connect_timeout));
        match &self.hop {
            Some(hop) => cmd.args(self.hop_options(hop)),
            None => cmd,
        }
    }

    /// The same settings, every command going to `hop`'s node.
    pub(crate) fn to_node(&self, hop: NodeHop) -> Self {
        Self {
            hop: Some(hop),
            ..self.clone()
        }
    }

    /// The `-o` options that send a command for the alias to the node instead (see
    /// [`NodeHop`]). Command-line options come first, so they win over the alias's own.
    fn hop_options(&self, hop: &NodeHop) -> Vec<String> {
        // The ProxyCommand is run by `sh -c` after ssh expands its `%` tokens: every word is
        // shell-quoted, then its `%` doubled; only `%h:%p` is for ssh to fill in.
        let mut words: Vec<String> = vec!["ssh".into()];
        if let Some(config) = &self.config {
            words.extend(["-F".into(), config.to_string_lossy().into_owned()]);
        }
        words.extend(
            [
                format!("ConnectTimeout={}", self.connect_timeout),
                "BatchMode=yes".into(),
                "ControlMaster=no".into(),
                "LogLevel=ERROR".into(),
            ]
            .into_iter()
            .flat_map(|o| ["-o".to_owned(), o]),
        );
        if let Some(control) = &hop.login_control {
            // Never a login of its own: that one needs a human.
            words.extend(["-o".into(), "ProxyCommand=false".into(), "-S".into()]);
            words.push(control.to_string_lossy().into_owned());
        }
        let escape = |w: &str| shell_words::quote(w).replace('%', "%%");
        let mut proxy: Vec<String> = words.iter().map(|w| escape(w)).collect();
        proxy.extend(["-W".into(), "%h:%p".into(), "--".into(), escape(hop.alias.as_str())]);
        let known: Vec<String> = hop
            .known_hosts
            .iter()
            .map(|f| format!("\"{}\"", f.replace('%', "%%")))
            .collect();
        [
            format!("HostName={}", hop.node),
            "Port=22".into(),
            format!("HostKeyAlias={}", hop.node),
            "StrictHostKeyChecking=accept-new".into(),
            format!("UserKnownHostsFile={}", known.join(" ")),
            format!("ProxyCommand={}", proxy.join(" ")),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect()
    }

    /// The known_hosts files ssh reads for `alias` (`ssh -G`), for a [`NodeHop`].
    pub(crate) fn user_known_hosts(&self, alias: &Alias) -> Vec<String> {
        let out = self
            .resolve(alias)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let resolved = parse_resolved(&out.unwrap_or_default());
        resolved
            .get("userknownhostsfile")
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// `ssh -G ALIAS`: the configuration ssh would use, without connecting.
    pub(crate) fn resolve(&self, alias: &Alias) -> Cmd {
        self.ssh().arg("-G").arg("--").arg(alias.as_str())
    }

    /// `ssh -G -vvv ALIAS`: the same, plus ssh's trace on stderr of every file it read and
    /// every `Host`/`Match` line it applied (see [`crate::sshconfig::parse_trace`]).
    pub(crate) fn resolve_traced(&self, alias: &Alias) -> Cmd {
        self.ssh().args(["-G", "-vvv", "--", alias.as_str()])
    }

    /// A key-only login running `true`: proves key auth and a working remote shell. `-v` makes
    /// ssh name the key the server accepted (see [`accepted_key`]). It gets its own connection so
    /// the check never rides on (or leaves behind) a master. Without `batch`, ssh may ask for the
    /// key's passphrase on the terminal.
    pub(crate) fn login_check(&self, alias: &Alias, batch: bool) -> Cmd {
        let cmd = self
            .ssh()
            .args(["-v", "-T", "-o", "PreferredAuthentications=publickey"]);
        let cmd = if batch { cmd.args(["-o", "BatchMode=yes"]) } else { cmd };
        cmd.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"])
            .args(["--", alias.as_str(), "true"])
    }

    /// A login with the terminal attached, for whatever the server asks after the key (a
    /// code): setup's verification where a second factor follows, answered once by the user.
    pub(crate) fn prompted_login(&self, alias: &Alias) -> Cmd {
        self.ssh()
            .args(["-T", "-o", "ControlMaster=no", "-o", "ControlPath=none"])
            .args(["--", alias.as_str(), "true"])
    }

    /// `ssh-copy-id -f`: appends the key to the server's authorized_keys. Forced, because its
    /// own "already installed?" probe is fooled when another configured key can log in (config
    /// `IdentityFile`s accumulate); setup only calls it after [`accepted_key`] said no.
    /// `scratch_home` becomes its `$HOME`: ssh-copy-id makes its temp dir in `~/.ssh` (the
    /// shell's `~`), which must not be the user's, and may not exist on a fresh account. ssh
    /// itself takes the home from the password database, so nothing else changes.
    /// ssh-copy-id `eval`s both `public_key` and that temp dir's path: both must come from
    /// [`crate::keys::stage_for_copy_id`], never straight from the user.
    pub(crate) fn copy_id(&self, public_key: &Path, alias: &Alias, scratch_home: &Path) -> Cmd {
        let cmd = Cmd::new("ssh-copy-id").env("HOME", scratch_home);
        let cmd = match &self.config {
            Some(file) => cmd.arg("-F").arg(file),
            None => cmd,
        };
        // ControlMaster=no: setup must not leave a persistent master behind.
        cmd.args([
            "-f",
            "-o",
            &format!("ConnectTimeout={}", self.connect_timeout),
            "-o",
            "ControlMaster=no",
        ])
        .arg("-i")
        .arg(public_key)
        .args(["--", alias.as_str()])
    }
}

/// Where the tunnel's remote end is: a TCP port on the remote's loopback, or a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RemoteEnd {
    Port(u16),
    Socket(String),
    /// A port on another machine the remote reaches (a Slurm job's node, [`crate::slurm::Reach::NodePort`]).
    Host(String, u16),
}

impl Ssh {
    /// A remote command through the alias's ControlMaster (setup configures `ControlMaster
    /// auto`), so after the first call each exec skips the handshake. `batch` forbids prompts
    /// (the detached supervisor has no terminal).
    pub(crate) fn exec(&self, alias: &Alias, remote_command: &str, batch: bool) -> Cmd {
        let cmd = self.ssh().arg("-T");
        let cmd = if batch { cmd.args(["-o", "BatchMode=yes"]) } else { cmd };
        cmd.args(["--", alias.as_str(), remote_command])
    }

    /// An interactive remote command with a terminal (`jssh attach`).
    pub(crate) fn exec_tty(&self, alias: &Alias, remote_command: &str) -> Cmd {
        self.ssh().args(["-t", "--", alias.as_str(), remote_command])
    }

    /// One of the supervisor's own connections: `ssh -N -M -S CTL`, a master without
    /// forwards. The supervisor holds the local port itself and hands each connection to the
    /// live master as a stdio forward over this control socket (what `ssh -W` does).
    ///
    /// It deliberately does not ride on the alias's ControlMaster: a `ControlPersist` master
    /// outlives the supervisor, and a shared one is not the supervisor's to replace. Instead
    /// each connection is a private master (`ControlPersist=no`, so it ends with its
    /// connection): the supervisor owns the process, sees its exit, and keeps an already
    /// authenticated standby to switch to in milliseconds instead of a new handshake. Short
    /// keepalives make ssh itself notice a dead path within ~4–6 s (the supervisor's probe is
    /// faster); BatchMode because there is no terminal to ask on.
    pub(crate) fn tunnel(&self, alias: &Alias, control: &Path, errors: &Path) -> Cmd {
        self.ssh()
            .args(["-N", "-T", "-n", "-o", "BatchMode=yes"])
            .args(["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=2"])
            .args(["-M", "-S"])
            .arg(control)
            .args(["-o", "ControlPersist=no"])
            // INFO would log every channel that finds Jupyter not (yet) listening.
            .args(["-o", "LogLevel=ERROR", "-E"])
            .arg(errors)
            .args(["--", alias.as_str()])
    }

    /// The one login a human answers, for a host that asks for more than a key (a code, a
    /// push): a private master like [`Ssh::tunnel`], but with the user's terminal for the
    /// prompts, which ssh opens itself (`/dev/tty`, or `SSH_ASKPASS`). `-f` sends it to the
    /// background once authenticated, so this process's exit says whether the login worked;
    /// the supervisor then holds the master and everything rides on it. ssh's messages go to
    /// `log` (`-E`), at VERBOSE, which names the methods that authenticated.
    pub(crate) fn login_master(&self, alias: &Alias, control: &Path, log: &Path) -> Cmd {
        self.ssh()
            .args(["-f", "-N", "-T"])
            .args(["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=2"])
            .args(["-M", "-S"])
            .arg(control)
            .args(["-o", "ControlPersist=no", "-o", "LogLevel=VERBOSE", "-E"])
            .arg(log)
            .args(["--", alias.as_str()])
    }

    /// A remote command over the master behind `control` and nothing else (one of the
    /// supervisor's own connections, or the login a human answered): a gone master must not
    /// turn into a login attempt (each counts towards lockouts, may send a push, and costs a
    /// key exchange while the supervisor makes its own new connection), so ssh's fallback to a
    /// connection of its own goes to `ProxyCommand=false`, which fails at once without
    /// touching the network. Not "Shared connection to … closed." in the supervisor's log.
    pub(crate) fn exec_over_only(&self, alias: &Alias, control: &Path, remote_command: &str) -> Cmd {
        self.ssh()
            .args(["-T", "-o", "BatchMode=yes", "-o", "ControlMaster=no"])
            .args(["-o", "ProxyCommand=false", "-o", "LogLevel=ERROR", "-S"])
            .arg(control)
            .args(["--", alias.as_str(), remote_command])
    }

    /// Ends the master behind `control` (one a killed supervisor left running).
    pub(crate) fn exit_master(&self, alias: &Alias, control: &Path) -> Cmd {
        self.ssh()
            .args(["-o", "LogLevel=ERROR", "-S"])
            .arg(control)
            .args(["-O", "exit", "--", alias.as_str()])
    }
}

/// One ProxyJump hop, `[USER@]HOST[:PORT]`, as an ssh destination: ssh takes a port only
/// in its `ssh://` form (an IPv6 literal in brackets there; a bare one has no port).
pub(crate) fn hop_destination(hop: &str) -> String {
    let (user, rest) = match hop.rsplit_once('@') {
        Some((user, rest)) => (format!("{user}@"), rest),
        None => (String::new(), hop),
    };
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => format!("ssh://{user}{host}:{port}"),
        _ => hop.to_owned(),
    }
}

/// Whether this OpenSSH can carry a stdio forward to a remote Unix socket (`ssh -W PATH`, and
/// the same request over a control socket, which the supervisor makes for every connection):
/// added in OpenSSH 9.4; older ones ask the server for a TCP connection to the path instead.
pub(crate) fn forwards_to_sockets() -> bool {
    let Ok(out) = Cmd::new("ssh").arg("-V").output() else {
        return false;
    };
    // `ssh -V` writes to stderr: "OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL …".
    version_at_least(&String::from_utf8_lossy(&out.stderr), (9, 4))
}

fn version_at_least(banner: &str, wanted: (u32, u32)) -> bool {
    let Some(rest) = banner.trim_start().strip_prefix("OpenSSH_") else {
        return false;
    };
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let minor = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (major, minor) >= wanted
}

/// `ssh-keygen` for a new ed25519 key; without `no_passphrase` it asks on the terminal.
pub(crate) fn keygen(key: &Path, comment: &str, no_passphrase: bool) -> Cmd {
    let cmd = Cmd::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", comment, "-f"])
        .arg(key);
    if no_passphrase { cmd.args(["-N", ""]) } else { cmd }
}

/// Parses `ssh -G` output: lowercase keyword → first value (ssh prints one per line).
pub(crate) fn parse_resolved(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            map.entry(k.to_ascii_lowercase()).or_insert_with(|| v.to_owned());
        }
    }
    map
}

/// Whether the login in this `ssh -v` output used `key` (not some other identity from the
/// user's config or agent): it must be the last key the server accepted. The server accepting
/// it is not enough: when ssh then cannot load the private key (a loose mode, a passphrase in
/// BatchMode, a `.pub` of another key), it offers the next identity, which may get in.
pub(crate) fn accepted_key(verbose_stderr: &str, key: &Path) -> bool {
    let wanted = format!("Server accepts key: {} ", key.display());
    verbose_stderr
        .lines()
        .rev()
        .find(|l| l.contains("Server accepts key: "))
        .is_some_and(|l| l.contains(&wanted))
}

/// Whether the server accepted `key` as the first of several factors (`-v` output): it
/// then asks for another, e.g. a code (`AuthenticationMethods publickey,keyboard-interactive`).
pub(crate) fn partial_success(verbose_stderr: &str, key: &Path) -> bool {
    let wanted = format!("Server accepts key: {} ", key.display());
    verbose_stderr.contains(&wanted) && verbose_stderr.contains("\"publickey\" with partial success")
}

/// Why ssh could not use `key` itself (`Load key "KEY": bad permissions`), from `-v` output.
pub(crate) fn key_load_error<'a>(verbose_stderr: &'a str, key: &Path) -> Option<&'a str> {
    let prefix = format!("Load key \"{}\": ", key.display());
    verbose_stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
}

/// How to reach a host without an alias, for advice: `ssh [-p PORT] [-J JUMP] USER@HOST`, and
/// the host's name in `known_hosts` (`[HOST]:PORT` off port 22), quoted for a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Direct {
    pub(crate) command: String,
    pub(crate) known_hosts_name: String,
}

impl Direct {
    pub(crate) fn new(user: &str, host: &str, port: u16, jump: Option<&str>) -> Self {
        let mut command = vec!["ssh".to_owned()];
        if port != 22 {
            command.extend(["-p".to_owned(), port.to_string()]);
        }
        if let Some(jump) = jump {
            command.extend(["-J".to_owned(), jump.to_owned()]);
        }
        command.push(format!("{user}@{host}"));
        let known_hosts_name = if port == 22 {
            host.to_owned()
        } else {
            format!("[{host}]:{port}")
        };
        Self {
            command: shell_words::join(&command),
            known_hosts_name: shell_words::quote(&known_hosts_name).into_owned(),
        }
    }
}

/// What went wrong with an ssh login, decided from its exit status and stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginFailure {
    Unreachable,
    HostKeyChanged,
    HostKeyUnknown,
    AuthRefused,
    RemoteShell,
    Other,
}

impl LoginFailure {
    pub(crate) fn classify(code: Option<i32>, stderr: &str) -> Self {
        let has = |needle: &str| stderr.contains(needle);
        if code != Some(255) && code.is_some() {
            // ssh itself worked; the remote shell failed to run `true`.
            Self::RemoteShell
        } else if has("REMOTE HOST IDENTIFICATION HAS CHANGED") {
            Self::HostKeyChanged
        } else if has("Host key verification failed") || has("No ED25519 host key is known") {
            Self::HostKeyUnknown
        } else if has("Permission denied") || has("Too many authentication failures") {
            Self::AuthRefused
        } else if [
            "Connection refused",
            "timed out",
            "Could not resolve",
            "No route to host",
            "Network is unreachable",
            "Connection closed by UNKNOWN",
            "kex_exchange_identification",
        ]
        .iter()
        .any(|n| has(n))
        {
            Self::Unreachable
        } else {
            Self::Other
        }
    }

    /// What happened and what to do next, for `alias`; `direct` is how to reach the host
    /// without the alias (setup's alias does not exist until setup succeeds).
    pub(crate) fn explain(self, alias: &Alias, direct: &Direct) -> String {
        let Direct {
            command,
            known_hosts_name,
        } = direct;
        match self {
            Self::Unreachable => format!(
                "cannot reach {alias}: check --host and --port, that sshd runs there and that your network \
                 (VPN, --jump) gets you to it"
            ),
            Self::HostKeyChanged => format!(
                "the host key of {alias} has changed: if the server was reinstalled, remove the old key with \
                 `ssh-keygen -R {known_hosts_name}` and check the new one with `{command}`; otherwise do not connect"
            ),
            Self::HostKeyUnknown => format!(
                "the host key of {alias} is not known yet: rerun setup in a terminal to check its fingerprint, \
                 or connect once with `{command}` and check it there, then rerun"
            ),
            Self::AuthRefused => format!(
                "the server refused the key for {alias}: run setup again without --no-copy-id to install it, \
                 or check --user"
            ),
            Self::RemoteShell => format!(
                "logged in to {alias}, but the remote shell failed to run `true`: check your shell startup files \
                 there (they must not fail or print when not interactive)"
            ),
            Self::Other => format!("ssh to {alias} failed"),
        }
    }
}

impl Ssh {
    // jssh doctor's probes.

    /// `ssh -V`: OpenSSH's version line, on stderr.
    pub(crate) fn version() -> Cmd {
        Cmd::new("ssh").arg("-V")
    }

    /// A BatchMode login to one jump host through the hops before it (`-J`, which overrides
    /// any ProxyJump of the hop's own), running `true`: doctor's walk along a chain.
    pub(crate) fn hop_check(&self, via: &[&str], hop: &str) -> Cmd {
        let cmd = self.ssh().args(["-T", "-o", "BatchMode=yes"]);
        let cmd = cmd.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"]);
        let cmd = if via.is_empty() {
            cmd
        } else {
            cmd.arg("-J").arg(via.join(","))
        };
        cmd.args(["--", &hop_destination(hop), "true"])
    }

    /// `ssh -O check ALIAS`: whether the alias's ControlMaster answers on its socket.
    pub(crate) fn master_check(&self, alias: &Alias) -> Cmd {
        self.ssh().args(["-O", "check", "--", alias.as_str()])
    }

    /// `ssh -W HOST:PORT ALIAS`: stdin and stdout become a forwarded TCP connection from the
    /// remote to `HOST:PORT`, the same kind of channel `-L` opens. Through the alias's master
    /// unless `own_connection`: a mux client only learns "Session open refused by peer", while
    /// its own connection prints sshd's reason ("administratively prohibited" or "connect
    /// failed").
    pub(crate) fn stdio_forward(&self, alias: &Alias, host: &str, port: u16, own_connection: bool) -> Cmd {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let cmd = self.ssh().args(["-o", "BatchMode=yes"]);
        let cmd = if own_connection {
            cmd.args(["-o", "ControlMaster=no", "-o", "ControlPath=none"])
        } else {
            cmd
        };
        cmd.args(["-W", &target, "--", alias.as_str()])
    }

    /// Adds (or with `cancel` removes) a forward from the local Unix socket `local` to the
    /// remote Unix socket `remote` on the alias's running master (`-O forward`/`-O cancel`).
    pub(crate) fn master_socket_forward(&self, alias: &Alias, local: &Path, remote: &str, cancel: bool) -> Cmd {
        let spec = format!("{}:{remote}", local.display());
        let op = if cancel { "cancel" } else { "forward" };
        self.ssh().args(["-O", op, "-L", &spec, "--", alias.as_str()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias() -> Alias {
        "gpu".parse().unwrap()
    }

    #[test]
    fn a_key_accepted_as_a_first_factor_is_a_partial_success() {
        let key = Path::new("/k/id");
        let two = "debug1: Server accepts key: /k/id ED25519 SHA256:x explicit\n\
                   debug1: Authenticated using \"publickey\" with partial success.\n\
                   root@h: Permission denied (keyboard-interactive).\n";
        assert!(partial_success(two, key));
        assert!(!partial_success(two, Path::new("/k/other")), "another key's success");
        assert!(!partial_success("debug1: Server accepts key: /k/id ED25519\n", key));
    }

    #[test]
    fn a_hop_with_a_port_becomes_an_ssh_uri() {
        assert_eq!(hop_destination("bastion"), "bastion");
        assert_eq!(hop_destination("alice@b.example:2222"), "ssh://alice@b.example:2222");
        assert_eq!(hop_destination("10.0.0.1:22"), "ssh://10.0.0.1:22");
        assert_eq!(hop_destination("fe80::1"), "fe80::1");
        let hop = Ssh::new(None, 5).hop_check(&["a", "b"], "u@c:2");
        let argv = hop.argv();
        assert_eq!(&argv[argv.len() - 5..], ["-J", "a,b", "--", "ssh://u@c:2", "true"]);
    }

    #[test]
    fn destination_always_follows_double_dash() {
        let ssh = Ssh::new(Some(Path::new("/t/config")), 7);
        let check = ssh.login_check(&alias(), true);
        let argv = check.argv();
        assert_eq!(&argv[..5], ["ssh", "-F", "/t/config", "-o", "ConnectTimeout=7"]);
        assert_eq!(&argv[argv.len() - 3..], ["--", "gpu", "true"]);
        let copy = ssh.copy_id(Path::new("/k.pub"), &alias(), Path::new("/s"));
        let argv = copy.argv();
        assert_eq!(
            argv,
            [
                "ssh-copy-id",
                "-F",
                "/t/config",
                "-f",
                "-o",
                "ConnectTimeout=7",
                "-o",
                "ControlMaster=no",
                "-i",
                "/k.pub",
                "--",
                "gpu"
            ]
        );
        let resolve = Ssh::new(None, 10).resolve(&alias());
        let argv = resolve.argv();
        assert_eq!(argv, ["ssh", "-o", "ConnectTimeout=10", "-G", "--", "gpu"]);
    }

    #[test]
    fn tunnel_owns_its_connection_and_forwards_nothing_itself() {
        let ssh = Ssh::new(None, 5);
        let line = ssh.tunnel(&alias(), Path::new("/s/c0"), Path::new("/s/e0")).to_string();
        assert!(line.contains("-M -S /s/c0 -o 'ControlPersist=no'"), "{line}");
        assert!(
            line.contains("-E /s/e0 -- gpu"),
            "its messages to a file of their own: {line}"
        );
        assert!(!line.contains("-L") && line.ends_with("-- gpu"), "{line}");
        // Commands ride on that connection and never start a master, nor a login, of their own.
        let watch = ssh.exec_over_only(&alias(), Path::new("/s/c0"), "true").to_string();
        assert!(
            watch.contains("ControlMaster=no")
                && watch.contains("ProxyCommand=false")
                && watch.ends_with("-S /s/c0 -- gpu true"),
            "{watch}"
        );
        let exit = ssh.exit_master(&alias(), Path::new("/s/c1")).to_string();
        assert!(exit.ends_with("-S /s/c1 -O exit -- gpu"), "{exit}");
    }

    #[test]
    fn reads_the_openssh_version() {
        assert!(!version_at_least("OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0", (9, 4)));
        assert!(version_at_least("OpenSSH_9.4p1, LibreSSL 3.3.6", (9, 4)));
        assert!(version_at_least("OpenSSH_10.0p2", (9, 4)));
        assert!(!version_at_least("garbage", (9, 4)));
    }

    #[test]
    fn keygen_passphrase_choice() {
        let cmd = keygen(Path::new("/k"), "jssh@box", true);
        let argv = cmd.argv();
        assert_eq!(argv[argv.len() - 2..], ["-N", ""]);
        assert!(
            !keygen(Path::new("/k"), "c", false)
                .argv()
                .contains(&std::ffi::OsStr::new("-N"))
        );
    }

    #[test]
    fn knows_which_key_was_accepted() {
        let err = "debug1: Offering public key: /a/jssh_ed25519 ED25519 SHA256:x explicit\n\
                   debug1: Server accepts key: /b/boot ED25519 SHA256:y explicit\n";
        assert!(!accepted_key(err, Path::new("/a/jssh_ed25519")));
        assert!(accepted_key(err, Path::new("/b/boot")));
        assert!(!accepted_key(err, Path::new("/b/bo")));
        // Accepted, then unusable: ssh went on to another key, which got in.
        let err = "debug1: Server accepts key: /a/k ED25519 SHA256:x explicit\n\
                   Load key \"/a/k\": bad permissions\n\
                   debug1: Server accepts key: /b/boot ED25519 SHA256:y explicit\n";
        assert!(!accepted_key(err, Path::new("/a/k")));
        assert_eq!(key_load_error(err, Path::new("/a/k")), Some("bad permissions"));
    }

    #[test]
    fn parses_resolved_config() {
        let map = parse_resolved("hostname 10.0.0.5\nport 2222\nidentityfile /a\nidentityfile /b\n");
        assert_eq!(map["hostname"], "10.0.0.5");
        assert_eq!(map["port"], "2222");
        assert_eq!(map["identityfile"], "/a");
    }

    #[test]
    fn classifies_login_failures() {
        use LoginFailure as F;
        let c = F::classify;
        assert_eq!(
            c(Some(255), "ssh: connect to host x port 22: Connection refused"),
            F::Unreachable
        );
        assert_eq!(
            c(Some(255), "@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @"),
            F::HostKeyChanged
        );
        assert_eq!(c(Some(255), "Host key verification failed."), F::HostKeyUnknown);
        assert_eq!(c(Some(255), "a@b: Permission denied (publickey)."), F::AuthRefused);
        assert_eq!(c(Some(1), "bash: bad"), F::RemoteShell);
        assert_eq!(c(Some(255), "weird"), F::Other);
        let direct = Direct::new("alice", "10.0.0.5", 22, None);
        assert!(F::AuthRefused.explain(&alias(), &direct).contains("--no-copy-id"));
    }

    /// Case 9 of issue 11: host key advice for an alias that does not exist yet names a
    /// command that works without it.
    #[test]
    fn case9_host_key_advice_works_before_the_alias_exists() {
        let direct = Direct::new("alice", "10.0.0.5", 2222, Some("bastion"));
        assert_eq!(direct.command, "ssh -p 2222 -J bastion alice@10.0.0.5");
        assert_eq!(direct.known_hosts_name, "'[10.0.0.5]:2222'");
        for failure in [LoginFailure::HostKeyUnknown, LoginFailure::HostKeyChanged] {
            let advice = failure.explain(&alias(), &direct);
            assert!(advice.contains("`ssh -p 2222 -J bastion alice@10.0.0.5`"), "{advice}");
            assert!(!advice.contains("`ssh gpu`"), "{advice}");
        }
        let plain = Direct::new("a", "h.example", 22, None);
        assert_eq!(
            (plain.command.as_str(), plain.known_hosts_name.as_str()),
            ("ssh a@h.example", "h.example")
        );
        let changed = LoginFailure::HostKeyChanged.explain(&alias(), &Direct::new("a", "h", 2, None));
        assert!(changed.contains("ssh-keygen -R '[h]:2'"), "{changed}");
    }

    #[test]
    fn doctor_probes_name_the_destination_last() {
        let ssh = Ssh::new(Some(Path::new("/t/config")), 5);
        assert_eq!(Ssh::version().argv(), ["ssh", "-V"]);
        let check = ssh.master_check(&alias());
        assert_eq!(
            check.argv(),
            [
                "ssh",
                "-F",
                "/t/config",
                "-o",
                "ConnectTimeout=5",
                "-O",
                "check",
                "--",
                "gpu"
            ]
        );
        let own = ssh.stdio_forward(&alias(), "127.0.0.1", 1, true);
        let argv = own.argv();
        assert_eq!(argv[argv.len() - 4..], ["-W", "127.0.0.1:1", "--", "gpu"]);
        for option in ["BatchMode=yes", "ControlMaster=no", "ControlPath=none"] {
            assert!(argv.contains(&std::ffi::OsStr::new(option)), "{own}");
        }
        let mux = ssh.stdio_forward(&alias(), "::1", 22, false);
        let argv = mux.argv();
        assert_eq!(argv[argv.len() - 5..], ["BatchMode=yes", "-W", "[::1]:22", "--", "gpu"]);
        let add = ssh.master_socket_forward(&alias(), Path::new("/l/s"), "/r/s", false);
        assert!(add.to_string().ends_with("-O forward -L /l/s:/r/s -- gpu"), "{add}");
        let cancel = ssh.master_socket_forward(&alias(), Path::new("/l/s"), "/r/s", true);
        assert!(
            cancel.to_string().ends_with("-O cancel -L /l/s:/r/s -- gpu"),
            "{cancel}"
        );
    }
}
