//! A real Slurm for the HPC tests: Debian's `slurmctld`, `slurmd` and `munge`, started by the
//! test without systemd on two hosts of its own, and smoke tests proving that it is real.
//!
//! The hosts are the network namespaces of a [`Chain`] (`client → login → node`), each also
//! with its own UTS namespace (hostname `login` / `node1`) and a private mount namespace held
//! by a `sleep` process: there `/etc/hosts` maps both names, `/etc/slurm` is the cluster's
//! config dir (so a plain `sbatch` finds it, as on a real cluster) and the current user's home
//! from the password database is the cluster's shared home, a temp dir with the same path on
//! both hosts. Daemons and sshds join a host with `nsenter` (not `ip netns exec`, which
//! remounts `/sys`, and slurmd 22.05 then dies: FIELD-NOTES). The login host runs munged
//! (one for the cluster: its socket path reaches the node too), slurmctld and an sshd; the
//! node runs slurmd and an sshd. The client reaches only the login host; the node reaches the
//! login host at `login` (the reverse path of mode b). Nothing outside the temp dir is written:
//! every mount lives and dies with a private namespace. Needs root; [`Cluster::start`] says so
//! and returns `None` otherwise.
//!
//! Measured here (2 shared cores, Slurm 22.05.8, debug build): munged → `sinfo` idle 0.2–0.45 s
//! (slurmd is started once slurmctld answers: a slurmd that finds none retries a second later),
//! the whole cluster (namespaces, two sshds, daemons) 0.5–1.3 s. Slurm schedules nothing in its
//! first ~3 s: the first job, submitted at once, is RUNNING 2.8–2.9 s after `sbatch`. Later jobs:
//! `sbatch` → RUNNING 0.06–0.8 s (either ~0.1 s or ~0.7 s, median ~0.15 s), RUNNING → the
//! script's first line on the node 0.07–0.2 s more; `scancel` → the job's processes gone
//! 0.02–0.08 s.
//!
//! Walltimes are whole minutes, and slurmctld checks them every 30 s counted from its start
//! (`PERIODIC_TIMEOUT`, a constant in its source; no `slurm.conf` knob): `--time=1` ends in
//! TIMEOUT 60–90 s after the job started (84 s measured); `KillWait` and `OverTimeLimit` only add
//! to that, so a minute is the floor. The fast path for tests is the admin override
//! [`Cluster::end_walltime_now`] (`scontrol update JobId=… EndTime=now`): the same time-limit
//! code ends the job (state TIMEOUT, reason TimeLimit) at slurmctld's next check, i.e. 30 s
//! after the cluster started for a test that overrides early (26–27 s after the override,
//! measured). There is no accounting database (slurmdbd needs MySQL), so `sacct` says "Slurm
//! accounting storage is disabled": a job's final state is in `squeue -t all` (and `scontrol
//! show job`) for `MinJobAge` (300 s), and in [`Cluster::jobcomp`] (`jobcomp/filetxt`) for good.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{User, geteuid};
use tempfile::TempDir;

use crate::fixture::{Client, Sshd};
use crate::hops::ssh_banner;
use crate::netns::Chain;

/// The hosts' names in the chain: the namespaces are `jssh<tag>-slurm-login` and
/// `jssh<tag>-slurm-node`, which is how a later run recognizes a killed run's leftovers.
const CHAIN: [&str; 2] = ["slurm-login", "slurm-node"];
/// Hostnames inside the hosts' UTS namespaces, and the Slurm node's name.
pub(crate) const LOGIN: &str = "login";
pub(crate) const NODE: &str = "node1";
/// In the environment of every process the fixture starts: `PID:START` of the test process,
/// so that a later run can tell a dead run's processes from a live one's.
const OWNER_VAR: &str = "JSSH_SLURM_OWNER";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// One host: its network namespace, the process that holds its UTS and mount namespaces, and
/// the command prefix that runs a program inside it.
struct Host {
    netns: String,
    holder: Child,
    enter: Vec<String>,
}

