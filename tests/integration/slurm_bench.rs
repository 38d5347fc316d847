//! Issue 12's acceptance, run by `scripts/bench-slurm`: on the real Slurm of `slurm.rs`,
//! `jssh up ALIAS --slurm '--time=5'` beside jupyter-forward's `--launch-command 'sbatch
//! --time=5'` and beside a plain `sbatch --time=5` over ssh of a job that only runs Jupyter (the
//! floor: Jupyter's own start with no tool about), taking turns, `JSSH_BENCH_RUNS` (5) counted
//! runs each after one warm-up of each. The goal: jssh's URL answers within sbatch → RUNNING +
//! Jupyter's own start + 0.5 s (medians), which the report checks with jssh's own job's figures
//! and with the plain job's.
//!
//! Every run is cut at the same points for every subject, taken from outside them:
//! - t0: the tool is started, with nothing running (the previous job is gone from `squeue`);
//! - RUNNING: slurmctld's `sched: Allocate JobId=…` log line (millisecond timestamps), the
//!   moment the job's state becomes RUNNING;
//! - Jupyter listens: a new listening socket in the node's network namespace, read every 5 ms
//!   from `/proc/PID/net/tcp{,6}` of a `sleep` this test keeps on the node (Jupyter is the only
//!   process there that listens);
//! - URL: the first `200` from `/api/status` with the token, through the URL the tool printed
//!   (polled every 10 ms from the moment it is printed; `jssh up` prints it once it answers).
//!
//! Jupyter's start is split at its first log line, by the line's own timestamp: before it, the
//! job's shell, the venv's activation, the interpreter and its imports; after it, the server's
//! own start. When it listens, the watch also reads Jupyter's CPU time (its processes on the
//! node, with their reaped children) and how busy the machine's CPUs were since t0: here the
//! laptop, the login host and the node share one box's cores, so anything running meanwhile
//! (a subject's own ssh and polling, or other work on the box) slows Jupyter's start; equal CPU
//! times with unequal starts mean contention, not more work. jupyter-forward prints its URL 3 s after its forward is up (a `time.sleep(3)` in
//! its `setup_port_forwarding`), and while Jupyter starts it reads Jupyter's log with one
//! `bash -lc "cat …"` on the login host after another, with no pause.
//!
//! For jssh, the job's own reports are read too: `~/.jssh/run/jssh-ALIAS/job` (written when
//! the job's script starts) and `…/ready` (touched once its watcher, which looks every 0.1 s,
//! sees Jupyter listen), by their mtimes in the shared home.
//!
//! jupyter-forward (`JSSH_BENCH_JF`: its executable; unset, it is left out) runs with `HOME`
//! in a temp dir holding only an ssh config for the login host, the test client's key and its
//! `known_hosts`. It needs `--conda-env` (without it this release exits 1 after `which
//! jupyter`): a file `activate` in the cluster's home, which its `source activate NAME` finds
//! (bash's `source` looks in the working directory, the home), sources the test venv. Jupyter
//! refuses to run as root without `--allow-root`, which jupyter-forward cannot pass: the login
//! session's `$JUPYTER_CONFIG_DIR/jupyter_server_config.json` allows root, for both tools (jssh
//! passes `--allow-root` as root anyway).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::fixture::Client;
use crate::slurm::Cluster;
use crate::slurm_up::venv_on_cluster;
use crate::up::{free_port, get, parse_url};
use crate::util::{client_ssh, jssh_std, set_up_at, stderr, stdout};

const ALIAS: &str = "bench";
/// The job's options, the same for both tools.
const TIME: &str = "--time=5";
/// How long one tool may take from its start to an answering URL before the run fails.
const RUN_LIMIT: Duration = Duration::from_mins(2);
/// jupyter-forward's `--conda-env`: any name, the `activate` shim ignores it.
const JF_ENV: &str = "bench";
/// What is timed, in the report's column order.
const SUBJECTS: [&str; 3] = ["jssh", "jupyter-forward", "plain sbatch"];

