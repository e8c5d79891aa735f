#!/usr/bin/env bash
# Brings up the end-to-end cluster: the control plane and node 1 inside the
# network namespace inplace-e2e, nodes 2..N each in their own (nodes.sh), or
# reuses it when it is already up and healthy.
#
#   e2e/cluster/up.sh
#   NODES=3 e2e/cluster/up.sh     (make cluster NODES=3)
#
# NODES unset: as many nodes as the cluster that is up, one if none is. A
# healthy cluster with fewer nodes than NODES gets the missing ones; one with
# more loses the extra ones (stopped, cleaned up, their Node objects and pods
# deleted). A node's name, IP, pod range and state folder depend only on its
# number: make cluster-down then make cluster NODES=N restarts the same nodes.
#
# KUBE_VERSION: the Kubernetes release of the daemons (hack/build-kube.sh),
# the default one when unset. A cluster up at another release is torn down
# and brought up again from an empty etcd.
#
# Ready means, for every node: its daemons alive, the API server ready, the
# node Ready with a heartbeat newer than its kubelet's start, its kube-proxy
# synced, and a pod that actually ran on it and answered from every node's
# namespace; and the default ServiceAccount present. The binaries are built
# (hack/build-kube.sh, a no-op when warm), the Debian packages installed if
# missing, the images built and imported into every node.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source=pki.sh
. "$here/pki.sh"
# shellcheck source=nodes.sh
. "$here/nodes.sh"

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

# healthy COUNT succeeds when the recorded cluster of COUNT nodes is running
# and serving: every daemon alive, the API server ready, every node Ready and
# heard from in the last 40 s (a Ready condition alone may be a stale one
# from etcd): its lease renewed (every 10 s) or, just after a start, before
# the kubelet has made its lease, the Ready condition's heartbeat.
healthy() {
	local count=$1 n d conditions leases name status beat renew last
	[ "$count" -ge 1 ] || return 1
	for d in "${CONTROL_PLANE_DAEMONS[@]}"; do daemon_pid "$d" >/dev/null || return 1; done
	for ((n = 1; n <= count; n++)); do
		for d in $(node_daemons "$n" "${NODE_DAEMONS[@]}"); do daemon_pid "$d" >/dev/null || return 1; done
		[ -e "$(node_netns_path "$n")" ] || return 1
	done
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || return 1
	conditions=$(node_conditions 2>/dev/null) || return 1
	leases=$(kubectl_ns -n kube-node-lease get leases -o jsonpath='{range .items[*]}{.metadata.name} {.spec.renewTime}{"\n"}{end}' 2>/dev/null) || true
	for ((n = 1; n <= count; n++)); do
		name=$(node_name "$n")
		read -r _ status beat < <(grep "^$name " <<<"$conditions") || return 1
		[ "$status" = True ] || return 1
		last=$(date -d "$beat" +%s) || return 1
		renew=$(grep "^$name " <<<"$leases" | cut -d' ' -f2)
		if [ -n "$renew" ] && [ "$(date -d "$renew" +%s)" -gt "$last" ]; then last=$(date -d "$renew" +%s); fi
		[ $(($(date +%s) - last)) -lt 40 ] || return 1
	done
}

any_daemon_alive() {
	local d n
	for d in "${CONTROL_PLANE_DAEMONS[@]}"; do daemon_pid "$d" >/dev/null && return 0; done
	for n in $(known_nodes); do
		for d in $(node_daemons "$n" "${NODE_DAEMONS[@]}"); do daemon_pid "$d" >/dev/null && return 0; done
	done
	return 1
}

