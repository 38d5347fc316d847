//! `jssh setup`: key, key install, verification, then (and only then) the managed config.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::IsTerminal;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Ctx;
use crate::UsageError;
use crate::cli::SetupArgs;
use crate::fsutil::{self, PRIVATE_FILE, ScratchDir};
use crate::keys::{self, KeyPlan};
use crate::profile::{LoginKind, Profile, Profiles};
use crate::sanitize::{for_terminal, ssh_stderr};
use crate::ssh::{Direct, LoginFailure, Ssh, accepted_key, key_load_error, parse_resolved, partial_success};
use crate::sshconfig;
use crate::target::{Alias, IdentityPath, Jump, Port, UserName};

/// The three files setup may change, before and after.
struct Edits {
    profiles: Profiles,
    managed_old: String,
    managed_new: String,
    user_old: Option<String>,
    user_new: Option<String>,
    hosts_old: String,
}

fn read_text(path: &Path) -> Result<Option<String>> {
    fsutil::read_optional(path)?
        .map(|b| {
            String::from_utf8(b)
                .with_context(|| format!("{} is not UTF-8: jssh only edits UTF-8 files", path.display()))
        })
        .transpose()
}

impl Edits {
    fn plan(ctx: &Ctx, profiles: Profiles) -> Result<Self> {
        let paths = &ctx.paths;
        let managed_new = sshconfig::render_managed(&profiles, &paths.control_path(), &paths.hosts_file())?;
        let user_old = read_text(&paths.ssh_config)?;
        let user_new = sshconfig::with_include(user_old.as_deref().unwrap_or(""), &paths.include_target());
        Ok(Self {
            managed_old: read_text(&paths.managed_file())?.unwrap_or_default(),
            hosts_old: read_text(&paths.hosts_file())?.unwrap_or_default(),
            profiles,
            managed_new,
            user_old,
            user_new,
        })
    }

    fn print_diff(&self, ctx: &Ctx) {
        let paths = &ctx.paths;
        let old_user = self.user_old.as_deref().unwrap_or("");
        let diffs = [
            sshconfig::diff(
                &paths.ssh_config,
                old_user,
                self.user_new.as_deref().unwrap_or(old_user),
            ),
            sshconfig::diff(&paths.managed_file(), &self.managed_old, &self.managed_new),
            sshconfig::diff(&paths.hosts_file(), &self.hosts_old, &self.profiles.render()),
        ];
        if diffs.iter().all(String::is_empty) {
            println!("no file would change");
        }
        for d in diffs {
            print!("{d}");
        }
    }

    /// Refuses, before anything is written, when a file that would change cannot be: a
    /// read-only target (home-manager links `~/.ssh/config` into its read-only store) is
    /// explained, never replaced, and the error says which line to add where (case 2 of
    /// issue 11). `new_key` is where a newly made key would go.
    fn check_writable(&self, ctx: &Ctx, new_key: Option<&Path>) -> Result<()> {
        let paths = &ctx.paths;
        let config = &paths.ssh_config;
        if self.user_new.is_some()
            && let Some((target, why)) = fsutil::unwritable(config)?
        {
            let file = if target == *config {
                format!("{}", config.display())
            } else {
                format!("{} (a link to {})", config.display(), target.display())
            };
            bail!(
                "cannot add jssh's Include line to {file}: {why}; add the line `Include {}` at the top of that \
                 file yourself (or of the file your dotfiles manager makes it from), then rerun; nothing was changed",
                paths.include_target().display()
            );
        }
        let backup = self.user_new.is_some() && self.user_old.is_some() && !paths.backup_file().exists();
        let managed = paths.managed_file();
        let writes = [
            (backup, paths.backup_file()),
            (self.managed_old != self.managed_new, managed),
            (self.hosts_old != self.profiles.render(), paths.hosts_file()),
            (new_key.is_some(), new_key.map(Path::to_path_buf).unwrap_or_default()),
            (new_key.is_some(), new_key.map(keys::public_path).unwrap_or_default()),
        ];
        for (changes, path) in writes {
            if let Some((target, why)) = changes.then(|| fsutil::unwritable(&path)).transpose()?.flatten() {
                bail!(
                    "cannot write {}: {why}; make it writable and rerun; nothing was changed",
                    target.display()
                );
            }
        }
        Ok(())
    }

