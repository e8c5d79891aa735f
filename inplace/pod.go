package inplace

import (
	corev1 "k8s.io/api/core/v1"
)

// HasGate reports whether the pod carries the InPlaceUpdateReady readiness
// gate. A pod without it cannot be updated in place: readiness gates cannot
// be added to a live pod.
func HasGate(pod *corev1.Pod) bool {
	for _, g := range pod.Spec.ReadinessGates {
		if g.ConditionType == ConditionInPlaceUpdateReady {
			return true
		}
	}
	return false
}

// Updating reports whether an in-place update of the pod is in progress.
func Updating(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[AnnotationUpdateState]
	return ok
}

// GateCondition returns the pod's InPlaceUpdateReady condition, or nil.
func GateCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == ConditionInPlaceUpdateReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// NeedsGateOpened reports whether the pod waits for InPlaceUpdateReady=True
// and nothing holds it back: it has the gate, no in-place update is in
// progress, it is not being deleted, and the condition is not True yet.
// Without a writer such a pod would never become Ready.
func NeedsGateOpened(pod *corev1.Pod) bool {
	if !HasGate(pod) || Updating(pod) || pod.DeletionTimestamp != nil {
		return false
	}
	c := GateCondition(pod)
	return c == nil || c.Status != corev1.ConditionTrue
}
