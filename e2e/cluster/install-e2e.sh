#!/usr/bin/env bash
# The install and the uninstall on the end-to-end cluster, as a platform
# team runs them: helm install, an in-place rollout, helm upgrade, a rollout
# under way when helm uninstall runs, and what is left afterwards; then the
# kustomize install and its uninstall (the release-holds component's Job,
# then kubectl delete) with a rollout under way, and what is left. Each step checks what a
# user would look at: helm's --wait, kubectl rollout status, the pods' UIDs,
# restart counts and images, the annotations and conditions left behind.
#
#   e2e/cluster/install-e2e.sh        (make e2e-install: the cluster up and the images imported)
#
# The chart and the kustomize install cannot live side by side (their
# cluster-wide objects share names): the kustomize install of make
# deploy-e2e is removed first, and put back at the end (deploy.sh), so that
# the cluster is left as the other suites expect it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

NS=inplace-system
APP_NS=helm-e2e
CHART=$ROOT/manifests/charts/inplace
export HELM_CACHE_HOME=$STATE/helm/cache HELM_CONFIG_HOME=$STATE/helm/config HELM_DATA_HOME=$STATE/helm/data
t0=$(now_ms)

helm_ns() { in_ns "$BIN/helm" --kubeconfig="$ADMIN_KUBECONFIG" "$@"; }
fail() {
	log "FAIL: $*"
	kubectl_ns -n "$APP_NS" get events --sort-by=.lastTimestamp 2>/dev/null | tail -25 >&2 || true
	kubectl_ns -n "$NS" logs deployment/inplace-manager --all-containers --tail=40 2>/dev/null | grep -v '"level":"debug"' >&2 || true
	exit 1
}
step() { log "--- $*"; }

# pods: the app's pods as "name uid restarts image ready" lines.
pods() {
	kubectl_ns -n "$APP_NS" get pod -l app=web -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].restartCount} {.spec.containers[0].image} {.status.containerStatuses[0].ready}{"\n"}{end}' | sort
}

# rollout IMAGE: set the image and wait as a CD pipeline would.
rollout() {
	kubectl_ns -n "$APP_NS" set image statefulset/web app="$1" >/dev/null
	kubectl_ns -n "$APP_NS" rollout status statefulset/web --timeout=180s >/dev/null ||
		fail "kubectl rollout status did not finish for $1"
}

# in_place BEFORE AFTER IMAGE RESTARTS: every pod kept its UID, runs IMAGE,
# is ready and has restarted RESTARTS times.
in_place() {
	local before=$1 after=$2 image=$3 restarts=$4 name uid r img ready
	[ "$(cut -d' ' -f1,2 <<<"$before")" = "$(cut -d' ' -f1,2 <<<"$after")" ] ||
		fail "pods were recreated:"$'\n'"before: $before"$'\n'"after: $after"
	while read -r name uid r img ready; do
		[ "$img" = "$image" ] && [ "$ready" = true ] && [ "$r" = "$restarts" ] ||
			fail "$name: image $img ready $ready restarts $r; want $image, ready, $restarts restarts"
	done <<<"$after"
}

# webhook_reachable: the API server calls the webhook, as a user can check
# it: a server-side dry run of a Deployment in a labelled namespace comes
# back with the policy the mutating webhook adds. helm --wait is not enough:
# it waits for the manager to be ready, but a new Service's ClusterIP may
# not route yet (kube-proxy took over 4 s here), and the webhook fails open
# meanwhile: pods created then are not gated and roll out natively.
webhook_reachable() {
	kubectl_ns -n "$APP_NS" create deployment probe --image=probe --dry-run=server -o jsonpath='{.metadata.annotations}' 2>/dev/null |
		grep -q 'inplace.dev/update-policy'
}

