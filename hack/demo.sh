#!/usr/bin/env bash
# make demo: the seed scenario (a 3-replica StatefulSet, podManagementPolicy
# Parallel, maxUnavailable 2, its image changed) on the local cluster, then
# the case most users try first (a 4-replica Deployment, the default
# strategy, its image changed), narrated step by step with the kubectl output
# a person would look at.
#
#   hack/demo.sh
#
# Brings the cluster up (or reuses it) and installs inplace-manager from its
# manifests, then works in the namespace demo (DEMO_NAMESPACE), deleting a
# previous demo's first. It reports what it observes (pod UIDs and restart
# counts before and after, the version each container serves), whatever the
# build does. The cluster stays up at the end; make cluster-down stops it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../e2e/cluster/lib.sh
. "$ROOT/e2e/cluster/lib.sh"

export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local

NS=${DEMO_NAMESPACE:-demo}
STS=sample
DEPLOY=web
CONTAINER=main
# What make -s kubectl prints.
KUBECTL="nsenter --net=$NETNS_PATH $BIN/kubectl --kubeconfig=$ADMIN_KUBECONFIG"
COLUMNS_GATE='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,GATES:.spec.readinessGates[*].conditionType,InPlaceUpdateReady:.status.conditions[?(@.type=="InPlaceUpdateReady")].status,RESTARTS:.status.containerStatuses[0].restartCount,IMAGE:.spec.containers[0].image,UID:.metadata.uid'

# shellcheck source-path=SCRIPTDIR source=demo-lib.sh
. "$ROOT/hack/demo-lib.sh"

# pod_facts [APP] prints "name uid restarts ip ready gate", a line per pod
# labelled app=APP (default: the StatefulSet's), by name; gate is the
# InPlaceUpdateReady readiness gate in the pod's spec, or "-".
pod_facts() {
	kubectl_ns -n "$NS" get pod -l app="${1:-$STS}" \
		-o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].restartCount} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status} {.spec.readinessGates[?(@.conditionType=="InPlaceUpdateReady")].conditionType}{"\n"}{end}' |
		awk '{print $1, $2, $3, $4, $5, ($6 == "" ? "-" : $6)}' | sort
}

# served IP: what the container at IP answers on GET / (from inside the
# cluster's network), or "(no answer)".
served() { in_ns curl -fsS --max-time 2 "http://$1:8080/" 2>/dev/null || echo "(no answer)"; }

# show_versions [APP] asks each pod's container which version it serves.
show_versions() {
	local name uid restarts ip rest
	while read -r name uid restarts ip rest; do
		printf '%s$ curl http://%s:8080/%s   # %-9s -> %s\n' "$C" "$ip" "$N" "$name" "$(served "$ip")"
	done < <(pod_facts "$@")
}

# record_before APP records, by pod name, the facts what_happened compares
# with.
record_before() {
	local name uid restarts ip rest
	uid_before=() restarts_before=() ip_before=() version_before=()
	while read -r name uid restarts ip rest; do
		uid_before[$name]=$uid restarts_before[$name]=$restarts ip_before[$name]=$ip version_before[$name]=$(served "$ip")
	done < <(pod_facts "$1")
}