    /// Writes the managed file, then the Include line (after a one-time backup), then the
    /// profiles. Each write is atomic and skipped when the bytes are already equal.
    fn commit(&self, ctx: &Ctx) -> Result<()> {
        let paths = &ctx.paths;
        let managed = paths.managed_file();
        fsutil::write_atomic(&managed, self.managed_new.as_bytes(), PRIVATE_FILE)
            .with_context(|| format!("could not write {}", managed.display()))?;
        if let Some(new) = &self.user_new {
            if fsutil::backup_once(&paths.ssh_config, &paths.backup_file())? {
                println!(
                    "backed up {} to {}",
                    paths.ssh_config.display(),
                    paths.backup_file().display()
                );
            }
            fsutil::write_atomic(&paths.ssh_config, new.as_bytes(), PRIVATE_FILE)
                .with_context(|| format!("could not write {}", paths.ssh_config.display()))?;
            println!(
                "added `Include {}` to {}",
                paths.include_target().display(),
                paths.ssh_config.display()
            );
        }
        self.profiles.save(&paths.hosts_file())?;
        Ok(())
    }
}

pub(crate) fn run(ctx: &Ctx, args: &SetupArgs) -> Result<()> {
    if args.remove {
        return remove(ctx, &args.alias, args.dry_run);
    }
    let paths = &ctx.paths;
    let mut profiles = Profiles::load(&paths.hosts_file())?;
    profiles.check_new(&args.alias)?;
    let existing = profiles.get(&args.alias).cloned();
    let managed_by_jssh = existing.is_some();
    let profile = new_profile(ctx, args, existing)?;
    check_identity(&profile.identity)?;
    let scratch = ScratchDir::new_in(&std::env::temp_dir(), "setup")?;
    if !args.force {
        refuse_user_alias(ctx, &args.alias, managed_by_jssh, scratch.path())?;
    }
    let plan_key = KeyPlan::for_key(&profile.identity, !args.no_copy_id)?;
    if matches!(plan_key, KeyPlan::Create) && !args.no_passphrase && !args.dry_run && !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "{} does not exist and there is no terminal to ask for its passphrase: rerun in a terminal, \
             pass --no-passphrase, or --identity an existing key",
            profile.identity.display()
        ))
        .into());
    }
    profiles.upsert(profile.clone());
    let edits = Edits::plan(ctx, profiles)?;
    // Before a key is made or installed and before any file is written: a file that cannot be
    // written must not leave the others half done.
    let new_key = matches!(plan_key, KeyPlan::Create).then_some(profile.identity.as_ref());
    edits.check_writable(ctx, new_key)?;

    if args.dry_run {
        edits.print_diff(ctx);
        if matches!(plan_key, KeyPlan::Create) {
            println!("would create the key {}", profile.identity.display());
        }
        if !args.no_copy_id {
            println!(
                "would install {} on {}",
                keys::public_path(&profile.identity).display(),
                profile.alias
            );
        }
        println!("would verify `ssh {} true`", profile.alias);
        return Ok(());
    }

    let key_in_use = match plan_key {
        KeyPlan::Existing => profile.identity.to_path_buf(),
        KeyPlan::Create => scratch
            .path()
            .join(profile.identity.file_name().context("the key path has no file name")?),
    };
    let check_config = scratch.path().join("ssh_config");
    let text = verification_config(ctx, &profile, &key_in_use, edits.user_old.is_some())?;
    fsutil::write_atomic(&check_config, text.as_bytes(), PRIVATE_FILE)?;
    let ssh = ctx.ssh.with_config(&check_config);

    let advice = preflight(ctx, &ssh, &profile, &check_config)?;
    if matches!(plan_key, KeyPlan::Create) {
        // Not "created the key" yet: it stays in the scratch dir, and is thrown away, unless
        // the server accepts it.
        keys::generate_in(scratch.path(), &profile.identity, args.no_passphrase)?;
    }
    let batch = !std::io::stdin().is_terminal();
    let verified = if let Some(verified) = login_with(&ssh, &advice, &key_in_use, batch, args.no_copy_id)? {
        println!("the key is already installed on {}", profile.alias);
        verified
    } else {
        install_key(&ssh, &keys::public_path(&key_in_use), &advice, scratch.path())?;
        println!("installed the key on {}", profile.alias);
        login_with(&ssh, &advice, &key_in_use, batch, true)?.expect("strict login returns a time")
    };
    let mut edits = edits;
    report_verified(&mut edits, &profile.alias, verified);

    if matches!(plan_key, KeyPlan::Create) {
        keys::install(&key_in_use, &profile.identity)?;
        println!("created the key {}", profile.identity.display());
    }
    edits.commit(ctx)?;
    println!(
        "{} is ready: `ssh {}` works; next, `jssh up {}`",
        profile.alias, profile.alias, profile.alias
    );
    Ok(())
}

