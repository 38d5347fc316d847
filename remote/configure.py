import json, os, subprocess, sys, tempfile
from importlib import metadata

req = json.loads(sys.argv[1])
root = (req.get("settings") or {}).get("root_dir")
# A root dir that does not exist is refused before anything is written. A relative one lies
# under the home, where `jssh up` starts Jupyter.
if root and not os.path.isdir(os.path.join(os.path.expanduser("~"), os.path.expanduser(root))):
    alt = req["settings"].get("root_dir_alternative")
    found = bool(alt) and os.path.isdir(os.path.expanduser(alt))
    print(json.dumps({"nodir": "alternative" if found else "missing"}))
    sys.exit(5)
def version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
info = {"server": version("jupyter_server"), "notebook": version("notebook"), "lab": version("jupyterlab")}
server = info["server"] is not None
classic = info["notebook"] is not None and int(info["notebook"].split(".")[0]) < 7
if not server and not classic:
    print(json.dumps({"error": "no jupyter_server or notebook package in this environment"}))
    sys.exit(3)
# Each generation present gets its own names: a classic notebook (NotebookApp) may sit
# beside jupyter_server (ServerApp, PasswordIdentityProvider), e.g. notebook 6.5 + lab.
apps = ([("ServerApp", "root_dir")] if server else []) + ([("NotebookApp", "notebook_dir")] if classic else [])
passwords = ([("PasswordIdentityProvider", "hashed_password")] if server else []) + ([("NotebookApp", "password")] if classic else [])
cfg_dir = os.environ.get("JUPYTER_CONFIG_DIR") or os.path.expanduser("~/.jupyter")
path = os.path.join(cfg_dir, "jssh_config.json")
os.makedirs(cfg_dir, mode=0o700, exist_ok=True)
generated = None
if req.get("generate"):
    # The user's default config, created once as the seeds do; jssh never edits it.
    kind = "server" if server else "notebook"
    default = os.path.join(cfg_dir, "jupyter_server_config.py" if server else "jupyter_notebook_config.py")
    if not os.path.exists(default):
        subprocess.run(["jupyter", kind, "--generate-config", "-y"], check=True, capture_output=True)
        generated = default
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
for app, root_key in apps if "settings" in req else []:
    s = req["settings"]
    section = config.setdefault(app, {})
    section["ip"] = "0.0.0.0" if s["allow_remote_access"] else "127.0.0.1"
    section["open_browser"] = False
    if app == "ServerApp":
        section["allow_remote_access"] = bool(s["allow_remote_access"])
    if s.get("root_dir"):
        section[root_key] = os.path.expanduser(s["root_dir"])
    else:
        section.pop(root_key, None)
if req.get("password") == "set":
    password = sys.stdin.readline().rstrip("\n")
    if server:
        from jupyter_server.auth import passwd
    else:
        from notebook.auth import passwd
    hashed = passwd(password)
    for section, key in passwords:
        config.setdefault(section, {})[key] = hashed
elif req.get("password") == "clear":
    for section, key in passwords:
        config.get(section, {}).pop(key, None)
has_password = any(config.get(section, {}).get(key) for section, key in passwords)
ips = [config.get(app, {}).get("ip") for app, _ in apps]
if any(ip not in (None, "127.0.0.1", "localhost") for ip in ips) and not has_password:
    print(json.dumps({"error": "refusing to listen beyond 127.0.0.1 without a password: run `jssh password` first"}))
    sys.exit(4)
fd, tmp = tempfile.mkstemp(dir=cfg_dir, prefix=".jssh_config.")
with os.fdopen(fd, "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
os.chmod(tmp, 0o600)
os.replace(tmp, path)
info.update({"path": path, "generated": generated, "password": has_password, "ip": next((ip for ip in ips if ip), None)})
print(json.dumps(info))
