//! Host profiles (`hosts.toml` in jssh's config dir): the source the managed ssh config block
//! is rendered from.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::envspec::EnvSpec;
use crate::fsutil;
use crate::jupyter::JupyterInfo;
use crate::slurm::{Reach, SbatchOptions};
use crate::target::{ALIAS_MAX, Alias, Hostname, IdentityPath, Jump, Port, UserName};

/// Everything jssh knows about one host alias. Every field is a validated type, the same one
/// its command-line flag parses into, so a hand-edited `hosts.toml` is checked on load exactly
/// as `jssh setup`'s flags are (issue 11, case 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    pub(crate) alias: Alias,
    pub(crate) host: Hostname,
    pub(crate) user: UserName,
    pub(crate) port: Port,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jump: Option<Jump>,
    pub(crate) identity: IdentityPath,
    /// How the remote finds Jupyter (`--env`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) env: Vec<EnvSpec>,
    /// What `jssh jupyter`/`jssh password` learned about the remote Jupyter.
    #[serde(default, skip_serializing_if = "is_default")]
    pub(crate) jupyter: JupyterInfo,
    /// Whether a login needs a human after the key (setup found out).
    #[serde(default, skip_serializing_if = "LoginKind::is_key")]
    pub(crate) login: LoginKind,
    /// Run Jupyter as a Slurm job with these sbatch options (`--slurm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slurm: Option<SbatchOptions>,
    /// How the cluster let `jssh up` reach a job's node (learned at the first job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slurm_reach: Option<Reach>,
}

/// How a login to the host goes: the key alone, or the key and then a prompt only a human can
/// answer (a TOTP code, a Duo push: `AuthenticationMethods publickey,keyboard-interactive`).
/// For such a host nothing automatic ever logs in: `jssh up` asks once, in its terminal, and
/// everything rides on that connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum LoginKind {
    #[default]
    Key,
    Prompt,
}

impl LoginKind {
    #[allow(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's skip_serializing_if passes a reference"
    )]
    fn is_key(&self) -> bool {
        *self == Self::Key
    }
}

/// Why two aliases may not differ only in case.
const SAME_DIR: &str = ", and would share their state and run directories on a case-insensitive filesystem";

/// Where a TOML error is, as `:LINE (host entry N "ALIAS", field F): MESSAGE` on one line
/// (toml's own rendering spans several lines with a caret).
fn where_in(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end().replace('\n', " ");
    let Some(span) = err.span() else {
        return format!(": {message}");
    };
    let before = &text[..span.start.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or_default().trim();
    let mut place = Vec::new();
    let entry = text
        .lines()
        .take(line_no)
        .filter(|l| l.trim_start().starts_with("[[host]]"))
        .count();
    if entry > 0 {
        // The alias as written, read without validation, to name the entry.
        let alias = text.parse::<toml::Table>().ok().and_then(|t| {
            t.get("host")?
                .as_array()?
                .get(entry - 1)?
                .get("alias")?
                .as_str()
                .map(str::to_owned)
        });
        place.push(match alias {
            Some(a) if a.chars().count() > ALIAS_MAX => {
                format!(
                    "host entry {entry} {:?}…",
                    a.chars().take(ALIAS_MAX).collect::<String>()
                )
            }
            Some(a) => format!("host entry {entry} {a:?}"),
            None => format!("host entry {entry}"),
        });
    }
    if let Some((key, _)) = line.split_once('=')
        && !line.starts_with('[')
    {
        place.push(format!("field {}", key.trim()));
    }
    if place.is_empty() {
        format!(":{line_no}: {message}")
    } else {
        format!(":{line_no} ({}): {message}", place.join(", "))
    }
}

fn is_default(info: &JupyterInfo) -> bool {
    *info == JupyterInfo::default()
}

/// All profiles, kept sorted by alias so the rendered files are stable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Profiles {
    #[serde(default, rename = "host")]
    hosts: Vec<Profile>,
}

