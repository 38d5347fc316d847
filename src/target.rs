//! Validated names: everything that ends up in an ssh argv, an ssh_config line, a tmux session
//! name or a file name passes through here first, so none of it can become an ssh option
//! (`-oProxyCommand=…`), a new config line, or a shell word.

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::sshconfig;

/// Why a value was rejected, phrased for the one-line error clap prints.
fn reject(what: &str, value: &str, why: &str) -> String {
    format!("invalid {what} {value:?}: {why}")
}

/// Shared checks: no empty value, no leading `-` (ssh would read it as an option), and only
/// characters from `allowed` (which excludes whitespace, newlines, `#`, `"`, `=` and shell syntax).
fn check(what: &str, value: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if value.is_empty() {
        return Err(reject(what, value, "it is empty"));
    }
    if value.starts_with('-') {
        return Err(reject(
            what,
            value,
            "it starts with '-', which ssh would take as an option",
        ));
    }
    if let Some(c) = value.chars().find(|&c| !allowed(c)) {
        let shown = if c.is_whitespace() || c.is_control() {
            format!("{c:?}")
        } else {
            format!("'{c}'")
        };
        return Err(reject(what, value, &format!("{shown} is not allowed here")));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $validate:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub(crate) struct $name(String);

        impl $name {
            pub(crate) fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $validate(s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }
    };
}

name_type!(
    /// A host alias: also a directory name in jssh's state dir, a tmux session name and a
    /// directory name on the remote (see [`crate::remote::session_name`]), so the strictest
    /// set. Two aliases that differ only in case are distinct here but share a directory on a
    /// case-insensitive filesystem (macOS): [`crate::profile::Profiles`] refuses such a pair.
    Alias,
    validate_alias
);

/// The longest alias. The longest path jssh derives from an alias that must fit a Unix
/// socket is the remote Jupyter's socket, `$HOME/.jssh/run/jssh-ALIAS/jupyter.sock`: 29
/// bytes plus the home and the alias, and a socket path holds at most 103 bytes on macOS and
/// the BSDs (107 on Linux). 32 leaves the remote home 42 bytes (`/home/alice` is 11, a
/// cluster's `/gpfs/home/projects/abc123/alice` 32). The local control sockets do not limit
/// it: they move to a short directory when the state dir is deep (see
/// [`crate::state::StateDir::control_path`]).
pub(crate) const ALIAS_MAX: usize = 32;

fn validate_alias(s: &str) -> Result<(), String> {
    let length = s.chars().count();
    if length > ALIAS_MAX {
        let start: String = s.chars().take(ALIAS_MAX).collect();
        return Err(reject(
            "alias",
            &format!("{start}…"),
            &format!("it is {length} characters long; the limit is {ALIAS_MAX}"),
        ));
    }
    check("alias", s, |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })?;
    // Not `.`, `..` or a hidden name: the alias is a directory name in the state dir, and
    // `jssh down ..` would act on the state dir's parent.
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(reject("alias", s, "it must start with a letter or a digit"));
    }
    Ok(())
}

name_type!(
    /// A DNS name or an IP literal (IPv6 without brackets, optionally with a `%zone`).
    Hostname,
    validate_host
);

fn validate_host(s: &str) -> Result<(), String> {
    check("host", s, |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '%')
    })?;
    // `%` only as an IPv6 zone (`fe80::1%eth0`); ssh would read any other as a token.
    if let Some((addr, zone)) = s.split_once('%')
        && (!addr.contains(':') || zone.is_empty() || zone.contains(['%', ':']))
    {
        return Err(reject(
            "host",
            s,
            "'%' is only allowed before the zone of an IPv6 address",
        ));
    }
    Ok(())
}

name_type!(
    /// A remote login name; `@` and `\` are allowed for directory-service accounts.
    UserName,
    |s| check("user", s, |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '\\'))
);

name_type!(
    /// A ProxyJump chain: `[USER@]HOST[:PORT]`, comma-separated, every part validated.
    Jump,
    validate_jump
);

fn validate_jump(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(reject("jump", s, "it is empty"));
    }
    for hop in s.split(',') {
        let (user, rest) = match hop.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, hop),
        };
        if let Some(user) = user {
            user.parse::<UserName>().map_err(|e| format!("in --jump: {e}"))?;
        }
        // A trailing `:PORT` only when the rest is not a bare IPv6 literal.
        let host = match rest.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') => {
                parse_port(port).map_err(|e| format!("in --jump {hop:?}: {e}"))?;
                h
            }
            _ => rest,
        };
        host.parse::<Hostname>().map_err(|e| format!("in --jump: {e}"))?;
        // OpenSSH turns ProxyJump into a ProxyCommand and expands `%` in it once per hop, so
        // no escaping survives a chain.
        if host.contains('%') {
            return Err(format!("in --jump {hop:?}: a jump host cannot have an IPv6 zone (%)"));
        }
    }
    Ok(())
}

