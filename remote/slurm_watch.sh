pid=$1
# Run on the compute node over the tunnel's own connection: returns once the job's Jupyter
# (pid $1) has exited, or when this connection (its stdin) ends. The job ending is then asked
# of Slurm. Exits 92 when the process was already gone.
kill -0 "$pid" 2>/dev/null || exit 92
exec 3<&0
(while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done) &
w=$!
(cat <&3 >/dev/null; kill "$w") >/dev/null 2>&1 &
wait "$w"
