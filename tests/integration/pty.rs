//! A program on a pseudo-terminal of the test's own, as a user in a terminal runs it: ssh
//! asks for passwords and codes on its controlling terminal, never on stdin.

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::pty::openpty;

pub(crate) struct Terminal {
    master: File,
    output: Arc<Mutex<String>>,
    child: Child,
}

impl Terminal {
    /// Runs `cmd` in a new session whose controlling terminal is the pty (`setsid -c`).
    pub(crate) fn spawn(cmd: &Command) -> Terminal {
        let pty = openpty(None, None).expect("openpty");
        let slave = File::from(pty.slave);
        let mut wrapped = Command::new("setsid");
        wrapped.arg("-c").arg(cmd.get_program()).args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        let child = wrapped
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("spawn under setsid -c");
        let master = File::from(pty.master);
        let output = Arc::new(Mutex::new(String::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), Arc::clone(&output));
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            // EIO once every holder of the slave side has closed it.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Terminal { master, output, child }
    }

    /// Everything the program wrote so far.
    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output holds `needle` `count` times; false on timeout.
    pub(crate) fn wait_for(&self, needle: &str, count: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.output().matches(needle).count() >= count {
                return true;
            }
            sleep(Duration::from_millis(20));
        }
        false
    }

    /// Types `line` and Enter.
    pub(crate) fn type_line(&mut self, line: &str) {
        self.master.write_all(format!("{line}\r").as_bytes()).unwrap();
    }

    /// Waits for the program to exit (killing it after `limit`).
    pub(crate) fn finish(mut self, limit: Duration) -> (ExitStatus, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                sleep(Duration::from_millis(50));
                return (status, self.output());
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let status = self.child.wait().unwrap();
                return (status, self.output());
            }
            sleep(Duration::from_millis(20));
        }
    }
}
