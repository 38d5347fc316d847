//! How ssh sees an alias: `ssh -G` against the profile, keepalives, agent forwarding, the
//! host key and a BatchMode login; and the one-line summary of an ssh stderr for a finding.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::paths::Paths;
use crate::profile::{LoginKind, Profile};
use crate::sanitize::ssh_stderr;
use crate::ssh::{LoginFailure, accepted_key, key_load_error, parse_resolved, partial_success};
use crate::target::Alias;

use super::finding::Finding;
use super::{Resolved, quote_path, setup_command};

/// `ssh -G` against the profile: the same host, port, user and key (and jump), or a config
/// that shadows jssh's block.
pub(super) fn resolve_check(paths: &Paths, profile: &Profile, resolved: &str) -> Finding {
    let settings = parse_resolved(resolved);
    let get = |key: &str| settings.get(key).map_or("", String::as_str);
    let mut wrong = Vec::new();
    if !get("hostname").eq_ignore_ascii_case(profile.host.as_str()) {
        wrong.push(format!("hostname {} (profile: {})", get("hostname"), profile.host));
    }
    if get("port") != profile.port.to_string() {
        wrong.push(format!("port {} (profile: {})", get("port"), profile.port));
    }
    if get("user") != profile.user.as_str() {
        wrong.push(format!("user {} (profile: {})", get("user"), profile.user));
    }
    let keys: Vec<&str> = resolved
        .lines()
        .filter_map(|l| l.strip_prefix("identityfile "))
        .collect();
    if !keys.iter().any(|k| Path::new(k) == profile.identity) {
        wrong.push(format!(
            "identityfile {} (profile: {})",
            keys.join(", "),
            profile.identity.display()
        ));
    }
    if let Some(jump) = &profile.jump
        && get("proxyjump") != jump.as_str()
    {
        wrong.push(format!("proxyjump {} (profile: {jump})", get("proxyjump")));
    }
    if wrong.is_empty() {
        let via = profile.jump.as_ref().map(|j| format!(" via {j}")).unwrap_or_default();
        return Finding::ok(
            "ssh -G",
            format!(
                "{}@{}:{}{via}, key {}",
                profile.user,
                profile.host,
                profile.port,
                profile.identity.display()
            ),
        );
    }
    Finding::fail(
        "ssh -G",
        format!("{} resolves to {}", profile.alias, wrong.join(", ")),
        format!(
            "a Host/Match block ahead of jssh's Include sets these first: keep the Include at the top of {} and drop \
             the conflicting lines, or rerun `{}`",
            paths.ssh_config.display(),
            setup_command(paths, profile)
        ),
    )
}

pub(super) fn keepalive_checks(settings: &Resolved) -> Vec<Finding> {
    let number = |key: &str, default: u64| settings.get(key).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (interval, count) = (number("serveraliveinterval", 0), number("serveralivecountmax", 3));
    if interval > 0 {
        return vec![Finding::ok(
            "keepalive",
            format!(
                "ServerAliveInterval {interval} s × ServerAliveCountMax {count}: a dead connection is noticed within \
                 ~{} s",
                interval * count
            ),
        )];
    }
    vec![
        Finding::fail(
            "keepalive",
            "ServerAliveInterval is 0 (off): a dropped connection hangs instead of failing",
            "jssh's block sets 15: remove the `ServerAliveInterval` line ahead of the Include in your ssh config that \
             turns it off",
        ),
        Finding::warn(
            "server keepalive",
            "without client keepalives only the server's ClientAliveInterval notices a dead connection, and only its \
             admin can see or set it (`sshd -T` as root)",
            "turn client keepalives back on (above), or ask the admin for `ClientAliveInterval 60`",
        ),
    ]
}

pub(super) fn agent_check(alias: &Alias, settings: &Resolved) -> Finding {
    match settings.get("forwardagent").map(String::as_str) {
        None | Some("no") => Finding::ok("agent forwarding", "off"),
        Some(value) => Finding::warn(
            "agent forwarding",
            format!(
                "ForwardAgent {value} applies to {alias}: root there (or on a jump host) can use your keys while you \
                 are connected"
            ),
            format!("set `ForwardAgent no` for {alias} in your ssh config; ProxyJump needs no agent forwarding"),
        ),
    }
}

