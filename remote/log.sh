f="$HOME/.jssh/run/$1/jupyter.log"
[ -e "$f" ] || { echo "jssh: no log at $f: is the server running? (jssh status)" >&2; exit 1; }
if [ "$2" = 1 ]; then exec tail -n 50 -F "$f"; else exec tail -n 200 "$f"; fi
