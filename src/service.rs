//! The per-user service that keeps tunnels up across logins and reboots: one systemd `--user`
//! template unit (`jssh@.service`, one instance per alias) or one macOS LaunchAgent per alias.
//! Rendering is pure; installing and removing touch only the service directory
//! ([`ServiceDir`]), and only jssh's own files in it.
//!
//! Why a template on systemd: one file for every alias (the instance name is the alias, and
//! every valid alias is a valid instance name as it is, see [`crate::target::Alias`]), each
//! instance restarted and logged on its own (`journalctl --user -u jssh@gpu`), enabled by a
//! symlink, exactly what `systemctl --user enable jssh@gpu` makes. launchd has no templates.
//!
//! What a unit runs is `jssh service run ALIAS` (see `cmd/service.rs`): the foreground
//! `jssh up`, so the tunnel has the same supervisor, lease and state as one started by hand,
//! and `jssh status`/`down` see it.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::fsutil;
use crate::target::Alias;

/// Which service manager the files are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Manager {
    Systemd,
    Launchd,
}

/// The exit status of `jssh service run` when the tunnel was stopped on purpose (`jssh down`,
/// a TERM): the unit is then not restarted until the next login (systemd's
/// `RestartPreventExitStatus`, launchd's `KeepAlive`/`SuccessfulExit`).
pub(crate) const STOPPED_ON_PURPOSE: u8 = 0;
/// Between restarts of a unit whose tunnel failed (e.g. no network at boot).
const RESTART_SECS: u32 = 5;

/// What a unit starts: jssh by absolute path, the global flags of the install, and the
/// environment that points jssh at its files (its config and state dirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Program {
    pub(crate) exe: PathBuf,
    /// Global flags (`--ssh-config FILE`, `--connect-timeout N`), before the subcommand.
    pub(crate) global: Vec<OsString>,
    pub(crate) env: Vec<(String, PathBuf)>,
}

impl Program {
    /// The full argument list for `alias` (launchd's ProgramArguments).
    fn argv(&self, alias: &str) -> Vec<OsString> {
        let mut argv = vec![self.exe.clone().into_os_string()];
        argv.extend(self.global.iter().cloned());
        argv.extend(["service".into(), "run".into(), alias.into()]);
        argv
    }
}

