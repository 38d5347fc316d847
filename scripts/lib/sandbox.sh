# shellcheck shell=bash
# A throwaway OpenSSH server sandbox on 127.0.0.1, shared by scripts/demo, scripts/bench and
# scripts/faults. Source this file, then:
#
#   sandbox_create NAME       make $SANDBOX (a temp dir) with host key, bootstrap key and a
#                             remote HOME; exports JSSH_SANDBOX=$SANDBOX, which every process
#                             started from now on inherits (sshd passes it on with SetEnv), so
#                             sandbox_cleanup can find and end exactly those processes
#   sandbox_sshd NAME         start an sshd of its own (free port, $SANDBOX/sshd-NAME.*) and
#                             add its host key to the client's known_hosts
#   sandbox_client            the client side: $SANDBOX/ssh/config (+ known_hosts), and
#                             JSSH_SSH_CONFIG, JSSH_CONFIG_DIR, JSSH_STATE_DIR, HOME exported
#   sandbox_cleanup           end every process of the sandbox, delete its iptables rules
#                             (tagged with $SANDBOX_TAG), remove the directory
#
# Layout: $SANDBOX/remote-home is the remote user's HOME, $SANDBOX/tmux its TMUX_TMPDIR,
# $SANDBOX/jupyter/{runtime,config,data} its Jupyter dirs, $SANDBOX/bootstrap the key that
# lets `jssh setup` log in the first time. Nothing outside $SANDBOX is written (apart from
# /run/sshd, which sshd needs when run as root).

# Extra `SetEnv` entries (NAME=value, no spaces) for every sshd started afterwards.
SANDBOX_SETENV=()

sandbox_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

sandbox_create() {
    SANDBOX="$(mktemp -d "${TMPDIR:-/tmp}/jssh-$1.XXXXXX")"
    SANDBOX_TAG="jssh-sandbox-${SANDBOX##*.}"
    export SANDBOX SANDBOX_TAG JSSH_SANDBOX="$SANDBOX"
    (umask 077 && mkdir -p "$SANDBOX/remote-home/.ssh" "$SANDBOX/ssh" "$SANDBOX/tmux" \
        "$SANDBOX/jupyter/runtime" "$SANDBOX/jupyter/config" "$SANDBOX/jupyter/data")
    ssh-keygen -q -t ed25519 -N '' -f "$SANDBOX/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$SANDBOX/bootstrap" -C sandbox-bootstrap
    cp "$SANDBOX/bootstrap.pub" "$SANDBOX/remote-home/.ssh/authorized_keys"
    : > "$SANDBOX/ssh/known_hosts"
    [[ $(id -u) -ne 0 ]] || mkdir -p /run/sshd
}

# Writes $SANDBOX/sshd-NAME.conf on a free port and starts it; the port is in sshd-NAME.port.
sandbox_sshd() {
    local name=$1 port user conf
    port=$(sandbox_free_port)
    user=$(id -un)
    conf="$SANDBOX/sshd-$name.conf"
    cat > "$conf" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $SANDBOX/host_key
PidFile $SANDBOX/sshd-$name.pid
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
Match User $user
    AuthorizedKeysFile $SANDBOX/remote-home/.ssh/authorized_keys
    SetEnv HOME=$SANDBOX/remote-home TMUX_TMPDIR=$SANDBOX/tmux JSSH_SANDBOX=$SANDBOX JUPYTER_RUNTIME_DIR=$SANDBOX/jupyter/runtime JUPYTER_CONFIG_DIR=$SANDBOX/jupyter/config JUPYTER_DATA_DIR=$SANDBOX/jupyter/data ${SANDBOX_SETENV[*]}
CONF
    echo "$port" > "$SANDBOX/sshd-$name.port"
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$SANDBOX/host_key.pub")" >> "$SANDBOX/ssh/known_hosts"
    sandbox_sshd_start "$name"
}

