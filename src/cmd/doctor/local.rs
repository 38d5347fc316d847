//! Checks on this machine: the OpenSSH client, the `Include` line in the ssh config, keys.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::fsutil;
use crate::paths::Paths;
use crate::profile::Profile;
use crate::ssh::Ssh;
use crate::sshconfig;

use super::finding::Finding;
use super::{LOCAL_LIMIT, quote_path, setup_command};

/// OpenSSH 7.3 brought `Include` and `ProxyJump`, which jssh's config relies on.
const MIN_OPENSSH: (u32, u32) = (7, 3);

/// `ssh -V`; also says whether ssh exists at all (every other check needs it).
pub(super) fn openssh_check() -> (Finding, bool) {
    const NAME: &str = "OpenSSH client";
    let cmd = Ssh::version();
    let out = match cmd.output_within(LOCAL_LIMIT) {
        Ok(out) => out,
        Err(e) => {
            let fix = format!("install {}", crate::platform::install_hint("ssh"));
            return (Finding::fail(NAME, format!("{e:#}"), fix), false);
        }
    };
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().next().unwrap_or_default().trim();
    let check = match openssh_version(line) {
        Some(version) if version >= MIN_OPENSSH => Finding::ok(NAME, line),
        Some(_) => Finding::fail(
            NAME,
            format!("{line} is too old: jssh needs OpenSSH 7.3 or newer (Include, ProxyJump)"),
            format!("upgrade {}", crate::platform::install_hint("ssh")),
        ),
        None => Finding::warn(
            NAME,
            format!("`{cmd}` printed {line:?}, not an OpenSSH version"),
            "jssh needs OpenSSH's ssh: check which `ssh` is first on PATH",
        ),
    };
    (check, true)
}

/// `(major, minor)` from `ssh -V`'s `OpenSSH_9.2p1 Debian-2, OpenSSL …`.
fn openssh_version(line: &str) -> Option<(u32, u32)> {
    let word = line.split([' ', ',']).next()?;
    // `OpenSSH_9.2p1`, `OpenSSH_for_Windows_8.1p1`: the version follows the last `_`.
    let version = word.strip_prefix("OpenSSH_")?.rsplit('_').next()?;
    let (major, rest) = version.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((major.parse().ok()?, minor.parse().ok()?))
}

pub(super) fn local_checks(paths: &Paths, selected: &[Profile]) -> Vec<Finding> {
    if selected.is_empty() {
        return vec![Finding::warn(
            "hosts",
            "no hosts are set up yet",
            "run `jssh setup ALIAS --host HOST`",
        )];
    }
    let mut checks = vec![include_check(paths)];
    let mut seen = Vec::new();
    for profile in selected {
        if !seen.contains(&&profile.identity) {
            seen.push(&profile.identity);
            checks.extend(key_checks(paths, profile));
        }
    }
    checks
}

fn include_check(paths: &Paths) -> Finding {
    const NAME: &str = "ssh config";
    let config = paths.ssh_config.display();
    let target = paths.include_target();
    let target_text = target.to_string_lossy();
    let line = if target_text.contains(char::is_whitespace) {
        format!("Include \"{target_text}\"")
    } else {
        format!("Include {target_text}")
    };
    let text = match fsutil::read_optional(&paths.ssh_config) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(None) => {
            return Finding::fail(
                NAME,
                format!("{config} does not exist, so ssh knows none of jssh's hosts"),
                format!("create it with the line `{line}`"),
            );
        }
        Err(e) => return Finding::fail(NAME, format!("{e:#}"), format!("make {config} readable")),
    };
    match include_place(&text, &target) {
        (None, _) => Finding::fail(
            NAME,
            format!("{config} has no `{line}`, so ssh knows none of jssh's hosts"),
            format!("add `{line}` as its first line"),
        ),
        (Some(include), Some(block)) if block < include => Finding::fail(
            NAME,
            format!(
                "`{line}` is on line {include} of {config}, after the Host/Match on line {block}: it only counts \
                 where that block matches, and the lines before it win"
            ),
            format!("move it to the top of {config}"),
        ),
        (Some(include), _) => Finding::ok(
            NAME,
            format!("{config} includes {target_text} on line {include}, ahead of every Host/Match"),
        ),
    }
}

