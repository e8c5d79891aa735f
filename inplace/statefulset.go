package inplace

import (
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// Partition returns a StatefulSet's rollingUpdate.partition: 0 when unset.
// The StatefulSet controller updates no pod below it.
func Partition(sts *appsv1.StatefulSet) int32 {
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		return ptr.Deref(ru.Partition, 0)
	}
	return 0
}

// SetPartition sets a StatefulSet's rollingUpdate.partition.
func SetPartition(sts *appsv1.StatefulSet, p int32) {
	if sts.Spec.UpdateStrategy.RollingUpdate == nil {
		sts.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
	}
	sts.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To(p)
}

// Ordinal returns a StatefulSet pod's ordinal index: its ordinal less the
// StatefulSet's start ordinal, the number the partition and replicas count
// in. ok is false for a name that is not the StatefulSet's.
func Ordinal(sts *appsv1.StatefulSet, pod *corev1.Pod) (int, bool) {
	suffix, ok := strings.CutPrefix(pod.Name, sts.Name+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(suffix)
	if err != nil || strconv.Itoa(n) != suffix {
		return 0, false
	}
	if sts.Spec.Ordinals != nil {
		n -= int(sts.Spec.Ordinals.Start)
	}
	return n, n >= 0
}

// RollsOut reports whether the StatefulSet controller rolls template
// changes out itself (the RollingUpdate strategy, the default), which is
// what an in-place rollout takes over pod by pod. OnDelete leaves the
// rollout to the user.
func RollsOut(sts *appsv1.StatefulSet) bool {
	t := sts.Spec.UpdateStrategy.Type
	return t == "" || t == appsv1.RollingUpdateStatefulSetStrategyType
}

// InRolloutRange reports whether the StatefulSet's rollout updates the pod
// at this ordinal index: from the partition up to replicas. A pod above is
// scaled down, one below is held by the partition.
func InRolloutRange(sts *appsv1.StatefulSet, ordinal int) bool {
	return ordinal >= int(Partition(sts)) && ordinal < int(ptr.Deref(sts.Spec.Replicas, 1))
}

// Why a pod of a managed workload is not updated in place, in the words of
// the inplace_fallbacks_to_recreate_total metric and of events.
const (
	FallbackNoReadinessGate = "NoReadinessGate"
	FallbackNoRevision      = "NoRevision"
	FallbackNotInPlaceable  = "NotInPlaceable"
	FallbackSidecarKubelet  = "SidecarKubelet"
	FallbackPatchRefused    = "PatchRefused"
	FallbackBadState        = "BadUpdateState"
)

// FallbackWords say, in events, why a pod is recreated instead of updated in
// place.
var FallbackWords = map[string]string{
	FallbackNoReadinessGate: "the pod has no InPlaceUpdateReady readiness gate (it was created before its namespace was managed, or while the manager was down)",
	FallbackNoRevision:      "the revision the pod runs is no longer in the workload's history",
	FallbackNotInPlaceable:  "its change is more than container images, pod labels and pod annotations",
	FallbackSidecarKubelet:  "a native sidecar's image changes and the node's kubelet (before 1.32) does not restart sidecars in place",
	FallbackPatchRefused:    "the image patch was refused",
	FallbackBadState:        "its in-place update state cannot be read",
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
	}
	return d, ""
}

// RefuseRolloutDelete decides, for the StatefulSet controller's own delete of
// one of its pods, whether inplace refuses it because the manager updates
// that pod in place instead. templateOf returns the template of a revision
// of the StatefulSet, nil when unknown; kubeletVersion is that of the pod's
// node.
//
// Only a rollout's delete is refused: a pod the rollout updates (the
// RollingUpdate strategy, its ordinal from the partition to replicas, its
// revision's template not the StatefulSet's), alive (not terminating, not
// Failed or Succeeded: the controller replaces those whatever their
// revision), and eligible to be updated in place from its revision. A pod
// whose images were already patched to another revision must be eligible
// from that one too; one patched to the StatefulSet's template is finishing
// its update. A pod already at the StatefulSet's template is refused as
// well: the controller's delete then rests on a view of the pod from before
// the manager relabelled it (its cache lags; its delete has no
// precondition). Scale-down (an ordinal at or above replicas), failed pods
// and pods that must be recreated pass.
func RefuseRolloutDelete(sts *appsv1.StatefulSet, pod *corev1.Pod, templateOf func(revision string) *corev1.PodTemplateSpec, kubeletVersion string) bool {
	if !RollsOut(sts) || pod.DeletionTimestamp != nil ||
		pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return false
	}
	ord, ok := Ordinal(sts, pod)
	if !ok || !InRolloutRange(sts, ord) {
		return false
	}
	label := pod.Labels[appsv1.StatefulSetRevisionLabel]
	from := templateOf(label)
	if from != nil && DiffTemplates(field.NewPath("spec", "template"), from, &sts.Spec.Template).Empty() {
		// Already at the template: the controller decided on a view of the
		// pod from before the manager relabelled it.
		return true
	}
	d, fallback := Eligibility(pod, from, &sts.Spec.Template, kubeletVersion)
	if fallback != "" || d.Empty() {
		return false
	}
	state, err := StateOf(pod)
	if err != nil {
		return false // a malformed state: the manager recreates the pod
	}
	if state == nil || state.PatchedAt == nil || state.Revision == label {
		return true
	}
	_, fallback = Eligibility(pod, templateOf(state.Revision), &sts.Spec.Template, kubeletVersion)
	return fallback == ""
}
