#!/usr/bin/env bash
# The install and the uninstall on the end-to-end cluster, as a platform
# team runs them: helm install, an in-place rollout, helm upgrade, a rollout
# under way when helm uninstall runs, and what is left afterwards; then the
# kustomize install and its uninstall (the release-holds component's Job,
# then kubectl delete) with a rollout under way, and what is left. Each step checks what a
# user would look at: helm's --wait, kubectl rollout status, the pods' UIDs,
# restart counts and images, the annotations and conditions left behind.
# Last, cert-manager mode with the real cert-manager (certmanager.sh, from
# its own chart): the kustomize install with the component cert-manager,
# its Certificate Ready, the CA cert-manager issued in both caBundles, an
# in-place rollout; a renewal forced as cmctl renew forces it, served by the
# manager without a restart, another rollout; then both uninstalled, leaving
# nothing of cert-manager.
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
# cert-manager mode: the overlay, the webhook's Certificate (and its
# Secret, of the same name) and the CA's Secret.
CM_MANIFESTS=$ROOT/e2e/manifests-cert-manager
CERT=inplace-webhook-cert
CA_SECRET=inplace-webhook-ca
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

# remove_kustomize_install [WHAT]: what deploy.sh applied last (by default
# the install of make deploy-e2e), namespace kept.
remove_kustomize_install() {
	local rendered=$STATE/manifests/rendered.yaml
	[ -s "$rendered" ] || return 0
	if kubectl_ns get deployment -n "$NS" inplace-manager -o jsonpath='{.metadata.labels.app\.kubernetes\.io/managed-by}' 2>/dev/null | grep -q Helm; then
		return 0
	fi
	log "removing ${1:-the kustomize install (make deploy-e2e puts it back)}"
	delete_but_namespace "$rendered"
	# The Secrets the manager or cert-manager wrote: no install owns them.
	kubectl_ns -n "$NS" delete secret "$CERT" "$CA_SECRET" --ignore-not-found >/dev/null
}

cleanup() {
	local status=$?
	trap - EXIT
	helm_ns uninstall inplace -n "$NS" --wait --timeout 3m >/dev/null 2>&1 || true
	kubectl_ns delete namespace "$APP_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	kubectl_ns -n "$NS" delete job inplace-release-holds --ignore-not-found >/dev/null 2>&1 || true
	# A cert-manager-mode install left by a failure: the builtin one cannot
	# go over it (its Certificate would keep rewriting the Secret), and
	# cert-manager must not stay for the next suites.
	if kubectl_ns -n "$NS" get deployment inplace-manager -o jsonpath='{.spec.template.spec.containers[0].args}' 2>/dev/null | grep -q -- '--cert-mode=cert-manager'; then
		remove_kustomize_install "the cert-manager-mode install" || true
	fi
	if kubectl_ns get namespace cert-manager >/dev/null 2>&1 || kubectl_ns get crd certificates.cert-manager.io >/dev/null 2>&1; then
		"$here/certmanager.sh" uninstall || status=1
	fi
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
# the uninstall component, as docs/uninstall.md says.
resources: [../manifests]
components: [$(realpath --relative-to="$dir" "$ROOT/manifests/components/release-holds")]
EOF
	"$BIN/kustomize" build "$dir" >"$dir/rendered.yaml"
	kubectl_ns apply --server-side --force-conflicts --field-manager=inplace-e2e -f "$dir/rendered.yaml" >/dev/null
	kubectl_ns -n "$NS" wait --for=condition=complete job/inplace-release-holds --timeout=5m >/dev/null || {
		kubectl_ns -n "$NS" logs job/inplace-release-holds >&2 || true
		fail "the release-holds Job did not complete"
	}
	kubectl_ns -n "$NS" logs job/inplace-release-holds
	delete_but_namespace "$dir/rendered.yaml"
	released "$v2" "the kustomize uninstall"
	# The built-in certificate's Secrets outlive the install (no install
	# owns them); the next step switches to cert-manager mode, so they go,
	# as README's "To switch modes" says. Left, a manager pod could mount
	# the built-in leaf before cert-manager rewrites the Secret, serve it
	# (same CA name, another key) until the kubelet updates the volume, and
	# the API server fail open on it: pods made then have no gate.
	kubectl_ns -n "$NS" delete secret "$CERT" "$CA_SECRET" --ignore-not-found >/dev/null

	cert_manager_mode "$v2" "$v3" "$v1"
}