/// systemd's quoting for one word of `ExecStart=` or `Environment=`: double quotes, with
/// `\` and `"` escaped, `%` doubled (a specifier otherwise), and `$` doubled (ExecStart
/// would expand it). Bytes that are not UTF-8 are refused by the caller's path check.
fn systemd_word(word: &str) -> String {
    let mut out = String::from("\"");
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn utf8(word: &std::ffi::OsStr) -> Result<&str> {
    word.to_str()
        .with_context(|| format!("{} is not UTF-8, which a service file cannot hold", word.display()))
}

/// The template unit `jssh@.service`: `%i` is the alias.
pub(crate) fn systemd_unit(program: &Program) -> Result<String> {
    let mut exec = systemd_word(utf8(program.exe.as_os_str())?);
    for word in &program.global {
        exec.push(' ');
        exec.push_str(&systemd_word(utf8(word)?));
    }
    exec.push_str(" service run %i");
    let mut env = String::new();
    for (key, value) in &program.env {
        let pair = format!("{key}={}", utf8(value.as_os_str())?);
        writeln!(env, "Environment={}", systemd_word(&pair)).ok();
    }
    Ok(format!(
        "# Written by `jssh service install`; `jssh service remove` deletes it.\n\
         [Unit]\n\
         Description=jssh tunnel to %i (Jupyter over ssh)\n\
         Documentation=man:jssh-service(1)\n\
         # Never give up: a tunnel that fails (no network yet) is tried again every {RESTART_SECS} s.\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         # Started once the URL answers: the supervisor, a grandchild, says so (sd_notify).\n\
         Type=notify\n\
         NotifyAccess=all\n\
         # No time limit: a first start may wait minutes for Jupyter on a slow machine, or hours\n\
         # in a Slurm queue, and killing it would only start (or submit) it again. `jssh up`\n\
         # has its own limit on Jupyter's start; the unit's status says what it waits for.\n\
         # The login does not wait for it (a user manager is ready at basic.target).\n\
         TimeoutStartSec=infinity\n\
         ExecStart={exec}\n\
         {env}\
         Restart=always\n\
         RestartSec={RESTART_SECS}\n\
         # `jssh down` stops the tunnel on purpose: it stays down until the next login.\n\
         RestartPreventExitStatus={STOPPED_ON_PURPOSE}\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n"
    ))
}

/// XML's escaping for text in a plist.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The LaunchAgent's label (and file name without `.plist`).
pub(crate) fn launchd_label(alias: &str) -> String {
    format!("jssh.tunnel.{alias}")
}

/// A LaunchAgent for `alias`: started at login (`RunAtLoad`) and again whenever it fails
/// (`KeepAlive` unless it exited 0, which it does when stopped on purpose).
pub(crate) fn launch_agent(program: &Program, alias: &Alias) -> Result<String> {
    let mut args = String::new();
    for word in program.argv(alias.as_str()) {
        writeln!(args, "        <string>{}</string>", xml(utf8(&word)?)).ok();
    }
    let mut env = String::new();
    for (key, value) in &program.env {
        writeln!(
            env,
            "        <key>{}</key>\n        <string>{}</string>",
            xml(key),
            xml(utf8(value.as_os_str())?)
        )
        .ok();
    }
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `jssh service install`; `jssh service remove` deletes it. -->\n\
         <plist version=\"1.0\">\n\
         <dict>\n\
         \x20   <key>Label</key>\n\
         \x20   <string>{label}</string>\n\
         \x20   <key>ProgramArguments</key>\n\
         \x20   <array>\n\
         {args}\
         \x20   </array>\n\
         \x20   <key>EnvironmentVariables</key>\n\
         \x20   <dict>\n\
         {env}\
         \x20   </dict>\n\
         \x20   <key>RunAtLoad</key>\n\
         \x20   <true/>\n\
         \x20   <key>KeepAlive</key>\n\
         \x20   <dict>\n\
         \x20       <key>SuccessfulExit</key>\n\
         \x20       <false/>\n\
         \x20   </dict>\n\
         \x20   <key>ThrottleInterval</key>\n\
         \x20   <integer>{RESTART_SECS}</integer>\n\
         </dict>\n\
         </plist>\n",
        label = xml(&launchd_label(alias.as_str())),
    ))
}

/// The directory the service manager reads the user's units from.
#[derive(Debug, Clone)]
pub(crate) struct ServiceDir {
    pub(crate) manager: Manager,
    pub(crate) dir: PathBuf,
}

/// systemd's template, beside its instances' enable links.
const TEMPLATE: &str = "jssh@.service";
const WANTS: &str = "default.target.wants";

impl ServiceDir {
    /// The unit file of `alias` (for systemd, its enable link).
    pub(crate) fn unit_path(&self, alias: &Alias) -> PathBuf {
        match self.manager {
            Manager::Systemd => self.dir.join(WANTS).join(systemd_instance(alias)),
            Manager::Launchd => self.dir.join(format!("{}.plist", launchd_label(alias.as_str()))),
        }
    }

