// Package controller holds inplace's reconcilers: the readiness-gate keeper,
// which opens the InPlaceUpdateReady gate of every managed pod that no
// in-place update holds closed, and (as they land) the rollout reconcilers
// per workload kind.
//
// Reconcilers read from the manager's cache, which holds only the pods the
// webhook labelled inplace.dev/managed, and write only what changed, with
// the resourceVersion they read, so that a stale cache cannot undo a step
// another writer took. They never requeue in a loop: watch events drive them.
package controller
