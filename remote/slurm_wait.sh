name=$1 job=$2
# Run on the login node: blocks on the job's own report (files it writes in the shared home)
# and says `state STATE|REASON|START` whenever squeue's view of a waiting job changes (at most
# every 2 s), `running NODE PID PORT LISTEN` once it runs (LISTEN `ask`: the answer is read
# from stdin), `ready` once Jupyter listens, or `ended
# STATE|REASON` (and the log's last lines as `log LINE`) if the job ends first.
d="$HOME/.jssh/run/$name"
i=0 last='' running=''
while :; do
    if [ -z "$running" ] && [ -s "$d/job" ]; then
        running=1
        line=$(sed -n 1p "$d/job")
        case $line in
            *" ask")
                if [ -s "$d/reach" ]; then
                    echo "${line% ask} $(cat "$d/reach")"
                else
                    # The job asks where Jupyter should listen: the answer is stdin's next line.
                    echo "$line"
                    IFS= read -r r && printf '%s\n' "$r" > "$d/reach"
                fi
                ;;
            *) echo "$line" ;;
        esac
    fi
    if [ -n "$running" ] && [ -e "$d/ready" ]; then
        echo ready
        exit 0
    fi
    if [ $((i % 20)) -eq 0 ]; then
        if s=$(squeue -h -t all -j "$job" -o '%T|%r|%S' 2>/dev/null); then
            case ${s%%|*} in
                PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED | REQUEUED | RESIZING) ;;
                *)
                    echo "ended ${s:-UNKNOWN|}"
                    tail -n 20 "$d/jupyter.log" 2>/dev/null | sed 's/^/log /'
                    exit 0
                    ;;
            esac
            [ -z "$running" ] && [ "$s" != "$last" ] && echo "state $s"
            last=$s
        fi
    fi
    i=$((i + 1))
    sleep 0.1
done
