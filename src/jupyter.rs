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
const CONFIGURE_PY: &str = r#"
import json, os, subprocess, sys, tempfile
from importlib import metadata

req = json.loads(sys.argv[1])
def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
info = {"server": version("jupyter_server"), "notebook": version("notebook"), "lab": version("jupyterlab")}
server = info["server"] is not None
classic = info["notebook"] is not None and int(info["notebook"].split(".")[0]) < 7
if not server and not classic:
    print(json.dumps({"error": "no jupyter_server or notebook package in this environment"}))
    sys.exit(3)
# Each generation present gets its own names: a classic notebook (NotebookApp) may sit
# beside jupyter_server (ServerApp, PasswordIdentityProvider), e.g. notebook 6.5 + lab.
apps = ([("ServerApp", "root_dir")] if server else []) + ([("NotebookApp", "notebook_dir")] if classic else [])
passwords = ([("PasswordIdentityProvider", "hashed_password")] if server else []) + ([("NotebookApp", "password")] if classic else [])
cfg_dir = os.environ.get("JUPYTER_CONFIG_DIR") or os.path.expanduser("~/.jupyter")
path = os.path.join(cfg_dir, "jssh_config.json")
os.makedirs(cfg_dir, mode=0o700, exist_ok=True)
generated = None
if req.get("generate"):
    # The user's default config, created once as the seeds do; jssh never edits it.
    kind = "server" if server else "notebook"
    default = os.path.join(cfg_dir, "jupyter_server_config.py" if server else "jupyter_notebook_config.py")
    if not os.path.exists(default):
        subprocess.run(["jupyter", kind, "--generate-config", "-y"], check=True, capture_output=True)
        generated = default
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
for app, root_key in apps if "settings" in req else []:
    s = req["settings"]
    section = config.setdefault(app, {})
    section["ip"] = "0.0.0.0" if s["allow_remote_access"] else "127.0.0.1"
    section["open_browser"] = False
    if app == "ServerApp":
        section["allow_remote_access"] = bool(s["allow_remote_access"])
    if s.get("root_dir"):
        section[root_key] = os.path.expanduser(s["root_dir"])
    else:
        section.pop(root_key, None)
if req.get("password") == "set":
    password = sys.stdin.readline().rstrip("\n")
    if server:
        from jupyter_server.auth import passwd
    else:
        from notebook.auth import passwd
    hashed = passwd(password)
    for section, key in passwords:
        config.setdefault(section, {})[key] = hashed
elif req.get("password") == "clear":
    for section, key in passwords:
        config.get(section, {}).pop(key, None)
has_password = any(config.get(section, {}).get(key) for section, key in passwords)
ips = [config.get(app, {}).get("ip") for app, _ in apps]
if any(ip not in (None, "127.0.0.1", "localhost") for ip in ips) and not has_password:
    print(json.dumps({"error": "refusing to listen beyond 127.0.0.1 without a password: run `jssh password` first"}))
    sys.exit(4)
fd, tmp = tempfile.mkstemp(dir=cfg_dir, prefix=".jssh_config.")
with os.fdopen(fd, "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
os.chmod(tmp, 0o600)
os.replace(tmp, path)
info.update({"path": path, "generated": generated, "password": has_password, "ip": next((ip for ip in ips if ip), None)})
print(json.dumps(info))
"#;

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
}

/// The login-shell script for a [`Request`]: activate `env`, find Python, run the updater.
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
pub(crate) fn up_arguments(info: &JupyterInfo, classic: bool) -> String {
    let app = names(classic).app;
    let ip = if info.allow_remote_access && info.password {
        "0.0.0.0"
    } else {
        "127.0.0.1"
    };
    format!(
        "[ -f {CONFIG_FILE_SH} ] && set -- \"$@\" --config={CONFIG_FILE_SH}\n\
         set -- \"$@\" --{app}.ip={ip}\n"
    )
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
        assert!(up_arguments(&classic, true).contains("--NotebookApp.ip=127.0.0.1"));
    }

    #[test]
    fn remote_access_needs_a_password() {
        let mut info = JupyterInfo {
            server: Some("2.0".into()),
            allow_remote_access: true,
            ..Default::default()
        };
        assert!(up_arguments(&info, false).contains("--ServerApp.ip=127.0.0.1"));
        info.password = true;
        assert!(up_arguments(&info, false).contains("--ServerApp.ip=0.0.0.0"));
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