/// A running Slurm cluster of one login host and one compute node; everything is killed and
/// removed on drop.
pub(crate) struct Cluster {
    login_sshd: Sshd,
    node_sshd: Sshd,
    daemons: Vec<Child>,
    login: Host,
    node: Host,
    /// The login host's address on the link to the node (`login` in the hosts' `/etc/hosts`).
    login_inner_addr: Ipv4Addr,
    node_addr: Ipv4Addr,
    started_in: Duration,
    daemons_up_in: Duration,
    /// Held for its `Drop`, which deletes the namespaces once the hosts' processes are gone.
    _chain: Chain,
    root: TempDir,
}

impl Cluster {
    /// Starts the cluster and waits until its node is idle; `None` (with a message) when not
    /// root.
    pub(crate) fn start() -> Option<Cluster> {
        Cluster::start_with(false)
    }

    /// [`Cluster::start`], with a login host that asks for a TOTP code after the key
    /// (`otp`; [`Cluster::otp_code`]).
    pub(crate) fn start_with(otp: bool) -> Option<Cluster> {
        if !geteuid().is_root() {
            eprintln!("skipped: a Slurm cluster needs root (namespaces, bind mounts)");
            return None;
        }
        assert!(
            Path::new("/usr/sbin/slurmctld").exists() && Path::new("/usr/sbin/munged").exists(),
            "Slurm is not installed: run scripts/install-deps as root"
        );
        let begin = Instant::now();
        let root = tempfile::Builder::new()
            .prefix("jssh-slurm-")
            .tempdir()
            .expect("create the cluster's temp root");
        // munged wants every dir above its socket searchable by all; the home stays private.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("open the cluster's temp root");
        fs::write(root.path().join("owner"), owner()).expect("write the owner file");
        let path = |name: &str| root.path().join(name);
        for (dir, mode) in [
            ("home", 0o700),
            ("etc", 0o755),
            ("state", 0o700),
            ("spool", 0o700),
            ("log", 0o755),
            ("munge", 0o755),
            ("munge/key", 0o700),
            // munged insists that its socket's dir is not writable by others, yet readable.
            ("munge/run", 0o755),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(path(dir))
                .expect("create the cluster's dirs");
        }
        // Under the lock no other cluster is between making its namespaces and starting their
        // holders, so a namespace of ours without a live owner is a killed run's leftover.
        let (chain, login, node, login_inner_addr, node_addr) = {
            let _lock = lock();
            remove_leftovers();
            let chain = Chain::new(&CHAIN)?;
            let node_addr = chain.hosts[1].addr;
            // netns.rs: the near side of a link is the far side's address minus one.
            let login_inner_addr = Ipv4Addr::from(u32::from(node_addr) - 1);
            fs::write(
                path("hosts"),
                format!("127.0.0.1 localhost\n{login_inner_addr} {LOGIN}\n{node_addr} {NODE}\n"),
            )
            .expect("write the cluster's /etc/hosts");
            let login = Host::start(&chain.hosts[0].netns, LOGIN, root.path());
            let node = Host::start(&chain.hosts[1].netns, NODE, root.path());
            (chain, login, node, login_inner_addr, node_addr)
        };
        fs::write(
            path("etc/slurm.conf"),
            slurm_conf(root.path(), login_inner_addr, node_addr),
        )
        .expect("write slurm.conf");
        let status = Command::new("mungekey")
            .arg("--create")
            .arg(format!("--keyfile={}", path("munge/key/munge.key").display()))
            .status()
            .expect("spawn mungekey");
        assert!(status.success(), "mungekey failed");

        let home = path("home");
        let login_sshd = Sshd::start_on_host(
            &login.enter,
            &login.netns,
            chain.hosts[0].addr,
            &format!("ListenAddress {login_inner_addr}:22"),
            &home,
            otp,
        );
        let node_sshd = Sshd::start_on_host(&node.enter, &node.netns, node_addr, "", &home, false);

        let daemons_begin = Instant::now();
        let mut cluster = Cluster {
            login_sshd,
            node_sshd,
            daemons: Vec::new(),
            login,
            node,
            login_inner_addr,
            node_addr,
            started_in: Duration::ZERO,
            daemons_up_in: Duration::ZERO,
            _chain: chain,
            root,
        };
        cluster.daemons = cluster.start_daemons();
        cluster.daemons_up_in = daemons_begin.elapsed();
        cluster.started_in = begin.elapsed();
        Some(cluster)
    }

