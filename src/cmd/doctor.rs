//! `jssh doctor`: one line per check (✓ ok, ✗ fails, ! worth knowing), each ✗ with its fix.
//!
//! Local checks first (OpenSSH, the `Include` line, keys), then every alias at once. Per
//! alias: how `ssh -G` resolves it; a BatchMode login on its own connection (host key, key,
//! handshake time) while a first command runs through the alias's ControlMaster; then, in
//! parallel through that master: the master itself, a real TCP and a real Unix-socket
//! forward, and Jupyter in the profile's environment. The first command also reports tmux and
//! jssh's Jupyter config, so a healthy host costs two handshakes and a few mux sessions.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{ExitCode, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use super::{Ctx, lookup_profile};
use crate::cli::DoctorArgs;
use crate::envspec::{EnvSpec, activation};
use crate::fsutil::{self, ScratchDir};
use crate::jupyter::JupyterInfo;
use crate::paths::Paths;
use crate::process;
use crate::profile::{Profile, Profiles};
use crate::remote;
use crate::sanitize::for_terminal;
use crate::ssh::{LoginFailure, Ssh, accepted_key, key_load_error, parse_resolved};
use crate::sshconfig;
use crate::target::Alias;

/// Doctor's cap on `--connect-timeout`: a dead host should be reported, not waited for.
const QUICK_CONNECT_SECS: u32 = 5;
/// How long a local ssh call (`-G`, `-O`) may take.
const LOCAL_LIMIT: Duration = Duration::from_secs(5);
/// OpenSSH 7.3 brought `Include` and `ProxyJump`, which jssh's config relies on.
const MIN_OPENSSH: (u32, u32) = (7, 3);
/// `ssh -G`'s answer: lowercase keyword → first value.
type Settings = BTreeMap<String, String>;

/// What the remote Unix-socket listener says to a connection that reached it.
const GREETING: &str = "jssh-doctor";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Fail,
    Warn,
}

/// One line of the report: the outcome of one check.
#[derive(Debug, Clone, Serialize)]
struct Finding {
    check: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
    /// The alias it concerns; `None` for the local checks.
    alias: Option<Alias>,
}

impl Finding {
    /// Everything shown is sanitized here: details quote remote output and ssh's stderr.
    fn new(check: &'static str, status: Status, detail: &str, fix: Option<&str>) -> Self {
        Self {
            check,
            status,
            detail: for_terminal(detail),
            fix: fix.map(for_terminal),
            alias: None,
        }
    }

    fn ok(check: &'static str, detail: impl AsRef<str>) -> Self {
        Self::new(check, Status::Ok, detail.as_ref(), None)
    }

    fn fail(check: &'static str, detail: impl AsRef<str>, fix: impl AsRef<str>) -> Self {
        Self::new(check, Status::Fail, detail.as_ref(), Some(fix.as_ref()))
    }

    fn warn(check: &'static str, detail: impl AsRef<str>, fix: impl AsRef<str>) -> Self {
        Self::new(check, Status::Warn, detail.as_ref(), Some(fix.as_ref()))
    }

    fn line(&self) -> String {
        let symbol = match self.status {
            Status::Ok => "✓",
            Status::Fail => "✗",
            Status::Warn => "!",
        };
        match &self.fix {
            Some(fix) => format!("{symbol} {}: {}: {fix}", self.check, self.detail),
            None => format!("{symbol} {}: {}", self.check, self.detail),
        }
    }
}

pub(crate) fn run(ctx: &Ctx, args: &DoctorArgs) -> Result<ExitCode> {
    let profiles = Profiles::load(&ctx.paths.hosts_file())?;
    let selected: Vec<Profile> = match &args.alias {
        Some(alias) => vec![lookup_profile(&profiles, alias)?],
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

fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn print_report(checks: &[Finding], selected: &[Profile], json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, checks).context("could not write JSON")?;
        writeln!(out).context("could not write to stdout")?;
        return Ok(());
    }
    for check in checks.iter().filter(|c| c.alias.is_none()) {
        writeln!(out, "{}", check.line()).context("could not write to stdout")?;
    }
    for p in selected {
        writeln!(out, "{} ({}@{}:{}):", p.alias, p.user, p.host, p.port).context("could not write to stdout")?;
        for check in checks.iter().filter(|c| c.alias.as_ref() == Some(&p.alias)) {
            writeln!(out, "  {}", check.line()).context("could not write to stdout")?;
        }
    }
    Ok(())
}

