#!/usr/bin/env bash
# OpenKruise on the end-to-end cluster: kruise-manager built from the source
# snapshot in the shared folder (../shared/thirdparty: OpenKruise's module is
# not served by the Go module proxy here), its image assembled like the
# project's own, its CRDs, RBAC, webhooks and Deployment installed from the
# snapshot's own config/ with the changes in e2e/cluster/kruise/.
#
#   kruise.sh build       build .cache/bin/kruise-manager (skipped when up to date), extract the
#                         snapshot's config/ into .cache/kruise, assemble the image
#   kruise.sh install     build, import the image, apply the CRDs (server side) and the rest, wait
#                         until the Deployment is Available and Kruise's webhooks answer
#   kruise.sh uninstall   remove Kruise: its webhook configurations first (its pod webhooks fail
#                         closed), then its CRDs (and every Kruise object: their pods go with them)
#                         while its manager still runs to finish them, then the rest
#   kruise.sh installed   exit 0 when Kruise is installed and its webhooks answer
#
# Environment: THIRDPARTY_DIR, the folder of the snapshots and build.sh
# (default: ../shared/thirdparty beside the repository).
#
# Nothing of Kruise's is committed: the binary, the config and the rendered
# manifests live in .cache. Kruise's namespace (kruise-system) carries the
# label control-plane, which its own pod webhooks skip; inplace-system carries
# it too (manifests/base), so that inplace-manager's pods are never refused
# while kruise-manager is down.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

THIRDPARTY_DIR=${THIRDPARTY_DIR:-$(cd "$ROOT/.." && pwd)/shared/thirdparty}
KRUISE_SNAPSHOT=openkruise-07169cfac
KRUISE_TARBALL=$THIRDPARTY_DIR/$KRUISE_SNAPSHOT.tar.gz
KRUISE_DIR=${KRUISE_DIR:-$ROOT/.cache/kruise}
KRUISE_NS=kruise-system
KRUISE_DEPLOYMENT=kruise-controller-manager
KRUISE_WEBHOOKS=(mutatingwebhookconfiguration/kruise-mutating-webhook-configuration validatingwebhookconfiguration/kruise-validating-webhook-configuration)
# The namespace where the webhook check dry-runs its objects: one without
# the control-plane label, which Kruise's pod webhooks see.
PROBE_NS=default

t0=$(now_ms)

# extract_config: the snapshot's config/ in $KRUISE_DIR/config; this
# repository's overlay copied beside it.
extract_config() {
	extract_snapshot "$KRUISE_TARBALL" "$KRUISE_SNAPSHOT" config "$KRUISE_DIR"
	rm -rf "$KRUISE_DIR/overlay"
	cp -r "$here/kruise" "$KRUISE_DIR/overlay"
}

build() {
	[ -x "$THIRDPARTY_DIR/build.sh" ] || die "no $THIRDPARTY_DIR/build.sh (set THIRDPARTY_DIR)"
	log "building kruise-manager from $(basename "$KRUISE_TARBALL") (skipped when up to date)"
	"$THIRDPARTY_DIR/build.sh" kruise-manager "$BIN"
	extract_config
	"$here/images.sh" kruise >/dev/null
}

# render IMAGE_ID: the manifests, with the image ID on the pod template so
# that a new binary rolls the Deployment.
render() {
	local image_id=$1 dir=$KRUISE_DIR/install
	mkdir -p "$dir"
	image_id_kustomization e2e/cluster/kruise.sh ../overlay "$KRUISE_DEPLOYMENT" "$image_id" >"$dir/kustomization.yaml"
	# Kruise's config uses kustomize's deprecated fields; say nothing of it.
	"$BIN/kustomize" build "$dir" 2> >(grep -v "^# Warning: 'patchesStrategicMerge' is deprecated" >&2) >"$dir/rendered.yaml"
}

# webhooks_answer: Kruise's mutating webhook defaults a v1alpha1 CloneSet
# (a dry run, converted by Kruise's conversion webhook to v1beta1 and back,
# comes back with Kruise's default revisionHistoryLimit, which nothing else
# writes) and its pod webhooks let a pod through (a dry run: they fail
# closed, so an error here is theirs).
webhooks_answer() {
	local limit pause
	pause=$("$here/images.sh" ref pause)
	limit=$(kubectl_ns -n "$PROBE_NS" create --dry-run=server -o jsonpath='{.spec.revisionHistoryLimit}' -f - <<EOF
apiVersion: apps.kruise.io/v1alpha1
kind: CloneSet
metadata:
  name: kruise-webhook-probe
spec:
  replicas: 0
  selector:
    matchLabels: {app: kruise-webhook-probe}
  template:
    metadata:
      labels: {app: kruise-webhook-probe}
    spec:
      containers:
      - name: probe
        image: $pause
EOF
	) || return 1
	[ "$limit" = 10 ] || return 1
	kubectl_ns -n "$PROBE_NS" run kruise-webhook-probe --image="$pause" --restart=Never --dry-run=server >/dev/null
}

