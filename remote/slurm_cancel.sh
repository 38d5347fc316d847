name=$1 job=$2
# Run on the login node: cancels the job, waits (up to 15 s) until Slurm says it is over, says
# `cancelled STATE` (or `still STATE` if it is not over yet), and removes the run dir with the
# token.
scancel "$job" 2>/dev/null
i=0 s=
while [ $i -lt 150 ]; do
    s=$(squeue -h -t all -j "$job" -o %T 2>/dev/null)
    case $s in
        PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED) ;;
        *) break ;;
    esac
    sleep 0.1
    i=$((i + 1))
done
case $s in
    PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED) echo "still $s" ;;
    *) echo "cancelled ${s:-gone}" ;;
esac
rm -rf "$HOME/.jssh/run/$name"
