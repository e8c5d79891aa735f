#!/usr/bin/env bash
# Brings up the single-node end-to-end cluster inside the network namespace
# inplace-e2e, or reuses it when it is already up and healthy.
#
#   e2e/cluster/up.sh
#
# Ready means: every daemon alive, the API server ready, the node Ready with a
# heartbeat newer than this kubelet's start, kube-proxy synced, the default
# ServiceAccount present and a pod that actually ran. The binaries are built
# (hack/build-kube.sh, a no-op when warm), the Debian packages installed if
# missing, the images built and imported.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=pki.sh
. "$here/pki.sh"

t0=$(now_ms)

install_packages() {
	local missing=() p pkg probe
	for p in "${APT_PACKAGES[@]}"; do
		pkg=${p%%:*} probe=${p#*:}
		if [[ $probe == /* ]]; then [ -e "$probe" ] && continue; else command -v "$probe" >/dev/null && continue; fi
		missing+=("$pkg")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]} from Debian"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
}

# healthy succeeds when the recorded cluster is running and serving: every
# daemon alive, the API server ready, the node Ready and heard from in the
# last 40 s (a Ready condition alone may be a stale one from etcd): its lease
# renewed (every 10 s) or, just after a start, before the kubelet has made
# its lease, the Ready condition's heartbeat.
healthy() {
	local d out status beat renew last
	for d in "${DAEMONS[@]}"; do daemon_pid "$d" >/dev/null || return 1; done
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || return 1
	out=$(kubectl_ns get node "$NODE_NAME" -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}' 2>/dev/null) || return 1
	read -r status beat <<<"$out"
	[ "$status" = True ] || return 1
	last=$(date -d "$beat" +%s) || return 1
	renew=$(kubectl_ns -n kube-node-lease get lease "$NODE_NAME" -o jsonpath='{.spec.renewTime}' 2>/dev/null) || true
	if [ -n "$renew" ] && [ "$(date -d "$renew" +%s)" -gt "$last" ]; then last=$(date -d "$renew" +%s); fi
	[ $(($(date +%s) - last)) -lt 40 ]
}

any_daemon_alive() {
	local d
	for d in "${DAEMONS[@]}"; do daemon_pid "$d" >/dev/null && return 0; done
	return 1
}

save_host_state() {
	local s d
	if [ ! -f "$STATE/sysctl.saved" ]; then
		for s in "${KUBELET_SYSCTLS[@]}"; do
			[ -e "/proc/sys/${s//.//}" ] || continue
			echo "$s=$(sysctl -n "$s")"
		done >"$STATE/sysctl.saved.tmp"
		mv "$STATE/sysctl.saved.tmp" "$STATE/sysctl.saved"
	fi
	# The top-level cgroups that exist before the cluster, so that teardown
	# removes only the ones the kubelet and runc create.
	if [ ! -f "$STATE/cgroups.before" ]; then
		top_cgroups >"$STATE/cgroups.before.tmp"
		mv "$STATE/cgroups.before.tmp" "$STATE/cgroups.before"
	fi
	if [ ! -f "$STATE/host-dirs.before" ]; then
		for d in "${HOST_DIRS[@]}"; do
			[ -d "$d" ] && echo "$d"
		done >"$STATE/host-dirs.before" || true
	fi
}

setup_netns() {
	if [ -e "$NETNS_PATH" ]; then
		ip netns delete "$NETNS"
	fi
	ip netns add "$NETNS"
	ip -n "$NETNS" link set lo up
	ip -n "$NETNS" addr add "$NODE_IP/32" dev lo
	# ClusterIPs are local addresses inside the namespace: clients can connect
	# before kube-proxy's rules exist, and an unowned one is refused at once.
	ip -n "$NETNS" route replace local "$SERVICE_CIDR" dev lo src "$NODE_IP"
	in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1
}

write_configs() {
	local cfg=$STATE/config
	mkdir -p "$cfg/cni" "$STATE/containerd" "$STATE/kubelet" "$STATE/pod-logs" "$STATE/cni"

	cat >"$cfg/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
oom_score = 0
# Writes to /opt; nothing of ours uses it.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"

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
        Root = "$STATE/containerd/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cfg/cni"
EOF

	cat >"$cfg/cni/10-$CNI_NETWORK.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NETWORK",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/networks",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

	cat >"$cfg/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
evictionHard: {}
# Never collect the locally imported images: nothing could pull them again.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podLogsDir: $STATE/pod-logs
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
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
nodePortAddresses: [primary]
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

start_control_plane() {
	start_daemon etcd "$BIN/etcd" \
		--name="$NODE_NAME" --data-dir="$STATE/etcd" \
		--listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
		--listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
		--initial-cluster="$NODE_NAME=http://127.0.0.1:2380" \
		--listen-metrics-urls=http://127.0.0.1:2381 \
		--quota-backend-bytes=2147483648 --log-level=warn
	wait_for "etcd" 30 in_ns curl -fsS --max-time 1 http://127.0.0.1:2379/health

	start_daemon kube-apiserver "$BIN/kube-apiserver" \
		--advertise-address="$NODE_IP" --bind-address="$NODE_IP" --secure-port=6443 \
		--etcd-servers=http://127.0.0.1:2379 \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--client-ca-file="$PKI/ca.crt" \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$PKI/ca.crt" \
		--kubelet-preferred-address-types=InternalIP,Hostname \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" \
		--service-account-signing-key-file="$PKI/sa.key" \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--enable-aggregator-routing=false \
		--allow-privileged=true \
		--cert-dir="$STATE/apiserver" \
		--profiling=false
	wait_for "the API server" 60 bash -c "[ \"\$(nsenter --net=$NETNS_PATH curl -fsS --max-time 2 --cacert $PKI/ca.crt --cert $PKI/admin.crt --key $PKI/admin.key $APISERVER/readyz)\" = ok ]"
	log "control plane ready ($(since "$t0"))"

	start_daemon kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig="$STATE/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
		--authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=10257 \
		--service-account-private-key-file="$PKI/sa.key" \
		--root-ca-file="$PKI/ca.crt" \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
		--use-service-account-credentials=true \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--allocate-node-cidrs=false \
		--node-monitor-period=1s \
		--leader-elect=false \
		--profiling=false
	start_daemon kube-scheduler "$BIN/kube-scheduler" \
		--kubeconfig="$STATE/scheduler.kubeconfig" \
		--authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
		--authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=10259 \
		--leader-elect=false \
		--profiling=false
}

start_node() {
	start_daemon containerd /usr/bin/containerd --config "$STATE/config/containerd.toml"
	wait_for "containerd" 30 ctr --address "$CONTAINERD_SOCK" version
	"$here/images.sh" import

	local kubelet_start
	kubelet_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	start_daemon kubelet "$BIN/kubelet" \
		--config="$STATE/config/kubelet.yaml" \
		--kubeconfig="$STATE/kubelet.kubeconfig" \
		--root-dir="$STATE/kubelet" \
		--cert-dir="$STATE/kubelet/pki" \
		--hostname-override="$NODE_NAME" \
		--node-ip="$NODE_IP" \
		--v=1
	start_daemon kube-proxy "$BIN/kube-proxy" --config="$STATE/config/kube-proxy.yaml"

	# etcd may still hold the Ready condition of a previous run: only a
	# heartbeat newer than this kubelet's start counts.
	wait_for "the node to be Ready" 90 node_ready_since "$kubelet_start"
	log "node Ready ($(since "$t0"))"
	wait_for "kube-proxy" 60 in_ns curl -fsS --max-time 1 http://127.0.0.1:10256/healthz
}

node_ready_since() {
	local out status beat
	out=$(kubectl_ns get node "$NODE_NAME" -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}') || return 1
	read -r status beat <<<"$out"
	[ "$status" = True ] && [[ ! $beat < $1 ]]
}

# smoke_test runs a pod (of the pause image) until it is Ready, then deletes
# it: the proof that sandboxes, the CNI and the runtime work.
smoke_test() {
	local pod
	pod=inplace-e2e-smoke-$(date +%s)
	wait_for "the default ServiceAccount" 90 kubectl_ns -n default get serviceaccount default
	kubectl_ns -n default run "$pod" --image="$(image_ref pause)" --image-pull-policy=Never \
		--restart=Never --labels=app.kubernetes.io/name=inplace-e2e-smoke >/dev/null
	if ! kubectl_ns -n default wait --for=condition=Ready "pod/$pod" --timeout=90s >/dev/null; then
		kubectl_ns -n default describe pod "$pod" >&2 || true
		die "the smoke-test pod did not become Ready"
	fi
	kubectl_ns -n default delete pod "$pod" --grace-period=0 --timeout=30s >/dev/null
	log "a pod ran ($(since "$t0"))"
}

image_ref() { "$here/images.sh" ref "$1"; }

main() {
	require_root
	lock_state
	mkdir -p "$STATE"
	install_packages
	"$ROOT/hack/build-kube.sh"
	"$here/images.sh" build

	if healthy; then
		"$here/images.sh" import
		log "cluster already up and healthy, reused ($(since "$t0"))"
		return 0
	fi
	if any_daemon_alive || [ -e "$NETNS_PATH" ]; then
		log "a previous cluster is running but not healthy: tearing it down first"
		"$here/down.sh"
	fi

	save_host_state
	# Fresh logs for this run; the previous run's are kept beside them.
	if [ -d "$LOGS" ]; then
		rm -rf "$LOGS.prev"
		mv "$LOGS" "$LOGS.prev"
	fi
	cluster_pki
	write_configs
	setup_netns
	start_control_plane
	start_node
	smoke_test
	log "cluster ready in $(since "$t0"): $(printf '%q ' nsenter --net="$NETNS_PATH" "$BIN/kubectl" --kubeconfig="$ADMIN_KUBECONFIG")"
}

# Sourcing the script (for debugging) defines the functions without running.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
