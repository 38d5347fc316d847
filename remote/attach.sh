name=$1 expect=$2 t="tmux -L jssh" n=$(uname -n)
if ! $t has-session -t "=$name" 2>/dev/null; then
    if [ -n "$expect" ] && [ "$expect" != "$n" ]; then
        echo "jssh: Jupyter runs on $expect, but this connection reached $n: try again after \`ssh -O exit\` to the alias, or connect to $expect directly" >&2
    else
        echo "jssh: no Jupyter runs here for this alias: start it with \`jssh up\`" >&2
    fi
    exit 1
fi
exec $t attach-session -t "=$name"
