//! One file per subcommand; this module dispatches and holds what several of them share.

mod attach;
mod doctor;
mod down;
mod fanout;
mod generate;
mod hosts;
mod jupyter;
mod login;
mod logs;
mod password;
mod service;
mod setup;
mod status;
mod tail;
mod up;
mod url;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::paths::Paths;
use crate::profile::{Profile, Profiles};
use crate::ssh::Ssh;
use crate::state::StateDir;
use crate::target::Alias;

/// What every subcommand needs: where files are, and how to call OpenSSH.
pub(crate) struct Ctx {
    pub(crate) paths: Paths,
    pub(crate) ssh: Ssh,
}

impl Ctx {
    /// Every host profile (`hosts.toml`), validated on load.
    pub(crate) fn profiles(&self) -> Result<Profiles> {
        Profiles::load(&self.paths.hosts_file())
    }

    /// The profile for `alias`, or a usage error listing the known ones.
    pub(crate) fn profile(&self, alias: &Alias) -> Result<Profile> {
        self.profiles()?.lookup(alias).cloned()
    }

    fn new(global: &GlobalArgs) -> Result<Self> {
        let paths = Paths::resolve(global.ssh_config.clone())?;
        let ssh = Ssh::new(paths.ssh_config_flag(), global.connect_timeout);
        Ok(Self { paths, ssh })
    }
}

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    let ok = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Setup(args) => ok(setup::run(&Ctx::new(&cli.global)?, &args)),
        Command::Up(args) => up::run(&Ctx::new(&cli.global)?, &args),
        Command::Down(args) => ok(down::run(&Ctx::new(&cli.global)?, &args)),
        Command::Login(args) => ok(login::run(&Ctx::new(&cli.global)?, &args)),
        Command::Status(args) => ok(status::run(&Ctx::new(&cli.global)?, &args)),
        Command::Attach(args) => attach::run(&Ctx::new(&cli.global)?, &args.alias),
        Command::Logs(args) => ok(logs::run(&Ctx::new(&cli.global)?, &args)),
        Command::Url(args) => ok(url::print(&Ctx::new(&cli.global)?, &args.alias)),
        Command::Open(args) => ok(url::open(&Ctx::new(&cli.global)?, &args.alias)),
        Command::Jupyter(args) => ok(jupyter::run(&Ctx::new(&cli.global)?, &args)),
        Command::Password(args) => ok(password::run(&Ctx::new(&cli.global)?, &args)),
        Command::Doctor(args) => doctor::run(&Ctx::new(&cli.global)?, &args),
        Command::Hosts(args) => ok(hosts::run(&Ctx::new(&cli.global)?, &args)),
        Command::Service(args) => service::run(&Ctx::new(&cli.global)?, &cli.global, &args.action),
        Command::Completions(args) => ok(generate::completions(args.shell)),
        Command::Man(args) => ok(generate::man(args.subcommand.as_deref())),
        Command::Supervise(args) => supervise(&Ctx::new(&cli.global)?, &cli.global, &args.alias, args.foreground),
    }
}

/// The hidden `jssh supervise`, for a jssh copied without its `jssh-supervisor`.
fn supervise(ctx: &Ctx, global: &GlobalArgs, alias: &Alias, foreground: bool) -> Result<ExitCode> {
    crate::supervisor::run(&crate::supervisor::handle::Args {
        alias: alias.clone(),
        ssh_config: ctx.paths.ssh_config.clone(),
        connect_timeout: global.connect_timeout,
        foreground,
    })
}

/// The profiles of `aliases`, in the order named, each once (an unknown one is the usual
/// usage error): what `up`, `down` and `status` act on when given several.
pub(crate) fn named_profiles(profiles: &Profiles, aliases: &[Alias]) -> Result<Vec<Profile>> {
    let mut named: Vec<Profile> = Vec::new();
    for alias in aliases {
        let profile = profiles.lookup(alias)?;
        if !named.iter().any(|p| p.alias == profile.alias) {
            named.push(profile.clone());
        }
    }
    Ok(named)
}

/// Opens `url` in a browser through a private redirect page, so the token never shows up in
/// the browser's (or xdg-open's) argv.
pub(crate) fn open_url(run: &StateDir, url: &str) -> Result<()> {
    let page = format!(
        "<!DOCTYPE html>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"0;url={url}\">\n\
         <title>jssh</title>\n<p><a href=\"{url}\">Open Jupyter</a></p>\n"
    );
    crate::fsutil::write_atomic(&run.open_page(), page.as_bytes(), crate::fsutil::PRIVATE_FILE)?;
    let cmd = crate::process::Cmd::new(crate::platform::OPENER).arg(run.open_page());
    let status = cmd.run_interactive()?;
    if !status.success() {
        anyhow::bail!("`{cmd}` failed ({status}): open this URL yourself: {url}");
    }
    Ok(())
}