/// The validated profile this setup asks for, with defaults resolved. What other commands
/// learned (`--env` unless given again, the Jupyter facts) is kept from `existing`.
fn new_profile(ctx: &Ctx, args: &SetupArgs, existing: Option<Profile>) -> Result<Profile> {
    let user = match &args.user {
        Some(u) => u.clone(),
        None => local_user()?,
    };
    let identity = match &args.identity {
        Some(p) => p.clone(),
        None => IdentityPath::new(ctx.paths.default_key()).map_err(UsageError)?,
    };
    Ok(Profile {
        alias: args.alias.clone(),
        host: args.host.clone().context("--host is required")?,
        user,
        port: args.port.unwrap_or(Port::SSH),
        jump: args.jump.clone(),
        identity,
        env: if args.env.is_empty() {
            existing.as_ref().map(|p| p.env.clone()).unwrap_or_default()
        } else {
            args.env.clone()
        },
        // Verification below finds out again.
        login: LoginKind::Key,
        jupyter: existing.map(|p| p.jupyter).unwrap_or_default(),
    })
}

fn local_user() -> Result<UserName> {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .context("could not read the password database")?
        .context("the current user has no password database entry")?;
    user.name
        .parse()
        .map_err(|e| UsageError(format!("your login name is unusable ({e}): pass --user")).into())
}

/// `--identity` names a private key file: a directory or a public key gets a precise error
/// here, before anything runs, rather than ssh's advice about permissions later.
fn check_identity(identity: &Path) -> Result<()> {
    if identity.is_dir() {
        return Err(UsageError(format!(
            "--identity {} is a directory: give the private key file in it (such as {})",
            identity.display(),
            identity.join("id_ed25519").display()
        ))
        .into());
    }
    if let Some(private) = identity.to_str().and_then(|p| p.strip_suffix(".pub")) {
        return Err(UsageError(format!(
            "--identity {} is a public key: give its private key, {private}",
            identity.display()
        ))
        .into());
    }
    Ok(())
}

/// A name nobody's config defines (see [`sshconfig::defined_at`]): `prefix` and random hex.
fn undefined_name(prefix: &str) -> Result<Alias> {
    format!("{prefix}{}", fsutil::random_hex(5)?)
        .parse()
        .map_err(|e| anyhow::anyhow!("a generated host name is not an alias: {e}"))
}

/// The path ssh names a file by, for comparing: links and `..` resolved where the file exists.
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `ssh -G ALIAS` as the user's config would have it, shown how to run.
fn resolve_hint(ctx: &Ctx, alias: &Alias) -> String {
    match ctx.paths.ssh_config_flag() {
        Some(config) => shell_words::join(["ssh", "-F", &config.to_string_lossy(), "-G", alias.as_str()]),
        None => format!("ssh -G {alias}"),
    }
}

/// The one-line error for a config ssh refuses: ssh's own lines (a `\r\n` each), without its
/// closing "terminating, N bad configuration options", with `stand_in` (a copy jssh made for a
/// check) named as `user_file`.
fn rejected(ctx: &Ctx, alias: &Alias, stderr: &[u8], stand_in: &Path, user_file: &Path) -> anyhow::Error {
    let stand_in = stand_in.to_string_lossy();
    let said: Vec<String> = ssh_stderr(stderr)
        .into_iter()
        .filter(|l| !l.contains(": terminating, "))
        .map(|l| l.replace(&*stand_in, &user_file.to_string_lossy()))
        .collect();
    anyhow::anyhow!(
        "ssh rejects the config: {}: fix it (`{}` shows it) and rerun",
        said.join("; "),
        resolve_hint(ctx, alias)
    )
}

