package inplace

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ControlledByOther reports whether the pod's controller is something other
// than an apps/v1 ReplicaSet, StatefulSet or DaemonSet, such as an
// OpenKruise workload. Kruise uses the same InPlaceUpdateReady condition
// type and closes and opens it itself: such a pod's gate is never inplace's
// to write, even when the pod carries inplace's managed label (a template
// that copied it from another pod).
func ControlledByOther(pod *corev1.Pod) bool {
	owner := metav1.GetControllerOfNoCopy(pod)
	if owner == nil {
		return false
	}
	if owner.APIVersion != "apps/v1" {
		return true
	}
	switch owner.Kind {
	case "ReplicaSet", "StatefulSet", "DaemonSet":
		return false
	}
	return true
}

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

// ReasonInPlaceUpdate is the reason of an InPlaceUpdateReady condition that
// is False because the manager is updating the pod in place. It marks the
// update as begun before the update state is recorded: the gate closes
// first, in a status write the kubelet does not re-sync the pod for.
const ReasonInPlaceUpdate = "InPlaceUpdate"

// Updating reports whether an in-place update of the pod is in progress: its
// gate closed for one, or its state recorded.
func Updating(pod *corev1.Pod) bool {
	if _, ok := pod.Annotations[AnnotationUpdateState]; ok {
		return true
	}
	c := GateCondition(pod)
	return c != nil && c.Status == corev1.ConditionFalse && c.Reason == ReasonInPlaceUpdate
}

// StaleViewWindow is how long after a pod's in-place update completed (its
// gate opened) a workload controller's delete of it is taken for one
// decided on a view from before the update: the controllers' caches lag by
// milliseconds, seconds on a loaded control plane.
const StaleViewWindow = 30 * time.Second

// RecentlyUpdated reports whether the pod's gate opened less than
// StaleViewWindow before now.
func RecentlyUpdated(pod *corev1.Pod, now time.Time) bool {
	c := GateCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue && now.Sub(c.LastTransitionTime.Time) < StaleViewWindow
}

// OutOfService reports whether an in-place update holds the pod out of
// service: its gate closed for an update that restarts a container. A
// resize that restarts nothing leaves the gate open, the pod Ready.
func OutOfService(pod *corev1.Pod) bool {
	c := GateCondition(pod)
	return c != nil && c.Status == corev1.ConditionFalse && c.Reason == ReasonInPlaceUpdate
}

// GateCondition returns the pod's InPlaceUpdateReady condition, or nil.
func GateCondition(pod *corev1.Pod) *corev1.PodCondition {
	return condition(pod, ConditionInPlaceUpdateReady)
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

// ReasonReadinessGatesNotReady is the kubelet's reason for a pod that is not
// Ready because of a readiness gate (pkg/kubelet/status/generate.go).
const ReasonReadinessGatesNotReady = "ReadinessGatesNotReady"

// ReadyCondition returns the pod's Ready condition as the kubelet would
// compute it from the pod's status once its InPlaceUpdateReady condition has
// the given status: the kubelet's own words, so that the kubelet, comparing,
// finds nothing to correct and does not re-sync the pod. Only the fields the
// kubelet compares are set (status, reason, message).
func ReadyCondition(pod *corev1.Pod, gate corev1.ConditionStatus) corev1.PodCondition {
	ready := corev1.PodCondition{Type: corev1.PodReady}
	containers := condition(pod, corev1.ContainersReady)
	if containers == nil || containers.Status != corev1.ConditionTrue {
		if containers != nil {
			ready.Status, ready.Reason, ready.Message = containers.Status, containers.Reason, containers.Message
		} else {
			ready.Status = corev1.ConditionFalse
		}
		return ready
	}
	var unready []string
	for _, g := range pod.Spec.ReadinessGates {
		status := corev1.ConditionStatus("")
		if g.ConditionType == ConditionInPlaceUpdateReady {
			status = gate
		} else if c := condition(pod, g.ConditionType); c != nil {
			status = c.Status
		}
		switch status {
		case corev1.ConditionTrue:
		case "":
			unready = append(unready, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", string(g.ConditionType)))
		default:
			unready = append(unready, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", string(g.ConditionType), status))
		}
	}
	if len(unready) > 0 {
		ready.Status, ready.Reason, ready.Message = corev1.ConditionFalse, ReasonReadinessGatesNotReady, strings.Join(unready, ", ")
		return ready
	}
	ready.Status = corev1.ConditionTrue
	return ready
}

func condition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}