# cert_condition TYPE: the status of the condition TYPE of the webhook's
# Certificate ("" when it has none).
cert_condition() {
	kubectl_ns -n "$NS" get certificate "$CERT" -o jsonpath="{.status.conditions[?(@.type==\"$1\")].status}"
}

# certificate_issued: the Certificate is Ready and no issuance is under way.
certificate_issued() {
	[ "$(cert_condition Ready)" = True ] && [ "$(cert_condition Issuing)" != True ]
}

# certificate_ready_event: the manager has told, in an event on the webhook's
# Certificate, that it reports ready because the Certificate is Ready.
certificate_ready_event() {
	kubectl_ns -n "$NS" get events -o name \
		--field-selector "involvedObject.kind=Certificate,involvedObject.name=$CERT,reason=CertificateReady" | grep -q .
}

# secret_serial: the serial of the certificate in the Secret $CERT.
secret_serial() {
	kubectl_ns -n "$NS" get secret "$CERT" -o jsonpath='{.data.tls\.crt}' | base64 -d | openssl x509 -noout -serial | cut -d= -f2
}

# serial_changed OLD: the Secret holds a certificate, and not OLD.
serial_changed() {
	local s
	s=$(secret_serial) && [ -n "$s" ] && [ "$s" != "$1" ]
}

# manager_pods: the manager's pods as "name uid restarts ready podIP"
# lines; not those being deleted (a pod of an earlier install can linger).
manager_pods() {
	kubectl_ns -n "$NS" get pod -l app.kubernetes.io/name=inplace-manager -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready} {.status.podIP} {.metadata.deletionTimestamp}{"\n"}{end}' |
		awk 'NF == 5' | sort
}

# served_serial IP: the serial of the certificate the webhook serves at a
# replica's pod IP, asked for by the Service's name as the API server asks.
served_serial() {
	in_ns openssl s_client -connect "$1:9443" -servername "inplace-webhook.$NS.svc" </dev/null 2>/dev/null |
		openssl x509 -noout -serial | cut -d= -f2
}

# all_serve SERIAL: every replica of the manager serves the certificate SERIAL.
all_serve() {
	local ip
	while read -r _ _ _ _ ip; do
		[ "$(served_serial "$ip")" = "$1" ] || return 1
	done < <(manager_pods)
}

# ca_bundles_match: every webhook of both configurations trusts the CA
# cert-manager issued: its caBundle is the ca.crt of the Secret $CERT.
ca_bundles_match() {
	local ca name bundle n=0
	ca=$(kubectl_ns -n "$NS" get secret "$CERT" -o jsonpath='{.data.ca\.crt}')
	[ -n "$ca" ] || return 1
	while read -r name bundle; do
		[ "$bundle" = "$ca" ] || return 1
		n=$((n + 1))
	done < <(kubectl_ns get mutatingwebhookconfiguration/inplace-mutating validatingwebhookconfiguration/inplace-validating \
		-o jsonpath='{range .items[*]}{range .webhooks[*]}{.name} {.clientConfig.caBundle}{"\n"}{end}{end}')
	[ "$n" -gt 0 ]
}