# what_happened APP: per pod labelled app=APP, in place (same UID, its
# container restarted), recreated (a new UID) or untouched, against
# record_before's facts, and a line of summary. Sets inplace, recreated and
# total.
what_happened() {
	local name uid restarts ip rest verdict now untouched=0 same_ip=0
	inplace=0 recreated=0 total=0
	echo
	while read -r name uid restarts ip rest; do
		total=$((total + 1))
		now=$(served "$ip")
		[ "$ip" = "${ip_before[$name]:-}" ] && same_ip=$((same_ip + 1))
		if [ "$uid" != "${uid_before[$name]:-}" ]; then
			recreated=$((recreated + 1))
			verdict="${Y}a new pod: deleted and recreated${N}"
		elif [ "$restarts" != "${restarts_before[$name]:-}" ]; then
			inplace=$((inplace + 1))
			verdict="${G}the same pod, its container restarted${N}"
		else
			untouched=$((untouched + 1))
			verdict="${Y}the same pod, not restarted${N}"
		fi
		printf '%-24s  UID %.8s -> %.8s   RESTARTS %s -> %s   serves %s -> %s   %s\n' "$name" \
			"${uid_before[$name]:-none}" "$uid" "${restarts_before[$name]:-?}" "$restarts" "${version_before[$name]:-?}" "$now" "$verdict"
	done < <(pod_facts "$1")
	echo
	if [ "$total" -gt 0 ] && [ "$inplace" -eq "$total" ]; then
		local ips="their IPs changed"
		[ "$same_ip" -eq "$total" ] && ips="the same IPs"
		say "${B}All $total pods were updated in place${N}: the same pod UIDs, $ips, each container restarted on the new image."
	elif [ "$total" -gt 0 ] && [ "$recreated" -eq "$total" ]; then
		say "${B}All $total pods were recreated${N}: new UIDs, RESTARTS back to 0: a native rollout, not an in-place one."
	else
		say "${B}Of $total pods: $inplace updated in place, $recreated recreated, $untouched neither.${N}"
	fi
}

# rollout_done: the StatefulSet's controller has seen the latest spec, every
# replica is updated and Ready, the current revision is the update revision,
# the partition is back to the user's (none: 0), and every pod runs image $1
# and is Ready.
rollout_done() {
	local s gen obs rep upd ready cur next part pods
	s=$(kubectl_ns -n "$NS" get statefulset "$STS" -o jsonpath='{.metadata.generation}|{.status.observedGeneration}|{.spec.replicas}|{.status.updatedReplicas}|{.status.readyReplicas}|{.status.currentRevision}|{.status.updateRevision}|{.spec.updateStrategy.rollingUpdate.partition}') || return 1
	IFS='|' read -r gen obs rep upd ready cur next part <<<"$s"
	[ "${obs:-0}" -ge "$gen" ] && [ "${upd:-0}" = "$rep" ] && [ "${ready:-0}" = "$rep" ] &&
		[ -n "$cur" ] && [ "$cur" = "$next" ] && [ "${part:-0}" = 0 ] || return 1
	pods=$(kubectl_ns -n "$NS" get pod -l app="$STS" -o jsonpath='{range .items[*]}{.spec.containers[0].image} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}') || return 1
	[ "$(grep -cxF "$1 True" <<<"$pods")" = "$rep" ] && [ "$(wc -l <<<"$pods")" = "$rep" ]
}

# The pod watch of step 5: kubectl get pod --watch-only writing into a FIFO,
# and a filter reading it that prints a pod's line only when its READY,
# STATUS or RESTARTS change (the watch repeats a line for every status write).
watch_pid='' filter_pid='' watch_fifo=''
start_watch() {
	watch_fifo=$(mktemp -u "${TMPDIR:-/tmp}/inplace-demo-watch.XXXXXX")
	mkfifo "$watch_fifo"
	awk '{
		key = $0
		sub(/[ \t]+[^ \t]+[ \t]*$/, "", key)     # the AGE column
		gsub(/ \([^)]* ago\)/, "", key)           # "1 (3s ago)" -> "1"
		if (NR == 1 || last[$1] != key) { print; fflush() }
		last[$1] = key
	}' <"$watch_fifo" &
	filter_pid=$!
	# nsenter execs kubectl: $! is the watch itself.
	nsenter --net="$NETNS_PATH" "$BIN/kubectl" --kubeconfig="$ADMIN_KUBECONFIG" -n "$NS" get pod --watch-only >"$watch_fifo" &
	watch_pid=$!
}
stop_watch() {
	if [ -n "$watch_pid" ]; then
		kill "$watch_pid" 2>/dev/null || true
		wait "$watch_pid" 2>/dev/null || true
	fi
	# The filter ends at the end of its input.
	[ -z "$filter_pid" ] || wait "$filter_pid" 2>/dev/null || true
	[ -z "$watch_fifo" ] || rm -f "$watch_fifo"
	watch_pid='' filter_pid='' watch_fifo=''
}
trap stop_watch EXIT

# The facts before a change, by pod name (record_before), and what
# what_happened counted.
declare -A uid_before restarts_before version_before ip_before
inplace=0 recreated=0 total=0

