//! `jssh up --slurm` against the real Slurm of `slurm.rs` (issue 12): Jupyter runs as a job on
//! the compute node, which only the login host reaches, and the laptop reaches it with ssh
//! through the login host; the job's whole life (queued, running, cancelled by `down` or from
//! outside, ended by its walltime) shows in `status`, and nothing is ever submitted twice.
//! Needs root, as the cluster does: without it every test says so and passes.
//!
//! Every test prints what it measured (`--nocapture` shows it).

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::unistd::{User, geteuid};
use serde_json::Value;

use crate::fixture::Client;
use crate::slurm::{Cluster, NODE};
use crate::up::{answers_within, free_port, get, parse_url, supervisors, tunnel_ssh};
use crate::util::{Proc, jssh_std, kill, local_status, process_table, set_up_at, status, stderr, stdout, venv};

/// How long any one `jssh` command may take here before the test gives up on it: a job that
/// starts takes ~3 s (the cluster's first) plus Jupyter's own start, 2–4 s on 2 idle cores
/// but up to 80 s seen on a loaded machine.
const COMMAND_LIMIT: Duration = Duration::from_secs(150);

/// A cluster, a client of its login host, and one alias set up with `--slurm`. On drop, every
/// local process of the client (jssh, its supervisor, their ssh) is killed, so a failing test
/// leaves nothing running outside the cluster (whose own drop ends everything on its hosts).
pub(crate) struct Hpc {
    alias: String,
    pub(crate) client: Client,
    pub(crate) cluster: Cluster,
    pub(crate) env: String,
}

impl Drop for Hpc {
    fn drop(&mut self) {
        let root = self.client.root().display().to_string();
        let me = std::process::id();
        for p in process_table() {
            if p.pid != me && p.command.contains(&root) {
                kill(p.pid, "-KILL");
            }
        }
    }
}

impl Hpc {
    /// A cluster with `alias` set up on its login host with `--slurm OPTIONS`; `None` (the
    /// cluster said why) when not root.
    pub(crate) fn start(alias: &str, options: &str) -> Option<Hpc> {
        let begin = Instant::now();
        let cluster = Cluster::start()?;
        let client = cluster.client();
        let env = format!("venv:{}", venv_on_cluster(&cluster));
        set_up_at(
            &client,
            &cluster.login_addr().to_string(),
            22,
            alias,
            &["--slurm", options],
        );
        eprintln!(
            "cluster up in {:?}, {alias} set up with --slurm '{options}' {:?} after the start",
            cluster.started_in(),
            begin.elapsed()
        );
        Some(Hpc {
            alias: alias.to_owned(),
            client,
            cluster,
            env,
        })
    }

    /// [`Hpc::start`] on a cluster whose login host asks for a TOTP code after the key: set up
    /// with the key the host already takes (nothing can install one without the code).
    fn start_behind_otp(alias: &str, options: &str) -> Option<Hpc> {
        let cluster = Cluster::start_with(true)?;
        let client = cluster.client();
        let env = format!("venv:{}", venv_on_cluster(&cluster));
        let key = client.ssh_dir().join("bootstrap_ed25519");
        let out = crate::util::jssh(&client)
            .args([
                "setup",
                alias,
                "--host",
                &cluster.login_addr().to_string(),
                "--port",
                "22",
            ])
            .args(["--no-copy-id", "--identity", key.to_str().unwrap(), "--slurm", options])
            .output()
            .unwrap();
        assert!(out.status.success(), "setup: {}{}", stdout(&out), stderr(&out));
        Some(Hpc {
            alias: alias.to_owned(),
            client,
            cluster,
            env,
        })
    }

    /// The job's name in Slurm.
    fn job_name(&self) -> String {
        format!("jssh-{}", self.alias)
    }

    /// `jssh ARGS`, given [`COMMAND_LIMIT`]; its output.
    fn jssh(&self, args: &[&str]) -> Output {
        run_within(&self.client, args, COMMAND_LIMIT).unwrap_or_else(|e| panic!("{e}\n{}", self.evidence()))
    }

    /// `jssh up ALIAS -d --env venv:… EXTRA`, which must succeed; its output.
    fn up(&self, extra: &[&str]) -> Output {
        let mut args = vec!["up", &self.alias, "-d", "--env", &self.env];
        args.extend_from_slice(extra);
        let out = self.jssh(&args);
        assert!(
            out.status.success(),
            "up: {}{}\n{}",
            stdout(&out),
            stderr(&out),
            self.evidence()
        );
        out
    }

