name=$1 expect=$2 d="$HOME/.jssh/run/$1" t="tmux -L jssh" n=$(uname -n)
pid=$($t display-message -p -t "=$name:" '#{pane_pid}' 2>/dev/null)
if [ -z "$pid" ] && [ -n "$expect" ] && [ "$expect" != "$n" ]; then echo "elsewhere $n"; exit 0; fi
if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null
    i=0
    while $t has-session -t "=$name" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    $t kill-session -t "=$name" 2>/dev/null
    echo stopped
fi
rm -rf "$d"
