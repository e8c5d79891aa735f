#!/usr/bin/env bash
# Builds the Kubernetes and etcd binaries the tests run, from the Go module
# proxy, into $BIN_DIR (default .cache/bin). A binary already built at the
# pinned version is kept: a warm run does nothing.
#
#   hack/build-kube.sh [name ...]   names: etcd etcdctl kube-apiserver
#                                   kube-controller-manager kube-scheduler
#                                   kubelet kube-proxy kubectl
#   hack/build-kube.sh --dir        prints where the Kubernetes binaries go
#   hack/build-kube.sh --version    prints the Kubernetes release they are
#
# KUBE_VERSION picks another release than the default (hack/kube/go.mod):
# a minor, 1.36, whose scratch module hack/kube/1.36 pins its patch release
# (hack/pin-kube.sh writes one). Its Kubernetes binaries go to
# $BIN_DIR/kube-1.36; etcd is the same for every release.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BIN_DIR=${BIN_DIR:-$root/.cache/bin}
ETCD_VERSION=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$here/etcd/go.mod")

# pinned DIR: the k8s.io/kubernetes release the module DIR requires.
pinned() { awk '{ n = $1 == "require" ? 2 : 1 } $n == "k8s.io/kubernetes" { print $(n + 1); exit }' "$1/go.mod"; }
module=$here/kube KUBE_BIN_DIR=$BIN_DIR
KUBE_VERSION=${KUBE_VERSION:-} KUBE_VERSION=${KUBE_VERSION#v}
if [ -n "$KUBE_VERSION" ] && [[ "$(pinned "$module")." != "v$KUBE_VERSION."* ]]; then
	minor=$(echo "$KUBE_VERSION" | cut -d. -f1,2)
	if [ ! -f "$here/kube/$minor/go.mod" ]; then
		echo "build-kube.sh: no Kubernetes $minor pinned; pinned: $(pinned "$module") $(cd "$here/kube" && ls -d 1.* 2>/dev/null | tr '\n' ' ')(hack/pin-kube.sh pins another)" >&2
		exit 2
	fi
	module=$here/kube/$minor KUBE_BIN_DIR=$BIN_DIR/kube-$minor
fi
if [[ $KUBE_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] && [ "v$KUBE_VERSION" != "$(pinned "$module")" ]; then
	echo "build-kube.sh: Kubernetes $(pinned "$module") is pinned, not v$KUBE_VERSION: KUBE_VERSION=$(echo "$KUBE_VERSION" | cut -d. -f1,2) builds it" >&2
	exit 2
fi
KUBE_VERSION=$(pinned "$module")
case ${1:-} in
--dir) echo "$KUBE_BIN_DIR" && exit 0 ;;
--version) echo "$KUBE_VERSION" && exit 0 ;;
esac

all=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")

mkdir -p "$BIN_DIR" "$KUBE_BIN_DIR"
export CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local

# stamp DIR NAME: the file that records the version DIR/NAME was built at.
stamp() { echo "$1/.$2.version"; }
# fresh DIR NAME VERSION: DIR/NAME is built at VERSION.
fresh() { [ -x "$1/$2" ] && [ "$(cat "$(stamp "$1" "$2")" 2>/dev/null)" = "$3" ]; }

kube_ldflags() {
	local v=${KUBE_VERSION#v} pkg=k8s.io/component-base/version
	local major=${v%%.*} rest=${v#*.}
	local minor=${rest%%.*}
	echo "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
}

for name in "${names[@]}"; do
	case $name in
	etcd | etcdctl)
		fresh "$BIN_DIR" "$name" "$ETCD_VERSION" && continue
		pkg=go.etcd.io/etcd/server/v3
		[ "$name" = etcdctl ] && pkg=go.etcd.io/etcd/etcdctl/v3
		echo "building $name $ETCD_VERSION" >&2
		(cd "$here/etcd" && go build -ldflags "-s -w" -o "$BIN_DIR/$name" "$pkg")
		echo "$ETCD_VERSION" > "$(stamp "$BIN_DIR" "$name")"
		;;
	kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy | kubectl)
		fresh "$KUBE_BIN_DIR" "$name" "$KUBE_VERSION" && continue
		echo "building $name $KUBE_VERSION" >&2
		(cd "$module" && go build -ldflags "$(kube_ldflags)" -o "$KUBE_BIN_DIR/$name" "k8s.io/kubernetes/cmd/$name")
		echo "$KUBE_VERSION" > "$(stamp "$KUBE_BIN_DIR" "$name")"
		;;
	*)
		echo "build-kube.sh: unknown binary $name (want one of: ${all[*]} etcdctl)" >&2
		exit 2
		;;
	esac
done
