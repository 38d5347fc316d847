echo "conn $SSH_CONNECTION"
if t=$(command -v tmux 2>/dev/null); then
v=$(tmux -V 2>&1); echo "tmux $? $t"; echo "tmuxv $v" | head -n 1
else echo "notmux $PATH"; fi
f="${JUPYTER_CONFIG_DIR:-$HOME/.jupyter}/jssh_config.json"
# shellcheck disable=SC2012 # ls -ld for its mode column, of one known file
if [ -f "$f" ]; then echo "config $(ls -ld "$f" | cut -c 1-10) $f"; echo json; head -c 65536 "$f"
else echo "noconfig $f"; fi
