#!/usr/bin/env bash
# The container registry of the end-to-end cluster: the images a test pulls
# for real, as production pulls them, instead of finding them imported.
#
#   registry.sh up      start it if it is not serving (idempotent), shape its
#                       bandwidth to each node, push the test images
#   registry.sh down    stop it and remove its network namespace
#   registry.sh push REPO:TAG VERSION [VERSION_MB]
#                       push the test application's VERSION (v1, v2, ...) as
#                       $REGISTRY_HOST/REPO:TAG, with a version layer of its
#                       own drawn from that name (a fresh tag is a fresh
#                       pull); prints the reference and the manifest digest
#   registry.sh host    the registry's host:port
#   registry.sh auth    the user:password of its private repositories
#
# It runs in its own network namespace ($REGISTRY_NETNS), on the nodes' LAN
# (a veth into its bridge) at $REGISTRY_IP, and serves HTTPS only, with a
# certificate of the cluster's CA that every node's containerd trusts (its
# hosts.toml, nodes.sh). Its replies to each node are shaped to
# $REGISTRY_RATE (an htb class per node IP on its end of the veth): a pull of
# tens of megabytes takes seconds, as it does from a real registry; the
# nodes' other traffic is not shaped. A cluster of one node has no LAN and
# no registry.
#
# The repositories under private/ need basic auth ($REGISTRY_AUTH), as a
# private registry's do: a pod pulls them with an imagePullSecret only.
#
# The images: the test application of images.sh on a base layer of
# $REGISTRY_BASE_MB MiB shared by every image, plus a version layer of
# $REGISTRY_VERSION_MB MiB of its own (hack/tools/cmd/registry).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=pki.sh
. "$here/pki.sh"
# shellcheck source=nodes.sh
. "$here/nodes.sh"

REGISTRY_PORT_NAME=registry
REGISTRY_RATE=${REGISTRY_RATE:-200mbit}
REGISTRY_BASE_MB=${REGISTRY_BASE_MB:-40}
REGISTRY_VERSION_MB=${REGISTRY_VERSION_MB:-30}
REGISTRY_DIR=$STATE/registry
REGISTRY_REPO=inplace-testapp
REGISTRY_AUTH=${REGISTRY_AUTH:-e2e:inplace-e2e-pull}
REGISTRY_AUTH_PREFIX=private/

build_registry() {
	(cd "$ROOT/hack/tools" && CGO_ENABLED=0 go build -o "$BIN/registry" ./cmd/registry)
}

serving() {
	nsenter --net="$REGISTRY_NETNS_PATH" curl -fsS --max-time 2 --cacert "$PKI/ca.crt" -u "$REGISTRY_AUTH" "https://$REGISTRY_HOST/v2/" >/dev/null 2>&1
}

# shape: an htb class of $REGISTRY_RATE per node IP on the registry's end
# of its veth; traffic to anything else passes unclassified, unshaped.
shape() {
	local n
	in_registry_ns tc qdisc show dev eth0 | grep -q '^qdisc htb 1: root' ||
		in_registry_ns tc qdisc add dev eth0 root handle 1: htb default 0 r2q 1000
	in_registry_ns tc filter del dev eth0 parent 1: 2>/dev/null || true
	for n in $(cluster_nodes_list); do
		in_registry_ns tc class replace dev eth0 parent 1: classid "1:$((n + 10))" htb rate "$REGISTRY_RATE" ceil "$REGISTRY_RATE"
		in_registry_ns tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst "10.250.0.$n/32" flowid "1:$((n + 10))"
	done
}

in_registry_ns() { nsenter --net="$REGISTRY_NETNS_PATH" "$@"; }

cluster_nodes_list() { seq 1 "$(cat "$NODES_FILE" 2>/dev/null || echo 1)"; }

