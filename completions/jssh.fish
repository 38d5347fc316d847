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
complete -c jssh -n "__fish_jssh_needs_command" -f -a "hosts" -d 'List the configured host aliases'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "completions" -d 'Print a shell completion script (it completes host aliases too).'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "man" -d 'Print a man page (roff) to standard output'
complete -c jssh -n "__fish_jssh_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l host -d 'The server\'s DNS name or IP address' -r -f -a "(__fish_print_hostnames)"
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s l -l user -d 'Remote login name (default: your local login name)' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s p -l port -d 'Remote sshd port (default 22)' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s J -l jump -d 'Jump host(s) to go through: [USER@]HOST[:PORT][,…] (ssh\'s ProxyJump)' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s i -l identity -d 'Private key to use (created if missing; default: jssh_ed25519 beside the ssh config)' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l no-passphrase -d 'Create a new key without a passphrase (for unattended use; otherwise ssh-keygen asks)'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l no-copy-id -d 'Do not install the key on the server (it is already in authorized_keys)'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s n -l dry-run -d 'Print the diff of what would change and the commands that would run; touch nothing'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l force -d 'Shadow an ALIAS that your own ssh config already defines'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -l remove -d 'Remove ALIAS\'s block and profile (the key and the server\'s authorized_keys line stay)'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand setup" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -l json -d 'Print JSON: an array of profiles'
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -l names -d 'Print only the aliases, one per line (for scripts and shell completion)'
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -s h -l help -d 'Print help'
complete -c jssh -n "__fish_jssh_using_subcommand hosts" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand completions" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand completions" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand completions" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand man" -l ssh-config -d 'The OpenSSH client config jssh edits (default ~/.ssh/config); passed to ssh as `-F` when not the default. jssh\'s key and its managed `config.d/jssh` live beside it' -r -F
complete -c jssh -n "__fish_jssh_using_subcommand man" -l connect-timeout -d 'Give up connecting to a host after this many seconds' -r
complete -c jssh -n "__fish_jssh_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c jssh -n "__fish_jssh_using_subcommand man" -s V -l version -d 'Print version'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup hosts completions man help" -f -a "setup" -d 'Make a key, install it on HOST, and add ALIAS to a jssh-managed ssh config block.'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup hosts completions man help" -f -a "hosts" -d 'List the configured host aliases'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup hosts completions man help" -f -a "completions" -d 'Print a shell completion script (it completes host aliases too).'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup hosts completions man help" -f -a "man" -d 'Print a man page (roff) to standard output'
complete -c jssh -n "__fish_jssh_using_subcommand help; and not __fish_seen_subcommand_from setup hosts completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

# Host aliases come from jssh itself, so they are always current.
complete -c jssh -n "__fish_seen_subcommand_from setup" -f -a "(jssh hosts --names 2>/dev/null)" -d 'host alias'
