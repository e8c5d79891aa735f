#!/usr/bin/env bash
# cert-manager on the end-to-end cluster: its controller, CA injector and
# webhook built from the source snapshot in the shared folder
# (../shared/thirdparty: cert-manager's images cannot be pulled here, and
# its cmd/* modules cannot be had with go install), their images assembled
# like the project's own, installed from cert-manager's own Helm chart
# (deploy/charts/cert-manager of the snapshot) as a user installs it, but
# rendered with .cache/bin/helm and applied server side, and with:
#   - the images example.local/cert-manager-{controller,cainjector,webhook}:e2e,
#     never pulled (there is no registry), their IDs on the pod templates so
#     that a new binary rolls the Deployments;
#   - the CRDs from the chart (crds.enabled), not kept on uninstall;
#   - no startupapicheck Job (it runs cmctl, which is not in the snapshot):
#     install checks instead that cert-manager actually issues.
#
#   certmanager.sh build       build .cache/bin/cert-manager-{controller,cainjector,webhook}
#                              (skipped when up to date), extract the snapshot's deploy/ into
#                              .cache/cert-manager, assemble the images
#   certmanager.sh install     build, import the images, render the chart and apply it (server
#                              side), wait until the three Deployments are Available, then prove it
#                              issues: a self-signed Certificate in the namespace
#                              cert-manager-probe becomes Ready (through cert-manager's webhook,
#                              which the CA injector made reachable); the namespace is deleted after
#   certmanager.sh uninstall   remove cert-manager: its webhook configurations first (they fail
#                              closed for cert-manager's kinds), then its CRDs and with them every
#                              Issuer, Certificate, ... while its controller still runs, then the rest
#                              and its leader-election Leases; fails if anything of it is left
#   certmanager.sh installed   exit 0 when cert-manager is installed and its webhook answers
#
# Environment: THIRDPARTY_DIR, the folder of the snapshots and build.sh
# (default: ../shared/thirdparty beside the repository).
#
# Nothing of cert-manager's is committed: the binaries, the chart and the
# rendered manifests live in .cache. Secrets that cert-manager issued stay
# after an uninstall, as with every cert-manager (they are not owned by
# their Certificates unless enableCertificateOwnerRef is set).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

THIRDPARTY_DIR=${THIRDPARTY_DIR:-$(cd "$ROOT/.." && pwd)/shared/thirdparty}
CM_SNAPSHOT=cert-manager-2d0d7f7f7
CM_TARBALL=$THIRDPARTY_DIR/$CM_SNAPSHOT.tar.gz
CM_DIR=${CERT_MANAGER_DIR:-$ROOT/.cache/cert-manager}
CM_NS=cert-manager
# The binaries, their images and their Deployments (the chart's names for
# the release cert-manager), in the same order.
CM_BINARIES=(cert-manager-controller cert-manager-cainjector cert-manager-webhook)
CM_DEPLOYMENTS=(cert-manager cert-manager-cainjector cert-manager-webhook)
CM_WEBHOOKS=(mutatingwebhookconfiguration/cert-manager-webhook validatingwebhookconfiguration/cert-manager-webhook)
# The chart puts the leader-election Leases (and its Roles for them) in
# kube-system; the Leases are the controller's and the CA injector's own.
CM_LEASES=(cert-manager-controller cert-manager-cainjector-leader-election)
# Where install proves that cert-manager issues; deleted after.
PROBE_NS=cert-manager-probe
export HELM_CACHE_HOME=$CM_DIR/helm/cache HELM_CONFIG_HOME=$CM_DIR/helm/config HELM_DATA_HOME=$CM_DIR/helm/data

t0=$(now_ms)

# extract_deploy: the snapshot's deploy/ (the chart and the CRDs) in
# $CM_DIR/deploy, replaced when the snapshot changes.
extract_deploy() {
	local sum
	[ -s "$CM_TARBALL" ] || die "no cert-manager snapshot at $CM_TARBALL (set THIRDPARTY_DIR)"
	sum=$(sha256sum <"$CM_TARBALL" | cut -d' ' -f1)
	mkdir -p "$CM_DIR"
	if [ "$(cat "$CM_DIR/deploy.stamp" 2>/dev/null)" != "$sum" ] || [ ! -d "$CM_DIR/deploy" ]; then
		rm -rf "$CM_DIR/deploy" "$CM_DIR/.extract"
		mkdir -p "$CM_DIR/.extract"
		tar -xzf "$CM_TARBALL" -C "$CM_DIR/.extract" "$CM_SNAPSHOT/deploy"
		mv "$CM_DIR/.extract/$CM_SNAPSHOT/deploy" "$CM_DIR/deploy"
		rm -rf "$CM_DIR/.extract"
		echo "$sum" >"$CM_DIR/deploy.stamp"
	fi
}