/// A TCP port, 1–65535: from the command line (`--port`) and from `hosts.toml` (`port = 22`),
/// where a hand-edited `port = 0` is refused on load instead of reaching ssh_config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u16")]
pub(crate) struct Port(u16);

impl Port {
    /// sshd's default.
    pub(crate) const SSH: Self = Self(22);

    pub(crate) fn get(self) -> u16 {
        self.0
    }
}

fn port_error(shown: &dyn fmt::Debug) -> String {
    format!("invalid port {shown:?}: use a number from 1 to 65535")
}

impl TryFrom<i64> for Port {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match u16::try_from(n) {
            Ok(port @ 1..) => Ok(Self(port)),
            _ => Err(port_error(&n)),
        }
    }
}

impl FromStr for Port {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse::<i64>()
            .map_err(|_| port_error(&s))?
            .try_into()
            .map_err(|_| port_error(&s))
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A TCP port, 1–65535, with an error that says so (for local ports, which are not saved).
pub(crate) fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<Port>().map(Port::get)
}

/// The private key of a profile (`--identity`, `identity = …`): an absolute path that
/// ssh_config can carry as an `IdentityFile` (see [`sshconfig::unwritable_path`]). It may
/// hold shell syntax (`$(x)`, backquotes): no shell ever reads it (see
/// [`crate::keys::stage_for_copy_id`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct IdentityPath(PathBuf);

impl IdentityPath {
    pub(crate) fn new(path: PathBuf) -> Result<Self, String> {
        let shown = path.display().to_string();
        let Some(text) = path.to_str() else {
            return Err(reject("identity", &shown, "it is not UTF-8"));
        };
        if !path.is_absolute() {
            return Err(reject("identity", text, "it is not an absolute path"));
        }
        if text.ends_with('/') || path.file_name().is_none() {
            return Err(reject("identity", text, "it names a directory, not a key file"));
        }
        if let Some(why) = sshconfig::unwritable_path(text) {
            return Err(reject("identity", text, &why));
        }
        Ok(Self(path))
    }
}

/// `--identity`: a relative path is taken from the current directory.
pub(crate) fn parse_identity(s: &str) -> Result<IdentityPath, String> {
    let path = Path::new(s);
    if path.is_absolute() {
        return IdentityPath::new(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| format!("could not read the current directory: {e}"))?;
    IdentityPath::new(cwd.join(path))
}

impl Deref for IdentityPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for IdentityPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl PartialEq<PathBuf> for IdentityPath {
    fn eq(&self, other: &PathBuf) -> bool {
        self.0 == *other
    }
}

impl PartialEq<IdentityPath> for &Path {
    fn eq(&self, other: &IdentityPath) -> bool {
        **self == *other.0
    }
}

impl TryFrom<String> for IdentityPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::new(PathBuf::from(s))
    }
}

impl From<IdentityPath> for String {
    fn from(p: IdentityPath) -> String {
        // Only UTF-8 paths are ever constructed.
        p.0.to_string_lossy().into_owned()
    }
}

