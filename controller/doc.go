// Package controller holds what runs beside the rollout engine
// (controller/rollout and its adapters per kind):
//   - the readiness-gate keeper, on every replica, which opens the
//     InPlaceUpdateReady gate of every managed pod that no in-place update
//     holds closed;
//   - the shutdown drain, which opens its updates' gates as the elected
//     replica stops.
//
// They read from the manager's cache, which holds only the pods the webhook
// labelled inplace.dev/managed, and write only what changed, with the
// resourceVersion they read, so that a stale cache cannot undo a step
// another writer took. They never touch a pod in an excluded namespace, nor
// one another workload kind controls (OpenKruise's), and never write a pod's
// Ready condition True: that is the kubelet's.
package controller
