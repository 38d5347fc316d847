//! Every clap type. Doc comments here are the `--help` text, the man page and the completions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};
use clap_complete::Shell;

use crate::envspec::EnvSpec;
use crate::slurm::SbatchOptions;
use crate::target::{Alias, Hostname, IdentityPath, Jump, Port, UserName, parse_identity, parse_port};

/// Jupyter on a remote server over your own OpenSSH, as if it were local.
///
/// `jssh setup ALIAS --host HOST` makes a key, installs it, and writes a managed block into
/// your ssh config; everything else you already have (agent, known_hosts, ProxyJump, Match
/// blocks) keeps working because jssh drives the system's `ssh`.
#[derive(Debug, Parser)]
#[command(name = "jssh", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Knobs honoured by every subcommand and every OpenSSH call jssh makes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when
    /// not the default. jssh's key and its managed `config.d/jssh` live beside it.
    #[arg(long, global = true, env = "JSSH_SSH_CONFIG", value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub(crate) ssh_config: Option<PathBuf>,

    /// Give up connecting to a host after this many seconds.
    #[arg(long, global = true, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub(crate) connect_timeout: u32,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    Setup(SetupArgs),
    Up(UpArgs),
    Down(DownArgs),
    Login(LoginArgs),
    Status(StatusArgs),
    /// Attach to the remote Jupyter's tmux session (detach again with Ctrl-b d).
    Attach(AliasArg),
    Logs(LogsArgs),
    /// Print just the URL (with its token), for scripts.
    Url(AliasArg),
    /// Open the URL in a browser (through a private page, so the token is in no argv).
    Open(AliasArg),
    Jupyter(JupyterArgs),
    Password(PasswordArgs),
    Doctor(DoctorArgs),
    Hosts(HostsArgs),
    Service(ServiceArgs),
    Completions(CompletionsArgs),
    Man(ManArgs),
    /// Run the tunnel supervisor for ALIAS (started by `jssh up`).
    #[command(hide = true)]
    Supervise(SuperviseArgs),
}

/// Make a key, install it on HOST, and add ALIAS to a jssh-managed ssh config block.
///
/// Examples:
///   jssh setup gpu --host gpu.lab.example.org --user alice
///   jssh setup hpc --host login2 --jump alice@bastion.example.org:2222
///   jssh setup gpu --host 10.0.0.5 --dry-run
///   jssh setup --remove gpu
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct SetupArgs {
    /// The name you will type: `ssh ALIAS`, `jssh up ALIAS`.
    pub(crate) alias: Alias,

    /// The server's DNS name or IP address.
    #[arg(long, required_unless_present = "remove", value_hint = ValueHint::Hostname)]
    pub(crate) host: Option<Hostname>,

    /// Remote login name (default: your local login name).
    #[arg(long, short = 'l')]
    pub(crate) user: Option<UserName>,

    /// Remote sshd port (default 22).
    #[arg(long, short = 'p')]
    pub(crate) port: Option<Port>,

    /// How the remote finds Jupyter (saved for ALIAS): venv:PATH, conda:NAME, module:NAME[,…], pre:SNIPPET.
    #[arg(long, value_name = "SPEC")]
    pub(crate) env: Vec<EnvSpec>,

    /// Run Jupyter as a Slurm job on a compute node, with these sbatch options (saved for
    /// ALIAS; e.g. --slurm '--partition=gpu --time=4:00:00 --gres=gpu:1').
    #[arg(long, value_name = "SBATCH OPTIONS", allow_hyphen_values = true)]
    pub(crate) slurm: Option<SbatchOptions>,

    /// Forget the saved --slurm: Jupyter runs on the login host itself.
    #[arg(long, conflicts_with = "slurm")]
    pub(crate) no_slurm: bool,

    /// Jump host(s) to go through: [USER@]HOST[:PORT][,…] (ssh's ProxyJump).
    #[arg(long, short = 'J', value_name = "[USER@]HOST[:PORT][,…]")]
    pub(crate) jump: Option<Jump>,

    /// Private key to use (created if missing; default: jssh_ed25519 beside the ssh config).
    #[arg(long, short = 'i', value_name = "FILE", value_hint = ValueHint::FilePath, value_parser = parse_identity)]
    pub(crate) identity: Option<IdentityPath>,

    /// Create a new key without a passphrase (for unattended use; otherwise ssh-keygen asks).
    #[arg(long)]
    pub(crate) no_passphrase: bool,

    /// Do not install the key on the server (it is already in authorized_keys).
    #[arg(long)]
    pub(crate) no_copy_id: bool,

    /// Print the diff of what would change and the commands that would run; touch nothing.
    #[arg(long, short = 'n')]
    pub(crate) dry_run: bool,

    /// Shadow an ALIAS that your own ssh config already defines.
    #[arg(long)]
    pub(crate) force: bool,

    /// Remove ALIAS's block and profile (the key and the server's authorized_keys line stay).
    #[arg(long, conflicts_with_all = ["host", "user", "port", "jump", "identity", "no_passphrase", "no_copy_id", "force", "env", "slurm", "no_slurm"])]
    pub(crate) remove: bool,
}

