//! The remote side: POSIX `sh` scripts (kept in `remote/`, so linters see exactly what runs)
//! that jssh sends over ssh to run Jupyter in a detached tmux session on jssh's own tmux
//! socket (`tmux -L jssh`), watch it, stop it, and read its log. Every value crosses the remote shell as a positional parameter quoted with
//! shell-words, never spliced into script text, so a `--dir` like `$(touch x)` stays literal.

use std::fmt::Write as _;

use crate::envspec::{EnvSpec, activation, remote_path};
use crate::jupyter::{self, JupyterInfo};
use crate::state::Session;
use crate::target::Alias;

/// Exit status of the launch script when tmux is missing.
pub(crate) const EXIT_NO_TMUX: i32 = 90;
/// Exit status of the launch script when the token did not arrive whole on stdin.
pub(crate) const EXIT_TOKEN_LOST: i32 = 93;

/// The tmux session (and remote run directory) name for an alias. tmux turns `.` and `:` in a
/// session name into `_`, which made `a.b` and `a_b` one session (issue 11, case 6); `.`
/// becomes `+` instead, which no alias holds (see [`Alias`]), so the name stays injective, and
/// which is neither tmux target syntax nor shell syntax nor special in a path.
pub(crate) fn session_name(alias: &Alias) -> String {
    format!("jssh-{}", alias.as_str().replace('.', "+"))
}

/// What to start on the remote.
#[derive(Debug, Clone)]
pub(crate) struct JupyterSpec<'a> {
    pub(crate) session: &'a str,
    pub(crate) notebook: bool,
    pub(crate) socket: bool,
    pub(crate) dir: Option<&'a str>,
    pub(crate) env: &'a [EnvSpec],
    pub(crate) info: &'a JupyterInfo,
    /// A Slurm job's Jupyter: it listens where the job says (`JSSH_LISTEN`, set only where
    /// ssh to the node is refused), else on the loopback.
    pub(crate) job: bool,
}

impl<'a> JupyterSpec<'a> {
    /// What runs for `session`: the one place a launch spec is made, for `up`'s first launch
    /// and the supervisor's relaunch alike. `socket`: whether Jupyter serves on a Unix socket
    /// (as asked, at the first launch; as it did, at a relaunch).
    pub(crate) fn of(session: &'a Session, socket: bool) -> Self {
        Self {
            session: &session.tmux_name,
            notebook: session.notebook,
            socket,
            dir: session.dir.as_deref(),
            env: &session.env,
            info: &session.jupyter,
            job: session.job.is_some(),
        }
    }
}

/// A `--dir` that `jssh up` checks on the remote before starting Jupyter there, so that a
/// path that does not exist is named at once rather than by Jupyter's exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirCheck<'a> {
    /// As given: `~` and `~/…` are the remote home, a relative path lies under it.
    pub(crate) dir: &'a str,
    /// The same path under the remote home (`~/REST`) when `dir` lies under this machine's
    /// home: the local shell expanded an unquoted `~` (see [`local_home_alternative`]).
    pub(crate) alternative: Option<String>,
}

impl<'a> DirCheck<'a> {
    /// The check for `dir` as this machine's shell handed it over.
    pub(crate) fn new(dir: &'a str) -> Self {
        Self {
            dir,
            // The local shell expands an unquoted `~` from $HOME.
            alternative: std::env::var("HOME")
                .ok()
                .and_then(|home| local_home_alternative(dir, &home)),
        }
    }

    /// The one-line error for a `dir` that does not exist on `alias`. When the alternative
    /// does, the local shell expanded `~` (an unquoted `--dir ~/p`): the fix is to quote it,
    /// and jssh does not guess which one was meant.
    pub(crate) fn missing(&self, alias: &Alias, alternative_exists: bool) -> anyhow::Error {
        let dir = crate::sanitize::for_terminal(self.dir);
        match (&self.alternative, alternative_exists) {
            (Some(alternative), true) => anyhow::anyhow!(
                "--dir {dir} does not exist on {alias}, but {alternative} does: your shell replaced `~` \
                 with this machine's home; quote it to mean the remote home: --dir {}",
                // shell-words always quotes a `~`.
                crate::sanitize::for_terminal(&shell_words::quote(alternative))
            ),
            _ => anyhow::anyhow!(
                "--dir {dir} does not exist on {alias}: create it there, or give another (a quoted \
                 `--dir '~/…'` is under the remote home)"
            ),
        }
    }
}