# renew forces a renewal of the webhook's Certificate as `cmctl renew`
# does. cmctl (its own repository, not in the snapshot) sets the condition
# Issuing True, reason ManuallyTriggered, with cert-manager's
# SetCertificateCondition (pkg/api/util/conditions.go) and updates the
# status subresource; the trigger controller then leaves the Certificate
# alone (pkg/controller/certificates/trigger) while the others reissue it.
# Here: a JSON patch of the status subresource, tested against the
# resourceVersion it was read at, as cmctl's UpdateStatus is.
renew() {
	local rv gen patch
	read -r rv gen < <(kubectl_ns -n "$NS" get certificate "$CERT" -o jsonpath='{.metadata.resourceVersion} {.metadata.generation}{"\n"}')
	[ "$(cert_condition Issuing)" != True ] || fail "the Certificate $CERT is already being issued"
	patch=$(printf '[{"op": "test", "path": "/metadata/resourceVersion", "value": "%s"}, {"op": "add", "path": "/status/conditions/-", "value": %s}]' "$rv" \
		"{\"type\": \"Issuing\", \"status\": \"True\", \"reason\": \"ManuallyTriggered\", \"message\": \"Certificate re-issuance manually triggered\", \"lastTransitionTime\": \"$(date -u +%FT%TZ)\", \"observedGeneration\": $gen}")
	kubectl_ns -n "$NS" patch certificate "$CERT" --subresource=status --type=json -p "$patch" >/dev/null
}

# fail_cert MESSAGE: fail, with what cert-manager said.
fail_cert() {
	kubectl_ns -n "$NS" get certificate,certificaterequest,issuer -o wide >&2 || true
	kubectl_ns -n "$NS" get events --field-selector involvedObject.kind=Certificate --sort-by=.lastTimestamp 2>/dev/null | tail -10 >&2 || true
	kubectl_ns -n cert-manager logs deployment/cert-manager --tail=20 >&2 || true
	kubectl_ns -n cert-manager logs deployment/cert-manager-cainjector --tail=10 >&2 || true
	fail "$*"
}

