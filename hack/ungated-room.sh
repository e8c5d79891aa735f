#!/usr/bin/env bash
# A known stall of a Deployment's in-place rollout, reproduced without a
# kill: the pod webhook fails for a moment (its Service port pointed at
# nothing, failurePolicy Ignore) as a rollout starts, so the ReplicaSet
# controller creates the new ReplicaSet's first pod without the readiness
# gate, while the old ReplicaSet's delete is refused for a move. That pod
# takes the room the move was for. The webhook goes on refusing the old
# ReplicaSet's delete of its excess pod; the engine has no room to move it;
# the Deployment controller neither scales the new ReplicaSet up (maxSurge
# 0: its replicas and the old one's add up to the Deployment's) nor the old
# one down (it has more available pods than it wants, which
# cleanupUnhealthyReplicas will not "scale down" to, and rolloutRolling
# drops that error). Until 2026-12-03 nothing moved until the promise broke
# (PromiseTimeout, 30 s) and the old pod was recreated: make chaos met it
# when a killed replica's connection failed a create (3 Deployment rollouts
# of about 70 killed at the gate's close took 64.8-72.5 s). Now the webhook
# lets the excess pod go once the new ReplicaSet has had no room for
# NoRoomWindow (5 s).
#
# It prints the rollout's time; the pods and the events follow. Leaves the
# namespace. Breaks the pod webhook for every namespace for about a second.
#
#   make cluster NODES=3 && make deploy-e2e && hack/ungated-room.sh [GRACE]
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a K <<<"$(make -s kubectl)"
v1=$(e2e/cluster/images.sh ref testapp-v1)
v2=$(e2e/cluster/images.sh ref testapp-v2)
ns=ungated-room-$$
"${K[@]}" create namespace "$ns" >/dev/null
"${K[@]}" label namespace "$ns" inplace.dev/enabled=true >/dev/null
"${K[@]}" apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, annotations: {inplace.dev/grace-period-seconds: "${1:-5}"}}
spec:
  replicas: 3
  selector: {matchLabels: {app: d}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 0, maxUnavailable: 1}}
  template:
    metadata: {labels: {app: d}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: $v1
        imagePullPolicy: IfNotPresent
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
YAML
"${K[@]}" -n "$ns" rollout status deploy/d --timeout=120s >/dev/null

webhook_port() {
  local i
  i=$("${K[@]}" get mutatingwebhookconfiguration inplace-mutating -o jsonpath='{.webhooks[*].name}' | tr ' ' '\n' | grep -n '^pods.mutate.inplace.dev$' | cut -d: -f1)
  "${K[@]}" patch mutatingwebhookconfiguration inplace-mutating --type=json \
    -p "[{\"op\":\"replace\",\"path\":\"/webhooks/$((i - 1))/clientConfig/service/port\",\"value\":$1}]" >/dev/null
}
trap 'webhook_port 443' EXIT
webhook_port 444
start=$(date +%s.%N)
"${K[@]}" -n "$ns" set image deploy/d "app=$v2" >/dev/null
ungated=0
for _ in $(seq 1 150); do
  ungated=$("${K[@]}" -n "$ns" get pods -o jsonpath='{range .items[*]}{.spec.readinessGates}{"\n"}{end}' | grep -c '^$' || true)
  [ "$ungated" -gt 0 ] && break
  sleep 0.1
done
webhook_port 443
echo "$ungated pod(s) created without the gate; the pod webhook restored"
"${K[@]}" -n "$ns" rollout status deploy/d --timeout=300s >/dev/null
echo "rolled out in $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s"
"${K[@]}" -n "$ns" get pods -o wide
"${K[@]}" -n "$ns" get events --sort-by=.lastTimestamp | grep -E 'InPlace|Recreated|FailedDelete|Successful' || true
echo "namespace $ns"
