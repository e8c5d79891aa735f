# Shared settings and helpers of the end-to-end cluster scripts. Sourced, not run.
#
# The control plane and node 1 live inside the network namespace $NETNS, nodes
# 2..N (make cluster NODES=N) each in their own (node_vars, nodes.sh); every
# daemon is started with `setsid nsenter --net=...` (not `ip netns exec`, whose
# private mount namespace would hide the cgroup mounts from the kubelet and
# runc).
# All state lives under $STATE (an ignored folder of the repository).
# shellcheck shell=bash disable=SC2034

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER_SCRIPTS=$ROOT/e2e/cluster
BIN=${BIN_DIR:-$ROOT/.cache/bin}
# The Kubernetes daemons' binaries: those of the release KUBE_VERSION names
# (make e2e KUBE_VERSION=1.34), the default one's when unset. kubectl, the
# tests and the manager are the same whatever the cluster's release.
KUBE_BIN=$("$ROOT/hack/build-kube.sh" --dir)
KUBE_RELEASE=$("$ROOT/hack/build-kube.sh" --version)
# Resolved: the kernel lists mounts by their real path, and teardown finds
# the daemons' mounts under $STATE by it (in a git worktree whose .cache is
# a symlink to the main checkout's, they were left mounted).
STATE=$(realpath -m "${CLUSTER_STATE:-$ROOT/.cache/cluster}")
IMAGES=${IMAGES_DIR:-$ROOT/.cache/images}

# Node 1: the control plane, the first kubelet, kubectl and the tests all
# live in its network namespace. Nodes 2..N (make cluster NODES=N) are
# described by node_vars.
NETNS=inplace-e2e
NETNS_PATH=/var/run/netns/$NETNS
NODE_NAME=inplace-e2e-node
NODE_IP=10.250.0.1
APISERVER=https://$NODE_IP:6443
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
POD_CIDR=10.244.0.0/24
CNI_NETWORK=inplace-e2e
# Every node's pod range: kube-proxy's clusterCIDR on every node (a node's
# own /24 there would make it masquerade the other nodes' pod traffic).
CLUSTER_CIDR=10.244.0.0/16

PKI=$STATE/pki
ADMIN_KUBECONFIG=$STATE/admin.kubeconfig
CONTAINERD_SOCK=$STATE/containerd/containerd.sock
PIDS=$STATE/pids
# The Kubernetes release the cluster was last brought up at.
RELEASE_FILE=$STATE/kube-release
LOGS=$STATE/logs

# The daemons in start order; teardown stops them in reverse. Those of
# nodes 2..N carry the node's prefix (node2-kubelet, ...).
CONTROL_PLANE_DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
NODE_DAEMONS=(containerd kubelet kube-proxy)
DAEMONS=("${CONTROL_PLANE_DAEMONS[@]}" "${NODE_DAEMONS[@]}")

# More than one node: every node's network namespace has a veth (eth0 there)
# into the bridge $LAN_BRIDGE of the namespace $LAN_NETNS, which holds
# nothing else (no address, no iptables on bridged traffic). A node's IP
# stays a /32 on its lo; an on-link route for $NODE_NET on eth0 reaches the
# others, and a route per other node sends its pod /24 to its node IP.
LAN_NETNS=inplace-e2e-lan
LAN_NETNS_PATH=/var/run/netns/$LAN_NETNS
LAN_BRIDGE=lan0
NODE_NET=10.250.0.0/24
# The cluster's registry (registry.sh), on the LAN in its own namespace.
REGISTRY_NETNS=inplace-e2e-registry
REGISTRY_NETNS_PATH=/var/run/netns/$REGISTRY_NETNS
REGISTRY_IP=10.250.0.250
REGISTRY_HOST=$REGISTRY_IP:5000
# The node count (make cluster NODES=N) accepted: one /24 of pods a node.
NODES_MAX=9
# The node count of the cluster that is up (written by up.sh, removed by
# down.sh).
NODES_FILE=$STATE/nodes

# node_vars N sets the ND_* variables to node N's (1-based): its name, IP,
# network namespace, state folder, pod range, CNI network name, containerd
# socket, cgroup root (empty: the kubelet's default, /), the prefix of its
# daemons' names and the folder of its certificates. Node 1 keeps the
# one-node cluster's names and paths.
node_vars() {
	ND=$1
	ND_IP=10.250.0.$1
	ND_POD_CIDR=10.244.$(($1 - 1)).0/24
	if [ "$1" = 1 ]; then
		ND_NAME=$NODE_NAME ND_NETNS=$NETNS ND_DIR=$STATE ND_CNI=$CNI_NETWORK ND_CGROUP='' ND_PREFIX='' ND_PKI=$PKI
	else
		ND_NAME=inplace-e2e-node$1
		ND_NETNS=$ND_NAME ND_DIR=$STATE/node$1 ND_CNI=$ND_NAME ND_CGROUP=$ND_NAME ND_PREFIX=node$1- ND_PKI=$PKI/node$1
	fi
	ND_NETNS_PATH=/var/run/netns/$ND_NETNS
	ND_SOCK=$ND_DIR/containerd/containerd.sock
	ND_CONFIG=$ND_DIR/config
}