# cert_manager_mode FROM TO THEN: cert-manager installed, inplace installed
# with the component cert-manager and checked; the web StatefulSet (on
# FROM, its pods not gated) rolled in place to TO; a renewal served without
# a restart; a rollout to THEN; the cert-manager-mode install and
# cert-manager uninstalled.
cert_manager_mode() {
	local from=$1 to=$2 then=$3 t before after managers old new replicas name restarts ready ip left
	step "cert-manager mode: cert-manager from its own chart, then inplace with the component cert-manager (kustomize)"
	"$here/certmanager.sh" install || fail "cert-manager did not install"
	t=$(now_ms)
	E2E_MANIFESTS=$CM_MANIFESTS "$here/deploy.sh" || fail_cert "inplace did not become Available in cert-manager mode"
	log "inplace installed in cert-manager mode in $(since "$t")"
	certificate_issued || fail_cert "the Certificate $CERT is not Ready"
	kubectl_ns -n "$NS" wait --for=condition=Available deployment/inplace-manager --timeout=60s >/dev/null ||
		fail "the manager Deployment is not Available"
	replicas=$(kubectl_ns -n "$NS" get deployment inplace-manager -o jsonpath='{.spec.replicas}')
	managers=$(manager_pods)
	[ "$(grep -c ' true ' <<<"$managers")" = "$replicas" ] && [ "$(wc -l <<<"$managers")" = "$replicas" ] ||
		fail "want $replicas manager pods, all Ready: $managers"
	# The manager tells on the Certificate that it reports ready because it
	# is Ready. Its event recorder writes asynchronously, after readiness:
	# waited for, as every other check here.
	wait_for "the manager's CertificateReady event on the Certificate $CERT" 30 certificate_ready_event ||
		fail_cert "no CertificateReady event from the manager on the Certificate $CERT"
	wait_for "both configurations' caBundles to be the CA cert-manager issued" 60 ca_bundles_match ||
		fail_cert "the caBundles are not the CA in the Secret $CERT (the CA injector?)"
	log "Certificate $CERT Ready, $replicas manager pods Ready, both webhook configurations trusting the CA cert-manager issued ($(kubectl_ns -n "$NS" get secret "$CERT" -o jsonpath='{.data.ca\.crt}' | base64 -d | openssl x509 -noout -subject))"
	t=$(now_ms)
	wait_for "the API server to reach the webhook" 60 webhook_reachable || fail "the API server never reached the cert-manager-mode webhook"
	log "the API server reaches the webhook ($(since "$t"))"
	kubectl_ns -n "$NS" get certificate,pod -o wide

	step "cert-manager mode: a StatefulSet rolled out in place"
	# Pods made while nothing was installed have no gate: recreate them gated.
	kubectl_ns -n "$APP_NS" delete pod -l app=web --wait=true >/dev/null
	kubectl_ns -n "$APP_NS" rollout status statefulset/web --timeout=180s >/dev/null || fail "web never became ready again"
	before=$(pods)
	grep -q " $from " <<<"$before" || fail "web is not on $from: $before"
	rollout "$to"
	after=$(pods)
	in_place "$before" "$after" "$to" 1
	log "3 pods updated in place to ${to##*:} (same UIDs, 1 restart each)"

	step "cert-manager mode: a renewal forced as cmctl renew does, served by the manager without a restart"
	old=$(secret_serial)
	managers=$(manager_pods)
	t=$(now_ms)
	renew
	wait_for "cert-manager to write a new certificate into the Secret $CERT" 60 serial_changed "$old" ||
		fail_cert "cert-manager did not renew the certificate"
	new=$(secret_serial)
	log "cert-manager renewed the certificate $(since "$t") after the renewal was asked: serial $old -> $new"
	wait_for "the Certificate to be Ready and done issuing" 60 certificate_issued || fail_cert "the Certificate is not Ready after the renewal"
	# The kubelet updates the Secret volume at its next sync of each pod
	# (about a minute), the manager's certificate watcher follows.
	if ! wait_for "every manager replica to serve the renewed certificate" 180 all_serve "$new"; then
		while read -r name _ _ _ ip; do log "$name ($ip) serves $(served_serial "$ip")"; done < <(manager_pods)
		fail_cert "the manager does not serve the renewed certificate $new"
	fi
	log "every manager replica serves the renewed certificate $(since "$t") after the renewal was asked"
	after=$(manager_pods)
	[ "$(cut -d' ' -f1-3 <<<"$managers")" = "$(cut -d' ' -f1-3 <<<"$after")" ] ||
		fail "the manager's pods restarted or were replaced during the renewal:"$'\n'"before: $managers"$'\n'"after: $after"
	while read -r name _ restarts ready _; do
		[ "$restarts" = 0 ] && [ "$ready" = true ] || fail "manager pod $name: $restarts restarts, ready $ready; want 0 restarts, ready"
	done <<<"$after"
	log "the manager's pods kept their UIDs, none restarted"
	ca_bundles_match || fail_cert "the caBundles are not the CA in the Secret $CERT after the renewal"
	wait_for "the API server to reach the webhook" 60 webhook_reachable || fail "the API server does not reach the webhook after the renewal"
	before=$(pods)
	rollout "$then"
	after=$(pods)
	in_place "$before" "$after" "$then" 2
	log "3 pods updated in place to ${then##*:} after the renewal"

	step "cert-manager mode uninstalled (kubectl delete, its Secrets), then cert-manager: nothing of either left"
	remove_kustomize_install "the cert-manager-mode install (kubectl delete -f, then its Secrets)"
	left=$(kubectl_ns get mutatingwebhookconfiguration,validatingwebhookconfiguration -o name | grep inplace || true)
	[ -z "$left" ] || fail "left after the cert-manager-mode uninstall: $left"
	"$here/certmanager.sh" uninstall || fail "cert-manager did not uninstall cleanly"
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