pub(super) const LOGIN: &str = "ssh login (BatchMode)";

/// The known_hosts name of the host (`[host]:port` unless port 22) and the first known_hosts file.
fn known_host(settings: &Resolved) -> (String, String) {
    let host = settings.get("hostname").map_or("HOST", String::as_str);
    let name = match settings.get("port").map(String::as_str) {
        None | Some("22") => host.to_owned(),
        Some(port) => format!("[{host}]:{port}"),
    };
    let file = settings
        .get("userknownhostsfile")
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("~/.ssh/known_hosts");
    (name, file.to_owned())
}

pub(super) fn host_key_check(
    profile: &Profile,
    settings: &Resolved,
    verbose_stderr: &str,
    failure: Option<LoginFailure>,
) -> Finding {
    const NAME: &str = "host key";
    let alias = &profile.alias;
    let (host, file) = known_host(settings);
    let (host_q, file_q) = (shell_words::quote(&host), shell_words::quote(&file));
    match failure {
        Some(LoginFailure::HostKeyChanged) => {
            return Finding::fail(
                NAME,
                format!("the host key of {host} has CHANGED since it was stored in {file}"),
                format!(
                    "if {alias} was reinstalled, run `ssh-keygen -R {host_q} -f {file_q}`, then `ssh {alias}` once and \
                     check the fingerprint; otherwise do not connect"
                ),
            );
        }
        Some(LoginFailure::HostKeyUnknown) => {
            return Finding::fail(
                NAME,
                format!("{host} is not in {file}"),
                format!("connect once with `ssh {alias}` in a terminal and check the fingerprint"),
            );
        }
        _ => {}
    }
    // Through jump hosts, ssh -v reports every hop's host key: this one names the target's.
    let quoted_host = format!("'{host}'");
    if let Some(line) = verbose_stderr
        .lines()
        .find(|l| l.contains("is known and matches the") && l.contains(&quoted_host))
    {
        let text = line.trim().trim_start_matches("debug1: ").trim_end_matches('.');
        Finding::ok(NAME, format!("{text} in {file}"))
    } else if verbose_stderr.contains("Permanently added") {
        Finding::warn(
            NAME,
            format!("{host} was not known; ssh added it to {file} without asking (StrictHostKeyChecking)"),
            format!("check its fingerprint: `ssh-keygen -lF {host_q} -f {file_q}`"),
        )
    } else {
        Finding::warn(NAME, "not checked: ssh did not get that far", "fix the login (below)")
    }
}