/// `scripts/bench-slurm`: the table of medians (min–max) of both tools, the ratio of their
/// times to a working URL, and whether jssh meets issue 12's goal.
#[test]
#[ignore = "a benchmark: run by scripts/bench-slurm"]
fn bench_slurm_up_against_jupyter_forward() {
    let runs: usize = std::env::var("JSSH_BENCH_RUNS").map_or(5, |n| n.parse().expect("JSSH_BENCH_RUNS: a number"));
    let load = loadavg();
    let Some(bench) = Bench::start() else {
        return;
    };
    let mut jf = std::env::var_os("JSSH_BENCH_JF").map(PathBuf::from);
    if jf.is_none() {
        println!("jupyter-forward left out: JSSH_BENCH_JF is not set (scripts/bench-slurm sets it)");
    }
    // Round 0 is a warm-up, not counted: the cluster's first job waits ~3 s for Slurm's first
    // schedule, and the first Jupyter start reads a cold venv. The subjects take turns going
    // first, so that none always follows the same one's cleanup.
    let mut results: [Vec<Run>; 3] = Default::default();
    for round in 0..=runs {
        let what = if round == 0 {
            "warm-up".to_owned()
        } else {
            format!("run {round}")
        };
        for k in 0..SUBJECTS.len() {
            let subject = (k + round) % SUBJECTS.len();
            let run = match subject {
                0 => Ok(bench.jssh_round()),
                1 => match &jf {
                    Some(exe) => bench.jf_round(exe),
                    None => continue,
                },
                _ => Ok(bench.plain_round()),
            };
            match run {
                Ok(run) => {
                    eprintln!("{what}: {}: {}", SUBJECTS[subject], run.describe());
                    if round > 0 {
                        results[subject].push(run);
                    }
                }
                Err(e) if round == 0 => {
                    println!("jupyter-forward left out: its warm-up run failed: {e}");
                    jf = None;
                }
                Err(e) => println!("{what}: jupyter-forward failed: {e}"),
            }
        }
    }
    print!("{}", report(&results));
    // Other processes on the machine slow Jupyter's start far more than anything measured here.
    println!(
        "load average (1, 5, 15 min) at the start: {load}, at the end: {}; {} CPUs",
        loadavg(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    bench.finish();
}

/// The times of one run, from t0 (the tool started).
#[derive(Debug, Clone, Copy)]
struct Run {
    /// slurmctld allocated the job: its state became RUNNING.
    running: Duration,
    /// A new listening socket on the node: Jupyter listens.
    listening: Duration,
    /// Jupyter's CPU time until then, and how busy the CPUs were.
    cpu: Option<Duration>,
    busy: Option<f64>,
    /// The tool printed the URL (`jssh up` returned); none for the plain job.
    printed: Option<Duration>,
    /// The first 200 through the URL with the token.
    url: Option<Duration>,
    /// jssh: the job's `job` file (its script started) and `ready` file (its own report).
    script: Option<Duration>,
    ready: Option<Duration>,
    /// Jupyter's first log line, by its own timestamp: its interpreter has started and
    /// imported jupyter_server.
    logged: Option<Duration>,
}

impl Run {
    fn describe(&self) -> String {
        let s = |d: Duration| format!("{:.2}", d.as_secs_f64());
        let mut line = format!("RUNNING {}, listening {}", s(self.running), s(self.listening));
        if let (Some(printed), Some(url)) = (self.printed, self.url) {
            let _ = write!(line, ", URL printed {}, answered {}", s(printed), s(url));
        }
        if let Some(cpu) = self.cpu {
            let _ = write!(line, ", Jupyter's CPU {}", s(cpu));
        }
        if let Some(logged) = self.logged {
            let _ = write!(line, ", Jupyter's first log line {}", s(logged));
        }
        if let (Some(script), Some(ready)) = (self.script, self.ready) {
            let _ = write!(line, " (job file {}, ready file {})", s(script), s(ready));
        }
        line
    }
}

/// The cluster, a client with the alias set up, the node's watch and jupyter-forward's home.
struct Bench {
    /// A `sleep` on the node: `/proc/PID/net/tcp` is the node's table of sockets.
    node_sleep: Child,
    /// The node's listening sockets with nothing running (its sshd).
    idle_listeners: BTreeSet<String>,
    jf_home: TempDir,
    venv: String,
    /// The login name on the cluster.
    user: String,
    client: Client,
    cluster: Cluster,
}

impl Bench {
    fn start() -> Option<Bench> {
        let mut cluster = Cluster::start()?;
        let client = cluster.client();
        let venv = venv_on_cluster(&cluster);
        set_up_at(
            &client,
            &cluster.login_addr().to_string(),
            22,
            ALIAS,
            &["--slurm", TIME],
        );
        let home = cluster.home();
        // The login host's sshd sets JUPYTER_CONFIG_DIR (fixture.rs), and sbatch hands a
        // login session's environment to its job.
        let login = format!("{}@{}", cluster.login_sshd().user(), cluster.login_addr());
        let out = client_ssh(&client, true)
            .args([&login, "printf %s \"$JUPYTER_CONFIG_DIR\""])
            .output()
            .unwrap();
        let config_dir = PathBuf::from(stdout(&out));
        assert!(
            out.status.success() && config_dir.is_absolute(),
            "JUPYTER_CONFIG_DIR on the login host: {}{}",
            stdout(&out),
            stderr(&out)
        );
        fs::create_dir_all(&config_dir).unwrap();
        fs::write(
            config_dir.join("jupyter_server_config.json"),
            "{\"ServerApp\": {\"allow_root\": true}}\n",
        )
        .unwrap();
        fs::write(
            home.join("activate"),
            format!(
                "# jupyter-forward's `source activate {JF_ENV}` (conda's old form): the test venv\n. {venv}/bin/activate\n"
            ),
        )
        .unwrap();
        let jf_home = tempfile::Builder::new().prefix("jssh-bench-jf-").tempdir().unwrap();
        let ssh = jf_home.path().join(".ssh");
        fs::create_dir(&ssh).unwrap();
        fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        fs::copy(client.known_hosts(), ssh.join("known_hosts")).unwrap();
        fs::write(
            ssh.join("config"),
            format!(
                "Host login\n    HostName {}\n    User {}\n    IdentityFile {}\n",
                cluster.login_addr(),
                cluster.login_sshd().user(),
                client.ssh_dir().join("bootstrap_ed25519").display()
            ),
        )
        .unwrap();
        let node_sleep = cluster
            .on_node("sleep")
            .arg("infinity")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn a sleep on the node");
        let mut bench = Bench {
            idle_listeners: BTreeSet::new(),
            node_sleep,
            jf_home,
            venv,
            user: cluster.login_sshd().user(),
            client,
            cluster,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while bench.node_listeners().is_empty() {
            assert!(Instant::now() < deadline, "no listening socket on the node (its sshd)");
            sleep(Duration::from_millis(10));
        }
        bench.idle_listeners = bench.node_listeners();
        Some(bench)
    }

    /// `jssh up ALIAS -d --env venv:…`, then `jssh down ALIAS`.
    fn jssh_round(&self) -> Run {
        let before = self.job_ids();
        let watch = ListenWatch::start(self.node_sleep.id(), &self.idle_listeners);
        let began = SystemTime::now();
        let t0 = Instant::now();
        let env = format!("venv:{}", self.venv);
        let out = output_within(
            jssh_std(&self.client).args(["up", ALIAS, "-d", "--port", &free_port(), "--env", &env]),
            RUN_LIMIT,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", self.evidence()));
        let printed = t0.elapsed();
        assert!(
            out.status.success(),
            "up: {}{}\n{}",
            stdout(&out),
            stderr(&out),
            self.evidence()
        );
        let url_line = stdout(&out).lines().last().unwrap_or_default().trim().to_owned();
        let (port, token) = parse_url(&url_line);
        let url =
            answered(t0, port, &token).unwrap_or_else(|| panic!("{url_line} never answered\n{}", self.evidence()));
        let listen = watch
            .stop(t0)
            .unwrap_or_else(|| panic!("no listener on the node\n{}", self.evidence()));
        let run_dir = self.cluster.home().join(".jssh/run").join(format!("jssh-{ALIAS}"));
        let mtime = |name: &str| {
            fs::metadata(run_dir.join(name))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(began).ok())
        };
        let (script, ready) = (mtime("job"), mtime("ready"));
        let logged = first_jupyter_line(&run_dir.join("jupyter.log")).and_then(|t| t.duration_since(began).ok());
        let job = self.new_job(&before);
        let running = self.allocated(&job, began);
        let down =
            output_within(jssh_std(&self.client).args(["down", ALIAS]), RUN_LIMIT).unwrap_or_else(|e| panic!("{e}"));
        assert!(down.status.success(), "down: {}{}", stdout(&down), stderr(&down));
        self.wait_quiet();
        Run {
            running,
            listening: listen.after,
            cpu: listen.cpu,
            busy: listen.busy,
            printed: Some(printed),
            url: Some(url),
            script,
            ready,
            logged,
        }
    }

    /// A plain `sbatch` over ssh to the login host of a job that activates the venv and execs
    /// Jupyter, with no tool about: Jupyter's own start on this Slurm, until it listens.
    fn plain_round(&self) -> Run {
        let before = self.job_ids();
        let watch = ListenWatch::start(self.node_sleep.id(), &self.idle_listeners);
        let began = SystemTime::now();
        let t0 = Instant::now();
        let login = format!("{}@{}", self.user, self.cluster.login_addr());
        let mut sbatch = client_ssh(&self.client, true)
            .arg(&login)
            .arg(format!("sbatch --parsable {TIME} --output=plain-%j.log"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let script = format!(
            "#!/bin/bash -l\n. {}/bin/activate\nexec jupyter lab --no-browser --allow-root --ServerApp.ip=127.0.0.1\n",
            self.venv
        );
        std::io::Write::write_all(&mut sbatch.stdin.take().unwrap(), script.as_bytes()).unwrap();
        let out = sbatch.wait_with_output().unwrap();
        assert!(out.status.success(), "sbatch over ssh: {}", stderr(&out));
        let listen = watch.wait(t0, RUN_LIMIT);
        let job = self.new_job(&before);
        assert_eq!(stdout(&out).trim(), job, "sbatch's answer is the new job");
        let log = self.cluster.home().join(format!("plain-{job}.log"));
        let listen = listen.unwrap_or_else(|| {
            panic!(
                "the plain job's Jupyter never listened: {}",
                fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let logged = first_jupyter_line(&log).and_then(|t| t.duration_since(began).ok());
        let running = self.allocated(&job, began);
        let _ = self.cluster.on_login("scancel").arg(&job).status();
        self.wait_quiet();
        Run {
            running,
            listening: listen.after,
            cpu: listen.cpu,
            busy: listen.busy,
            printed: None,
            url: None,
            script: None,
            ready: None,
            logged,
        }
    }

    /// `jupyter-forward login --launch-command 'sbatch --time=5' …` until its URL answers;
    /// then it is interrupted and its job (which it never cancels) is.
    fn jf_round(&self, exe: &Path) -> Result<Run, String> {
        let before = self.job_ids();
        let watch = ListenWatch::start(self.node_sleep.id(), &self.idle_listeners);
        let began = SystemTime::now();
        let t0 = Instant::now();
        let mut child = Command::new(exe)
            .args(["login", "--port", &free_port(), "--conda-env", JF_ENV])
            .arg("--launch-command")
            .arg(format!("sbatch {TIME}"))
            .env("HOME", self.jf_home.path())
            .env_remove("SSH_AUTH_SOCK")
            .env("BROWSER", "true")
            .env("COLUMNS", "400")
            .env("TERM", "dumb")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
        let lines = read_lines(&mut child);
        let result = Bench::jf_url(t0, &lines);
        let listen = watch.stop(t0);
        // Interrupted as a user would (Ctrl-C), killed if it lingers.
        let group = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let _ = killpg(group, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
        let jobs: Vec<String> = self.job_ids().difference(&before).cloned().collect();
        let result = result.map_err(|e| format!("{e}\n{}", self.jf_evidence(&jobs)));
        for job in &jobs {
            let _ = self.cluster.on_login("scancel").arg(job).status();
        }
        self.wait_quiet();
        let (printed, url) = result?;
        let logged = self
            .jf_log()
            .and_then(|log| first_jupyter_line(&log))
            .and_then(|t| t.duration_since(began).ok());
        let [job] = jobs.as_slice() else {
            return Err(format!("{} jobs submitted, not one: {jobs:?}", jobs.len()));
        };
        let listen = listen.ok_or("its URL answered with no listener on the node")?;
        Ok(Run {
            running: self.allocated(job, began),
            listening: listen.after,
            cpu: listen.cpu,
            busy: listen.busy,
            printed: Some(printed),
            url: Some(url),
            script: None,
            ready: None,
            logged,
        })
    }

    /// Reads jupyter-forward's output until it prints its URL, then polls that URL: (printed,
    /// answered), from t0.
    fn jf_url(t0: Instant, lines: &mpsc::Receiver<String>) -> Result<(Duration, Duration), String> {
        let mut output = Vec::new();
        let url = loop {
            let left = RUN_LIMIT.saturating_sub(t0.elapsed());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find("Jupyter Lab URL: http") {
                        break line[at + "Jupyter Lab URL: ".len()..].trim().to_owned();
                    }
                    output.push(line);
                }
                Err(e) => {
                    let tail = output[output.len().saturating_sub(15)..].join("\n");
                    return Err(format!("no URL printed ({e}); its output ends:\n{tail}"));
                }
            }
        };
        let printed = t0.elapsed();
        let (port, token) = parse_url(&url.replacen("//localhost:", "//127.0.0.1:", 1));
        let token = token.split('&').next().unwrap_or_default().to_owned();
        let answered = answered(t0, port, &token).ok_or_else(|| format!("{url} never answered"))?;
        Ok((printed, answered))
    }

    /// What a failed jupyter-forward run left: its jobs' states and output, the end of its
    /// newest Jupyter log.
    fn jf_evidence(&self, jobs: &[String]) -> String {
        let home = self.cluster.home();
        let tail = |path: &Path| {
            let text = fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        };
        let mut said = String::new();
        for job in jobs {
            let state = self.cluster.job_state(job);
            let out = tail(&home.join(format!("slurm-{job}.out")));
            let _ = writeln!(said, "job {job}: {state:?}; its output:\n{out}");
        }
        if let Some(log) = self.jf_log() {
            let _ = writeln!(said, "{}:\n{}", log.display(), tail(&log));
        }
        said
    }

    /// jupyter-forward's newest Jupyter log (`~/.jupyter_forward/log_TIME.txt`).
    fn jf_log(&self) -> Option<PathBuf> {
        fs::read_dir(self.cluster.home().join(".jupyter_forward"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("log_"))
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .map(|e| e.path())
    }

    /// The node's listening sockets: local `ADDR:PORT` in `/proc/net/tcp`'s hex.
    fn node_listeners(&self) -> BTreeSet<String> {
        listeners(self.node_sleep.id())
    }

    /// Every job id Slurm knows (ended ones too, for `MinJobAge`).
    fn job_ids(&self) -> BTreeSet<String> {
        let out = self
            .cluster
            .on_login("squeue")
            .args(["-h", "-t", "all", "-o", "%i"])
            .output()
            .unwrap();
        assert!(out.status.success(), "squeue: {}", stderr(&out));
        stdout(&out).split_whitespace().map(str::to_owned).collect()
    }

    /// The one job submitted since `before`.
    fn new_job(&self, before: &BTreeSet<String>) -> String {
        let new: Vec<String> = self.job_ids().difference(before).cloned().collect();
        assert_eq!(new.len(), 1, "one new job: {new:?}");
        new[0].clone()
    }

    /// When slurmctld started `job` (made it RUNNING), from `began`: its log's line for that,
    /// `sched: Allocate JobId=…` from the main scheduler or `sched/backfill: _start_job: Started
    /// JobId=…` from the backfill one, whose timestamp (local time, milliseconds) `date` reads.
    fn allocated(&self, job: &str, began: SystemTime) -> Duration {
        // The fixture's layout: `<root>/home` is the shared home, `<root>/log` its logs.
        let log = self.cluster.home().parent().unwrap().join("log/slurmctld.log");
        let needles = [format!("Allocate JobId={job} "), format!("Started JobId={job} ")];
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let stamp = text
                .lines()
                .find(|l| needles.iter().any(|n| l.contains(n.as_str())))
                .and_then(|l| l.strip_prefix('[')?.split(']').next());
            if let Some(stamp) = stamp {
                return local_time(stamp).duration_since(began).unwrap_or_default();
            }
            assert!(
                Instant::now() < deadline,
                "no {needles:?} in {}:\n{}",
                log.display(),
                text.lines()
                    .filter(|l| l.contains(&format!("JobId={job} ")))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Waits until no job is live and nothing but the idle sockets listens on the node, then
    /// a moment more for the node's processes to be reaped.
    fn wait_quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let live = self
                .cluster
                .on_login("squeue")
                .args(["-h", "-o", "%i %T"])
                .output()
                .unwrap();
            let idle = stdout(&live).trim().is_empty() && self.node_listeners() == self.idle_listeners;
            if idle {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster is not idle 30 s after a run: {}\n{}",
                stdout(&live),
                self.evidence()
            );
            sleep(Duration::from_millis(50));
        }
        sleep(Duration::from_millis(500));
    }

    fn evidence(&self) -> String {
        let log = fs::read_to_string(self.client.state_dir().join(ALIAS).join("supervisor.log")).unwrap_or_default();
        let jupyter = fs::read_to_string(self.cluster.home().join(format!(".jssh/run/jssh-{ALIAS}/jupyter.log")))
            .unwrap_or_default();
        format!(
            "supervisor log:\n{log}\njupyter.log:\n{jupyter}\n{}",
            self.cluster.logs()
        )
    }

    fn finish(mut self) {
        let _ = self.node_sleep.kill();
        let _ = self.node_sleep.wait();
    }
}

/// What the node's watch saw when Jupyter began to listen.
#[derive(Debug, Clone, Copy)]
struct Listen {
    /// From t0.
    after: Duration,
    /// The CPU time of the node's Jupyter processes and their reaped children (its `yarn`):
    /// what its start cost, whoever else wanted the CPUs.
    cpu: Option<Duration>,
    /// How busy the machine's CPUs were from t0 to then, 0–1: on this one box the laptop, the
    /// login host and the node share them, so whatever else runs meanwhile slows Jupyter.
    busy: Option<f64>,
}

/// A thread that notes when a new socket listens on the node.
struct ListenWatch {
    stop: std::sync::Arc<AtomicBool>,
    /// When, and what was seen then (its `after` is filled in by [`ListenWatch::stop`]).
    thread: std::thread::JoinHandle<Option<(Instant, Listen)>>,
}

impl ListenWatch {
    fn start(pid: u32, idle: &BTreeSet<String>) -> ListenWatch {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let idle = idle.clone();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let before = cpu_ticks();
            while !stopped.load(Ordering::Relaxed) {
                if !listeners(pid).is_subset(&idle) {
                    let at = Instant::now();
                    let busy = before.zip(cpu_ticks()).and_then(|((b0, t0), (b1, t1))| {
                        let total = t1.checked_sub(t0).filter(|&t| t > 0)?;
                        #[allow(clippy::cast_precision_loss, reason = "ticks of a few seconds")]
                        Some(b1.saturating_sub(b0) as f64 / total as f64)
                    });
                    let listen = Listen {
                        after: Duration::ZERO,
                        cpu: jupyter_cpu(pid),
                        busy,
                    };
                    return Some((at, listen));
                }
                sleep(Duration::from_millis(5));
            }
            None
        });
        ListenWatch { stop, thread }
    }

    /// Waits (up to `limit`) for a new socket to listen.
    fn wait(self, t0: Instant, limit: Duration) -> Option<Listen> {
        let begin = Instant::now();
        while !self.thread.is_finished() && begin.elapsed() < limit {
            sleep(Duration::from_millis(5));
        }
        self.stop(t0)
    }

    /// What was seen when a new socket first listened.
    fn stop(self, t0: Instant) -> Option<Listen> {
        self.stop.store(true, Ordering::Relaxed);
        let (at, listen) = self.thread.join().unwrap()?;
        Some(Listen {
            after: at.saturating_duration_since(t0),
            ..listen
        })
    }
}

/// `(busy, total)` clock ticks of all CPUs since boot, from `/proc/stat` (idle and iowait are
/// not busy).
fn cpu_ticks() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    Some((total - ticks.get(3)? - ticks.get(4)?, total))
}

/// The CPU time (user and system, with reaped children's) of the processes in `pid`'s network
/// namespace that run `jupyter-lab`.
fn jupyter_cpu(pid: u32) -> Option<Duration> {
    let netns = fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let mut ticks = 0;
    let mut found = false;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        if fs::read_link(format!("/proc/{p}/ns/net")).ok() != Some(netns.clone())
            || !String::from_utf8_lossy(&cmdline).contains("jupyter-lab")
        {
            continue;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // After the command's `)`: state is field 3; utime, stime, cutime, cstime 14–17.
        let Some(fields) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
            continue;
        };
        ticks += fields
            .split(' ')
            .skip(11)
            .take(4)
            .filter_map(|t| t.parse::<u64>().ok())
            .sum::<u64>();
        found = true;
    }
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0)?;
    found.then(|| Duration::from_millis(ticks * 1000 / hz))
}

/// The listening sockets of `pid`'s network namespace.
fn listeners(pid: u32) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) == Some(&"0A") {
                found.insert(fields[1].to_owned());
            }
        }
    }
    found
}