    /// [`Hpc::up`] that must print a URL (its last line), while the job's progress through
    /// the queue is timed from the login host. Returns the URL.
    fn up_timed(&self, extra: &[&str]) -> String {
        let name = self.job_name();
        let begin = Instant::now();
        let wall_clock = std::time::SystemTime::now();
        let done = std::sync::atomic::AtomicBool::new(false);
        let (out, seen) = std::thread::scope(|scope| {
            let poller = scope.spawn(|| {
                let (mut queued, mut running) = (None, None);
                while !done.load(std::sync::atomic::Ordering::Relaxed) && running.is_none() {
                    let jobs = jobs_named(&self.cluster, &name);
                    if queued.is_none() && !jobs.is_empty() {
                        queued = Some(begin.elapsed());
                    }
                    if jobs.iter().any(|(_, state)| state == "RUNNING") {
                        running = Some(begin.elapsed());
                    }
                    sleep(Duration::from_millis(20));
                }
                (queued, running)
            });
            let out = self.up(extra);
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            (out, poller.join().unwrap())
        });
        let returned = begin.elapsed();
        let url = last_line(&out);
        let (port, token) = parse_url(&url);
        assert_eq!(get(port, "/api/status", Some(&token)), 200, "{}", self.evidence());
        let (queued, running) = seen;
        // The job's own reports: its script starts (`job`), Jupyter listens on the node
        // (`ready`), by their times in the shared home.
        let run = self.cluster.home().join(".jssh/run").join(&name);
        let at = |file: &str| {
            fs::metadata(run.join(file))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(wall_clock).ok())
        };
        let (script, ready) = (at("job"), at("ready"));
        eprintln!(
            "up: the job's script started after {script:?}, Jupyter listened on the node after {ready:?} \
             (its own start {:?}), the URL answered {:?} after that",
            script.zip(ready).map(|(s, r)| r.saturating_sub(s)),
            ready.map(|r| returned.saturating_sub(r)),
        );
        eprintln!(
            "up: the job in squeue after {queued:?}, RUNNING after {running:?} (sbatch → RUNNING ≈ {:?}), \
             up returned with an answering URL after {returned:?} (RUNNING → URL {:?})",
            running.zip(queued).map(|(r, q)| r.saturating_sub(q)),
            running.map(|r| returned.saturating_sub(r)),
        );
        url
    }

    /// The id of the one job jssh submitted for the alias, from `squeue` (and it is the one
    /// `status` names).
    fn the_job(&self) -> String {
        let jobs = jobs_named(&self.cluster, &self.job_name());
        assert_eq!(jobs.len(), 1, "one job for {}: {jobs:?}", self.alias);
        let id = jobs[0].0.clone();
        let st = local_status(&self.client, &self.alias);
        assert_eq!(job_id(&st), id, "status names the job: {st}");
        id
    }

    fn log(&self) -> String {
        fs::read_to_string(self.client.state_dir().join(&self.alias).join("supervisor.log")).unwrap_or_default()
    }

    /// The supervisor's log, the session file, the job's reports and the daemons' logs: what
    /// a failure message needs.
    fn evidence(&self) -> String {
        let session =
            fs::read_to_string(self.client.state_dir().join(&self.alias).join("session.json")).unwrap_or_default();
        let run = self.cluster.home().join(".jssh/run").join(self.job_name());
        let mut reports = String::new();
        for entry in fs::read_dir(&run).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "token" {
                // Never the token itself in a message: its length and last byte are evidence enough.
                let token = fs::read(entry.path()).unwrap_or_default();
                let _ = writeln!(
                    reports,
                    "--- token: {} bytes, {}",
                    token.len(),
                    if token.ends_with(b"\n") {
                        "ending in a newline"
                    } else {
                        "no newline"
                    }
                );
                continue;
            }
            let text = fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let _ = writeln!(reports, "--- {name}");
            for line in tail.into_iter().rev() {
                reports += line;
                reports.push('\n');
            }
        }
        format!(
            "supervisor log:\n{}\nsession: {session}\njob reports in {}:\n{reports}squeue: {:?}\n{}",
            self.log(),
            run.display(),
            jobs_named(&self.cluster, &self.job_name()),
            self.cluster.logs()
        )
    }

    /// Polls `jssh status --local` until `done` holds for it; the row and how long that took.
    fn wait_status(&self, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> (Value, Duration) {
        let begin = Instant::now();
        loop {
            let st = local_status(&self.client, &self.alias);
            if done(&st) {
                return (st, begin.elapsed());
            }
            assert!(
                begin.elapsed() < limit,
                "status is not {what} within {limit:?}: {st}\n{}",
                self.evidence()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// `jssh down ALIAS`, which must succeed; how long it took.
    fn down(&self) -> Duration {
        let begin = Instant::now();
        let out = self.jssh(&["down", &self.alias]);
        assert!(
            out.status.success(),
            "down: {}{}\n{}",
            stdout(&out),
            stderr(&out),
            self.evidence()
        );
        begin.elapsed()
    }
}

/// The test venv at a path that resolves on the cluster's hosts too. There the user's home
/// from the password database is the cluster's shared home, which hides a venv kept under the
/// real home (the default, `~/.cache/jssh-test-venv`) and the Python it was made from (e.g.
/// pyenv's). Such paths are bound at the same place on both hosts, from a plain (not
/// recursive) bind of `/` made inside each host, where the shared home does not cover them;
/// the mounts live and die with the hosts' private mount namespaces. (The kernel refuses a
/// bind from this process's namespace, and a symlink through `/proc/PID/root` is not enough:
/// node's own `realpath` reads that link as `/` and loops, so `jupyter lab`'s `yarn config`
/// never ends.)
pub(crate) fn venv_on_cluster(cluster: &Cluster) -> String {
    let venv = venv();
    let home = User::from_uid(geteuid()).unwrap().unwrap().dir;
    let mut needed = vec![PathBuf::from(&venv)];
    // The interpreter's prefix: `home = PREFIX/bin` in pyvenv.cfg.
    let cfg = fs::read_to_string(Path::new(&venv).join("pyvenv.cfg")).unwrap_or_default();
    if let Some(bin) = cfg.lines().find_map(|l| {
        let (key, value) = l.split_once('=')?;
        (key.trim() == "home").then(|| PathBuf::from(value.trim()))
    }) && let Some(prefix) = bin.parent()
    {
        needed.push(prefix.to_owned());
    }
    let hidden: Vec<&PathBuf> = needed.iter().filter(|p| p.starts_with(&home)).collect();
    if !hidden.is_empty() {
        for path in &hidden {
            fs::create_dir_all(cluster.home().join(path.strip_prefix(&home).unwrap())).unwrap();
        }
        let view = tempfile::Builder::new().prefix("jssh-rootview-").tempdir().unwrap();
        for mut host in [cluster.on_login("sh"), cluster.on_node("sh")] {
            let out = host
                .args([
                    "-c",
                    r#"set -e; v=$1; shift; mount --bind / "$v"
                       for p in "$@"; do mount --bind "$v$p" "$p"; done; umount "$v""#,
                    "sh",
                ])
                .arg(view.path())
                .args(&hidden)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "bind the venv on a cluster host: {}",
                stderr(&out)
            );
        }
    }
    let check = cluster
        .on_node("test")
        .args(["-x", &format!("{venv}/bin/jupyter")])
        .status()
        .unwrap();
    assert!(check.success(), "the venv {venv} is not usable on the node");
    venv
}

/// Runs `jssh ARGS` for `client`; `Err` with what it printed when it was still running after
/// `limit` (it is killed then).
fn run_within(client: &Client, args: &[&str], limit: Duration) -> Result<Output, String> {
    let mut child = jssh_std(client)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipes.0.read_to_end(&mut out);
        out
    });
    let err = std::thread::spawn(move || {
        let mut err = Vec::new();
        let _ = pipes.1.read_to_end(&mut err);
        err
    });
    let begin = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if begin.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "jssh {} did not end within {limit:?}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.join().unwrap()),
                String::from_utf8_lossy(&err.join().unwrap()),
            ));
        }
        sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    })
}

