//! The remote Jupyter's own configuration: which generation it is (jupyter_server 2.x with
//! `ServerApp`/`IdentityProvider` names, or the classic notebook < 7 with `NotebookApp`
//! names), and jssh's separate config file (`jssh_config.json` in the Jupyter config dir) with
//! the listen address, root dir and password hash. The user's own config files are never
//! edited; `jssh up` adds jssh's file with `--config`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::envspec::{EnvSpec, activation};

/// The file jssh owns on the remote, as a shell expression (`jupyter --config-dir`'s rule,
/// without paying for a Python start).
pub(crate) const CONFIG_FILE_SH: &str = "\"${JUPYTER_CONFIG_DIR:-$HOME/.jupyter}/jssh_config.json\"";

/// What jssh learned about a host's Jupyter (cached in the profile).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JupyterInfo {
    /// jupyter_server's version, if installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server: Option<String>,
    /// The notebook package's version, if installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) notebook: Option<String>,
    /// JupyterLab's version, if installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) lab: Option<String>,
    /// Whether jssh's config file holds a password hash.
    #[serde(default)]
    pub(crate) password: bool,
    /// Listen on all interfaces (`--allow-remote-access`; only with a password).
    #[serde(default)]
    pub(crate) allow_remote_access: bool,
}

impl JupyterInfo {
    /// Whether `jssh up` starts the Notebook UI: asked for, or no JupyterLab to start.
    pub(crate) fn notebook_ui(&self, asked: bool) -> bool {
        asked || (self.lab.is_none() && self.notebook.is_some())
    }

    /// Whether that UI is the classic notebook (< 7), which keeps its `NotebookApp` names even
    /// when jupyter_server is installed beside it (notebook 6.5 pulls it in via nbclassic).
    pub(crate) fn classic(&self, notebook_ui: bool) -> bool {
        notebook_ui && self.notebook.as_deref().is_some_and(|v| major(v) < 7)
    }
}

fn major(version: &str) -> u32 {
    version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// The trait names of one Jupyter generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Names {
    pub(crate) app: &'static str,
    pub(crate) root_dir: &'static str,
    /// (section, key) of the password hash.
    pub(crate) password: (&'static str, &'static str),
}

pub(crate) fn names(classic: bool) -> Names {
    if classic {
        Names {
            app: "NotebookApp",
            root_dir: "notebook_dir",
            password: ("NotebookApp", "password"),
        }
    } else {
        Names {
            app: "ServerApp",
            root_dir: "root_dir",
            password: ("PasswordIdentityProvider", "hashed_password"),
        }
    }
}

/// The Python that runs on the remote for `jssh jupyter` and `jssh password`: it reads a JSON
/// request from argv[1] (and a password from stdin, never argv), updates jssh's config file
/// atomically with mode 0600, and prints a JSON report. It uses only the remote's own Jupyter
/// packages (for the argon2 hash) and the standard library.
const CONFIGURE_PY: &str = include_str!("../remote/configure.py");

/// What `jssh jupyter`/`jssh password` ask the remote to do.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Request {
    /// Create the user's default config if it has none.
    pub(crate) generate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) settings: Option<Settings>,
    /// "set" (the password comes on stdin) or "clear".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) password: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub(crate) root_dir: Option<String>,
    /// Where to look when `root_dir` does not exist: `~/REST` for a `root_dir` under this
    /// machine's home (see [`crate::remote::DirCheck`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) root_dir_alternative: Option<String>,
    pub(crate) allow_remote_access: bool,
}

/// The remote's answer.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Report {
    #[serde(default)]
    pub(crate) error: Option<String>,
    #[serde(default)]
    pub(crate) server: Option<String>,
    #[serde(default)]
    pub(crate) notebook: Option<String>,
    #[serde(default)]
    pub(crate) lab: Option<String>,
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) generated: Option<String>,
    #[serde(default)]
    pub(crate) password: bool,
    #[serde(default)]
    pub(crate) ip: Option<String>,
    /// The root dir does not exist (nothing was written): `alternative` when the settings'
    /// alternative does, else `missing`.
    #[serde(default)]
    pub(crate) nodir: Option<String>,
}

