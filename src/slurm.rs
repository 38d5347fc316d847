//! Jupyter as a Slurm job: the sbatch options a user gives (checked where they enter), the job
//! as the session records it, and the remote scripts that submit it, wait for it, ask about it
//! and cancel it (`remote/slurm_*.sh`, run on the login node; the job script runs on the
//! compute node). The job script *is* Jupyter (it `exec`s it), so `scancel` and the walltime
//! end it, and its end ends the job. Everything reaches the cluster over the one login.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::profile::LoginKind;
use crate::remote::{Marker, in_login_shell, sh};
use crate::ssh::{NodeHop, Ssh};
use crate::state::StateDir;
use crate::target::Alias;

/// `--slurm 'OPTIONS'`: sbatch options, as words. Only options (each word starts with `-`),
/// nothing that would take jssh's own (the job's name and output, `--parsable`, a `--wrap`
/// command), no control characters. They reach sbatch as separate, quoted arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SbatchOptions(Vec<String>);

/// Options jssh sets itself, or that would replace the job script.
const RESERVED: [&str; 7] = ["--job-name", "-J", "--output", "-o", "--parsable", "--wrap", "--array"];

impl FromStr for SbatchOptions {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        if text.chars().any(char::is_control) {
            bail!("--slurm options may not hold control characters (a newline, a tab)");
        }
        let words = shell_words::split(text).map_err(|e| anyhow::anyhow!("--slurm {text:?}: {e}"))?;
        for (i, word) in words.iter().enumerate() {
            let name = word.split_once('=').map_or(word.as_str(), |(n, _)| n);
            // A separate value only after a short option that takes one (`-c 4`): anything
            // else would be sbatch's script argument, replacing Jupyter's job script.
            let value = i > 0 && takes_value(&words[i - 1]);
            if !word.starts_with('-') && !value {
                bail!(
                    "--slurm takes sbatch options only, long ones with `=` (e.g. --slurm '--partition=gpu \
                     --time=2:00:00 -c 4'), not {word:?}"
                );
            }
            if RESERVED.contains(&name) || (name.starts_with("-J") || name.starts_with("-o")) && !name.starts_with("--")
            {
                bail!("--slurm: jssh sets {name} itself (the job runs Jupyter, named after the alias)");
            }
        }
        Ok(Self(words))
    }
}

/// Whether `word` is a short sbatch option whose value is the next word (`-p gpu`).
fn takes_value(word: &str) -> bool {
    let b = word.as_bytes();
    b.len() == 2 && b[0] == b'-' && b"ACDGLMNSacdeimnpqtwx".contains(&b[1])
}

impl fmt::Display for SbatchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As a user types them: quoted only where a word needs it (shell-words would quote
        // every `=`).
        let plain = |w: &str| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=:,./+@%".contains(&b))
        };
        let words: Vec<String> = self
            .0
            .iter()
            .map(|w| {
                if plain(w) {
                    w.clone()
                } else {
                    shell_words::quote(w).into_owned()
                }
            })
            .collect();
        f.write_str(&words.join(" "))
    }
}

impl Serialize for SbatchOptions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SbatchOptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl SbatchOptions {
    pub(crate) fn words(&self) -> &[String] {
        &self.0
    }
}

/// The job behind a session, as far as this machine knows it. Recorded before `sbatch` runs
/// (by name) and again the moment it answers (by id), so that no job is ever left behind
/// unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Job {
    /// Slurm's job id; `None` while sbatch has not answered.
    pub(crate) id: Option<String>,
    /// The job's name (`squeue -n`), the session's name.
    pub(crate) name: String,
    /// The compute node it runs on.
    pub(crate) node: Option<String>,
    /// Slurm's state (PENDING, RUNNING, TIMEOUT, …) when last seen, and why.
    pub(crate) state: Option<String>,
    pub(crate) reason: Option<String>,
    /// When its walltime ends (Unix seconds).
    pub(crate) ends_unix: Option<u64>,
    /// Whether the walltime warning was given.
    #[serde(default)]
    pub(crate) warned: bool,
    /// How the laptop reaches Jupyter on the node.
    #[serde(default)]
    pub(crate) reach: Reach,
    /// How long before the walltime ends to warn (`--walltime-warning`, minutes).
    #[serde(default)]
    pub(crate) warn_minutes: u64,
}

/// How the laptop reaches Jupyter on a compute node, the first the cluster allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Reach {
    /// Jupyter on the node's loopback, reached by ssh to the node through the login host
    /// (where `pam_slurm_adopt` or an open node lets the user in): nothing about the notebook
    /// is on any network interface.
    #[default]
    NodeSsh,
    /// The last resort, where ssh to the node is refused: Jupyter on the node's network
    /// interface, forwarded from the login host. Other users of the cluster can reach the port
    /// (the token still protects it); jssh says so when it starts this way.
    NodePort,
}

