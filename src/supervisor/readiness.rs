//! What the supervisor tells systemd when it runs in a `Type=notify` unit (`jssh service`,
//! through [`crate::platform::sd_notify`]): `READY=1` once the URL first answers, a
//! `STATUS=` line whenever the tunnel's state would read differently, `STOPPING=1` when it
//! ends. Only on changes, so an idle supervisor sends nothing. Never the token: systemd logs
//! status lines to the journal, which the `adm` group reads.

use super::Supervisor;
use crate::platform::sd_notify::Notifier;
use crate::profile::LoginKind;
use crate::state::{Phase, Session};

/// A status line longer than this is cut (an ssh error can be long; `systemctl status`
/// shows one line).
const STATUS_MAX: usize = 200;

/// The service manager's socket, and what it was told last.
pub(super) struct Readiness {
    notifier: Notifier,
    said: Said,
}

impl Readiness {
    /// Only the supervisor of a foreground `jssh up` speaks for a unit (`jssh service run`
    /// runs one); a detached one started by hand from a shell that inherited some other
    /// unit's `NOTIFY_SOCKET` must not.
    pub(super) fn open(foreground: bool) -> Option<Self> {
        Some(Self {
            notifier: Notifier::from_env().filter(|_| foreground)?,
            said: Said::default(),
        })
    }
}

impl Supervisor {
    /// Called whenever the session is saved: tells the manager if the status changed.
    pub(super) fn notify_phase(&mut self) {
        if let Some(readiness) = &mut self.readiness
            && let Some(message) = readiness.said.next(&self.session)
        {
            readiness.notifier.send(&message);
        }
    }

    /// The supervisor ends (stopped, failed, the job ended).
    pub(super) fn notify_end(&mut self) {
        if let Some(readiness) = &mut self.readiness {
            readiness.notifier.send(&readiness.said.end(&self.session));
        }
    }
}

/// What the manager has been told; decides what to tell it next.
#[derive(Debug, Default)]
struct Said {
    ready: bool,
    status: String,
}

impl Said {
    /// The message for `session` now: `READY=1` the first time it is up, and its status when
    /// that changed; `None` when there is nothing new.
    fn next(&mut self, session: &Session) -> Option<String> {
        let status = status(session);
        let ready = !self.ready && session.phase == Phase::Up;
        if !ready && status == self.status {
            return None;
        }
        self.ready |= ready;
        let message = format!("{}STATUS={status}", if ready { "READY=1\n" } else { "" });
        self.status = status;
        Some(message)
    }

    fn end(&mut self, session: &Session) -> String {
        self.status = status(session);
        format!("STOPPING=1\nSTATUS={}", self.status)
    }
}

/// One line saying how the tunnel is, as `systemctl status` shows it: the URL without its
/// token, the Slurm job, the reconnects, or why it is not up.
fn status(session: &Session) -> String {
    let alias = &session.alias;
    let why = |otherwise: &str| session.last_error.clone().unwrap_or_else(|| otherwise.to_owned());
    let text = match session.phase {
        Phase::Starting => format!("connecting to {alias}{}", about(session, false)),
        Phase::Up => {
            format!("up: {}{}", session.page_url(), about(session, true))
        }
        Phase::Reconnecting => format!("reconnecting: {}", why("the connection was lost")),
        Phase::NeedsLogin if session.login == LoginKind::Key => format!("waiting for you: {}", why("see `jssh logs`")),
        Phase::NeedsLogin => format!("waiting for a login: run `jssh login {alias}` (only a human can log in)"),
        Phase::Failed => format!("failed: {}", why("see `jssh logs`")),
        Phase::JobEnded => format!("ended: {}", why("the Slurm job ended")),
        Phase::Stopped => "stopped".to_owned(),
    };
    one_line(&text, &session.token)
}

