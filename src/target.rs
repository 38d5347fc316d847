//! Validated names: everything that ends up in an ssh argv, an ssh_config line, a tmux session
//! name or a file name passes through here first, so none of it can become an ssh option
//! (`-oProxyCommand=…`), a new config line, or a shell word.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
    /// A host alias: also a tmux session name and a file name, so the strictest set.
    Alias,
    |s| check("alias", s, |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
);

name_type!(
    /// A DNS name or an IP literal (IPv6 without brackets, optionally with a `%zone`).
    Hostname,
    |s| check("host", s, |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '%'))
);

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
    }
    Ok(())
}

/// A TCP port, 1–65535, with an error that says so.
pub(crate) fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(u16::try_from(n).expect("range checked")),
        _ => Err(format!("invalid port {s:?}: use a number from 1 to 65535")),
    }
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
        for bad in ["0", "65536", "-1", "x", ""] {
            assert!(parse_port(bad).is_err(), "{bad}");
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