install() {
	require_root
	lock_state
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || die "the cluster is not up (make cluster)"
	[ -x "$BIN/kustomize" ] || die "no $BIN/kustomize (make deploy-e2e builds it)"
	build
	local image_id
	image_id=$("$here/images.sh" kruise)
	"$here/images.sh" import-kruise
	render "$image_id"

	# Server side: the CRDs are too large for kubectl's last-applied annotation.
	log "applying Kruise: CRDs with their conversion webhook, RBAC, manager, webhooks (see e2e/cluster/kruise/)"
	kubectl_ns apply --server-side --force-conflicts --field-manager=kruise-e2e -f "$KRUISE_DIR/install/rendered.yaml" >/dev/null
	kubectl_ns wait --for=condition=Established --timeout=60s -f "$KRUISE_DIR/config/crd/bases" >/dev/null
	if ! kubectl_ns -n "$KRUISE_NS" rollout status "deployment/$KRUISE_DEPLOYMENT" --timeout=180s >/dev/null; then
		kubectl_ns -n "$KRUISE_NS" get pod -o wide >&2 || true
		kubectl_ns -n "$KRUISE_NS" logs "deployment/$KRUISE_DEPLOYMENT" --tail=30 >&2 || true
		die "the $KRUISE_DEPLOYMENT Deployment did not become Available"
	fi
	if ! wait_for "Kruise's webhooks to answer (a dry-run CloneSet and pod in $PROBE_NS)" 120 webhooks_answer; then
		webhooks_answer || true
		kubectl_ns -n "$KRUISE_NS" logs "deployment/$KRUISE_DEPLOYMENT" --tail=30 >&2 || true
		die "Kruise's webhooks do not answer"
	fi
	log "Kruise installed: $KRUISE_DEPLOYMENT Available, its webhooks answering ($(since "$t0"))"
}

uninstall() {
	require_root
	lock_state
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || die "the cluster is not up (make cluster)"
	local w left
	# First what fails closed: with the manager gone, Kruise's pod webhooks
	# would refuse every pod create, update and delete outside namespaces
	# labelled control-plane.
	for w in "${KRUISE_WEBHOOKS[@]}"; do
		kubectl_ns delete "$w" --ignore-not-found >/dev/null
	done
	log "deleted Kruise's webhook configurations"
	# Then the CRDs, which deletes every Kruise object; the manager still
	# runs, for any finalizer of its own. Their pods follow through the
	# garbage collector.
	if [ -d "$KRUISE_DIR/config/crd/bases" ]; then
		kubectl_ns delete --ignore-not-found --wait=true --timeout=180s -f "$KRUISE_DIR/config/crd/bases" >/dev/null
	else
		kubectl_ns get crd -o name | grep -E '\.kruise\.io$' | xargs -r nsenter --net="$NETNS_PATH" "$BIN/kubectl" --kubeconfig="$ADMIN_KUBECONFIG" delete --wait=true --timeout=180s >/dev/null || true
	fi
	log "deleted Kruise's CRDs"
	if [ -s "$KRUISE_DIR/install/rendered.yaml" ]; then
		kubectl_ns delete --ignore-not-found --wait=true --timeout=180s -f "$KRUISE_DIR/install/rendered.yaml" >/dev/null
	else
		kubectl_ns delete namespace "$KRUISE_NS" --ignore-not-found --wait=true --timeout=180s >/dev/null
	fi
	left=$(leftovers)
	[ -z "$left" ] || die "left after the uninstall: $left"
	log "Kruise uninstalled: no webhook configuration, CRD, namespace or cluster role of it left ($(since "$t0"))"
}

# leftovers lists what of Kruise is still on the cluster.
leftovers() {
	{
		kubectl_ns get mutatingwebhookconfigurations,validatingwebhookconfigurations,clusterroles,clusterrolebindings -o name | grep kruise || true
		kubectl_ns get crd -o name | grep -E '\.kruise\.io$' || true
		kubectl_ns get namespace "$KRUISE_NS" -o name 2>/dev/null || true
	} | paste -sd' '
}

installed() {
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || return 1
	kubectl_ns -n "$KRUISE_NS" get deployment "$KRUISE_DEPLOYMENT" >/dev/null 2>&1 || return 1
	webhooks_answer >/dev/null 2>&1
}

case ${1:-} in
build) build ;;
install) install ;;
uninstall) uninstall ;;
installed) installed ;;
*)
	sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
	;;
esac
