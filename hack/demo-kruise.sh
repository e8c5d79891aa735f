#!/usr/bin/env bash
# make demo KRUISE=1: the seed document's scenario verbatim, with OpenKruise
# running: its Advanced StatefulSet (3 replicas, Parallel, maxUnavailable 2),
# written as the document writes it but for the two lines inplace now adds
# (the InPlaceUpdateReady readiness gate and podUpdatePolicy
# InPlaceIfPossible), applied, its image changed, applied again; narrated
# with the kubectl output a person would look at.
#
#   hack/demo-kruise.sh
#
# Brings the cluster up (or reuses it), installs inplace-manager, then
# OpenKruise (e2e/cluster/kruise.sh, built from ../shared/thirdparty), and
# works in the namespace demo-kruise (DEMO_NAMESPACE), deleting a previous
# demo's first. It reports what it observes, whatever the build does. The
# cluster stays up, Kruise installed; make kruise-down removes Kruise, make
# cluster-down stops the cluster.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../e2e/cluster/lib.sh
. "$ROOT/e2e/cluster/lib.sh"

export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local

NS=${DEMO_NAMESPACE:-demo-kruise}
STS=sample
KIND=statefulset.apps.kruise.io
KUBECTL="nsenter --net=$NETNS_PATH $BIN/kubectl --kubeconfig=$ADMIN_KUBECONFIG"
COLUMNS='NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,GATES:.spec.readinessGates[*].conditionType,InPlaceUpdateReady:.status.conditions[?(@.type=="InPlaceUpdateReady")].status,RESTARTS:.status.containerStatuses[0].restartCount,IMAGE:.spec.containers[0].image,UID:.metadata.uid'

# shellcheck source-path=SCRIPTDIR source=demo-lib.sh
. "$ROOT/hack/demo-lib.sh"

# pod_facts: "name uid restarts ip ready", a line per pod, by name.
pod_facts() {
	kubectl_ns -n "$NS" get pod -l app="$STS" \
		-o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].restartCount} {.status.podIP} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | sort
}

served() { in_ns curl -fsS --max-time 2 "http://$1:8080/" 2>/dev/null || echo "(no answer)"; }

# rolled_out IMAGE: Kruise reports every replica updated and ready, and
# every pod runs IMAGE and is Ready.
rolled_out() {
	local s gen obs rep upd ready pods
	s=$(kubectl_ns -n "$NS" get "$KIND" "$STS" -o jsonpath='{.metadata.generation}|{.status.observedGeneration}|{.spec.replicas}|{.status.updatedReadyReplicas}|{.status.readyReplicas}') || return 1
	IFS='|' read -r gen obs rep upd ready <<<"$s"
	[ "${obs:-0}" -ge "$gen" ] && [ "${upd:-0}" = "$rep" ] && [ "${ready:-0}" = "$rep" ] || return 1
	pods=$(kubectl_ns -n "$NS" get pod -l app="$STS" -o jsonpath='{range .items[*]}{.status.containerStatuses[0].image} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}') || return 1
	[ "$(grep -cxF "$1 True" <<<"$pods")" = "$rep" ] && [ "$(wc -l <<<"$pods")" = "$rep" ]
}

# sts_yaml IMAGE: the seed document's sts.yaml, its image IMAGE, without
# the two lines inplace adds.
sts_yaml() {
	cat <<EOF
apiVersion: apps.kruise.io/v1beta1
kind: StatefulSet
metadata:
  name: $STS
spec:
  replicas: 3
  serviceName: fake-service
  selector:
    matchLabels:
      app: $STS
  template:
    metadata:
      labels:
        app: $STS
    spec:
      containers:
      - name: main
        image: $1
        imagePullPolicy: IfNotPresent # imported into the node: there is no registry here
  podManagementPolicy: Parallel # allow parallel updates, works together with maxUnavailable
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      # Allow parallel updates with max number of unavailable instances equals to 2
      maxUnavailable: 2
EOF
}

