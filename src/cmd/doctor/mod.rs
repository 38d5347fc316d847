//! `jssh doctor`: one line per check (✓ ok, ✗ fails, ! worth knowing), each ✗ with its fix.
//!
//! Local checks first (OpenSSH, the `Include` line, keys), then every alias at once. Per
//! alias: how `ssh -G` resolves it; a BatchMode login on its own connection (host key, key,
//! handshake time) while a first command runs through the alias's ControlMaster; then, in
//! parallel through that master: the master itself, a real TCP and a real Unix-socket
//! forward, and Jupyter in the profile's environment. The first command also reports tmux and
//! jssh's Jupyter config, so a healthy host costs two handshakes and a few mux sessions. A
//! `--slurm` profile adds the Slurm checks (`slurm.rs`) beside them, over the same master.

mod facts;
mod finding;
mod forward;
mod hops;
mod local;
mod login;
mod remote_jupyter;
mod slurm;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Ctx;
use crate::cli::DoctorArgs;
use crate::paths::Paths;
use crate::profile::{LoginKind, Profile};
use crate::remote;
use crate::ssh::{LoginFailure, Ssh, parse_resolved};
use crate::target::Alias;

use facts::{FACTS, Facts, tmux_check};
use finding::{Finding, Status, print_report};
use forward::{MASTER, MASTER_FIX, master_check, tcp_forward_check, unix_forward_check};
use hops::hop_checks;
use local::{local_checks, openssh_check};
use login::{LOGIN, agent_check, host_key_check, keepalive_checks, login_check, resolve_check, ssh_error};
use remote_jupyter::{config_check, jupyter_check};
use slurm::slurm_checks;
/// Doctor's cap on `--connect-timeout`: a dead host should be reported, not waited for.
const QUICK_CONNECT_SECS: u32 = 5;
/// How long a local ssh call (`-G`, `-O`) may take.
pub(super) const LOCAL_LIMIT: Duration = Duration::from_secs(5);
/// `ssh -G`'s answer: lowercase keyword → first value.
pub(super) type Resolved = BTreeMap<String, String>;

