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
// in place": mark the pod not ready, wait the grace period, record its state
// and patch it, wait for the kubelet, mark it ready, relabel it. Every write
// is conditional on the resourceVersion it read, so a stale read cannot
// double-apply a step; a conflict ends the pass, and the pod's next watch
// event resumes it.
//
// The order of the writes follows what the kubelet does with them. A status
// write (the gate, Ready) that agrees with the kubelet's own computation of
// Ready makes it do nothing. A metadata or spec write (the update state, the
// images, the revision label) makes it sync the pod with the pod as written,
// conditions included; a sync soon after another waits for its next relist,
// about a second. So the gate closes in a status write alone, the state is
// recorded in the same write as the images, and at the end the gate and
// Ready open in a status write before the relabel: no kubelet sync ever sees
// a gate older than the one written, none flips Ready back, and none is
// spent waiting.
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
// to t: it reads the pod live and closes its gate. A pod whose change touches
// no image (labels and annotations only) is not restarted and never leaves
// Ready: it is patched and relabelled at once.
func (u *podUpdater) begin(ctx context.Context, cached *corev1.Pod, from *corev1.PodTemplateSpec, t *podTarget) error {
	pod := &corev1.Pod{}
	if err := u.live.Get(ctx, client.ObjectKeyFromObject(cached), pod); err != nil {
		return client.IgnoreNotFound(err)
	}
	if pod.UID != cached.UID || inplace.Updating(pod) || pod.Labels[t.revisionLabel] == t.revision || pod.DeletionTimestamp != nil {
		return nil // the cache was behind; the pod's event brings it back
	}
	containers := changedContainers(pod, t.template)
	if len(containers) == 0 {
		base := pod.DeepCopy()
		applyTemplateMetadata(pod, from, t.template)
		pod.Labels[t.revisionLabel] = t.revision
		return ignoreConflict(u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})))
	}
	if err := u.closeGate(ctx, pod, t.revision); err != nil {
		return ignoreConflict(err)
	}
	u.recorder.Eventf(pod, t.workload, corev1.EventTypeNormal, ReasonInPlaceUpdateStarted, "Update",
		"Updating %v in place to revision %s", containers, t.revision)
	logf.FromContext(ctx).V(1).Info("Began an in-place update", "pod", klog.KObj(pod), "revision", t.revision, "containers", containers)
	if t.grace == 0 {
		_, err := u.advance(ctx, pod, t)
		return err
	}
	return nil
}

// advance takes the next step of a pod whose update is in progress.
func (u *podUpdater) advance(ctx context.Context, pod *corev1.Pod, t *podTarget) (podStep, error) {
	state, err := inplace.StateOf(pod)
	if err != nil {
		return podStep{}, err
	}
	if state == nil {
		// The gate is closed; the images are not patched yet. The time it
		// closed is kept to the second, rounded down: a second more makes
		// sure the whole grace period has passed.
		gate := inplace.GateCondition(pod)
		if t.grace > 0 {
			if wait := gate.LastTransitionTime.Add(t.grace + time.Second).Sub(u.clock.Now()); wait > 0 {
				return podStep{requeueAfter: wait}, nil
			}
		}
		return podStep{}, u.patch(ctx, pod, t, gate.LastTransitionTime)
	}
	if state.Revision != t.revision {
		return u.retarget(ctx, pod, state, t)
	}
	progress := inplace.CheckProgress(pod, state)
	switch {
	case progress.Failure != "":
		return podStep{failure: progress.Failure}, u.fail(ctx, pod, state, t, progress.Failure)
	case progress.Done:
		return podStep{}, u.finish(ctx, pod, state, t)
	case !gateOpen(pod) && (kubeletSawPatch(pod) || inplace.Replaced(pod, state)):
		// The kubelet is replacing the drained containers: it kills them in
		// the very sync that took in the patch, before it starts the new
		// ones, and any later sync sees them gone. The gate opens now, so
		// that every sync from here on has it open, and the kubelet turns the
		// pod Ready itself the moment the new containers are ready.
		return podStep{}, ignoreConflict(u.openGate(ctx, pod))
	}
	return podStep{}, nil
}

// kubeletSawPatch reports whether the kubelet has seen the pod's latest spec
// (where it reports observedGeneration).
func kubeletSawPatch(pod *corev1.Pod) bool {
	return pod.Status.ObservedGeneration > 0 && pod.Status.ObservedGeneration >= pod.Generation
}

func gateOpen(pod *corev1.Pod) bool {
	c := inplace.GateCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue
}