/// The `jssh setup` command line that (re)creates `profile`, for fixes.
fn setup_command(paths: &Paths, profile: &Profile) -> String {
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

fn quote_path(path: &Path) -> String {
    shell_words::quote(&path.to_string_lossy()).into_owned()
}

// ---- local checks ----

/// `ssh -V`; also says whether ssh exists at all (every other check needs it).
fn openssh_check() -> (Finding, bool) {
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

fn local_checks(paths: &Paths, selected: &[Profile]) -> Vec<Finding> {
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

// ---- per-alias checks ----

fn alias_checks(paths: &Paths, ssh: &Ssh, profile: &Profile, limit: Duration) -> Vec<Finding> {
    let alias = &profile.alias;
    let resolved = match ssh.resolve(alias).output_within(LOCAL_LIMIT) {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            return vec![Finding::fail(
                "ssh -G",
                format!("ssh rejects the config: {}", ssh_error(&out.stderr)),
                format!("fix the line it names (`ssh -G {alias}` shows the error)"),
            )];
        }
        Err(e) => return vec![Finding::fail("ssh -G", format!("{e:#}"), "check your OpenSSH install")],
    };
    let settings = parse_resolved(&resolved);
    let mut checks = vec![resolve_check(paths, profile, &resolved)];
    checks.extend(keepalive_checks(&settings));
    checks.push(agent_check(alias, &settings));

    // The login gets its own connection (it times the handshake and reads the host key check),
    // while the first command through the master starts that master.
    let (login, facts) = thread::scope(|scope| {
        let login = scope.spawn(|| {
            let start = Instant::now();
            ssh.login_check(alias, true)
                .output_within(limit)
                .map(|out| (out, start.elapsed()))
        });
        let facts = ssh.exec(alias, &remote::sh(FACTS, &[]), true);
        (join(login), facts.output_within(limit))
    });
    let logged_in = match login {
        Ok((out, elapsed)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let failure = (!out.status.success()).then(|| LoginFailure::classify(out.status.code(), &stderr));
            checks.push(host_key_check(profile, &settings, &stderr, failure));
            let login = login_check(paths, profile, &out, elapsed, failure);
            let ok = login.status == Status::Ok;
            checks.push(login);
            ok
        }
        Err(e) => {
            checks.push(Finding::fail(
                LOGIN,
                format!("{e:#}"),
                format!("run `ssh -v {alias} true` to see why"),
            ));
            false
        }
    };
    let facts = match facts {
        Ok(out) if out.status.success() => Facts::parse(&String::from_utf8_lossy(&out.stdout)),
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

    let (master, tcp, unix, jupyter) = thread::scope(|scope| {
        let master = scope.spawn(|| master_check(ssh, alias, &settings));
        let tcp = scope.spawn(|| tcp_forward_check(ssh, alias, facts.server, limit));
        let unix = scope.spawn(|| unix_forward_check(ssh, alias, limit));
        let jupyter = jupyter_check(ssh, profile, limit);
        (join(master), join(tcp), join(unix), jupyter)
    });
    checks.extend([master, tcp, unix, tmux_check(alias, &facts.tmux), jupyter]);
    checks.push(config_check(alias, facts.config.as_ref()));
    checks
}

/// `ssh -G` against the profile: the same host, port, user and key (and jump), or a config
/// that shadows jssh's block.
fn resolve_check(paths: &Paths, profile: &Profile, resolved: &str) -> Finding {
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

fn keepalive_checks(settings: &Settings) -> Vec<Finding> {
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

fn agent_check(alias: &Alias, settings: &Settings) -> Finding {
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

const LOGIN: &str = "ssh login (BatchMode)";

/// The known_hosts name of the host (`[host]:port` unless port 22) and the first known_hosts file.
fn known_host(settings: &Settings) -> (String, String) {
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

fn host_key_check(
    profile: &Profile,
    settings: &Settings,
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
    if let Some(line) = verbose_stderr.lines().find(|l| l.contains("is known and matches the")) {
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

fn login_check(
    paths: &Paths,
    profile: &Profile,
    out: &Output,
    elapsed: Duration,
    failure: Option<LoginFailure>,
) -> Finding {
    let (alias, key) = (&profile.alias, profile.identity.display());
    let stderr = String::from_utf8_lossy(&out.stderr);
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

/// The lines of an ssh stderr that say what went wrong: no `-v` chatter, at most the last two.
fn ssh_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let noise = [
        "debug",
        "OpenSSH_",
        "Authenticated to",
        "Transferred:",
        "Bytes per second",
    ];
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !noise.iter().any(|n| l.starts_with(n)))
        .collect();
    if lines.is_empty() {
        return "no error message".to_owned();
    }
    lines[lines.len().saturating_sub(2)..].join(" / ")
}

fn master_check(ssh: &Ssh, alias: &Alias, settings: &Settings) -> Finding {
    let out = match ssh.master_check(alias).output_within(LOCAL_LIMIT) {
        Ok(out) => out,
        Err(e) => return Finding::fail(MASTER, format!("{e:#}"), "check your OpenSSH install"),
    };
    master_verdict(settings, out.status.success(), &ssh_error(&out.stderr))
}

const MASTER: &str = "ControlMaster";
const MASTER_FIX: &str = "jssh's block sets ControlMaster auto, ControlPath and ControlPersist: remove the lines ahead \
                          of the Include in your ssh config that override them, and make sure the ControlPath's \
                          directory exists";

/// `ssh -O check`'s answer, read together with the settings that decide whether ssh starts a
/// new master once the running one exits.
fn master_verdict(settings: &Settings, running: bool, said: &str) -> Finding {
    let path = settings.get("controlpath").map_or("none", String::as_str);
    let mode = settings.get("controlmaster").map_or("false", String::as_str);
    if !running {
        return Finding::fail(
            MASTER,
            format!("no usable master after a login ({said}; ssh -G: controlmaster {mode}, controlpath {path})"),
            MASTER_FIX,
        );
    }
    if matches!(mode, "false" | "no") {
        return Finding::fail(
            MASTER,
            format!("{said} on {path}, but ssh -G says controlmaster {mode}, so no new one starts after it exits"),
            MASTER_FIX,
        );
    }
    Finding::ok(MASTER, format!("{said} on {path}"))
}

/// How sshd answered a forward on a connection of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forward {
    /// sshd tried and the target refused: forwarding works.
    Allowed,
    /// `administratively prohibited`: AllowTcpForwarding, DisableForwarding or the key's options.
    Prohibited,
    Unknown,
}

fn forward_verdict(stderr: &str) -> Forward {
    if stderr.contains("administratively prohibited") {
        Forward::Prohibited
    } else if stderr.contains("open failed: connect failed") {
        Forward::Allowed
    } else {
        Forward::Unknown
    }
}

/// A real forward through the master to the remote's own sshd (its address from
/// `$SSH_CONNECTION`), which answers with its banner. Only if that fails does a probe on its
/// own connection learn sshd's reason.
fn tcp_forward_check(ssh: &Ssh, alias: &Alias, server: Option<(IpAddr, u16)>, limit: Duration) -> Finding {
    const NAME: &str = "TCP forwarding";
    if let Some((ip, port)) = server
        && let Ok(out) = ssh
            .stdio_forward(alias, &ip.to_string(), port, false)
            .output_within(limit)
        && out.stdout.starts_with(b"SSH-")
    {
        return Finding::ok(NAME, format!("a forward to {ip}:{port} on {alias} reached its sshd"));
    }
    let out = match ssh.stdio_forward(alias, "127.0.0.1", 1, true).output_within(limit) {
        Ok(out) => out,
        Err(e) => return Finding::fail(NAME, format!("{e:#}"), format!("run `ssh -v -W 127.0.0.1:22 {alias}`")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    match forward_verdict(&stderr) {
        Forward::Allowed => Finding::ok(
            NAME,
            format!("allowed (a forward to 127.0.0.1:1 on {alias} was refused by the port, not by sshd)"),
        ),
        Forward::Prohibited => Finding::fail(
            NAME,
            format!(
                "{alias}'s sshd refuses to forward TCP ({}), and jssh's tunnel is a TCP forward",
                ssh_error(&out.stderr)
            ),
            format!(
                "ask {alias}'s admin for `AllowTcpForwarding local` (or yes) in sshd_config, and check that your key's \
                 line in ~/.ssh/authorized_keys there has no `restrict` or `no-port-forwarding`"
            ),
        ),
        Forward::Unknown => Finding::fail(
            NAME,
            format!("a forward through {alias} failed: {}", ssh_error(&out.stderr)),
            format!("run `ssh -v -W 127.0.0.1:22 {alias}` to see why"),
        ),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum UnixProbe {
    Works,
    Refused,
    NoPython,
}

/// sshd gives the same answer ("connect failed") whether Unix-socket forwarding is off or the
/// socket is missing, so the probe needs a socket that exists: a throwaway listener on the
/// remote, reached through a forward on the master.
fn unix_forward_check(ssh: &Ssh, alias: &Alias, limit: Duration) -> Finding {
    const NAME: &str = "Unix-socket forwarding";
    match probe_unix_forward(ssh, alias, limit) {
        Ok(UnixProbe::Works) => Finding::ok(NAME, format!("a forward to a Unix socket on {alias} connected")),
        Ok(UnixProbe::Refused) => Finding::warn(
            NAME,
            format!(
                "{alias}'s sshd refuses to forward Unix sockets, so `jssh up --socket` cannot work there (TCP can)"
            ),
            "use `jssh up` without --socket, or ask the admin to allow it (AllowStreamLocalForwarding; OpenSSH's \
             `AllowTcpForwarding no` blocks it too)",
        ),
        Ok(UnixProbe::NoPython) => Finding::warn(
            NAME,
            format!("not checked: the probe needs python3 on {alias} to listen on a socket"),
            "nothing to do unless you use `jssh up --socket`",
        ),
        Err(e) => Finding::warn(NAME, format!("not checked: {e:#}"), "fix the ControlMaster (above)"),
    }
}

/// Listens on a fresh Unix socket in a private temp dir and greets one connection; stops and
/// cleans up on that connection, when jssh closes its stdin, or after 10 s.
const LISTENER_PY: &str = include_str!("../../remote/doctor_listener.py");

/// Runs the Python program in `$1` with the remote's `python3` (or `python`); says `nopython`
/// when it has neither.
const PYTHON: &str = include_str!("../../remote/python.sh");

fn probe_unix_forward(ssh: &Ssh, alias: &Alias, limit: Duration) -> Result<UnixProbe> {
    let cmd = ssh.exec(alias, &remote::sh(PYTHON, &[LISTENER_PY]), true);
    let mut listener = cmd.spawn(Stdio::piped(), Stdio::piped(), Stdio::null())?;
    let result = listener
        .stdout
        .take()
        .context("no stdout from the listener")
        .and_then(|stdout| forward_to_listener(ssh, alias, stdout, limit));
    // End of its stdin tells the listener to clean up, if nothing connected.
    drop(listener.stdin.take());
    let _ = process::wait_or_kill(&mut listener, LOCAL_LIMIT);
    result
}

fn forward_to_listener(
    ssh: &Ssh,
    alias: &Alias,
    stdout: std::process::ChildStdout,
    limit: Duration,
) -> Result<UnixProbe> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(limit)
        .map_err(|_| anyhow!("the listener on {alias} did not start"))?;
    let line = line.trim_end();
    if line == "nopython" || line.is_empty() {
        return Ok(UnixProbe::NoPython);
    }
    let remote = line
        .strip_prefix("listening /")
        .filter(|p| !p.contains(':'))
        .map(|p| format!("/{p}"))
        .with_context(|| format!("unexpected answer from the listener on {alias}: {line:?}"))?;
    let scratch = ScratchDir::new_in(&std::env::temp_dir(), "doctor")?;
    let local = scratch.path().join("s");
    let forward = ssh.master_socket_forward(alias, &local, &remote, false);
    let out = forward.output_within(LOCAL_LIMIT)?;
    if !out.status.success() {
        bail!("the ControlMaster did not take the forward: {}", ssh_error(&out.stderr));
    }
    let mut answer = Vec::new();
    if let Ok(mut stream) = UnixStream::connect(&local) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = stream.read_to_end(&mut answer);
    }
    let _ = ssh
        .master_socket_forward(alias, &local, &remote, true)
        .output_within(LOCAL_LIMIT);
    Ok(if String::from_utf8_lossy(&answer).contains(GREETING) {
        UnixProbe::Works
    } else {
        UnixProbe::Refused
    })
}

/// What the first command reports: the server's address, tmux, and jssh's Jupyter config. It
/// runs in plain `sh`, not the login shell, like `jssh up`'s launch script (so the same tmux).
const FACTS: &str = include_str!("../../remote/facts.sh");

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tmux {
    Found { path: String, version: String, works: bool },
    Missing { path_env: String },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteConfig {
    path: String,
    /// `ls -l`'s mode column (`-rw-------`); `None` when the file does not exist.
    mode: Option<String>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Facts {
    server: Option<(IpAddr, u16)>,
    tmux: Tmux,
    config: Option<RemoteConfig>,
}

impl Facts {
    fn parse(text: &str) -> Self {
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
            facts.tmux = Tmux::Found { path, version, works };
        }
        facts
    }
}

fn tmux_check(alias: &Alias, tmux: &Tmux) -> Finding {
    const NAME: &str = "remote tmux";
    let install = "install it there (`apt install tmux`, `dnf install tmux`, or `conda install -c conda-forge tmux`): \
                   jssh runs Jupyter inside tmux";
    match tmux {
        Tmux::Found {
            path,
            version,
            works: true,
        } => Finding::ok(NAME, format!("{version} ({path})")),
        Tmux::Found {
            path,
            version,
            works: false,
        } => Finding::fail(NAME, format!("{path} does not run: {version}"), install),
        Tmux::Missing { path_env } => Finding::fail(NAME, format!("not found on {alias} (PATH={path_env})"), install),
        Tmux::Unknown => Finding::warn(
            NAME,
            "not checked: the remote did not answer",
            "run `ssh ALIAS tmux -V`",
        ),
    }
}

/// Finds `jupyter` where `jssh up` would (login shell, the profile's env) and reads the
/// versions of its packages from the same environment's Python, which is much faster than
/// `jupyter --version`.
const JUPYTER_PROBE: &str = include_str!("../../remote/jupyter_probe.sh");

#[derive(Debug, Default, serde::Deserialize)]
struct Versions {
    server: Option<String>,
    notebook: Option<String>,
    lab: Option<String>,
}

fn env_text(env: &[EnvSpec]) -> String {
    if env.is_empty() {
        "the login shell's PATH (no --env)".to_owned()
    } else {
        let specs: Vec<String> = env.iter().map(ToString::to_string).collect();
        format!("--env {}", specs.join(" "))
    }
}

fn jupyter_check(ssh: &Ssh, profile: &Profile, limit: Duration) -> Finding {
    const NAME: &str = "remote Jupyter";
    let alias = &profile.alias;
    let script = format!("{}{JUPYTER_PROBE}", activation(&profile.env));
    let out = match ssh
        .exec(alias, &remote::in_login_shell(&script), true)
        .output_within(limit)
    {
        Ok(out) => out,
        Err(e) => return Finding::fail(NAME, format!("{e:#}"), format!("run `ssh {alias} jupyter --version`")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let field = |word: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(word).and_then(|r| r.strip_prefix(' ')))
            .map(str::to_owned)
    };
    let Some(jupyter) = field("jupyter").filter(|_| out.status.success()) else {
        let fix = if profile.env.is_empty() {
            format!(
                "install it there (`pip install jupyterlab`) or tell jssh where it is: `jssh jupyter {alias} --env \
                 venv:PATH` (or conda:NAME, module:NAME)"
            )
        } else {
            format!("fix the environment, or change it with `jssh jupyter {alias} --env SPEC`")
        };
        return Finding::fail(
            NAME,
            format!("not found with {}: {}", env_text(&profile.env), ssh_error(&out.stderr)),
            fix,
        );
    };
    let versions: Versions = field("versions")
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or_default();
    jupyter_verdict(profile, &jupyter, field("python").as_deref(), &versions)
}

fn jupyter_verdict(profile: &Profile, jupyter: &str, python: Option<&str>, versions: &Versions) -> Finding {
    const NAME: &str = "remote Jupyter";
    let alias = &profile.alias;
    if versions.server.is_none() && versions.notebook.is_none() {
        return Finding::warn(
            NAME,
            format!(
                "found {jupyter}, but {} has neither jupyter_server nor notebook, so `jssh jupyter` and `jssh \
                 password` cannot configure it",
                python.unwrap_or("no python3")
            ),
            format!("point --env at Jupyter's own environment: `jssh jupyter {alias} --env venv:PATH`"),
        );
    }
    let mut parts = Vec::new();
    for (name, version) in [
        ("jupyter_server", &versions.server),
        ("JupyterLab", &versions.lab),
        ("notebook", &versions.notebook),
    ] {
        if let Some(v) = version {
            parts.push(format!("{name} {v}"));
        }
    }
    let found = JupyterInfo {
        server: versions.server.clone(),
        notebook: versions.notebook.clone(),
        lab: versions.lab.clone(),
        ..JupyterInfo::default()
    };
    let cached = &profile.jupyter;
    let learned = cached.server.is_some() || cached.notebook.is_some();
    let generation = |info: &JupyterInfo| info.classic(info.notebook_ui(false));
    if learned && generation(cached) != generation(&found) {
        return Finding::warn(
            NAME,
            format!(
                "{} at {jupyter}, but jssh remembers another generation",
                parts.join(", ")
            ),
            format!("run `jssh jupyter {alias}` so jssh uses the right option names"),
        );
    }
    Finding::ok(
        NAME,
        format!("{} at {jupyter} ({})", parts.join(", "), env_text(&profile.env)),
    )
}

/// jssh's Jupyter config on the remote: loopback unless remote access has a password, and a
/// token (jssh always sets one) unless a password replaces it.
fn config_check(alias: &Alias, config: Option<&RemoteConfig>) -> Finding {
    const NAME: &str = "Jupyter config";
    let Some(config) = config else {
        return Finding::warn(NAME, "not checked: the remote did not answer", "run `ssh ALIAS true`");
    };
    let Some(mode) = &config.mode else {
        return Finding::ok(
            NAME,
            format!(
                "no {} yet: `jssh up` listens on 127.0.0.1 and requires its token",
                config.path
            ),
        );
    };
    let path = &config.path;
    let rewrite =
        format!("`jssh jupyter {alias}` rewrites it (127.0.0.1), or set a password with `jssh password {alias}`");
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&config.text) else {
        return Finding::fail(
            NAME,
            format!("{path} on {alias} is not valid JSON, so Jupyter will not start with it"),
            format!("remove it there and run `jssh jupyter {alias}`"),
        );
    };
    let text_at = |section: &str, key: &str| json.get(section).and_then(|s| s.get(key)).and_then(|v| v.as_str());
    let password = [
        ("PasswordIdentityProvider", "hashed_password"),
        ("NotebookApp", "password"),
        ("ServerApp", "password"),
    ]
    .iter()
    .any(|(s, k)| text_at(s, k).is_some_and(|v| !v.is_empty()));
    let open_ip = ["ServerApp", "NotebookApp"]
        .iter()
        .filter_map(|s| text_at(s, "ip"))
        .find(|ip| !matches!(*ip, "127.0.0.1" | "localhost" | "::1"));
    let no_token = ["IdentityProvider", "ServerApp", "NotebookApp"]
        .iter()
        .find(|s| text_at(s, "token") == Some(""));
    if let Some(ip) = open_ip
        && !password
    {
        return Finding::fail(
            NAME,
            format!("{path} on {alias} listens on {ip} without a password"),
            rewrite,
        );
    }
    if let Some(section) = no_token {
        let detail = format!("{path} on {alias} turns off the token ({section}.token = \"\")");
        let fix = format!("remove that setting from {path} on {alias}");
        return if password {
            Finding::warn(
                NAME,
                format!("{detail}: only the password protects it, and jssh's URL will not log you in"),
                fix,
            )
        } else {
            Finding::fail(
                NAME,
                format!("{detail} and sets no password: anyone who reaches the port gets a shell"),
                fix,
            )
        };
    }
    if let Some(ip) = open_ip {
        return Finding::warn(
            NAME,
            format!("{path} on {alias} listens on {ip}: anyone who can reach {alias} can try the password"),
            format!("`jssh jupyter {alias}` listens on 127.0.0.1 only; the tunnel needs nothing more"),
        );
    }
    if password && mode.get(4..).is_some_and(|m| m.contains(['r', 'w'])) {
        return Finding::warn(
            NAME,
            format!("{path} on {alias} is {mode} and holds your password's hash"),
            format!("run `chmod 600 {path}` on {alias}"),
        );
    }
    let how = if password {
        "its token or your password"
    } else {
        "its token"
    };
    Finding::ok(NAME, format!("{path}: 127.0.0.1, {how}"))
}

// ---- running ----

#[cfg(test)]
mod tests {
    use super::*;

    fn alias() -> Alias {
        "gpu".parse().unwrap()
    }

    fn profile() -> Profile {
        Profile {
            alias: alias(),
            host: "10.0.0.5".parse().unwrap(),
            user: "alice".parse().unwrap(),
            port: 2222,
            jump: None,
            identity: "/h/.ssh/jssh_ed25519".into(),
            env: vec!["venv:~/v".parse().unwrap()],
            jupyter: JupyterInfo::default(),
        }
    }

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

    #[test]
    fn a_master_must_also_be_renewable() {
        let auto = parse_resolved("controlmaster auto\ncontrolpath /s/cm-x\n");
        let ok = master_verdict(&auto, true, "Master running (pid=7)");
        assert_eq!(ok.line(), "✓ ControlMaster: Master running (pid=7) on /s/cm-x");
        assert_eq!(
            master_verdict(&auto, false, "Control socket connect(/s/cm-x): No such file").status,
            Status::Fail
        );
        let off = parse_resolved("controlmaster false\ncontrolpath /s/cm-x\n");
        assert_eq!(
            master_verdict(&off, true, "Master running (pid=7)").status,
            Status::Fail
        );
    }

    #[test]
    fn forward_refusals_name_their_cause() {
        assert_eq!(
            forward_verdict("channel 0: open failed: connect failed: Connection refused\r\n"),
            Forward::Allowed
        );
        assert_eq!(
            forward_verdict("channel 0: open failed: administratively prohibited: open failed\r\n"),
            Forward::Prohibited
        );
        assert_eq!(
            forward_verdict("Stdio forwarding request failed: Session open refused by peer"),
            Forward::Unknown
        );
    }

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
                works: true
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

    fn config(mode: &str, text: &str) -> Finding {
        let config = RemoteConfig {
            path: "/j/jssh_config.json".into(),
            mode: Some(mode.into()),
            text: text.into(),
        };
        config_check(&alias(), Some(&config))
    }

    #[test]
    fn jupyter_config_must_keep_a_lock_on_the_door() {
        let ok = config(
            "-rw-------",
            r#"{"ServerApp": {"ip": "127.0.0.1", "open_browser": false}}"#,
        );
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        let open = config("-rw-------", r#"{"ServerApp": {"ip": "0.0.0.0"}}"#);
        assert_eq!(open.status, Status::Fail);
        assert!(open.fix.unwrap().contains("jssh password gpu"));
        let hash = r#""PasswordIdentityProvider": {"hashed_password": "argon2:x"}"#;
        let guarded = config(
            "-rw-------",
            &format!(r#"{{"ServerApp": {{"ip": "0.0.0.0"}}, {hash}}}"#),
        );
        assert_eq!(guarded.status, Status::Warn);
        let tokenless = config("-rw-------", r#"{"IdentityProvider": {"token": ""}}"#);
        assert_eq!(tokenless.status, Status::Fail);
        assert!(tokenless.detail.contains("IdentityProvider.token"), "{tokenless:?}");
        let readable = config("-rw-r--r--", &format!("{{{hash}}}"));
        assert_eq!(readable.status, Status::Warn);
        assert_eq!(config("-rw-------", "{nope").status, Status::Fail);
        let missing = RemoteConfig {
            path: "/j/jssh_config.json".into(),
            mode: None,
            text: String::new(),
        };
        assert_eq!(config_check(&alias(), Some(&missing)).status, Status::Ok);
    }

    #[test]
    fn jupyter_versions_and_generations() {
        let modern = Versions {
            server: Some("2.21.1".into()),
            notebook: Some("7.6.5".into()),
            lab: Some("4.6.6".into()),
        };
        let check = jupyter_verdict(&profile(), "/v/bin/jupyter", Some("/v/bin/python3"), &modern);
        assert_eq!(
            check.detail,
            "jupyter_server 2.21.1, JupyterLab 4.6.6, notebook 7.6.5 at /v/bin/jupyter (--env venv:~/v)"
        );
        let mut classic_profile = profile();
        classic_profile.jupyter.notebook = Some("6.5.7".into());
        let stale = jupyter_verdict(&classic_profile, "/v/bin/jupyter", None, &modern);
        assert_eq!(stale.status, Status::Warn);
        let none = jupyter_verdict(&profile(), "/x/jupyter", Some("/usr/bin/python3"), &Versions::default());
        assert_eq!(none.status, Status::Warn);
    }

    #[test]
    fn remote_text_is_sanitized() {
        let check = Finding::fail("x", "evil \u{1b}]0;title\u{7}", "fix \u{1b}[2J");
        assert!(!check.line().contains('\u{1b}'), "{}", check.line());
        let json = serde_json::to_value(Finding::ok("x", "d")).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["fix"], serde_json::Value::Null);
    }
}
