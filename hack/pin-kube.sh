#!/usr/bin/env bash
# Pins a Kubernetes release for hack/build-kube.sh: writes the scratch module
# hack/kube/<minor> (go.mod and go.sum) that builds k8s.io/kubernetes at
# VERSION with its staging modules (k8s.io/api, k8s.io/client-go, ...) at the
# matching v0 tags, as the release's own go.mod replaces them with its
# staging tree; its tool directives name the components the tests run. Run
# once per release; the result is committed.
#
#   hack/pin-kube.sh v1.36.3
#
# The default release (hack/kube/go.mod) is pinned the same way, by hand.
set -euo pipefail

version=${1:?usage: hack/pin-kube.sh vX.Y.Z}
[[ $version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || {
	echo "pin-kube.sh: $version is not a release (want vX.Y.Z)" >&2
	exit 2
}
minor=${BASH_REMATCH[1]} patch=${BASH_REMATCH[2]}
here=$(cd "$(dirname "$0")" && pwd)
dir=$here/kube/1.$minor
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

upstream=$(cd "$here/kube" && go mod download -json "k8s.io/kubernetes@$version" |
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[ -n "$upstream" ] || {
	echo "pin-kube.sh: the module proxy has no go.mod for k8s.io/kubernetes@$version" >&2
	exit 1
}
# The release's own Go language version: its GODEBUG defaults are the ones
# it was built and tested with, whatever Go builds it here.
golang=$(awk '$1 == "go" {print $2; exit}' "$upstream")
staging=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$upstream" | sort -u)

rm -rf "$dir"
mkdir -p "$dir"
{
	echo "module github.com/inplace-dev/inplace/hack/kube/1.$minor"
	echo
	echo "go 1.26.0"
	echo
	echo "godebug default=go${golang%.*}"
	echo
	echo "require k8s.io/kubernetes $version"
	echo
	echo "tool ("
	for c in kube-apiserver kube-controller-manager kube-proxy kube-scheduler kubectl kubelet; do
		echo "	k8s.io/kubernetes/cmd/$c"
	done
	echo ")"
	echo
	echo "replace ("
	for m in $staging; do echo "	$m => $m v0.$minor.$patch"; done
	echo ")"
} >"$dir/go.mod"
(cd "$dir" && go mod tidy)
echo "pinned k8s.io/kubernetes $version in ${dir#"$(dirname "$here")/"}" >&2
