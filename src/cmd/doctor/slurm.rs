//! The Slurm checks of a `--slurm` profile, on the login host: sbatch and squeue found as
//! `jssh up` runs them, the profile's sbatch options accepted (`sbatch --test-only`), and the
//! way jssh reaches Jupyter on a compute node (ssh through the login host), tried on the node
//! of the alias's running job when there is one: without a job no node lets a user in where
//! `pam_slurm_adopt` guards them, so nothing else can be tried.

use std::time::{Duration, Instant};

use crate::paths::Paths;
use crate::profile::{LoginKind, Profile};
use crate::remote::{self, Marker};
use crate::slurm::{self, SbatchOptions};
use crate::ssh::Ssh;
use crate::state::StateDir;
use crate::target::Alias;

use super::finding::Finding;
use super::login::ssh_error;
use super::setup_command;

/// Asks the login host about Slurm (see the script for its lines).
const PROBE: &str = include_str!("../../../remote/slurm_doctor.sh");

const COMMANDS: &str = "Slurm commands";
const OPTIONS: &str = "sbatch options";
const NODE: &str = "compute node";

/// Where the probe found sbatch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sbatch {
    /// On the PATH of a command over ssh, where `jssh up` runs it.
    Found(String),
    /// Only on the login shell's PATH.
    LoginOnly(String),
    /// Nowhere; the PATH it searched.
    Missing(String),
    /// The probe did not answer.
    Unknown,
}

/// A job of the alias, as squeue sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct JobSeen {
    id: String,
    state: String,
    node: String,
}

/// What the probe said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    sbatch: Sbatch,
    squeue: Option<String>,
    version: String,
    /// `sbatch --test-only`'s exit code and its last lines.
    test: Option<(i32, Vec<String>)>,
    /// `sinfo -h -o %N`: the node names, or its error.
    nodes: Option<Result<String, String>>,
    prolog: String,
    /// The alias's job as squeue sees it.
    job: Option<JobSeen>,
}

impl Report {
    fn parse(text: &str) -> Self {
        let mut report = Report {
            sbatch: Sbatch::Unknown,
            squeue: None,
            version: String::new(),
            test: None,
            nodes: None,
            prolog: String::new(),
            job: None,
        };
        for line in text.lines() {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let rest = rest.trim();
            match word {
                "sbatch" => report.sbatch = Sbatch::Found(rest.to_owned()),
                "loginsbatch" => report.sbatch = Sbatch::LoginOnly(rest.to_owned()),
                "nosbatch" => report.sbatch = Sbatch::Missing(rest.to_owned()),
                "squeue" => report.squeue = Some(rest.to_owned()),
                "version" => rest.clone_into(&mut report.version),
                "test" => report.test = rest.parse().ok().map(|code| (code, Vec::new())),
                "said" => {
                    if let Some((_, said)) = report.test.as_mut() {
                        said.push(rest.to_owned());
                    }
                }
                "nodes" => report.nodes = Some(Ok(rest.split_whitespace().collect::<Vec<_>>().join(","))),
                "nonodes" => report.nodes = Some(Err(rest.to_owned())),
                "prolog" => rest.clone_into(&mut report.prolog),
                "job" => {
                    let mut fields = rest.splitn(3, '|').map(str::to_owned);
                    if let (Some(id), Some(state), Some(node)) = (fields.next(), fields.next(), fields.next()) {
                        report.job = Some(JobSeen { id, state, node });
                    }
                }
                _ => {}
            }
        }
        report
    }
}

