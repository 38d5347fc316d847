# shellcheck disable=SC2015 # the hook or the activation failing both mean: no such env
if command -v micromamba >/dev/null 2>&1; then
    eval "$(micromamba shell hook -s posix)" && micromamba activate "$jssh_env" ||
        { echo "jssh: no conda env '$jssh_env' (--env conda:NAME); micromamba has:"; command micromamba env list; exit 127; } >&2
elif command -v mamba >/dev/null 2>&1 || command -v conda >/dev/null 2>&1; then
    c=$(command -v conda || command -v mamba)
    eval "$("$c" shell.posix hook)" && conda activate "$jssh_env" ||
        { echo "jssh: no conda env '$jssh_env' (--env conda:NAME); conda has:"; "$c" env list; exit 127; } >&2
else
    echo "jssh: --env conda:$jssh_env, but no micromamba, mamba or conda on PATH=$PATH" >&2; exit 127
fi
