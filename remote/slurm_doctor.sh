login=$1 name=$2 job=$3
shift 3
# Run on the login node by `jssh doctor` for a --slurm profile, in plain sh (`jssh up` runs
# Slurm's commands in the login shell). "$@" are the profile's sbatch options, $login the login-shell wrapper, $job the id of
# the alias's last job (or empty) and $name its job name, for a running job of this user when
# Slurm does not know that id. Lines: `sbatch PATH` (on this PATH), `loginsbatch PATH` (only
# in the login shell; its PATH then serves the rest), or `nosbatch PATH`; `squeue PATH` or
# `nosqueue`; `version TEXT`; `test CODE` and sbatch's last lines as `said LINE`; `nodes LIST`
# or `nonodes ERROR`; `prolog FLAGS`; `job ID|STATE|NODE` or `nojob`.
if s=$(command -v sbatch 2>/dev/null); then
    echo "sbatch $s"
# The login shell's startup files may print anything: its answer is its last line.
elif p=$(sh -c "$login" jssh 'printf "\n%s\n" "$PATH"' 2>/dev/null </dev/null | tail -n 1) &&
    s=$(PATH=$p command -v sbatch 2>/dev/null); then
    echo "loginsbatch $s"
    PATH=$p
else
    echo "nosbatch $PATH"
    exit 0
fi
if q=$(command -v squeue 2>/dev/null); then echo "squeue $q"; else echo nosqueue; fi
echo "version $(sbatch --version 2>&1 | head -n 1)"
# A trivial job, never queued: Slurm says where and when it would start, or why it refuses.
e=$(printf '#!/bin/sh\ntrue\n' | sbatch --test-only "$@" 2>&1)
echo "test $?"
printf '%s\n' "$e" | grep -v '^[[:space:]]*$' | tail -n 3 | sed 's/^/said /'
if n=$(sinfo -h -o %N 2>&1); then
    echo "nodes $(printf '%s\n' "$n" | sort -u | tr '\n' ' ')"
else
    echo "nonodes $(printf '%s\n' "$n" | tail -n 1)"
fi
echo "prolog $(scontrol show config 2>/dev/null | sed -n 's/^PrologFlags *= *//p')"
j=
[ -n "$job" ] && j=$(squeue -h -j "$job" -o '%i|%T|%N' 2>/dev/null)
[ -n "$j" ] || j=$(squeue -h -u "$(id -un)" -n "$name" -t RUNNING -o '%i|%T|%N' 2>/dev/null | head -n 1)
if [ -n "$j" ]; then
    echo "job $j"
else
    echo nojob
fi