/// Whether `path` reads the same to a POSIX shell inside double quotes and to OpenSSH
/// wherever it splices a path into a command (ssh-copy-id `eval`s its `-i` file, and ssh
/// runs ProxyJump as a shell command with its `-F` file in it): only characters that are
/// never syntax.
pub(crate) fn is_plain_path(path: &Path) -> bool {
    path.to_str().is_some_and(|s| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ',' | '@' | ':' | '='))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        assert!("gpu-box_1.lab".parse::<Alias>().is_ok());
        assert!("10.0.0.5".parse::<Hostname>().is_ok());
        assert!("fe80::1%eth0".parse::<Hostname>().is_ok());
        assert!("alice".parse::<UserName>().is_ok());
        assert!("bastion".parse::<Jump>().is_ok());
        assert!("bob@bastion:2222,carol@inner".parse::<Jump>().is_ok());
    }

    #[test]
    fn rejects_injection_and_syntax() {
        for bad in [
            "",
            "-oProxyCommand=x",
            "a b",
            "a\nb",
            "a#b",
            "a\"b",
            "a=b",
            "a;b",
            "$(x)",
            "a\tb",
            "a*",
        ] {
            assert!(bad.parse::<Alias>().is_err(), "alias {bad:?}");
            assert!(bad.parse::<Hostname>().is_err(), "host {bad:?}");
            assert!(bad.parse::<UserName>().is_err(), "user {bad:?}");
            assert!(bad.parse::<Jump>().is_err(), "jump {bad:?}");
        }
    }

    #[test]
    fn jump_checks_every_hop() {
        assert!("ok,-oProxyCommand=x".parse::<Jump>().is_err());
        assert!("a@b:0".parse::<Jump>().is_err());
        assert!("a@b:70000".parse::<Jump>().is_err());
        assert!("a b@c".parse::<Jump>().is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("22"), Ok(22));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in ["0", "65536", "-1", "x", "", "99999999999999999999"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
        assert_eq!(Port::try_from(2222), Ok(Port(2222)));
        for bad in [0, -1, 65536, i64::MAX] {
            let err = Port::try_from(bad).unwrap_err();
            assert!(err.contains("1 to 65535"), "{err}");
        }
    }

    /// Case 6 of issue 11: `.` and `..` were aliases (their state landed in the state dir's
    /// parent), and so were names too long for a file or a socket path.
    #[test]
    fn case6_aliases_are_plain_short_names() {
        for good in ["gpu", "a.b", "a_b", "GPU", "0day", "x-", &"a".repeat(ALIAS_MAX)] {
            assert!(good.parse::<Alias>().is_ok(), "{good}");
        }
        for bad in [".", "..", ".hidden", "_x", "-x", "a/b", "a:b", "a+b", "é"] {
            assert!(bad.parse::<Alias>().is_err(), "{bad}");
        }
        let long = "a".repeat(300);
        let err = long.parse::<Alias>().unwrap_err();
        assert!(err.contains("300 characters") && err.contains("limit is 32"), "{err}");
        assert!(err.len() < 120, "the error stays one short line: {err}");
        let err = "ééééééééééééééééééééééééééééééééé".parse::<Alias>().unwrap_err();
        assert!(err.contains("limit"), "{err}");
    }

    /// Case 5 of issue 11: `%` is only an IPv6 zone; elsewhere ssh would read it as a token,
    /// and in a ProxyJump no escaping survives the hops.
    #[test]
    fn case5_percent_only_as_an_ipv6_zone() {
        assert!("fe80::1%eth0".parse::<Hostname>().is_ok());
        for bad in ["host%h", "10.0.0.1%eth0", "fe80::1%", "fe80::1%a%b", "%h"] {
            assert!(bad.parse::<Hostname>().is_err(), "{bad}");
        }
        assert!("fe80::1%eth0".parse::<Jump>().is_err());
        assert!("fe80::1".parse::<Jump>().is_ok());
    }

    /// Case 4 of issue 11: the identity is checked for what ssh_config cannot carry, on the
    /// command line and in `hosts.toml` alike (both go through [`IdentityPath::new`]).
    #[test]
    fn case4_identity_paths() {
        for good in ["/k", "/a b/k", "/x/k%h", "/t/k$(touch pwned)", "/t/k`id`", "/t/it's"] {
            assert!(IdentityPath::new(good.into()).is_ok(), "{good}");
        }
        for bad in [
            "relative/k",
            "/k\n\tProxyCommand touch /tmp/x",
            "/k\"\n\tProxyCommand touch /tmp/x",
            "/k\r",
            "/k\t",
            "/a\"b",
            "/a\\b",
            "/a${HOME}",
            "/dir/",
            "/",
        ] {
            assert!(IdentityPath::new(bad.into()).is_err(), "{bad:?}");
        }
        let relative = parse_identity("k").unwrap();
        assert!(relative.is_absolute() && relative.ends_with("k"));
        let back: IdentityPath = String::from(relative.clone()).try_into().unwrap();
        assert_eq!(back, relative);
    }

    #[test]
    fn plain_paths_have_no_shell_syntax() {
        assert!(is_plain_path(Path::new("/tmp/jssh-setup.x1_Y/copy-id/key.pub")));
        for bad in ["/a b", "/a$b", "/a`b", "/a\"b", "/a'b", "/a\\b", "/a%b", "/a*", "~/a"] {
            assert!(!is_plain_path(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let err = "-oProxyCommand=x".parse::<Alias>().unwrap_err();
        assert!(err.contains("starts with '-'"), "{err}");
        let err = "a b".parse::<Hostname>().unwrap_err();
        assert!(err.contains("' '"), "{err}");
    }
}
