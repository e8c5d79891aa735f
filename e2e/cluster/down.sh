#!/usr/bin/env bash
# Tears the end-to-end cluster down, every node of it: stops exactly the
# processes it started (the recorded daemons, the containers in the kubelets'
# cgroups and the containerd shims serving the nodes' sockets), unmounts what
# the kubelets and containerds mounted under the state folder, removes the
# cgroups they (and up.sh) created, deletes the network namespaces (the
# nodes' and the bridge's, and with them every veth) and restores the kernel
# settings the kubelets changed. Idempotent.
#
#   e2e/cluster/down.sh           keep certificates, etcd data and the image store: the next up is a quick restart
#   e2e/cluster/down.sh --purge   also delete the whole state folder: the next up starts from nothing
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=nodes.sh
. "$here/nodes.sh"

purge=
case ${1:-} in
--purge) purge=1 ;;
"") ;;
*) die "usage: $0 [--purge]" ;;
esac

t0=$(now_ms)

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
# whatever their flags say (see HOST_DIRS): each node's log symlinks, CNI
# result cache entries and shims' sockets (node_clean_leftovers), the
# kubelets' device-plugin socket; then the folders of HOST_DIRS that were not
# there before the cluster, if empty.
clean_host_leftovers() {
	local n d before=$STATE/host-dirs.before
	for n in $(known_nodes); do node_clean_leftovers "$n"; done
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
	if [ ! -d "$STATE" ] && ! [ -e "$NETNS_PATH" ] && ! [ -e "$LAN_NETNS_PATH" ]; then
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

	# The kubelets first, so that nothing restarts the containers killed
	# next; the containers before the API server, which otherwise waits for
	# their open watches until killed; etcd after the API server, which
	# otherwise waits for it.
	local nodes n left cgroups
	mapfile -t nodes < <(known_nodes)
	# shellcheck disable=SC2046 # daemon names have no spaces
	stop_daemons 10 $(for n in "${nodes[@]}"; do node_daemons "$n" kubelet kube-proxy; done)
	node_stop_containers "${nodes[@]}"
	stop_daemons 15 kube-scheduler kube-controller-manager kube-apiserver
	# shellcheck disable=SC2046
	stop_daemons 10 $(for n in "${nodes[@]}"; do node_daemons "$n" containerd; done) etcd
	node_stop_shims "${nodes[@]}"

	for n in "${nodes[@]}"; do
		node_vars "$n"
		[ -e "$ND_NETNS_PATH" ] || continue
		left=$(ip netns pids "$ND_NETNS" 2>/dev/null | tr '\n' ' ')
		[ -n "$left" ] && log "warning: processes not started by the cluster are still in $ND_NETNS: $left(left running)"
		ip netns delete "$ND_NETNS"
	done
	"$here/registry.sh" down
	lan_down

	restore_sysctls
	unmount_under "$STATE"
	mapfile -t cgroups < <(new_cgroups)
	if [ ${#cgroups[@]} -eq 0 ] || remove_cgroups "${cgroups[@]}"; then
		rm -f "$STATE/cgroups.before"
	fi
	clean_host_leftovers

	for n in "${nodes[@]}"; do node_clean_state "$n"; done
	rm -rf "$STATE/apiserver" "$PIDS" "$NODES_FILE"
	if [ -n "$purge" ]; then
		[ -z "$(mounts_under "$STATE")" ] || die "mounts remain under $STATE; not deleting it"
		rm -rf "$STATE"
		log "deleted $STATE"
	fi
	log "cluster down ($(since "$t0"))"
}

main "$@"