pub(super) fn login_check(
    paths: &Paths,
    profile: &Profile,
    out: &Output,
    elapsed: Duration,
    failure: Option<LoginFailure>,
) -> Finding {
    let (alias, key) = (&profile.alias, profile.identity.display());
    let stderr = String::from_utf8_lossy(&out.stderr);
    if partial_success(&stderr, &profile.identity) {
        return match profile.login {
            LoginKind::Prompt => Finding::ok(
                LOGIN,
                format!("the server accepts {key}, then asks for a second factor: `jssh up {alias}` asks once"),
            ),
            LoginKind::Key => Finding::warn(
                LOGIN,
                format!("the server accepts {key}, then asks for a second factor, which jssh does not expect here"),
                format!(
                    "rerun `{}` in a terminal: jssh then asks once per login and never logs in on its own",
                    setup_command(paths, profile)
                ),
            ),
        };
    }
    if let Some(reason) = key_load_error(&stderr, &profile.identity) {
        let quoted = quote_path(&profile.identity);
        let fix = if reason.contains("bad permissions") {
            format!("run chmod 600 {quoted}")
        } else {
            format!("if it has a passphrase, load it into your agent: `ssh-add {quoted}`")
        };
        return Finding::fail(LOGIN, format!("ssh cannot use {key}: {reason}"), fix);
    }
    // The server accepted the key, yet the login did not use it: ssh could not decrypt it
    // without a prompt (it moves on to the next identity without a word in BatchMode).
    let offered = format!("Server accepts key: {} ", profile.identity.display());
    let accepted = stderr.lines().any(|l| l.contains(&offered));
    let agent = format!(
        "load it into your agent first: `ssh-add {}`",
        quote_path(&profile.identity)
    );
    let Some(failure) = failure else {
        if accepted_key(&stderr, &profile.identity) {
            return Finding::ok(LOGIN, format!("{:.2} s with {key}", elapsed.as_secs_f64()));
        }
        if accepted {
            return Finding::fail(
                LOGIN,
                format!(
                    "the server accepts {key}, but ssh could not use it without asking (a passphrase?) and got in \
                     with another key"
                ),
                agent,
            );
        }
        return Finding::fail(
            LOGIN,
            format!("logged in with another key: the server does not accept {key}"),
            format!("install it: `{}`", setup_command(paths, profile)),
        );
    };
    if failure == LoginFailure::AuthRefused && accepted {
        return Finding::fail(
            LOGIN,
            format!("the server accepts {key}, but ssh could not use it without asking (a passphrase?)"),
            agent,
        );
    }
    let why = ssh_error(&out.stderr);
    match failure {
        LoginFailure::Unreachable if profile.jump.is_some() => Finding::fail(
            LOGIN,
            format!("cannot reach {}:{}: {why}", profile.host, profile.port),
            "the way there goes through --jump: the jump host lines below say which step fails",
        ),
        LoginFailure::Unreachable => Finding::fail(
            LOGIN,
            format!("cannot reach {}:{}: {why}", profile.host, profile.port),
            "check the host and port, that sshd runs there, and your network (VPN, firewall, --jump)",
        ),
        LoginFailure::HostKeyChanged | LoginFailure::HostKeyUnknown => {
            Finding::fail(LOGIN, "ssh stopped at the host key check", "fix the host key (above)")
        }
        LoginFailure::AuthRefused => Finding::fail(
            LOGIN,
            format!("the server refused {key}: {why}"),
            format!("install the key with `{}`", setup_command(paths, profile)),
        ),
        LoginFailure::RemoteShell => Finding::fail(
            LOGIN,
            format!(
                "logged in, but the remote shell failed to run `true` ({}): {why}",
                out.status
            ),
            format!("fix your shell startup files on {alias}: they must not fail or print when not interactive"),
        ),
        LoginFailure::Other => Finding::fail(LOGIN, why, format!("run `ssh -v {alias} true` to see why")),
    }
}

