#!/usr/bin/env bash
# Runs the end-to-end tests (make e2e): builds what is missing, brings the
# cluster up (or reuses a running one), installs inplace-manager from its
# manifests, compiles the tests outside the cluster's network namespace
# (which has no route to the module proxy) and runs them inside it.
#
#   e2e/run.sh [test binary flags...]       e.g. e2e/run.sh -test.run FailOpen
#
# Environment:
#   E2E_KEEP_CLUSTER     unset: tear the cluster down at the end if this run
#                        started it, keep one that was already running;
#                        0: always tear it down; 1: always keep it
#   E2E_RUN              a -test.run pattern
#   E2E_TIMEOUT          the test binary's -test.timeout (default 30m)
#   E2E_PARALLEL         its -test.parallel (default 4: the tests mostly wait
#                        for the cluster, so more than the 2 cores pays)
#   E2E_KEEP_NAMESPACES  1: keep each test's namespace (see e2e/doc.go)
#   E2E_KRUISE           1: the OpenKruise suite (make e2e-kruise): install
#                        Kruise after the manager (e2e/cluster/kruise.sh),
#                        compile with the build tag kruise too, run only
#                        TestKruise* (or E2E_RUN), and uninstall Kruise when
#                        the tests pass
#   E2E_MUTATION_DETECTOR 1: the manager runs with client-go's cache mutation
#                        detector (e2e/cluster/deploy.sh): a write to an
#                        object its informers hold makes it exit, which
#                        fails the run (managersStayedUp, and the managers'
#                        logs are read for it after the tests)
#
# The teardown happens whatever fails: the bring-up, the install, the build
# or the tests. The exit status is the tests' (or the first failing step's;
# a failed teardown after passing tests fails the run too).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=cluster/lib.sh
. "$here/cluster/lib.sh"

export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local

t0=$(now_ms)
TEST_BIN=$BIN/e2e.test
TEST_LOG= # the tests' output, once they run

# cluster_running: every daemon of a cluster is alive.
cluster_running() {
	local d
	[ -e "$NETNS_PATH" ] || return 1
	for d in "${DAEMONS[@]}"; do daemon_pid "$d" >/dev/null || return 1; done
}

teardown_on_exit() {
	local status=$? down_status=0
	trap - EXIT INT TERM
	if [ "$status" -ne 0 ]; then
		e2e_log "failed (status $status); daemon logs in $LOGS"
		manager_logs
	fi
	if [ -n "$teardown" ]; then
		e2e_log "tearing the cluster down (E2E_KEEP_CLUSTER=1 keeps it)"
		"$here/cluster/down.sh" || down_status=$?
		if [ "$down_status" -ne 0 ]; then
			e2e_log "error: the teardown failed (status $down_status)"
			[ "$status" -eq 0 ] && status=$down_status
		fi
	else
		e2e_log "the cluster is still up: \$(make -s kubectl) get pod -A; make cluster-down stops it"
	fi
	[ "$status" -ne 0 ] && failure_summary
	e2e_log "done in $(since "$t0"), status $status"
	exit "$status"
}