/// " (Slurm job 12 on c1, reconnects 2)", or nothing.
fn about(session: &Session, reconnects: bool) -> String {
    let mut parts = Vec::new();
    if let Some(job) = &session.job {
        let id = job.id.as_deref().unwrap_or("?");
        parts.push(match &job.node {
            Some(node) => format!("Slurm job {id} on {node}"),
            None => format!("Slurm job {id}"),
        });
    }
    if reconnects && session.reconnects > 0 {
        parts.push(format!("reconnects {}", session.reconnects));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `text` as one short line (a newline would start another `KEY=` of the protocol), with
/// the token hidden should an error message carry it.
fn one_line(text: &str, token: &str) -> String {
    let mut line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if !token.is_empty() {
        line = line.replace(token, "…");
    }
    if let Some((cut, _)) = line.char_indices().nth(STATUS_MAX) {
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "5e3c0ffee5e3c0ffee";

    fn session(phase: Phase) -> Session {
        let mut session: Session = serde_json::from_value(serde_json::json!({
            "alias": "gpu", "tmux_name": "jssh-gpu", "local_port": 8888, "remote_port": 9000,
            "remote_socket": null, "remote_pid": null, "token": TOKEN, "notebook": false,
            "dir": null, "env": [], "phase": "starting", "started_unix": 0, "reconnects": 0,
            "restarts": 0, "last_error": null,
        }))
        .unwrap();
        session.phase = phase;
        session
    }

    #[test]
    fn the_status_line_says_how_the_tunnel_is_without_the_token() {
        let job: crate::slurm::Job = serde_json::from_value(serde_json::json!({
            "id": "12", "name": "jssh-gpu", "node": "c1", "state": "RUNNING", "reason": null,
            "ends_unix": null,
        }))
        .unwrap();
        let with = |phase, reconnects, error: Option<&str>, job: Option<&crate::slurm::Job>| {
            let mut s = session(phase);
            s.reconnects = reconnects;
            s.last_error = error.map(Into::into);
            s.job = job.cloned();
            s
        };
        let leak = format!("ssh said\nhttp://127.0.0.1:8888/lab?token={TOKEN}");
        let long = "x".repeat(500);
        let table: [(Session, &str); 10] = [
            (with(Phase::Starting, 0, None, None), "connecting to gpu"),
            (
                with(Phase::Starting, 0, None, Some(&job)),
                "connecting to gpu (Slurm job 12 on c1)",
            ),
            (with(Phase::Up, 0, None, None), "up: http://127.0.0.1:8888/lab"),
            (
                with(Phase::Up, 2, Some("old"), Some(&job)),
                "up: http://127.0.0.1:8888/lab (Slurm job 12 on c1, reconnects 2)",
            ),
            (
                with(Phase::Reconnecting, 2, Some("exited 255"), None),
                "reconnecting: exited 255",
            ),
            (
                with(Phase::Reconnecting, 0, Some(&leak), None),
                "reconnecting: ssh said http://127.0.0.1:8888/lab?token=…",
            ),
            (
                Session {
                    login: LoginKind::Prompt,
                    ..with(Phase::NeedsLogin, 0, Some("the login ended"), None)
                },
                "waiting for a login: run `jssh login gpu` (only a human can log in)",
            ),
            (
                with(Phase::Failed, 0, Some("Jupyter kept dying"), None),
                "failed: Jupyter kept dying",
            ),
            (
                with(Phase::JobEnded, 0, Some("Slurm job 12 ended (TIMEOUT)"), Some(&job)),
                "ended: Slurm job 12 ended (TIMEOUT)",
            ),
            (with(Phase::Stopped, 3, None, None), "stopped"),
        ];
        for (session, want) in &table {
            assert_eq!(status(session), *want, "{:?}", session.phase);
        }
        let mut refused = with(Phase::NeedsLogin, 1, Some("gpu refused the key 2 times in a row"), None);
        refused.login = LoginKind::Key;
        assert_eq!(
            status(&refused),
            "waiting for you: gpu refused the key 2 times in a row"
        );
        let cut = status(&with(Phase::Failed, 0, Some(&long), None));
        assert_eq!(cut.chars().count(), STATUS_MAX + 1, "{cut}");
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn ready_once_when_first_up_and_then_only_changes() {
        let mut said = Said::default();
        let mut s = session(Phase::Starting);
        assert_eq!(said.next(&s).as_deref(), Some("STATUS=connecting to gpu"));
        assert_eq!(said.next(&s), None, "nothing changed: nothing sent");
        s.phase = Phase::Up;
        assert_eq!(
            said.next(&s).as_deref(),
            Some("READY=1\nSTATUS=up: http://127.0.0.1:8888/lab")
        );
        assert_eq!(said.next(&s), None, "idle: nothing sent");
        s.phase = Phase::Reconnecting;
        s.last_error = Some("exited 255".into());
        assert_eq!(said.next(&s).as_deref(), Some("STATUS=reconnecting: exited 255"));
        s.phase = Phase::Up;
        s.reconnects = 1;
        assert_eq!(
            said.next(&s).as_deref(),
            Some("STATUS=up: http://127.0.0.1:8888/lab (reconnects 1)"),
            "ready once"
        );
        s.phase = Phase::Stopped;
        assert_eq!(said.end(&s), "STOPPING=1\nSTATUS=stopped");
    }
}