/// `~/REST` when `dir` is `HOME/REST` for this machine's `home`, i.e. what an unquoted
/// `--dir ~/REST` became in the local shell; `~` for the home itself. The root as a home
/// (root's on some systems is `/`) would claim every path, so it claims none.
pub(crate) fn local_home_alternative(dir: &str, home: &str) -> Option<String> {
    let home = home.trim_end_matches('/');
    if home.is_empty() || !home.starts_with('/') {
        return None;
    }
    let rest = dir.strip_prefix(home)?;
    if rest.is_empty() {
        return Some("~".to_owned());
    }
    let rest = rest.strip_prefix('/')?.trim_start_matches('/');
    Some(if rest.is_empty() {
        "~".to_owned()
    } else {
        format!("~/{rest}")
    })
}

/// The script the login shell runs inside tmux: environment, then `exec jupyter`. The token
/// reaches Jupyter as a file named in the environment (jupyter_server) or as an environment
/// variable read from that file (the classic notebook), never in argv.
///
/// Generated rather than a file in `remote/`: its lines follow the spec (the `--env`
/// activation, the Jupyter generation's option names, socket or port), and it reaches the
/// login shell as one argument of the launch script, so every value in it is quoted here.
pub(crate) fn jupyter_script(spec: &JupyterSpec<'_>) -> String {
    let run = format!("\"$HOME/.jssh/run/{}\"", spec.session);
    let notebook_ui = spec.info.notebook_ui(spec.notebook);
    let classic = spec.info.classic(notebook_ui);
    let names = jupyter::names(classic);
    let app = names.app;
    let mut s = if classic {
        format!("JUPYTER_TOKEN=$(cat {run}/token); export JUPYTER_TOKEN\n")
    } else {
        format!("export JUPYTER_TOKEN_FILE={run}/token\n")
    };
    // The home directory, not wherever sshd started the session, is the default root dir.
    s.push_str("cd\n");
    s.push_str(&activation(spec.env));
    s.push_str(
        "command -v jupyter >/dev/null 2>&1 || { echo \"jssh: jupyter not found on PATH=$PATH: install it \
         (pip install jupyterlab) or point jssh at it with --env (venv:PATH, conda:NAME, module:NAME, pre:SNIPPET)\" >&2; exit 127; }\n\
         set --\n\
         [ \"$(id -u)\" = 0 ] && { echo 'jssh: running as root: passing --allow-root' >&2; set -- --allow-root; }\n",
    );
    s.push_str(&jupyter::up_arguments(spec.info, classic, spec.job));
    if let Some(dir) = spec.dir {
        let _ = writeln!(s, "set -- \"$@\" --{app}.{}={}", names.root_dir, remote_path(dir));
    }
    if spec.socket {
        let _ = writeln!(
            s,
            "set -- \"$@\" --ServerApp.sock={run}/jupyter.sock --ServerApp.sock_mode=0600"
        );
    } else {
        // In the environment, not argv: anyone on the server can read a process's argv and
        // bind the port first (the supervisor still checks who listens before sending the
        // token).
        let _ = writeln!(
            s,
            "JUPYTER_PORT=$(cat {run}/port) JUPYTER_PORT_RETRIES=0; export JUPYTER_PORT JUPYTER_PORT_RETRIES"
        );
        if !classic {
            s.push_str(&proof_extension(&run));
        }
    }
    let ui = if notebook_ui { "notebook" } else { "lab" };
    let _ = writeln!(s, "exec jupyter {ui} --no-browser \"$@\"");
    s
}

/// The extension that proves a listener is this Jupyter (see `remote/jssh_proof.py`).
const PROOF: &str = include_str!("../remote/jssh_proof.py");

