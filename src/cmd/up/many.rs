//! Several aliases at once (`up A B C`, `up --all`): started in parallel, each in the
//! background, then one line each — the alias and its URL, or why it failed.

use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Result;

use super::plan::Plan;
use super::ui::{Progress, Ui};
use crate::cmd::{Ctx, open_url};
use crate::profile::{LoginKind, Profile};
use crate::sanitize::for_terminal;
use crate::state::RunDir;

/// How many aliases start at once. sshd's default `MaxStartups 10:30:100` refuses some new
/// connections once more than 10 are still logging in, and many aliases often name one
/// server: a few at a time keep below that, and each start spends most of its time waiting
/// for Jupyter, not logging in.
const AT_ONCE: usize = 8;

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
    let queue = Mutex::new(unattended.iter());
    let outcomes: Mutex<Vec<(&Profile, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..unattended.len().min(AT_ONCE))
            .map(|_| {
                scope.spawn(|| {
                    while let Some(profile) = next(&queue) {
                        let outcome = start_one(ctx, plan, profile);
                        lock(&outcomes).push((profile, outcome));
                    }
                })
            })
            .collect();
        for profile in &asking {
            let outcome = start_one(ctx, plan, profile);
            lock(&outcomes).push((profile, outcome));
        }
        let progress = Progress::start(&format!("starting {} tunnels", unattended.len()));
        for worker in workers {
            // A worker that panicked has said so on stderr; its aliases get no line.
            let _ = worker.join();
        }
        progress.finish();
    });
    let mut outcomes = outcomes.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
    outcomes.sort_by_key(|(p, _)| plan.hosts.iter().position(|h| h.alias == p.alias));
    report(ctx, plan, &outcomes)
}

fn next<'a, I: Iterator<Item = &'a &'a Profile>>(queue: &Mutex<I>) -> Option<&'a Profile> {
    lock(queue).next().copied()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn start_one(ctx: &Ctx, plan: &Plan, profile: &Profile) -> Outcome {
    let run = RunDir::new(&ctx.paths, &profile.alias);
    let mut ui = Ui::quiet();
    let url = super::bring_up(ctx, plan, profile, &run, &mut ui).map(|up| up.session().url());
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
                && let Err(e) = open_url(&RunDir::new(&ctx.paths, &profile.alias), url)
            {
                eprintln!("jssh: error: {}: {e:#}", profile.alias);
                failed = true;
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