impl Reach {
    /// From a job's `listen` word.
    pub(crate) fn of_listen(word: &str) -> Option<Self> {
        match word {
            "loopback" => Some(Self::NodeSsh),
            "interface" => Some(Self::NodePort),
            _ => None,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::NodeSsh => "ssh through the login host to the node's loopback (private)",
            Self::NodePort => {
                "the login host to the node's network interface (other cluster users can reach the port; \
                 the token protects it)"
            }
        }
    }

    /// What the job script binds: the node's loopback or its interface.
    pub(crate) fn listen(self) -> &'static str {
        match self {
            Self::NodeSsh => "loopback",
            Self::NodePort => "interface",
        }
    }
}

impl Job {
    /// Seconds until the walltime ends (negative once it has), when known.
    pub(crate) fn walltime_left(&self, now_unix: u64) -> Option<i64> {
        let ends = i64::try_from(self.ends_unix?).ok()?;
        Some(ends - i64::try_from(now_unix).ok()?)
    }
}

/// States in which a job still holds (or waits for) its node.
pub(crate) fn is_live(state: &str) -> bool {
    matches!(
        state,
        "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "SUSPENDED" | "REQUEUED" | "RESIZING"
    )
}

const SUBMIT: &str = include_str!("../remote/slurm_submit.sh");
const JOB: &str = include_str!("../remote/slurm_job.sh");
const WAIT: &str = include_str!("../remote/slurm_wait.sh");
const QUERY: &str = include_str!("../remote/slurm_query.sh");
const CANCEL: &str = include_str!("../remote/slurm_cancel.sh");
const WATCH: &str = include_str!("../remote/slurm_watch.sh");
const FIND: &str = include_str!("../remote/slurm_find.sh");

/// `script` with `args`, in the user's login shell: Slurm's commands are often on the PATH
/// only there (an `module load slurm` in the profile), and the reply starts at `marker`.
fn on_login_node(marker: &Marker, script: &str, args: &[&str]) -> String {
    in_login_shell(marker, &sh(script, args))
}

/// Submits the job: stdin is the token's line, then [`job_script`]. Says `job ID`, `refused
/// WHY` or `nosbatch`.
pub(crate) fn submit(marker: &Marker, name: &str, options: &SbatchOptions) -> String {
    let mut args = vec![name];
    args.extend(options.words().iter().map(String::as_str));
    on_login_node(marker, SUBMIT, &args)
}

/// The job script (sbatch's stdin, so its values are quoted into it): the port candidates on
/// the node, the login-shell wrapper, the Jupyter script to exec, and where Jupyter listens:
/// `reach` when known, else the job asks (`jssh up` tries ssh to the node first).
pub(crate) fn job_script(name: &str, ports: &[u16], login: &str, jupyter: &str, reach: Option<Reach>) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "#!/bin/sh\nname={}\nports={}\nlogin={}\nscript={}\nlisten={}\n{JOB}",
        shell_words::quote(name),
        shell_words::quote(&ports.join(" ")),
        shell_words::quote(login),
        shell_words::quote(jupyter),
        reach.map_or("ask", Reach::listen),
    )
}

pub(crate) fn wait(marker: &Marker, name: &str, job: &str) -> String {
    on_login_node(marker, WAIT, &[name, job])
}

/// Looks for the job by name: says `job ID`, `none` or `error`.
pub(crate) fn find(marker: &Marker, name: &str) -> String {
    on_login_node(marker, FIND, &[name])
}

pub(crate) fn query(marker: &Marker, job: &str) -> String {
    on_login_node(marker, QUERY, &[job])
}

pub(crate) fn cancel(marker: &Marker, name: &str, job: &str) -> String {
    on_login_node(marker, CANCEL, &[name, job])
}

/// Runs on the node over the tunnel's connection until the job's Jupyter (`pid`) exits.
pub(crate) fn watch(pid: u32) -> String {
    sh(WATCH, &[&pid.to_string()])
}

/// The ssh settings that reach `node` through the alias's login host (see [`NodeHop`]).
pub(crate) fn node_ssh(ssh: &Ssh, alias: &Alias, run: &StateDir, login: LoginKind, node: &str) -> Ssh {
    let mut known_hosts = vec![run.node_known_hosts().to_string_lossy().into_owned()];
    known_hosts.extend(ssh.user_known_hosts(alias));
    ssh.to_node(NodeHop {
        alias: alias.clone(),
        node: node.to_owned(),
        login_control: (login == LoginKind::Prompt).then(|| run.login_control()),
        known_hosts,
    })
}

/// A line from [`wait`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WaitEvent {
    /// Still waiting: Slurm's state, its reason, the expected start (as squeue prints it).
    Waiting {
        state: String,
        reason: String,
        start: String,
    },
    Running {
        node: String,
        pid: u32,
        port: u16,
        /// `loopback` or `interface`; `ask`: the job waits for `jssh up` to say (a line on the
        /// wait's stdin).
        listen: String,
    },
    Ready,
    Ended {
        state: String,
        reason: String,
    },
    Log(String),
}

