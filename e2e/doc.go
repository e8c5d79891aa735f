//go:build e2e

// Package e2e holds the end-to-end tests: they run against the real cluster
// of e2e/cluster (one node, or three with make e2e NODES=3), with inplace-manager installed from the manifests
// as a user would install it, change workloads through the API as kubectl
// would, and check what a user would look at: pod UIDs, restart counts,
// readiness, and the version each container actually serves.
//
// The tests are behind the build tag e2e and must run inside the cluster's
// network namespace, where the API server and the pod IPs are reachable.
// `make e2e` does it all (build, bring up, install, run, tear down); by hand:
//
//	make cluster deploy-e2e
//	go test -c -tags e2e -o .cache/bin/e2e.test ./e2e
//	cd e2e && nsenter --net=/var/run/netns/inplace-e2e env KUBECONFIG=$(make -s -C .. kubeconfig) ../.cache/bin/e2e.test -test.v
//
// kruise_test.go needs OpenKruise installed beside the manager: it is behind
// the build tag kruise as well, and make e2e-kruise runs it (installing
// kruise-manager with e2e/cluster/kruise.sh, then running TestKruise*).
//
// framework_test.go is the harness (namespaces, StatefulSets, waits, reading
// pods back, stopping and restoring the manager); each other file holds the
// tests of one subject. Nothing here is imported by the product.
package e2e
