# The nodes of the end-to-end cluster: their network, configuration, start,
# readiness and teardown. Sourced by up.sh and down.sh (after lib.sh), not
# run.
#
# Node 1 is the one-node cluster of old: its network namespace also holds the
# control plane, kubectl and the tests. Nodes 2..N (make cluster NODES=N)
# each have their own network namespace, containerd (root, state, sockets,
# runc root, CNI configuration and pod range), kubelet (root, certificates,
# pod logs, cgroup root /inplace-e2e-nodeN) and kube-proxy. With more than
# one node, every node namespace has a veth into one bridge in a namespace of
# its own (see LAN_NETNS in lib.sh). The functions that take a node number
# set the ND_* variables (node_vars): call them one at a time.
# shellcheck shell=bash disable=SC2034 # ND_* and KUBELET_START are for the caller

image_ref() { "$CLUSTER_SCRIPTS/images.sh" ref "$1"; }

# --- network ----------------------------------------------------------------

# node_netns_up N: node N's network namespace, new: lo up with the node IP,
# a local route for the Service range (clients can connect to ClusterIPs
# before kube-proxy's rules exist, and an unowned one is refused at once),
# bridged pod traffic through iptables, forwarding on.
node_netns_up() {
	node_vars "$1"
	if [ -e "$ND_NETNS_PATH" ]; then
		ip netns delete "$ND_NETNS"
	fi
	ip netns add "$ND_NETNS"
	ip -n "$ND_NETNS" link set lo up
	ip -n "$ND_NETNS" addr add "$ND_IP/32" dev lo
	ip -n "$ND_NETNS" route replace local "$SERVICE_CIDR" dev lo src "$ND_IP"
	nsenter --net="$ND_NETNS_PATH" sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1
}

# lan_up: the namespace of the bridge between the nodes, if it is not there.
lan_up() {
	[ -e "$LAN_NETNS_PATH" ] && return 0
	ip netns add "$LAN_NETNS"
	ip -n "$LAN_NETNS" link set lo up
	ip -n "$LAN_NETNS" link add "$LAN_BRIDGE" type bridge
	ip -n "$LAN_NETNS" link set "$LAN_BRIDGE" up
	# Frames between nodes are only switched here: no iptables on them.
	nsenter --net="$LAN_NETNS_PATH" sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 net.bridge.bridge-nf-call-arptables=0
}

# node_link N: node N on the bridge: a veth made in the bridge's namespace
# (never in the host's), its end "eth0" in the node's, "nodeN" a port of the
# bridge; eth0 has no address: the node IP on lo answers ARP for it, and the
# on-link route to the other node IPs takes it as their source.
node_link() {
	node_vars "$1"
	local port=node$1
	if ! ip -n "$LAN_NETNS" link show "$port" >/dev/null 2>&1; then
		# Loose or no reverse-path filtering whatever the host's default:
		# replies from other nodes' pods arrive on eth0.
		nsenter --net="$ND_NETNS_PATH" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
		ip -n "$LAN_NETNS" link add "$port" type veth peer name eth0 netns "$ND_NETNS"
		ip -n "$LAN_NETNS" link set "$port" master "$LAN_BRIDGE" up
	fi
	ip -n "$ND_NETNS" link set eth0 up
	ip -n "$ND_NETNS" route replace "$NODE_NET" dev eth0 src "$ND_IP"
}

# node_unlink N: node N off the bridge (both ends of its veth go).
node_unlink() {
	ip -n "$LAN_NETNS" link del "node$1" 2>/dev/null || true
}

# lan_down: the bridge's namespace, and with it every veth still on it.
lan_down() {
	if [ -e "$LAN_NETNS_PATH" ]; then ip netns delete "$LAN_NETNS"; fi
}