build() {
	local b t
	[ -x "$THIRDPARTY_DIR/build.sh" ] || die "no $THIRDPARTY_DIR/build.sh (set THIRDPARTY_DIR)"
	log "building cert-manager's controller, CA injector and webhook from $(basename "$CM_TARBALL") (skipped when up to date)"
	for b in "${CM_BINARIES[@]}"; do
		t=$(now_ms)
		"$THIRDPARTY_DIR/build.sh" "$b" "$BIN"
		log "$b up to date ($(since "$t"))"
	done
	extract_deploy
	"$here/images.sh" cert-manager >/dev/null
}

# render: the chart with our values (the header says which), a Namespace
# before it (the chart makes none: helm install --create-namespace would),
# in $CM_DIR/install/rendered.yaml.
render() {
	local dir=$CM_DIR/install name id
	local -A ids=()
	mkdir -p "$dir"
	while read -r name id; do ids[$name]=$id; done < <("$here/images.sh" cert-manager)
	cat >"$dir/values.yaml" <<EOF
# Generated by e2e/cluster/certmanager.sh; do not edit.
crds:
  enabled: true
  keep: false
startupapicheck:
  enabled: false
image:
  repository: $("$here/images.sh" ref cert-manager-controller | cut -d: -f1)
  tag: e2e
  pullPolicy: Never
podAnnotations:
  e2e.inplace.dev/image-id: "${ids[cert-manager-controller]}"
cainjector:
  image:
    repository: $("$here/images.sh" ref cert-manager-cainjector | cut -d: -f1)
    tag: e2e
    pullPolicy: Never
  podAnnotations:
    e2e.inplace.dev/image-id: "${ids[cert-manager-cainjector]}"
webhook:
  image:
    repository: $("$here/images.sh" ref cert-manager-webhook | cut -d: -f1)
    tag: e2e
    pullPolicy: Never
  podAnnotations:
    e2e.inplace.dev/image-id: "${ids[cert-manager-webhook]}"
EOF
	{
		printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n' "$CM_NS"
		"$BIN/helm" template cert-manager "$CM_DIR/deploy/charts/cert-manager" --namespace "$CM_NS" -f "$dir/values.yaml"
	} >"$dir/rendered.yaml"
}

# write_probe: a self-signed Issuer and a Certificate from it, in their own
# namespace.
write_probe() {
	cat >"$CM_DIR/probe.yaml" <<EOF
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: probe-selfsigned
  namespace: $PROBE_NS
spec:
  selfSigned: {}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: probe
  namespace: $PROBE_NS
spec:
  secretName: probe-tls
  commonName: probe.$PROBE_NS.svc
  dnsNames: [probe.$PROBE_NS.svc]
  privateKey:
    algorithm: ECDSA
    size: 256
  issuerRef:
    group: cert-manager.io
    kind: Issuer
    name: probe-selfsigned
EOF
}

# webhook_answers: cert-manager's webhook validates an Issuer (a dry run in
# the probe namespace: the webhook skips cert-manager's own namespace). Its
# configurations fail closed, so the dry run succeeds only once the CA
# injector has put the webhook's CA into them and the webhook serves.
webhook_answers() {
	kubectl_ns -n "${1:-$PROBE_NS}" create --dry-run=server -f - >/dev/null <<EOF
apiVersion: cert-manager.io/v1
kind: Issuer
metadata:
  name: webhook-probe
spec:
  selfSigned: {}
EOF
}

# dump_logs: what to read when cert-manager does not do its job.
dump_logs() {
	local d
	kubectl_ns -n "$CM_NS" get pod -o wide >&2 || true
	for d in "${CM_DEPLOYMENTS[@]}"; do
		log "last lines of deployment/$d:"
		kubectl_ns -n "$CM_NS" logs "deployment/$d" --tail=20 >&2 || true
	done
}

