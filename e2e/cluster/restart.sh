#!/usr/bin/env bash
# Restarts one of the cluster's daemons, as a crash or an upgrade would: the
# process is signalled, and started again with the very arguments it ran
# with, in its network namespace. The e2e tests of faults call it (the API
# server restarted mid-rollout, a node's kubelet killed mid-update).
#
#   restart.sh NAME [TERM|KILL]
#
# NAME is a daemon as up.sh records it in $STATE/pids: kube-apiserver,
# kubelet (node 1), node2-kubelet, ... TERM (the default) lets it shut down
# as it does on an upgrade; KILL does not. Waits until the old process is
# gone (30 s, then KILL); returns once the new one is started, not ready:
# the caller waits for what it needs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

name=${1:?daemon name, as in $PIDS}
signal=${2:-TERM}
case $signal in TERM | KILL) ;; *) die "signal $signal: want TERM or KILL" ;; esac
require_root

pid=$(daemon_pid "$name") || die "$name is not running"
start=$(proc_start_time "$pid")
args=()
mapfile -d '' args <"/proc/$pid/cmdline"
[ ${#args[@]} -gt 0 ] || die "$name ($pid): no command line"

# Its network namespace, by the inode /proc and the named namespace share.
ns_inode=$(stat -Lc %i "/proc/$pid/ns/net")
netns=
for f in /var/run/netns/*; do
	if [ "$(stat -Lc %i "$f")" = "$ns_inode" ]; then netns=$f; fi
done
[ -n "$netns" ] || die "$name ($pid) runs in no named network namespace"

log "restarting $name (pid $pid) with SIG$signal"
kill -"$signal" "$pid"
deadline=$(($(now_ms) + 30000)) killed=
while [ "$(proc_start_time "$pid" 2>/dev/null)" = "$start" ]; do
	if [ "$(now_ms)" -gt "$deadline" ]; then
		[ -z "$killed" ] || die "$name ($pid) survived SIGKILL"
		log "$name ($pid) still running after 30s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		deadline=$(($(now_ms) + 10000)) killed=1
	fi
	sleep 0.1
done
start_daemon_in "$netns" "$name" "${args[@]}"
