j=$(command -v jupyter) || { echo "jssh: no jupyter on PATH=$PATH" >&2; exit 127; }
echo "jupyter $j"
py=$(command -v python3 || command -v python) || exit 0
echo "python $py"
"$py" -c 'import json
from importlib import metadata
def v(d):
    try:
        return metadata.version(d)
    except Exception:
        return None
versions = {"server": v("jupyter_server"), "notebook": v("notebook"), "lab": v("jupyterlab")}
print("versions " + json.dumps(versions))' 2>/dev/null
