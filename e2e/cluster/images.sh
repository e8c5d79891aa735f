#!/usr/bin/env bash
# The images of the end-to-end cluster, assembled from static Go binaries by
# hack/tools/cmd/mkimage (no registry, no Docker) and imported into the
# cluster's containerd.
#
#   images.sh build           build the pause and test application images (skipped when their inputs are unchanged)
#   images.sh import          import every built image into every node of the running cluster (skipped where
#                             already imported); so do the other import commands
#   images.sh manager         build .cache/bin/inplace-manager and its image (tagged :e2e and with the
#                             version of VERSION); prints the image's config digest
#   images.sh kruise          the image of .cache/bin/kruise-manager (e2e/cluster/kruise.sh builds the binary),
#                             assembled when the binary changed; prints the image's config digest
#   images.sh import-kruise   import it into the running cluster (skipped when already imported)
#   images.sh cert-manager    the images of .cache/bin/cert-manager-{controller,cainjector,webhook}
#                             (e2e/cluster/certmanager.sh builds them), each assembled when its binary
#                             changed; prints "NAME CONFIG-DIGEST" for each
#   images.sh import-cert-manager   import them into the running cluster (skipped when already imported)
#   images.sh ref NAME        the reference of an image: pause, manager, testapp-v1, ...
#   images.sh test-refs       the test application's references, one a line: versions oldest first, then the
#                             retag of v2 (same digest as v2), then the crash-looping one, then the never-ready one
#   images.sh stress-refs     twenty references of v1 and v2 under other tags, alternating, for make stress-flips:
#                             the kubelet's restart back-off is kept per image reference (see e2e/flipstress)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

PAUSE_REF=example.local/inplace-pause:e2e
TESTAPP_REPO=example.local/inplace-testapp
MANAGER_REF=ghcr.io/inplace-dev/inplace-manager:e2e
# The reference manifests/ and the chart name: the released version.
MANAGER_RELEASE_REF=ghcr.io/inplace-dev/inplace-manager:$(cat "$ROOT/VERSION")
# OpenKruise's manager, built from the source snapshot (../shared/thirdparty).
KRUISE_REF=example.local/kruise-manager:e2e
# cert-manager's controller, CA injector and webhook, built from the source
# snapshot (../shared/thirdparty): example.local/cert-manager-controller:e2e, ...
CERT_MANAGER_IMAGES=(cert-manager-controller cert-manager-cainjector cert-manager-webhook)
TESTAPP_VERSIONS=(v1 v2 v3)

# The image tarballs: NAME -> the references it carries.
STRESS_TAGS=$(seq 0 9)
declare -A TARBALL_REFS=(
	[pause]=$PAUSE_REF
	[testapp-v1]="$TESTAPP_REPO:v1 $(for i in $STRESS_TAGS; do printf '%s:v1-s%s ' "$TESTAPP_REPO" "$i"; done)"
	[testapp-v2]="$TESTAPP_REPO:v2 $TESTAPP_REPO:v2-retag $(for i in $STRESS_TAGS; do printf '%s:v2-s%s ' "$TESTAPP_REPO" "$i"; done)"
	[testapp-v3]=$TESTAPP_REPO:v3
	[testapp-bad]=$TESTAPP_REPO:bad
	[testapp-unready]=$TESTAPP_REPO:unready
	[manager]="$MANAGER_REF $MANAGER_RELEASE_REF"
	[kruise-manager]=$KRUISE_REF
	[cert-manager-controller]=example.local/cert-manager-controller:e2e
	[cert-manager-cainjector]=example.local/cert-manager-cainjector:e2e
	[cert-manager-webhook]=example.local/cert-manager-webhook:e2e
)
TEST_TARBALLS=(pause testapp-v1 testapp-v2 testapp-v3 testapp-bad testapp-unready)

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath

ref() {
	case $1 in
	pause) echo "$PAUSE_REF" ;;
	manager) echo "$MANAGER_REF" ;;
	kruise-manager) echo "$KRUISE_REF" ;;
	cert-manager-controller | cert-manager-cainjector | cert-manager-webhook) echo "${TARBALL_REFS[$1]}" ;;
	testapp-v2-retag) echo "$TESTAPP_REPO:v2-retag" ;;
	testapp-*) echo "$TESTAPP_REPO:${1#testapp-}" ;;
	*) die "unknown image $1" ;;
	esac
}

