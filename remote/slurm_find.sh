name=$1
# Run on the login node: the newest job of this user named $name that Slurm still knows, for a
# submission whose answer never came back (the connection dropped after sbatch): `job ID`,
# `none`, or `error` when squeue failed.
s=$(squeue -h -t all -u "$(id -un)" -n "$name" -o '%i' 2>/dev/null) || { echo error; exit 0; }
id=$(printf '%s\n' "$s" | grep -E '^[0-9]+$' | sort -n | tail -n 1)
if [ -n "$id" ]; then echo "job $id"; else echo none; fi