/// Lines that put [`PROOF`] into the Jupyter about to start, through a config dir of the
/// session's own (first in `JUPYTER_CONFIG_PATH`): a `.d` fragment enables it beside the
/// user's extensions (never replacing their list), and a config file appends its dir to the
/// server's `sys.path` (not `PYTHONPATH`, which kernels would inherit). Written afresh at
/// every start, private (0700 dir), in a subshell so Jupyter's own umask is left alone.
fn proof_extension(run: &str) -> String {
    let config = "import os, sys\nsys.path.append(os.path.dirname(__file__))\n";
    let enable = r#"{"ServerApp": {"jpserver_extensions": {"jssh_proof": true}}}"#;
    format!(
        "p={run}/proof\n\
         (umask 077 && mkdir -p \"$p/jupyter_server_config.d\" &&\n\
         printf '%s' {} > \"$p/jssh_proof.py\" &&\n\
         printf '%s' {} > \"$p/jupyter_server_config.py\" &&\n\
         printf '%s\\n' {} > \"$p/jupyter_server_config.d/jssh_proof.json\") &&\n\
         JUPYTER_CONFIG_PATH=$p${{JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}} && export JUPYTER_CONFIG_PATH\n",
        shell_words::quote(PROOF),
        shell_words::quote(config),
        shell_words::quote(enable),
    )
}

/// Runs `script` in the user's login shell (so conda/module init in their profile applies);
/// shells that are not POSIX-like (fish, csh) get `sh -l`.
pub(crate) const LOGIN: &str = include_str!("../remote/login.sh").trim_ascii_end();

/// The remote command that runs `script` in the login shell, its reply starting at `marker`
/// (printed after the login shell's own startup files, which may print anything).
pub(crate) fn in_login_shell(marker: &Marker, script: &str) -> String {
    sh(LOGIN, &[&format!("{}{script}", marker.begin())])
}

/// Where a remote script's reply starts. A login shell may print anything before a command
/// runs — a `printf "Welcome! "` without a newline, a terminal-title escape from `.bashrc` —
/// and that text lands on the same stdout. So each script that answers jssh first prints a
/// newline (ending whatever line the shell left open) and then a line `jssh:NONCE`, with a
/// nonce made fresh for every command, and jssh reads only what follows that line.
///
/// The marker line never appears in the command itself: printf assembles it from `jssh:%s`
/// and the nonce, so even a shell that echoes the command it runs (a title set from
/// `$BASH_COMMAND`, which holds every byte of the command) cannot print it by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker(String);

impl Marker {
    pub(crate) fn new() -> anyhow::Result<Self> {
        crate::fsutil::random_hex(12).map(Self)
    }

    /// The shell line that starts the reply.
    fn begin(&self) -> String {
        format!("printf '\\njssh:%s\\n' {}\n", self.0)
    }

    /// Whether `line` (without its newline) is the marker line.
    pub(crate) fn is(&self, line: &str) -> bool {
        line.strip_prefix("jssh:") == Some(self.0.as_str())
    }

    /// The script's reply: what follows the marker line in `out`; `None` when the marker never
    /// came (the script did not run, or did not get that far).
    pub(crate) fn reply<'a>(&self, out: &'a str) -> Option<&'a str> {
        let line = format!("\njssh:{}\n", self.0);
        out.find(&line).map(|at| &out[at + line.len()..])
    }
}

/// `script` with `args` as `$1…`, its reply starting at `marker` (see [`Marker`]).
pub(crate) fn marked(marker: &Marker, script: &str, args: &[&str]) -> String {
    sh(&format!("{}{script}", marker.begin()), args)
}

/// Starts the session unless it runs, then reports and watches it. Lines on stdout:
/// `started PORT PID` or `reuse PORT PID` (PORT is `-` for a socket), `root` when the login
/// is root (Jupyter then needs `--allow-root`), `node NAME` (`uname -n`), `home DIR`,
/// `token HEX` (only on reuse when asked), then `.` every 0.2 s while the session lives, and
/// `exited` plus `log LINE`s if it ends (only when watching). The new token arrives on stdin.
///
/// With a [`DirCheck`], a new session is started only if that directory exists; otherwise
/// the script says `nodir 1` when the check's alternative exists, else `nodir 0`.
///
/// `expect` is the machine the session was started on, if known: when the session is not
/// here and this is another machine (a login address that spreads connections over several
/// machines), nothing is started or touched and the script says `elsewhere NAME`: starting
/// here would leave the user's server, kernels and all, behind on the other one (and, with a
/// shared home, overwrite its token and port files).
const LAUNCH: &str = include_str!("../remote/launch.sh");