test_refs() {
	local v
	for v in "${TESTAPP_VERSIONS[@]}"; do echo "$TESTAPP_REPO:$v"; done
	echo "$TESTAPP_REPO:v2-retag"
	echo "$TESTAPP_REPO:bad"
	echo "$TESTAPP_REPO:unready"
}

stress_refs() {
	local i
	for i in $STRESS_TAGS; do echo "$TESTAPP_REPO:v1-s$i"; echo "$TESTAPP_REPO:v2-s$i"; done
}

# inputs_hash: everything the test images are made from.
inputs_hash() {
	{
		go version
		grep -E '^(go|toolchain) ' "$ROOT/go.mod" || true
		cat "$here/images.sh"
		find "$ROOT/e2e/testapp" "$ROOT/e2e/pause" "$ROOT/hack/tools/cmd/mkimage" -type f -name '*.go' | sort | xargs cat
		cat "$ROOT/hack/tools/go.mod" "$ROOT/hack/tools/go.sum"
	} | sha256sum | cut -d' ' -f1
}

build_mkimage() {
	(cd "$ROOT/hack/tools" && go build -o "$BIN/mkimage" ./cmd/mkimage)
}

# mkimage NAME BINARY USER ARGS...: writes $IMAGES/NAME.tar, an image of
# BINARY at /<its base name> as the entrypoint, run as USER, and records each
# reference and the image ID in $IMAGES/NAME.id.
mkimage() {
	local name=$1 binary=$2 user=$3 dest tags=() r
	shift 3
	dest=/$(basename "$binary")
	for r in ${TARBALL_REFS[$name]}; do tags+=(-tag "$r"); done
	"$BIN/mkimage" -o "$IMAGES/$name.tar" "${tags[@]}" -file "$binary:$dest" -entrypoint "$dest" -user "$user" "$@" >"$IMAGES/$name.id"
}

build() {
	local want v
	mkdir -p "$IMAGES/bin" "$BIN"
	want=$(inputs_hash)
	if [ "$(cat "$IMAGES/.inputs" 2>/dev/null)" = "$want" ] && all_tarballs_present; then
		return 0
	fi
	log "building the test images"
	build_mkimage
	(cd "$ROOT" && go build -ldflags "-s -w" -o "$IMAGES/bin/pause" ./e2e/pause)
	mkimage pause "$IMAGES/bin/pause" 65535:65535
	for v in "${TESTAPP_VERSIONS[@]}"; do
		(cd "$ROOT" && go build -ldflags "-s -w -X main.version=$v" -o "$IMAGES/bin/testapp-$v/testapp" ./e2e/testapp)
		mkimage "testapp-$v" "$IMAGES/bin/testapp-$v/testapp" 65532:65532 -port 8080
	done
	(cd "$ROOT" && go build -ldflags "-s -w -X main.version=bad -X main.crash=true" -o "$IMAGES/bin/testapp-bad/testapp" ./e2e/testapp)
	mkimage testapp-bad "$IMAGES/bin/testapp-bad/testapp" 65532:65532 -port 8080
	(cd "$ROOT" && go build -ldflags "-s -w -X main.version=unready -X main.unready=true" -o "$IMAGES/bin/testapp-unready/testapp" ./e2e/testapp)
	mkimage testapp-unready "$IMAGES/bin/testapp-unready/testapp" 65532:65532 -port 8080
	echo "$want" >"$IMAGES/.inputs"
}

all_tarballs_present() {
	local t
	for t in "${TEST_TARBALLS[@]}"; do [ -s "$IMAGES/$t.tar" ] || return 1; done
}

