#!/usr/bin/env bash
# Installs inplace-manager into the running end-to-end cluster as a user would:
# from the manifests (the overlay e2e/manifests over manifests/base), as a pod
# of its image, its webhooks reached through their Service.
#
#   e2e/cluster/deploy.sh
#   E2E_MANIFESTS=e2e/manifests-cert-manager e2e/cluster/deploy.sh   (cert-manager mode)
#   E2E_MUTATION_DETECTOR=1 e2e/cluster/deploy.sh   (the manager exits when
#     its code changes an object its informers hold: client-go's
#     KUBE_CACHE_MUTATION_DETECTOR; it keeps a copy of every object for
#     minutes and compares them every second, so never for a benchmark)
#
# Builds .cache/bin/inplace-manager and the image
# ghcr.io/inplace-dev/inplace-manager:e2e, imports it, applies the manifests
# (by default the built-in certificate: the manager makes its CA and serving
# certificate and injects the CA; E2E_MANIFESTS names another overlay, e.g.
# e2e/manifests-cert-manager, which needs cert-manager installed: make
# cert-manager) and waits for the Deployment to be Available and the webhook
# to answer TLS through its Service, trusted by the CA injected into the
# mutating webhook configuration. A changed binary rolls the Deployment (the
# image ID is a pod template annotation); an unchanged one does not.
#
# Whatever the overlay, the install is generated in and rendered to
# .cache/cluster/manifests: rendered.yaml there is always what was applied
# last (e2e/cluster/install-e2e.sh deletes it by that).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

MANAGER_NS=inplace-system
WEBHOOK_SERVICE=inplace-webhook
OVERLAY=$(cd "${E2E_MANIFESTS:-$ROOT/e2e/manifests}" 2>/dev/null && pwd) ||
	die "no overlay at E2E_MANIFESTS=${E2E_MANIFESTS:-}"
KUSTOMIZE=$BIN/kustomize

t0=$(now_ms)

ensure_kustomize() {
	local want
	want=$(awk '$1 == "sigs.k8s.io/kustomize/kustomize/v5" {print $2}' "$ROOT/hack/tools/go.mod")
	[ -x "$KUSTOMIZE" ] && [ "$("$KUSTOMIZE" version 2>/dev/null)" = "$want" ] && return 0
	log "building kustomize $want"
	(cd "$ROOT/hack/tools" && CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -o "$KUSTOMIZE" sigs.k8s.io/kustomize/kustomize/v5)
}

# write_overlay IMAGE_ID: the install-time overlay, in the state folder: the
# image ID on the pod template, so that a new binary rolls the Deployment;
# with E2E_MUTATION_DETECTOR=1, client-go's cache mutation detector on in
# the manager too (a patch more, appended to the kustomization's patches).
write_overlay() {
	local image_id=$1 dir=$STATE/manifests base
	mkdir -p "$dir"
	rm -f "$dir/tls.crt" "$dir/tls.key" "$dir/ca.crt"
	base=$(realpath --relative-to="$dir" "$OVERLAY")
	image_id_kustomization e2e/cluster/deploy.sh "$base" inplace-manager "$image_id" >"$dir/kustomization.yaml"
	case ${E2E_MUTATION_DETECTOR:-0} in
	0) ;;
	1) cat >>"$dir/kustomization.yaml" <<'EOF'
- target: {kind: Deployment, name: inplace-manager}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {name: KUBE_CACHE_MUTATION_DETECTOR, value: "true"}
EOF
		;;
	*) die "E2E_MUTATION_DETECTOR is 0, 1 or unset, not '$E2E_MUTATION_DETECTOR'" ;;
	esac
}

# webhook_ca: the CA bundle the manager injected into its mutating webhook
# configuration, in $STATE/webhook-ca.crt; fails while there is none.
webhook_ca() {
	local bundle
	bundle=$(kubectl_ns get mutatingwebhookconfiguration inplace-mutating -o jsonpath='{.webhooks[0].clientConfig.caBundle}')
	[ -n "$bundle" ] && base64 -d <<<"$bundle" >"$STATE/webhook-ca.crt"
}

