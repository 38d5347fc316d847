name=$1 t="tmux -L jssh"
$t has-session -t "=$name" 2>/dev/null || exit 92
$t set-hook -g pane-exited 'wait-for -S "jssh-exit-#{hook_pane}"' 2>/dev/null || {
    $t has-session -t "=$name" 2>/dev/null && exit 91; exit 92; }
pane=$($t display-message -p -t "=$name:" '#{pane_id}' 2>/dev/null) && [ -n "$pane" ] || exit 92
exec 3<&0
$t wait-for "jssh-exit-$pane" &
w=$!
(cat <&3 >/dev/null; kill "$w") >/dev/null 2>&1 &
wait "$w"
