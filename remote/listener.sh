name=$1 port=$2 pid=$3
set -f # the listing below is split into words, never globbed
# Who listens on the port: its socket's inode and owner. ss asks the kernel for listening
# sockets only (`state listening`; `-l` adds the closed state, which walks every connection
# too); reading /proc/net/tcp walks every bucket of the connection hash (~6 ms of kernel
# time on a large machine, on every reconnect), so it is only the fallback.
ino='' uid=0
if command -v ss >/dev/null 2>&1 && out=$(ss -tne state listening "sport = :$port" 2>/dev/null); then
    # One line per listener: "… uid:N ino:N …", uid left out for root. The first one decides.
    for word in $out; do
        case $word in
            uid:*) uid=${word#uid:} ;;
            ino:*) ino=${word#ino:} && break ;;
        esac
    done
elif [ -r /proc/net/tcp ]; then
    h=$(printf ':%04X' "$port")
    # shellcheck disable=SC2046 # split on purpose: the inode, then the uid
    set -- $(awk -v h="$h" '$4 == "0A" && substr($2, length($2) - 4) == h { print $10, $8; exit }' /proc/net/tcp)
    ino=$1 uid=$2
else
    echo unknown
    exit 0
fi
[ -n "$ino" ] || { echo none; exit 0; }
# One `ls` of the fds, not a `readlink` per fd: Jupyter holds a hundred, and this check
# runs on every reconnect, before the first request.
# shellcheck disable=SC2010 # the link targets are exactly what ls -l shows
holds() { [ -n "$1" ] && ls -l /proc/"$1"/fd/ 2>/dev/null | grep -qF "socket:[$ino]"; }
# The pid jssh recorded first (no tmux client to start), then tmux's pane (a Jupyter
# started again since), then a Slurm job's own record (a job's Jupyter is no tmux pane).
if holds "$pid" || holds "$(tmux -L jssh display-message -p -t "=$name:" '#{pane_pid}' 2>/dev/null)" ||
    holds "$(cat "$HOME/.jssh/run/$name/pid" 2>/dev/null)"; then
    echo ours
else
    echo "other $uid"
fi