// patch records the update's state and changes the pod's images, labels and
// annotations to the target's, in one write, from a live read: the
// recorded containers are those the kubelet will replace.
func (u *podUpdater) patch(ctx context.Context, cached *corev1.Pod, t *podTarget, since metav1.Time) error {
	pod := &corev1.Pod{}
	if err := u.live.Get(ctx, client.ObjectKeyFromObject(cached), pod); err != nil {
		return client.IgnoreNotFound(err)
	}
	if state, err := inplace.StateOf(pod); pod.UID != cached.UID || !inplace.Updating(pod) || state != nil || err != nil {
		return err // the cache was behind
	}
	from, err := t.templateOf(ctx, pod.Labels[t.revisionLabel])
	if err != nil {
		return err
	}
	now := metav1.NewTime(u.clock.Now())
	state := &inplace.UpdateState{
		Revision:   t.revision,
		From:       pod.Labels[t.revisionLabel],
		Since:      since,
		PatchedAt:  &now,
		Containers: inplace.Snapshot(pod, changedContainers(pod, t.template)),
	}
	return u.write(ctx, pod, state, from, t)
}

// write records state on the pod and sets its images, labels and
// annotations to the target's, in one conditional write.
func (u *podUpdater) write(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, from *corev1.PodTemplateSpec, t *podTarget) error {
	base := pod.DeepCopy()
	setImages(pod, t.template)
	applyTemplateMetadata(pod, from, t.template)
	metav1.SetMetaDataAnnotation(&pod.ObjectMeta, inplace.AnnotationUpdateState, state.Encode())
	return ignoreConflict(u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})))
}

// retarget moves a pod whose update aimed at an older revision to the new
// one. A pod whose update failed is patched again at once (changing the
// image back rolls a failed pod back in place); one the kubelet is
// restarting finishes first, then goes on to the new revision without
// opening its gate: patching it again mid-restart would leave its
// completion ambiguous.
func (u *podUpdater) retarget(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, t *podTarget) (podStep, error) {
	progress := inplace.CheckProgress(pod, state)
	if progress.Failure == "" && !progress.Done {
		return podStep{}, nil
	}
	// The pod's labels, annotations and images are the older target's now.
	from, err := t.templateOf(ctx, state.Revision)
	if err != nil {
		return podStep{}, err
	}
	now := metav1.NewTime(u.clock.Now())
	next := &inplace.UpdateState{
		Revision:   t.revision,
		From:       state.Revision,
		Since:      state.Since,
		PatchedAt:  &now,
		Containers: inplace.Snapshot(pod, changedContainers(pod, t.template)),
	}
	logf.FromContext(ctx).V(1).Info("Retargeting an in-place update", "pod", klog.KObj(pod), "from", state.Revision, "to", t.revision)
	return podStep{}, u.write(ctx, pod, next, from, t)
}

// finish opens the gate of a pod whose update completed, if it is not open
// yet, then relabels the pod to its new revision and clears the state.
func (u *podUpdater) finish(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, t *podTarget) error {
	if !gateOpen(pod) {
		if err := u.openGate(ctx, pod); err != nil {
			return ignoreConflict(err)
		}
	}
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
	return nil
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

// abandon ends an update the workload no longer wants (the user handed the
// rollout back to the native controller) whose images were never patched:
// the gate opens again.
func (u *podUpdater) abandon(ctx context.Context, pod *corev1.Pod) error {
	return ignoreConflict(u.openGate(ctx, pod))
}

// closeGate marks the pod not ready for an in-place update to revision,
// together with its Ready condition as the kubelet would compute it: written
// alone, the gate makes the kubelet re-sync the pod, and an image patch
// right after waits behind that sync.
func (u *podUpdater) closeGate(ctx context.Context, pod *corev1.Pod, revision string) error {
	base := pod.DeepCopy()
	now := metav1.NewTime(u.clock.Now())
	setCondition(pod, corev1.PodCondition{
		Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse,
		Reason: inplace.ReasonInPlaceUpdate, Message: "updating in place to revision " + revision,
	}, now)
	if ready := inplace.ReadyCondition(pod, corev1.ConditionFalse); ready.Reason == inplace.ReasonReadinessGatesNotReady {
		// The containers are ready: Ready now hangs on the gates.
		setCondition(pod, ready, now)
	}
	return u.client.Status().Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{}))
}

// openGate opens the pod's gate; see OpenGate.
func (u *podUpdater) openGate(ctx context.Context, pod *corev1.Pod) error {
	return OpenGate(ctx, u.client, pod, metav1.NewTime(u.clock.Now()))
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