/// The Slurm findings for `profile`, whose sbatch options are `options`.
pub(super) fn slurm_checks(
    paths: &Paths,
    ssh: &Ssh,
    profile: &Profile,
    options: &SbatchOptions,
    limit: Duration,
) -> Vec<Finding> {
    let alias = &profile.alias;
    let run = StateDir::new(paths, alias);
    // The job of the alias's last `up`, if the session names one: its node is the one node
    // doctor can try.
    let job_id = run
        .read_session()
        .ok()
        .flatten()
        .and_then(|s| s.job)
        .and_then(|j| j.id)
        .unwrap_or_default();
    let sent = Marker::new().and_then(|marker| {
        let name = remote::session_name(alias);
        let mut args = vec![remote::LOGIN, name.as_str(), job_id.as_str()];
        args.extend(options.words().iter().map(String::as_str));
        let out = ssh
            .exec(alias, &remote::marked(&marker, PROBE, &args), true)
            .output_within(limit)?;
        Ok((out, marker))
    });
    let report = match sent {
        Ok((out, marker)) => match marker.reply(&String::from_utf8_lossy(&out.stdout)) {
            Some(reply) => Report::parse(reply),
            None => {
                return vec![Finding::fail(
                    COMMANDS,
                    format!(
                        "the Slurm probe did not run ({}): {}",
                        out.status,
                        ssh_error(&out.stderr)
                    ),
                    format!("run `ssh {alias} sbatch --version` to see why"),
                )];
            }
        },
        Err(e) => {
            return vec![Finding::fail(
                COMMANDS,
                format!("{e:#}"),
                format!("run `ssh {alias} sbatch --version` to see why"),
            )];
        }
    };
    let mut checks = report_findings(alias, options, &setup_command(paths, profile), &report);
    if !matches!(report.sbatch, Sbatch::Found(_) | Sbatch::LoginOnly(_)) {
        return checks;
    }
    checks.push(match &report.job {
        Some(job) if job.state == "RUNNING" && is_node_name(&job.node) => node_check(ssh, &run, profile, job, limit),
        job => no_node(alias, job.as_ref(), &report),
    });
    checks
}

/// The findings the probe's report decides alone: the commands and the options.
/// `setup` is the `jssh setup` command line that makes the profile again.
fn report_findings(alias: &Alias, options: &SbatchOptions, setup: &str, report: &Report) -> Vec<Finding> {
    let commands = match &report.sbatch {
        // `jssh up` runs Slurm's commands in the login shell, as the user does.
        Sbatch::Found(path) | Sbatch::LoginOnly(path) => match &report.squeue {
            Some(squeue) => Finding::ok(COMMANDS, format!("{} ({path}, {squeue})", report.version)),
            None => Finding::fail(
                COMMANDS,
                format!("{path} is there, but not squeue, which jssh waits for the job with"),
                format!("ask {alias}'s admins for the Slurm client commands (squeue, scancel)"),
            ),
        },
        Sbatch::Missing(path) => Finding::fail(
            COMMANDS,
            format!("sbatch not found on {alias} (PATH={path}), nor in its login shell"),
            format!("is {alias} a Slurm login node? If not, `{setup} --no-slurm` runs Jupyter there instead"),
        ),
        Sbatch::Unknown => Finding::warn(
            COMMANDS,
            "not checked: the login host did not answer",
            format!("run `ssh {alias} sbatch --version`"),
        ),
    };
    let mut checks = vec![commands];
    if !matches!(report.sbatch, Sbatch::Found(_) | Sbatch::LoginOnly(_)) {
        return checks;
    }
    let said = |lines: &[String]| {
        if lines.is_empty() {
            "no message".to_owned()
        } else {
            lines.join(" / ")
        }
    };
    checks.push(match &report.test {
        Some((0, lines)) => Finding::ok(OPTIONS, format!("`{options}` accepted: {}", said(lines))),
        Some((code, lines)) => Finding::fail(
            OPTIONS,
            format!("sbatch refuses `{options}` (exit {code}): {}", said(lines)),
            format!(
                "change them: `{setup} --slurm '…'` (`sinfo -s` on {alias} lists the partitions, `sacctmgr show assoc \
                 user=$USER` your accounts)"
            ),
        ),
        None => Finding::warn(
            OPTIONS,
            "not checked: `sbatch --test-only` did not answer",
            format!("run `sbatch --test-only {options}` on {alias}"),
        ),
    });
    checks
}