    /// Writes (or rewrites) the service for `aliases`. Returns the files written or changed.
    pub(crate) fn install(&self, program: &Program, aliases: &[Alias]) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("could not create {}", self.dir.display()))?;
        let mut changed = Vec::new();
        match self.manager {
            Manager::Systemd => {
                let template = self.dir.join(TEMPLATE);
                if fsutil::write_atomic(&template, systemd_unit(program)?.as_bytes(), 0o644)? {
                    changed.push(template.clone());
                }
                let wants = self.dir.join(WANTS);
                std::fs::create_dir_all(&wants).with_context(|| format!("could not create {}", wants.display()))?;
                for alias in aliases {
                    let link = self.unit_path(alias);
                    if std::fs::read_link(&link).is_ok_and(|t| t == template) {
                        continue;
                    }
                    let _ = std::fs::remove_file(&link);
                    std::os::unix::fs::symlink(&template, &link)
                        .with_context(|| format!("could not create {}", link.display()))?;
                    changed.push(link);
                }
            }
            Manager::Launchd => {
                for alias in aliases {
                    let path = self.unit_path(alias);
                    if fsutil::write_atomic(&path, launch_agent(program, alias)?.as_bytes(), 0o644)? {
                        changed.push(path);
                    }
                }
            }
        }
        Ok(changed)
    }

    /// Removes the service of `aliases` (and systemd's template once no alias uses it).
    /// Returns the files removed.
    pub(crate) fn remove(&self, aliases: &[Alias]) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for alias in aliases {
            let path = self.unit_path(alias);
            if std::fs::symlink_metadata(&path).is_ok() {
                std::fs::remove_file(&path).with_context(|| format!("could not remove {}", path.display()))?;
                removed.push(path);
            }
        }
        if self.manager == Manager::Systemd && self.installed()?.is_empty() {
            let template = self.dir.join(TEMPLATE);
            if template.exists() {
                std::fs::remove_file(&template).with_context(|| format!("could not remove {}", template.display()))?;
                removed.push(template);
            }
            // Only if empty: other units' links may live there too.
            let _ = std::fs::remove_dir(self.dir.join(WANTS));
        }
        Ok(removed)
    }

    /// The aliases that have a service here.
    pub(crate) fn installed(&self) -> Result<Vec<Alias>> {
        let (dir, prefix, suffix) = match self.manager {
            Manager::Systemd => (self.dir.join(WANTS), "jssh@".to_owned(), ".service"),
            Manager::Launchd => (self.dir.clone(), launchd_label(""), ".plist"),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("could not read {}", dir.display())),
        };
        let mut aliases: Vec<Alias> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix(&prefix)?.strip_suffix(suffix)?.parse().ok()
            })
            .collect();
        aliases.sort();
        Ok(aliases)
    }
}

/// `jssh@ALIAS.service`.
pub(crate) fn systemd_instance(alias: &Alias) -> String {
    format!("jssh@{alias}.service")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program() -> Program {
        Program {
            exe: "/opt/my tools/jssh".into(),
            global: vec!["--ssh-config".into(), "/home/a/100%/$HOME/\"c\"".into()],
            env: vec![("JSSH_STATE_DIR".into(), "/s & <t>".into())],
        }
    }

    #[test]
    fn systemd_words_survive_spaces_specifiers_dollars_and_quotes() {
        assert_eq!(systemd_word("a b"), "\"a b\"");
        assert_eq!(systemd_word("100%"), "\"100%%\"");
        assert_eq!(systemd_word("$HOME"), "\"$$HOME\"");
        assert_eq!(systemd_word(r#"say "hi" \o/"#), r#""say \"hi\" \\o/""#);
        let unit = systemd_unit(&program()).unwrap();
        assert!(
            unit.contains(
                r#"ExecStart="/opt/my tools/jssh" "--ssh-config" "/home/a/100%%/$$HOME/\"c\"" service run %i"#
            ),
            "{unit}"
        );
        assert!(unit.contains("Environment=\"JSSH_STATE_DIR=/s & <t>\"\n"), "{unit}");
        for line in [
            "Type=notify",
            "NotifyAccess=all",
            "TimeoutStartSec=infinity",
            "Restart=always",
            "StartLimitIntervalSec=0",
            "WantedBy=default.target",
        ] {
            assert!(unit.lines().any(|l| l == line), "{line} in\n{unit}");
        }
    }

    #[test]
    fn a_launch_agent_escapes_its_text_and_runs_the_service_command() {
        let alias: Alias = "gpu".parse().unwrap();
        let plist = launch_agent(&program(), &alias).unwrap();
        assert!(plist.contains("<string>jssh.tunnel.gpu</string>"));
        assert!(plist.contains("<string>/opt/my tools/jssh</string>"));
        assert!(plist.contains("<string>/s &amp; &lt;t&gt;</string>"));
        assert!(plist.contains("<string>run</string>\n        <string>gpu</string>"));
    }
}
