# shellcheck disable=SC2154 # name, ports, login, script, listen: set by the lines jssh puts first
# The job on the compute node (sbatch runs it; the lines before this set name, ports, login
# and script). It picks a free port on the node's loopback, says where it runs, starts a
# watcher that says `ready` once Jupyter (this very process, after the exec) listens there,
# and execs Jupyter in the user's login shell, so that the job *is* Jupyter: scancel and the
# walltime end it, and it ending ends the job.
d="$HOME/.jssh/run/$name"
umask 077
port=
for p in $ports; do
    h=$(printf ':%04X' "$p")
    awk -v h="$h" 'substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null || { port=$p; break; }
done
[ -n "$port" ] || port=${ports%% *}
echo "$port" > "$d/port"
echo "$$" > "$d/pid"
echo "running $(uname -n) $$ $port $listen" > "$d/job.new" && mv -f "$d/job.new" "$d/job"
# Where Jupyter listens: the node's loopback (reached by ssh to the node), or, where the
# cluster refuses that, every interface; `ask`: `jssh up` tries ssh to the node, then says.
if [ "$listen" = ask ]; then
    i=0
    while [ ! -s "$d/reach" ] && [ $i -lt 1200 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    listen=$(cat "$d/reach" 2>/dev/null)
fi
case $listen in
    loopback) ;;
    interface)
        JSSH_LISTEN=0.0.0.0
        export JSSH_LISTEN
        ;;
    *)
        echo "jssh: jssh up never said where Jupyter should listen: stopping" >&2
        exit 1
        ;;
esac
(
    h=$(printf ':%04X' "$port")
    while :; do
        inode=$(awk -v h="$h" '$4 == "0A" && substr($2, length($2) - 4) == h { print $10; exit }' /proc/net/tcp)
        # shellcheck disable=SC2010 # the link targets are exactly what ls -l shows
        if [ -n "$inode" ] && ls -l "/proc/$$/fd/" 2>/dev/null | grep -qF "socket:[$inode]"; then
            : > "$d/ready"
            exit 0
        fi
        kill -0 "$$" 2>/dev/null || exit 0
        sleep 0.1
    done
) &
exec sh -c "$login" jssh "$script"
