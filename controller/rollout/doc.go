// Package rollout is the rollout engine: one reconciler that makes every
// native workload kind's rollouts in place, driven by a small adapter per
// kind (controller/statefulset, controller/daemonset, controller/deployment)
// that only answers questions: the target revision and template, the pods in
// the order the kind's controller replaces them, how many may go now, and
// what makes that controller count a pod updated.
//
// The engine holds the rest once for every kind: the per-pod in-place update
// (close the gate, patch, open the gate, each step bounded by a deadline),
// the budget, the rollout record on the workload, events and metrics.
//
// The native controller runs its own rollout, untouched; the pod webhook
// refuses its replacement of a pod that the engine updates in place instead.
// A refused replacement is a promise that the engine is about to update the
// pod: whatever keeps it from doing so, the replacement must pass (see
// docs/design). The engine never holds a workload back, never writes a pod
// Ready, and reads live where a stale cache would skip a step.
package rollout
