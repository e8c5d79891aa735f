#!/usr/bin/env bash
# What the tools see of a Deployment's rollout, in place and native: a
# Deployment of REPLICAS (10) pods, the default strategy, rolled from v1 to
# v2 of the e2e test image in a namespace inplace manages and in one it does
# not, its ReplicaSets and itself read as fast as kubectl answers; it prints
# how many reads showed the ReplicaFailure condition True (on a ReplicaSet,
# on the Deployment), whether it is gone 3 s after the rollout, the Warning
# events by reason (Event objects, and the times they were counted), and
# each pod's restarts.
#
#   make cluster NODES=3 && make deploy-e2e && hack/replicafailure.sh [REPLICAS]
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a K <<<"$(make -s kubectl)"
replicas=${1:-10}
v1=$(e2e/cluster/images.sh ref testapp-v1)
v2=$(e2e/cluster/images.sh ref testapp-v2)

failure='{.status.conditions[?(@.type=="ReplicaFailure")].status}'
run() { # run MODE ENABLED
  local ns="replicafailure-$1-$$"
  "${K[@]}" create namespace "$ns" >/dev/null
  "${K[@]}" label namespace "$ns" "inplace.dev/enabled=$2" >/dev/null
  "${K[@]}" -n "$ns" create deployment web --image="$v1" --replicas="$replicas" >/dev/null
  "${K[@]}" -n "$ns" rollout status deployment/web --timeout=300s >/dev/null
  "${K[@]}" -n "$ns" set image deployment/web "*=$v2" >/dev/null
  local start reads=0 rs=0 dep=0 out
  start=$(date +%s.%N)
  while :; do
    out=$("${K[@]}" -n "$ns" get replicasets,deployments -o jsonpath="{range .items[*]}{.kind}:$failure:{.metadata.generation}/{.status.observedGeneration}/{.spec.replicas}/{.status.updatedReplicas}/{.status.availableReplicas}/{.status.replicas};{end}")
    reads=$((reads + 1))
    [[ $out == *"ReplicaSet:True"* ]] && rs=$((rs + 1))
    [[ $out == *"Deployment:True"* ]] && dep=$((dep + 1))
    local g og r u a t
    IFS=/ read -r g og r u a t <<<"$(tr ';' '\n' <<<"$out" | grep '^Deployment:' | cut -d: -f3)"
    [[ $g == "$og" && $u == "$r" && $a == "$r" && $t == "$r" ]] && break
  done
  local took
  took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {print e - s}')
  sleep 3
  printf '%s: rolled in %.1f s; of %d reads, ReplicaFailure True on a ReplicaSet in %d, on the Deployment in %d; 3 s later: %s\n' \
    "$1" "$took" "$reads" "$rs" "$dep" \
    "$("${K[@]}" -n "$ns" get replicasets,deployments -o jsonpath="{range .items[*]}{.kind}/{.metadata.name}=$failure {end}")"
  "${K[@]}" -n "$ns" get events --field-selector type=Warning -o jsonpath='{range .items[*]}{.reason} {.count}{"\n"}{end}' |
    awk '{n[$1]++; c[$1] += $2} END {for (r in n) printf "  Warning %s: %d events, counted %d times\n", r, n[r], c[r]}' | sort
  echo "  restarts by pod: $("${K[@]}" -n "$ns" get pods -o jsonpath='{range .items[*]}{.status.containerStatuses[0].restartCount} {end}')"
  "${K[@]}" delete namespace "$ns" --wait=false >/dev/null
}
run in-place true
run native false