    /// munged, slurmctld and slurmd, until the node is idle. (Should this panic, `Drop` still
    /// kills them: they run on the hosts.)
    fn start_daemons(&self) -> Vec<Child> {
        let path = |name: &str| self.root.path().join(name);
        let conf = path("etc/slurm.conf");
        let munged = self.spawn_daemon(
            true,
            "munged",
            &[
                "-F".into(),
                format!("--socket={}", path("munge/run/munge.sock").display()),
                format!("--key-file={}", path("munge/key/munge.key").display()),
                format!("--pid-file={}", path("munge/run/munged.pid").display()),
                format!("--seed-file={}", path("munge/run/munge.seed").display()),
                format!("--log-file={}", path("log/munged.log").display()),
            ],
        );
        let mut daemons = vec![munged];
        self.wait_for(&mut daemons, "munged's socket", || {
            path("munge/run/munge.sock").exists()
        });
        let conf = conf.display().to_string();
        let slurmctld = self.spawn_daemon(true, "slurmctld", &["-D".into(), "-f".into(), conf.clone()]);
        daemons.push(slurmctld);
        // A slurmd that finds no slurmctld yet retries its registration only a second later.
        self.wait_for(&mut daemons, "slurmctld to answer", || {
            self.on_login("scontrol")
                .arg("ping")
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(" is UP"))
        });
        daemons.push(self.spawn_daemon(false, "slurmd", &["-D".into(), "-f".into(), conf]));
        self.wait_for(&mut daemons, "the node to be idle", || {
            self.on_login("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "idle")
        });
        daemons
    }