# delete_but_namespace FILE: deletes the objects of a rendered install but
# its namespace (kept for the next install, and quicker), and waits.
delete_but_namespace() {
	awk '
		/^---/ { if (doc !~ /\nkind: Namespace\n/) printf "%s", doc; doc = "" }
		{ doc = doc $0 "\n" }
		END { if (doc !~ /\nkind: Namespace\n/) printf "%s", doc }' "$1" >"${1%.yaml}-without-namespace.yaml"
	kubectl_ns delete --ignore-not-found --wait=true -f "${1%.yaml}-without-namespace.yaml" >/dev/null
}

# remove_kustomize_install: what make deploy-e2e applied, namespace kept.
remove_kustomize_install() {
	local rendered=$STATE/manifests/rendered.yaml
	[ -s "$rendered" ] || return 0
	if kubectl_ns get deployment -n "$NS" inplace-manager -o jsonpath='{.metadata.labels.app\.kubernetes\.io/managed-by}' 2>/dev/null | grep -q Helm; then
		return 0
	fi
	log "removing the kustomize install (make deploy-e2e puts it back)"
	delete_but_namespace "$rendered"
	kubectl_ns -n "$NS" delete secret inplace-webhook-cert --ignore-not-found >/dev/null
}

cleanup() {
	local status=$?
	trap - EXIT
	helm_ns uninstall inplace -n "$NS" --wait --timeout 3m >/dev/null 2>&1 || true
	kubectl_ns delete namespace "$APP_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	kubectl_ns -n "$NS" delete job inplace-release-holds --ignore-not-found >/dev/null 2>&1 || true
	log "putting the kustomize install back"
	"$here/deploy.sh" || status=1
	log "install e2e: $([ "$status" = 0 ] && echo PASS || echo FAIL) in $(since "$t0")"
	exit "$status"
}

main() {
	require_root
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || die "the cluster is not up (make cluster)"
	[ -x "$BIN/helm" ] || die "no $BIN/helm (make tools)"
	local v1 v2 v3 before after
	v1=$("$here/images.sh" ref testapp-v1)
	v2=$("$here/images.sh" ref testapp-v2)
	v3=$("$here/images.sh" ref testapp-v3)
	# The image the chart names (VERSION) must be in the node's containerd.
	"$here/images.sh" manager >/dev/null
	"$here/images.sh" import-manager

	remove_kustomize_install
	trap cleanup EXIT

	kubectl_ns create namespace "$APP_NS" >/dev/null
	kubectl_ns label namespace "$APP_NS" inplace.dev/enabled=true >/dev/null

	step "helm install (chart defaults: built-in certificate, the released image), --wait"
	helm_ns install inplace "$CHART" -n "$NS" --wait --timeout 3m >/dev/null ||
		fail "helm install did not become ready"
	local t
	t=$(now_ms)
	wait_for "the API server to reach the webhook" 60 webhook_reachable || fail "the API server never reached the webhook"
	log "the API server reaches the webhook $(since "$t") after helm --wait returned"
	kubectl_ns -n "$NS" get pod -l app.kubernetes.io/name=inplace-manager -o wide

	step "a StatefulSet in a labelled namespace, rolled out in place"
	kubectl_ns -n "$APP_NS" apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: app
        image: $v1
        imagePullPolicy: Never
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
EOF
	kubectl_ns -n "$APP_NS" rollout status statefulset/web --timeout=180s >/dev/null || fail "web never became ready"
	before=$(pods)
	rollout "$v2"
	after=$(pods)
	in_place "$before" "$after" "$v2" 1
	log "3 pods updated in place to v2 (same UIDs, 1 restart each)"

	step "helm upgrade (log level, three replicas), --wait; then another rollout in place"
	helm_ns upgrade inplace "$CHART" -n "$NS" --reuse-values --set logLevel=debug --set replicas=3 --wait --timeout 3m >/dev/null ||
		fail "helm upgrade did not become ready"
	wait_for "the API server to reach the webhook" 60 webhook_reachable || fail "the API server never reached the webhook after the upgrade"
	[ "$(kubectl_ns -n "$NS" get deployment inplace-manager -o jsonpath='{.status.readyReplicas}')" = 3 ] ||
		fail "the upgraded manager does not have 3 ready replicas"
	before=$after
	rollout "$v3"
	after=$(pods)
	in_place "$before" "$after" "$v3" 2
	log "3 pods updated in place to v3 after the upgrade"

	step "helm uninstall while a rollout is under way: the pre-delete hook releases everything"
	kubectl_ns -n "$APP_NS" set image statefulset/web app="$v1" >/dev/null
	helm_ns uninstall inplace -n "$NS" --wait --timeout 3m || fail "helm uninstall failed (the release-holds hook?)"
	released "$v1" "helm uninstall"

	step "the kustomize install, a rollout under way, then its uninstall: the release-holds component's Job, then kubectl delete"
	"$here/deploy.sh"
	wait_for "the API server to reach the webhook" 60 webhook_reachable || fail "the API server never reached the kustomize install's webhook"
	# Pods made while nothing was installed have no gate: recreate them gated.
	kubectl_ns -n "$APP_NS" delete pod -l app=web --wait=true >/dev/null
	kubectl_ns -n "$APP_NS" rollout status statefulset/web --timeout=180s >/dev/null || fail "web never became ready again"
	kubectl_ns -n "$APP_NS" set image statefulset/web app="$v2" >/dev/null
	local dir=$STATE/uninstall
	mkdir -p "$dir"
	cat >"$dir/kustomization.yaml" <<EOF
# Generated by e2e/cluster/install-e2e.sh: the install deploy.sh applied, with
# the uninstall component, as README "Uninstall" says.
resources: [../manifests]
components: [$(realpath --relative-to="$dir" "$ROOT/manifests/components/release-holds")]
EOF
	"$BIN/kustomize" build "$dir" >"$dir/rendered.yaml"
	kubectl_ns apply --server-side --force-conflicts --field-manager=inplace-e2e -f "$dir/rendered.yaml" >/dev/null
	kubectl_ns -n "$NS" wait --for=condition=complete job/inplace-release-holds --timeout=5m >/dev/null || {
		kubectl_ns -n "$NS" logs job/inplace-release-holds >&2 || true
		fail "the release-holds Job did not complete"
	}
	kubectl_ns -n "$NS" logs job/inplace-release-holds | tail -3
	delete_but_namespace "$dir/rendered.yaml"
	released "$v2" "the kustomize uninstall"
}