/// Start Jupyter on ALIAS in a detached tmux session and forward it to 127.0.0.1.
///
/// Reuses a running server. In the foreground it prints one line per event and Ctrl-C stops
/// the tunnel (the server keeps running); -d returns once the URL answers.
///
/// Several aliases (or --all) start in parallel, all in the background, and print one line
/// each: the alias and its URL, or why it failed (the exit status is 1 if any did). Hosts
/// whose logins need a human ask one after another, in the terminal, while the others start.
///
/// Examples:
///   jssh up gpu -d
///   jssh up gpu --dir '~/project' --env venv:~/venvs/ml --open
///   jssh up hpc --socket --notebook
///   jssh up --all
///   jssh up gpu hpc
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct UpArgs {
    /// Host aliases from `jssh setup`.
    #[arg(required_unless_present = "all", value_name = "ALIAS")]
    pub(crate) aliases: Vec<Alias>,

    /// Every alias set up.
    #[arg(long, conflicts_with = "aliases")]
    pub(crate) all: bool,

    /// Run the tunnel in the background; return once the URL answers (implied by several
    /// aliases).
    #[arg(long, short = 'd')]
    pub(crate) detach: bool,

    /// Local port (default: the last one used for ALIAS, else 8888, else any free one; one
    /// alias only).
    #[arg(long, short = 'p', value_parser = parse_port)]
    pub(crate) port: Option<u16>,

    /// Jupyter's root directory on the remote. Quote a `~` (--dir '~/project'): unquoted, your
    /// shell replaces it with this machine's home.
    #[arg(long)]
    pub(crate) dir: Option<String>,

    /// The classic Notebook UI instead of JupyterLab.
    #[arg(long)]
    pub(crate) notebook: bool,

    /// Serve Jupyter on a Unix socket (0600, in a 0700 dir) instead of a remote TCP port.
    #[arg(long)]
    pub(crate) socket: bool,

    /// How the remote finds Jupyter: venv:PATH, conda:NAME, module:NAME[,…] or pre:SHELL-SNIPPET (repeatable, in order; saved for ALIAS).
    #[arg(long, value_name = "SPEC")]
    pub(crate) env: Vec<EnvSpec>,

    /// Open the URL in a browser once it answers.
    #[arg(long)]
    pub(crate) open: bool,

    /// Give up if Jupyter does not answer within this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) timeout: u64,

    /// In the foreground, stop the remote server too on Ctrl-C (one alias only).
    #[arg(long, conflicts_with = "detach")]
    pub(crate) stop_remote: bool,

    /// Run Jupyter as a Slurm job with these sbatch options, this time (`jssh setup --slurm`
    /// saves them). A job pending in the queue is waited for without a timeout; with -d, up
    /// returns after 10 s of waiting and `jssh up` attaches once it runs.
    #[arg(long, value_name = "SBATCH OPTIONS", allow_hyphen_values = true)]
    pub(crate) slurm: Option<SbatchOptions>,

    /// Run on the login host even where `jssh setup --slurm` saved sbatch options.
    #[arg(long, conflicts_with = "slurm")]
    pub(crate) no_slurm: bool,

    /// Warn this many minutes before a Slurm job's walltime ends (in `jssh status`, the log
    /// and a desktop notification).
    #[arg(long, default_value_t = 10, value_name = "MINUTES")]
    pub(crate) walltime_warning: u64,
}

