//! Issue 12, mode c: a cluster that refuses ssh to its compute nodes. The first job asks `jssh
//! up` where Jupyter should listen; ssh to the node fails, so Jupyter listens on the node's
//! interface and the tunnel forwards it from the login host. `up` says so once, the profile
//! remembers it, and the URL works with the token only.

use std::time::{Duration, Instant};

use crate::slurm::NODE;
use crate::slurm_up::Hpc;
use crate::up::{free_port, get, parse_url};
use crate::util::{jssh_std, status, stderr, stdout};

#[test]
fn where_ssh_to_the_node_is_refused_the_nodes_port_is_forwarded_from_the_login_host() {
    let Some(mut hpc) = Hpc::start("open", "--time=5") else {
        return;
    };
    // No sshd on the node: ssh through the login host to it is refused.
    hpc.cluster.node_sshd().outage();
    let port = free_port();
    let begin = Instant::now();
    let out = jssh_std(&hpc.client)
        .args(["up", "open", "-d", "--port", &port, "--env", &hpc.env])
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "up: {said}");
    eprintln!("up with ssh to the node refused took {:?}", begin.elapsed());
    assert!(
        said.contains("warning: ssh cannot reach node1 through open") && said.contains("other users of the cluster"),
        "up warns that the port is on the node's network: {said}"
    );
    let url = stdout(&out)
        .lines()
        .rfind(|l| l.starts_with("http"))
        .unwrap_or_default()
        .to_owned();
    let (local, token) = parse_url(&url);
    assert_eq!(get(local, "/api/status", Some(&token)), 200, "{said}");
    assert_eq!(get(local, "/api/status", None), 403, "the token is still needed");

    let st = status(&hpc.client, "open");
    assert_eq!(st["job"]["reach"], "node-port", "{st}");
    assert_eq!(st["job"]["node"], NODE, "{st}");
    let hosts = std::fs::read_to_string(hpc.client.config_dir().join("hosts.toml")).unwrap();
    assert!(hosts.contains("slurm_reach = \"node-port\""), "remembered: {hosts}");

    // The next job is told at once (no question, no warning) and works the same way.
    let down = jssh_std(&hpc.client).args(["down", "open"]).output().unwrap();
    assert!(down.status.success(), "down: {}{}", stdout(&down), stderr(&down));
    let again = jssh_std(&hpc.client)
        .args(["up", "open", "-d", "--port", &port, "--env", &hpc.env])
        .output()
        .unwrap();
    let said = format!("{}{}", stdout(&again), stderr(&again));
    assert!(again.status.success(), "up again: {said}");
    assert!(!said.contains("warning: ssh cannot reach"), "said once: {said}");
    let url = stdout(&again)
        .lines()
        .rfind(|l| l.starts_with("http"))
        .unwrap_or_default()
        .to_owned();
    let (local, token) = parse_url(&url);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(local, "/api/status", Some(&token)) != 200 {
        assert!(Instant::now() < deadline, "the second job's URL answers");
        std::thread::sleep(Duration::from_millis(100));
    }
    let down = jssh_std(&hpc.client).args(["down", "open"]).output().unwrap();
    assert!(down.status.success(), "down: {}{}", stdout(&down), stderr(&down));
}

/// Issue 12, "no job is ever left running that jssh does not know about": a submission whose
/// answer never came back (the session has the job's name, not its id) is found by name.
/// `down` cancels it; `up` would attach to it rather than submit a second.
#[test]
fn a_job_whose_sbatch_answer_was_lost_is_found_by_its_name() {
    let Some(hpc) = Hpc::start("lost", "--time=5") else {
        return;
    };
    // Queued, so that nothing runs and the session keeps the job at PENDING.
    hpc.cluster.scontrol(&["update", "PartitionName=debug", "State=DOWN"]);
    let out = jssh_std(&hpc.client)
        .args(["up", "lost", "-d", "--env", &hpc.env])
        .output()
        .unwrap();
    assert!(out.status.success(), "up: {}{}", stdout(&out), stderr(&out));
    let session_path = hpc.client.state_dir().join("lost/session.json");
    let mut session: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&session_path).unwrap()).unwrap();
    let id = session["job"]["id"].as_str().expect("the job's id").to_owned();
    // As if the connection had dropped between sbatch and its answer.
    session["job"]["id"] = serde_json::Value::Null;
    std::fs::write(&session_path, serde_json::to_string(&session).unwrap()).unwrap();

    let st = status(&hpc.client, "lost");
    assert_eq!(st["job"]["id"], serde_json::Value::Null, "{st}");
    let down = jssh_std(&hpc.client).args(["down", "lost"]).output().unwrap();
    let said = format!("{}{}", stdout(&down), stderr(&down));
    assert!(down.status.success(), "down: {said}");
    assert!(said.contains(&format!("cancelled Slurm job {id}")), "{said}");
    assert_eq!(hpc.cluster.job_state(&id).as_deref(), Some("CANCELLED"));
}