/// Stops the session gracefully (SIGTERM lets Jupyter shut its kernels down), then removes
/// the run directory with the token, port file and socket. With `expect` (as in [`launch`]),
/// on another machine than the session's it touches nothing and says `elsewhere NAME`.
const STOP: &str = include_str!("../remote/stop.sh");

/// One line per live jssh session: `NAME PORT PID`.
const LIST: &str = include_str!("../remote/list.sh");

/// The remote Jupyter log (`tail -F` to follow).
const LOG: &str = include_str!("../remote/log.sh");

/// Waits, without polling, until the session's Jupyter exits: a `pane-exited` hook on jssh's
/// tmux server signals a channel named after the pane, and `tmux wait-for` sleeps on it (a
/// pane id is never reused by a server, so a signal left over from an earlier pane cannot wake
/// it). Exits 0 when Jupyter exited while watched, [`EXIT_GONE`] when it was already gone,
/// [`EXIT_NO_HOOKS`] when this tmux has no hooks; anything else (the wait ended because its
/// stdin or connection did, or tmux failed) says nothing about Jupyter.
///
/// The hook goes in before the pane is looked up, so an exit in between is not missed: a
/// channel signalled with nobody waiting stays signalled until the next `wait-for`. Nothing
/// is ever written to the script's stdin: it ends when the connection does (or the caller
/// closes it), and then so does the wait; without that, every lost connection would leave a
/// `wait-for` behind on the remote. (A terminal's hangup would do the same, but a non-root
/// sshd drops the whole connection when asked for one.) The stdin goes through fd 3 because
/// sh gives a background job /dev/null as its stdin.
const WATCH: &str = include_str!("../remote/watch.sh");

/// Who listens on the remote's `127.0.0.1:$2`: `ours` when it is the session's Jupyter (the
/// process `pid` recorded at its start, else the pane's or the job's, holds the listening socket), `none` when nobody does, `other UID` when
/// another program does, `unknown` where the remote cannot tell (not Linux). Only after `ours` may the
/// token go to that port: a port number is public (and was once in Jupyter's argv), so
/// another user can bind it while Jupyter starts.
const LISTENER: &str = include_str!("../remote/listener.sh");

pub(crate) fn listener(marker: &Marker, session: &str, port: u16, pid: Option<u32>) -> String {
    let pid = pid.map(|p| p.to_string()).unwrap_or_default();
    marked(marker, LISTENER, &[session, &port.to_string(), &pid])
}

/// Exit status of the watch script when this tmux has no hooks.
pub(crate) const EXIT_NO_HOOKS: i32 = 91;
/// Exit status of the watch script when the session was already gone when it started.
pub(crate) const EXIT_GONE: i32 = 92;

/// `sh -c SCRIPT jssh ARGS…` as one remote command string: the args become `$1…`.
pub(crate) fn sh(script: &str, args: &[&str]) -> String {
    let words = ["sh", "-c", script, "jssh"].into_iter().chain(args.iter().copied());
    shell_words::join(words)
}

pub(crate) fn launch(
    marker: &Marker,
    spec: &JupyterSpec<'_>,
    ports: &[u16],
    want_token: bool,
    watch: bool,
    expect: Option<&str>,
    check: Option<&DirCheck<'_>>,
) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mode = if spec.socket { "sock" } else { "tcp" };
    let flag = |b: bool| if b { "1" } else { "0" };
    marked(
        marker,
        LAUNCH,
        &[
            spec.session,
            mode,
            &ports.join(" "),
            &jupyter_script(spec),
            flag(want_token),
            flag(watch),
            LOGIN,
            expect.unwrap_or_default(),
            check.map_or("", |c| c.dir),
            check.and_then(|c| c.alternative.as_deref()).unwrap_or_default(),
        ],
    )
}

