package inplace

import (
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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

// ScaledDown reports whether the pod is one the StatefulSet's scale-down
// removes: its ordinal index at or above replicas.
func ScaledDown(sts *appsv1.StatefulSet, pod *corev1.Pod) bool {
	ord, ok := Ordinal(sts, pod)
	return ok && ord >= int(ptr.Deref(sts.Spec.Replicas, 1))
}

// StatefulSetHandedBack says why a StatefulSet's rollouts are its
// controller's alone, "" when inplace may make them in place: OnDelete
// leaves each pod's replacement to the user.
func StatefulSetHandedBack(sts *appsv1.StatefulSet) string {
	if !RollsOut(sts) {
		return "its update strategy is " + string(sts.Spec.UpdateStrategy.Type)
	}
	return ""
}

// RefuseStatefulSetDelete decides, for the StatefulSet controller's own
// delete of one of its pods, whether inplace refuses it because the manager
// updates that pod in place instead (see Replacement); fallback says why a
// pod of the rollout is recreated instead. templateOf returns the template
// of a revision of the StatefulSet, nil when unknown; kubeletVersion is that
// of the pod's node.
//
// Only a rollout's delete is refused: the RollingUpdate strategy, a live pod
// whose ordinal is from the partition to replicas. Scale-down (an ordinal at
// or above replicas), failed pods, pods below the partition and pods that
// must be recreated pass.
func RefuseStatefulSetDelete(sts *appsv1.StatefulSet, pod *corev1.Pod, templateOf func(revision string) *corev1.PodTemplateSpec, kubeletVersion string) (refuse bool, fallback string) {
	if !RollsOut(sts) || !Alive(pod) {
		return false, ""
	}
	ord, ok := Ordinal(sts, pod)
	if !ok || !InRolloutRange(sts, ord) {
		return false, ""
	}
	return Replacement(pod, pod.Labels[appsv1.StatefulSetRevisionLabel], templateOf, &sts.Spec.Template, kubeletVersion)
}