# sync_routes COUNT: in each of the nodes 1..COUNT, a route to every other
# one's pod range through its node IP, and none to a node beyond COUNT.
sync_routes() {
	local count=$1 i j ns
	[ "$count" -gt 1 ] || return 0
	for ((i = 1; i <= count; i++)); do
		ns=$(basename "$(node_netns_path "$i")")
		for ((j = 1; j <= NODES_MAX; j++)); do
			[ "$j" = "$i" ] && continue
			if [ "$j" -le "$count" ]; then
				ip -n "$ns" route replace "10.244.$((j - 1)).0/24" via "10.250.0.$j" dev eth0 src "10.250.0.$i"
			else
				ip -n "$ns" route del "10.244.$((j - 1)).0/24" 2>/dev/null || true
			fi
		done
	done
}

# --- cgroups ----------------------------------------------------------------

# node_cgroup_up N: node N's cgroup root in every v1 hierarchy, so that two
# kubelets never share /kubepods. cpuset needs its CPUs and memory nodes
# before anything joins it; cpu.shares is what node 1's /kubepods gets from
# the kubelet (its allocatable CPUs), so that the pods of every node weigh
# the same under contention. Node 1 keeps the kubelet's default, /.
node_cgroup_up() {
	node_vars "$1"
	[ -n "$ND_CGROUP" ] || return 0
	local h
	for h in /sys/fs/cgroup/*/; do
		h=${h%/}
		[ -f "$h/cgroup.clone_children" ] || continue # a v1 hierarchy
		mkdir -p "$h/$ND_CGROUP"
		if [ -f "$h/cpuset.cpus" ]; then
			cat "$h/cpuset.cpus" >"$h/$ND_CGROUP/cpuset.cpus"
			cat "$h/cpuset.mems" >"$h/$ND_CGROUP/cpuset.mems"
		fi
		if [ -f "$h/cpu.shares" ]; then
			echo $(($(nproc) * 1024)) >"$h/$ND_CGROUP/cpu.shares"
		fi
	done
}

# new_cgroups prints the top-level cgroups of every hierarchy that were not
# there before the cluster first started (the kubelets' kubepods and the
# cgroup roots of nodes 2..N, mostly).
new_cgroups() {
	[ -f "$STATE/cgroups.before" ] || return 0
	top_cgroups | comm -13 "$STATE/cgroups.before" -
}

# node_new_cgroups N: those of node N: kubepods* for node 1, its cgroup root
# for the others.
node_new_cgroups() {
	node_vars "$1"
	local cg
	for cg in $(new_cgroups); do
		case ${cg##*/} in
		kubepods*) [ -z "$ND_CGROUP" ] && echo "$cg" ;;
		"$ND_CGROUP") [ -n "$ND_CGROUP" ] && echo "$cg" ;;
		esac
	done
	return 0
}

# remove_cgroups CGROUP...: removes them, deepest first, retrying while the
# kernel still holds the last processes'; fails if some are left.
remove_cgroups() {
	local cg round left=
	for round in $(seq 1 50); do
		left=
		for cg in "$@"; do
			find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[ -d "$cg" ] && left+=" $cg"
		done
		[ -z "$left" ] && return 0
		sleep 0.1
	done
	log "warning: cgroups still busy:$left"
	return 1
}

# --- configuration ----------------------------------------------------------

