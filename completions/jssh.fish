# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_jssh_global_optspecs
    string join \n ssh-config= connect-timeout= h/help V/version
end

function __fish_jssh_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_jssh_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_jssh_using_subcommand
    set -l cmd (__fish_jssh_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c jssh -n "__fish_jssh_needs_command" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_needs_command" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_needs_command" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "setup" -d 'Make a key, install it on HOST, and add ALIAS to a jssh-managed ssh config block.'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "up" -d 'Start Jupyter on ALIAS in a detached tmux session and forward it to 127.0.0.1.'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "down" -d 'Stop the tunnel and (unless --keep-remote) the remote Jupyter.'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "login" -d 'Log in again, on a host that asks for a code or a push: the tunnel resumes.'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "status" -d 'Show tunnels and servers: up, reconnecting, down, or remote-only.'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "attach" -d 'Attach to the remote Jupyter\'s tmux session (detach again with Ctrl-b d)'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "logs" -d 'Show the supervisor\'s log, or the remote Jupyter\'s'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "url" -d 'Print just the URL (with its token), for scripts'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "open" -d 'Open the URL in a browser (through a private page, so the token is in no argv)'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "jupyter" -d 'Configure the remote Jupyter: jssh\'s own config file (never your default one).'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "password" -d 'Set (or clear) a Jupyter password on ALIAS, hashed there with argon2'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "doctor" -d 'Check everything between you and a working notebook; each ✗ comes with its fix'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "hosts" -d 'List the configured host aliases'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "service" -d 'Keep tunnels up at every login (and at boot) with a per-user service.'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "completions" -d 'Print a shell completion script (it completes host aliases too).'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "man" -d 'Print a man page (roff) to standard output'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "supervise" -d 'Run the tunnel supervisor for ALIAS (started by `jssh up`)'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l host -d 'The server\'s DNS name or IP address' -r -f -a "(__fish_print_hostnames)"
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s l -l user -d 'Remote login name (default: your local login name)' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s p -l port -d 'Remote sshd port (default 22)' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l env -d 'How the remote finds Jupyter (saved for ALIAS): venv:PATH, conda:NAME, module:NAME[,…], pre:SNIPPET' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l slurm -d 'Run Jupyter as a Slurm job on a compute node, with these sbatch options (saved for ALIAS; e.g. --slurm \'--partition=gpu --time=4:00:00 --gres=gpu:1\')' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s J -l jump -d 'Jump host(s) to go through: [USER@]HOST[:PORT][,…] (ssh\'s ProxyJump)' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s i -l identity -d 'Private key to use (created if missing; default: jssh_ed25519 beside the ssh config)' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l no-slurm -d 'Forget the saved --slurm: Jupyter runs on the login host itself'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l no-passphrase -d 'Create a new key without a passphrase (for unattended use; otherwise ssh-keygen asks)'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l no-copy-id -d 'Do not install the key on the server (it is already in authorized_keys)'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s n -l dry-run -d 'Print the diff of what would change and the commands that would run; touch nothing'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l force -d 'Shadow an ALIAS that your own ssh config already defines'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l remove -d 'Remove ALIAS\'s block and profile (the key and the server\'s authorized_keys line stay)'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand up" -s p -l port -d 'Local port (default: the last one used for ALIAS, else 8888, else any free one; one alias only)' -r
complete -c jssh -n "__fish_jssh_using_subcommand up" -l dir -d 'Jupyter\'s root directory on the remote. Quote a `~` (--dir \'~/project\'): unquoted, your shell replaces it with this machine\'s home' -r
complete -c jssh -n "__fish_jssh_using_subcommand up" -l env -d 'How the remote finds Jupyter: venv:PATH, conda:NAME, module:NAME[,…] or pre:SHELL-SNIPPET (repeatable, in order; saved for ALIAS)' -r
complete -c jssh -n "__fish_jssh_using_subcommand up" -l timeout -d 'Give up if Jupyter does not answer within this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand up" -l slurm -d 'Run Jupyter as a Slurm job with these sbatch options, this time (`jssh setup --slurm` saves them). A job pending in the queue is waited for without a timeout; with -d, up returns after 10 s of waiting and `jssh up` attaches once it runs' -r
complete -c jssh -n "__fish_jssh_using_subcommand up" -l walltime-warning -d 'Warn this many minutes before a Slurm job\'s walltime ends (in `jssh status`, the log and a desktop notification)' -r
complete -c jssh -n "__fish_jssh_using_subcommand up" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand up" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand up" -l all -d 'Every alias set up'
complete -c jssh -n "__fish_jssh_using_subcommand up" -s d -l detach -d 'Run the tunnel in the background; return once the URL answers (implied by several aliases)'
complete -c jssh -n "__fish_jssh_using_subcommand up" -l notebook -d 'The classic Notebook UI instead of JupyterLab'
complete -c jssh -n "__fish_jssh_using_subcommand up" -l socket -d 'Serve Jupyter on a Unix socket (0600, in a 0700 dir) instead of a remote TCP port'
complete -c jssh -n "__fish_jssh_using_subcommand up" -l open -d 'Open the URL in a browser once it answers'
complete -c jssh -n "__fish_jssh_using_subcommand up" -l stop-remote -d 'In the foreground, stop the remote server too on Ctrl-C (one alias only)'
complete -c jssh -n "__fish_jssh_using_subcommand up" -l no-slurm -d 'Run on the login host even where `jssh setup --slurm` saved sbatch options'
complete -c jssh -n "__fish_jssh_using_subcommand up" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand up" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand down" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand down" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand down" -l all -d 'Stop every alias that has a tunnel or a server'
complete -c jssh -n "__fish_jssh_using_subcommand down" -l keep-remote -d 'Leave the remote Jupyter running (only the tunnel stops)'
complete -c jssh -n "__fish_jssh_using_subcommand down" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand down" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand login" -l timeout -d 'Give up waiting for the tunnel to be up again after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand login" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand login" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand login" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand login" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand status" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand status" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand status" -l json -d 'Print JSON: an array with one object per alias'
complete -c jssh -n "__fish_jssh_using_subcommand status" -l local -d 'Only what this machine knows, without asking the remotes (instant; servers running remotely with no tunnel are not seen)'
complete -c jssh -n "__fish_jssh_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand status" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand attach" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand attach" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand attach" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand attach" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand logs" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand logs" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand logs" -l remote -d 'The remote Jupyter log instead of the local supervisor\'s'
complete -c jssh -n "__fish_jssh_using_subcommand logs" -s f -l follow -d 'Keep printing new lines'
complete -c jssh -n "__fish_jssh_using_subcommand logs" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand logs" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand url" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand url" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand url" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand url" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand open" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand open" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand open" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand open" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand jupyter" -l dir -d 'Jupyter\'s root directory on the remote. Quote a `~` (--dir \'~/project\'): unquoted, your shell replaces it with this machine\'s home' -r
complete -c jssh -n "__fish_jssh_using_subcommand jupyter" -l env -d 'How the remote finds Jupyter (saved for ALIAS): venv:PATH, conda:NAME, module:NAME[,…], pre:SNIPPET' -r
complete -c jssh -n "__fish_jssh_using_subcommand jupyter" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand jupyter" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand jupyter" -l allow-remote-access -d 'Listen on all interfaces, not only 127.0.0.1 (refused unless a password is set)'
complete -c jssh -n "__fish_jssh_using_subcommand jupyter" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand jupyter" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand password" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand password" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand password" -l clear -d 'Remove the password (the token keeps working)'
complete -c jssh -n "__fish_jssh_using_subcommand password" -l stdin -d 'Read the password from the first line of standard input instead of prompting (scripts)'
complete -c jssh -n "__fish_jssh_using_subcommand password" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand password" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand doctor" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand doctor" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand doctor" -l json -d 'Print JSON: one object per check'
complete -c jssh -n "__fish_jssh_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -l json -d 'Print JSON: an array of profiles'
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -l names -d 'Print only the aliases, one per line (for scripts and shell completion)'
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand service; and not __fish_seen_subcommand_from install remove status run help" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand service; and not __fish_seen_subcommand_from install remove status run help" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand service; and not __fish_seen_subcommand_from install remove status run help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand service; and not __fish_seen_subcommand_from install remove status run help" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand service; and not __fish_seen_subcommand_from install remove status run help" -f -a "install" -d 'Write (or update) the service for these aliases; idempotent'
complete -c jssh -n "__fish_jssh_using_subcommand service; and not __fish_seen_subcommand_from install remove status run help" -f -a "remove" -d 'Remove the service of these aliases; idempotent'
complete -c jssh -n "__fish_jssh_using_subcommand service; and not __fish_seen_subcommand_from install remove status run help" -f -a "status" -d 'List the installed services and whether their tunnels run'
complete -c jssh -n "__fish_jssh_using_subcommand service; and not __fish_seen_subcommand_from install remove status run help" -f -a "run" -d 'What a service runs: the foreground `jssh up ALIAS`, its token kept out of the journal'
complete -c jssh -n "__fish_jssh_using_subcommand service; and not __fish_seen_subcommand_from install remove status run help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from install" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from install" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from install" -l all -d 'Every alias (install: every one set up; remove: every one installed)'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from install" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from remove" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from remove" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from remove" -l all -d 'Every alias (install: every one set up; remove: every one installed)'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from status" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from status" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from run" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from run" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "install" -d 'Write (or update) the service for these aliases; idempotent'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove the service of these aliases; idempotent'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "status" -d 'List the installed services and whether their tunnels run'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "run" -d 'What a service runs: the foreground `jssh up ALIAS`, its token kept out of the journal'
complete -c jssh -n "__fish_jssh_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jssh -n "__fish_jssh_using_subcommand completions" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand completions" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand completions" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand man" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand man" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand man" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand supervise" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand supervise" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand supervise" -l foreground
complete -c jssh -n "__fish_jssh_using_subcommand supervise" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand supervise" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "setup" -d 'Make a key, install it on HOST, and add ALIAS to a jssh-managed ssh config block.'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "up" -d 'Start Jupyter on ALIAS in a detached tmux session and forward it to 127.0.0.1.'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "down" -d 'Stop the tunnel and (unless --keep-remote) the remote Jupyter.'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "login" -d 'Log in again, on a host that asks for a code or a push: the tunnel resumes.'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "status" -d 'Show tunnels and servers: up, reconnecting, down, or remote-only.'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "attach" -d 'Attach to the remote Jupyter\'s tmux session (detach again with Ctrl-b d)'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "logs" -d 'Show the supervisor\'s log, or the remote Jupyter\'s'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "url" -d 'Print just the URL (with its token), for scripts'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "open" -d 'Open the URL in a browser (through a private page, so the token is in no argv)'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "jupyter" -d 'Configure the remote Jupyter: jssh\'s own config file (never your default one).'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "password" -d 'Set (or clear) a Jupyter password on ALIAS, hashed there with argon2'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "doctor" -d 'Check everything between you and a working notebook; each ✗ comes with its fix'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "hosts" -d 'List the configured host aliases'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "service" -d 'Keep tunnels up at every login (and at boot) with a per-user service.'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "completions" -d 'Print a shell completion script (it completes host aliases too).'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "man" -d 'Print a man page (roff) to standard output'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "supervise" -d 'Run the tunnel supervisor for ALIAS (started by `jssh up`)'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup up down login status attach logs url open jupyter password doctor hosts service completions man supervise help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jssh -n "__fish_jssh_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "install" -d 'Write (or update) the service for these aliases; idempotent'
complete -c jssh -n "__fish_jssh_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "remove" -d 'Remove the service of these aliases; idempotent'
complete -c jssh -n "__fish_jssh_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "status" -d 'List the installed services and whether their tunnels run'
complete -c jssh -n "__fish_jssh_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "run" -d 'What a service runs: the foreground `jssh up ALIAS`, its token kept out of the journal'

# Host aliases come from jssh itself, so they are always current.
complete -c jssh -n "__fish_seen_subcommand_from setup login attach logs url open jupyter password doctor supervise" -f -a "(jssh hosts --names 2>/dev/null)" -d 'host alias'
