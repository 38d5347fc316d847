//! A failed login through a ProxyJump chain is one ssh error for the whole path: walk the
//! chain one hop at a time (each through the ones before it) to name the hop that fails.

use std::time::{Duration, Instant};

use crate::profile::Profile;
use crate::ssh::{LoginFailure, Ssh, hop_destination};

use super::finding::Finding;
use super::login::ssh_error;

const HOP: &str = "jump host";

/// One finding per hop up to the first that fails; when every hop logs in, a last one saying
/// that the failure is the final step, from the last hop to the target.
pub(super) fn hop_checks(ssh: &Ssh, profile: &Profile, limit: Duration) -> Vec<Finding> {
    let Some(jump) = &profile.jump else {
        return Vec::new();
    };
    let hops: Vec<&str> = jump.as_str().split(',').collect();
    let mut findings = Vec::new();
    for (i, hop) in hops.iter().enumerate() {
        let via = &hops[..i];
        let from = via
            .last()
            .map_or_else(|| "directly".to_owned(), |prev| format!("from {prev}"));
        let name = format!("{} of {}, {hop}", i + 1, hops.len());
        let start = Instant::now();
        let out = match ssh.hop_check(via, hop).output_within(limit) {
            Ok(out) => out,
            Err(e) => {
                findings.push(Finding::fail(
                    HOP,
                    format!("{name}: {e:#}"),
                    format!("run `{}` to see why", manual(via, hop)),
                ));
                return findings;
            }
        };
        if out.status.success() {
            findings.push(Finding::ok(
                HOP,
                format!("{name}: logs in {from} ({:.2} s)", start.elapsed().as_secs_f64()),
            ));
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failure = LoginFailure::classify(out.status.code(), &stderr);
        findings.push(hop_failure(&name, &from, via, hop, failure, &ssh_error(&out.stderr)));
        return findings;
    }
    let last = hops.last().expect("a jump has at least one hop");
    findings.push(Finding::warn(
        HOP,
        format!(
            "every hop logs in: the failing step is the last one, from {last} to {}:{}",
            profile.host, profile.port
        ),
        format!(
            "see the login finding above; `{}` shows it",
            manual(&hops, profile.host.as_str())
        ),
    ));
    findings
}

/// What failed at one hop, and what to do about it.
fn hop_failure(name: &str, from: &str, via: &[&str], hop: &str, failure: LoginFailure, why: &str) -> Finding {
    let try_it = manual(via, hop);
    let (detail, fix) = match failure {
        LoginFailure::Unreachable => (
            format!("{name}: cannot reach it {from}: {why}"),
            format!(
                "check that sshd runs on {hop} and the host and port in --jump (or in its Host block); then `{try_it}`"
            ),
        ),
        LoginFailure::HostKeyUnknown => (
            format!("{name}: its host key is not known yet"),
            format!(
                "connect once with `{}` in a terminal and check the fingerprint",
                interactive(via, hop)
            ),
        ),
        LoginFailure::HostKeyChanged => (
            format!("{name}: its host key has CHANGED"),
            format!(
                "if {hop} was reinstalled, remove its old key with `ssh-keygen -R HOST`, then connect once with `{}`; \
                 otherwise do not connect",
                interactive(via, hop)
            ),
        ),
        LoginFailure::AuthRefused => (
            format!("{name}: refused your keys: {why}"),
            format!(
                "a jump host needs a key of yours too: install one with `ssh-copy-id{} {hop}`, or load it into your \
                 agent",
                if via.is_empty() {
                    String::new()
                } else {
                    format!(" -o ProxyJump={}", via.join(","))
                }
            ),
        ),
        LoginFailure::RemoteShell | LoginFailure::Other => (
            format!("{name}: {why}"),
            format!("run `{}` to see why", manual(via, hop)),
        ),
    };
    Finding::fail(HOP, detail, fix)
}

/// The ssh command line a user can run to retry one hop (BatchMode, as doctor ran it).
fn manual(via: &[&str], hop: &str) -> String {
    format!("ssh -o BatchMode=yes{} {} true", jump_flag(via), hop_destination(hop))
}

/// The same, for a terminal (to check a fingerprint).
fn interactive(via: &[&str], hop: &str) -> String {
    format!("ssh{} {}", jump_flag(via), hop_destination(hop))
}

fn jump_flag(via: &[&str]) -> String {
    if via.is_empty() {
        String::new()
    } else {
        format!(" -J {}", via.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::doctor::finding::Status;

    #[test]
    fn each_failure_names_the_hop_and_its_fix() {
        let refused = hop_failure(
            "2 of 2, login",
            "from bastion",
            &["bastion"],
            "login",
            LoginFailure::Unreachable,
            "Connection refused",
        );
        assert_eq!(refused.status, Status::Fail);
        assert_eq!(
            refused.detail,
            "2 of 2, login: cannot reach it from bastion: Connection refused"
        );
        assert!(
            refused
                .fix
                .unwrap()
                .ends_with("`ssh -o BatchMode=yes -J bastion login true`")
        );
        let unknown = hop_failure("1 of 1, b", "directly", &[], "b", LoginFailure::HostKeyUnknown, "");
        assert!(unknown.fix.unwrap().contains("`ssh b` in a terminal"));
        let auth = hop_failure("2 of 3, l", "from b", &["b"], "l", LoginFailure::AuthRefused, "denied");
        assert!(auth.fix.unwrap().contains("ssh-copy-id -o ProxyJump=b l"));
    }
}
