// Package webhook is inplace's admission: a defaulter and a validator per
// workload kind, and a defaulter for pods.
//
// The defaulters inject the in-place policy into managed workloads and the
// InPlaceUpdateReady readiness gate into their pods as the pods are created;
// the validators refuse, with a 422 that names the field, a malformed
// inplace.dev annotation, a write of a manager-owned annotation by anyone but
// the manager, and an InPlaceOnly change that cannot be applied in place.
//
// Handlers change objects and let controller-runtime compute the patch; they
// never write JSON patches by hand. They read only from the manager's cache
// (a live read is the fallback for an object the cache has not seen yet),
// and they must never see kube-system or the manager's own namespace: the
// webhook configurations exclude them and Scope refuses them again.
package webhook
