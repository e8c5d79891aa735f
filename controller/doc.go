// Package controller holds inplace's reconcilers and what runs beside them:
//   - the readiness-gate keeper, on every replica, which opens the
//     InPlaceUpdateReady gate of every managed pod that no in-place update
//     holds closed;
//   - the StatefulSet rollout, on the elected replica, which updates in
//     place the pods the StatefulSet controller would recreate (the webhook
//     refuses that controller's deletes of them), through the per-pod update
//     of podupdate.go;
//   - the shutdown drain, which opens its updates' gates as the elected
//     replica stops, and the watchdog, which fails /healthz when a pass hangs.
//
// Reconcilers read from the manager's cache, which holds only the pods the
// webhook labelled inplace.dev/managed, and write only what changed, with
// the resourceVersion they read, so that a stale cache cannot undo a step
// another writer took. They never requeue in a loop: watch events drive them.
// They never write a pod's Ready condition True: that is the kubelet's.
package controller