fn last_line(out: &Output) -> String {
    stdout(out).lines().last().unwrap_or_default().trim().to_owned()
}

/// Every job Slurm knows by `name` (ended ones too, for `MinJobAge`): `(id, state)`.
fn jobs_named(cluster: &Cluster, name: &str) -> Vec<(String, String)> {
    let out = cluster
        .on_login("squeue")
        .args(["-h", "-t", "all", "-n", name, "-o", "%i %T"])
        .output()
        .unwrap();
    assert!(out.status.success(), "squeue: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, state)| (id.to_owned(), state.trim().to_owned()))
        .collect()
}

/// `status`'s job id, as a string whether it is printed as one or as a number.
fn job_id(st: &Value) -> String {
    match &st["job"]["id"] {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        other => panic!("no job id in status: {other} in {st}"),
    }
}

/// Whether a TCP connection to `addr:port` opens from inside a cluster host (`on` is
/// [`Cluster::on_login`] or [`Cluster::on_node`]); bash's `/dev/tcp`, so no client is needed
/// there.
fn connects(mut on: std::process::Command, addr: &str, port: u16) -> bool {
    on.args(["bash", "-c", &format!("exec 3<>/dev/tcp/{addr}/{port}")])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The addresses that listen on TCP `port` in a host's network namespace, from its
/// `/proc/net/tcp{,6}` (which show the reader's namespace).
fn listeners_on(on: impl Fn() -> std::process::Command, port: u16) -> Vec<String> {
    let hex = format!(":{port:04X}");
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let mut cat = on();
        let out = cat.arg("cat").arg(table).output().unwrap();
        for line in stdout(&out).lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 3 && fields[3] == "0A" && fields[1].ends_with(&hex) {
                let addr = fields[1].split(':').next().unwrap();
                found.push(if addr.len() == 8 {
                    let n = u32::from_str_radix(addr, 16).unwrap();
                    std::net::Ipv4Addr::from(n.swap_bytes()).to_string()
                } else {
                    format!("[{addr}]")
                });
            }
        }
    }
    found
}