webhook_answers() {
	local ip=$1 svc=$WEBHOOK_SERVICE.$MANAGER_NS.svc
	webhook_ca || return 1
	in_ns curl -sS -o /dev/null --max-time 2 --cacert "$STATE/webhook-ca.crt" \
		--resolve "$svc:443:$ip" "https://$svc/"
}

# cert_mode FILE: the --cert-mode of the manager in a rendered install, or
# of the running one when FILE is - ("" when there is none).
cert_mode() {
	if [ "$1" = - ]; then
		kubectl_ns -n "$MANAGER_NS" get deployment inplace-manager -o jsonpath='{.spec.template.spec.containers[0].args}' 2>/dev/null || true
	else
		cat "$1"
	fi | { grep -o -- '--cert-mode=[a-z-]*' || true; } | head -n1 | cut -d= -f2
}

# check_install RENDERED: refuses what cannot work. Without cert-manager,
# applying its kinds fails, or the manager waits for a Certificate that
# never comes. Over an install in another certificate mode, the apply would
# leave the other mode's Secret, roles and Certificates (an apply removes
# no object): that install must go first (install-e2e.sh shows how).
check_install() {
	local want have
	if grep -q '^apiVersion: cert-manager.io/' "$1" &&
		! apiserver_get /apis/cert-manager.io/v1 2>/dev/null | grep -q '"kind": *"Certificate"'; then
		die "$(realpath --relative-to="$ROOT" "$OVERLAY") needs cert-manager, which the cluster does not serve (make cert-manager)"
	fi
	want=$(cert_mode "$1")
	have=$(cert_mode -)
	if [ -n "$have" ] && [ "$have" != "$want" ]; then
		die "inplace-manager runs with --cert-mode=$have, these manifests want $want: remove that install first (kubectl delete -f $STATE/manifests/rendered.yaml, and the Secrets inplace-webhook-cert, inplace-webhook-ca)"
	fi
}

main() {
	require_root
	lock_state
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || die "the cluster is not up (make cluster)"
	ensure_kustomize
	local image_id ip out
	log "building inplace-manager and its image"
	image_id=$("$here/images.sh" manager)
	"$here/images.sh" import-manager
	write_overlay "$image_id"

	log "applying the manifests ($(realpath --relative-to="$ROOT" "$OVERLAY"))"
	"$KUSTOMIZE" build "$STATE/manifests" >"$STATE/manifests/rendered.new.yaml"
	check_install "$STATE/manifests/rendered.new.yaml"
	mv "$STATE/manifests/rendered.new.yaml" "$STATE/manifests/rendered.yaml"
	if ! out=$(kubectl_ns apply --server-side --force-conflicts --field-manager=inplace-e2e -f "$STATE/manifests/rendered.yaml" 2>&1); then
		# A Deployment from manifests with another selector cannot be updated:
		# replace it, as this is a test cluster.
		grep -q 'field is immutable' <<<"$out" || die "kubectl apply failed: $out"
		log "the manifests changed an immutable field; replacing the Deployment"
		kubectl_ns -n "$MANAGER_NS" delete deployment inplace-manager --wait=true >/dev/null
		kubectl_ns apply --server-side --force-conflicts --field-manager=inplace-e2e -f "$STATE/manifests/rendered.yaml" >/dev/null
	fi
	if ! kubectl_ns -n "$MANAGER_NS" rollout status deployment/inplace-manager --timeout=180s >/dev/null ||
		! kubectl_ns -n "$MANAGER_NS" wait --for=condition=Available deployment/inplace-manager --timeout=60s >/dev/null; then
		kubectl_ns -n "$MANAGER_NS" get pod -o wide >&2 || true
		kubectl_ns -n "$MANAGER_NS" logs deployment/inplace-manager --tail=30 >&2 || true
		die "the inplace-manager Deployment did not become Available"
	fi
	ip=$(kubectl_ns -n "$MANAGER_NS" get service "$WEBHOOK_SERVICE" -o jsonpath='{.spec.clusterIP}')
	wait_for "the webhook to answer TLS at $WEBHOOK_SERVICE ($ip:443)" 60 webhook_answers "$ip"
	log "inplace-manager Available, webhook serving through its Service ($(since "$t0"))"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
