//! One file per subcommand; this module dispatches and builds what they all share.

mod generate;
mod hosts;
mod setup;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::paths::Paths;
use crate::ssh::Ssh;

/// What every subcommand needs: where files are, and how to call OpenSSH.
pub(crate) struct Ctx {
    pub(crate) paths: Paths,
    pub(crate) ssh: Ssh,
    pub(crate) connect_timeout: u32,
}

impl Ctx {
    fn new(global: &GlobalArgs) -> Result<Self> {
        let paths = Paths::resolve(global.ssh_config.clone())?;
        let ssh = Ssh::new(paths.ssh_config_flag(), global.connect_timeout);
        Ok(Self {
            paths,
            ssh,
            connect_timeout: global.connect_timeout,
        })
    }
}

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Setup(args) => setup::run(&Ctx::new(&cli.global)?, &args),
        Command::Hosts(args) => hosts::run(&Ctx::new(&cli.global)?, &args),
        Command::Completions(args) => generate::completions(args.shell),
        Command::Man(args) => generate::man(args.subcommand.as_deref()),
    }
    .map(|()| ExitCode::SUCCESS)
}
