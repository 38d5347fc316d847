//! jssh: Jupyter on a remote server over the system's OpenSSH, as if it were local.

mod cli;
mod cmd;
mod envspec;
mod fsutil;
mod jupyter;
mod keys;
mod paths;
mod platform;
mod process;
mod profile;
mod remote;
mod sanitize;
mod service;
mod siblings;
mod slurm;
mod ssh;
mod sshconfig;
mod state;
mod supervisor;
mod target;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;

/// An error the user caused by how they called jssh (exit status 2, like clap's own).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether an error is a write to a closed pipe (directly or through serde_json).
fn broken_pipe(err: &(dyn std::error::Error + 'static)) -> bool {
    let kind = err
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
        .or_else(|| {
            err.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
        });
    kind == Some(std::io::ErrorKind::BrokenPipe)
}

/// Parses the command line, runs it, and maps the outcome to jssh's documented exit codes.
#[must_use]
pub fn main() -> ExitCode {
    exit_code(cmd::run(Cli::parse()))
}

/// The `jssh-supervisor` binary: the supervisor that `jssh up` starts, built on its own so
/// that the process which runs for days maps only the code it needs (no clap, no setup or
/// doctor): its resident set is what the supervisor costs while idle.
#[must_use]
pub fn supervisor_main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    exit_code(supervisor::main(&args))
}

fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        // A closed pipe (`jssh status --json | head`) is the reader's choice, not a failure.
        Err(err) if err.chain().any(broken_pipe) => ExitCode::SUCCESS,
        Err(err) => {
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            // Not eprintln!, which panics when the write fails: the supervisor's stderr is its
            // log, and a full disk must not turn a clean exit into an abort.
            let _ = writeln!(std::io::stderr(), "jssh: error: {}", chain.join(": "));
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
