//! The first command through an alias's master: what it reports (the server's address, tmux,
//! jssh's Jupyter config file) and the tmux check read from it.

use std::net::IpAddr;

use crate::target::Alias;

use super::finding::Finding;

/// What the first command reports: the server's address, tmux, and jssh's Jupyter config. It
/// runs in plain `sh`, not the login shell, like `jssh up`'s launch script (so the same tmux).
pub(super) const FACTS: &str = include_str!("../../../remote/facts.sh");

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tmux {
    Found { path: String, version: String, works: bool },
    Missing { path_env: String },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RemoteConfig {
    pub(super) path: String,
    /// `ls -l`'s mode column (`-rw-------`); `None` when the file does not exist.
    pub(super) mode: Option<String>,
    pub(super) text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Facts {
    pub(super) server: Option<(IpAddr, u16)>,
    pub(super) tmux: Tmux,
    pub(super) config: Option<RemoteConfig>,
}

impl Facts {
    pub(super) fn parse(text: &str) -> Self {
        let mut facts = Facts {
            server: None,
            tmux: Tmux::Unknown,
            config: None,
        };
        let (head, json) = match text.split_once("\njson\n") {
            Some((head, json)) => (head, Some(json)),
            None => (text, None),
        };
        let mut tmux: Option<(String, bool)> = None;
        let mut version = String::new();
        for line in head.lines() {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match word {
                "conn" => {
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    if let [_, _, ip, port] = fields[..] {
                        facts.server = ip.parse().ok().zip(port.parse().ok());
                    }
                }
                "tmux" => {
                    if let Some((code, path)) = rest.split_once(' ') {
                        tmux = Some((path.to_owned(), code == "0"));
                    }
                }
                "tmuxv" => rest.clone_into(&mut version),
                "notmux" => {
                    facts.tmux = Tmux::Missing {
                        path_env: rest.to_owned(),
                    }
                }
                "config" => {
                    if let Some((mode, path)) = rest.split_once(' ') {
                        facts.config = Some(RemoteConfig {
                            path: path.to_owned(),
                            mode: Some(mode.to_owned()),
                            text: json.unwrap_or_default().to_owned(),
                        });
                    }
                }
                "noconfig" => {
                    facts.config = Some(RemoteConfig {
                        path: rest.to_owned(),
                        mode: None,
                        text: String::new(),
                    });
                }
                _ => {}
            }
        }
        if let Some((path, works)) = tmux {
            facts.tmux = Tmux::Found { path, version, works };
        }
        facts
    }
}

pub(super) fn tmux_check(alias: &Alias, tmux: &Tmux) -> Finding {
    const NAME: &str = "remote tmux";
    let install = "install it there (`apt install tmux`, `dnf install tmux`, or `conda install -c conda-forge tmux`): \
                   jssh runs Jupyter inside tmux";
    match tmux {
        Tmux::Found {
            path,
            version,
            works: true,
        } => Finding::ok(NAME, format!("{version} ({path})")),
        Tmux::Found {
            path,
            version,
            works: false,
        } => Finding::fail(NAME, format!("{path} does not run: {version}"), install),
        Tmux::Missing { path_env } => Finding::fail(NAME, format!("not found on {alias} (PATH={path_env})"), install),
        Tmux::Unknown => Finding::warn(
            NAME,
            "not checked: the remote did not answer",
            "run `ssh ALIAS tmux -V`",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::doctor::finding::Status;
    use crate::cmd::doctor::test_fixtures::alias;

    #[test]
    fn parses_the_facts() {
        let text = "conn 127.0.0.1 40336 127.0.0.1 22221\ntmux 0 /usr/bin/tmux\ntmuxv tmux 3.3a\n\
                    config -rw------- /h/.jupyter/jssh_config.json\njson\n{\"ServerApp\": {\"ip\": \"127.0.0.1\"}}\n";
        let facts = Facts::parse(text);
        assert_eq!(facts.server, Some(("127.0.0.1".parse().unwrap(), 22221)));
        assert_eq!(
            facts.tmux,
            Tmux::Found {
                path: "/usr/bin/tmux".into(),
                version: "tmux 3.3a".into(),
                works: true
            }
        );
        let config = facts.config.unwrap();
        assert_eq!(config.mode.as_deref(), Some("-rw-------"));
        assert!(config.text.contains("ServerApp"));
        let bare = Facts::parse("conn \nnotmux /a b:/c\nnoconfig /h/.jupyter/jssh_config.json\n");
        assert_eq!(bare.server, None);
        assert_eq!(
            bare.tmux,
            Tmux::Missing {
                path_env: "/a b:/c".into()
            }
        );
        assert_eq!(bare.config.unwrap().mode, None);
        assert_eq!(tmux_check(&alias(), &bare.tmux).status, Status::Fail);
    }

    /// The facts script spells jssh's config file as the rest of jssh does.
    #[test]
    fn the_facts_script_reads_jssh_config_file() {
        assert!(
            FACTS.contains(&format!("f={}\n", crate::jupyter::CONFIG_FILE_SH)),
            "{FACTS}"
        );
    }

    #[test]
    fn the_facts_script_runs_in_sh() {
        let out = std::process::Command::new("sh")
            .args(["-c", FACTS])
            .env("HOME", "/nonexistent")
            .env_remove("JUPYTER_CONFIG_DIR")
            .env("SSH_CONNECTION", "1.2.3.4 5 127.0.0.1 22")
            .output()
            .unwrap();
        let facts = Facts::parse(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(facts.server, Some(("127.0.0.1".parse().unwrap(), 22)));
        assert_ne!(facts.tmux, Tmux::Unknown);
        assert_eq!(facts.config.unwrap().path, "/nonexistent/.jupyter/jssh_config.json");
    }
}