/// Refuses to shadow an alias that the user's ssh config already defines (case 1 of issue 11),
/// asking OpenSSH itself rather than scanning text: ssh resolves the user's config (without
/// jssh's own `Include`) for the alias and for two names nobody defines, and its trace says
/// which `Host`/`Match` lines applied. A line that applies to the alias alone defines it,
/// wherever it is (an included file, a `Match` block, a wildcard). The copy lives in
/// `scratch`; its relative `Include`s resolve as the user's own do, since OpenSSH resolves them
/// against `~/.ssh` (of the password database) whichever file holds them.
fn refuse_user_alias(ctx: &Ctx, alias: &Alias, managed_by_jssh: bool, scratch: &Path) -> Result<()> {
    let paths = &ctx.paths;
    let mut text = sshconfig::without_include(
        &read_text(&paths.ssh_config)?.unwrap_or_default(),
        &paths.include_target(),
    );
    if paths.is_default_config {
        // ssh reads the system config after the user's (`-F` skips it).
        text.push_str("\nHost *\nInclude /etc/ssh/ssh_config\n");
    }
    let copy = scratch.join("user_config");
    fsutil::write_atomic(&copy, text.as_bytes(), PRIVATE_FILE)?;
    let ssh = ctx.ssh.with_config(&copy);
    let names = [alias.clone(), undefined_name("jssh-none-")?, undefined_name("0")?];
    let mut runs = Vec::new();
    for name in &names {
        let out = ssh.resolve_traced(name).output()?;
        if !out.status.success() {
            return Err(rejected(ctx, alias, &out.stderr, &copy, &paths.ssh_config));
        }
        runs.push((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let managed = canonical(&paths.managed_file());
    let traces: Option<Vec<_>> = runs.iter().map(|(_, trace)| sshconfig::parse_trace(trace)).collect();
    let found = if let Some([mine, one, two]) = traces.as_deref() {
        sshconfig::defined_at(mine, [one, two], |file| canonical(file) == managed).map(Some)
    } else {
        // An ssh whose trace reads otherwise: compare what it resolves. That cannot tell
        // jssh's own block (which a `config.d/*` glob reaches) from the user's, so an alias
        // jssh already manages is given the benefit of the doubt.
        let [mine, one, two] = [0, 1, 2].map(|i| (names[i].as_str(), runs[i].0.as_str()));
        (!managed_by_jssh && sshconfig::resolved_differs(mine, [one, two])).then_some(None)
    };
    let Some(at) = found else {
        return Ok(());
    };
    let place = match at {
        Some(at) => {
            let file = if at.file == copy {
                paths.ssh_config.clone()
            } else {
                at.file
            };
            let line = fs::read_to_string(&file)
                .ok()
                .and_then(|t| sshconfig::line_of(&t, at.line).map(|l| format!(" (`{}`)", for_terminal(l))))
                .unwrap_or_default();
            format!("in {} line {}{line}", file.display(), at.line)
        }
        None => "by your ssh config (via Include/Match)".to_owned(),
    };
    bail!("{alias} is already defined {place}: pick another alias, or pass --force to shadow it with jssh's block")
}

/// A config for the checks before anything is written: the new block first (first value wins),
/// then the user's config and, when that is OpenSSH's default, the system one (`-F` skips it).
fn verification_config(ctx: &Ctx, profile: &Profile, key: &Path, user_config_exists: bool) -> Result<String> {
    let mut text = sshconfig::render_block(profile, key, &ctx.paths.control_path())?;
    if user_config_exists {
        let _ = write!(text, "\nHost *\nInclude \"{}\"\n", ctx.paths.ssh_config.display());
    }
    if ctx.paths.is_default_config {
        text.push_str("\nHost *\nInclude /etc/ssh/ssh_config\n");
    }
    Ok(text)
}

/// What setup's errors say about reaching the host: a command that works before the alias
/// exists, and a proxy the user's config gives the alias, which ssh runs for every connection.
struct Advice {
    alias: Alias,
    direct: Direct,
    proxy: Option<String>,
    /// The key as the user knows it (a new one is verified from the scratch dir first).
    key: PathBuf,
}

impl Advice {
    fn explain(&self, failure: LoginFailure) -> String {
        let advice = failure.explain(&self.alias, &self.direct);
        match (&self.proxy, failure) {
            (Some(proxy), LoginFailure::Unreachable | LoginFailure::Other) => format!("{advice} ({proxy})"),
            _ => advice,
        }
    }
}

/// ssh's stderr for a message, on one line: what went wrong, without `-v` chatter and without
/// ssh-copy-id's progress notes.
fn ssh_said(stderr: &[u8]) -> String {
    let lines: Vec<String> = ssh_stderr(stderr)
        .into_iter()
        .filter(|l| !l.contains(": INFO: "))
        .collect();
    if lines.is_empty() {
        "ssh said nothing more".to_owned()
    } else {
        format!("ssh said: {}", lines.join("; "))
    }
}

/// A ProxyCommand or ProxyJump that the user's config gives the new alias (jssh's block sets
/// neither, unless `--jump`): it runs for every connection to the alias, so connection errors
/// must name it, and where it comes from (case 9 of issue 11). `resolved` and `trace` are
/// `ssh -G -vvv ALIAS` with the verification config.
fn inherited_proxy(
    ssh: &Ssh,
    profile: &Profile,
    resolved: &BTreeMap<String, String>,
    trace: &str,
    check_config: &Path,
) -> Result<Option<String>> {
    let set = |key: &str| resolved.get(key).filter(|v| *v != "none");
    let (keyword, value) = match (set("proxycommand"), set("proxyjump")) {
        (Some(command), _) => ("ProxyCommand", command),
        (None, Some(jump)) if profile.jump.is_none() => ("ProxyJump", jump),
        _ => return Ok(None),
    };
    let other = ssh.resolve(&undefined_name("0")?).output()?;
    let every =
        parse_resolved(&String::from_utf8_lossy(&other.stdout)).get(&keyword.to_ascii_lowercase()) == Some(value);
    let files: Vec<(PathBuf, String)> = sshconfig::parse_trace(trace)
        .map(|t| t.files)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != check_config)
        .filter_map(|f| fs::read_to_string(&f).ok().map(|text| (f, text)))
        .collect();
    let at = sshconfig::setting_at(&files, keyword, value)
        .map(|(file, line)| format!(" ({} line {line})", file.display()))
        .unwrap_or_default();
    let alias = &profile.alias;
    let whom = if every { "every host" } else { alias.as_str() };
    Ok(Some(for_terminal(&format!(
        "your ssh config gives {whom} `{keyword} {value}`{at}, and jssh's {alias} inherits it"
    ))))
}

/// Fails fast, before a key is made or a password asked, when ssh rejects the config or the
/// host cannot be reached at all. Returns what later errors should say about reaching it.
fn preflight(ctx: &Ctx, ssh: &Ssh, profile: &Profile, check_config: &Path) -> Result<Advice> {
    let alias = &profile.alias;
    let out = ssh.resolve_traced(alias).output()?;
    if !out.status.success() {
        // The user's files are named as they are; only jssh's new block is in the temporary file.
        return Err(rejected(
            ctx,
            alias,
            &out.stderr,
            check_config,
            Path::new("jssh's new block"),
        ));
    }
    let resolved = parse_resolved(&String::from_utf8_lossy(&out.stdout));
    let advice = Advice {
        alias: alias.clone(),
        direct: Direct::new(
            profile.user.as_str(),
            profile.host.as_str(),
            profile.port.get(),
            profile.jump.as_ref().map(Jump::as_str),
        ),
        proxy: inherited_proxy(
            ssh,
            profile,
            &resolved,
            &String::from_utf8_lossy(&out.stderr),
            check_config,
        )?,
        key: profile.identity.to_path_buf(),
    };
    if advice.proxy.is_some() || profile.jump.is_some() {
        return Ok(advice); // Only ssh itself knows how to get through the jump.
    }
    let host = resolved.get("hostname").map_or(alias.as_str(), String::as_str);
    let port = resolved.get("port").map_or("22", String::as_str);
    let timeout = Duration::from_secs(ctx.ssh.connect_timeout().into());
    let reach = || -> std::io::Result<()> {
        let mut last = std::io::Error::other("the name resolves to no address");
        for addr in (host, port.parse::<u16>().unwrap_or(22)).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    reach().with_context(|| {
        format!(
            "cannot reach {host} port {port}: check --host and --port, that sshd runs there, and your \
             network or VPN (or use --jump)"
        )
    })?;
    Ok(advice)
}

/// Runs ssh-copy-id. ssh asks for a password on the terminal (or SSH_ASKPASS), not stdin, so
/// its output can be captured for a clear error.
fn install_key(ssh: &Ssh, public_key: &Path, advice: &Advice, scratch: &Path) -> Result<()> {
    let (home, public_key) = keys::stage_for_copy_id(public_key, scratch)?;
    let cmd = ssh.copy_id(&public_key, &advice.alias, &home);
    let out = cmd.output()?;
    if !out.status.success() {
        let failure = LoginFailure::classify(Some(255), &String::from_utf8_lossy(&out.stderr));
        // Not the command: it names a temporary config that is gone once setup returns.
        bail!(
            "installing the key failed: {}: ssh-copy-id {}: {}",
            advice.explain(failure),
            out.status,
            ssh_said(&out.stderr)
        );
    }
    Ok(())
}

/// Logs in with the key only and runs `true`. Returns the time taken when the server accepted
/// `key` itself; `None` when it did not but that may still be fixed by installing it (not
/// `strict`); an error saying which step failed otherwise.
/// Says how the verification login went, and records in the profile whether logins need a
/// human.
fn report_verified(edits: &mut Edits, alias: &Alias, verified: Verified) {
    match verified {
        Verified::Key(elapsed) => println!(
            "verified: `ssh {}` logs in with the key ({:.2} s)",
            alias,
            elapsed.as_secs_f64()
        ),
        Verified::Prompted(elapsed) => {
            edits.profiles.set_login(alias, LoginKind::Prompt);
            println!(
                "verified: `ssh {}` logs in with the key and a second factor ({:.2} s); `jssh up {}` will ask \
                 for it once, and reconnects without asking until that login ends",
                alias,
                elapsed.as_secs_f64(),
                alias
            );
        }
        Verified::NeedsPrompt => {
            edits.profiles.set_login(alias, LoginKind::Prompt);
            println!(
                "the server accepts the key, then asks for a second factor, which needs a terminal: not \
                 verified further; `jssh up {alias}` in a terminal will ask for it once"
            );
        }
    }
}

/// How the verification login went.
#[derive(Debug, Clone, Copy)]
enum Verified {
    /// The key alone logs in.
    Key(Duration),
    /// The key, then a second factor the user answered on the terminal.
    Prompted(Duration),
    /// The key was accepted and a second factor asked for, with no terminal to answer it.
    NeedsPrompt,
}

/// Logs in with the key only and runs `true`. Returns how the login went when the server
/// accepted `key` itself (alone, or as the first of two factors: then once more with the
/// terminal for the second, if there is one); `None` when it did not but that may still be
/// fixed by installing it (not `strict`); an error saying which step failed otherwise.
fn login_with(ssh: &Ssh, advice: &Advice, key: &Path, batch: bool, strict: bool) -> Result<Option<Verified>> {
    let start = Instant::now();
    let cmd = ssh.login_check(&advice.alias, batch);
    let out = cmd.output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && accepted_key(&stderr, key) {
        return Ok(Some(Verified::Key(start.elapsed())));
    }
    if partial_success(&stderr, key) {
        if batch {
            return Ok(Some(Verified::NeedsPrompt));
        }
        let start = Instant::now();
        let status = ssh.prompted_login(&advice.alias).run_interactive()?;
        if !status.success() {
            bail!(
                "verification failed: the server accepts {} and then asks for a second factor, which did not \
                 succeed ({status}): rerun and answer the prompt",
                advice.key.display()
            );
        }
        return Ok(Some(Verified::Prompted(start.elapsed())));
    }
    let failure = if out.status.success() {
        LoginFailure::AuthRefused // In, but with another identity.
    } else {
        LoginFailure::classify(out.status.code(), &stderr)
    };
    if failure == LoginFailure::AuthRefused && !strict {
        return Ok(None);
    }
    // Not the command (it names a temporary config that is gone once setup returns), and
    // not ssh's `-v` chatter: what went wrong.
    let why = if let Some(why) = key_load_error(&stderr, key) {
        format!("ssh cannot use {}: {why}", advice.key.display())
    } else if out.status.success() {
        format!("the server let you in with another key, not {}", advice.key.display())
    } else {
        ssh_said(&out.stderr)
    };
    bail!("verification failed: {}: {why}", advice.explain(failure))
}

fn remove(ctx: &Ctx, alias: &Alias, dry_run: bool) -> Result<()> {
    let mut profiles = ctx.profiles()?;
    let identity = profiles.lookup(alias)?.identity.clone();
    profiles.remove(alias);
    let edits = Edits {
        user_new: None,
        ..Edits::plan(ctx, profiles)?
    };
    edits.check_writable(ctx, None)?;
    if dry_run {
        edits.print_diff(ctx);
        return Ok(());
    }
    edits.commit(ctx)?;
    println!(
        "removed {alias}. The key {} stays, and so does its line in the server's ~/.ssh/authorized_keys \
         (delete that line there to revoke it).",
        identity.display()
    );
    Ok(())
}
