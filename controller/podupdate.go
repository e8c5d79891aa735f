package controller

import (
	"context"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/inplace-dev/inplace/inplace"
)

// Event reasons, stable CamelCase words a user can filter on.
const (
	ReasonInPlaceUpdateStarted    = "InPlaceUpdateStarted"
	ReasonInPlaceUpdated          = "InPlaceUpdated"
	ReasonInPlaceUpdateFailed     = "InPlaceUpdateFailed"
	ReasonRecreatedNotInPlace     = "RecreatedNotInPlace"
	ReasonInPlaceRolloutStarted   = "InPlaceRolloutStarted"
	ReasonInPlaceRolloutCompleted = "InPlaceRolloutCompleted"
	ReasonInPlaceRolloutHalted    = "InPlaceRolloutHalted"
	ReasonHoldReleased            = "HoldReleased"
)

// podTarget is what a pod of a workload is updated to.
type podTarget struct {
	// kind is the workload's kind, for metrics.
	kind string
	// workload is the pod's owner, for events.
	workload client.Object
	// revisionLabel is the pod label that names its revision.
	revisionLabel string
	// revision names the target, the value of revisionLabel when done.
	revision string
	// template is the target pod template.
	template *corev1.PodTemplateSpec
	// templateOf returns the template of a revision, nil when it is gone.
	templateOf func(ctx context.Context, revision string) (*corev1.PodTemplateSpec, error)
	// grace is how long a pod stays not ready before its images change.
	grace time.Duration
}

// podStep is what advancing one pod's update came to.
type podStep struct {
	// requeueAfter, when set, is when the pod needs looking at again with
	// no event to say so (a grace period running out).
	requeueAfter time.Duration
	// failure says why the pod's update cannot complete, if it cannot.
	failure string
}

// podUpdater performs the per-pod in-place update of DESIGN.md, "One pod,
// in place": record, mark not ready, wait the grace period, patch, wait for
// the kubelet, relabel, mark ready. Every write is conditional on the
// resourceVersion it read, so a stale read cannot double-apply a step; a
// conflict ends the pass, and the pod's next watch event resumes it.
type podUpdater struct {
	client   client.Client
	live     client.Reader
	recorder events.EventRecorder
	clock    clock.PassiveClock
}

// changedContainers names the pod's containers and init containers whose
// image differs from the template's.
func changedContainers(pod *corev1.Pod, t *corev1.PodTemplateSpec) []string {
	var names []string
	for _, pair := range []struct{ pod, tpl []corev1.Container }{
		{pod.Spec.InitContainers, t.Spec.InitContainers},
		{pod.Spec.Containers, t.Spec.Containers},
	} {
		for _, c := range pair.pod {
			for _, tc := range pair.tpl {
				if tc.Name == c.Name && tc.Image != c.Image {
					names = append(names, c.Name)
				}
			}
		}
	}
	return names
}

// begin starts the in-place update of pod from the template it runs (from)
// to t: it reads the pod live, records the update's state, and marks the pod
// not ready. A pod whose change touches no image (labels and annotations
// only) is not restarted and never leaves Ready: it is patched and relabelled
// at once. It reports whether the pod became unavailable.
func (u *podUpdater) begin(ctx context.Context, cached *corev1.Pod, from *corev1.PodTemplateSpec, t *podTarget) (bool, error) {
	pod := &corev1.Pod{}
	if err := u.live.Get(ctx, client.ObjectKeyFromObject(cached), pod); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	if pod.UID != cached.UID || inplace.Updating(pod) || pod.Labels[t.revisionLabel] == t.revision || pod.DeletionTimestamp != nil {
		return false, nil // the cache was behind; the pod's event brings it back
	}
	containers := changedContainers(pod, t.template)
	now := metav1.NewTime(u.clock.Now())
	if len(containers) == 0 {
		base := pod.DeepCopy()
		applyTemplateMetadata(pod, from, t.template)
		pod.Labels[t.revisionLabel] = t.revision
		return false, ignoreConflict(u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})))
	}

	state := &inplace.UpdateState{
		Revision:   t.revision,
		From:       pod.Labels[t.revisionLabel],
		Since:      now,
		Containers: inplace.Snapshot(pod, containers),
	}
	base := pod.DeepCopy()
	metav1.SetMetaDataAnnotation(&pod.ObjectMeta, inplace.AnnotationUpdateState, state.Encode())
	if err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return false, ignoreConflict(err)
	}
	u.recorder.Eventf(pod, t.workload, corev1.EventTypeNormal, ReasonInPlaceUpdateStarted, "Update",
		"Updating %v in place to revision %s", containers, t.revision)
	logf.FromContext(ctx).V(1).Info("Began an in-place update", "pod", klog.KObj(pod), "revision", t.revision, "containers", containers)
	if err := u.setGate(ctx, pod, corev1.ConditionFalse); err != nil {
		return true, ignoreConflict(err)
	}
	if t.grace == 0 {
		_, err := u.advance(ctx, pod, t)
		return true, err
	}
	return true, nil
}

