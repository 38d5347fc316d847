job=$1
# Run on the login node (or a compute node): `state STATE|REASON|NODE|END` for the job, END
# its walltime end in Unix seconds (`-` when unknown); `gone` when Slurm no longer knows it;
# `error` when squeue failed (slurmctld unreachable: nothing can be said).
s=$(squeue -h -t all -j "$job" -o '%T|%r|%N|%e' 2>/dev/null) || { echo error; exit 0; }
[ -n "$s" ] || { echo gone; exit 0; }
end=$(date -d "${s##*|}" +%s 2>/dev/null) || end=-
echo "state ${s%|*}|$end"
