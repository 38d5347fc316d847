//! The remote Jupyter: found where `jssh up` would find it, its packages' versions, and the
//! audit of jssh's Jupyter config file (listen address, token, password).

use std::time::Duration;

use crate::envspec::{EnvSpec, activation};
use crate::jupyter::JupyterInfo;
use crate::profile::Profile;
use crate::remote::{self, Marker};
use crate::ssh::Ssh;
use crate::target::Alias;

use super::facts::RemoteConfig;
use super::finding::Finding;
use super::login::ssh_error;

/// Finds `jupyter` where `jssh up` would (login shell, the profile's env) and reads the
/// versions of its packages from the same environment's Python, which is much faster than
/// `jupyter --version`.
const JUPYTER_PROBE: &str = include_str!("../../../remote/jupyter_probe.sh");

#[derive(Debug, Default, serde::Deserialize)]
struct Versions {
    server: Option<String>,
    notebook: Option<String>,
    lab: Option<String>,
}

fn env_text(env: &[EnvSpec]) -> String {
    if env.is_empty() {
        "the login shell's PATH (no --env)".to_owned()
    } else {
        let specs: Vec<String> = env.iter().map(ToString::to_string).collect();
        format!("--env {}", specs.join(" "))
    }
}

pub(super) fn jupyter_check(ssh: &Ssh, profile: &Profile, limit: Duration) -> Finding {
    const NAME: &str = "remote Jupyter";
    let alias = &profile.alias;
    let script = format!("{}{JUPYTER_PROBE}", activation(&profile.env));
    let sent = Marker::new().and_then(|marker| {
        let cmd = ssh.exec(alias, &remote::in_login_shell(&marker, &script), true);
        Ok((cmd.output_within(limit)?, marker))
    });
    let (out, marker) = match sent {
        Ok(sent) => sent,
        Err(e) => return Finding::fail(NAME, format!("{e:#}"), format!("run `ssh {alias} jupyter --version`")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Only the probe's own lines, not what the login shell printed before them.
    let reply = marker.reply(&stdout).unwrap_or_default();
    let field = |word: &str| {
        reply
            .lines()
            .find_map(|l| l.strip_prefix(word).and_then(|r| r.strip_prefix(' ')))
            .map(str::to_owned)
    };
    let Some(jupyter) = field("jupyter").filter(|_| out.status.success()) else {
        let fix = if profile.env.is_empty() {
            format!(
                "install it there (`pip install jupyterlab`) or tell jssh where it is: `jssh jupyter {alias} --env \
                 venv:PATH` (or conda:NAME, module:NAME)"
            )
        } else {
            format!("fix the environment, or change it with `jssh jupyter {alias} --env SPEC`")
        };
        return Finding::fail(
            NAME,
            format!("not found with {}: {}", env_text(&profile.env), ssh_error(&out.stderr)),
            fix,
        );
    };
    let versions: Versions = field("versions")
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    jupyter_verdict(profile, &jupyter, field("python").as_deref(), &versions)
}

fn jupyter_verdict(profile: &Profile, jupyter: &str, python: Option<&str>, versions: &Versions) -> Finding {
    const NAME: &str = "remote Jupyter";
    let alias = &profile.alias;
    if versions.server.is_none() && versions.notebook.is_none() {
        return Finding::warn(
            NAME,
            format!(
                "found {jupyter}, but {} has neither jupyter_server nor notebook, so `jssh jupyter` and `jssh \
                 password` cannot configure it",
                python.unwrap_or("no python3")
            ),
            format!("point --env at Jupyter's own environment: `jssh jupyter {alias} --env venv:PATH`"),
        );
    }
    let mut parts = Vec::new();
    for (name, version) in [
        ("jupyter_server", &versions.server),
        ("JupyterLab", &versions.lab),
        ("notebook", &versions.notebook),
    ] {
        if let Some(v) = version {
            parts.push(format!("{name} {v}"));
        }
    }
    let found = JupyterInfo {
        server: versions.server.clone(),
        notebook: versions.notebook.clone(),
        lab: versions.lab.clone(),
        ..JupyterInfo::default()
    };
    let cached = &profile.jupyter;
    let learned = cached.server.is_some() || cached.notebook.is_some();
    let generation = |info: &JupyterInfo| info.classic(info.notebook_ui(false));
    if learned && generation(cached) != generation(&found) {
        return Finding::warn(
            NAME,
            format!(
                "{} at {jupyter}, but jssh remembers another generation",
                parts.join(", ")
            ),
            format!("run `jssh jupyter {alias}` so jssh uses the right option names"),
        );
    }
    Finding::ok(
        NAME,
        format!("{} at {jupyter} ({})", parts.join(", "), env_text(&profile.env)),
    )
}

/// jssh's Jupyter config on the remote: loopback unless remote access has a password, and a
/// token (jssh always sets one) unless a password replaces it.
pub(super) fn config_check(alias: &Alias, config: Option<&RemoteConfig>) -> Finding {
    const NAME: &str = "Jupyter config";
    let Some(config) = config else {
        return Finding::warn(NAME, "not checked: the remote did not answer", "run `ssh ALIAS true`");
    };
    let Some(mode) = &config.mode else {
        return Finding::ok(
            NAME,
            format!(
                "no {} yet: `jssh up` listens on 127.0.0.1 and requires its token",
                config.path
            ),
        );
    };
    let path = &config.path;
    let rewrite =
        format!("`jssh jupyter {alias}` rewrites it (127.0.0.1), or set a password with `jssh password {alias}`");
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&config.text) else {
        return Finding::fail(
            NAME,
            format!("{path} on {alias} is not valid JSON, so Jupyter will not start with it"),
            format!("remove it there and run `jssh jupyter {alias}`"),
        );
    };
    let text_at = |section: &str, key: &str| json.get(section).and_then(|s| s.get(key)).and_then(|v| v.as_str());
    let password = [
        ("PasswordIdentityProvider", "hashed_password"),
        ("NotebookApp", "password"),
        ("ServerApp", "password"),
    ]
    .iter()
    .any(|(s, k)| text_at(s, k).is_some_and(|v| !v.is_empty()));
    let open_ip = ["ServerApp", "NotebookApp"]
        .iter()
        .filter_map(|s| text_at(s, "ip"))
        .find(|ip| !matches!(*ip, "127.0.0.1" | "localhost" | "::1"));
    let no_token = ["IdentityProvider", "ServerApp", "NotebookApp"]
        .iter()
        .find(|s| text_at(s, "token") == Some(""));
    if let Some(ip) = open_ip
        && !password
    {
        return Finding::fail(
            NAME,
            format!("{path} on {alias} listens on {ip} without a password"),
            rewrite,
        );
    }
    if let Some(section) = no_token {
        let detail = format!("{path} on {alias} turns off the token ({section}.token = \"\")");
        let fix = format!("remove that setting from {path} on {alias}");
        return if password {
            Finding::warn(
                NAME,
                format!("{detail}: only the password protects it, and jssh's URL will not log you in"),
                fix,
            )
        } else {
            Finding::fail(
                NAME,
                format!("{detail} and sets no password: anyone who reaches the port gets a shell"),
                fix,
            )
        };
    }
    if let Some(ip) = open_ip {
        return Finding::warn(
            NAME,
            format!("{path} on {alias} listens on {ip}: anyone who can reach {alias} can try the password"),
            format!("`jssh jupyter {alias}` listens on 127.0.0.1 only; the tunnel needs nothing more"),
        );
    }
    if password && mode.get(4..).is_some_and(|m| m.contains(['r', 'w'])) {
        return Finding::warn(
            NAME,
            format!("{path} on {alias} is {mode} and holds your password's hash"),
            format!("run `chmod 600 {path}` on {alias}"),
        );
    }
    let how = if password {
        "its token or your password"
    } else {
        "its token"
    };
    Finding::ok(NAME, format!("{path}: 127.0.0.1, {how}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::doctor::finding::Status;
    use crate::cmd::doctor::test_fixtures::{alias, profile};

    fn config(mode: &str, text: &str) -> Finding {
        let config = RemoteConfig {
            path: "/j/jssh_config.json".into(),
            mode: Some(mode.into()),
            text: text.into(),
        };
        config_check(&alias(), Some(&config))
    }

    #[test]
    fn jupyter_config_must_keep_a_lock_on_the_door() {
        let ok = config(
            "-rw-------",
            r#"{"ServerApp": {"ip": "127.0.0.1", "open_browser": false}}"#,
        );
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        let open = config("-rw-------", r#"{"ServerApp": {"ip": "0.0.0.0"}}"#);
        assert_eq!(open.status, Status::Fail);
        assert!(open.fix.unwrap().contains("jssh password gpu"));
        let hash = r#""PasswordIdentityProvider": {"hashed_password": "argon2:x"}"#;
        let guarded = config(
            "-rw-------",
            &format!(r#"{{"ServerApp": {{"ip": "0.0.0.0"}}, {hash}}}"#),
        );
        assert_eq!(guarded.status, Status::Warn);
        let tokenless = config("-rw-------", r#"{"IdentityProvider": {"token": ""}}"#);
        assert_eq!(tokenless.status, Status::Fail);
        assert!(tokenless.detail.contains("IdentityProvider.token"), "{tokenless:?}");
        let readable = config("-rw-r--r--", &format!("{{{hash}}}"));
        assert_eq!(readable.status, Status::Warn);
        assert_eq!(config("-rw-------", "{nope").status, Status::Fail);
        let missing = RemoteConfig {
            path: "/j/jssh_config.json".into(),
            mode: None,
            text: String::new(),
        };
        assert_eq!(config_check(&alias(), Some(&missing)).status, Status::Ok);
    }

    #[test]
    fn jupyter_versions_and_generations() {
        let modern = Versions {
            server: Some("2.21.1".into()),
            notebook: Some("7.6.5".into()),
            lab: Some("4.6.6".into()),
        };
        let check = jupyter_verdict(&profile(), "/v/bin/jupyter", Some("/v/bin/python3"), &modern);
        assert_eq!(
            check.detail,
            "jupyter_server 2.21.1, JupyterLab 4.6.6, notebook 7.6.5 at /v/bin/jupyter (--env venv:~/v)"
        );
        let mut classic_profile = profile();
        classic_profile.jupyter.notebook = Some("6.5.7".into());
        let stale = jupyter_verdict(&classic_profile, "/v/bin/jupyter", None, &modern);
        assert_eq!(stale.status, Status::Warn);
        let none = jupyter_verdict(&profile(), "/x/jupyter", Some("/usr/bin/python3"), &Versions::default());
        assert_eq!(none.status, Status::Warn);
    }
}