# failure_summary prints, last, what each failing test said: the first line
# of each of its last messages (t.Log, t.Error, t.Fatal), from the tests'
# output kept in $TEST_LOG, and the manager's last errors. A failure's
# dumps run to thousands of lines, and a CI log is read from its end.
failure_summary() {
	[ -s "${TEST_LOG:-}" ] || return 0
	grep -q -- '--- FAIL: ' "$TEST_LOG" || return 0
	e2e_log "the failing tests and their last messages (all of it in $TEST_LOG):"
	awk '
		/^=== (RUN|CONT|NAME) / { cur = $3; next }
		/^ *--- FAIL: / { if (!($3 in failed)) { failed[$3] = 1; order[++n] = $3 }; next }
		/^    +[A-Za-z0-9_]+\.go:[0-9]+: / { if (cur != "") lines[cur, ++count[cur]] = $0 }
		END {
			for (i = 1; i <= n; i++) {
				t = order[i]
				print "  --- FAIL: " t
				from = count[t] > 12 ? count[t] - 11 : 1
				for (j = from; j <= count[t]; j++) {
					line = lines[t, j]
					sub(/^ +/, "", line)
					print "      " substr(line, 1, 400)
				}
			}
		}' "$TEST_LOG" >&2
	# Every replica's log, the deleted ones' too, is kept in
	# $LOGS/manager (keepManagerLogs): their last errors, in time order.
	if compgen -G "$LOGS/manager/*.log" >/dev/null; then
		e2e_log "the manager replicas' last errors (their whole logs in $LOGS/manager):"
		grep -h '"level":"error"' "$LOGS"/manager/*.log | sort | tail -n 10 | cut -c1-400 | sed 's/^/    /' >&2 || true
	fi
}

# manager_logs prints the tail of the manager's logs, when there is a
# cluster to ask: the first thing to read after a failure.
manager_logs() {
	cluster_running || return 0
	e2e_log "the last lines of inplace-manager's logs:"
	kubectl_ns --request-timeout=10s -n inplace-system logs -l app.kubernetes.io/name=inplace-manager --all-containers --tail=30 --prefix 2>&1 | sed 's/^/    /' >&2 || true
}

e2e_log() { printf '%s e2e: %s\n' "$(date +%T)" "$*" >&2; }

main() {
	require_root
	teardown=
	case ${E2E_KEEP_CLUSTER:-} in
	1) ;;
	0) teardown=1 ;;
	"") cluster_running || teardown=1 ;;
	*) die "E2E_KEEP_CLUSTER is 0, 1 or unset, not '$E2E_KEEP_CLUSTER'" ;;
	esac
	trap teardown_on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# Hold the cluster's lock for the whole run, so that no other run of
	# the cluster scripts (make cluster-down, make demo) changes it under
	# the tests; the scripts run here share it.
	lock_state

	e2e_log "bringing the cluster up"
	"$here/cluster/up.sh"
	e2e_log "installing inplace-manager"
	"$here/cluster/deploy.sh"
	local tags=e2e run=${E2E_RUN:-}
	if [ "${E2E_KRUISE:-}" = 1 ]; then
		# After inplace: Kruise's pod webhooks fail closed until its
		# manager answers, and inplace-system is spared by its label.
		e2e_log "installing OpenKruise"
		"$here/cluster/kruise.sh" install
		tags=e2e,kruise run=${run:-^TestKruise}
	fi

	e2e_log "compiling the tests"
	(cd "$ROOT" && go test -c -tags "$tags" -o "$TEST_BIN" ./e2e)
	(cd "$ROOT/e2e/rolloutstatus" && go build -o "$BIN/rolloutstatus" .)
	local refs args=(-test.v -test.timeout "${E2E_TIMEOUT:-30m}" -test.parallel "${E2E_PARALLEL:-4}") t1
	refs=$("$here/cluster/images.sh" test-refs | tr '\n' ' ')
	[ -n "$run" ] && args+=(-test.run "$run")

	e2e_log "running the tests in the network namespace $NETNS"
	t1=$(now_ms)
	TEST_LOG=$LOGS/e2e-tests.log
	rm -rf "$LOGS/manager" # a reused cluster's: only this run's replicas
	# The working directory is the package's, as under go test; the
	# output is kept for failure_summary (pipefail: the status is the
	# tests').
	(cd "$here" && in_ns env KUBECONFIG="$ADMIN_KUBECONFIG" E2E_TEST_IMAGES="$refs" E2E_ROLLOUTSTATUS="$BIN/rolloutstatus" E2E_KUBECTL="$BIN/kubectl" E2E_MANAGER_LOGS="$LOGS/manager" E2E_AUDIT_LOG="$LOGS/audit.log" "$TEST_BIN" "${args[@]}" "$@") 2>&1 | tee "$TEST_LOG"
	e2e_log "tests passed in $(since "$t1")"
	if [ "${E2E_MUTATION_DETECTOR:-0}" = 1 ]; then
		# A replica the tests deleted after the detector fired exited
		# unseen by managersStayedUp; its log says so.
		grep -q 'Mutation detector is enabled' "$LOGS/manager"/*.log ||
			die "E2E_MUTATION_DETECTOR=1 but no manager log says the detector was on"
		! grep -l 'ALTERED' "$LOGS/manager"/*.log ||
			die "a manager changed an object its cache holds: the logs named above"
		e2e_log "the cache mutation detector found nothing"
	fi
	if [ "${E2E_KRUISE:-}" = 1 ]; then
		e2e_log "uninstalling OpenKruise"
		"$here/cluster/kruise.sh" uninstall
	fi
}

main "$@"
