name=$1 mode=$2 ports=$3 script=$4 want_token=$5 watch=$6 login=$7 expect=$8 dir=$9 alt=${10}
d="$HOME/.jssh/run/$name" n=$(uname -n)
command -v tmux >/dev/null 2>&1 || { echo "tmux not found on PATH=$PATH"; exit 90; }
t="tmux -L jssh"
pane() { $t display-message -p -t "=$name:" '#{pane_pid}' 2>/dev/null; }
if ! $t has-session -t "=$name" 2>/dev/null && [ -n "$expect" ] && [ "$expect" != "$n" ]; then
    cat >/dev/null
    echo "elsewhere $n"
    exit 0
fi
# A --dir as Jupyter will see it: `~` and `~/…` are this home; a relative path lies under it
# (Jupyter starts in the home). Expanded here, never evaluated.
remote_dir() {
    # shellcheck disable=SC2088 # a literal `~` is what is matched
    case $1 in
        "~") r=$HOME ;;
        "~/"*) r=$HOME/${1#"~/"} ;;
        /*) r=$1 ;;
        *) r=$HOME/$1 ;;
    esac
}
# A missing --dir is said before anything starts; `nodir 1` when the suggested `~/…` (the
# same path under this home, for a local shell that expanded `~`) exists instead.
if [ -n "$dir" ] && ! $t has-session -t "=$name" 2>/dev/null; then
    remote_dir "$dir"
    if [ ! -d "$r" ]; then
        cat >/dev/null
        found=0
        if [ -n "$alt" ]; then remote_dir "$alt"; [ -d "$r" ] && found=1; fi
        echo "nodir $found"
        exit 0
    fi
fi
umask 077
mkdir -p "$d" && chmod 700 "$HOME/.jssh" "$HOME/.jssh/run" "$d" || exit 1
if $t has-session -t "=$name" 2>/dev/null; then
    cat >/dev/null
    echo "reuse $(cat "$d/port" 2>/dev/null || echo -) $(pane)"
    [ "$want_token" = 1 ] && echo "token $(cat "$d/token")"
else
    cat > "$d/token" || exit 1
    # A login shell that reads stdin (a `read` in .bashrc) eats the token: Jupyter would
    # then start with an empty one, which disables authentication.
    tok=$(cat "$d/token")
    case $tok in *[!0-9a-f]*) tok= ;; esac
    [ "${#tok}" -ge 32 ] || { rm -f "$d/token"; exit 93; }
    port=-
    if [ "$mode" = tcp ]; then
        for p in $ports; do
            h=$(printf ':%04X' "$p")
            awk -v h="$h" 'substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
                /proc/net/tcp /proc/net/tcp6 2>/dev/null || { port=$p; break; }
        done
        [ "$port" = - ] && port=${ports%% *}
        echo "$port" > "$d/port"
    else
        rm -f "$d/port" "$d/jupyter.sock"
    fi
    : > "$d/jupyter.log"
    $t new-session -d -s "$name" -x 200 -y 50 sh -c "exec sh -c \"\$1\" jssh \"\$2\" >>\"\$3/jupyter.log\" 2>&1" \
        jssh-jupyter "$login" "$script" "$d" || exit 1
    echo "started $port $(pane)"
fi
[ "$(id -u)" = 0 ] && echo root
echo "node $n"
echo "home $HOME"
[ "$watch" = 1 ] || exit 0
# Until Jupyter's pane process ends, or `up` stops reading (the echo then fails): a shell
# builtin and a `sleep` once a second, not a tmux client five times a second (twenty `up`s at
# once spent a tenth of their CPU on that).
p=$(pane)
while [ -n "$p" ] && kill -0 "$p" 2>/dev/null; do echo . || exit 0; sleep 1; done
echo exited
tail -n 20 "$d/jupyter.log" 2>/dev/null | sed 's/^/log /'
