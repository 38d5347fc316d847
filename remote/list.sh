t="tmux -L jssh"
$t list-sessions -F '#{session_name} #{pane_pid}' 2>/dev/null | while read -r name pid; do
    case $name in jssh-*) echo "$name $(cat "$HOME/.jssh/run/$name/port" 2>/dev/null || echo -) $pid" ;; esac
done
