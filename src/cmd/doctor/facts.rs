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
    Found {
        path: String,
        version: String,
        works: bool,
        /// tmux's socket dir (`$TMUX_TMPDIR/tmux-UID`), when it exists.
        dir: Option<SocketDir>,
    },
    Missing {
        path_env: String,
    },
    Unknown,
}

/// tmux's socket dir as `ls -ldn` shows it, and the login's uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SocketDir {
    pub(super) path: String,
    /// `ls`'s mode column (`drwx------`).
    pub(super) mode: String,
    pub(super) owner: String,
    pub(super) uid: String,
}

impl SocketDir {
    /// `UID MODE OWNER PATH` from the facts script.
    fn parse(text: &str) -> Option<Self> {
        let mut fields = text.splitn(4, ' ');
        let (uid, mode, owner, path) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        Some(Self {
            path: path.to_owned(),
            // A trailing `.` or `+` says there is an SELinux context or an ACL.
            mode: mode.chars().take(10).collect(),
            owner: owner.to_owned(),
            uid: uid.to_owned(),
        })
    }

    /// What makes tmux refuse this dir (as tmux checks it: the owner must be the user, and
    /// others may have no access at all), with the fix.
    fn problem(&self, alias: &Alias) -> Option<(String, String)> {
        let path = &self.path;
        let quoted = shell_words::quote(path);
        if self.owner != self.uid {
            return Some((
                format!(
                    "{path} belongs to uid {}, not to you (uid {}), so tmux refuses it and jssh cannot start \
                     Jupyter on {alias}",
                    self.owner, self.uid
                ),
                format!(
                    "have it removed (by its owner or root: `rm -rf {quoted}`), or set TMUX_TMPDIR to a \
                     directory of yours in the remote shell's startup file"
                ),
            ));
        }
        if !self.mode.starts_with('d') {
            return Some((
                format!("{path} is not a directory ({}), so tmux refuses it", self.mode),
                format!("remove it on {alias}: `rm {quoted}`"),
            ));
        }
        if self.mode.get(7..10).is_some_and(|other| other != "---") {
            return Some((
                format!("{path} is {}: tmux refuses a socket dir that others may use", self.mode),
                format!("run `chmod 700 {quoted}` on {alias}"),
            ));
        }
        None
    }
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
        let mut dir = None;
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
                "tmuxdir" => dir = SocketDir::parse(rest),
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
            facts.tmux = Tmux::Found {
                path,
                version,
                works,
                dir,
            };
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
            dir,
        } => match dir.as_ref().and_then(|d| d.problem(alias)) {
            Some((problem, fix)) => Finding::fail(NAME, problem, fix),
            None => Finding::ok(NAME, format!("{version} ({path})")),
        },
        Tmux::Found {
            path,
            version,
            works: false,
            ..
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
                works: true,
                dir: None,
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

    /// Issue 11, case 9: a socket dir tmux refuses is not a ✓.
    #[test]
    fn case9_a_tmux_socket_dir_tmux_refuses_fails_the_check() {
        let found = |line: &str| {
            let text = format!("tmux 0 /usr/bin/tmux\ntmuxv tmux 3.3a\n{line}\n");
            tmux_check(&alias(), &Facts::parse(&text).tmux)
        };
        assert_eq!(found("").status, Status::Ok);
        assert_eq!(found("tmuxdir 1000 drwx------ 1000 /tmp/tmux-1000").status, Status::Ok);
        assert_eq!(found("tmuxdir 1000 drwxrwx---. 1000 /tmp/tmux-1000").status, Status::Ok);
        let theirs = found("tmuxdir 1000 drwx------ 1001 /tmp/tmux-1000");
        assert_eq!(
            theirs.line(),
            "✗ remote tmux: /tmp/tmux-1000 belongs to uid 1001, not to you (uid 1000), so tmux refuses it \
             and jssh cannot start Jupyter on gpu: have it removed (by its owner or root: `rm -rf \
             /tmp/tmux-1000`), or set TMUX_TMPDIR to a directory of yours in the remote shell's startup file"
        );
        let open = found("tmuxdir 1000 drwxrwxrwt 1000 /t/my dir/tmux-1000");
        assert_eq!(open.status, Status::Fail);
        assert!(
            open.line().contains("chmod 700 '/t/my dir/tmux-1000'"),
            "{}",
            open.line()
        );
        assert_eq!(
            found("tmuxdir 1000 lrwxrwxrwx 1000 /tmp/tmux-1000").status,
            Status::Fail,
            "a symlink"
        );
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
