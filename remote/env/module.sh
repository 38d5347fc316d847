command -v module >/dev/null 2>&1 ||
    { echo "jssh: --env module:…, but the login shell has no 'module' command (Lmod or Environment Modules)" >&2; exit 127; }
for m in $jssh_modules; do
    module load "$m" ||
        { echo "jssh: 'module load $m' failed (--env module:NAME); available:"; module -t avail 2>&1 | head -n 60; exit 127; } >&2
done