// advance takes the next step of a pod whose update is in progress.
func (u *podUpdater) advance(ctx context.Context, pod *corev1.Pod, t *podTarget) (podStep, error) {
	state, err := inplace.StateOf(pod)
	if err != nil || state == nil {
		return podStep{}, err
	}
	if state.Revision != t.revision {
		return u.retarget(ctx, pod, state, t)
	}
	if state.PatchedAt == nil {
		if gate := inplace.GateCondition(pod); gate == nil || gate.Status != corev1.ConditionFalse {
			// Stopped between recording the state and marking the pod.
			return podStep{}, ignoreConflict(u.setGate(ctx, pod, corev1.ConditionFalse))
		}
		if wait := state.Since.Add(t.grace).Sub(u.clock.Now()); wait > 0 {
			return podStep{requeueAfter: wait}, nil
		}
		return podStep{}, u.patch(ctx, pod, state, t)
	}

	progress := inplace.CheckProgress(pod, state)
	switch {
	case progress.Failure != "":
		return podStep{failure: progress.Failure}, u.fail(ctx, pod, state, t, progress.Failure)
	case progress.Done:
		return podStep{}, u.finish(ctx, pod, state, t)
	}
	return podStep{}, nil
}

// retarget moves a pod whose update aimed at an older revision to the new
// one. A pod not patched yet, or whose update failed, is aimed at the new
// revision at once (changing the image back rolls a failed pod back in
// place). A pod the kubelet is restarting finishes first: patching it
// again mid-restart would leave its completion ambiguous.
func (u *podUpdater) retarget(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, t *podTarget) (podStep, error) {
	if state.PatchedAt != nil {
		progress := inplace.CheckProgress(pod, state)
		if progress.Failure == "" && !progress.Done {
			return podStep{}, nil
		}
	}
	containers := changedContainers(pod, t.template)
	next := &inplace.UpdateState{
		Revision:   t.revision,
		From:       state.From,
		Since:      state.Since,
		Containers: inplace.Snapshot(pod, containers),
	}
	if state.PatchedAt != nil {
		next.From = state.Revision // its labels and annotations are that revision's now
	}
	base := pod.DeepCopy()
	metav1.SetMetaDataAnnotation(&pod.ObjectMeta, inplace.AnnotationUpdateState, next.Encode())
	if err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return podStep{}, ignoreConflict(err)
	}
	logf.FromContext(ctx).V(1).Info("Retargeted an in-place update", "pod", klog.KObj(pod), "from", state.Revision, "to", t.revision)
	return u.advance(ctx, pod, t)
}

// patch changes the pod's images, labels and annotations to the target's,
// recording the time of the patch.
func (u *podUpdater) patch(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, t *podTarget) error {
	from, err := t.templateOf(ctx, state.From)
	if err != nil {
		return err
	}
	base := pod.DeepCopy()
	setImages(pod, t.template)
	applyTemplateMetadata(pod, from, t.template)
	now := metav1.NewTime(u.clock.Now())
	state.PatchedAt = &now
	metav1.SetMetaDataAnnotation(&pod.ObjectMeta, inplace.AnnotationUpdateState, state.Encode())
	return ignoreConflict(u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})))
}

// finish relabels a pod whose update completed to its new revision, clears
// the state and marks it ready.
func (u *podUpdater) finish(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, t *podTarget) error {
	base := pod.DeepCopy()
	pod.Labels[t.revisionLabel] = state.Revision
	delete(pod.Annotations, inplace.AnnotationUpdateState)
	if err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ignoreConflict(err)
	}
	elapsed := u.clock.Since(state.Since.Time)
	updatesTotal.WithLabelValues(t.kind, resultSuccess).Inc()
	updateDuration.WithLabelValues(t.kind).Observe(elapsed.Seconds())
	u.recorder.Eventf(pod, t.workload, corev1.EventTypeNormal, ReasonInPlaceUpdated, "Update",
		"Updated in place to revision %s in %v", state.Revision, elapsed.Round(time.Millisecond))
	logf.FromContext(ctx).V(1).Info("Finished an in-place update", "pod", klog.KObj(pod), "revision", state.Revision, "elapsed", elapsed)
	// The keeper opens the gate of any pod left closed with no update in
	// progress, should this write fail.
	return ignoreConflict(u.setGate(ctx, pod, corev1.ConditionTrue))
}

