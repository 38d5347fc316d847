//! `up`'s arguments checked and turned into a plan before anything runs: the hosts (each
//! alias known, named once), the options that apply to each, and what the flags mean for
//! several aliases at once (as just turns its arguments into a `Config`).

use std::time::Duration;

use anyhow::{Result, bail};

use crate::UsageError;
use crate::cli::UpArgs;
use crate::cmd::named_profiles;
use crate::profile::{Profile, Profiles};
use crate::slurm::SbatchOptions;

/// What `jssh up` is to do.
#[derive(Debug)]
pub(super) struct Plan {
    /// The hosts, in the order named (with `--all`, the profiles' order), each once, with
    /// `--env` applied.
    pub(super) hosts: Vec<Profile>,
    /// In the background: asked for with -d, or several aliases (see `backgrounded`).
    pub(super) detach: bool,
    /// Several aliases were asked to run in the foreground, which one terminal cannot show:
    /// they run in the background instead, and `up` says so.
    pub(super) backgrounded: bool,
    pub(super) port: Option<u16>,
    pub(super) dir: Option<String>,
    pub(super) notebook: bool,
    /// Jupyter on a Unix socket (cleared when this machine's OpenSSH cannot forward to one).
    pub(super) socket: bool,
    pub(super) open: bool,
    /// How long each alias may take to answer.
    pub(super) timeout: Duration,
    pub(super) stop_remote: bool,
    /// `--slurm` for this run (else each profile's own), or `--no-slurm`.
    pub(super) slurm: SlurmChoice,
    pub(super) walltime_warning: u64,
}

/// Whether this run submits a Slurm job.
#[derive(Debug, Clone)]
pub(super) enum SlurmChoice {
    Profile,
    With(SbatchOptions),
    Without,
}

impl Plan {
    /// The sbatch options for `profile`'s run, if it runs as a job.
    pub(super) fn slurm<'a>(&'a self, profile: &'a Profile) -> Option<&'a SbatchOptions> {
        match &self.slurm {
            SlurmChoice::Profile => profile.slurm.as_ref(),
            SlurmChoice::With(options) => Some(options),
            SlurmChoice::Without => None,
        }
    }
}

impl Plan {
    /// The plan for `args`; `--env` is written into `profiles` (the caller saves them when
    /// the returned flag says they changed).
    pub(super) fn new(args: &UpArgs, profiles: &mut Profiles) -> Result<(Self, bool)> {
        let mut hosts: Vec<Profile> = if args.all {
            profiles.iter().cloned().collect()
        } else {
            named_profiles(profiles, &args.aliases)?
        };
        if hosts.is_empty() {
            bail!("no hosts yet: add one with `jssh setup ALIAS --host HOST`");
        }
        let several = hosts.len() > 1;
        if several && args.port.is_some() {
            return Err(UsageError(
                "--port is for one alias: several get a port each (the one each used last, else a free one)".into(),
            )
            .into());
        }
        if several && args.stop_remote {
            return Err(UsageError(
                "--stop-remote is for one alias in the foreground: several run in the background (`jssh down` stops them)"
                    .into(),
            )
            .into());
        }
        let mut changed = false;
        if !args.env.is_empty() {
            for host in hosts.iter_mut().filter(|h| h.env != args.env) {
                host.env.clone_from(&args.env);
                profiles.upsert(host.clone());
                changed = true;
            }
        }
        let plan = Self {
            hosts,
            detach: args.detach || several,
            backgrounded: several && !args.detach,
            port: args.port,
            dir: args.dir.clone(),
            notebook: args.notebook,
            socket: args.socket,
            open: args.open,
            timeout: Duration::from_secs(args.timeout),
            stop_remote: args.stop_remote,
            slurm: match (&args.slurm, args.no_slurm) {
                (Some(options), _) => SlurmChoice::With(options.clone()),
                (None, true) => SlurmChoice::Without,
                (None, false) => SlurmChoice::Profile,
            },
            walltime_warning: args.walltime_warning,
        };
        Ok((plan, changed))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn profiles(aliases: &[&str]) -> Profiles {
        let entry = "[[host]]\nalias = \"ALIAS\"\nhost = \"h\"\nuser = \"u\"\nport = 22\nidentity = \"/k\"\n\n";
        let text: String = aliases.iter().map(|alias| entry.replace("ALIAS", alias)).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.toml");
        std::fs::write(&path, text).unwrap();
        Profiles::load(&path).unwrap()
    }

    fn plan(argv: &[&str], profiles: &mut Profiles) -> Result<(Plan, bool)> {
        let cli = Cli::try_parse_from(["jssh", "up"].iter().chain(argv)).unwrap();
        let Command::Up(up) = cli.command else { unreachable!() };
        Plan::new(&up, profiles)
    }

    fn aliases(plan: &Plan) -> Vec<&str> {
        plan.hosts.iter().map(|h| h.alias.as_str()).collect()
    }

    #[test]
    fn arguments_become_a_plan() {
        let mut known = profiles(&["a", "b", "c"]);
        let (one, _) = plan(&["b"], &mut known).unwrap();
        assert_eq!((aliases(&one), one.detach, one.backgrounded), (vec!["b"], false, false));

        let (named, _) = plan(&["c", "a", "c"], &mut known).unwrap();
        assert_eq!(aliases(&named), ["c", "a"], "in the order named, once each");
        assert!(
            named.detach && named.backgrounded,
            "several run in the background, and are told so"
        );

        let (all, _) = plan(&["--all", "-d"], &mut known).unwrap();
        assert_eq!(aliases(&all), ["a", "b", "c"]);
        assert!(all.detach && !all.backgrounded);

        let (_, changed) = plan(&["--all", "--env", "venv:/v"], &mut known).unwrap();
        assert!(changed);
        assert!(known.iter().all(|p| p.env.len() == 1), "--env is saved for each");
        let (_, changed) = plan(&["a", "--env", "venv:/v"], &mut known).unwrap();
        assert!(!changed, "the same --env changes nothing");
    }

    #[test]
    fn flags_for_one_alias_are_refused_with_several_and_nothing_changes() {
        let mut known = profiles(&["a", "b"]);
        for argv in [
            &["a", "b", "--port", "9000"][..],
            &["--all", "--stop-remote"],
            &["a", "x", "--env", "venv:/v"],
        ] {
            let err = plan(argv, &mut known).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some(), "{argv:?}: {err}");
            assert!(known.iter().all(|p| p.env.is_empty()), "{argv:?} changed the profiles");
        }
        let none = plan(&["--all"], &mut profiles(&[])).unwrap_err();
        assert!(none.to_string().contains("jssh setup"), "{none}");
    }
}