/// Polls `/api/status` with the token every 10 ms until it answers 200; when, from t0.
fn answered(t0: Instant, port: u16, token: &str) -> Option<Duration> {
    let deadline = Instant::now() + Duration::from_mins(1);
    while Instant::now() < deadline {
        if get(port, "/api/status", Some(token)) == 200 {
            return Some(t0.elapsed());
        }
        sleep(Duration::from_millis(10));
    }
    None
}

/// The child's stdout and stderr, line by line, as they come.
fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
    let err: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
    for pipe in [out, err] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// Runs `command`; `Err` with what it printed when it was still running after `limit` (it is
/// killed then).
fn output_within(command: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let begin = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if begin.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{command:?} did not end within {limit:?}: {}{}",
                String::from_utf8_lossy(&out.join().unwrap()),
                String::from_utf8_lossy(&err.join().unwrap())
            ));
        }
        sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    })
}

/// `YYYY-MM-DD[T ]HH:MM:SS.mmm` in local time (slurmctld's and Jupyter's logs), as `date`
/// reads it.
fn local_time(stamp: &str) -> SystemTime {
    let out = Command::new("date").args(["-d", stamp, "+%s.%N"]).output().unwrap();
    let secs: f64 = stdout(&out)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("date -d {stamp}: {}", stderr(&out)));
    SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
}

