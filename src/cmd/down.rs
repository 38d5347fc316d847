//! `jssh down`: stop the supervisor (and its ssh), then the remote Jupyter unless kept.

use anyhow::{Context, Result, bail};

use super::{Ctx, fanout, login, named_profiles};
use crate::cli::DownArgs;
use crate::profile::{LoginKind, Profile};
use crate::remote::{self, LaunchEvent, Marker};
use crate::state::{Session, StateDir};
use crate::supervisor::handle;
use crate::target::Alias;

pub(crate) fn run(ctx: &Ctx, args: &DownArgs) -> Result<()> {
    let profiles = ctx.profiles()?;
    let selected: Vec<Profile> = if args.all {
        profiles
            .iter()
            .filter(|p| StateDir::new(&ctx.paths, &p.alias).exists())
            .cloned()
            .collect()
    } else {
        named_profiles(&profiles, &args.aliases)?
    };
    // Each alias is its own remote and lock: they stop in parallel. One whose session rides
    // on a login a human answered may have to ask again: those go one after another, on
    // this thread, never two prompts at once.
    let asks = |p: &Profile| {
        p.login == LoginKind::Prompt
            || StateDir::new(&ctx.paths, &p.alias)
                .read_session()
                .ok()
                .flatten()
                .is_some_and(|s| s.login == LoginKind::Prompt)
    };
    let (asking, unattended): (Vec<&Profile>, Vec<&Profile>) = selected.iter().partition(|p| asks(p));
    let results: Vec<(&Alias, Result<()>)> = std::thread::scope(|scope| {
        let pool = scope.spawn(|| fanout::each(&unattended, |p| down(ctx, &p.alias, args.keep_remote)));
        let mut results: Vec<_> = asking
            .iter()
            .map(|p| (&p.alias, down(ctx, &p.alias, args.keep_remote)))
            .collect();
        let stopped = pool.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        results.extend(unattended.iter().map(|p| &p.alias).zip(stopped));
        results
    });
    if !profiles
        .iter()
        .any(|p| handle::find(&StateDir::new(&ctx.paths, &p.alias)).is_some())
    {
        crate::siblings::remove_server_files(&ctx.paths);
    }
    let total = results.len();
    let mut failed: Vec<(&Alias, anyhow::Error)> = results
        .into_iter()
        .filter_map(|(alias, r)| r.err().map(|e| (alias, e)))
        .collect();
    if total == 1 {
        return failed.pop().map_or(Ok(()), |(_, e)| Err(e));
    }
    for (alias, e) in &failed {
        eprintln!("jssh: error: {alias}: {e:#}");
    }
    if !failed.is_empty() {
        bail!("{} of {total} aliases did not stop cleanly (see above)", failed.len());
    }
    Ok(())
}

fn down(ctx: &Ctx, alias: &Alias, keep_remote: bool) -> Result<()> {
    let run = StateDir::new(&ctx.paths, alias);
    let _lock = run.lock()?;
    if handle::find(&run).is_some() {
        handle::stop(&run)?;
        println!("{alias}: stopped the tunnel");
    }
    if keep_remote {
        login::end(ctx, alias, &run);
        println!("{alias}: Jupyter keeps running (`jssh up {alias}` reconnects)");
        return Ok(());
    }
    // Where logins need a human, the stop rides on the login the tunnel had; if that one
    // ended, the user (who ran `down`) is asked once.
    let login = run.read_session().ok().flatten().map(|s| s.login);
    if login == Some(LoginKind::Prompt) {
        login::log_in(ctx, alias, &run)?;
    }
    let stopped = stop_remote(ctx, alias, &run);
    login::end(ctx, alias, &run);
    stopped
}

/// Stops the remote Jupyter and forgets the session. On a machine other than the session's
/// (a login address leading to several), nothing there is touched, and the user is told
/// where the server still runs and how to stop it; the session is forgotten all the same,
/// since this machine cannot reach it.
pub(crate) fn stop_remote(ctx: &Ctx, alias: &Alias, run: &StateDir) -> Result<()> {
    let name = remote::session_name(alias);
    let session = run.read_session().ok().flatten();
    if let Some(session) = session.as_ref().filter(|s| s.job.is_some()) {
        return cancel_job(ctx, alias, run, session);
    }
    let node = session.as_ref().and_then(|s| s.remote_node.clone());
    let login = session.map_or(LoginKind::Key, |s| s.login);
    let marker = Marker::new()?;
    let cmd = login::remote_command(
        ctx,
        alias,
        run,
        login,
        &remote::stop(&marker, &name, node.as_deref()),
        true,
    );
    let out = cmd
        .run()
        .with_context(|| format!("could not stop Jupyter on {alias}"))?;
    let out = String::from_utf8_lossy(&out.stdout);
    // Only the script's own lines count, not what the login shell printed before them.
    let Some(said) = marker.reply(&out) else {
        bail!(
            "could not tell whether Jupyter on {alias} was stopped: the remote's answer never came \
             (`jssh status {alias}` shows whether it still runs)"
        );
    };
    let elsewhere = said.lines().find_map(|l| match LaunchEvent::parse(l) {
        Some(LaunchEvent::Elsewhere(reached)) => Some(reached),
        _ => None,
    });
    match (elsewhere, node) {
        (Some(reached), Some(node)) => eprintln!(
            "jssh: warning: {alias}'s Jupyter runs on {node}, but this connection reached {reached}: \
             it still runs there; stop it on {node} with `tmux -L jssh kill-session -t {name}`"
        ),
        _ if said.lines().any(|l| l == "stopped") => {
            println!("{alias}: stopped Jupyter and removed its tmux session and token");
        }
        _ => println!("{alias}: no Jupyter was running"),
    }
    run.clear();
    Ok(())
}

/// `scancel` of the session's Slurm job, confirmed by squeue, and the token's run dir removed.
fn cancel_job(ctx: &Ctx, alias: &Alias, run: &StateDir, session: &Session) -> Result<()> {
    let mut session = session.clone();
    let known = session.job.as_ref().and_then(|j| j.id.clone());
    // sbatch's answer never came back: the job, if any, goes by its name.
    let found = match known {
        Some(id) => Some(id),
        None => super::up::slurm::find(ctx, alias, run, &session)?,
    };
    let Some(id) = found else {
        println!("{alias}: no Slurm job was submitted");
        run.clear();
        return Ok(());
    };
    if let Some(job) = session.job.as_mut() {
        job.id = Some(id.clone());
    }
    let said = super::up::slurm::cancel(ctx, alias, run, &session).with_context(|| {
        format!("could not cancel Slurm job {id} on {alias}: `jssh status {alias}`, or `scancel {id}` there")
    })?;
    match said.split_once(' ') {
        Some(("still", state)) => bail!(
            "Slurm job {id} on {alias} is still {state} 15 s after scancel: `squeue -j {id}` there \
             (`jssh down {alias}` again retries)"
        ),
        Some((_, state)) => println!("{alias}: cancelled Slurm job {id} ({state}) and removed its token"),
        None => println!("{alias}: cancelled Slurm job {id}"),
    }
    super::login::end(ctx, alias, run);
    run.clear();
    Ok(())
}