impl Profiles {
    /// Reads `hosts.toml`. Anything wrong in it (a value its flag would refuse, an unknown
    /// field, two aliases for one state dir) is one line naming the file, the line, the host
    /// entry and the field; no command goes on with the other entries, because `setup` would
    /// then write the file back without the bad one.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let Some(bytes) = fsutil::read_optional(path)? else {
            return Ok(Self::default());
        };
        let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow!("{}{e}: fix or remove it", path.display()))
    }

    /// Errors start with where in the file (`:LINE (…)`), for [`Profiles::load`] to prefix.
    fn parse(text: &str) -> Result<Self> {
        let mut profiles: Self = toml::from_str(text).map_err(|e| anyhow!(where_in(text, &e)))?;
        profiles.hosts.sort_by(|a, b| a.alias.cmp(&b.alias));
        for pair in profiles.hosts.windows(2) {
            let (a, b) = (&pair[0].alias, &pair[1].alias);
            if a == b {
                bail!(": alias {a} has two host entries");
            }
            if a.as_str().eq_ignore_ascii_case(b.as_str()) {
                bail!(": aliases {a} and {b} differ only in case{SAME_DIR}");
            }
        }
        Ok(profiles)
    }

    /// Refuses a new alias that differs only in case from a profile's.
    pub(crate) fn check_new(&self, alias: &Alias) -> Result<()> {
        if let Some(twin) = self
            .hosts
            .iter()
            .find(|p| p.alias != *alias && p.alias.as_str().eq_ignore_ascii_case(alias.as_str()))
        {
            return Err(crate::UsageError(format!(
                "{alias} differs from the existing alias {} only in case{SAME_DIR}: pick another name, or \
                 `jssh setup --remove {}` first",
                twin.alias, twin.alias
            ))
            .into());
        }
        Ok(())
    }

    pub(crate) fn render(&self) -> String {
        let header = "# jssh host profiles. Change them with `jssh setup`, not by hand.\n\n";
        format!("{header}{}", toml::to_string(self).expect("profiles always serialize"))
    }

    pub(crate) fn save(&self, path: &Path) -> Result<bool> {
        fsutil::write_atomic(path, self.render().as_bytes(), fsutil::PRIVATE_FILE)
            .with_context(|| format!("could not write {}", path.display()))
    }

    /// The profile for `alias`, or the one error every command gives for an unknown alias:
    /// a usage error naming the known ones and how to add it.
    pub(crate) fn lookup(&self, alias: &Alias) -> Result<&Profile> {
        if let Some(profile) = self.get(alias) {
            return Ok(profile);
        }
        let known: Vec<String> = self.iter().map(|p| p.alias.to_string()).collect();
        let known = if known.is_empty() {
            "none yet".to_owned()
        } else {
            known.join(", ")
        };
        Err(crate::UsageError(format!(
            "unknown alias {alias} (known: {known}): add it with `jssh setup {alias} --host HOST`"
        ))
        .into())
    }

    pub(crate) fn get(&self, alias: &Alias) -> Option<&Profile> {
        self.hosts.iter().find(|p| &p.alias == alias)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.hosts.iter()
    }

    /// Adds or replaces the profile with the same alias.
    /// Records how logins to `alias` go (no-op for an unknown alias).
    pub(crate) fn set_login(&mut self, alias: &Alias, login: LoginKind) {
        if let Some(p) = self.hosts.iter_mut().find(|p| &p.alias == alias) {
            p.login = login;
        }
    }

    pub(crate) fn upsert(&mut self, profile: Profile) {
        self.hosts.retain(|p| p.alias != profile.alias);
        self.hosts.push(profile);
        self.hosts.sort_by(|a, b| a.alias.cmp(&b.alias));
    }

    /// Removes a profile; returns whether it existed.
    pub(crate) fn remove(&mut self, alias: &Alias) -> bool {
        let before = self.hosts.len();
        self.hosts.retain(|p| &p.alias != alias);
        self.hosts.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(alias: &str) -> Profile {
        Profile {
            alias: alias.parse().unwrap(),
            host: "h.example".parse().unwrap(),
            user: "alice".parse().unwrap(),
            port: Port::SSH,
            jump: None,
            identity: IdentityPath::new("/k".into()).unwrap(),
            env: vec!["venv:~/v".parse().unwrap()],
            jupyter: JupyterInfo::default(),
            login: LoginKind::Key,
            slurm: None,
            slurm_reach: None,
        }
    }

    #[test]
    fn round_trips_sorted() {
        let mut p = Profiles::default();
        p.upsert(profile("zeta"));
        p.upsert(profile("alpha"));
        p.upsert(profile("zeta"));
        let back = Profiles::parse(&p.render()).unwrap();
        assert_eq!(back, p);
        let names: Vec<_> = back.iter().map(|p| p.alias.to_string()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
    }

    #[test]
    fn rejects_hand_edited_injection() {
        let text = "[[host]]\nalias = \"-oProxyCommand=x\"\nhost = \"h\"\nuser = \"u\"\nport = 22\nidentity = \"/k\"\n";
        assert!(Profiles::parse(text).is_err());
    }

    const GOOD: &str = "[[host]]\nalias = \"a\"\nhost = \"h\"\nuser = \"u\"\nport = 22\nidentity = \"/k\"\n\n";

    /// Case 4 of issue 11: a hand-edited `hosts.toml` is checked with the flags' own types,
    /// and the error is one line naming the line, the entry and the field.
    #[test]
    fn case4_hand_edited_values_are_refused_on_load_with_one_line() {
        let cases = [
            (
                "port = 22",
                "port = 0",
                ":12 (host entry 2 \"b\", field port): invalid port 0",
            ),
            ("port = 22", "port = 70000", "field port): invalid port 70000"),
            (
                "identity = \"/k\"",
                "identity = \"/k\\n\\tProxyCommand touch /tmp/x\"",
                "field identity): invalid identity",
            ),
            ("identity = \"/k\"", "identity = \"k\"", "not an absolute path"),
            (
                "host = \"h\"",
                "host = \"h\\nProxyCommand x\"",
                "field host): invalid host",
            ),
            (
                "user = \"u\"",
                "user = \"-oProxyCommand=x\"",
                "field user): invalid user",
            ),
            ("port = 22", "port = 22\njump = \"a b\"", "field jump)"),
            ("port = 22", "port = 22\nenv = [\"bogus\"]", "field env): invalid --env"),
            ("port = 22", "port = 22\nidnetity = 1", "unknown field `idnetity`"),
            ("alias = \"b\"", "alias = \"..\"", "field alias): invalid alias \"..\""),
            ("alias = \"b\"", "alias = \"a\"", "alias a has two host entries"),
            ("alias = \"b\"", "alias = \"A\"", "differ only in case"),
        ];
        for (good, bad, expected) in cases {
            let second = GOOD.replace("\"a\"", "\"b\"").replacen(good, bad, 1);
            let text = format!("{GOOD}{second}");
            let err = Profiles::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let long = format!("alias = \"{}\"", "a".repeat(300));
        let err = Profiles::parse(&GOOD.replace("alias = \"a\"", &long))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limit is 32") && err.len() < 200, "{err}");
        let err = Profiles::parse("[[host]]\nalias = \"a\n").unwrap_err().to_string();
        assert!(err.starts_with(":2") && !err.contains('\n'), "{err}");
    }

    /// Case 6 of issue 11: `GPU` and `gpu` would share a state dir on macOS.
    #[test]
    fn case6_aliases_differing_only_in_case_are_refused() {
        let mut p = Profiles::default();
        p.upsert(profile("gpu"));
        assert!(
            p.check_new(&"gpu".parse().unwrap()).is_ok(),
            "rerunning setup of one alias"
        );
        assert!(p.check_new(&"other".parse().unwrap()).is_ok());
        let err = p.check_new(&"GPU".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("only in case") && err.contains("gpu"), "{err}");
    }
}
