//! jssh's integration tests: one binary, so the real-sshd fixture compiles once. Everything
//! here runs the real `jssh` binary against a real `sshd` on 127.0.0.1 with its own host key,
//! and points OpenSSH at explicit files so nothing touches the real `~/.ssh`.

mod browser;
mod configs;
mod denied;
mod doctor;
mod fixture;
mod generated;
mod hops;
mod hostile;
mod jupyter;
mod many;
mod netns;
mod other_user;
mod otp;
mod ports;
mod pty;
mod robust;
mod service;
mod setup;
mod slurm;
mod slurm_bench;
mod slurm_doctor;
mod slurm_reach;
mod slurm_up;
mod up;
mod util;
mod wake;
