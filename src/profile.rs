//! Host profiles (`hosts.toml` in jssh's config dir): the source the managed ssh config block
//! is rendered from.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::envspec::EnvSpec;
use crate::fsutil;
use crate::jupyter::JupyterInfo;
use crate::target::{Alias, Hostname, Jump, UserName};

/// Everything jssh knows about one host alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub(crate) alias: Alias,
    pub(crate) host: Hostname,
    pub(crate) user: UserName,
    pub(crate) port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jump: Option<Jump>,
    pub(crate) identity: PathBuf,
    /// How the remote finds Jupyter (`--env`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) env: Vec<EnvSpec>,
    /// What `jssh jupyter`/`jssh password` learned about the remote Jupyter.
    #[serde(default, skip_serializing_if = "is_default")]
    pub(crate) jupyter: JupyterInfo,
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
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let Some(bytes) = fsutil::read_optional(path)? else {
            return Ok(Self::default());
        };
        let text = String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display()))?;
        Self::parse(&text).with_context(|| format!("could not parse {}: fix or remove it", path.display()))
    }

    fn parse(text: &str) -> Result<Self> {
        let mut profiles: Self = toml::from_str(text)?;
        profiles.hosts.sort_by(|a, b| a.alias.cmp(&b.alias));
        Ok(profiles)
    }

    pub(crate) fn render(&self) -> String {
        let header = "# jssh host profiles. Change them with `jssh setup`, not by hand.\n\n";
        format!("{header}{}", toml::to_string(self).expect("profiles always serialize"))
    }

    pub(crate) fn save(&self, path: &Path) -> Result<bool> {
        fsutil::write_atomic(path, self.render().as_bytes(), fsutil::PRIVATE_FILE)
            .with_context(|| format!("could not write {}", path.display()))
    }

    pub(crate) fn get(&self, alias: &Alias) -> Option<&Profile> {
        self.hosts.iter().find(|p| &p.alias == alias)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.hosts.iter()
    }

    /// Adds or replaces the profile with the same alias.
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
            port: 22,
            jump: None,
            identity: "/k".into(),
            env: vec!["venv:~/v".parse().unwrap()],
            jupyter: JupyterInfo::default(),
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
}