/// Issue 12, "pending → running → URL with the token": a job held in the queue makes `up -d`
/// return after its 10 s with the job's id and state (nothing forwarded yet), and `status`
/// says why it waits; once the queue moves, `up` attaches to that same job and the URL answers
/// with the token only.
#[test]
fn a_queued_job_is_waited_for_then_its_url_answers_with_the_token() {
    let Some(hpc) = Hpc::start("q", "--time=5") else {
        return;
    };
    // Nothing runs while the partition is down: the job waits with reason PartitionDown.
    hpc.cluster.scontrol(&["update", "PartitionName=debug", "State=DOWN"]);
    let port = free_port();
    let begin = Instant::now();
    let out = hpc.up(&["--port", &port]);
    let waited = begin.elapsed();
    let said = stdout(&out);
    eprintln!("up -d with the job queued returned after {waited:?}: {said}");
    let jobs = jobs_named(&hpc.cluster, &hpc.job_name());
    assert_eq!(jobs.len(), 1, "one job submitted: {jobs:?}");
    let (id, state) = jobs[0].clone();
    assert_eq!(state, "PENDING", "{jobs:?}");
    assert!(
        said.contains(&id) && !said.contains("http://"),
        "up says which job waits, and gives no URL yet: {said}"
    );
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(25),
        "up -d waits ~10 s for a queued job, took {waited:?}"
    );
    let st = status(&hpc.client, "q");
    assert_eq!(st["state"], "queued", "{st}");
    assert_eq!(job_id(&st), id, "{st}");
    assert_eq!(st["job"]["state"], "PENDING", "{st}");
    assert!(
        st["job"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("PartitionDown")),
        "status says why the job waits: {st}"
    );
    assert_eq!(
        get(port.parse().unwrap(), "/api/status", None),
        0,
        "nothing forwarded yet"
    );

    // The queue moves: the job runs, and `up` attaches to it.
    let released = Instant::now();
    hpc.cluster.scontrol(&["update", "PartitionName=debug", "State=UP"]);
    let running = hpc.cluster.wait_job_state(&id, "RUNNING", Duration::from_secs(30));
    let out = hpc.up(&[]);
    let url = last_line(&out);
    let (local, token) = parse_url(&url);
    eprintln!(
        "partition up → RUNNING {running:?}, → up returned with the URL {:?}",
        released.elapsed()
    );
    assert_eq!(local.to_string(), port, "the port the first up claimed");
    assert_eq!(get(local, "/api/status", Some(&token)), 200, "{}", hpc.evidence());
    let without = get(local, "/api/status", None);
    assert!(without == 403 || without == 302, "the token is enforced: {without}");
    assert_eq!(hpc.the_job(), id, "the same job, no second one");
    let st = status(&hpc.client, "q");
    assert_eq!(st["state"], "up", "{st}");
    assert_eq!(st["url"], url.as_str(), "{st}");
    assert_eq!(st["job"]["state"], "RUNNING", "{st}");
    assert_eq!(st["job"]["node"], NODE, "{st}");
    assert!(
        st["job"]["reach"].as_str().is_some_and(|r| !r.is_empty()),
        "status says how the node is reached: {st}"
    );
    let left = st["job"]["walltime_left_secs"].as_i64();
    assert!(
        left.is_some_and(|l| l > 60 && l <= 300),
        "--time=5 leaves at most 300 s: {st}"
    );
    hpc.down();
}