impl WaitEvent {
    pub(crate) fn parse(line: &str) -> Option<Self> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let mut bars = rest.split('|').map(str::to_owned);
        let mut next = || bars.next().unwrap_or_default();
        Some(match word {
            "state" => Self::Waiting {
                state: next(),
                reason: next(),
                start: next(),
            },
            "running" => {
                let mut f = rest.split_whitespace();
                Self::Running {
                    node: f.next()?.to_owned(),
                    pid: f.next()?.parse().ok()?,
                    port: f.next()?.parse().ok()?,
                    listen: f.next().unwrap_or("loopback").to_owned(),
                }
            }
            "ready" => Self::Ready,
            "ended" => Self::Ended {
                state: next(),
                reason: next(),
            },
            "log" => Self::Log(rest.to_owned()),
            _ => return None,
        })
    }
}

/// What [`query`] said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Query {
    State {
        state: String,
        reason: String,
        node: String,
        ends_unix: Option<u64>,
    },
    /// Slurm no longer knows the job (it ended long enough ago).
    Gone,
    /// squeue failed: nothing is known.
    Unknown,
}

impl Query {
    pub(crate) fn parse(reply: &str) -> Self {
        let line = reply.lines().next().unwrap_or_default();
        match line.split_once(' ') {
            Some(("state", rest)) => {
                let f: Vec<&str> = rest.split('|').collect();
                Self::State {
                    state: f.first().copied().unwrap_or_default().to_owned(),
                    reason: f.get(1).copied().unwrap_or_default().to_owned(),
                    node: f.get(2).copied().unwrap_or_default().to_owned(),
                    ends_unix: f.get(3).and_then(|e| e.parse().ok()),
                }
            }
            _ if line == "gone" => Self::Gone,
            _ => Self::Unknown,
        }
    }
}

/// "TIMEOUT (TimeLimit)", or the state alone when there is no reason worth saying.
pub(crate) fn describe(state: &str, reason: &str) -> String {
    if reason.is_empty() || reason == "None" {
        state.to_owned()
    } else {
        format!("{state} ({reason})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbatch_options_are_options_only_and_never_jssh_own() {
        let ok: SbatchOptions = "--partition=gpu --time=1:00:00 -c 4 '--gres=gpu:1'".parse().unwrap();
        assert_eq!(
            ok.words(),
            ["--partition=gpu", "--time=1:00:00", "-c", "4", "--gres=gpu:1"]
        );
        assert_eq!(ok.to_string().parse::<SbatchOptions>().unwrap(), ok);
        for bad in [
            "--job-name=x",
            "-Jx",
            "-o /tmp/x",
            "--output=/tmp/x",
            "--wrap='rm -rf ~'",
            "--time=1\n--x",
            "'--time=1",
            "--parsable",
            "--exclusive /tmp/evil.sh",
            "-c 4 /tmp/evil.sh",
        ] {
            assert!(bad.parse::<SbatchOptions>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn wait_and_query_lines_parse() {
        assert_eq!(
            WaitEvent::parse("state PENDING|Priority|2026-11-30T07:00:00"),
            Some(WaitEvent::Waiting {
                state: "PENDING".into(),
                reason: "Priority".into(),
                start: "2026-11-30T07:00:00".into()
            })
        );
        assert_eq!(
            WaitEvent::parse("running node1 4242 8890 ask"),
            Some(WaitEvent::Running {
                node: "node1".into(),
                pid: 4242,
                port: 8890,
                listen: "ask".into(),
            })
        );
        assert_eq!(
            WaitEvent::parse("ended TIMEOUT|TimeLimit"),
            Some(WaitEvent::Ended {
                state: "TIMEOUT".into(),
                reason: "TimeLimit".into()
            })
        );
        assert_eq!(
            Query::parse("state RUNNING|None|node1|1796000000\n"),
            Query::State {
                state: "RUNNING".into(),
                reason: "None".into(),
                node: "node1".into(),
                ends_unix: Some(1_796_000_000)
            }
        );
        assert_eq!(Query::parse("gone"), Query::Gone);
        assert_eq!(Query::parse(""), Query::Unknown);
        assert_eq!(describe("TIMEOUT", "TimeLimit"), "TIMEOUT (TimeLimit)");
        assert_eq!(describe("CANCELLED", "None"), "CANCELLED");
    }

    #[test]
    fn the_job_script_quotes_every_value() {
        let s = job_script("jssh-a+b", &[8890, 8891], "exec sh", "echo '$(x)'", None);
        assert!(s.starts_with("#!/bin/sh\nname=jssh-a+b\nports='8890 8891'\n"), "{s}");
        assert!(s.contains("script='echo '\\''$(x)'\\'''\nlisten=ask\n"), "{s}");
    }
}
