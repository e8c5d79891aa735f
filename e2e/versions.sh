#!/usr/bin/env bash
# Runs the whole end-to-end suite once per Kubernetes release (make
# e2e-versions): for each, the cluster is brought up at that release from an
# empty etcd (e2e/cluster/up.sh), the manager installed and the tests run
# (e2e/run.sh), and the cluster torn down. Prints a line per release, then
# a summary; each release's output is kept in .cache/e2e-versions/<minor>.log.
#
#   e2e/versions.sh 1.30 1.31 1.32 ...
#   NODES=1 e2e/versions.sh 1.30    (three nodes unless NODES says otherwise,
#                                   as CI runs the suite)
#
# The exit status is 0 when every release passed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
out=$root/.cache/e2e-versions
mkdir -p "$out"
export NODES=${NODES:-3}

[ $# -gt 0 ] || {
	echo "usage: $0 MINOR... (e.g. 1.30 1.37)" >&2
	exit 2
}

results=() failed=0
for minor in "$@"; do
	release=$(KUBE_VERSION=$minor "$root/hack/build-kube.sh" --version) || exit 2
	log=$out/$minor.log
	start=$(date +%s)
	echo "e2e at Kubernetes $release: output in ${log#"$root/"}" >&2
	status=0
	KUBE_VERSION=$minor E2E_KEEP_CLUSTER=0 "$here/run.sh" >"$log" 2>&1 || status=$?
	took=$(($(date +%s) - start))
	passed=$(grep -c -- '^--- PASS' "$log" || true)
	fails=$(grep -- '^--- FAIL' "$log" | awk '{print $3}' | tr '\n' ' ' || true)
	if [ "$status" -eq 0 ]; then
		line="$release passed: $passed tests in ${took}s"
	else
		failed=$((failed + 1))
		line="$release FAILED (status $status): $passed passed, failed: ${fails:-none (see the log)} in ${took}s"
	fi
	echo "$line" >&2
	results+=("$line")
done

echo
echo "e2e by Kubernetes release ($(date -u +%Y-%m-%dT%H:%MZ)):"
printf '  %s\n' "${results[@]}"
[ "$failed" -eq 0 ]
