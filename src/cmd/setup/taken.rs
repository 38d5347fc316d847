//! Whether the user's own ssh config already defines the alias: asked of OpenSSH itself (its
//! `-G -vvv` trace names every `Host`/`Match` line it applied), never by scanning text.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::edits::read_text;
use crate::cmd::Ctx;
use crate::fsutil::{self, PRIVATE_FILE};
use crate::sanitize::{for_terminal, ssh_stderr};
use crate::sshconfig;
use crate::target::Alias;

/// A name nobody's config defines (see [`sshconfig::defined_at`]): `prefix` and random hex.
pub(super) fn undefined_name(prefix: &str) -> Result<Alias> {
    format!("{prefix}{}", fsutil::random_hex(5)?)
        .parse()
        .map_err(|e| anyhow::anyhow!("a generated host name is not an alias: {e}"))
}

/// The path ssh names a file by, for comparing: links and `..` resolved where the file exists.
pub(super) fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `ssh -G ALIAS` as the user's config would have it, shown how to run.
pub(super) fn resolve_hint(ctx: &Ctx, alias: &Alias) -> String {
    match ctx.paths.ssh_config_flag() {
        Some(config) => shell_words::join(["ssh", "-F", &config.to_string_lossy(), "-G", alias.as_str()]),
        None => format!("ssh -G {alias}"),
    }
}

/// The one-line error for a config ssh refuses: ssh's own lines (a `\r\n` each), without its
/// closing "terminating, N bad configuration options", with `stand_in` (a copy jssh made for a
/// check) named as `user_file`.
pub(super) fn rejected(ctx: &Ctx, alias: &Alias, stderr: &[u8], stand_in: &Path, user_file: &Path) -> anyhow::Error {
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
pub(super) fn refuse_user_alias(ctx: &Ctx, alias: &Alias, managed_by_jssh: bool, scratch: &Path) -> Result<()> {
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