pub(crate) fn stop(marker: &Marker, session: &str, expect: Option<&str>) -> String {
    marked(marker, STOP, &[session, expect.unwrap_or_default()])
}

pub(crate) fn watch(session: &str) -> String {
    sh(WATCH, &[session])
}

pub(crate) fn list(marker: &Marker) -> String {
    marked(marker, LIST, &[])
}

/// The remote Jupyter's log; its lines follow `marker` (a login shell may print first).
pub(crate) fn log(marker: &Marker, session: &str, follow: bool) -> String {
    marked(marker, LOG, &[session, if follow { "1" } else { "0" }])
}

/// Attaches to the session's tmux window; when there is none here, says why instead of
/// tmux's "can't find session": none was started, or it runs on another machine (`expect`,
/// as in [`launch`]).
const ATTACH: &str = include_str!("../remote/attach.sh");

pub(crate) fn attach(session: &str, expect: Option<&str>) -> String {
    sh(ATTACH, &[session, expect.unwrap_or_default()])
}

/// One event from the launch script's stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LaunchEvent {
    Started {
        port: Option<u16>,
        pid: Option<u32>,
        reused: bool,
    },
    Root,
    /// The machine the script ran on (`uname -n`).
    Node(String),
    /// The session runs on another machine than the one reached (see [`launch`]).
    Elsewhere(String),
    /// The `--dir` does not exist there (nothing was started); whether the [`DirCheck`]'s
    /// alternative does.
    NoDir {
        alternative_exists: bool,
    },
    Home(String),
    Token(String),
    Alive,
    Exited,
    Log(String),
}

impl LaunchEvent {
    pub(crate) fn parse(line: &str) -> Option<Self> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let mut fields = rest.split_whitespace();
        Some(match word {
            "started" | "reuse" => Self::Started {
                port: fields.next().and_then(|p| p.parse().ok()),
                pid: fields.next().and_then(|p| p.parse().ok()),
                reused: word == "reuse",
            },
            "root" => Self::Root,
            "node" => Self::Node(rest.trim().to_owned()),
            "elsewhere" => Self::Elsewhere(rest.trim().to_owned()),
            "nodir" => Self::NoDir {
                alternative_exists: rest.trim() == "1",
            },
            "home" => Self::Home(rest.to_owned()),
            "token" => Self::Token(rest.trim().to_owned()),
            "." => Self::Alive,
            "exited" => Self::Exited,
            "log" => Self::Log(rest.to_owned()),
            _ => return None,
        })
    }
}

/// One live remote session from [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteSession {
    pub(crate) session: String,
    pub(crate) port: Option<u16>,
    pub(crate) pid: Option<u32>,
}

