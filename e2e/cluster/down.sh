#!/usr/bin/env bash
# Tears the end-to-end cluster down: stops exactly the processes it started
# (the recorded daemons, the containers in the kubelet's cgroups and the
# containerd shims serving our socket), unmounts what the kubelet and
# containerd mounted under the state folder, removes the cgroups they created,
# deletes the network namespace and restores the kernel settings the kubelet
# changed. Idempotent.
#
#   e2e/cluster/down.sh           keep certificates, etcd data and the image store: the next up is a quick restart
#   e2e/cluster/down.sh --purge   also delete the whole state folder: the next up starts from nothing
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

purge=
case ${1:-} in
--purge) purge=1 ;;
"") ;;
*) die "usage: $0 [--purge]" ;;
esac

t0=$(now_ms)

# stop_pids TIMEOUT PID...: SIGTERM, then SIGKILL whatever is left after
# TIMEOUT seconds. Only the given PIDs, whose start times are checked again
# before the SIGKILL so that a reused PID is never hit.
stop_pids() {
	local timeout=$1 pid deadline alive=() starts=() i
	shift
	for pid in "$@"; do
		starts+=("$(proc_start_time "$pid" || echo gone)")
		kill -TERM "$pid" 2>/dev/null || true
	done
	deadline=$(($(now_ms) + timeout * 1000))
	while :; do
		alive=()
		i=0
		for pid in "$@"; do
			[ "$(proc_start_time "$pid" 2>/dev/null)" = "${starts[$i]}" ] && alive+=("$pid")
			i=$((i + 1))
		done
		[ ${#alive[@]} -eq 0 ] && return 0
		[ "$(now_ms)" -gt "$deadline" ] && break
		sleep 0.1
	done
	log "killing ${alive[*]} after ${timeout}s"
	kill -KILL "${alive[@]}" 2>/dev/null || true
	sleep 0.2
}

# stop_daemons TIMEOUT NAME...: stops the recorded daemons still alive.
stop_daemons() {
	local timeout=$1 name pid pids=() names=()
	shift
	for name in "$@"; do
		if pid=$(daemon_pid "$name"); then
			pids+=("$pid")
			names+=("$name")
		fi
		rm -f "$PIDS/$name.pid"
	done
	[ ${#pids[@]} -eq 0 ] && return 0
	log "stopping $(for i in "${!names[@]}"; do printf '%s(%s) ' "${names[$i]}" "${pids[$i]}"; done)"
	stop_pids "$timeout" "${pids[@]}"
}

# new_cgroups prints the top-level cgroups of every hierarchy that were not
# there before the cluster first started (the kubelet's kubepods, mostly).
new_cgroups() {
	[ -f "$STATE/cgroups.before" ] || return 0
	top_cgroups | comm -13 "$STATE/cgroups.before" -
}

# container_pids prints the processes of the pods: everything in the
# kubelet's kubepods cgroups.
container_pids() {
	local cg
	for cg in $(new_cgroups); do
		case ${cg##*/} in kubepods*) ;; *) continue ;; esac
		find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null
	done | sort -un
}

# shim_pids prints the containerd shims that serve our containerd: their
# command line names our socket.
shim_pids() {
	local p
	for p in /proc/[0-9]*; do
		tr '\0' '\n' 2>/dev/null <"$p/cmdline" | grep -qxF -- "$CONTAINERD_SOCK" && echo "${p#/proc/}"
	done
	return 0
}

stop_containers() {
	local pids tasks id
	# Kill the pods' processes, then let containerd delete the tasks, so that
	# the shims exit and the rootfs mounts go away the ordinary way.
	mapfile -t pids < <(container_pids)
	if [ ${#pids[@]} -gt 0 ]; then
		log "killing ${#pids[@]} container processes"
		kill -KILL "${pids[@]}" 2>/dev/null || true
	fi
	if daemon_pid containerd >/dev/null && [ -S "$CONTAINERD_SOCK" ]; then
		tasks=$(timeout 10 ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls 2>/dev/null | awk 'NR > 1 {print $1}') || true
		for id in $tasks; do
			timeout 5 ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks delete --force "$id" >/dev/null 2>&1 || true
		done
	fi
}

stop_shims() {
	local pids
	mapfile -t pids < <(shim_pids)
	[ ${#pids[@]} -eq 0 ] && return 0
	log "stopping ${#pids[@]} containerd shims"
	stop_pids 5 "${pids[@]}"
}

# mounts_under DIR prints the mount points under DIR, deepest first.
mounts_under() {
	awk -v dir="$1/" 'index($5, dir) == 1 || $5 == substr(dir, 1, length(dir) - 1) {print $5}' /proc/self/mountinfo |
		while read -r m; do printf '%b\n' "${m//\\/\\0}"; done |
		awk '{print length($0) "\t" $0}' | sort -rn | cut -f2-
}

unmount_state() {
	local round m left
	for round in 1 2 3 4 5; do
		left=$(mounts_under "$STATE")
		[ -z "$left" ] && return 0
		[ "$round" = 1 ] && log "unmounting $(wc -l <<<"$left") mounts under $STATE"
		while read -r m; do
			if [ "$round" -lt 4 ]; then umount "$m" 2>/dev/null || true; else umount -l "$m" 2>/dev/null || true; fi
		done <<<"$left"
	done
	left=$(mounts_under "$STATE")
	[ -z "$left" ] || log "warning: still mounted: $left"
}

remove_cgroups() {
	local cg round left
	for round in $(seq 1 50); do
		left=
		for cg in $(new_cgroups); do
			find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[ -d "$cg" ] && left+=" $cg"
		done
		[ -z "$left" ] && break
		sleep 0.1
	done
	if [ -n "$left" ]; then
		log "warning: cgroups still busy:$left"
	else
		rm -f "$STATE/cgroups.before"
	fi
}

restore_sysctls() {
	[ -f "$STATE/sysctl.saved" ] || return 0
	local line changed=()
	while IFS= read -r line; do
		[ "$(sysctl -n "${line%%=*}")" = "${line#*=}" ] && continue
		sysctl -qw "$line"
		changed+=("$line")
	done <"$STATE/sysctl.saved"
	[ ${#changed[@]} -gt 0 ] && log "restored ${changed[*]}"
	rm -f "$STATE/sysctl.saved"
}

# clean_host_leftovers removes what the daemons write outside the state folder
# whatever their flags say (see HOST_DIRS): the kubelet's log symlinks and
# device-plugin socket, the CNI plugins' result cache, the shims' sockets; then
# the folders of HOST_DIRS that were not there before the cluster, if empty.
clean_host_leftovers() {
	local f id ids d before=$STATE/host-dirs.before
	if [ -d /var/log/containers ]; then
		for f in /var/log/containers/*; do
			if [ -L "$f" ] && [[ $(readlink "$f") == "$STATE/"* ]]; then rm -f "$f"; fi
		done
	fi
	# The pod sandboxes and containers containerd knew: their IDs name the CNI
	# cache entries, and each task's bundle names its shim's socket.
	ids=$(find "$STATE/containerd/root/io.containerd.grpc.v1.cri/sandboxes" \
		"$STATE/containerd/state/io.containerd.runtime.v2.task/k8s.io" \
		-mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -u || true)
	rm -f /var/lib/cni/results/"$CNI_NETWORK"-*
	for id in $ids; do rm -f /var/lib/cni/results/cni-loopback-"$id"-*; done
	for f in "$STATE"/containerd/state/io.containerd.runtime.v2.task/k8s.io/*/address; do
		[ -f "$f" ] || continue
		f=$(cat "$f")
		f=${f#unix://}
		if [[ $f == /run/containerd/s/* ]] && [ -S "$f" ]; then rm -f "$f"; fi
	done
	if [ -d /var/lib/kubelet ] && ! grep -qxF /var/lib/kubelet "$before" 2>/dev/null; then
		rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
	fi
	# Without the record of what was there before, remove no folder.
	[ -f "$before" ] || return 0
	# `ip netns add` made /var/run/netns a mount point: undo that if it was ours.
	if [ -d /var/run/netns ] && ! grep -qxF /var/run/netns "$before" &&
		[ -z "$(ls -A /var/run/netns)" ]; then
		while mountpoint -q /var/run/netns; do umount /var/run/netns || break; done
	fi
	for d in "${HOST_DIRS[@]}"; do
		[ -d "$d" ] || continue
		grep -qxF "$d" "$before" && continue
		rmdir "$d" 2>/dev/null || log "warning: $d is not empty; left in place"
	done
	rm -f "$before"
}

main() {
	require_root
	if [ ! -d "$STATE" ] && [ ! -e "$NETNS_PATH" ]; then
		log "nothing to tear down"
		return 0
	fi
	lock_state

	# OpenKruise, if installed (make kruise), goes first, while the API
	# server runs: its pod webhooks fail closed, and kept in etcd they would
	# refuse every pod of the next start (the bring-up's own test pod
	# included) until kruise-manager answered again. make kruise reinstalls
	# it in seconds once built.
	if [ "$(apiserver_get /readyz 2>/dev/null)" = ok ] &&
		kubectl_ns get mutatingwebhookconfiguration kruise-mutating-webhook-configuration >/dev/null 2>&1; then
		log "uninstalling OpenKruise first (make kruise installs it again)"
		"$here/kruise.sh" uninstall || log "warning: OpenKruise was not uninstalled cleanly"
	fi

	# The kubelet first, so that nothing restarts the containers killed next;
	# the containers before the API server, which otherwise waits for their
	# open watches until killed; etcd after the API server, which otherwise
	# waits for it.
	stop_daemons 10 kubelet kube-proxy
	stop_containers
	stop_daemons 15 kube-scheduler kube-controller-manager kube-apiserver
	stop_daemons 10 containerd etcd
	stop_shims

	if [ -e "$NETNS_PATH" ]; then
		local left
		left=$(ip netns pids "$NETNS" 2>/dev/null | tr '\n' ' ')
		[ -n "$left" ] && log "warning: processes not started by the cluster are still in $NETNS: $left(left running)"
		ip netns delete "$NETNS"
	fi

	restore_sysctls
	unmount_state
	remove_cgroups
	clean_host_leftovers

	rm -rf "$STATE/containerd/state" "$STATE/containerd/runc" "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc" "$STATE/kubelet" "$STATE/cni" "$STATE/pod-logs" "$STATE/apiserver" "$PIDS"
	if [ -n "$purge" ]; then
		[ -z "$(mounts_under "$STATE")" ] || die "mounts remain under $STATE; not deleting it"
		rm -rf "$STATE"
		log "deleted $STATE"
	fi
	log "cluster down ($(since "$t0"))"
}

main "$@"