// fail reports, once, a pod whose update cannot complete. The pod stays not
// ready and counts against maxUnavailable, so the rollout halts instead of
// spreading the failure.
func (u *podUpdater) fail(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, t *podTarget, failure string) error {
	if state.Failure == failure {
		return nil
	}
	base := pod.DeepCopy()
	state.Failure = failure
	metav1.SetMetaDataAnnotation(&pod.ObjectMeta, inplace.AnnotationUpdateState, state.Encode())
	if err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ignoreConflict(err)
	}
	updatesTotal.WithLabelValues(t.kind, resultFailure).Inc()
	u.recorder.Eventf(pod, t.workload, corev1.EventTypeWarning, ReasonInPlaceUpdateFailed, "Update",
		"In-place update to revision %s cannot complete: %s", state.Revision, failure)
	logf.FromContext(ctx).Info("An in-place update cannot complete", "pod", klog.KObj(pod), "revision", state.Revision, "failure", failure)
	return nil
}

// abandon clears the state of a pod whose workload is no longer held (the
// user handed the rollout back to the native controller) and whose images
// were never patched, and marks it ready again.
func (u *podUpdater) abandon(ctx context.Context, pod *corev1.Pod) error {
	base := pod.DeepCopy()
	delete(pod.Annotations, inplace.AnnotationUpdateState)
	if err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ignoreConflict(err)
	}
	return ignoreConflict(u.setGate(ctx, pod, corev1.ConditionTrue))
}

func (u *podUpdater) setGate(ctx context.Context, pod *corev1.Pod, status corev1.ConditionStatus) error {
	return setGate(ctx, u.client, pod, status, metav1.NewTime(u.clock.Now()))
}

// setGate writes the pod's InPlaceUpdateReady condition, conditionally on the
// resourceVersion the pod was read at. Closing it writes the Ready condition
// too, as the kubelet would compute it: written alone, the gate makes the
// kubelet re-sync the pod, and an image patch right after waits behind that
// sync.
func setGate(ctx context.Context, c client.Client, pod *corev1.Pod, status corev1.ConditionStatus, now metav1.Time) error {
	base := pod.DeepCopy()
	setCondition(pod, corev1.PodCondition{Type: inplace.ConditionInPlaceUpdateReady, Status: status}, now)
	if status == corev1.ConditionFalse {
		setCondition(pod, inplace.ReadyCondition(pod, status), now)
	}
	return c.Status().Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{}))
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

// setImages sets each of the pod's containers to the template's image.
func setImages(pod *corev1.Pod, t *corev1.PodTemplateSpec) {
	for _, pair := range []struct{ pod, tpl []corev1.Container }{
		{pod.Spec.InitContainers, t.Spec.InitContainers},
		{pod.Spec.Containers, t.Spec.Containers},
	} {
		for i := range pair.pod {
			for _, tc := range pair.tpl {
				if tc.Name == pair.pod[i].Name {
					pair.pod[i].Image = tc.Image
				}
			}
		}
	}
}

// applyTemplateMetadata moves the pod's labels and annotations from those of
// the template it ran (from, nil when unknown) to those of the target: the
// target's are set, those only the old template had are removed, and those
// the pod got elsewhere (its revision, its name, the manager's) are kept.
func applyTemplateMetadata(pod *corev1.Pod, from, to *corev1.PodTemplateSpec) {
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	if from != nil {
		for k := range from.Labels {
			if _, kept := to.Labels[k]; !kept {
				delete(pod.Labels, k)
			}
		}
		for k := range from.Annotations {
			if _, kept := to.Annotations[k]; !kept && !inplace.IsManagerOwned(k) {
				delete(pod.Annotations, k)
			}
		}
	}
	maps.Copy(pod.Labels, to.Labels)
	for k, v := range to.Annotations {
		if !inplace.IsManagerOwned(k) {
			pod.Annotations[k] = v
		}
	}
}

// ignoreConflict treats a conflict as done: the object changed since it was
// read, and its watch event brings it back to be looked at afresh.
func ignoreConflict(err error) error {
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}