/// Issue 12, "the node's Jupyter reachable only through jssh": it listens on the node's
/// loopback alone, the login host cannot reach it (neither at its own loopback nor at the
/// node's address), and the token is in no process's argv and only in private files.
#[test]
fn the_nodes_jupyter_is_reached_only_through_jssh() {
    let Some(hpc) = Hpc::start("private", "--time=5") else {
        return;
    };
    let url = hpc.up_timed(&["--port", &free_port()]);
    let (_, token) = parse_url(&url);
    let id = hpc.the_job();
    let st = status(&hpc.client, "private");
    assert_eq!(st["job"]["node"], NODE, "{st}");
    assert_eq!(st["remote_node"], NODE, "{st}");
    let port = u16::try_from(
        st["remote_port"]
            .as_u64()
            .unwrap_or_else(|| panic!("no remote_port: {st}")),
    )
    .unwrap();
    assert_eq!(hpc.cluster.job_state(&id).as_deref(), Some("RUNNING"));

    // Where it listens: the node's loopback, and nowhere else on the node.
    let listeners = listeners_on(|| hpc.cluster.on_node("env"), port);
    assert!(
        !listeners.is_empty() && listeners.iter().all(|a| a == "127.0.0.1"),
        "Jupyter listens on the node's 127.0.0.1 only: {listeners:?}"
    );
    assert!(
        connects(hpc.cluster.on_node("env"), "127.0.0.1", port),
        "the node itself reaches its loopback (the checks below would prove nothing otherwise)"
    );
    // Not from the login host: its own loopback holds nothing, the node's address refuses.
    assert!(
        !connects(hpc.cluster.on_login("env"), "127.0.0.1", port),
        "the login host's loopback reaches Jupyter"
    );
    assert!(
        !connects(hpc.cluster.on_login("env"), NODE, port),
        "the login host reaches Jupyter at the node's address"
    );
    assert!(
        !connects(hpc.cluster.on_node("env"), &hpc.cluster.node_addr().to_string(), port),
        "Jupyter answers on the node's network address"
    );

    // The token: no argv (the hosts share this machine's process table), private files only.
    let leaks: Vec<_> = process_table()
        .into_iter()
        .filter(|p| p.command.contains(&token))
        .collect();
    assert!(leaks.is_empty(), "the token is on a command line: {leaks:?}");
    let run = hpc.cluster.home().join(".jssh/run").join(hpc.job_name());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&run), 0o700, "{}", run.display());
    let mut holders = Vec::new();
    for entry in fs::read_dir(&run).unwrap().flatten() {
        if fs::read_to_string(entry.path()).is_ok_and(|t| t.contains(&token)) {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
            holders.push(entry.file_name());
        }
    }
    assert!(
        !holders.is_empty(),
        "the token reaches the job through a file in the shared home"
    );
    let slurm_out = hpc.cluster.home().join(format!("slurm-{id}.out"));
    assert!(
        !fs::read_to_string(&slurm_out).is_ok_and(|t| t.contains(&token)),
        "the token is in the job's output"
    );
    hpc.down();
}