main() {
	require_root
	local v1 v2 t0 name uid restarts ip rest
	v1=$("$ROOT/e2e/cluster/images.sh" ref testapp-v1)
	v2=$("$ROOT/e2e/cluster/images.sh" ref testapp-v2)

	step "inplace + OpenKruise demo: the seed document, verbatim, on a real local cluster"
	say "The document installs OpenKruise and writes an Advanced StatefulSet with a readiness gate"
	say "and podUpdatePolicy: InPlaceIfPossible by hand. With inplace installed, the team writes"
	say "neither; inplace adds both. kubectl below stands for:"
	say "  $KUBECTL"

	step "Bring the cluster up, install inplace-manager, then OpenKruise (built from its source snapshot)"
	"$CLUSTER_SCRIPTS/up.sh"
	"$CLUSTER_SCRIPTS/deploy.sh"
	"$CLUSTER_SCRIPTS/kruise.sh" install
	k -n kruise-system get deployment kruise-controller-manager
	k -n inplace-system get deployment inplace-manager
	say "inplace-system carries the label control-plane, which Kruise's fail-closed pod webhooks skip:"
	k get namespace inplace-system -L control-plane

	if kubectl_ns get namespace "$NS" >/dev/null 2>&1; then
		step "Delete the namespace $NS of a previous demo"
		k delete namespace "$NS" --wait=true --timeout=180s
	fi

	step "1. Opt the namespace in: one label"
	k create namespace "$NS"
	k label namespace "$NS" inplace.dev/enabled=true

	step "2. The document's sts.yaml, without the readiness gate and podUpdatePolicy lines"
	say "(the image is the test app's: there is no registry here; it answers its version on :8080)"
	sts_yaml "$v1" | sed 's/^/    /'
	printf '%s$ kubectl -n %s apply -f sts.yaml%s\n' "$C" "$NS" "$N"
	sts_yaml "$v1" | kubectl_ns -n "$NS" apply -f -
	wait_for "every pod Ready" 180 rolled_out "$v1"
	k -n "$NS" get pod

	step "3. What inplace added to the Advanced StatefulSet"
	k -n "$NS" get "$KIND" "$STS" -o 'jsonpath={.metadata.annotations.inplace\.dev/update-policy}{"\n"}{.spec.template.spec.readinessGates}{"\n"}{.spec.updateStrategy.rollingUpdate.podUpdatePolicy}{"\n"}'
	say "The policy annotation, the InPlaceUpdateReady gate in the template, and Kruise's InPlaceIfPossible:"
	say "the two lines the document wrote by hand."
	k -n "$NS" get pod -o "custom-columns=$COLUMNS"

	local -A uid_before restarts_before version_before
	while read -r name uid restarts ip rest; do
		uid_before[$name]=$uid restarts_before[$name]=$restarts version_before[$name]=$(served "$ip")
	done < <(pod_facts)

	step "4. Change the image to v2 in sts.yaml and apply it again, as the document does"
	sts_yaml "$v2" | grep -n "image:" | sed 's/^/    /'
	printf '%s$ kubectl -n %s apply -f sts.yaml%s\n' "$C" "$NS" "$N"
	t0=$(now_ms)
	sts_yaml "$v2" | kubectl_ns -n "$NS" apply -f -
	local done=1 took
	wait_for "Kruise to update every pod" 300 rolled_out "$v2" || done=
	took=$(since "$t0")
	if [ -n "$done" ]; then
		say "Rollout complete in $took: Kruise reports every replica updated and ready."
	else
		say "${Y}The rollout did not complete within 300 s${N}; the state it reached:"
	fi

	step "5. What happened"
	k -n "$NS" get pod
	k -n "$NS" get pod -o "custom-columns=$COLUMNS"
	k -n "$NS" get events --field-selector involvedObject.kind=Pod -o custom-columns=REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message --sort-by=.lastTimestamp
	local inplace=0 total=0 now verdict
	echo
	while read -r name uid restarts ip rest; do
		total=$((total + 1))
		now=$(served "$ip")
		if [ "$uid" != "${uid_before[$name]:-}" ]; then
			verdict="${Y}a new pod: deleted and recreated${N}"
		elif [ "$restarts" != "${restarts_before[$name]:-}" ]; then
			inplace=$((inplace + 1))
			verdict="${G}the same pod, its container restarted${N}"
		else
			verdict="${Y}the same pod, not restarted${N}"
		fi
		printf '%-9s  UID %.8s -> %.8s   RESTARTS %s -> %s   serves %s -> %s   %s\n' "$name" \
			"${uid_before[$name]:-none}" "$uid" "${restarts_before[$name]:-?}" "$restarts" "${version_before[$name]:-?}" "$now" "$verdict"
	done < <(pod_facts)
	echo
	if [ "$total" -gt 0 ] && [ "$inplace" -eq "$total" ]; then
		say "${B}All $total pods were updated in place by Kruise${N}, as in the document: RESTARTS 1, the same pods."
	else
		say "${B}Of $total pods, $inplace were updated in place.${N}"
	fi
	say "inplace wrote nothing to them: no inplace.dev label or annotation on the pods:"
	k -n "$NS" get pod -L inplace.dev/managed

	step "The cluster is still running, Kruise installed: look around"
	say "  $KUBECTL -n $NS get pod,$KIND"
	say "Remove Kruise with: make kruise-down; stop the cluster with: make cluster-down"
	[ -n "$done" ] && [ "$inplace" -eq "$total" ]
}

main "$@"