/// The time of the first line Jupyter logged (`[I 2026-01-01 12:00:00.123 ServerApp] …`) in
/// `log`, which may hold other lines before it.
fn first_jupyter_line(log: &Path) -> Option<SystemTime> {
    let text = fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| {
        let b = l.as_bytes();
        b.len() > 26 && b[0] == b'[' && b[1].is_ascii_uppercase() && b[2] == b' ' && b[3].is_ascii_digit()
    })?;
    Some(local_time(line.get(3..26)?))
}

/// The first three fields of `/proc/loadavg`.
fn loadavg() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    }
}

/// `median (min–max)` of `values`, in seconds; `-` when there are none.
fn cell(values: &[f64]) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.2} ({min:.2}–{max:.2})", median(values.to_vec()))
}

fn report(results: &[Vec<Run>; 3]) -> String {
    type Stage = fn(&Run) -> Option<f64>;
    let stages: [(&str, Stage); 9] = [
        ("t0 → URL answers", |r| Some(secs(r.url?))),
        ("t0 → RUNNING (sbatch → RUNNING)", |r| Some(secs(r.running))),
        ("RUNNING → Jupyter listens (its start)", |r| {
            Some(secs(r.listening.checked_sub(r.running)?))
        }),
        ("  RUNNING → Jupyter's first log line", |r| {
            Some(secs(r.logged?.checked_sub(r.running)?))
        }),
        ("  first log line → Jupyter listens", |r| {
            Some(secs(r.listening.checked_sub(r.logged?)?))
        }),
        ("  Jupyter's CPU time until it listens", |r| Some(secs(r.cpu?))),
        ("  CPUs busy, t0 → Jupyter listens (%)", |r| Some(r.busy? * 100.0)),
        ("Jupyter listens → URL answers (overhead)", |r| {
            Some(secs(r.url?.checked_sub(r.listening)?))
        }),
        ("t0 → URL printed", |r| Some(secs(r.printed?))),
    ];
    let [ours, theirs, plain] = results;
    let mut s = format!(
        "\nissue 12: `jssh up --slurm '{TIME}'`, jupyter-forward --launch-command 'sbatch {TIME}', and a plain \
         `sbatch {TIME}` of Jupyter over ssh, on the same Slurm, taking turns; seconds, median (min–max) of \
         {}, {} and {} runs\n\n",
        ours.len(),
        theirs.len(),
        plain.len()
    );
    let _ = writeln!(s, "{:<42} {:<20} {:<20} {}", "", SUBJECTS[0], SUBJECTS[1], SUBJECTS[2]);
    for (name, stage) in stages {
        let cells: Vec<String> = results
            .iter()
            .map(|runs| cell(&runs.iter().filter_map(stage).collect::<Vec<f64>>()))
            .collect();
        let _ = writeln!(s, "{name:<42} {:<20} {:<20} {}", cells[0], cells[1], cells[2]);
    }
    let own: Vec<f64> = ours
        .iter()
        .filter_map(|r| Some(secs(r.url?.checked_sub(r.ready?)?)))
        .collect();
    let script: Vec<f64> = ours
        .iter()
        .filter_map(|r| Some(secs(r.script?.checked_sub(r.running)?)))
        .collect();
    let _ = writeln!(s, "{:<42} {}", "jssh: RUNNING → the job's `job` file", cell(&script));
    let _ = writeln!(s, "{:<42} {}", "jssh: the job's `ready` file → URL answers", cell(&own));
    if ours.is_empty() {
        return s;
    }
    let url = median(ours.iter().filter_map(|r| r.url).map(secs).collect());
    if !theirs.is_empty() {
        let jf = median(theirs.iter().filter_map(|r| r.url).map(secs).collect());
        let _ = writeln!(
            s,
            "\nratio jssh / jupyter-forward, t0 → URL answers (medians): {:.2}",
            url / jf
        );
    }
    // Issue 12's goal: URL ≤ sbatch → RUNNING + Jupyter's own start + 0.5 s, in medians; with
    // jssh's own job's figures, and with the plain job's (Jupyter with no tool about).
    for (whose, runs) in [("jssh's job", ours), ("the plain job", plain)] {
        if runs.is_empty() {
            continue;
        }
        let running = median(runs.iter().map(|r| secs(r.running)).collect());
        let start = median(
            runs.iter()
                .map(|r| secs(r.listening.saturating_sub(r.running)))
                .collect(),
        );
        let goal = running + start + 0.5;
        let _ = writeln!(
            s,
            "goal, with the RUNNING and Jupyter's start of {whose}: jssh's URL {url:.2} ≤ {running:.2} + {start:.2} + 0.5 = {goal:.2}: {}",
            if url <= goal { "met" } else { "missed" }
        );
    }
    s
}