pub(crate) fn parse_list(text: &str) -> Vec<RemoteSession> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(RemoteSession {
                session: f.next()?.to_owned(),
                port: f.next().and_then(|p| p.parse().ok()),
                pid: f.next().and_then(|p| p.parse().ok()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    static MODERN: JupyterInfo = JupyterInfo {
        server: None,
        notebook: None,
        lab: None,
        password: false,
        allow_remote_access: false,
    };

    fn spec<'a>(dir: Option<&'a str>, env: &'a [EnvSpec]) -> JupyterSpec<'a> {
        JupyterSpec {
            session: "jssh-gpu",
            notebook: false,
            socket: false,
            dir,
            env,
            info: &MODERN,
            job: false,
        }
    }

    /// Runs `words` (a remote command string) through a local `sh -c`, as a remote shell would.
    fn run(command: &str, stdin: &str) -> std::process::Output {
        let mut child = std::process::Command::new("sh")
            .args(["-c", command])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn the_proof_extension_lands_byte_for_byte_private_and_first_in_the_config_path() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = crate::fsutil::ScratchDir::new_in(&std::env::temp_dir(), "proof").unwrap();
        let run_dir = scratch.path().join("it's run");
        let lines = proof_extension(&shell_words::quote(run_dir.to_str().unwrap()));
        let out = run(
            &format!("JUPYTER_CONFIG_PATH=/theirs\n{lines}echo \"$JUPYTER_CONFIG_PATH\""),
            "",
        );
        let dir = run_dir.join("proof");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}:/theirs\n", dir.display())
        );
        assert_eq!(std::fs::read_to_string(dir.join("jssh_proof.py")).unwrap(), PROOF);
        let enable = std::fs::read_to_string(dir.join("jupyter_server_config.d/jssh_proof.json")).unwrap();
        let enable: serde_json::Value = serde_json::from_str(&enable).unwrap();
        assert_eq!(enable["ServerApp"]["jpserver_extensions"]["jssh_proof"], true);
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("jssh_proof.py")), 0o600);
        // A classic notebook has no jupyter_server to load it; a socket needs no proof.
        assert!(jupyter_script(&spec(None, &[])).contains("jssh_proof.py"));
        let socket = JupyterSpec {
            socket: true,
            ..spec(None, &[])
        };
        assert!(!jupyter_script(&socket).contains("jssh_proof"));
    }

    #[test]
    fn script_never_carries_the_token_and_quotes_the_dir() {
        let script = jupyter_script(&spec(Some("/w/$(touch x); 'q'"), &[]));
        assert!(script.contains("JUPYTER_TOKEN_FILE="), "{script}");
        assert!(
            script.contains("--ServerApp.root_dir='/w/$(touch x); '\\''q'\\'''"),
            "{script}"
        );
        assert!(script.contains("--ServerApp.ip=127.0.0.1"));
        assert!(!script.contains("0.0.0.0"));
    }

    #[test]
    fn launch_arguments_survive_a_shell_literally() {
        // The launch command's positional parameters come out of `sh -c` exactly as given.
        let cmd = sh("printf '%s\\n' \"$@\"", &["a  b", "$(x)", ";", "'q\"", ""]);
        let out = run(&cmd, "");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "a  b\n$(x)\n;\n'q\"\n\n");
    }

    #[test]
    fn parses_launch_events_and_lists() {
        assert_eq!(
            LaunchEvent::parse("started 41234 777"),
            Some(LaunchEvent::Started {
                port: Some(41234),
                pid: Some(777),
                reused: false
            })
        );
        assert_eq!(
            LaunchEvent::parse("reuse - 12"),
            Some(LaunchEvent::Started {
                port: None,
                pid: Some(12),
                reused: true
            })
        );
        assert_eq!(
            LaunchEvent::parse("home /h/a b"),
            Some(LaunchEvent::Home("/h/a b".into()))
        );
        assert_eq!(LaunchEvent::parse("log  x"), Some(LaunchEvent::Log(" x".into())));
        assert_eq!(
            LaunchEvent::parse("node login2"),
            Some(LaunchEvent::Node("login2".into()))
        );
        assert_eq!(
            LaunchEvent::parse("elsewhere login3"),
            Some(LaunchEvent::Elsewhere("login3".into()))
        );
        assert_eq!(LaunchEvent::parse("junk"), None);
        let list = parse_list("jssh-a 4000 12\njssh-b - 13\n");
        assert_eq!(
            list[1],
            RemoteSession {
                session: "jssh-b".into(),
                port: None,
                pid: Some(13)
            }
        );
    }

    /// Issue 11, case 7: whatever a login shell prints before the script — text without a
    /// newline, a title escape, the command itself — the reply is exactly the script's own.
    #[test]
    fn case7_the_reply_starts_after_the_marker_whatever_came_before() {
        let marker = Marker("00ff".repeat(6));
        let command = marked(&marker, "echo started 1 2; echo node n", &[]);
        assert!(!command.contains(&format!("jssh:{}", marker.0)), "{command}");
        for junk in [
            String::new(),
            "Welcome! ".to_owned(),
            "\x1b]0;user@host: ~\x07".to_owned(),
            // A title set from $BASH_COMMAND: the whole command, nonce included.
            format!("\x1b]0;{command}\x07"),
            format!("{command}\n"),
        ] {
            // What sshd's shell does: its startup files print, then the command runs.
            let shell = format!("printf '%s' {}; {command}", shell_words::quote(&junk));
            let out = run(&shell, "");
            let text = String::from_utf8(out.stdout).unwrap();
            assert_eq!(marker.reply(&text), Some("started 1 2\nnode n\n"), "{junk:?}: {text:?}");
            let lines: Vec<&str> = text.lines().skip_while(|l| !marker.is(l)).skip(1).collect();
            assert_eq!(lines, ["started 1 2", "node n"], "{junk:?}");
        }
        assert_eq!(marker.reply("started 1 2\n"), None, "no marker, no reply");
        assert_eq!(Marker::new().unwrap().0.len(), 24);
        assert_ne!(Marker::new().unwrap(), Marker::new().unwrap());
    }

    /// Issue 11, case 8: a `--dir` the local shell expanded (`~/p` became `$HOME/p`) gets
    /// `~/p` as the alternative to look for on the remote; nothing else does.
    #[test]
    fn case8_a_dir_under_the_local_home_has_a_remote_home_alternative() {
        for (dir, home, alternative) in [
            ("/home/me/project", "/home/me", Some("~/project")),
            ("/home/me/a b/c", "/home/me/", Some("~/a b/c")),
            ("/home/me", "/home/me", Some("~")),
            ("/home/me/", "/home/me", Some("~")),
            ("/home/mine/p", "/home/me", None),
            ("/srv/data", "/home/me", None),
            ("~/project", "/home/me", None),
            ("project", "/home/me", None),
            ("/anything", "/", None),
            ("/anything", "", None),
        ] {
            assert_eq!(
                local_home_alternative(dir, home).as_deref(),
                alternative,
                "{dir} under {home}"
            );
        }
        assert_eq!(
            LaunchEvent::parse("nodir 1"),
            Some(LaunchEvent::NoDir {
                alternative_exists: true
            })
        );
        assert_eq!(
            LaunchEvent::parse("nodir 0"),
            Some(LaunchEvent::NoDir {
                alternative_exists: false
            })
        );
    }

    /// The files in `remote/` (beside `src/`) ending in `.EXT`, sorted.
    fn remote_files(ext: &str) -> Vec<std::path::PathBuf> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("remote");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        files
    }

    /// The remote scripts (in `remote/`, beside `src/`) are POSIX sh: each must parse, and
    /// pass shellcheck where it is installed (CI installs it: scripts/check-targets).
    #[test]
    fn remote_scripts_parse_and_pass_shellcheck() {
        let scripts = remote_files("sh");
        assert_eq!(scripts.len(), 19, "{scripts:?}");
        for script in &scripts {
            let out = std::process::Command::new("sh").arg("-n").arg(script).output().unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if which::which("shellcheck").is_err() {
            eprintln!("shellcheck is not installed: the remote scripts were only parsed (sh -n)");
            return;
        }
        let out = std::process::Command::new("shellcheck")
            .args(["--shell=sh", "--severity=style"])
            .args(&scripts)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }

    /// The remote Python programs (in `remote/`) must compile; skipped without python3.
    #[test]
    fn remote_python_compiles() {
        let programs = remote_files("py");
        assert_eq!(programs.len(), 3, "{programs:?}");
        if which::which("python3").is_err() {
            eprintln!("python3 is not installed: the remote Python programs were not compiled");
            return;
        }
        let scratch = crate::fsutil::ScratchDir::new_in(&std::env::temp_dir(), "py-compile").unwrap();
        for program in &programs {
            // Compile to a scratch file: py_compile would otherwise write into the source tree.
            let out = std::process::Command::new("python3")
                .arg("-c")
                .arg("import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)")
                .arg(program)
                .arg(scratch.path().join("out.pyc"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                program.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn the_login_wrapper_keeps_no_trailing_newline() {
        assert!(LOGIN.ends_with("\"$1\""), "{LOGIN:?}");
    }

    #[test]
    fn session_names_avoid_tmux_separators() {
        assert_eq!(session_name(&"gpu.lab".parse().unwrap()), "jssh-gpu+lab");
        // Case 6 of issue 11: `a.b` and `a_b` were one tmux session and one run dir.
        let names: std::collections::BTreeSet<String> = ["a.b", "a_b", "a-b", "ab", "A.b"]
            .iter()
            .map(|a| session_name(&a.parse().unwrap()))
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(names.iter().all(|n| !n.contains(['.', ':'])), "{names:?}");
    }
}
