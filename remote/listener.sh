name=$1 port=$2
[ -r /proc/net/tcp ] || { echo unknown; exit 0; }
h=$(printf ':%04X' "$port")
# shellcheck disable=SC2046 # split on purpose: the inode, then the uid
set -- $(awk -v h="$h" '$4 == "0A" && substr($2, length($2) - 4) == h { print $10, $8; exit }' /proc/net/tcp)
[ -n "$1" ] || { echo none; exit 0; }
pid=$(tmux -L jssh display-message -p -t "=$name:" '#{pane_pid}' 2>/dev/null)
# A Slurm job's Jupyter is no tmux pane: the job wrote its pid.
[ -n "$pid" ] || pid=$(cat "$HOME/.jssh/run/$name/pid" 2>/dev/null)
# One `ls` of the fds, not a `readlink` per fd: Jupyter holds a hundred, and this check
# runs on every reconnect, before the first request.
# shellcheck disable=SC2010 # the link targets are exactly what ls -l shows
if ls -l /proc/"${pid:-0}"/fd/ 2>/dev/null | grep -qF "socket:[$1]"; then
    echo ours
else
    echo "other $2"
fi