/// Stop the tunnel and (unless --keep-remote) the remote Jupyter.
///
/// Several aliases (or --all) stop in parallel, each saying what it did on lines of its own.
///
/// Examples:
///   jssh down gpu
///   jssh down gpu hpc --keep-remote
///   jssh down --all
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct DownArgs {
    /// The aliases to stop.
    #[arg(required_unless_present = "all", value_name = "ALIAS")]
    pub(crate) aliases: Vec<Alias>,

    /// Stop every alias that has a tunnel or a server.
    #[arg(long, conflicts_with = "aliases")]
    pub(crate) all: bool,

    /// Leave the remote Jupyter running (only the tunnel stops).
    #[arg(long)]
    pub(crate) keep_remote: bool,
}

/// Log in again, on a host that asks for a code or a push: the tunnel resumes.
///
/// Where a login needs more than the key, the tunnel rides on the one login `jssh up` made in
/// your terminal, and nothing logs in on its own. When that login ends (a dropped network, a
/// server restart), `jssh status` says "needs-login" and the local port holds connections;
/// `jssh login ALIAS` (or `jssh up ALIAS`) asks once and the tunnel resumes, with the same
/// Jupyter and kernels.
///
/// On a host that takes the key alone, "needs-login" means the server refused the key twice
/// in a row, or its host key changed: jssh stopped logging in, so that the server does not
/// lock you out. Mend it (`jssh doctor ALIAS` says what is wrong); `jssh login ALIAS` then
/// tries once more.
///
/// Examples:
///   jssh login hpc
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct LoginArgs {
    /// The alias whose tunnel waits for a login.
    pub(crate) alias: Alias,

    /// Give up waiting for the tunnel to be up again after this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub(crate) timeout: u64,
}

/// Show tunnels and servers: up, reconnecting, down, or remote-only.
///
/// One alias: its details. Several, or none (every alias): one line each — alias, state,
/// URL, node, uptime, reconnects, last error — cut to the terminal's width.
///
/// Examples:
///   jssh status
///   jssh status gpu
///   jssh status --json | jq -r '.[] | select(.state != "up") | .alias'
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct StatusArgs {
    /// Only these aliases (default: every one).
    #[arg(value_name = "ALIAS")]
    pub(crate) aliases: Vec<Alias>,

    /// Print JSON: an array with one object per alias.
    #[arg(long)]
    pub(crate) json: bool,

    /// Only what this machine knows, without asking the remotes (instant; servers running
    /// remotely with no tunnel are not seen).
    #[arg(long)]
    pub(crate) local: bool,
}

/// An alias, for commands that need nothing else.
#[derive(Debug, Args)]
pub(crate) struct AliasArg {
    /// A host alias from `jssh setup`.
    pub(crate) alias: Alias,
}

/// Show the supervisor's log, or the remote Jupyter's.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// A host alias from `jssh setup`.
    pub(crate) alias: Alias,

    /// The remote Jupyter log instead of the local supervisor's.
    #[arg(long)]
    pub(crate) remote: bool,

    /// Keep printing new lines.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SuperviseArgs {
    pub(crate) alias: Alias,
    #[arg(long)]
    pub(crate) foreground: bool,
}

