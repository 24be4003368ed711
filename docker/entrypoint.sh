#!/bin/sh
# Container entrypoint (runs as root): start sshd, then
#   no arguments  -> keep sshd in the foreground (a worker)
#   arguments     -> sshd in the background, the command as user `mpi` (the head)
set -eu
mkdir -p /run/sshd
if [ $# -eq 0 ]; then
    exec /usr/sbin/sshd -D -e
fi
/usr/sbin/sshd -e
exec runuser -u mpi -- "$@"
