//! `jssh doctor` for a `--slurm` alias against the real Slurm of `slurm.rs` (issue 12): sbatch
//! and squeue found on the login host, the sbatch options accepted or refused with sbatch's own
//! reason, and the way to the compute node tried on the node of a running job of the alias.
//! Needs root, as the cluster does.

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::Client;
use crate::slurm::{Cluster, NODE};
use crate::util::{client_ssh, jssh, set_up_at, stderr, stdout};

/// `jssh doctor ALIAS`: its report and how long it took.
fn doctor(client: &Client, alias: &str) -> (Output, Duration) {
    let begin = Instant::now();
    let out = jssh(client).args(["doctor", alias]).output().unwrap();
    (out, begin.elapsed())
}

/// The report's lines for `alias` that start with `check` (after the status symbol).
fn lines<'a>(report: &'a str, check: &str) -> Vec<&'a str> {
    report
        .lines()
        .map(str::trim)
        .filter(|l| l.trim_start_matches(['✓', '✗', '!']).trim_start().starts_with(check))
        .collect()
}

/// `sbatch --parsable OPTIONS` of a sleeping job over the alias, as the user; its id.
fn submit(client: &Client, alias: &str, options: &str) -> String {
    let mut child = client_ssh(client, true)
        .args(["--", alias, &format!("sbatch --parsable {options}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"#!/bin/sh\nexec sleep 300\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sbatch: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

#[test]
fn doctor_checks_sbatch_the_options_and_the_way_to_the_jobs_node() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let client = cluster.client();
    let login = cluster.login_addr().to_string();
    set_up_at(&client, &login, 22, "hpc", &["--slurm", "--time=5"]);
    set_up_at(&client, &login, 22, "nope", &["--slurm", "--partition=nope"]);

    let (out, took) = doctor(&client, "hpc");
    let report = stdout(&out);
    eprintln!("doctor hpc, no job ({took:?}):\n{report}{}", stderr(&out));
    let commands = lines(&report, "Slurm commands:");
    assert!(
        commands.len() == 1 && commands[0].starts_with("✓ Slurm commands: slurm") && commands[0].contains("/sbatch"),
        "{report}"
    );
    let options = lines(&report, "sbatch options:");
    assert!(
        options.len() == 1
            && options[0].starts_with("✓ sbatch options: `--time=5` accepted: sbatch: Job ")
            && options[0].contains(&format!("on nodes {NODE} in partition debug")),
        "{report}"
    );
    let node = lines(&report, "compute node:");
    assert!(
        node.len() == 1
            && node[0].starts_with("! compute node: not checked: no job of hpc runs")
            && node[0].contains("`ssh -W %h:%p hpc`")
            && node[0].contains(&format!("Slurm lists the nodes {NODE}")),
        "{report}"
    );

    let (out, took) = doctor(&client, "nope");
    let report = stdout(&out);
    eprintln!("doctor nope ({took:?}):\n{report}");
    assert!(!out.status.success(), "a refused option fails doctor: {report}");
    let options = lines(&report, "sbatch options:");
    assert!(
        options.len() == 1
            && options[0].starts_with("✗ sbatch options: sbatch refuses `--partition=nope` (exit 1): ")
            && options[0].contains("invalid partition specified: nope")
            && options[0].contains(": change them: `jssh setup nope --host "),
        "sbatch's own reason and the fix: {report}"
    );
    assert!(
        lines(&report, "compute node:").len() == 1,
        "the way to the node is still said: {report}"
    );

    // A running job of the alias (found by its name, with no session on this machine): its
    // node is tried the way the tunnel goes, through the login host.
    let job = submit(&client, "hpc", "--job-name=jssh-hpc --time=5");
    cluster.wait_job_state(&job, "RUNNING", Duration::from_secs(20));
    let (out, took) = doctor(&client, "hpc");
    let report = stdout(&out);
    eprintln!("doctor hpc, job {job} running ({took:?}):\n{report}");
    let node = lines(&report, "compute node:");
    assert!(
        node.len() == 1 && node[0].starts_with(&format!("✓ compute node: {NODE} (job {job}, RUNNING) logs in in ")),
        "{report}"
    );

    // The node's sshd down: the way jssh reaches Jupyter there fails, and doctor says so.
    cluster.node_sshd().outage();
    let (out, took) = doctor(&client, "hpc");
    let report = stdout(&out);
    eprintln!("doctor hpc, the node's sshd down ({took:?}):\n{report}");
    let node = lines(&report, "compute node:");
    assert!(
        node.len() == 1
            && node[0].starts_with(&format!(
                "✗ compute node: job {job} runs on {NODE}, but ssh through hpc cannot log in there: "
            ))
            && node[0].contains("pam_slurm_adopt"),
        "{report}"
    );
    assert!(!out.status.success(), "{report}");
    cluster.node_sshd().restart();
}