node_name() { if [ "$1" = 1 ]; then echo "$NODE_NAME"; else echo "inplace-e2e-node$1"; fi; }
node_netns_path() { if [ "$1" = 1 ]; then echo "$NETNS_PATH"; else echo "/var/run/netns/inplace-e2e-node$1"; fi; }

# cluster_nodes prints the node count of the cluster that is up, 0 when none
# is (1 for a cluster started before there could be more).
cluster_nodes() {
	local n
	n=$(cat "$NODES_FILE" 2>/dev/null) || n=
	if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
		n=0
		daemon_pid kubelet >/dev/null && n=1
	fi
	echo "$n"
}

# known_nodes prints the number of every node the state folder or the
# machine holds anything of, whether or not it runs: 1, then the others.
known_nodes() {
	local d
	{
		echo 1
		for d in "$STATE"/node[0-9]* /var/run/netns/inplace-e2e-node[0-9]*; do
			[ -e "$d" ] || continue
			d=${d##*node}
			[[ $d =~ ^[0-9]+$ ]] && echo "$d"
		done
	} | sort -nu
}

# wanted_nodes validates NODES (the make variable) and prints it; empty when
# unset.
wanted_nodes() {
	local n=${NODES:-}
	[ -z "$n" ] && return 0
	if ! [[ $n =~ ^[1-9][0-9]*$ ]] || [ "$n" -gt "$NODES_MAX" ]; then
		die "NODES must be a number from 1 to $NODES_MAX, not '$n'"
	fi
	echo "$n"
}

# Global kernel settings the kubelet rewrites (setupKernelTunables); recorded
# before the first start and restored by teardown.
KUBELET_SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# Folders outside $STATE that the daemons write to whatever their flags say
# (the kubelet's device-plugin socket, the containerd shims' sockets, the CNI
# result cache, the kubelet's log symlinks, `ip netns`'s mount point), deepest
# first. Teardown removes our files there, and the folders that did not exist
# before the cluster if they are empty.
# DEVICE_PLUGIN_SOCKET is the path every kubelet binds, whatever its root
# directory (the kubelet's device manager has it built in).
DEVICE_PLUGIN_SOCKET=/var/lib/kubelet/device-plugins/kubelet.sock
HOST_DIRS=(/var/log/containers /var/lib/cni/results /var/lib/cni /var/lib/kubelet/device-plugins /var/lib/kubelet /run/containerd/s /run/containerd /var/run/netns)

# Packages from Debian the cluster needs, and a binary each provides.
APT_PACKAGES=(containerd:containerd runc:runc containernetworking-plugins:/usr/lib/cni/bridge iptables:iptables conntrack:conntrack openssl:openssl curl:curl iproute2:ip)

log() { printf '%s cluster: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# in_ns runs a command inside the cluster's network namespace (node 1's),
# in the host's mount namespace.
in_ns() { nsenter --net="$NETNS_PATH" "$@"; }

# in_node_ns N COMMAND...: the same in node N's network namespace.
in_node_ns() {
	local path
	path=$(node_netns_path "$1")
	shift
	nsenter --net="$path" "$@"
}

kubectl_ns() { in_ns "$BIN/kubectl" --kubeconfig="$ADMIN_KUBECONFIG" "$@"; }

ctr_ns() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# now_ms prints the time in milliseconds, for the timings the scripts report.
now_ms() { date +%s%3N; }

# since prints the seconds elapsed since a now_ms value, e.g. "12.3s".
since() { local d=$(($(now_ms) - $1)); printf '%d.%ds' $((d / 1000)) $((d % 1000 / 100)); }

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND every 100 ms.
wait_for() {
	local what=$1 timeout=$2 deadline
	shift 2
	deadline=$(($(now_ms) + timeout * 1000))
	until "$@" >/dev/null 2>&1; do
		if [ "$(now_ms)" -gt "$deadline" ]; then
			log "timed out after ${timeout}s waiting for $what"
			return 1
		fi
		sleep 0.1
	done
}

# lock_state serialises the scripts that change the cluster (up, down,
# deploy): the second waits for the first. The lock is held on fd 9 until the
# script exits; the scripts it runs inherit it (INPLACE_CLUSTER_LOCKED), and
# the daemons do not (start_daemon closes fd 9).
lock_state() {
	[ -n "${INPLACE_CLUSTER_LOCKED:-}" ] && return 0
	mkdir -p "$STATE"
	exec 9>"$STATE/.lock"
	if ! flock -n 9; then
		log "waiting for another run of the cluster scripts to finish"
		flock 9
	fi
	export INPLACE_CLUSTER_LOCKED=1
}

require_root() { [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, mounts, cgroups)"; }

# proc_start_time prints a process's start time in clock ticks since boot
# (field 22 of /proc/PID/stat), which tells a live daemon from a reused PID.
proc_start_time() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) } # fields after the command name, which may hold spaces
	# shellcheck disable=SC2086
	set -- $stat
	echo "${20}"
}

# daemon_pid NAME prints the PID recorded for a daemon if that very process is
# still alive (same PID and start time), and fails otherwise.
daemon_pid() {
	local f=$PIDS/$1.pid pid start
	[ -f "$f" ] || return 1
	read -r pid start <"$f" || return 1
	[ -n "$pid" ] && [ "$(proc_start_time "$pid")" = "$start" ] || return 1
	echo "$pid"
}

# start_daemon NAME BINARY ARGS...: starts BINARY in the namespace, in its own
# session, detached from our stdio, and records its PID and start time.
# setsid does not fork (a background job of a script is not a group leader)
# and nsenter without --pid does not fork either, so $! is the daemon itself.
start_daemon() { start_daemon_in "$NETNS_PATH" "$@"; }

# start_daemon_in NETNS_PATH NAME BINARY ARGS...: start_daemon in another
# network namespace (a node's).
start_daemon_in() {
	local netns=$1 name=$2 pid start
	shift 2
	mkdir -p "$PIDS" "$LOGS"
	setsid nsenter --net="$netns" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 9>&- &
	pid=$!
	start=$(proc_start_time "$pid") || die "$name exited at once; see $LOGS/$name.log"
	echo "$pid $start" >"$PIDS/$name.pid"
	log "started $name (pid $pid)"
}

# top_cgroups prints the top-level cgroups: of every hierarchy under cgroup v1
# (the machines this runs on), of the unified hierarchy under v2.
top_cgroups() {
	local depth=2
	[ -f /sys/fs/cgroup/cgroup.controllers ] && depth=1
	find /sys/fs/cgroup -mindepth "$depth" -maxdepth "$depth" -type d | sort
}

# apiserver_get PATH: an authenticated GET against the API server, from inside
# the namespace, without the cost of starting kubectl.
apiserver_get() {
	in_ns curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$APISERVER$1"
}

# extract_snapshot TARBALL TOP FOLDER DIR: the folder TOP/FOLDER of a source
# snapshot (../shared/thirdparty) as DIR/FOLDER, extracted again only when
# the tarball changed (its checksum in DIR/FOLDER.stamp).
extract_snapshot() {
	local tarball=$1 top=$2 folder=$3 dir=$4 sum
	[ -s "$tarball" ] || die "no source snapshot at $tarball (set THIRDPARTY_DIR)"
	sum=$(sha256sum <"$tarball" | cut -d' ' -f1)
	mkdir -p "$dir"
	if [ "$(cat "$dir/$folder.stamp" 2>/dev/null)" != "$sum" ] || [ ! -d "$dir/$folder" ]; then
		rm -rf "${dir:?}/$folder" "$dir/.extract"
		mkdir -p "$dir/.extract"
		tar -xzf "$tarball" -C "$dir/.extract" "$top/$folder"
		mv "$dir/.extract/$top/$folder" "$dir/$folder"
		rm -rf "$dir/.extract"
		echo "$sum" >"$dir/$folder.stamp"
	fi
}

# image_id_kustomization BY RESOURCE DEPLOYMENT IMAGE_ID prints a
# kustomization (generated by the script BY) of RESOURCE that puts IMAGE_ID
# on the pod template of the Deployment DEPLOYMENT: a new binary behind the
# same image reference rolls the Deployment, an unchanged one does not.
image_id_kustomization() {
	local by=$1 resource=$2 deployment=$3 image_id=$4
	cat <<EOF
# Generated by $by; do not edit.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $resource
patches:
- target: {kind: Deployment, name: $deployment}
  patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: $deployment
    spec:
      template:
        metadata:
          annotations:
            e2e.inplace.dev/image-id: "$image_id"
EOF
}