/// 1-based line numbers of the first `Include` of `target` and of the first `Host`/`Match`.
fn include_place(text: &str, target: &Path) -> (Option<usize>, Option<usize>) {
    let include = text.lines().position(|l| sshconfig::has_include(l, target));
    let block = text.lines().position(starts_block);
    (include.map(|i| i + 1), block.map(|i| i + 1))
}

/// Whether an ssh_config line opens a `Host` or `Match` block (`Host x`, `host=x`, `  MATCH …`).
fn starts_block(line: &str) -> bool {
    let word = line
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '=')
        .next()
        .unwrap_or_default();
    word.eq_ignore_ascii_case("host") || word.eq_ignore_ascii_case("match")
}

fn key_checks(paths: &Paths, profile: &Profile) -> Vec<Finding> {
    let key = &profile.identity;
    let meta = match fs::metadata(key) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return vec![Finding::fail(
                "key",
                format!("{} does not exist", key.display()),
                format!("run `{}` to make and install a new one", setup_command(paths, profile)),
            )];
        }
        Err(e) => {
            return vec![Finding::fail(
                "key",
                format!("cannot read {}: {e}", key.display()),
                "fix its owner and mode",
            )];
        }
    };
    let mut checks = vec![key_mode_check(key, meta.permissions().mode() & 0o7777)];
    if let Some(dir) = key.parent()
        && let Ok(meta) = fs::metadata(dir)
    {
        checks.push(key_dir_check(dir, meta.permissions().mode() & 0o7777));
    }
    checks
}

fn key_mode_check(key: &Path, mode: u32) -> Finding {
    if mode & 0o077 != 0 {
        Finding::fail(
            "key",
            format!(
                "{} is {mode:04o}, and ssh ignores a private key others can read",
                key.display()
            ),
            format!("run chmod 600 {}", quote_path(key)),
        )
    } else {
        Finding::ok("key", format!("{} is {mode:04o}", key.display()))
    }
}

fn key_dir_check(dir: &Path, mode: u32) -> Finding {
    let fix = format!("run chmod 700 {}", quote_path(dir));
    if mode & 0o022 != 0 {
        Finding::fail(
            "key directory",
            format!(
                "{} is {mode:04o}: others can replace your key and config",
                dir.display()
            ),
            fix,
        )
    } else if mode & 0o077 != 0 {
        Finding::warn(
            "key directory",
            format!("{} is {mode:04o}, not 0700", dir.display()),
            fix,
        )
    } else {
        Finding::ok("key directory", format!("{} is {mode:04o}", dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::doctor::finding::Status;

    #[test]
    fn reads_openssh_versions() {
        assert_eq!(
            openssh_version("OpenSSH_9.2p1 Debian-2+deb12u10, OpenSSL 3.0.19 27 Jan 2026"),
            Some((9, 2))
        );
        assert_eq!(openssh_version("OpenSSH_7.3p1, LibreSSL 2.4.1"), Some((7, 3)));
        assert_eq!(
            openssh_version("OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2"),
            Some((8, 1))
        );
        assert_eq!(openssh_version("Dropbear v2022.83"), None);
        assert!(openssh_version("OpenSSH_6.6.1p1, OpenSSL").unwrap() < MIN_OPENSSH);
    }

    #[test]
    fn finds_the_include_and_the_first_block() {
        let target = Path::new("config.d/jssh");
        assert_eq!(
            include_place("Include config.d/jssh\nHost a\n", target),
            (Some(1), Some(2))
        );
        assert_eq!(
            include_place("# c\r\nhost=a\r\n  User b\r\ninclude config.d/jssh\r\n", target),
            (Some(4), Some(2))
        );
        assert_eq!(include_place("  MATCH all\n", target), (None, Some(1)));
        assert_eq!(include_place("Hostname x\n# Host y\n", target), (None, None));
    }

    #[test]
    fn modes_of_key_and_dir() {
        let key = Path::new("/x/my key");
        assert_eq!(key_mode_check(key, 0o600).status, Status::Ok);
        assert_eq!(key_mode_check(key, 0o400).status, Status::Ok);
        let loose = key_mode_check(key, 0o644);
        assert_eq!(
            loose.line(),
            "✗ key: /x/my key is 0644, and ssh ignores a private key others can read: run chmod 600 '/x/my key'"
        );
        assert_eq!(key_dir_check(Path::new("/x"), 0o700).status, Status::Ok);
        assert_eq!(key_dir_check(Path::new("/x"), 0o755).status, Status::Warn);
        assert_eq!(key_dir_check(Path::new("/x"), 0o775).status, Status::Fail);
    }
}