# deployment_demo V1 V2: steps 7 and 8, a Deployment as most teams run one,
# updated in place.
deployment_demo() {
	local v1=$1 v2=$2 t0 took manifest before after
	step "7. A Deployment, as most teams run one: 4 replicas, the default strategy (25% surge, 25% unavailable)"
	manifest=$(
		cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $DEPLOY
  namespace: $NS
spec:
  replicas: 4
  selector:
    matchLabels:
      app: $DEPLOY
  template:
    metadata:
      labels:
        app: $DEPLOY
    spec:
      containers:
      - name: $CONTAINER
        image: $v1
        imagePullPolicy: Never
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
EOF
	)
	printf '%s\n' "$manifest" | sed 's/^/    /'
	printf '%s$ kubectl apply -f web.yaml%s\n' "$C" "$N"
	kubectl_ns apply -f - <<<"$manifest"
	k -n "$NS" rollout status "deployment/$DEPLOY" --timeout=180s
	k -n "$NS" get pod -l app="$DEPLOY" -o wide
	record_before "$DEPLOY"
	before=$(kubectl_ns -n "$NS" get pod -l app="$DEPLOY" -o name | sort)

	step "8. Change its image to v2 and wait as a CD pipeline does"
	t0=$(now_ms)
	k -n "$NS" set image "deployment/$DEPLOY" "$CONTAINER=$v2"
	k -n "$NS" rollout status "deployment/$DEPLOY" --timeout=300s || return 1
	took=$(since "$t0")
	say "kubectl rollout status returned after $took."
	k -n "$NS" get pod -l app="$DEPLOY" -o wide
	after=$(kubectl_ns -n "$NS" get pod -l app="$DEPLOY" -o name | sort)
	if [ "$before" = "$after" ]; then
		say "The same pod names before and after: no pod was created or deleted."
	else
		say "${Y}The pods before and after differ${N}: some were created or deleted."
	fi
	say "The new ReplicaSet holds every pod, the old one none, and the history lists both revisions:"
	k -n "$NS" get replicaset -l app="$DEPLOY"
	k -n "$NS" rollout history "deployment/$DEPLOY"
	what_happened "$DEPLOY"
	[ "$total" -gt 0 ] && [ "$inplace" -eq "$total" ]
}