pub(crate) fn run(ctx: &Ctx, args: &DoctorArgs) -> Result<ExitCode> {
    let profiles = ctx.profiles()?;
    let selected: Vec<Profile> = match &args.alias {
        Some(alias) => vec![profiles.lookup(alias)?.clone()],
        None => profiles.iter().cloned().collect(),
    };
    let timeout = ctx.ssh.connect_timeout().min(QUICK_CONNECT_SECS);
    let ssh = Ssh::new(ctx.paths.ssh_config_flag(), timeout);
    // A remote probe gets the connect timeout plus time for the login shell and Python.
    let limit = Duration::from_secs(u64::from(timeout) + 10);

    let (openssh, have_ssh) = openssh_check();
    let mut checks = vec![openssh];
    checks.extend(local_checks(&ctx.paths, &selected));
    // Every alias at once: one slow or dead host must not make the others wait.
    let groups: Vec<Vec<Finding>> = thread::scope(|scope| {
        let handles: Vec<_> = selected
            .iter()
            .map(|profile| {
                let ssh = &ssh;
                scope.spawn(move || {
                    if have_ssh {
                        alias_checks(&ctx.paths, ssh, profile, limit)
                    } else {
                        vec![Finding::warn(
                            "remote checks",
                            "skipped: ssh is missing",
                            "install it (above)",
                        )]
                    }
                })
            })
            .collect();
        handles.into_iter().map(join).collect()
    });
    for (profile, group) in selected.iter().zip(groups) {
        checks.extend(group.into_iter().map(|c| Finding {
            alias: Some(profile.alias.clone()),
            ..c
        }));
    }
    print_report(&checks, &selected, args.json)?;
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub(super) fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The `jssh setup` command line that (re)creates `profile`, for fixes.
pub(super) fn setup_command(paths: &Paths, profile: &Profile) -> String {
    let mut words = vec![
        "jssh".to_owned(),
        "setup".to_owned(),
        profile.alias.to_string(),
        "--host".to_owned(),
        profile.host.to_string(),
        "--user".to_owned(),
        profile.user.to_string(),
        "--port".to_owned(),
        profile.port.to_string(),
    ];
    if let Some(jump) = &profile.jump {
        words.extend(["--jump".to_owned(), jump.to_string()]);
    }
    if profile.identity != paths.default_key() {
        words.extend(["--identity".to_owned(), profile.identity.display().to_string()]);
    }
    shell_words::join(words)
}

pub(super) fn quote_path(path: &Path) -> String {
    shell_words::quote(&path.to_string_lossy()).into_owned()
}

// ---- per-alias checks ----

fn alias_checks(paths: &Paths, ssh: &Ssh, profile: &Profile, limit: Duration) -> Vec<Finding> {
    let alias = &profile.alias;
    let resolved = match resolve(ssh, alias) {
        Ok(resolved) => resolved,
        Err(finding) => return vec![finding],
    };
    let settings = parse_resolved(&resolved);
    let mut checks = vec![resolve_check(paths, profile, &resolved)];
    checks.extend(keepalive_checks(&settings));
    checks.push(agent_check(alias, &settings));

    // The login gets its own connection (it times the handshake and reads the host key check),
    // while the first command through the master starts that master.
    let marker = match remote::Marker::new() {
        Ok(marker) => marker,
        Err(e) => return vec![Finding::fail("remote command", format!("{e:#}"), "check /dev/urandom")],
    };
    let (login, facts) = thread::scope(|scope| {
        let login = scope.spawn(|| {
            let start = Instant::now();
            ssh.login_check(alias, true)
                .output_within(limit)
                .map(|out| (out, start.elapsed()))
        });
        // Where logins need a human, a command of its own would be a failed login on the
        // server: doctor asks nothing that needs one.
        let facts = (profile.login == LoginKind::Key).then(|| {
            ssh.exec(alias, &remote::marked(&marker, FACTS, &[]), true)
                .output_within(limit)
        });
        (join(login), facts)
    });
    let logged_in = login_findings(paths, profile, &settings, login, &mut checks);
    let Some(facts) = facts else {
        checks.push(Finding::warn(
            "remote checks",
            format!("skipped: logins to {alias} need you (a code or a push after the key), and doctor does not ask"),
            format!("`jssh up {alias}` asks once and checks Jupyter over that login"),
        ));
        return checks;
    };
    if !logged_in {
        checks.extend(hop_checks(ssh, profile, limit));
    }
    let facts = match facts {
        // Only the script's own lines, not what the login shell printed before them.
        Ok(out) if out.status.success() => {
            Facts::parse(marker.reply(&String::from_utf8_lossy(&out.stdout)).unwrap_or_default())
        }
        Ok(_) | Err(_) if !logged_in => {
            checks.push(Finding::warn(
                "remote checks",
                format!("skipped: no login to {alias}"),
                "fix the login (above)",
            ));
            return checks;
        }
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("unix_listener") => {
            checks.push(Finding::fail(
                MASTER,
                format!("ssh cannot make the master's socket: {}", ssh_error(&out.stderr)),
                MASTER_FIX,
            ));
            checks.push(Finding::warn(
                "remote checks",
                "skipped: no command ran through ssh",
                "fix the ControlMaster (above)",
            ));
            return checks;
        }
        Ok(out) => {
            checks.push(Finding::fail(
                "remote command",
                format!(
                    "a command through ssh failed ({}): {}",
                    out.status,
                    ssh_error(&out.stderr)
                ),
                format!("run `ssh {alias} true` to see why"),
            ));
            return checks;
        }
        Err(e) => {
            checks.push(Finding::fail(
                "remote command",
                format!("{e:#}"),
                format!("run `ssh {alias} true` to see why"),
            ));
            return checks;
        }
    };

    let (master, tcp, unix, jupyter, slurm) = thread::scope(|scope| {
        let master = scope.spawn(|| master_check(ssh, alias, &settings));
        let tcp = scope.spawn(|| tcp_forward_check(ssh, alias, facts.server, limit));
        let unix = scope.spawn(|| unix_forward_check(ssh, alias, limit));
        let slurm = (profile.slurm.as_ref())
            .map(|options| scope.spawn(move || slurm_checks(paths, ssh, profile, options, limit)));
        // A Slurm job runs Jupyter on a compute node, without tmux: the login host needs
        // neither (the job's own start is checked by `jssh up`, which shows its log).
        let jupyter = profile.slurm.is_none().then(|| jupyter_check(ssh, profile, limit));
        (join(master), join(tcp), join(unix), jupyter, slurm.map(join))
    });
    checks.extend([master, tcp, unix]);
    if let Some(jupyter) = jupyter {
        checks.extend([tmux_check(alias, &facts.tmux), jupyter]);
    }
    checks.push(config_check(alias, facts.config.as_ref()));
    checks.extend(slurm.into_iter().flatten());
    checks
}

/// `ssh -G ALIAS`, or the finding that says why ssh would not resolve it.
fn resolve(ssh: &Ssh, alias: &Alias) -> Result<String, Finding> {
    match ssh.resolve(alias).output_within(LOCAL_LIMIT) {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(Finding::fail(
            "ssh -G",
            format!("ssh rejects the config: {}", ssh_error(&out.stderr)),
            format!("fix the line it names (`ssh -G {alias}` shows the error)"),
        )),
        Err(e) => Err(Finding::fail("ssh -G", format!("{e:#}"), "check your OpenSSH install")),
    }
}

/// The host key and login findings of the BatchMode login; whether it got in.
fn login_findings(
    paths: &Paths,
    profile: &Profile,
    settings: &Resolved,
    login: Result<(Output, Duration)>,
    checks: &mut Vec<Finding>,
) -> bool {
    match login {
        Ok((out, elapsed)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let failure = (!out.status.success()).then(|| LoginFailure::classify(out.status.code(), &stderr));
            checks.push(host_key_check(profile, settings, &stderr, failure));
            let login = login_check(paths, profile, &out, elapsed, failure);
            let ok = login.status == Status::Ok;
            checks.push(login);
            ok
        }
        Err(e) => {
            checks.push(Finding::fail(
                LOGIN,
                format!("{e:#}"),
                format!("run `ssh -v {} true` to see why", profile.alias),
            ));
            false
        }
    }
}

#[cfg(test)]
mod test_fixtures {
    use crate::jupyter::JupyterInfo;
    use crate::profile::Profile;
    use crate::target::Alias;

    pub(super) fn alias() -> Alias {
        "gpu".parse().unwrap()
    }

    pub(super) fn profile() -> Profile {
        Profile {
            alias: alias(),
            host: "10.0.0.5".parse().unwrap(),
            user: "alice".parse().unwrap(),
            port: "2222".parse().unwrap(),
            jump: None,
            identity: crate::target::IdentityPath::new("/h/.ssh/jssh_ed25519".into()).unwrap(),
            env: vec!["venv:~/v".parse().unwrap()],
            jupyter: JupyterInfo::default(),
            login: crate::profile::LoginKind::Key,
            slurm: None,
            slurm_reach: None,
        }
    }
}
