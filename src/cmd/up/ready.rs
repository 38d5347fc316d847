//! Waiting until a tunnel answers, and what to say when it does not.

use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cmd::{Ctx, login};
use crate::remote::{self, LaunchEvent};
use crate::sanitize::for_terminal;
use crate::state::{Phase, Session, StateDir};
use crate::supervisor::handle;

/// Waits until the supervisor reports the tunnel up: it holds the local port and has seen
/// Jupyter answer with the token (and refuse without it) over its own channel. jssh never
/// sends the token to the local port itself: only the supervisor's own listener is there,
/// but the URL's first user should be the browser. Fails early when the remote session
/// ends or the supervisor dies, and at the deadline.
pub(super) fn wait(
    session: &Session,
    deadline: Instant,
    events: Option<&Receiver<LaunchEvent>>,
    mut supervisor: Option<&mut Child>,
    run: &StateDir,
) -> Result<()> {
    let mut log_tail = Vec::new();
    loop {
        if supervisor.is_none() && handle::find(run).is_none() {
            bail!("the supervisor of {} stopped", session.alias);
        }
        if let Some(now) = run.read_session().ok().flatten() {
            if now.phase == Phase::Up {
                return Ok(());
            }
            // Only the user can go on from here (the key refused, a login ended): say why.
            if let Some(why) = handle::waiting_for_user(run, &now) {
                bail!("{why}");
            }
        }
        if let Some(events) = events {
            while let Ok(event) = events.try_recv() {
                match event {
                    LaunchEvent::Log(line) => log_tail.push(for_terminal(&line)),
                    LaunchEvent::Exited => {
                        // Give the tail a moment to arrive.
                        while let Ok(LaunchEvent::Log(line)) = events.recv_timeout(Duration::from_millis(500)) {
                            log_tail.push(for_terminal(&line));
                        }
                        bail!(
                            "Jupyter exited on {} as it started; its log ends:\n{}",
                            session.alias,
                            log_tail.join("\n")
                        );
                    }
                    _ => {}
                }
            }
        }
        if let Some(child) = supervisor.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let log = std::fs::read_to_string(run.log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(10)..].join("\n");
            bail!(
                "the tunnel supervisor exited ({status}); its log ends:\n{}",
                for_terminal(&tail)
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "Jupyter on {} did not answer within the timeout (raise it with --timeout)",
                session.alias
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last 20 lines of the remote Jupyter log, for an error message.
pub(super) fn remote_log_tail(ctx: &Ctx, run: &StateDir, session: &Session) -> Option<String> {
    let marker = remote::Marker::new().ok()?;
    let command = remote::log(&marker, &session.tmux_name, false);
    let out = login::remote_command(ctx, &session.alias, run, session.login, &command, true)
        .output()
        .ok()?;
    let out = String::from_utf8_lossy(&out.stdout);
    let text = marker.reply(&out)?;
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    (!tail.is_empty()).then(|| format!("the remote Jupyter log ends:\n{}", for_terminal(&tail)))
}