/// An ssh stderr on one line for a finding: its last two lines that say something.
pub(super) fn ssh_error(stderr: &[u8]) -> String {
    let lines = ssh_stderr(stderr);
    if lines.is_empty() {
        return "no error message".to_owned();
    }
    lines[lines.len().saturating_sub(2)..].join(" / ")
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::doctor::finding::Status;
    use crate::cmd::doctor::test_fixtures::{alias, profile};

    #[test]
    fn resolve_compares_every_field() {
        let paths = Paths::resolve(Some("/h/.ssh/config".into())).unwrap();
        let good = "host gpu\nhostname 10.0.0.5\nuser alice\nport 2222\n\
                    identityfile /other\nidentityfile /h/.ssh/jssh_ed25519\n";
        assert_eq!(resolve_check(&paths, &profile(), good).status, Status::Ok);
        let shadowed = "hostname gpu\nuser alice\nport 22\nidentityfile ~/.ssh/id_rsa\n";
        let check = resolve_check(&paths, &profile(), shadowed);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.detail.contains("hostname gpu (profile: 10.0.0.5)")
                && check.detail.contains("port 22 (profile: 2222)"),
            "{}",
            check.detail
        );
        assert!(
            check
                .fix
                .unwrap()
                .contains("rerun `jssh setup gpu --host 10.0.0.5 --user alice --port 2222`")
        );
    }

    #[test]
    fn keepalive_and_agent_forwarding() {
        let settings = parse_resolved("serveraliveinterval 15\nserveralivecountmax 3\nforwardagent yes\n");
        let checks = keepalive_checks(&settings);
        assert_eq!(checks.len(), 1);
        assert!(
            checks[0].status == Status::Ok && checks[0].detail.contains("~45 s"),
            "{:?}",
            checks[0]
        );
        assert_eq!(agent_check(&alias(), &settings).status, Status::Warn);
        let off = parse_resolved("serveraliveinterval 0\nforwardagent no\n");
        let checks = keepalive_checks(&off);
        assert_eq!(
            checks.iter().map(|c| c.status).collect::<Vec<_>>(),
            [Status::Fail, Status::Warn]
        );
        assert!(checks[1].detail.contains("ClientAliveInterval"));
        assert_eq!(agent_check(&alias(), &off).status, Status::Ok);
    }

    #[test]
    fn host_key_outcomes() {
        let settings = parse_resolved("hostname 10.0.0.5\nport 2222\nuserknownhostsfile /k/known_hosts /k/2\n");
        let ok = host_key_check(
            &profile(),
            &settings,
            "debug1: Host '[10.0.0.5]:2222' is known and matches the ED25519 host key.\n",
            None,
        );
        assert_eq!(
            ok.line(),
            "✓ host key: Host '[10.0.0.5]:2222' is known and matches the ED25519 host key in /k/known_hosts"
        );
        let changed = host_key_check(&profile(), &settings, "", Some(LoginFailure::HostKeyChanged));
        assert!(
            changed
                .fix
                .unwrap()
                .contains("ssh-keygen -R '[10.0.0.5]:2222' -f /k/known_hosts")
        );
        let unknown = host_key_check(&profile(), &settings, "", Some(LoginFailure::HostKeyUnknown));
        assert_eq!(unknown.status, Status::Fail);
        let added = host_key_check(
            &profile(),
            &settings,
            "Warning: Permanently added '[10.0.0.5]:2222'",
            None,
        );
        assert_eq!(added.status, Status::Warn);
    }

    /// A finished command's output, as `login_check` gets it.
    fn output(code: i32, stderr: &str) -> Output {
        use std::os::unix::process::ExitStatusExt;
        use std::process::ExitStatus;
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn login_outcomes_name_the_key_and_the_fix() {
        let paths = Paths::resolve(Some("/h/.ssh/config".into())).unwrap();
        let check = |code: i32, stderr: &str| {
            let out = output(code, stderr);
            let failure = (code != 0).then(|| LoginFailure::classify(Some(code), stderr));
            login_check(&paths, &profile(), &out, Duration::from_millis(214), failure)
        };
        let mine = "debug1: Server accepts key: /h/.ssh/jssh_ed25519 ED25519 SHA256:x explicit\n";
        let other = "debug1: Server accepts key: /h/.ssh/id_ed25519 ED25519 SHA256:y\n";
        assert_eq!(
            check(0, mine).line(),
            "✓ ssh login (BatchMode): 0.21 s with /h/.ssh/jssh_ed25519"
        );
        // A key with a passphrase is skipped in BatchMode without a word, after the server accepted it.
        let locked = check(0, &format!("{mine}{other}"));
        assert!(
            locked.status == Status::Fail
                && locked.fix.as_deref() == Some("load it into your agent first: `ssh-add /h/.ssh/jssh_ed25519`"),
            "{locked:?}"
        );
        let refused = check(255, &format!("{mine}root@h: Permission denied (publickey).\n"));
        assert!(refused.fix.unwrap().contains("ssh-add"));
        let not_installed = check(0, other);
        assert!(not_installed.fix.unwrap().contains("jssh setup gpu"));
        let loose = check(
            0,
            &format!("{mine}Load key \"/h/.ssh/jssh_ed25519\": bad permissions\n{other}"),
        );
        assert_eq!(loose.fix.as_deref(), Some("run chmod 600 /h/.ssh/jssh_ed25519"));
        let unreachable = check(255, "ssh: connect to host 10.0.0.5 port 2222: Connection refused\n");
        assert!(
            unreachable
                .detail
                .starts_with("cannot reach 10.0.0.5:2222: ssh: connect"),
            "{unreachable:?}"
        );
    }

    #[test]
    fn ssh_errors_drop_the_chatter() {
        let err = b"debug1: x\nAuthenticated to h\nroot@h: Permission denied (publickey).\nTransferred: sent 1\n";
        assert_eq!(ssh_error(err), "root@h: Permission denied (publickey).");
        assert_eq!(ssh_error(b"debug1: only\n"), "no error message");
    }
}