# released IMAGE HOW: after an uninstall (HOW), nothing of inplace is left:
# no webhook configuration or admission policy, no rollout record, no
# update state, no closed gate; and the StatefulSet controller finishes the
# rollout to IMAGE on its own.
released() {
	local image=$1 how=$2 left after name state gate ready
	kubectl_ns -n "$APP_NS" rollout status statefulset/web --timeout=180s >/dev/null ||
		fail "the StatefulSet controller could not finish the rollout after $how"
	left=$(kubectl_ns get mutatingwebhookconfiguration,validatingwebhookconfiguration,validatingadmissionpolicy -o name | grep inplace || true)
	[ -z "$left" ] || fail "left after $how: $left"
	left=$(kubectl_ns -n "$APP_NS" get statefulset web -o jsonpath='{.metadata.annotations}' | grep -o 'inplace.dev/[a-z-]*' | grep -v update-policy || true)
	[ -z "$left" ] || fail "the StatefulSet still carries $left"
	# Each pod: name|update state|gate|Ready (a pod created after the
	# uninstall has no gate at all).
	left=$(kubectl_ns -n "$APP_NS" get pod -l app=web -o jsonpath='{range .items[*]}{.metadata.name}|{.metadata.annotations.inplace\.dev/update-state}|{.status.conditions[?(@.type=="InPlaceUpdateReady")].status}|{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
	while IFS='|' read -r name state gate ready; do
		[ -z "$state" ] && [ "$gate" != False ] && [ "$ready" = True ] ||
			fail "after $how, pod $name: update state '$state', gate '$gate', Ready '$ready'"
	done <<<"$left"
	after=$(pods)
	grep -qv " $image " <<<"$after" && fail "pods not on $image after the rollout: $after"
	log "$how: no webhook or policy left, no update state, every gate open, the rollout finished natively"
}

main "$@"