/// Issue 12, "`down` → the job is gone from `squeue`": `down` returns once Slurm says the job
/// is over, with the tunnel, the supervisor and the token's files gone.
#[test]
fn down_cancels_the_job_and_confirms_it_is_gone() {
    let Some(hpc) = Hpc::start("bye", "--time=5") else {
        return;
    };
    let url = hpc.up_timed(&["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    let id = hpc.the_job();
    let took = hpc.down();
    // Checked at once: `down` confirms, so nothing is left to wait for.
    let state = hpc.cluster.job_state(&id);
    eprintln!("down took {took:?}; the job is then {state:?}");
    assert!(
        state.is_none() || state.as_deref() == Some("CANCELLED"),
        "the job is over when down returns: {state:?}\n{}",
        hpc.evidence()
    );
    let live = hpc
        .cluster
        .on_login("squeue")
        .args(["-h", "-n", &hpc.job_name()])
        .output()
        .unwrap();
    assert_eq!(stdout(&live).trim(), "", "the job left the queue");
    assert_eq!(get(port, "/api/status", Some(&token)), 0, "the URL is closed");
    assert!(
        supervisors(&hpc.client).is_empty() && tunnel_ssh(&hpc.client).is_empty(),
        "processes left: {:?} {:?}",
        supervisors(&hpc.client),
        tunnel_ssh(&hpc.client)
    );
    let run = hpc.cluster.home().join(".jssh/run").join(hpc.job_name());
    assert!(
        !run.join("token").exists(),
        "the token file is removed: {}",
        run.display()
    );
    let st = status(&hpc.client, "bye");
    assert_eq!(st["state"], "down", "{st}");
    // The job's processes leave the node (the job *is* Jupyter: Slurm's SIGTERM, then its
    // SIGKILL after KillWait, 2 s, reach it), and nothing of the alias runs on the login host
    // or here (a reader of the job's reports, an ssh). On a loaded machine Jupyter's own
    // shutdown has been seen to outlast down by over 5 s; one that escaped Slurm would stay.
    let job_env = format!("SLURM_JOB_ID={id}");
    let left = || {
        let table = process_table();
        let parent = |p: &Proc| table.iter().find(|q| q.pid == p.ppid).map(|q| q.command.clone());
        table
            .iter()
            .filter(|p| has_env(p.pid, &job_env) || p.command.contains(&hpc.job_name()))
            .map(|p| format!("{} (parent {}: {:?})", p.command, p.ppid, parent(p)))
            .collect::<Vec<_>>()
    };
    let at_once = left();
    let since = Instant::now();
    while !left().is_empty() {
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "left 30 s after down (the job is {:?}):\n{}\n{}",
            hpc.cluster.job_state(&id),
            left().join("\n"),
            hpc.cluster.logs()
        );
        sleep(Duration::from_millis(50));
    }
    eprintln!(
        "when down returned, {} process(es) of the job or alias still ran, gone {:?} later: {at_once:?}",
        at_once.len(),
        since.elapsed()
    );
}

/// Whether process `pid` has `entry` (`NAME=VALUE`) in its environment.
fn has_env(pid: u32, entry: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
}

/// Issue 12, "walltime end → status says TIMEOUT and the tunnel stops": the job's end (the
/// admin's `EndTime=now`, which slurmctld acts on at its next 30 s check) shows as job-ended
/// with the reason, the supervisor and the tunnel stop, and nothing is resubmitted.
#[test]
fn a_walltime_end_says_timeout_stops_the_tunnel_and_resubmits_nothing() {
    let Some(hpc) = Hpc::start("wall", "--time=1") else {
        return;
    };
    let url = hpc.up_timed(&["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    let id = hpc.the_job();
    let st = status(&hpc.client, "wall");
    let left = st["job"]["walltime_left_secs"].as_i64();
    assert!(
        left.is_some_and(|l| l > 0 && l <= 60),
        "--time=1 leaves at most 60 s: {st}"
    );

    hpc.cluster.end_walltime_now(&id);
    let ended_at = Instant::now();
    let timeout = hpc.cluster.wait_job_state(&id, "TIMEOUT", Duration::from_secs(40));
    let (st, _) = hpc.wait_status("job-ended", Duration::from_secs(10), |st| st["state"] == "job-ended");
    let seen = ended_at.elapsed();
    eprintln!(
        "EndTime=now → TIMEOUT in squeue {timeout:?}, → status job-ended {seen:?} after the override \
         ({:?} after Slurm said so)",
        seen.saturating_sub(timeout)
    );
    assert_eq!(st["job"]["state"], "TIMEOUT", "{st}");
    let error = st["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&id) && error.contains("TIMEOUT"),
        "last_error says which job ended and how: {st}"
    );
    // The tunnel stops (within a few seconds of the status saying so).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(supervisors(&hpc.client).is_empty() && tunnel_ssh(&hpc.client).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the supervisor or its ssh outlived the job: {:?} {:?}\n{}",
            supervisors(&hpc.client),
            tunnel_ssh(&hpc.client),
            hpc.evidence()
        );
        sleep(Duration::from_millis(100));
    }
    assert_eq!(get(port, "/api/status", Some(&token)), 0, "the URL is closed");
    // The warning before the end: with --time=1 the default 10 minutes are already reached.
    assert_eq!(st["job"]["walltime_warned"], true, "{st}");
    assert!(
        hpc.log().to_lowercase().contains("walltime"),
        "the supervisor logs the walltime warning:\n{}",
        hpc.log()
    );
    // Nothing resubmitted, well after the end.
    sleep(Duration::from_secs(5).saturating_sub(ended_at.elapsed().saturating_sub(seen)));
    let jobs = jobs_named(&hpc.cluster, &hpc.job_name());
    assert_eq!(jobs, vec![(id.clone(), "TIMEOUT".to_owned())], "no second job");
    let st = status(&hpc.client, "wall");
    assert_eq!(st["state"], "job-ended", "it stays said: {st}");
    hpc.down();
    assert_eq!(
        jobs_named(&hpc.cluster, &hpc.job_name()).len(),
        1,
        "down submitted nothing"
    );
}

/// Issue 12, "kill -9 of the supervisor and `up` again → the same job, no second one" (the
/// laptop rebooted: the supervisor and its ssh are gone, the job runs on).
#[test]
fn up_after_the_supervisor_was_killed_reattaches_to_the_same_job() {
    let Some(hpc) = Hpc::start("again", "--time=5") else {
        return;
    };
    let url = hpc.up_timed(&["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    let id = hpc.the_job();
    let pid = status(&hpc.client, "again")["remote_pid"].clone();
    let sup = supervisors(&hpc.client);
    assert_eq!(sup.len(), 1, "{sup:?}");
    kill(sup[0].0, "-KILL");
    for (pid, _) in tunnel_ssh(&hpc.client) {
        kill(pid, "-KILL");
    }
    // Whatever else of the client still runs (a master ssh) goes the same way: a reboot.
    let root = hpc.client.root().display().to_string();
    for p in process_table() {
        if p.command.contains(&root) && p.command.contains("ssh") {
            kill(p.pid, "-KILL");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(port, "/api/status", Some(&token)) != 0 {
        assert!(Instant::now() < deadline, "the URL still answers with nothing running");
        sleep(Duration::from_millis(50));
    }
    assert_eq!(hpc.cluster.job_state(&id).as_deref(), Some("RUNNING"));

    let begin = Instant::now();
    let out = hpc.up(&[]);
    let took = begin.elapsed();
    eprintln!("up again after kill -9: {took:?}: {}", stdout(&out).trim());
    assert_eq!(last_line(&out), url, "the same port and token");
    assert_eq!(get(port, "/api/status", Some(&token)), 200, "{}", hpc.evidence());
    assert_eq!(hpc.the_job(), id, "the same job, no second one");
    let st = status(&hpc.client, "again");
    assert_eq!(st["remote_pid"], pid, "the same Jupyter: {st}");
    assert_eq!(st["job"]["state"], "RUNNING", "{st}");
    assert_eq!(supervisors(&hpc.client).len(), 1);
    // Once more, now with the supervisor alive: `up` finds it, submits nothing.
    assert_eq!(last_line(&hpc.up(&[])), url);
    assert_eq!(hpc.the_job(), id);
    hpc.down();
}

/// Issue 12, "ssh kill and login-sshd restart → healed through the login node": the tunnel's
/// ssh killed, then the login host's sshd down (every session through it cut) and back.
#[test]
fn the_tunnel_heals_after_an_ssh_kill_and_a_login_sshd_restart() {
    let Some(mut hpc) = Hpc::start("heal", "--time=5") else {
        return;
    };
    let url = hpc.up_timed(&["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    let id = hpc.the_job();

    let st = status(&hpc.client, "heal");
    let ssh = u32::try_from(
        st["tunnel_ssh_pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no tunnel_ssh_pid: {st}")),
    )
    .unwrap();
    kill(ssh, "-KILL");
    let healed = answers_within(&hpc.client, port, &token, Duration::from_secs(10));
    eprintln!("ssh killed → the URL answers again in {healed:?}");
    let st = status(&hpc.client, "heal");
    assert!(st["reconnects"].as_u64().unwrap_or(0) >= 1, "{st}");
    assert_ne!(st["tunnel_ssh_pid"].as_u64(), Some(u64::from(ssh)), "{st}");

    hpc.cluster.login_sshd().outage();
    sleep(Duration::from_millis(500));
    let restarted = Instant::now();
    hpc.cluster.login_sshd().restart();
    let healed = answers_within(&hpc.client, port, &token, Duration::from_secs(20));
    eprintln!(
        "login sshd down 0.5 s and back → the URL answers {healed:?} after the restart ({:?})",
        restarted.elapsed()
    );
    let st = status(&hpc.client, "heal");
    assert_eq!(st["state"], "up", "{st}");
    assert_eq!(st["job"]["state"], "RUNNING", "{st}");
    assert_eq!(hpc.the_job(), id, "the same job");
    hpc.down();
}

/// Issue 12, "a job killed by `scancel` from outside → status says CANCELLED, no
/// resubmission".
#[test]
fn a_job_cancelled_from_outside_says_cancelled_and_is_not_resubmitted() {
    let Some(hpc) = Hpc::start("gone", "--time=5") else {
        return;
    };
    let url = hpc.up_timed(&["--port", &free_port()]);
    let (port, token) = parse_url(&url);
    let id = hpc.the_job();
    let cancelled = Instant::now();
    let out = hpc.cluster.on_login("scancel").arg(&id).output().unwrap();
    assert!(out.status.success(), "scancel: {}", stderr(&out));
    let (st, seen) = hpc.wait_status("job-ended", Duration::from_secs(15), |st| st["state"] == "job-ended");
    eprintln!("scancel → status job-ended in {seen:?}");
    assert_eq!(st["job"]["state"], "CANCELLED", "{st}");
    let error = st["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&id) && error.contains("CANCELLED"),
        "last_error says which job ended and how: {st}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(supervisors(&hpc.client).is_empty() && tunnel_ssh(&hpc.client).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "the supervisor or its ssh outlived the job: {:?}\n{}",
            supervisors(&hpc.client),
            hpc.evidence()
        );
        sleep(Duration::from_millis(100));
    }
    assert_eq!(get(port, "/api/status", Some(&token)), 0, "the URL is closed");
    // No new job within 10 s of the cancel.
    sleep(Duration::from_secs(10).saturating_sub(cancelled.elapsed()));
    let jobs = jobs_named(&hpc.cluster, &hpc.job_name());
    assert_eq!(jobs, vec![(id, "CANCELLED".to_owned())], "no second job");
    hpc.down();
}

/// Issue 13 and 12 together, as HPC users have them: a cluster whose login host asks for a
/// code after the key. `up` asks once; the job's submission, the wait, the tunnel to the node
/// and its heal all ride on that one login (the node is reached through it, with the key
/// alone); nothing else logs in to the login host; `down` cancels the job over it too.
#[test]
fn behind_a_second_factor_one_code_carries_the_job_the_tunnel_and_its_heal() {
    let Some(hpc) = Hpc::start_behind_otp("duo", "--time=5") else {
        return;
    };
    let human_logins = |hpc: &Hpc| {
        hpc.cluster
            .login_sshd_log()
            .matches("Accepted keyboard-interactive")
            .count()
    };
    let mut cmd = jssh_std(&hpc.client);
    cmd.args(["up", "duo", "-d", "--port", &free_port(), "--env", &hpc.env]);
    let mut term = crate::pty::Terminal::spawn(&cmd);
    assert!(
        term.wait_for("Verification code:", 1, Duration::from_mins(1)),
        "{}\n{}",
        term.output(),
        hpc.evidence()
    );
    term.type_line(&hpc.cluster.otp_code());
    let (done, output) = term.finish(COMMAND_LIMIT);
    assert!(done.success(), "up: {output}\n{}", hpc.evidence());
    assert_eq!(output.matches("Verification code:").count(), 1, "one prompt: {output}");
    let url = format!(
        "http://{}",
        output.split("http://").last().unwrap().lines().next().unwrap().trim()
    );
    let (port, token) = parse_url(&url);
    assert_eq!(get(port, "/api/status", Some(&token)), 200, "{}", hpc.evidence());
    let id = hpc.the_job();
    let st = status(&hpc.client, "duo");
    assert_eq!(st["job"]["node"], NODE, "{st}");
    assert_eq!(human_logins(&hpc), 1, "one login to the login host");

    // The connection to the node dies: it is made again through the same login, no prompt.
    let ssh = u32::try_from(st["tunnel_ssh_pid"].as_u64().unwrap_or_else(|| panic!("{st}"))).unwrap();
    kill(ssh, "-KILL");
    let healed = answers_within(&hpc.client, port, &token, Duration::from_secs(20));
    eprintln!("behind a second factor: the node's connection killed → answers again in {healed:?}");
    assert_eq!(human_logins(&hpc), 1, "still one login to the login host");
    assert_eq!(hpc.the_job(), id, "the same job");

    // The login itself drops (the login host's sshd restarts): nothing logs in on its own; one
    // code to `jssh login` resumes the same job's Jupyter at the same URL.
    let mut hpc = hpc;
    hpc.cluster.login_sshd().outage();
    hpc.cluster.login_sshd().restart();
    let started = Instant::now();
    while local_status(&hpc.client, "duo")["state"] != "needs-login" {
        assert!(started.elapsed() < Duration::from_secs(20), "{}", hpc.evidence());
        sleep(Duration::from_millis(100));
    }
    let connections = || hpc.cluster.login_sshd_log().matches("Connection from ").count();
    let before = connections();
    sleep(Duration::from_secs(3));
    assert_eq!(connections(), before, "nothing connects to the login host on its own");
    let mut login = jssh_std(&hpc.client);
    login.args(["login", "duo"]);
    let mut term = crate::pty::Terminal::spawn(&login);
    assert!(
        term.wait_for("Verification code:", 1, Duration::from_mins(1)),
        "{}",
        term.output()
    );
    term.type_line(&hpc.cluster.otp_code());
    let (done, output) = term.finish(COMMAND_LIMIT);
    assert!(done.success(), "login: {output}\n{}", hpc.evidence());
    assert!(output.contains(&format!("127.0.0.1:{port}")), "{output}");
    answers_within(&hpc.client, port, &token, Duration::from_secs(20));
    assert_eq!(human_logins(&hpc), 2, "one more login, the one the user answered");
    assert_eq!(hpc.the_job(), id, "the same job");
    hpc.down();
    assert!(
        jobs_named(&hpc.cluster, &hpc.job_name())
            .iter()
            .all(|(_, state)| state != "RUNNING" && state != "PENDING")
    );
    assert_eq!(human_logins(&hpc), 2, "down asked nothing either");
}
