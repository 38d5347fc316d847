echo "conn $SSH_CONNECTION"
if t=$(command -v tmux 2>/dev/null); then
v=$(tmux -V 2>&1); echo "tmux $? $t"; echo "tmuxv $v" | head -n 1
else echo "notmux $PATH"; fi
# tmux's socket dir: tmux refuses one that another user owns or that others may use.
u=$(id -u) sd="${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)"
# shellcheck disable=SC2012 # ls -ldn for the mode and owner of one known path
if [ -e "$sd" ] || [ -L "$sd" ]; then echo "tmuxdir $u $(ls -ldn "$sd" | awk '{ print $1, $3 }') $sd"; fi
f="${JUPYTER_CONFIG_DIR:-$HOME/.jupyter}/jssh_config.json"
# shellcheck disable=SC2012 # ls -ld for its mode column, of one known file
if [ -f "$f" ]; then echo "config $(ls -ld "$f" | cut -c 1-10) $f"; echo json; head -c 65536 "$f"
else echo "noconfig $f"; fi
