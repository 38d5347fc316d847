//! Several aliases at once (`up A B C`, `up --all`): started in parallel, each in the
//! background, then one line each — the alias and its URL, or why it failed.

use std::process::ExitCode;

use anyhow::Result;

use super::plan::Plan;
use super::ui::{Progress, Ui};
use crate::cmd::{Ctx, fanout, open_url};
use crate::profile::{LoginKind, Profile};
use crate::sanitize::for_terminal;
use crate::state::StateDir;

/// How one alias's start went, and the notes it would have printed.
struct Outcome {
    url: Result<String>,
    notes: Vec<String>,
}

pub(super) fn run(ctx: &Ctx, plan: &Plan) -> ExitCode {
    if plan.backgrounded {
        eprintln!(
            "several aliases: their tunnels run in the background (as with -d); `jssh status` shows them, \
             `jssh down --all` stops them"
        );
    }
    // Hosts whose logins need a human ask in the terminal, one after another (never two
    // prompts at once), while the others start on their own.
    let (asking, unattended): (Vec<&Profile>, Vec<&Profile>) =
        plan.hosts.iter().partition(|p| p.login == LoginKind::Prompt);
    let mut outcomes: Vec<(&Profile, Outcome)> = std::thread::scope(|scope| {
        let pool = scope.spawn(|| fanout::each(&unattended, |p| start_one(ctx, plan, p)));
        let mut done: Vec<(&Profile, Outcome)> = asking.iter().map(|p| (*p, start_one(ctx, plan, p))).collect();
        let progress =
            (!unattended.is_empty()).then(|| Progress::start(&format!("starting {} tunnels", unattended.len())));
        let started = pool.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if let Some(progress) = progress {
            progress.finish();
        }
        done.extend(unattended.iter().copied().zip(started));
        done
    });
    outcomes.sort_by_key(|(p, _)| plan.hosts.iter().position(|h| h.alias == p.alias));
    report(ctx, plan, &outcomes)
}

fn start_one(ctx: &Ctx, plan: &Plan, profile: &Profile) -> Outcome {
    let run = StateDir::new(&ctx.paths, &profile.alias);
    let mut ui = Ui::quiet();
    let url = super::bring_up(ctx, plan, profile, &run, &mut ui).map(|up| match &up {
        super::Up::Queued { session } => format!(
            "queued: Slurm job {} waits; `jssh up {}` attaches once it runs",
            session.job.as_ref().and_then(|j| j.id.as_deref()).unwrap_or("?"),
            profile.alias
        ),
        _ => up.session().url(),
    });
    Outcome {
        url,
        notes: ui.into_notes(),
    }
}

/// Prints the notes and full errors on stderr, then one line per alias on stdout; opens the
/// URLs when asked. Failure when any alias failed.
fn report(ctx: &Ctx, plan: &Plan, outcomes: &[(&Profile, Outcome)]) -> ExitCode {
    let width = outcomes.iter().map(|(p, _)| p.alias.as_str().len()).max().unwrap_or(0);
    for (profile, outcome) in outcomes {
        for note in &outcome.notes {
            eprintln!("{}: {note}", profile.alias);
        }
        if let Err(e) = &outcome.url
            && format!("{e:#}").contains('\n')
        {
            eprintln!("jssh: error: {}: {}", profile.alias, for_terminal(&format!("{e:#}")));
        }
    }
    let mut failed = false;
    for (profile, outcome) in outcomes {
        let alias = profile.alias.as_str();
        match &outcome.url {
            Ok(url) => println!("{alias:<width$}  {url}"),
            Err(e) => {
                failed = true;
                let message = format!("{e:#}");
                let first = message.lines().next().unwrap_or_default();
                println!("{alias:<width$}  failed: {}", for_terminal(first));
            }
        }
    }
    if plan.open {
        for (profile, outcome) in outcomes {
            if let Ok(url) = &outcome.url
                && let Err(e) = open_url(&StateDir::new(&ctx.paths, &profile.alias), url)
            {
                eprintln!("jssh: error: {}: {e:#}", profile.alias);
                failed = true;
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