sandbox_sshd_start() {
    local name=$1 port
    port=$(cat "$SANDBOX/sshd-$name.port")
    /usr/sbin/sshd -f "$SANDBOX/sshd-$name.conf" -E "$SANDBOX/sshd-$name.log"
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "sandbox: sshd $name did not start on port $port; its log:" >&2
    cat "$SANDBOX/sshd-$name.log" >&2
    return 1
}

sandbox_sshd_port() { cat "$SANDBOX/sshd-$1.port"; }

# The client side. ssh's own `~` is the passwd home, so everything is passed explicitly.
sandbox_client() {
    printf 'Host *\n\tUserKnownHostsFile %s\n\tIdentityFile %s\n' \
        "$SANDBOX/ssh/known_hosts" "$SANDBOX/bootstrap" > "$SANDBOX/ssh/config"
    export JSSH_SSH_CONFIG="$SANDBOX/ssh/config" JSSH_CONFIG_DIR="$SANDBOX/jssh" \
        JSSH_STATE_DIR="$SANDBOX/state" HOME="$SANDBOX"
}

# The pids of the sandbox's processes, except this shell and its ancestors: those whose
# environment has JSSH_SANDBOX=$SANDBOX or whose command line names $SANDBOX (sshd and ssh's
# ControlMaster overwrite their environment with their process title), and every descendant of
# the sandbox's sshd listeners (the session processes).
sandbox_pids() {
    local keep=" " p=$BASHPID d pid pidfile listeners=""
    while [[ -n $p && $p -gt 1 ]]; do
        keep+="$p "
        p=$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null) || break
    done
    for pidfile in "$SANDBOX"/sshd-*.pid; do
        [[ -f $pidfile ]] && listeners+="$(cat "$pidfile") "
    done
    {
        for d in /proc/[0-9]*; do
            pid=${d#/proc/}
            if grep -qzxF "JSSH_SANDBOX=$SANDBOX" "$d/environ" 2>/dev/null ||
                grep -qF "$SANDBOX" "$d/cmdline" 2>/dev/null; then
                echo "$pid"
            fi
        done
        # shellcheck disable=SC2086
        [[ -z $listeners ]] || ps -e -o pid=,ppid= | awk -v roots="$listeners" '
            { parent[$1] = $2 }
            END {
                n = split(roots, r, " "); for (i = 1; i <= n; i++) mine[r[i]] = 1
                do { grew = 0; for (p in parent) if (!(p in mine) && (parent[p] in mine)) { mine[p] = 1; grew = 1 } } while (grew)
                for (p in mine) print p
            }'
    } | sort -un | while read -r pid; do
        [[ $keep == *" $pid "* || ! -d /proc/$pid ]] || echo "$pid"
    done
}

# Deletes exactly the iptables rules this sandbox added (each carries the comment $SANDBOX_TAG).
sandbox_iptables_cleanup() {
    [[ $(id -u) -eq 0 ]] || return 0
    command -v iptables >/dev/null 2>&1 || return 0
    local rule
    iptables -S INPUT 2>/dev/null | { grep -F -- "--comment $SANDBOX_TAG " || true; } | sed 's/^-A /-D /' |
        while read -r rule; do
            # shellcheck disable=SC2086 # the rule is iptables' own word list
            iptables $rule || true
        done
}

sandbox_cleanup() {
    [[ -n ${SANDBOX:-} && -d $SANDBOX ]] || return 0
    sandbox_iptables_cleanup
    local pids pid sock
    for sock in "$SANDBOX"/tmux/tmux-*/*; do
        if [[ -S $sock ]]; then tmux -S "$sock" kill-server 2>/dev/null || true; fi
    done
    # TERM first (a supervisor stops its ssh, Jupyter shuts down), then KILL what is left.
    pids=$(sandbox_pids)
    if [[ -n $pids ]]; then
        # shellcheck disable=SC2086
        kill -TERM $pids 2>/dev/null || true
        for _ in $(seq 30); do
            for pid in $pids; do
                [[ -d /proc/$pid ]] && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] && break
                pid=
            done
            [[ -z $pid ]] && break
            sleep 0.1
        done
        pids=$(sandbox_pids)
        # shellcheck disable=SC2086
        [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
    fi
    rm -rf "$SANDBOX"
}