up() {
	require_root
	if [ "$(cat "$NODES_FILE" 2>/dev/null || echo 1)" -lt 2 ]; then
		# One node has no LAN: a registry left from more nodes goes.
		[ -e "$REGISTRY_NETNS_PATH" ] && { log "registry: one node, no LAN: stopping the registry"; down; }
		return 0
	fi
	[ -e "$LAN_NETNS_PATH" ] || die "registry: no LAN namespace $LAN_NETNS"
	local t0
	t0=$(now_ms)
	build_registry
	new_cert "$PKI" ca registry "/CN=inplace-e2e-registry" serverAuth "IP:$REGISTRY_IP"
	if [ ! -e "$REGISTRY_NETNS_PATH" ]; then
		ip netns add "$REGISTRY_NETNS"
		ip -n "$REGISTRY_NETNS" link set lo up
	fi
	if ! ip -n "$LAN_NETNS" link show "$REGISTRY_PORT_NAME" >/dev/null 2>&1; then
		ip -n "$LAN_NETNS" link add "$REGISTRY_PORT_NAME" type veth peer name eth0 netns "$REGISTRY_NETNS"
		ip -n "$LAN_NETNS" link set "$REGISTRY_PORT_NAME" master "$LAN_BRIDGE" up
		ip -n "$REGISTRY_NETNS" addr add "$REGISTRY_IP/24" dev eth0
		ip -n "$REGISTRY_NETNS" link set eth0 up
	fi
	shape
	if ! serving; then
		mkdir -p "$REGISTRY_DIR"
		start_daemon_in "$REGISTRY_NETNS_PATH" registry "$BIN/registry" serve -listen "$REGISTRY_HOST" \
			-cert "$PKI/registry.crt" -key "$PKI/registry.key" -dir "$REGISTRY_DIR/blobs" \
			-auth "$REGISTRY_AUTH" -auth-prefix "$REGISTRY_AUTH_PREFIX"
		wait_for "the registry at $REGISTRY_HOST" 20 serving
		# Manifests live in the registry's memory: a new one has none.
		rm -f "$REGISTRY_DIR/pushed"
	fi
	push_all
	log "registry serving at https://$REGISTRY_HOST, $REGISTRY_RATE to each node ($(since "$t0"))"
}

# push_all: the test application's versions as $REGISTRY_REPO:VERSION, once
# per registry start.
push_all() {
	local v
	[ -s "$REGISTRY_DIR/pushed" ] && return 0
	for v in v1 v2 v3; do push_version "$REGISTRY_REPO:$v" "$v" >>"$REGISTRY_DIR/pushed.tmp"; done
	mv "$REGISTRY_DIR/pushed.tmp" "$REGISTRY_DIR/pushed"
}

push_version() {
	local to=$1 version=$2 mb=${3:-$REGISTRY_VERSION_MB}
	[ -s "$IMAGES/testapp-$version.tar" ] || die "registry: no image tarball $IMAGES/testapp-$version.tar (images.sh build)"
	nsenter --net="$REGISTRY_NETNS_PATH" "$BIN/registry" push -ca "$PKI/ca.crt" -tarball "$IMAGES/testapp-$version.tar" \
		-tag "example.local/inplace-testapp:$version" -to "$REGISTRY_HOST/$to" \
		-base-mb "$REGISTRY_BASE_MB" -version-mb "$mb" -auth "$REGISTRY_AUTH"
}

down() {
	stop_daemons 5 registry
	if [ -e "$REGISTRY_NETNS_PATH" ]; then ip netns delete "$REGISTRY_NETNS"; fi
	rm -rf "$REGISTRY_DIR"
}

case ${1:-} in
up) up ;;
down) down ;;
auth) echo "$REGISTRY_AUTH" ;;
push)
	[ $# -ge 3 ] || die "usage: registry.sh push REPO:TAG VERSION [VERSION_MB]"
	push_version "$2" "$3" "${4:-}"
	;;
host) echo "$REGISTRY_HOST" ;;
*) die "usage: registry.sh up|down|push REPO:TAG VERSION [VERSION_MB]|host" ;;
esac