# any_netns: a network namespace of the cluster exists.
any_netns() {
	local n
	[ -e "$LAN_NETNS_PATH" ] && return 0
	for n in $(known_nodes); do [ -e "$(node_netns_path "$n")" ] && return 0; done
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
	# removes only the ones the kubelets, runc and nodes.sh create.
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

# setup_network FROM TO: the network namespaces of the nodes FROM..TO, new,
# and with more than one node the bridge between all of the nodes 1..TO
# (node 1 joins it when the second node comes, running or not) and the
# routes to every node's pods; the cgroup roots of the new nodes.
setup_network() {
	local from=$1 to=$2 n
	for ((n = from; n <= to; n++)); do node_netns_up "$n"; done
	if [ "$to" -gt 1 ]; then
		lan_up
		for ((n = 1; n <= to; n++)); do node_link "$n"; done
		sync_routes "$to"
	fi
	for ((n = from; n <= to; n++)); do node_cgroup_up "$n"; done
}

# write_audit_policy: the API server records each pod create, when it was
# received and when its response completed, to the microsecond: make
# bench-apiserver reads the latency of each create there, where the API
# server's histograms only have buckets at 5, 25 and 50 ms. And each write
# of a pod's status with its body, who wrote it and whether it was let
# through: a readiness flip in a failed run is traced to its writer there
# (the kubelet, the manager, the readiness guard's refusals). Nothing else
# is recorded.
write_audit_policy() {
	cat >"$STATE/audit-policy.yaml" <<-'POLICY'
		apiVersion: audit.k8s.io/v1
		kind: Policy
		omitStages: [RequestReceived, ResponseStarted, Panic]
		rules:
		- level: Metadata
		  verbs: [create]
		  resources: [{group: "", resources: [pods]}]
		- level: Request
		  verbs: [patch, update]
		  resources: [{group: "", resources: [pods/status]}]
		- level: None
	POLICY
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

	write_audit_policy
	start_daemon kube-apiserver "$KUBE_BIN/kube-apiserver" \
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
		--audit-policy-file="$STATE/audit-policy.yaml" --audit-log-path="$LOGS/audit.log" \
		--audit-log-mode=batch --audit-log-maxsize=100 --audit-log-maxbackup=1 \
		--profiling=false
	wait_for "the API server" 60 bash -c "[ \"\$(nsenter --net=$NETNS_PATH curl -fsS --max-time 2 --cacert $PKI/ca.crt --cert $PKI/admin.crt --key $PKI/admin.key $APISERVER/readyz)\" = ok ]"
	log "control plane ready ($(since "$t0"))"

	start_daemon kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
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
	start_daemon kube-scheduler "$KUBE_BIN/kube-scheduler" \
		--kubeconfig="$STATE/scheduler.kubeconfig" \
		--authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
		--authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port=10259 \
		--leader-elect=false \
		--profiling=false
}

# start_nodes FROM TO: the nodes FROM..TO: their containerd, the images
# imported into it, their kubelet and kube-proxy; returns when each is Ready
# with a heartbeat newer than its kubelet's start and its kube-proxy has
# synced.
start_nodes() {
	local from=$1 to=$2 n since=() nodes=()
	for ((n = from; n <= to; n++)); do node_start_containerd "$n"; done
	for ((n = from; n <= to; n++)); do node_wait_containerd "$n"; done
	for ((n = from; n <= to; n++)); do node_prune_pulled "$n"; done
	"$here/images.sh" import
	# Every kubelet binds the same device-plugin socket: it removes the
	# file, then binds it. Two kubelets started together can interleave
	# those steps, and the loser exits ("bind: address already in use",
	# seen once in CI on three nodes): each starts once the one before has
	# bound its socket.
	local marker=$STATE/kubelet-start-marker
	for ((n = from; n <= to; n++)); do
		touch "$marker"
		node_start_kubelet "$n"
		since+=("$ND_NAME=$KUBELET_START")
		nodes+=("$n")
		wait_for "the kubelet of $(nodes_phrase "$n" "$n") to bind the device-plugin socket" 30 \
			test "$DEVICE_PLUGIN_SOCKET" -nt "$marker"
	done
	# etcd may still hold the Ready condition of a previous run: only a
	# heartbeat newer than the kubelet's start counts.
	wait_for "the node(s) to be Ready" 90 nodes_ready_since "${since[@]}"
	log "$(nodes_phrase "$from" "$to") Ready ($(since "$t0"))"
	wait_for "kube-proxy" 60 kube_proxies_healthy "${nodes[@]}"
}

# nodes_phrase FROM TO: "node", "node 2", "nodes 1..3".
nodes_phrase() {
	if [ "$1" = "$2" ] && [ "$(cluster_nodes)" = 1 ]; then
		echo node
	elif [ "$1" = "$2" ]; then
		echo "node $1"
	else
		echo "nodes $1..$2"
	fi
}

# prune_nodes COUNT: deletes the Node objects of the nodes beyond COUNT that
# etcd still holds (from a cluster of more nodes), and their pods at once:
# the scheduler would place pods on their stale Ready, and the tests expect
# every node Ready.
prune_nodes() {
	local count=$1 name n
	for name in $(kubectl_ns get nodes -o jsonpath='{.items[*].metadata.name}'); do
		[[ $name =~ ^inplace-e2e-node([0-9]+)$ ]] || continue
		n=${BASH_REMATCH[1]}
		[ "$n" -gt "$count" ] || continue
		log "deleting the Node $name and its pods"
		kubectl_ns delete node "$name" --wait=false >/dev/null
		kubectl_ns delete pod -A --field-selector "spec.nodeName=$name" --force --grace-period=0 >/dev/null 2>&1 || true
	done
}

# smoke_test FROM TO: a pod of the test app on each of the nodes FROM..TO,
# until it is Ready and answers from every node's network namespace, then
# deleted: the proof that sandboxes, the CNI, the runtime and the routes
# between the nodes (both ways) work.
smoke_test() {
	local from=$1 to=$2 run n i ip ips app
	run=$(date +%s)
	app=$(image_ref testapp-v1)
	wait_for "the default ServiceAccount" 90 kubectl_ns -n default get serviceaccount default
	for ((n = from; n <= to; n++)); do
		printf -- '---\n%s\n' "apiVersion: v1
kind: Pod
metadata:
  name: inplace-e2e-smoke-$run-$n
  namespace: default
  labels: {app.kubernetes.io/name: inplace-e2e-smoke, inplace-e2e-smoke/run: \"$run\"}
spec:
  nodeSelector: {kubernetes.io/hostname: $(node_name "$n")}
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - {name: app, image: $app, imagePullPolicy: Never}"
	done | kubectl_ns create -f - >/dev/null
	if ! kubectl_ns -n default wait --for=condition=Ready pod -l "inplace-e2e-smoke/run=$run" --timeout=90s >/dev/null; then
		kubectl_ns -n default describe pod -l "inplace-e2e-smoke/run=$run" >&2 || true
		die "a smoke-test pod did not become Ready"
	fi
	ips=$(kubectl_ns -n default get pod -l "inplace-e2e-smoke/run=$run" -o jsonpath='{.items[*].status.podIP}')
	for ((i = 1; i <= $(cluster_nodes); i++)); do
		for ip in $ips; do
			wait_for "the pod at $ip to answer from node $i" 15 in_node_ns "$i" curl -fsS --max-time 1 "http://$ip:8080/healthz" ||
				die "the smoke-test pod at $ip does not answer from node $i ($(node_name "$i"))"
		done
	done
	kubectl_ns -n default delete pod -l "inplace-e2e-smoke/run=$run" --grace-period=0 --timeout=30s >/dev/null
	log "a pod ran on $(nodes_phrase "$from" "$to") ($(since "$t0"))"
}

# add_nodes FROM TO: nodes FROM+1..TO join the running cluster of FROM.
add_nodes() {
	local from=$1 to=$2 n
	log "adding nodes $((from + 1))..$to to the running cluster"
	# First: a failure from here on leaves a cluster that is not healthy,
	# and the next make cluster starts it again with every node.
	echo "$to" >"$NODES_FILE"
	for ((n = from + 1; n <= to; n++)); do
		node_pki "$n"
		write_node_configs "$n"
	done
	setup_network $((from + 1)) "$to"
	prune_nodes "$to"
	start_nodes $((from + 1)) "$to"
	smoke_test $((from + 1)) "$to"
}

# remove_nodes TO FROM: nodes TO+1..FROM leave the running cluster: stopped
# and cleaned up (node_down), their Node objects and pods deleted. Their
# state folders stay (certificates, image store) for the next time.
remove_nodes() {
	local to=$1 from=$2 n
	log "removing nodes $((to + 1))..$from from the running cluster"
	echo "$to" >"$NODES_FILE"
	for ((n = from; n > to; n--)); do node_down "$n"; done
	if [ "$to" = 1 ]; then
		# One node is the one-node cluster of old: no bridge, no eth0.
		lan_down
	else
		for ((n = to + 1; n <= from; n++)); do node_unlink "$n"; done
	fi
	sync_routes "$to"
	prune_nodes "$to"
}

main() {
	require_root
	local want have count n
	# Refused before waiting for another run's lock.
	want=$(wanted_nodes)
	lock_state
	mkdir -p "$STATE"
	install_packages
	"$ROOT/hack/build-kube.sh" etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
	KUBE_VERSION= "$ROOT/hack/build-kube.sh" kubectl
	"$here/images.sh" build

	have=$(cluster_nodes)
	# A state folder from before releases were recorded is the default's.
	ran=$(cat "$RELEASE_FILE" 2>/dev/null) || ran=$(KUBE_VERSION= "$ROOT/hack/build-kube.sh" --version)
	if [ "$ran" = "$KUBE_RELEASE" ] && healthy "$have"; then
		count=${want:-$have}
		if [ "$count" -gt "$have" ]; then
			"$here/images.sh" import
			add_nodes "$have" "$count"
			log "cluster of $count nodes ready in $(since "$t0")"
		elif [ "$count" -lt "$have" ]; then
			remove_nodes "$count" "$have"
			"$here/images.sh" import
			log "cluster of $count node(s) ready in $(since "$t0")"
		else
			"$here/images.sh" import
			log "cluster already up and healthy ($count node(s)), reused ($(since "$t0"))"
		fi
		"$here/registry.sh" up
		return 0
	fi
	count=${want:-$((have > 0 ? have : 1))}
	if any_daemon_alive || any_netns; then
		if [ "$ran" != "$KUBE_RELEASE" ]; then
			log "the cluster runs Kubernetes $ran, $KUBE_RELEASE is wanted: tearing it down first"
		else
			log "a previous cluster is running but not healthy: tearing it down first"
		fi
		"$here/down.sh"
	fi
	if [ "$ran" != "$KUBE_RELEASE" ]; then
		# What another release wrote (storage versions, fields it knows)
		# is not for this one: the cluster starts from an empty etcd.
		log "starting Kubernetes $KUBE_RELEASE from an empty etcd (the last cluster ran $ran)"
		rm -rf "$STATE/etcd"
	fi

	save_host_state
	# Fresh logs for this run; the previous run's are kept beside them.
	if [ -d "$LOGS" ]; then
		rm -rf "$LOGS.prev"
		mv "$LOGS" "$LOGS.prev"
	fi
	cluster_pki
	for ((n = 1; n <= count; n++)); do
		[ "$n" = 1 ] || node_pki "$n"
		write_node_configs "$n"
	done
	echo "$count" >"$NODES_FILE"
	setup_network 1 "$count"
	echo "$KUBE_RELEASE" >"$RELEASE_FILE"
	start_control_plane
	prune_nodes "$count"
	start_nodes 1 "$count"
	smoke_test 1 "$count"
	"$here/registry.sh" up
	log "cluster of $count node(s) ready in $(since "$t0"): $(printf '%q ' nsenter --net="$NETNS_PATH" "$BIN/kubectl" --kubeconfig="$ADMIN_KUBECONFIG")"
}

# Sourcing the script (for debugging) defines the functions without running.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
