package rollout

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/inplace"
)

// Guard tells whether the API server enforces the readiness guard: the
// ValidatingAdmissionPolicy of manifests/base that refuses a pod status
// making a managed pod Ready while its InPlaceUpdateReady gate is False or
// while a container its in-place update replaces still runs. It is what
// makes the fast order of writes safe (docs/design).
type Guard interface {
	Guarded() bool
}

// IsGuarded reports whether g says the readiness guard is in force; a nil
// Guard is not.
func IsGuarded(g Guard) bool { return g != nil && g.Guarded() }

// OpenGate sets the pod's InPlaceUpdateReady condition True, conditionally on
// the resourceVersion it was read at: a pod whose in-place update began since
// must not be opened. Ready is left to the kubelet: written True here, it
// would hold only until the kubelet next wrote the status it keeps, which may
// have been computed with the gate closed, and the pod would flip back to not
// Ready.
func OpenGate(ctx context.Context, c client.Client, pod *corev1.Pod, now metav1.Time) error {
	base := pod.DeepCopy()
	setCondition(pod, corev1.PodCondition{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue}, now)
	return c.Status().Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{}))
}

// closeGate marks the pod not ready for an in-place update to revision,
// conditionally on the resourceVersion it was read at. Guarded, Ready False
// goes with it in the kubelet's own words: written alone, the gate makes the
// kubelet re-sync the pod, and an image patch right after waits behind that
// sync. Unguarded, the gate goes alone: the kubelet's sync is the proof the
// patch waits for.
func closeGate(ctx context.Context, c client.Client, pod *corev1.Pod, revision string, guarded bool, now metav1.Time) error {
	base := pod.DeepCopy()
	setCondition(pod, corev1.PodCondition{
		Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse,
		Reason: inplace.ReasonInPlaceUpdate, Message: "updating in place to revision " + revision,
	}, now)
	if ready := inplace.ReadyCondition(pod, corev1.ConditionFalse); guarded && ready.Reason == inplace.ReasonReadinessGatesNotReady {
		// The containers are ready: Ready now hangs on the gates.
		setCondition(pod, ready, now)
	}
	return c.Status().Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{}))
}

// GateOpen reports whether the pod's InPlaceUpdateReady condition is True.
func GateOpen(pod *corev1.Pod) bool {
	c := inplace.GateCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue
}

// setCondition sets a condition, keeping its transition time when the
// status does not change.
func setCondition(pod *corev1.Pod, c corev1.PodCondition, now metav1.Time) {
	for i := range pod.Status.Conditions {
		existing := &pod.Status.Conditions[i]
		if existing.Type != c.Type {
			continue
		}
		c.LastTransitionTime = existing.LastTransitionTime
		if existing.Status != c.Status {
			c.LastTransitionTime = now
		}
		c.ObservedGeneration = existing.ObservedGeneration
		*existing = c
		return
	}
	c.LastTransitionTime = now
	pod.Status.Conditions = append(pod.Status.Conditions, c)
}

func condition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// PodReady reports whether the pod is Ready and not being deleted.
func PodReady(pod *corev1.Pod) bool {
	c := condition(pod, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue && pod.DeletionTimestamp == nil
}

// AvailableIn reports whether the pod is available (Ready for minReady),
// and if it is Ready but not yet available, how long until it is.
func AvailableIn(pod *corev1.Pod, minReady time.Duration, now time.Time) (time.Duration, bool) {
	if pod == nil || pod.DeletionTimestamp != nil {
		return 0, false
	}
	c := condition(pod, corev1.PodReady)
	if c == nil || c.Status != corev1.ConditionTrue {
		return 0, false
	}
	if wait := c.LastTransitionTime.Add(minReady).Sub(now); minReady > 0 && wait > 0 {
		return wait, false
	}
	return 0, true
}