    /// Spawns `program` in the foreground on the login host (or the node), its output in
    /// `log/<program>.out`.
    fn spawn_daemon(&self, on_login: bool, program: &str, args: &[String]) -> Child {
        let out = File::create(self.root.path().join(format!("log/{program}.out"))).expect("create a daemon log");
        let mut command = if on_login {
            self.on_login(program)
        } else {
            self.on_node(program)
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup a daemon log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
    }

    fn wait_for(&self, daemons: &mut [Child], what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while !ready() {
            for daemon in daemons.iter_mut() {
                if let Some(status) = daemon.try_wait().expect("poll a daemon") {
                    panic!(
                        "a Slurm daemon exited ({status}) while waiting for {what}; logs:\n{}",
                        self.logs()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {READY_TIMEOUT:?}; logs:\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// A command running `program` on the login host, as the cluster's admin (the test's user,
    /// outside any ssh session): e.g. `scontrol`, or a check of what the login host reaches.
    pub(crate) fn on_login(&self, program: &str) -> Command {
        self.login.command(program)
    }

    /// [`Cluster::on_login`] for the compute node.
    pub(crate) fn on_node(&self, program: &str) -> Command {
        self.node.command(program)
    }

    /// Client files for the login host's sshd (see [`Client::new`]) that also trust the node's
    /// host key under its name and address (`node1,169.254.K.6`), for a hop through the login
    /// host. No `Host` blocks: the login host is [`Cluster::login_addr`].
    pub(crate) fn client(&self) -> Client {
        let client = Client::new(&self.login_sshd);
        let mut known_hosts = OpenOptions::new()
            .append(true)
            .open(client.known_hosts())
            .expect("open known_hosts");
        writeln!(known_hosts, "{NODE},{}", self.node_sshd.known_hosts_line()).expect("trust the node's host key");
        client
    }

    /// The login host's address for the client (its sshd listens on port 22).
    pub(crate) fn login_addr(&self) -> Ipv4Addr {
        self.login_sshd.addr()
    }

    /// The login host's address on its link to the node, where `login` resolves on both hosts;
    /// its sshd listens here too. Unreachable from the client.
    pub(crate) fn login_inner_addr(&self) -> Ipv4Addr {
        self.login_inner_addr
    }

    /// The node's address (`node1` on both hosts), reachable only from the login host.
    pub(crate) fn node_addr(&self) -> Ipv4Addr {
        self.node_addr
    }

    /// The TOTP code the login host takes now (a cluster from [`Cluster::start_with`]`(true)`).
    pub(crate) fn otp_code(&self) -> String {
        self.login_sshd.otp_code()
    }

    /// The login host's sshd log.
    pub(crate) fn login_sshd_log(&self) -> String {
        self.login_sshd.log()
    }

    /// The sshd on the login host, e.g. for [`Sshd::outage`] and [`Sshd::restart`].
    pub(crate) fn login_sshd(&mut self) -> &mut Sshd {
        &mut self.login_sshd
    }

    /// The sshd on the node.
    pub(crate) fn node_sshd(&mut self) -> &mut Sshd {
        &mut self.node_sshd
    }

    /// The shared home: `$HOME` of ssh sessions on both hosts, and bound over the user's home
    /// from the password database there (where sessions and jobs start, and where `sbatch`
    /// writes `slurm-<id>.out` by default).
    pub(crate) fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// `squeue -h -t all -j ID -o %T` on the login host: the job's state while slurmctld still
    /// knows it (`MinJobAge`, 300 s after its end), `None` before it exists or after that.
    pub(crate) fn job_state(&self, job: &str) -> Option<String> {
        let out = self
            .on_login("squeue")
            .args(["-h", "-t", "all", "-j", job, "-o", "%T"])
            .output()
            .expect("spawn squeue");
        let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !state.is_empty()).then_some(state)
    }

    /// Waits until the job is in `state` and returns how long that took.
    ///
    /// # Panics
    /// After `timeout`, with the job's state and the daemons' logs.
    pub(crate) fn wait_job_state(&self, job: &str, state: &str, timeout: Duration) -> Duration {
        let begin = Instant::now();
        loop {
            let now = self.job_state(job);
            if now.as_deref() == Some(state) {
                return begin.elapsed();
            }
            assert!(
                begin.elapsed() < timeout,
                "job {job} not {state} within {timeout:?} (it is {now:?}); logs:\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(20));
        }
    }

    /// Makes a running job reach its walltime now (`scontrol update JobId=… EndTime=now`, an
    /// admin's command): slurmctld ends it as it would at the end of its `--time`, with state
    /// TIMEOUT and reason TimeLimit, at its next time-limit check (every 30 s from slurmctld's
    /// start), 0–30 s later. `squeue -o %e` and `scontrol show job`'s `EndTime` follow the
    /// override, so `EndTime=now+N` (with [`Cluster::scontrol`]) tests a warning before the end;
    /// `squeue -o %L` (time left) does not: it counts down the time limit, which the override
    /// rounds up to whole minutes.
    pub(crate) fn end_walltime_now(&self, job: &str) {
        self.scontrol(&["update", &format!("JobId={job}"), "EndTime=now"]);
    }

    /// Runs `scontrol ARGS` on the login host as the admin, asserting success; its stdout.
    pub(crate) fn scontrol(&self, args: &[&str]) -> String {
        let out = self.on_login("scontrol").args(args).output().expect("spawn scontrol");
        assert!(
            out.status.success(),
            "scontrol {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The job completion log (`jobcomp/filetxt`): one line per ended job with its final
    /// `JobState=`, kept after slurmctld has forgotten the job.
    pub(crate) fn jobcomp(&self) -> String {
        fs::read_to_string(self.root.path().join("log/jobcomp.txt")).unwrap_or_default()
    }

    /// From nothing to an idle node, sshds included.
    pub(crate) fn started_in(&self) -> Duration {
        self.started_in
    }

    /// From starting munged to an idle node.
    pub(crate) fn daemons_up_in(&self) -> Duration {
        self.daemons_up_in
    }

    /// The daemons' logs, for assertion messages.
    pub(crate) fn logs(&self) -> String {
        let mut logs = String::new();
        for name in ["munged.out", "slurmctld.out", "slurmd.out", "jobcomp.txt"] {
            let text = fs::read_to_string(self.root.path().join("log").join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            logs.push_str("--- ");
            logs.push_str(name);
            logs.push('\n');
            for line in tail.into_iter().rev() {
                logs += line;
                logs.push('\n');
            }
        }
        logs
    }
}

impl Drop for Cluster {
    /// Every process on both hosts (daemons, sessions, jobs, whatever they started) is killed,
    /// which also ends the mount namespaces and their mounts; then the fields go: the sshds
    /// (nothing left to kill), the namespaces (`Chain`), the temp dir.
    fn drop(&mut self) {
        for netns in [&self.login.netns, &self.node.netns] {
            kill_everything_in(netns);
        }
        for child in self
            .daemons
            .iter_mut()
            .chain([&mut self.login.holder, &mut self.node.holder])
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Host {
    /// A process inside `netns` with a UTS namespace named `hostname` and a private mount
    /// namespace with the cluster's `/etc/hosts`, `/etc/slurm` and shared home; it sleeps
    /// until killed, holding them for every program that joins this host.
    fn start(netns: &str, hostname: &str, root: &Path) -> Host {
        let user_home = User::from_uid(geteuid())
            .expect("read the password database")
            .expect("the current user has a password database entry")
            .dir;
        let mut holder = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                r#"hostname "$1" && mount --bind "$2/hosts" /etc/hosts && mount --bind "$2/etc" /etc/slurm &&
                   mount --bind "$2/home" "$3" && echo ready && exec sleep infinity"#,
            )
            .arg("sh")
            .arg(hostname)
            .arg(root)
            .arg(user_home)
            .env(OWNER_VAR, owner())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a host's namespace holder");
        let mut ready = String::new();
        BufReader::new(holder.stdout.take().expect("the holder's stdout"))
            .read_line(&mut ready)
            .expect("read from the holder");
        if ready.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().expect("wait for the holder");
            panic!(
                "host {hostname} could not be set up: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let enter = [
            "nsenter",
            "-t",
            &holder.id().to_string(),
            "--net",
            "--uts",
            "--mount",
            "--",
        ]
        .map(String::from)
        .to_vec();
        Host {
            netns: netns.to_owned(),
            holder,
            enter,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(&self.enter[0]);
        command.args(&self.enter[1..]).arg(program).env(OWNER_VAR, owner());
        command
    }
}

fn slurm_conf(root: &Path, login_addr: Ipv4Addr, node_addr: Ipv4Addr) -> String {
    let path = |name: &str| root.join(name).display().to_string();
    format!(
        "ClusterName=jssh\n\
         SlurmctldHost={LOGIN}({login_addr})\n\
         AuthType=auth/munge\n\
         CredType=cred/munge\n\
         AuthInfo=socket={munge}\n\
         SlurmUser=root\n\
         SlurmdUser=root\n\
         StateSaveLocation={state}\n\
         SlurmdSpoolDir={spool}\n\
         SlurmctldPidFile={log}/slurmctld.pid\n\
         SlurmdPidFile={log}/slurmd.pid\n\
         SlurmctldLogFile={log}/slurmctld.log\n\
         SlurmdLogFile={log}/slurmd.log\n\
         # linuxproc: cgroups are not the test's to configure; it misses double-forked daemons.\n\
         ProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\n\
         MpiDefault=none\n\
         SelectType=select/cons_tres\n\
         # Cores only: with memory counted, the first job takes the node's whole (unset) memory\n\
         # and every other job waits for it to end.\n\
         SelectTypeParameters=CR_Core\n\
         # Schedule at every submission (an empty SchedulerParameters= is fatal).\n\
         SchedulerParameters=batch_sched_delay=0,sched_min_interval=0\n\
         # The node's CPUs as configured, not as found: jobs do not queue on a 2-core box.\n\
         SlurmdParameters=config_overrides\n\
         ReturnToService=2\n\
         MailProg=/bin/true\n\
         # SIGTERM to SIGKILL at a walltime's end or a scancel.\n\
         KillWait=2\n\
         JobCompType=jobcomp/filetxt\n\
         JobCompLoc={log}/jobcomp.txt\n\
         NodeName={NODE} NodeAddr={node_addr} CPUs=8 State=UNKNOWN\n\
         PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP\n",
        munge = path("munge/run/munge.sock"),
        state = path("state"),
        spool = path("spool"),
        log = path("log"),
    )
}

/// `PID:START` of this process (its start time in clock ticks since boot tells a reused pid).
fn owner() -> String {
    process_owner_id(std::process::id()).expect("read this process's stat")
}

fn process_owner_id(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let started = stat.get(stat.rfind(')')? + 2..)?.split(' ').nth(19)?;
    Some(format!("{pid}:{started}"))
}

/// Whether the test process named by an owner id still runs.
fn owner_alive(id: &str) -> bool {
    id.split_once(':')
        .and_then(|(pid, _)| pid.parse().ok())
        .and_then(process_owner_id)
        .is_some_and(|now| now == id)
}

/// An exclusive lock shared by every cluster of every test run on this machine.
fn lock() -> Flock<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("jssh-slurm.lock"))
        .expect("open the Slurm fixture's lock file");
    Flock::lock(file, FlockArg::LockExclusive).unwrap_or_else(|(_, e)| panic!("lock the Slurm fixture: {e}"))
}

/// What a killed test run left: its processes (daemons, sessions, jobs: everything in its
/// namespaces), its namespaces and their `unreachable` route, its temp dir. A cluster counts
/// as alive while the test process that made it runs.
fn remove_leftovers() {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let mut tags = Vec::new();
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let Some(netns) = line.split_whitespace().next() else {
            continue;
        };
        let Some(tag) = netns
            .strip_prefix("jssh")
            .and_then(|rest| CHAIN.iter().find_map(|name| rest.strip_suffix(&format!("-{name}"))))
            .filter(|tag| tag.parse::<u8>().is_ok())
        else {
            continue;
        };
        let owned = netns_pids(netns)
            .iter()
            .any(|pid| environment_value(*pid, OWNER_VAR).is_some_and(|id| owner_alive(&id)));
        if !owned {
            eprintln!("removing {netns}, left by a killed test run");
            kill_everything_in(netns);
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
            tags.push(tag.to_owned());
        }
    }
    // The rest of those chains: the namespace that claims the tag, and its route.
    for tag in tags {
        let _ = Command::new("ip")
            .args(["netns", "del", &format!("jssh{tag}")])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["route", "del", "unreachable", &format!("169.254.{tag}.0/24")])
            .stderr(Stdio::null())
            .status();
    }
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with("jssh-slurm-")
            && fs::read_to_string(entry.path().join("owner")).is_ok_and(|id| !owner_alive(&id));
        if stale {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn netns_pids(netns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|pid| pid.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILLs every process in the network namespace until none is left: nothing started there
/// can leave it, so this is everything a host ran.
fn kill_everything_in(netns: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = netns_pids(netns);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        sleep(Duration::from_millis(10));
    }
}

fn environment_value(pid: i32, name: &str) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        entry.strip_prefix(name)?.strip_prefix('=').map(str::to_owned)
    })
}

/// Live processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let live = !stat.get(stat.rfind(')')? + 2..)?.starts_with('Z');
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            (live && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle)).then_some(pid)
        })
        .collect()
}

/// `ssh -F <client config> USER@ADDR COMMAND` with `stdin`, as a user types it.
fn ssh(client: &Client, user_at: &str, extra: &[&str], command: &str, stdin: &str) -> Output {
    let mut child = Command::new("ssh")
        .arg("-F")
        .arg(client.ssh_config())
        .args(["-o", "BatchMode=yes"])
        .args(extra)
        .arg(user_at)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    child
        .stdin
        .take()
        .expect("ssh's stdin")
        .write_all(stdin.as_bytes())
        .expect("write to ssh");
    child.wait_with_output().expect("wait for ssh")
}

/// `ssh` that must succeed; its stdout, trimmed.
fn ssh_ok(client: &Client, user_at: &str, command: &str, stdin: &str) -> String {
    let out = ssh(client, user_at, &[], command, stdin);
    assert!(
        out.status.success(),
        "ssh {user_at} {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A job that reports where it runs and whether it reaches the login host, then sleeps with a
/// marker of its own on its command line.
fn job_script(marker: &str) -> String {
    format!(
        "#!/bin/bash\n\
         echo \"host=$(hostname)\"\n\
         echo \"addrs=$(hostname -I)\"\n\
         exec 3<>/dev/tcp/{LOGIN}/22 && echo \"login=$(head -c 7 <&3)\" && exec 3<&-\n\
         echo ready\n\
         exec sleep {marker}\n"
    )
}

/// A number of seconds no other test sleeps: the job's marker.
fn unique_sleep() -> String {
    static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}{:07}{n}", 9, std::process::id())
}

fn wait_file_line(path: &Path, line: &str, timeout: Duration) -> String {
    let begin = Instant::now();
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            return text;
        }
        assert!(
            begin.elapsed() < timeout,
            "no line {line:?} in {} within {timeout:?}: {text:?}",
            path.display()
        );
        sleep(Duration::from_millis(20));
    }
}

fn wait_gone(marker: &str, timeout: Duration) {
    let begin = Instant::now();
    while !processes_with(marker).is_empty() {
        assert!(begin.elapsed() < timeout, "the job's processes outlived it");
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_job_submitted_over_ssh_runs_on_the_node_and_scancel_ends_it() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    eprintln!(
        "cluster up in {:?} (daemons {:?})",
        cluster.started_in(),
        cluster.daemons_up_in()
    );
    let client = cluster.client();
    let login = format!("{}@{}", cluster.login_sshd.user(), cluster.login_addr());
    assert_eq!(ssh_ok(&client, &login, "hostname", ""), LOGIN);

    let marker = unique_sleep();
    let submitted = Instant::now();
    let job = ssh_ok(&client, &login, "sbatch --parsable", &job_script(&marker));
    let sbatch = submitted.elapsed();
    assert!(job.parse::<u32>().is_ok(), "sbatch --parsable printed {job:?}");
    let running = cluster.wait_job_state(&job, "RUNNING", Duration::from_secs(20));
    let output = wait_file_line(
        &cluster.home().join(format!("slurm-{job}.out")),
        "ready",
        Duration::from_secs(20),
    );
    eprintln!(
        "first job: sbatch over ssh {sbatch:?}, RUNNING {running:?} later, the script's output {:?} \
         after the ssh began",
        submitted.elapsed()
    );
    assert!(output.contains(&format!("host={NODE}\n")), "{output}");
    let addrs = output
        .lines()
        .find_map(|l| l.strip_prefix("addrs="))
        .unwrap_or_default();
    assert!(
        addrs.split_whitespace().any(|a| a == cluster.node_addr().to_string()),
        "the job has the node's address: {output}"
    );
    for login_addr in [cluster.login_addr(), cluster.login_inner_addr()] {
        assert!(
            !addrs.contains(&login_addr.to_string()),
            "the job is not on the login host's network: {output}"
        );
    }
    assert!(
        output.contains("login=SSH-2.0\n"),
        "the job reaches the login host's sshd: {output}"
    );

    assert_eq!(
        ssh_ok(&client, &login, &format!("squeue -h -j {job} -o '%T %N'"), ""),
        format!("RUNNING {NODE}")
    );
    assert!(!processes_with(&marker).is_empty(), "the job runs");
    ssh_ok(&client, &login, &format!("scancel {job}"), "");
    let gone = Instant::now();
    wait_gone(&marker, Duration::from_secs(10));
    eprintln!("scancel → the job's processes gone in {:?}", gone.elapsed());
    assert_eq!(
        ssh_ok(&client, &login, &format!("squeue -h -t all -j {job} -o %T"), ""),
        "CANCELLED"
    );
    assert_eq!(
        ssh_ok(&client, &login, &format!("squeue -h -j {job} -o %T"), ""),
        "",
        "a cancelled job is no longer in the default squeue"
    );
}

#[test]
fn a_walltime_end_says_timeout_and_ends_the_job() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let client = cluster.client();
    let login = format!("{}@{}", cluster.login_sshd.user(), cluster.login_addr());
    let marker = unique_sleep();
    let job = ssh_ok(&client, &login, "sbatch --parsable --time=1", &job_script(&marker));
    cluster.wait_job_state(&job, "RUNNING", Duration::from_secs(20));
    wait_file_line(
        &cluster.home().join(format!("slurm-{job}.out")),
        "ready",
        Duration::from_secs(20),
    );
    let time_left = ssh_ok(&client, &login, &format!("squeue -h -j {job} -o %L"), "");
    assert!(
        time_left.starts_with("0:") || time_left == "1:00",
        "--time=1 holds: {time_left}"
    );

    cluster.end_walltime_now(&job);
    let times = ssh_ok(&client, &login, &format!("squeue -h -j {job} -o %e; date +%FT%T"), "");
    let (end, now) = times.split_once('\n').expect("two lines");
    assert!(end <= now, "the end time follows the override: {times}");
    let ended = cluster.wait_job_state(&job, "TIMEOUT", Duration::from_secs(40));
    eprintln!("walltime override → TIMEOUT in {ended:?} (slurmctld checks every 30 s)");
    assert_eq!(
        ssh_ok(&client, &login, &format!("squeue -h -t all -j {job} -o '%T %r'"), ""),
        "TIMEOUT TimeLimit"
    );
    wait_gone(&marker, Duration::from_secs(10));
    let jobcomp = cluster.jobcomp();
    assert!(
        jobcomp
            .lines()
            .any(|l| l.starts_with(&format!("JobId={job} ")) && l.contains(" JobState=TIMEOUT ")),
        "the completion log keeps the final state: {jobcomp}"
    );
    let sacct = ssh(&client, &login, &[], &format!("sacct -j {job}"), "");
    eprintln!(
        "sacct without slurmdbd: {}",
        String::from_utf8_lossy(&sacct.stderr).trim()
    );
}

#[test]
fn the_node_is_another_host_that_only_the_login_host_reaches() {
    let Some(mut cluster) = Cluster::start() else {
        return;
    };
    let client = cluster.client();
    let user = cluster.login_sshd.user();
    assert!(ssh_banner(cluster.login_addr()), "the client reaches the login host");
    assert!(
        !ssh_banner(cluster.node_addr()) && !ssh_banner(cluster.login_inner_addr()),
        "the client reaches nothing behind the login host"
    );
    // Through the login host (mode a's path): the name resolves there.
    let through = ssh(
        &client,
        &format!("{user}@{NODE}"),
        &["-J", &format!("{user}@{}", cluster.login_addr())],
        "hostname; hostname -I",
        "",
    );
    let report = String::from_utf8_lossy(&through.stdout);
    assert!(
        through.status.success(),
        "ssh -J login node1: {}; the node's sshd:\n{}",
        String::from_utf8_lossy(&through.stderr),
        cluster.node_sshd().log()
    );
    assert!(report.starts_with(&format!("{NODE}\n")), "{report}");
    assert!(report.contains(&cluster.node_addr().to_string()), "{report}");
    // The node reaches the login host's sshd by name (mode b's reverse path).
    let back = cluster
        .on_node("bash")
        .args(["-c", &format!("exec 3<>/dev/tcp/{LOGIN}/22 && head -c 7 <&3")])
        .output()
        .expect("spawn bash on the node");
    assert_eq!(String::from_utf8_lossy(&back.stdout), "SSH-2.0");
    // The login host's sshd goes down and comes back, inside its host.
    cluster.login_sshd().outage();
    assert!(!ssh_banner(cluster.login_addr()), "the login host's sshd is down");
    cluster.login_sshd().restart();
    assert_eq!(
        ssh_ok(&client, &format!("{user}@{}", cluster.login_addr()), "hostname", ""),
        LOGIN
    );
    // The shared home is the same files on both hosts, at its own path and at the user's
    // home from the password database, which outside the hosts is untouched.
    let marker = unique_sleep();
    fs::write(cluster.home().join(&marker), "shared\n").unwrap();
    let user_home = User::from_uid(geteuid()).unwrap().unwrap().dir;
    assert!(!user_home.join(&marker).exists());
    for host in [cluster.on_login("cat"), cluster.on_node("cat")] {
        let mut host = host;
        let out = host
            .arg(cluster.home().join(&marker))
            .arg(user_home.join(&marker))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "shared\nshared\n");
    }
}

