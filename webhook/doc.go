// Package webhook is inplace's admission: a defaulter and a validator per
// workload kind, a defaulter for pods, and a validator of pod deletes.
//
// The defaulters inject the in-place policy into managed workloads and the
// InPlaceUpdateReady readiness gate into their pods as the pods are created,
// and keep the manager-owned annotations the manager's (a user's write of
// one is dropped or undone, with a warning). The workload validators refuse,
// with a 422 that names the field, a malformed inplace.dev annotation and an
// InPlaceOnly change that cannot be applied in place. The pod-delete
// validator refuses a workload controller's delete of a pod the manager
// updates in place instead: that is how an in-place rollout runs without
// holding the native controller back.
//
// Handlers change objects and let controller-runtime compute the patch; they
// never write JSON patches by hand. They read only from the manager's cache
// (a live read is the fallback for an object the cache has not seen yet),
// and they must never see kube-system or the manager's own namespace: the
// webhook configurations exclude them and Scope refuses them again.
package webhook
