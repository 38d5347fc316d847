//! `jssh jupyter`: set up jssh's own Jupyter config on the remote and learn its generation.

use anyhow::{Context, Result, bail};

use super::Ctx;
use crate::cli::JupyterArgs;
use crate::jupyter::{self, JupyterInfo, Report, Request, Settings};
use crate::profile::Profile;
use crate::remote::{self, DirCheck, Marker};
use crate::sanitize::{for_terminal, ssh_stderr};
use crate::target::Alias;

/// Runs a configuration request on the remote (in its login shell with the profile's env) and
/// caches what it learned in the profile.
pub(crate) fn configure(ctx: &Ctx, profile: &Profile, request: &Request, password: Option<&str>) -> Result<Report> {
    let script = jupyter::configure_script(&profile.env, request);
    let marker = Marker::new()?;
    let mut cmd = ctx
        .ssh
        .exec(&profile.alias, &remote::in_login_shell(&marker, &script), true);
    if let Some(password) = password {
        cmd = cmd.stdin_bytes(format!("{password}\n").into_bytes());
    }
    let out = cmd.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Only the updater's own lines, not what the login shell printed before them.
    let report: Option<Report> = marker
        .reply(&stdout)
        .and_then(|reply| reply.lines().rev().find_map(|l| serde_json::from_str(l).ok()));
    let Some(report) = report else {
        let stderr = ssh_stderr(&out.stderr).join("\n");
        bail!(
            "configuring Jupyter on {} failed ({}): {stderr}",
            profile.alias,
            out.status
        );
    };
    if let (Some(nodir), Some(settings)) = (&report.nodir, &request.settings) {
        let check = DirCheck {
            dir: settings.root_dir.as_deref().unwrap_or_default(),
            alternative: settings.root_dir_alternative.clone(),
        };
        return Err(check.missing(&profile.alias, nodir == "alternative"));
    }
    if let Some(error) = &report.error {
        bail!(
            "{}: {}: check --env (e.g. --env venv:~/venv or --env conda:NAME) or `jssh doctor {}`",
            profile.alias,
            for_terminal(error),
            profile.alias
        );
    }
    Ok(report)
}

/// Stores the learned facts (versions, password, remote access) in the profile.
pub(crate) fn remember(ctx: &Ctx, alias: &Alias, report: &Report, allow_remote_access: Option<bool>) -> Result<()> {
    let mut profiles = ctx.profiles()?;
    let mut profile = profiles.lookup(alias)?.clone();
    let previous = profile.jupyter.allow_remote_access;
    profile.jupyter = JupyterInfo {
        server: report.server.clone(),
        notebook: report.notebook.clone(),
        lab: report.lab.clone(),
        password: report.password,
        allow_remote_access: allow_remote_access.unwrap_or(previous),
    };
    profiles.upsert(profile);
    profiles.save(&ctx.paths.hosts_file()).map(|_| ())
}

pub(crate) fn run(ctx: &Ctx, args: &JupyterArgs) -> Result<()> {
    let mut profiles = ctx.profiles()?;
    let mut profile = profiles.lookup(&args.alias)?.clone();
    if !args.env.is_empty() {
        profile.env.clone_from(&args.env);
    }
    let request = Request {
        generate: true,
        settings: Some(Settings {
            root_dir: args.dir.clone(),
            root_dir_alternative: args.dir.as_deref().and_then(|dir| DirCheck::new(dir).alternative),
            allow_remote_access: args.allow_remote_access,
        }),
        password: None,
    };
    let report = configure(ctx, &profile, &request, None)?;
    // Saved once the remote took it: a refused request changes nothing.
    if !args.env.is_empty() {
        profiles.upsert(profile);
        profiles
            .save(&ctx.paths.hosts_file())
            .context("could not save the profile")?;
    }
    remember(ctx, &args.alias, &report, Some(args.allow_remote_access))?;
    let mut found: Vec<String> = Vec::new();
    found.extend(report.server.as_ref().map(|v| format!("jupyter_server {v}")));
    found.extend(report.lab.as_ref().map(|v| format!("JupyterLab {v}")));
    found.extend(report.notebook.as_ref().map(|v| format!("notebook {v}")));
    let info = ctx
        .profiles()?
        .get(&args.alias)
        .map(|p| p.jupyter.clone())
        .unwrap_or_default();
    let classic = if info.classic(true) {
        " (classic: NotebookApp names for the Notebook UI)"
    } else {
        ""
    };
    println!("{}: {}{classic}", args.alias, found.join(", "));
    if let Some(generated) = &report.generated {
        println!("created your default config {generated} (jssh does not edit it)");
    }
    let path = report.path.as_deref().unwrap_or("jssh_config.json");
    println!(
        "wrote {path} (0600): listen on {}, no browser{}{}",
        report.ip.as_deref().unwrap_or("127.0.0.1"),
        args.dir.as_ref().map(|d| format!(", root dir {d}")).unwrap_or_default(),
        if report.password {
            ", password set"
        } else {
            ", token only (set a password with `jssh password`)"
        }
    );
    if args.allow_remote_access {
        eprintln!(
            "WARNING: Jupyter on {} will listen on ALL interfaces: anyone who can reach that host can try \
             the password. The tunnel does not need this; undo with `jssh jupyter {}`.",
            args.alias, args.alias
        );
    }
    println!("`jssh up {}` uses it from now on", args.alias);
    Ok(())
}