/// Keep tunnels up at every login (and at boot) with a per-user service.
///
/// On Linux one systemd `--user` template unit, `jssh@.service`, enabled once per alias
/// (`jssh@gpu.service`); on macOS one LaunchAgent per alias. Each runs the same supervisor as
/// `jssh up` (so `jssh status`, `down` and `logs` see it) in the foreground, its events in the
/// journal (`journalctl --user -u jssh@gpu`), restarted whenever it fails. `jssh down ALIAS`
/// stops a tunnel until the next login. Only the user's own unit directory is written
/// (`JSSH_SERVICE_DIR` overrides it); nothing is started or enabled at boot behind your back:
/// the commands to do so are printed.
///
/// Examples:
///   jssh service install gpu hpc
///   jssh service install --all
///   jssh service status
///   jssh service remove gpu
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct ServiceArgs {
    #[command(subcommand)]
    pub(crate) action: ServiceAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ServiceAction {
    /// Write (or update) the service for these aliases; idempotent.
    Install(ServiceAliases),
    /// Remove the service of these aliases; idempotent.
    Remove(ServiceAliases),
    /// List the installed services and whether their tunnels run.
    Status,
    /// What a service runs: the foreground `jssh up ALIAS`, its token kept out of the journal.
    #[command(hide = true)]
    Run(AliasArg),
}

#[derive(Debug, Args)]
pub(crate) struct ServiceAliases {
    /// The aliases (as set up with `jssh setup`).
    #[arg(required_unless_present = "all")]
    pub(crate) aliases: Vec<Alias>,

    /// Every alias (install: every one set up; remove: every one installed).
    #[arg(long, conflicts_with = "aliases")]
    pub(crate) all: bool,
}

/// Configure the remote Jupyter: jssh's own config file (never your default one).
///
/// Creates your default Jupyter config if there is none (as `jupyter server --generate-config`
/// does), then writes jssh's settings (listen on 127.0.0.1, no browser, --dir as the root
/// directory) to `jssh_config.json` in the remote Jupyter config dir, which `jssh up` loads
/// with --config. Detects whether the remote runs jupyter_server 2.x or the classic notebook.
///
/// Examples:
///   jssh jupyter gpu --dir '~/projects'
///   jssh jupyter gpu --allow-remote-access   (after `jssh password gpu`)
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct JupyterArgs {
    /// A host alias from `jssh setup`.
    pub(crate) alias: Alias,

    /// Jupyter's root directory on the remote. Quote a `~` (--dir '~/project'): unquoted, your
    /// shell replaces it with this machine's home.
    #[arg(long)]
    pub(crate) dir: Option<String>,

    /// Listen on all interfaces, not only 127.0.0.1 (refused unless a password is set).
    #[arg(long)]
    pub(crate) allow_remote_access: bool,

    /// How the remote finds Jupyter (saved for ALIAS): venv:PATH, conda:NAME, module:NAME[,…], pre:SNIPPET.
    #[arg(long, value_name = "SPEC")]
    pub(crate) env: Vec<EnvSpec>,
}

/// Set (or clear) a Jupyter password on ALIAS, hashed there with argon2.
///
/// Prompts twice without echo; the password travels over ssh's stdin, never on a command
/// line, and only its hash is stored (in jssh's remote config file, mode 0600). Afterwards
/// the server accepts the password as well as jssh's token.
#[derive(Debug, Args)]
pub(crate) struct PasswordArgs {
    /// A host alias from `jssh setup`.
    pub(crate) alias: Alias,

    /// Remove the password (the token keeps working).
    #[arg(long)]
    pub(crate) clear: bool,

    /// Read the password from the first line of standard input instead of prompting (scripts).
    #[arg(long, conflicts_with = "clear")]
    pub(crate) stdin: bool,
}

/// Check everything between you and a working notebook; each ✗ comes with its fix.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// The alias to check (default: local checks and every alias).
    pub(crate) alias: Option<Alias>,

    /// Print JSON: one object per check.
    #[arg(long)]
    pub(crate) json: bool,
}

/// List the configured host aliases.
#[derive(Debug, Args)]
pub(crate) struct HostsArgs {
    /// Print JSON: an array of profiles.
    #[arg(long, conflicts_with = "names")]
    pub(crate) json: bool,

    /// Print only the aliases, one per line (for scripts and shell completion).
    #[arg(long)]
    pub(crate) names: bool,
}

/// Print a shell completion script (it completes host aliases too).
///
/// Examples:
///   jssh completions bash > ~/.local/share/bash-completion/completions/jssh
///   jssh completions zsh > ~/.zfunc/_jssh
///   jssh completions fish > ~/.config/fish/completions/jssh.fish
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct CompletionsArgs {
    /// The shell to generate for.
    pub(crate) shell: ShellKind,
}

/// The shells whose completions jssh ships (they also complete host aliases).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ShellKind {
    Bash,
    Zsh,
    Fish,
}

impl ShellKind {
    pub(crate) fn generator(self) -> Shell {
        match self {
            Self::Bash => Shell::Bash,
            Self::Zsh => Shell::Zsh,
            Self::Fish => Shell::Fish,
        }
    }
}

/// Print a man page (roff) to standard output.
///
/// Example: jssh man | man -l -
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// The subcommand whose page to print (jssh-SUBCOMMAND(1)); default: jssh(1).
    pub(crate) subcommand: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for argv in [
            &["jssh", "setup", "-oProxyCommand=x", "--host", "h"][..],
            &["jssh", "setup", "a", "--host", "-oProxyCommand=x"],
            &["jssh", "setup", "a", "--host", "h", "--port", "0"],
            &["jssh", "setup", "a", "--host", "h", "--user", "a b"],
            &["jssh", "setup", "a", "--host", "h", "--jump", "x#y"],
            &["jssh", "setup", "a"],
        ] {
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }
}