#[test]
fn later_jobs_run_within_a_second_or_two_of_sbatch() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let mut latencies = Vec::new();
    let mut started = Vec::new();
    for _ in 0..5 {
        let marker = unique_sleep();
        let begin = Instant::now();
        let mut sbatch = cluster
            .on_login("sbatch")
            .arg("--parsable")
            .arg(format!("--chdir={}", cluster.home().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sbatch");
        sbatch
            .stdin
            .take()
            .unwrap()
            .write_all(job_script(&marker).as_bytes())
            .unwrap();
        let out = sbatch.wait_with_output().unwrap();
        let job = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        cluster.wait_job_state(&job, "RUNNING", Duration::from_secs(20));
        latencies.push(begin.elapsed());
        wait_file_line(
            &cluster.home().join(format!("slurm-{job}.out")),
            "ready",
            Duration::from_secs(20),
        );
        started.push(begin.elapsed());
        let cancelled = cluster.on_login("scancel").arg(&job).status().unwrap();
        assert!(cancelled.success());
        wait_gone(&marker, Duration::from_secs(10));
    }
    eprintln!("sbatch → RUNNING: {latencies:?}; sbatch → the script's output: {started:?}");
    latencies.sort();
    assert!(
        latencies[2] < Duration::from_secs(5),
        "median sbatch → RUNNING {:?}",
        latencies[2]
    );
}