# issues: the probe Certificate becomes Ready and its Secret holds the
# certificate cert-manager signed.
issues() {
	local t subject
	t=$(now_ms)
	kubectl_ns create namespace "$PROBE_NS" --dry-run=client -o yaml | kubectl_ns apply -f - >/dev/null
	write_probe
	if ! wait_for "cert-manager's webhook to answer (a dry-run Issuer in $PROBE_NS)" 120 webhook_answers; then
		webhook_answers || true
		dump_logs
		die "cert-manager's webhook does not answer"
	fi
	log "cert-manager's webhook answers ($(since "$t"))"
	kubectl_ns apply -f "$CM_DIR/probe.yaml" >/dev/null
	if ! kubectl_ns -n "$PROBE_NS" wait --for=condition=Ready certificate/probe --timeout=120s >/dev/null; then
		kubectl_ns -n "$PROBE_NS" get issuer,certificate,certificaterequest -o wide >&2 || true
		kubectl_ns -n "$PROBE_NS" get events --sort-by=.lastTimestamp >&2 || true
		dump_logs
		die "cert-manager did not issue the probe Certificate"
	fi
	subject=$(kubectl_ns -n "$PROBE_NS" get secret probe-tls -o jsonpath='{.data.tls\.crt}' | base64 -d | openssl x509 -noout -subject) ||
		die "the probe Certificate is Ready but its Secret holds no certificate"
	log "cert-manager issued the probe Certificate ($subject) $(since "$t") after the Deployments were Available"
	kubectl_ns delete namespace "$PROBE_NS" --wait=true --timeout=120s >/dev/null
}

install() {
	require_root
	lock_state
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || die "the cluster is not up (make cluster)"
	[ -x "$BIN/helm" ] || die "no $BIN/helm (make tools)"
	local d t
	build
	"$here/images.sh" import-cert-manager
	render
	log "build and import: $(since "$t0")"

	t=$(now_ms)
	# Server side: the CRDs are too large for kubectl's last-applied annotation.
	log "applying cert-manager's chart: the namespace $CM_NS, CRDs, RBAC, controller, CA injector, webhook"
	kubectl_ns apply --server-side --force-conflicts --field-manager=cert-manager-e2e -f "$CM_DIR/install/rendered.yaml" >/dev/null
	kubectl_ns wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/instance=cert-manager >/dev/null
	for d in "${CM_DEPLOYMENTS[@]}"; do
		if ! kubectl_ns -n "$CM_NS" rollout status "deployment/$d" --timeout=180s >/dev/null; then
			dump_logs
			die "the $d Deployment did not become Available"
		fi
	done
	log "cert-manager's Deployments Available ($(since "$t"))"
	issues
	log "cert-manager installed: its Deployments Available, its webhook answering, a Certificate issued ($(since "$t0"))"
}

uninstall() {
	require_root
	lock_state
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || die "the cluster is not up (make cluster)"
	local w l left
	# First what fails closed: without the webhook, its configurations
	# would refuse every create and update of cert-manager's kinds.
	for w in "${CM_WEBHOOKS[@]}"; do
		kubectl_ns delete "$w" --ignore-not-found >/dev/null
	done
	log "deleted cert-manager's webhook configurations"
	kubectl_ns delete namespace "$PROBE_NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
	# Then the CRDs, which deletes every Issuer, Certificate, Order, ...
	# while the controller still runs, for the finalizers of ACME's kinds.
	kubectl_ns get crd -o name | grep -E '\.cert-manager\.io$' |
		xargs -r nsenter --net="$NETNS_PATH" "$BIN/kubectl" --kubeconfig="$ADMIN_KUBECONFIG" delete --wait=true --timeout=180s >/dev/null
	log "deleted cert-manager's CRDs"
	if [ -s "$CM_DIR/install/rendered.yaml" ]; then
		kubectl_ns delete --ignore-not-found --wait=true --timeout=180s -f "$CM_DIR/install/rendered.yaml" >/dev/null
	else
		kubectl_ns delete namespace "$CM_NS" --ignore-not-found --wait=true --timeout=180s >/dev/null
	fi
	# The Leases are made by the controller and the CA injector, not by the
	# chart; they are gone with them.
	for l in "${CM_LEASES[@]}"; do
		kubectl_ns -n kube-system delete lease "$l" --ignore-not-found >/dev/null
	done
	left=$(leftovers)
	[ -z "$left" ] || die "left after the uninstall: $left"
	log "cert-manager uninstalled: no webhook configuration, CRD, namespace, role or lease of it left ($(since "$t0"))"
}

# leftovers lists what of cert-manager is still on the cluster.
leftovers() {
	{
		kubectl_ns get mutatingwebhookconfigurations,validatingwebhookconfigurations,clusterroles,clusterrolebindings -o name | grep cert-manager || true
		kubectl_ns get crd -o name | grep -E '\.cert-manager\.io$' || true
		kubectl_ns -n kube-system get roles,rolebindings,leases -o name | grep cert-manager || true
		kubectl_ns get namespace "$CM_NS" "$PROBE_NS" -o name 2>/dev/null || true
	} | paste -sd' '
}

installed() {
	[ "$(apiserver_get /readyz 2>/dev/null)" = ok ] || return 1
	kubectl_ns -n "$CM_NS" get deployment "${CM_DEPLOYMENTS[@]}" >/dev/null 2>&1 || return 1
	webhook_answers default >/dev/null 2>&1
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