/// The login-shell script for a [`Request`]: activate `env`, find Python, run the updater.
///
/// Generated rather than a file in `remote/`: the activation lines come from the profile's
/// `--env`, and the whole text is one argument to the login shell (`remote/login.sh`), which
/// passes no positional parameters on, so the program and the request go in quoted.
pub(crate) fn configure_script(env: &[EnvSpec], request: &Request) -> String {
    let mut s = activation(env);
    let json = serde_json::to_string(request).expect("requests always serialize");
    let _ = write!(
        s,
        "py=$(command -v python3 || command -v python) || {{ echo '{{\"error\": \"no python in the remote environment (--env)\"}}'; exit 3; }}\n\
         exec \"$py\" -c {} {}\n",
        shell_words::quote(CONFIGURE_PY),
        shell_words::quote(&json)
    );
    s
}

/// Extra Jupyter arguments for `jssh up`: jssh's config file when it exists, and the listen
/// address (loopback unless remote access was allowed with a password).
/// A Slurm `job`'s Jupyter listens where the job says (`JSSH_LISTEN`, set only where the
/// cluster refuses ssh to the node), with requests for any Host header (the browser's is
/// `127.0.0.1:LOCAL` on the laptop).
pub(crate) fn up_arguments(info: &JupyterInfo, classic: bool, job: bool) -> String {
    let app = names(classic).app;
    let ip = if info.allow_remote_access && info.password {
        "0.0.0.0"
    } else {
        "127.0.0.1"
    };
    let listen = if job {
        format!(
            "set -- \"$@\" --{app}.ip=\"${{JSSH_LISTEN:-{ip}}}\"\n\
             [ -z \"${{JSSH_LISTEN:-}}\" ] || set -- \"$@\" --{app}.allow_remote_access=True\n"
        )
    } else {
        format!("set -- \"$@\" --{app}.ip={ip}\n")
    };
    format!("[ -f {CONFIG_FILE_SH} ] && set -- \"$@\" --config={CONFIG_FILE_SH}\n{listen}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_have_their_names() {
        let modern = JupyterInfo {
            server: Some("2.21.1".into()),
            notebook: Some("7.6.5".into()),
            lab: Some("4.6.6".into()),
            ..Default::default()
        };
        let classic = JupyterInfo {
            server: Some("1.24.0".into()),
            notebook: Some("6.5.7".into()),
            ..Default::default()
        };
        assert!(!modern.notebook_ui(false) && modern.notebook_ui(true) && !modern.classic(true));
        assert!(classic.notebook_ui(false), "no JupyterLab: the Notebook UI");
        assert!(
            classic.classic(true),
            "notebook 6.5 is classic even beside jupyter_server"
        );
        let unknown = JupyterInfo::default();
        assert!(
            !unknown.notebook_ui(false) && !unknown.classic(true),
            "undetected: modern JupyterLab"
        );
        assert_eq!(names(false).password, ("PasswordIdentityProvider", "hashed_password"));
        assert_eq!(names(true).app, "NotebookApp");
        assert!(up_arguments(&classic, true, false).contains("--NotebookApp.ip=127.0.0.1"));
    }

    #[test]
    fn remote_access_needs_a_password() {
        let mut info = JupyterInfo {
            server: Some("2.0".into()),
            allow_remote_access: true,
            ..Default::default()
        };
        assert!(up_arguments(&info, false, false).contains("--ServerApp.ip=127.0.0.1"));
        info.password = true;
        assert!(up_arguments(&info, false, false).contains("--ServerApp.ip=0.0.0.0"));
    }

    #[test]
    fn the_password_is_never_in_the_script() {
        let req = Request {
            generate: false,
            settings: None,
            password: Some("set"),
        };
        let script = configure_script(&[], &req);
        assert!(script.contains("sys.stdin.readline()"));
        assert!(script.contains(r#"{"generate":false,"password":"set"}"#), "{script}");
    }
}
