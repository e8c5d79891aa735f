#!/usr/bin/env bash
# Builds the Kubernetes and etcd binaries the tests run, from the Go module
# proxy, into $BIN_DIR (default .cache/bin). A binary already built at the
# pinned version is kept: a warm run does nothing.
#
#   hack/build-kube.sh [name ...]   names: etcd etcdctl kube-apiserver
#                                   kube-controller-manager kube-scheduler
#                                   kubelet kube-proxy kubectl
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BIN_DIR=${BIN_DIR:-$root/.cache/bin}
KUBE_VERSION=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kube/go.mod")
ETCD_VERSION=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$here/etcd/go.mod")

all=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")

mkdir -p "$BIN_DIR"
export CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local

stamp() { echo "$BIN_DIR/.$1.version"; }
fresh() { [ -x "$BIN_DIR/$1" ] && [ "$(cat "$(stamp "$1")" 2>/dev/null)" = "$2" ]; }

kube_ldflags() {
	local v=${KUBE_VERSION#v} pkg=k8s.io/component-base/version
	local major=${v%%.*} rest=${v#*.}
	local minor=${rest%%.*}
	echo "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
}

for name in "${names[@]}"; do
	case $name in
	etcd | etcdctl)
		fresh "$name" "$ETCD_VERSION" && continue
		pkg=go.etcd.io/etcd/server/v3
		[ "$name" = etcdctl ] && pkg=go.etcd.io/etcd/etcdctl/v3
		echo "building $name $ETCD_VERSION" >&2
		(cd "$here/etcd" && go build -ldflags "-s -w" -o "$BIN_DIR/$name" "$pkg")
		echo "$ETCD_VERSION" > "$(stamp "$name")"
		;;
	kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy | kubectl)
		fresh "$name" "$KUBE_VERSION" && continue
		echo "building $name $KUBE_VERSION" >&2
		(cd "$here/kube" && go build -ldflags "$(kube_ldflags)" -o "$BIN_DIR/$name" "k8s.io/kubernetes/cmd/$name")
		echo "$KUBE_VERSION" > "$(stamp "$name")"
		;;
	*)
		echo "build-kube.sh: unknown binary $name (want one of: ${all[*]} etcdctl)" >&2
		exit 2
		;;
	esac
done
