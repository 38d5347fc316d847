name=$1
shift
# Run on the login node: the token (first line of stdin) goes to a 0600 file in the home the
# compute nodes share; the rest of stdin is the job script, handed to sbatch as its stdin.
# Says `job ID`, or `refused WHY`, or `nosbatch`.
d="$HOME/.jssh/run/$name"
command -v sbatch >/dev/null 2>&1 || { cat >/dev/null; echo nosbatch; exit 0; }
umask 077
mkdir -p "$d" && chmod 700 "$HOME/.jssh" "$HOME/.jssh/run" "$d" || exit 1
rm -f "$d/job" "$d/ready" "$d/port" "$d/pid"
IFS= read -r tok || exit 93
case $tok in *[!0-9a-f]*) exit 93 ;; esac
[ "${#tok}" -ge 32 ] || exit 93
printf '%s' "$tok" > "$d/token" || exit 1
: > "$d/jupyter.log"
if out=$(sbatch --parsable --job-name="$name" --output="$d/jupyter.log" "$@" 2>"$d/sbatch.err"); then
    echo "job ${out%%;*}"
else
    echo "refused $(grep -v '^$' "$d/sbatch.err" | tail -n 1)"
fi