# import_tarballs NAME...: imports, into the containerd of every node that
# runs one, the tarballs whose content it does not have yet; the nodes side
# by side (an import is mostly unpacking: the manager's took 3.5 s a node).
# The record of what was imported lives in each containerd's own root, so it
# goes away with the image store.
import_tarballs() {
	local n jobs=() failed=0 job
	for n in $(known_nodes); do
		node_vars "$n"
		if ! daemon_pid "${ND_PREFIX}containerd" >/dev/null || [ ! -S "$ND_SOCK" ]; then continue; fi
		import_into "$ND_SOCK" "$ND_DIR/containerd/root/inplace-imported" "$ND_NAME" "$@" &
		jobs+=($!)
	done
	[ ${#jobs[@]} -gt 0 ] || die "the cluster's containerd is not running (make cluster)"
	for job in "${jobs[@]}"; do wait "$job" || failed=1; done
	[ "$failed" = 0 ] || die "importing images failed"
}

# import_into SOCKET RECORD NODE NAME...: import_tarballs for one containerd.
import_into() {
	local sock=$1 record=$2 node=$3 t sum present r missing
	shift 3
	mkdir -p "$record"
	present=$(ctr --address "$sock" --namespace k8s.io images ls -q)
	for t in "$@"; do
		[ -s "$IMAGES/$t.tar" ] || die "image $t is not built ($IMAGES/$t.tar)"
		sum=$(sha256sum <"$IMAGES/$t.tar" | cut -d' ' -f1)
		missing=
		for r in ${TARBALL_REFS[$t]}; do grep -qxF "$r" <<<"$present" || missing=1; done
		if [ -z "$missing" ] && [ "$(cat "$record/$t" 2>/dev/null)" = "$sum" ]; then
			continue
		fi
		ctr --address "$sock" --namespace k8s.io images import "$IMAGES/$t.tar" >/dev/null
		echo "$sum" >"$record/$t"
		log "imported ${TARBALL_REFS[$t]} into $node"
	done
}

import() {
	import_tarballs "${TEST_TARBALLS[@]}"
}

manager() {
	mkdir -p "$IMAGES/bin/manager" "$BIN"
	[ -x "$BIN/mkimage" ] || build_mkimage
	# MANAGER_SRC and MANAGER_PKG build another static binary into the image,
	# to try the install path without the real manager.
	(cd "${MANAGER_SRC:-$ROOT}" && go build -ldflags "-X github.com/inplace-dev/inplace/cmd/inplace-manager/app.Version=$(cat "$ROOT/VERSION")" \
		-o "$BIN/inplace-manager" "${MANAGER_PKG:-./cmd/inplace-manager}")
	cp "$BIN/inplace-manager" "$IMAGES/bin/manager/inplace-manager"
	mkimage manager "$IMAGES/bin/manager/inplace-manager" 65532:65532
	# One image under both references: one ID.
	cut -d" " -f2 "$IMAGES/manager.id" | head -n1
}

# binary_image NAME BINARY ENTRYPOINT USER: the image NAME of a third-party
# binary built outside this repository, BINARY as /ENTRYPOINT run as USER,
# reassembled only when the binary changed.
binary_image() {
	local name=$1 bin=$2 entrypoint=$3 user=$4 sum
	[ -x "$BIN/mkimage" ] || build_mkimage
	sum=$(sha256sum <"$bin" | cut -d' ' -f1)
	if [ "$(cat "$IMAGES/$name.inputs" 2>/dev/null)" != "$sum" ] || [ ! -s "$IMAGES/$name.tar" ]; then
		mkdir -p "$IMAGES/bin/$name"
		cp "$bin" "$IMAGES/bin/$name/$entrypoint"
		mkimage "$name" "$IMAGES/bin/$name/$entrypoint" "$user"
		echo "$sum" >"$IMAGES/$name.inputs"
	fi
}

# kruise: the image of kruise-manager, as Kruise's own manifests run it
# (/manager, user 65534); prints its config digest.
kruise() {
	local bin=$BIN/kruise-manager
	[ -x "$bin" ] || die "no $bin (e2e/cluster/kruise.sh build)"
	binary_image kruise-manager "$bin" manager 65534:65534
	cut -d" " -f2 "$IMAGES/kruise-manager.id"
}

# cert_manager: the images of cert-manager's controller, CA injector and
# webhook, each its binary as the entrypoint (cert-manager's chart gives
# only args), user 65532 (the chart asks runAsNonRoot and names no user);
# prints "NAME CONFIG-DIGEST" for each.
cert_manager() {
	local name
	for name in "${CERT_MANAGER_IMAGES[@]}"; do
		[ -x "$BIN/$name" ] || die "no $BIN/$name (e2e/cluster/certmanager.sh build)"
		binary_image "$name" "$BIN/$name" "$name" 65532:65532
		echo "$name $(cut -d" " -f2 "$IMAGES/$name.id")"
	done
}

case ${1:-} in
build) build ;;
import) import ;;
import-manager) import_tarballs manager ;;
manager) manager ;;
kruise) kruise ;;
import-kruise) import_tarballs kruise-manager ;;
cert-manager) cert_manager ;;
import-cert-manager) import_tarballs "${CERT_MANAGER_IMAGES[@]}" ;;
ref) ref "${2:?image name}" ;;
test-refs) test_refs ;;
stress-refs) stress_refs ;;
*)
	sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
	;;
esac
