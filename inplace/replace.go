package inplace

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Alive reports whether a workload controller would replace the pod only to
// update it: it is not terminating, and neither Failed nor Succeeded (those
// its controller replaces whatever their revision).
func Alive(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodFailed && pod.Status.Phase != corev1.PodSucceeded
}

// Replacement decides, for a workload controller's delete of a live pod of
// its rollout, whether the manager updates that pod in place instead, and
// if not, why the pod is recreated.
//
// revision is the revision the pod is labelled with, templateOf returns the
// template of a revision (nil when it is gone from the history), to is the
// template the rollout goes to and kubeletVersion that of the pod's node.
//
// The pod is updated in place (refuse is true) when it can go in place from
// its revision to the target; a pod whose images were already patched to
// another revision must be able to go in place from that one too, and one
// patched to the target is finishing its update. A pod already at the
// target is refused as well, with no fallback: the controller's delete then
// rests on a view of the pod from before the manager relabelled it (its
// cache lags; it deletes with no precondition). Otherwise the delete passes
// and fallback names why (one of the Fallback reasons), "" when the pod has
// nothing to change.
func Replacement(pod *corev1.Pod, revision string, templateOf func(revision string) *corev1.PodTemplateSpec, to *corev1.PodTemplateSpec, kubeletVersion string) (refuse bool, fallback string) {
	from := templateOf(revision)
	if from != nil && DiffTemplates(field.NewPath("spec", "template"), from, to).Empty() {
		return true, ""
	}
	d, fallback := Eligibility(pod, from, to, kubeletVersion)
	if fallback != "" || d.Empty() {
		return false, fallback
	}
	state, err := StateOf(pod)
	if err != nil {
		return false, FallbackBadState
	}
	if state == nil || state.PatchedAt == nil || state.Revision == revision {
		return true, ""
	}
	_, fallback = Eligibility(pod, templateOf(state.Revision), to, kubeletVersion)
	return fallback == "", fallback
}

// Why a pod of a managed workload is not updated in place, in the words of
// the inplace_fallbacks_to_recreate_total metric and of events.
const (
	FallbackNoReadinessGate  = "NoReadinessGate"
	FallbackNoRevision       = "NoRevision"
	FallbackNotInPlaceable   = "NotInPlaceable"
	FallbackSidecarKubelet   = "SidecarKubelet"
	FallbackPatchRefused     = "PatchRefused"
	FallbackBadState         = "BadUpdateState"
	FallbackStalled          = "UpdateStalled"
	FallbackPromiseBroken    = "PromiseBroken"
	FallbackResizeInfeasible = "ResizeInfeasible"
	FallbackResizeDeferred   = "ResizeDeferred"
	FallbackResizeRefused    = "ResizeRefused"
	FallbackResizeKubelet    = "ResizeKubelet"
)

// FallbackWords say, in events, why a pod is recreated instead of updated in
// place.
var FallbackWords = map[string]string{
	FallbackNoReadinessGate:  "the pod has no InPlaceUpdateReady readiness gate (it was created before its namespace was managed, or while the manager was down)",
	FallbackNoRevision:       "the revision the pod runs is no longer in the workload's history",
	FallbackNotInPlaceable:   "its change is more than container images, pod labels and pod annotations",
	FallbackSidecarKubelet:   "a native sidecar's image changes and the node's kubelet (before 1.32) does not restart sidecars in place",
	FallbackPatchRefused:     "the image patch was refused",
	FallbackBadState:         "its in-place update state cannot be read",
	FallbackStalled:          "its in-place update made no progress in time",
	FallbackPromiseBroken:    "the manager did not begin its in-place update in time after refusing its replacement",
	FallbackResizeInfeasible: "the kubelet cannot resize it on its node (Infeasible: the node lacks the room)",
	FallbackResizeDeferred:   "the kubelet put off or kept failing its resize for too long",
	FallbackResizeRefused:    "its resize was refused",
	FallbackResizeKubelet:    "its cpu or memory changes and the node's kubelet (before 1.33) does not resize a running pod",
}

// Eligibility decides whether a pod running template from can be updated in
// place to template to, on a node whose kubelet has the given version. It
// returns the diff and, when the pod must be recreated instead, why (one of
// the Fallback reasons); "" when it can be updated in place. An empty diff
// is eligible: there is nothing to restart.
func Eligibility(pod *corev1.Pod, from, to *corev1.PodTemplateSpec, kubeletVersion string) (TemplateDiff, string) {
	if !HasGate(pod) {
		return TemplateDiff{}, FallbackNoReadinessGate
	}
	if from == nil {
		return TemplateDiff{}, FallbackNoRevision
	}
	d := DiffTemplates(field.NewPath("spec", "template"), from, to)
	switch {
	case !d.InPlaceable():
		return d, FallbackNotInPlaceable
	case d.Sidecars() && !SidecarRestartsOnImageChange(kubeletVersion):
		return d, FallbackSidecarKubelet
	case len(d.Resizes) > 0 && !KubeletResizes(kubeletVersion):
		return d, FallbackResizeKubelet
	}
	return d, ""
}
