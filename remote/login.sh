case "${SHELL##*/}" in bash|zsh|sh|dash|ksh) s=$SHELL ;; *) s=/bin/sh ;; esac
exec "$s" -l -c "$1"