main() {
	require_root
	local v1 v2 t0 name uid restarts ip r gate rest
	v1=$("$ROOT/e2e/cluster/images.sh" ref testapp-v1)
	v2=$("$ROOT/e2e/cluster/images.sh" ref testapp-v2)

	step "inplace demo: the seed scenario on a real local cluster"
	say "A platform team installed inplace once; an application team opts its namespace in"
	say "and changes its StatefulSet's image as always. kubectl below stands for:"
	say "  $KUBECTL"

	step "Bring the cluster up (reused when it is up) and install inplace-manager from its manifests"
	"$CLUSTER_SCRIPTS/up.sh"
	"$CLUSTER_SCRIPTS/deploy.sh"
	k -n inplace-system get deployment inplace-manager

	if kubectl_ns get namespace "$NS" >/dev/null 2>&1; then
		step "Delete the namespace $NS of a previous demo"
		k delete namespace "$NS" --wait=true --timeout=180s
	fi

	step "1. Opt the namespace in: one label"
	k create namespace "$NS"
	k label namespace "$NS" inplace.dev/enabled=true

	step "2. Create the StatefulSet as the team writes it: nothing in-place-specific in it"
	local manifest
	manifest=$(
		cat <<EOF
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: $STS
  namespace: $NS
spec:
  replicas: 3
  serviceName: $STS
  selector:
    matchLabels:
      app: $STS
  podManagementPolicy: Parallel   # start and update pods in parallel...
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 2           # ...at most 2 unavailable at a time
  template:
    metadata:
      labels:
        app: $STS
    spec:
      containers:
      - name: $CONTAINER
        image: $v1
        imagePullPolicy: Never    # imported into the node: there is no registry here
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
EOF
	)
	printf '%s\n' "$manifest" | sed 's/^/    /'
	printf '%s$ kubectl apply -f sample.yaml%s\n' "$C" "$N"
	kubectl_ns apply -f - <<<"$manifest"
	k -n "$NS" rollout status "statefulset/$STS" --timeout=180s

	step "3. The pods"
	k -n "$NS" get pod -o wide
	k -n "$NS" get pod -o "custom-columns=$COLUMNS_GATE"
	local total=0 gated=0 ready=0
	while read -r name uid restarts ip r gate; do
		total=$((total + 1))
		[ "$r" = True ] && ready=$((ready + 1))
		[ "$gate" != - ] && gated=$((gated + 1))
	done < <(pod_facts)
	say "$ready of $total pods are Ready; $gated of $total have the InPlaceUpdateReady readiness gate,"
	say "which the webhook puts into each pod as it is created and the manager sets True."
	say "Each container, asked which version it serves:"
	show_versions

	step "4. The StatefulSet"
	local policy gates
	k -n "$NS" get statefulset "$STS" -o 'jsonpath={.metadata.annotations.inplace\.dev/update-policy}{"\n"}'
	policy=$(kubectl_ns -n "$NS" get statefulset "$STS" -o 'jsonpath={.metadata.annotations.inplace\.dev/update-policy}')
	k -n "$NS" get statefulset "$STS" -o 'jsonpath={.spec.template.spec.readinessGates}{"\n"}'
	gates=$(kubectl_ns -n "$NS" get statefulset "$STS" -o 'jsonpath={.spec.template.spec.readinessGates}')
	if [ -n "$policy" ]; then
		say "The webhook added the annotation inplace.dev/update-policy=$policy (the default for managed workloads)."
	else
		say "The StatefulSet has no inplace.dev/update-policy annotation: the webhook did not mutate it."
	fi
	if [ -z "$gates" ]; then
		say "Its pod template is as written: no readiness gate (the gate goes into the pods only)."
	else
		say "Its pod template has readiness gates: $gates"
	fi

	record_before "$STS"

	step "5. Change the image to v2, as the team would, and watch the pods"
	k -n "$NS" get pod
	printf '%s$ kubectl -n %s get pod --watch-only &%s   # until the rollout is done; a line when READY, STATUS or RESTARTS change\n' "$C" "$NS" "$N"
	start_watch
	t0=$(now_ms)
	k -n "$NS" set image "statefulset/$STS" "$CONTAINER=$v2"
	local done=1 took
	# As a CD pipeline would: kubectl rollout status returns once every pod
	# runs v2 and is Ready (the StatefulSet's own status, left truthful).
	k -n "$NS" rollout status "statefulset/$STS" --timeout=300s || done=
	[ -z "$done" ] || wait_for "the rollout to v2" 30 rollout_done "$v2" || done=
	took=$(since "$t0")
	# Let the last watch events print before the summary.
	sleep 1
	stop_watch
	if [ -n "$done" ]; then
		say "Rollout complete in $took: every pod Ready on v2, the StatefulSet reporting every replica updated."
	else
		say "${Y}The rollout did not complete within 300 s${N}; the state it reached:"
	fi

	step "6. What happened"
	say "The StatefulSet's spec is as the team wrote it (no partition, no pause); its controller"
	say "ran the rollout, and its deletes of the pods inplace updated in place were refused:"
	k -n "$NS" get statefulset "$STS" -o 'jsonpath={.spec.updateStrategy}{"\n"}'
	k -n "$NS" get events --field-selector "involvedObject.kind=StatefulSet,involvedObject.name=$STS" \
		-o "custom-columns=TYPE:.type,REASON:.reason,COUNT:.count,MESSAGE:.message" --sort-by=.lastTimestamp
	k -n "$NS" get pod -o wide
	k -n "$NS" get pod -o "custom-columns=$COLUMNS_GATE"
	what_happened "$STS"
	[ "$total" -gt 0 ] && [ "$inplace" -eq "$total" ] || done=

	deployment_demo "$v1" "$v2" || done=

	step "The cluster is still running: look around"
	say "  $KUBECTL -n $NS get pod,statefulset,deployment,replicaset"
	say "  make -s kubectl    prints that kubectl command; make -s kubeconfig its kubeconfig"
	say "Stop it with: make cluster-down"
	[ -n "$done" ]
}

main "$@"