/// Node names as jssh accepts them from Slurm (they become an ssh `HostName`).
fn is_node_name(node: &str) -> bool {
    !node.is_empty() && node.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// The way to the node when no job of the alias runs: what jssh would do, and what Slurm lists.
fn no_node(alias: &Alias, job: Option<&JobSeen>, report: &Report) -> Finding {
    let nodes = match &report.nodes {
        Some(Ok(nodes)) if !nodes.is_empty() => format!("Slurm lists the nodes {}", cut(nodes, 120)),
        Some(Ok(_)) => "Slurm lists no nodes".to_owned(),
        Some(Err(e)) => format!("sinfo failed: {e}"),
        None => "sinfo did not answer".to_owned(),
    };
    let prolog = if report.prolog.to_ascii_lowercase().contains("contain") {
        format!(", PrologFlags={} (as pam_slurm_adopt needs)", report.prolog)
    } else {
        String::new()
    };
    let now = match job {
        Some(job) => format!("its job {} is {}", job.id, job.state),
        None => format!("no job of {alias} runs"),
    };
    Finding::warn(
        NODE,
        format!(
            "not checked: {now}; jssh reaches Jupyter on the job's node with ssh through {alias} \
             (`ssh -W %h:%p {alias}`), which needs the node to let you in while your job runs, else \
             it forwards the node's port from {alias}; {nodes}{prolog}"
        ),
        format!("`jssh up {alias}` tries it when the job starts; `jssh doctor {alias}` tries it while one runs"),
    )
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// ssh to the running job's node through the login host, as the tunnel goes.
fn node_check(ssh: &Ssh, run: &StateDir, profile: &Profile, job: &JobSeen, limit: Duration) -> Finding {
    let (alias, node, id) = (&profile.alias, &job.node, &job.id);
    // Doctor runs these for key logins only: it asks nothing of a host that needs a human.
    let to_node = slurm::node_ssh(ssh, alias, run, LoginKind::Key, node);
    let start = Instant::now();
    let how = format!("ssh through {alias} (`ssh -W %h:%p {alias}`)");
    match to_node.exec(alias, "true", true).output_within(limit) {
        Ok(out) if out.status.success() => Finding::ok(
            NODE,
            format!(
                "{node} (job {id}, RUNNING) logs in in {:.2} s by {how}, the way jssh reaches Jupyter there",
                start.elapsed().as_secs_f64()
            ),
        ),
        Ok(out) => Finding::fail(
            NODE,
            format!(
                "job {id} runs on {node}, but ssh through {alias} cannot log in there: {}",
                ssh_error(&out.stderr)
            ),
            format!(
                "jssh then forwards the node's port from {alias}, where other users of the cluster can \
                 reach it (the token still protects it): ask {alias}'s admins whether users may ssh to \
                 nodes that run their jobs (pam_slurm_adopt), which keeps it private; `ssh -J {alias} {node}` \
                 shows the error"
            ),
        ),
        Err(e) => Finding::fail(
            NODE,
            format!("ssh to {node} through {alias}: {e:#}"),
            format!("run `ssh -J {alias} {node} true` to see why"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::doctor::finding::Status;
    use crate::cmd::doctor::test_fixtures::alias;

    fn findings(text: &str) -> Vec<Finding> {
        let options: SbatchOptions = "--partition=gpu --time=5".parse().unwrap();
        report_findings(&alias(), &options, "jssh setup gpu", &Report::parse(text))
    }

    #[test]
    fn commands_and_accepted_options() {
        let text = "sbatch /usr/bin/sbatch\nsqueue /usr/bin/squeue\nversion slurm 22.05.8\ntest 0\n\
                    said sbatch: Job 3 to start at 2026-01-01T00:00:00 using 1 processors on nodes node1 in \
                    partition gpu\nnodes node1 node[2-4] \nprolog Alloc,Contain\njob 7|RUNNING|node1\n";
        let report = Report::parse(text);
        assert_eq!(report.nodes, Some(Ok("node1,node[2-4]".into())));
        assert_eq!(
            report.job,
            Some(JobSeen {
                id: "7".into(),
                state: "RUNNING".into(),
                node: "node1".into()
            })
        );
        let checks = findings(text);
        assert_eq!(
            checks.iter().map(Finding::line).collect::<Vec<_>>(),
            [
                "✓ Slurm commands: slurm 22.05.8 (/usr/bin/sbatch, /usr/bin/squeue)",
                "✓ sbatch options: `--partition=gpu --time=5` accepted: sbatch: Job 3 to start at \
                 2026-01-01T00:00:00 using 1 processors on nodes node1 in partition gpu",
            ]
        );
    }

    #[test]
    fn refused_options_say_sbatch_reason_and_the_fix() {
        let checks = findings(
            "sbatch /usr/bin/sbatch\nsqueue /usr/bin/squeue\nversion slurm 22.05.8\ntest 1\nsaid sbatch: error: \
             invalid partition specified: gpu\nsaid sbatch: error: Batch job submission failed: Invalid partition \
             name specified\n",
        );
        assert_eq!(checks[1].status, Status::Fail);
        assert_eq!(
            checks[1].detail,
            "sbatch refuses `--partition=gpu --time=5` (exit 1): sbatch: error: invalid partition specified: gpu / \
             sbatch: error: Batch job submission failed: Invalid partition name specified"
        );
        assert!(
            checks[1]
                .fix
                .as_deref()
                .unwrap()
                .starts_with("change them: `jssh setup gpu --slurm '…'`")
        );
    }

    #[test]
    fn sbatch_missing_fails_and_one_in_the_login_shell_is_found() {
        let missing = findings("nosbatch /usr/bin:/bin\n");
        assert_eq!(missing.len(), 1, "nothing more to check: {missing:?}");
        assert_eq!(missing[0].status, Status::Fail);
        assert!(
            missing[0].fix.as_deref().unwrap().contains("jssh setup gpu --no-slurm"),
            "{missing:?}"
        );
        let login = findings("loginsbatch /opt/slurm/bin/sbatch\nsqueue /opt/slurm/bin/squeue\ntest 0\n");
        assert_eq!(
            login.iter().map(|c| c.status).collect::<Vec<_>>(),
            [Status::Ok, Status::Ok],
            "up runs Slurm's commands in the login shell too"
        );
        assert_eq!(findings("")[0].status, Status::Warn, "no answer");
        let no_squeue = findings("sbatch /usr/bin/sbatch\nnosqueue\ntest 0\n");
        assert_eq!(no_squeue[0].status, Status::Fail);
    }

    #[test]
    fn without_a_running_job_the_node_is_not_checked_but_the_method_is_said() {
        let report = Report::parse("sbatch /s\nnodes node[1-2] \nprolog Alloc,Contain\nnojob\n");
        let check = no_node(&alias(), None, &report);
        assert_eq!(check.status, Status::Warn);
        assert!(
            check.detail.contains("no job of gpu runs")
                && check.detail.contains("`ssh -W %h:%p gpu`")
                && check
                    .detail
                    .contains("Slurm lists the nodes node[1-2], PrologFlags=Alloc,Contain"),
            "{check:?}"
        );
        let pending = Report::parse("job 42|PENDING|\n").job;
        let pending = no_node(&alias(), pending.as_ref(), &report);
        assert!(pending.detail.contains("its job 42 is PENDING"), "{pending:?}");
        assert!(!is_node_name("node1 -oProxyCommand=x") && is_node_name("cn-01.cluster"));
    }
}
