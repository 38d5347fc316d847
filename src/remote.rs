//! The remote side: POSIX `sh` scripts (kept in `remote/`, so linters see exactly what runs)
//! that jssh sends over ssh to run Jupyter in a detached tmux session on jssh's own tmux
//! socket (`tmux -L jssh`), watch it, stop it, and read its log. Every value crosses the remote shell as a positional parameter quoted with
//! shell-words, never spliced into script text, so a `--dir` like `$(touch x)` stays literal.

use std::fmt::Write as _;

use crate::envspec::{EnvSpec, activation, remote_path};
use crate::jupyter::{self, JupyterInfo};
use crate::target::Alias;

/// Exit status of the launch script when tmux is missing.
pub(crate) const EXIT_NO_TMUX: i32 = 90;
/// Exit status of the launch script when the token did not arrive whole on stdin.
pub(crate) const EXIT_TOKEN_LOST: i32 = 93;

/// The tmux session (and run directory) name for an alias: tmux rewrites `.` in names.
pub(crate) fn session_name(alias: &Alias) -> String {
    format!("jssh-{}", alias.as_str().replace('.', "_"))
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
    s.push_str(&jupyter::up_arguments(spec.info, classic));
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
    }
    let ui = if notebook_ui { "notebook" } else { "lab" };
    let _ = writeln!(s, "exec jupyter {ui} --no-browser \"$@\"");
    s
}

/// Runs `script` in the user's login shell (so conda/module init in their profile applies);
/// shells that are not POSIX-like (fish, csh) get `sh -l`.
const LOGIN: &str = include_str!("../remote/login.sh").trim_ascii_end();

/// The remote command that runs `script` in the login shell.
pub(crate) fn in_login_shell(script: &str) -> String {
    sh(LOGIN, &[script])
}

/// Starts the session unless it runs, then reports and watches it. Lines on stdout:
/// `started PORT PID` or `reuse PORT PID` (PORT is `-` for a socket), `root` when the login
/// is root (Jupyter then needs `--allow-root`), `node NAME` (`uname -n`), `home DIR`,
/// `token HEX` (only on reuse when asked), then `.` every 0.2 s while the session lives, and
/// `exited` plus `log LINE`s if it ends (only when watching). The new token arrives on stdin.
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
/// pane's process holds the listening socket), `none` when nobody does, `other UID` when
/// another program does, `unknown` where the remote cannot tell (not Linux). Only after `ours` may the
/// token go to that port: a port number is public (and was once in Jupyter's argv), so
/// another user can bind it while Jupyter starts.
const LISTENER: &str = include_str!("../remote/listener.sh");

pub(crate) fn listener(session: &str, port: u16) -> String {
    sh(LISTENER, &[session, &port.to_string()])
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
    spec: &JupyterSpec<'_>,
    ports: &[u16],
    want_token: bool,
    watch: bool,
    expect: Option<&str>,
) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mode = if spec.socket { "sock" } else { "tcp" };
    let flag = |b: bool| if b { "1" } else { "0" };
    sh(
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
        ],
    )
}

pub(crate) fn stop(session: &str, expect: Option<&str>) -> String {
    sh(STOP, &[session, expect.unwrap_or_default()])
}

pub(crate) fn watch(session: &str) -> String {
    sh(WATCH, &[session])
}

pub(crate) fn list() -> String {
    sh(LIST, &[])
}

pub(crate) fn log(session: &str, follow: bool) -> String {
    sh(LOG, &[session, if follow { "1" } else { "0" }])
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
        assert_eq!(scripts.len(), 11, "{scripts:?}");
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
        assert_eq!(programs.len(), 2, "{programs:?}");
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
        assert_eq!(session_name(&"gpu.lab".parse().unwrap()), "jssh-gpu_lab");
    }
}