# write_node_configs N: node N's containerd, CNI, kubelet and kube-proxy
# configurations, in its config folder.
write_node_configs() {
	node_vars "$1"
	local cfg=$ND_CONFIG cgroup_root=
	mkdir -p "$cfg/cni" "$ND_DIR/containerd" "$ND_DIR/kubelet" "$ND_DIR/pod-logs" "$ND_DIR/cni"
	[ -n "$ND_CGROUP" ] && cgroup_root="cgroupRoot: /$ND_CGROUP"

	cat >"$cfg/containerd.toml" <<EOF
version = 2
root = "$ND_DIR/containerd/root"
state = "$ND_DIR/containerd/state"
oom_score = 0
# Writes to /opt; nothing of ours uses it.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$ND_SOCK"

[ttrpc]
  address = "$ND_SOCK.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$(image_ref pause)"
  # Pod network namespaces under our state folder, not /var/run/netns.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$CLUSTER_SCRIPTS/runc-wrapper"
        Root = "$ND_DIR/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cfg/cni"
  # The cluster's registry (registry.sh): HTTPS with the cluster's CA.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$cfg/certs.d"
EOF
	mkdir -p "$cfg/certs.d/$REGISTRY_HOST"
	cat >"$cfg/certs.d/$REGISTRY_HOST/hosts.toml" <<EOF
server = "https://$REGISTRY_HOST"
[host."https://$REGISTRY_HOST"]
  capabilities = ["pull", "resolve"]
  ca = "$PKI/ca.crt"
EOF

	# The network's name is the node's: the CNI result cache
	# (/var/lib/cni/results) is the machine's, shared by every node.
	cat >"$cfg/cni/10-$ND_CNI.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$ND_CNI",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$ND_DIR/cni/networks",
        "ranges": [[{"subnet": "$ND_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

	# No systemReserved or kubeReserved: every node reports the whole machine
	# (see "Capacity" in README.md).
	cat >"$cfg/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ND_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $ND_PKI/kubelet-serving.crt
tlsPrivateKeyFile: $ND_PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$ND_SOCK
cgroupDriver: cgroupfs
$cgroup_root
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
evictionHard: {}
# Never collect the locally imported images: nothing could pull them again.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podLogsDir: $ND_DIR/pod-logs
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
serializeImagePulls: false
EOF

	cat >"$cfg/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $STATE/kube-proxy.kubeconfig
hostnameOverride: $ND_NAME
bindAddress: $ND_IP
clusterCIDR: $CLUSTER_CIDR
detectLocalMode: ClusterCIDR
# The node's own address (what "primary" says from 1.31 on; 1.30 wants CIDRs).
nodePortAddresses: [$ND_IP/32]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
iptables:
  localhostNodePorts: false
# Zeros: leave the kernel's conntrack settings alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# --- start and readiness ----------------------------------------------------

# node_start_containerd N: node N's containerd, trusting the cluster CA as
# a node whose OS trusts a private CA would: through the system's bundle
# and the CA (SSL_CERT_FILE). The registry's hosts.toml names the CA too,
# but containerd 1.6 uses it for the host entry only: on a 404 (a tag that
# does not exist) it falls back to the registry's default endpoint, and a
# pull failed with "x509: certificate signed by unknown authority" instead
# of "not found".
node_start_containerd() {
	node_vars "$1"
	local trust=$ND_CONFIG/trust.pem
	cat /etc/ssl/certs/ca-certificates.crt "$PKI/ca.crt" >"$trust" 2>/dev/null || cp "$PKI/ca.crt" "$trust"
	start_daemon_in "$ND_NETNS_PATH" "${ND_PREFIX}containerd" env SSL_CERT_FILE="$trust" /usr/bin/containerd --config "$ND_CONFIG/containerd.toml"
}

node_wait_containerd() {
	node_vars "$1"
	wait_for "containerd of $ND_NAME" 30 ctr --address "$ND_SOCK" version
}

# node_prune_pulled N: removes from node N's containerd, before its kubelet
# starts, every image it pulled from the cluster's registry: the kubelets
# never collect images (imageGC thresholds above), and each registry test
# and bench run pushes images of its own, tens of MiB each (11 GiB a node
# was seen after a few days). A pulled image is every reference (name:tag,
# name@digest and the bare image ID the CRI adds) to a manifest some
# $REGISTRY_HOST/ name points to, unless an imported image shares it.
node_prune_pulled() {
	node_vars "$1"
	local refs
	refs=$(ctr --address "$ND_SOCK" -n k8s.io images ls 2>/dev/null | awk -v host="$REGISTRY_HOST/" '
		NR > 1 { ref[NR] = $1; digest[NR] = $3
			if (index($1, host) == 1) pulled[$3] = 1
			else if ($1 !~ /^sha256:/) kept[$3] = 1 }
		END { for (i in ref) if (pulled[digest[i]] && !kept[digest[i]]) print ref[i] }')
	[ -n "$refs" ] || return 0
	# shellcheck disable=SC2086 # one reference per word
	ctr --address "$ND_SOCK" -n k8s.io images rm --sync $refs >/dev/null
	log "$ND_NAME: removed $(wc -w <<<"$refs") references to images pulled from the registry"
}

# node_start_kubelet N: node N's kubelet and kube-proxy; sets KUBELET_START
# to the time the kubelet started (UTC, as the API server writes heartbeats).
node_start_kubelet() {
	node_vars "$1"
	KUBELET_START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	start_daemon_in "$ND_NETNS_PATH" "${ND_PREFIX}kubelet" "$KUBE_BIN/kubelet" \
		--config="$ND_CONFIG/kubelet.yaml" \
		--kubeconfig="$ND_DIR/kubelet.kubeconfig" \
		--root-dir="$ND_DIR/kubelet" \
		--cert-dir="$ND_DIR/kubelet/pki" \
		--hostname-override="$ND_NAME" \
		--node-ip="$ND_IP" \
		--v=1
	start_daemon_in "$ND_NETNS_PATH" "${ND_PREFIX}kube-proxy" "$KUBE_BIN/kube-proxy" --config="$ND_CONFIG/kube-proxy.yaml"
}

# node_conditions prints "NAME READY HEARTBEAT" for every node the API
# server knows.
node_conditions() {
	kubectl_ns get nodes -o jsonpath='{range .items[*]}{.metadata.name} {range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}{"\n"}{end}'
}

# nodes_ready_since NAME=TIME...: every named node Ready with a heartbeat not
# older than its TIME (etcd may still hold the Ready of a previous run).
nodes_ready_since() {
	local out arg name status beat
	out=$(node_conditions) || return 1
	for arg in "$@"; do
		name=${arg%%=*}
		read -r _ status beat < <(grep "^$name " <<<"$out") || return 1
		[ "$status" = True ] && [[ ! $beat < ${arg#*=} ]] || return 1
	done
}

# kube_proxies_healthy N...: kube-proxy of each node has synced its rules.
kube_proxies_healthy() {
	local n
	for n in "$@"; do
		in_node_ns "$n" curl -fsS --max-time 1 http://127.0.0.1:10256/healthz >/dev/null || return 1
	done
}

# --- teardown ---------------------------------------------------------------

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
		# shellcheck disable=SC2153 # PIDS is lib.sh's
		rm -f "$PIDS/$name.pid"
	done
	[ ${#pids[@]} -eq 0 ] && return 0
	log "stopping $(for i in "${!names[@]}"; do printf '%s(%s) ' "${names[$i]}" "${pids[$i]}"; done)"
	stop_pids "$timeout" "${pids[@]}"
}

# node_daemons N NAME...: the names of node N's daemons among NAME...
node_daemons() {
	node_vars "$1"
	shift
	local d
	for d in "$@"; do echo "$ND_PREFIX$d"; done
}

# node_container_pids N: the processes of node N's pods: everything in its
# kubelet's cgroups.
node_container_pids() {
	local cg
	for cg in $(node_new_cgroups "$1"); do
		find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null
	done | sort -un
}

# node_stop_containers N...: kills the pods' processes of each node, then
# lets its containerd delete the tasks, so that the shims exit and the
# rootfs mounts go away the ordinary way.
node_stop_containers() {
	local n pids=() tasks id
	for n in "$@"; do mapfile -t -O "${#pids[@]}" pids < <(node_container_pids "$n"); done
	if [ ${#pids[@]} -gt 0 ]; then
		log "killing ${#pids[@]} container processes"
		kill -KILL "${pids[@]}" 2>/dev/null || true
	fi
	for n in "$@"; do
		node_vars "$n"
		if ! daemon_pid "${ND_PREFIX}containerd" >/dev/null || [ ! -S "$ND_SOCK" ]; then continue; fi
		tasks=$(timeout 10 ctr --address "$ND_SOCK" -n k8s.io tasks ls 2>/dev/null | awk 'NR > 1 {print $1}') || true
		for id in $tasks; do
			timeout 5 ctr --address "$ND_SOCK" -n k8s.io tasks delete --force "$id" >/dev/null 2>&1 || true
		done
	done
}

# node_stop_shims N...: stops the containerd shims serving the nodes'
# containerd: their command line names its socket. Read with builtins, the
# shims' only: forking for each of the machine's processes took seconds
# under load.
node_stop_shims() {
	local n p comm arg socks=() pids=() args=()
	for n in "$@"; do
		node_vars "$n"
		socks+=("$ND_SOCK")
	done
	for p in /proc/[0-9]*; do
		read -r comm 2>/dev/null <"$p/comm" || continue
		[[ $comm == containerd-shim* ]] || continue
		mapfile -d '' args 2>/dev/null <"$p/cmdline" || continue
		for arg in "${args[@]}"; do
			if [[ " ${socks[*]} " == *" $arg "* ]]; then
				pids+=("${p#/proc/}")
				break
			fi
		done
	done
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

# unmount_under DIR: every mount under DIR (the kubelets' and containerds'),
# lazily in the last rounds.
unmount_under() {
	local round m left
	for round in 1 2 3 4 5; do
		left=$(mounts_under "$1")
		[ -z "$left" ] && return 0
		[ "$round" = 1 ] && log "unmounting $(wc -l <<<"$left") mounts under $1"
		while read -r m; do
			if [ "$round" -lt 4 ]; then umount "$m" 2>/dev/null || true; else umount -l "$m" 2>/dev/null || true; fi
		done <<<"$left"
	done
	left=$(mounts_under "$1")
	[ -z "$left" ] || log "warning: still mounted: $left"
}

# node_clean_leftovers N: what node N's daemons wrote outside its state
# folder whatever their flags say: its kubelet's /var/log/containers links,
# the CNI result cache entries of its network and of its sandboxes' loopback,
# its shims' sockets.
node_clean_leftovers() {
	node_vars "$1"
	local f id ids
	if [ -d /var/log/containers ]; then
		for f in /var/log/containers/*; do
			if [ -L "$f" ] && [[ $(readlink "$f") == "$ND_DIR/"* ]]; then rm -f "$f"; fi
		done
	fi
	# The pod sandboxes and containers containerd knew: their IDs name the CNI
	# cache entries, and each task's bundle names its shim's socket.
	ids=$(find "$ND_DIR/containerd/root/io.containerd.grpc.v1.cri/sandboxes" \
		"$ND_DIR/containerd/state/io.containerd.runtime.v2.task/k8s.io" \
		-mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -u || true)
	rm -f /var/lib/cni/results/"$ND_CNI"-*
	for id in $ids; do rm -f /var/lib/cni/results/cni-loopback-"$id"-*; done
	for f in "$ND_DIR"/containerd/state/io.containerd.runtime.v2.task/k8s.io/*/address; do
		[ -f "$f" ] || continue
		f=$(cat "$f")
		f=${f#unix://}
		if [[ $f == /run/containerd/s/* ]] && [ -S "$f" ]; then rm -f "$f"; fi
	done
}

# node_clean_state N: what of node N's state folder does not outlive a run;
# its certificates, configuration and image store stay.
node_clean_state() {
	node_vars "$1"
	rm -rf "$ND_DIR/containerd/state" "$ND_DIR/containerd/runc" "$ND_SOCK" "$ND_SOCK.ttrpc" "$ND_DIR/kubelet" "$ND_DIR/cni" "$ND_DIR/pod-logs"
}

# node_down N: stops node N (not node 1) and cleans up after it, as down.sh
# does for the whole cluster: its daemons, its pods' processes and shims,
# its network namespace (and veth), mounts, cgroups and leftovers.
node_down() {
	local n=$1 cgroups
	[ "$n" != 1 ] || die "node_down is for nodes 2..N"
	# shellcheck disable=SC2046 # names without spaces
	stop_daemons 10 $(node_daemons "$n" kubelet kube-proxy)
	node_stop_containers "$n"
	# shellcheck disable=SC2046
	stop_daemons 10 $(node_daemons "$n" containerd)
	node_stop_shims "$n"
	node_vars "$n"
	if [ -e "$ND_NETNS_PATH" ]; then ip netns delete "$ND_NETNS"; fi
	unmount_under "$ND_DIR"
	mapfile -t cgroups < <(node_new_cgroups "$n")
	[ ${#cgroups[@]} -eq 0 ] || remove_cgroups "${cgroups[@]}" || true
	node_clean_leftovers "$n"
	node_clean_state "$n"
}
