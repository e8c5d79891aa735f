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
	// eligibility decides whether the pod can go in place from a template
	// to the target (inplace.Eligibility, with its node's kubelet version).
	eligibility func(ctx context.Context, pod *corev1.Pod, from *corev1.PodTemplateSpec) (inplace.TemplateDiff, string)
}

// podStep is what advancing one pod's update came to.
type podStep struct {
	// requeueAfter, when set, is when the pod needs looking at again with
	// no event to say so (a grace period running out).
	requeueAfter time.Duration
	// failure says why the pod's update cannot complete, if it cannot: a
	// stable text that changes only when the cause does.
	failure string
}

// podUpdater performs the per-pod in-place update of DESIGN.md, "One pod,
// in place": close the gate, patch the images, open the gate, relabel the
// pod once its new containers are ready. Every write is conditional on the
// resourceVersion it read, so a stale read cannot double-apply a step; a
// conflict ends the pass, and the pod's next watch event resumes it.
//
// What the order of the writes must respect is how the kubelet computes a
// pod's Ready condition (pkg/kubelet/status):
//   - It computes it in a pod sync, from the pod as it last received it,
//     and, on a readiness probe's change, from the conditions it cached at
//     its last sync. A sync soon after another waits for its next container
//     relist, up to a second.
//   - A status write by someone else that disagrees with its computation of
//     Ready makes it sync the pod (to correct Ready); one that agrees does
//     not.
//   - Every ten seconds it writes again the status it cached wherever the
//     API server's differs: Ready as it last computed it, however stale.
//   - It receives a pod's writes in order, and kills a replaced container in
//     the sync that takes in the new image, after computing that sync's
//     status; a preStop hook keeps the old container running, and reported
//     ready, for seconds after.
//
// Guarded (the readiness guard policy in force, see Guard), the API server
// refuses any status that makes the pod Ready while its gate is False or a
// replaced container runs, so the fast order is safe:
//   - the gate closes with Ready False in the kubelet's own words (no sync
//     of the kubelet for it; the kubelet's ten-second rewrite of a stale
//     Ready True is refused), and the images change at once: the sync that
//     takes them in is the one that kills the old containers, and it sees
//     the gate closed;
//   - the gate opens as soon as the kubelet reports the patched generation,
//     so that its sync after the kill, the first with the new containers,
//     caches the gate open, and it turns the pod Ready the moment a new
//     container's probe passes.
//
// Unguarded, the same would let the kubelet's ten-second rewrite turn the
// pod Ready again before the kill (seen under load), so the safe order
// costs the pod about a second more of not being Ready:
//   - the gate closes alone, and the kubelet turns the pod not Ready itself,
//     from a status computed with the gate closed; the images change once it
//     has (the proof that it has taken the gate in);
//   - the gate opens only once the kubelet reports every replaced container
//     gone.
//
// Either way the manager never writes Ready True. The revision label
// changes with the images: the workload's status then counts the pod
// updated and not Ready, as it counts a recreated pod from its creation,
// and its controller stops trying to recreate it. The state is cleared once
// the new containers are ready.
type podUpdater struct {
	client   client.Client
	live     client.Reader
	recorder events.EventRecorder
	clock    clock.PassiveClock
	// guard tells whether the readiness guard policy is in force; nil is
	// unguarded.
	guard Guard
}

// Guard tells whether the API server enforces the readiness guard: the
// ValidatingAdmissionPolicy of manifests/base that refuses a pod status
// making a managed pod Ready while its InPlaceUpdateReady gate is False or
// while a container its in-place update replaces still runs. It is what
// makes the fast order of writes safe.
type Guard interface {
	Guarded() bool
}

func (u *podUpdater) guarded() bool { return u.guard != nil && u.guard.Guarded() }

// begin starts the in-place update of pod from the template it runs (from)
// to t, the change being d: it reads the pod live and closes its gate. A
// change that restarts no container (labels only) is written at once with
// the new revision: the pod never leaves Ready.
func (u *podUpdater) begin(ctx context.Context, cached *corev1.Pod, from *corev1.PodTemplateSpec, d inplace.TemplateDiff, t *podTarget) error {
	pod := &corev1.Pod{}
	if err := u.live.Get(ctx, client.ObjectKeyFromObject(cached), pod); err != nil {
		return client.IgnoreNotFound(err)
	}
	if pod.UID != cached.UID || inplace.Updating(pod) || pod.Labels[t.revisionLabel] == t.revision || pod.DeletionTimestamp != nil {
		return nil // the cache was behind; the pod's event brings it back
	}
	containers := d.Restarts()
	if len(containers) == 0 {
		base := pod.DeepCopy()
		applyTemplateMetadata(pod, from, t.template)
		pod.Labels[t.revisionLabel] = t.revision
		if err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return ignoreConflict(err)
		}
		u.recorder.Eventf(pod, t.workload, corev1.EventTypeNormal, ReasonInPlaceUpdated, "Update",
			"Updated in place to revision %s: labels only, no container restarted", t.revision)
		return nil
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
		return podStep{}, u.recreate(ctx, pod, t, inplace.FallbackBadState, err.Error())
	}
	if state == nil {
		// The gate is closed; the images are not patched yet. The time it
		// closed is kept to the second, rounded down: a second more makes
		// sure the whole grace period has passed.
		gate := inplace.GateCondition(pod)
		if t.grace > 0 && gate != nil {
			if wait := gate.LastTransitionTime.Add(t.grace + time.Second).Sub(u.clock.Now()); wait > 0 {
				return podStep{requeueAfter: wait}, nil
			}
		}
		return podStep{}, u.patch(ctx, pod, t)
	}
	progress := inplace.CheckProgress(pod, state)
	if state.Revision != t.revision {
		return podStep{failure: progress.Failure}, u.retarget(ctx, pod, state, progress, t)
	}
	switch {
	case progress.Failure != "":
		if progress.GateMayOpen(u.guarded()) && !gateOpen(pod) {
			// Nothing old runs: the gate need not hold the pod; its Ready
			// follows the failing container.
			if err := u.openGate(ctx, pod); err != nil {
				return podStep{}, ignoreConflict(err)
			}
		}
		return podStep{failure: progress.Failure}, u.fail(ctx, pod, state, t, progress)
	case progress.Done:
		return podStep{}, u.finish(ctx, pod, state, t)
	case progress.GateMayOpen(u.guarded()) && !gateOpen(pod):
		return podStep{}, ignoreConflict(u.openGate(ctx, pod))
	}
	return podStep{}, nil
}

func gateOpen(pod *corev1.Pod) bool {
	c := inplace.GateCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue
}

// patch records the update's state and changes the pod's images, labels and
// annotations to the target's, in one write, from a live read: the recorded
// containers are those the kubelet will replace. The containers to change
// come from the diff between the pod's revision and the target, not from
// the live pod's images: an image rewritten at the pod's creation (a
// registry mirror, a digest pinned by a policy) is left alone.
func (u *podUpdater) patch(ctx context.Context, cached *corev1.Pod, t *podTarget) error {
	pod := &corev1.Pod{}
	if err := u.live.Get(ctx, client.ObjectKeyFromObject(cached), pod); err != nil {
		return client.IgnoreNotFound(err)
	}
	if state, err := inplace.StateOf(pod); pod.UID != cached.UID || !inplace.Updating(pod) || state != nil || err != nil {
		return nil // the cache was behind; the pod's event brings it back
	}
	if ready := condition(pod, corev1.PodReady); !u.guarded() && ready != nil && ready.Status == corev1.ConditionTrue {
		// Unguarded, the gate closed alone and the kubelet turns the pod
		// not Ready itself, from a status it computed with the gate closed:
		// the proof that it has taken the gate in. The images change after.
		logf.FromContext(ctx).V(1).Info("Waiting for the kubelet to take in the closed gate", "pod", klog.KObj(pod))
		return nil
	}
	from, err := t.templateOf(ctx, pod.Labels[t.revisionLabel])
	if err != nil {
		return err
	}
	d, fallback := t.eligibility(ctx, pod, from)
	if fallback != "" {
		// The pod's revision went from the history, or the target changed,
		// since the gate closed: nothing to patch; the native controller
		// recreates it.
		return ignoreConflict(u.openGate(ctx, pod))
	}
	now := metav1.NewTime(u.clock.Now())
	state := &inplace.UpdateState{
		Revision:   t.revision,
		From:       pod.Labels[t.revisionLabel],
		Since:      inplace.GateCondition(pod).LastTransitionTime,
		PatchedAt:  &now,
		Containers: inplace.Snapshot(pod, d.Restarts()),
	}
	return u.write(ctx, pod, state, from, d, t)
}

// write records state on the pod, sets the images the diff changes and the
// labels and annotations to the target's, and labels the pod with the
// revision it now runs, in one conditional write. From then on the pod's
// spec is that revision's, and its workload's status counts it updated and
// not Ready (its gate is closed), as it counts a recreated pod from its
// creation: every tool keeps waiting for it to be Ready, and the workload's
// controller no longer tries to recreate it. A write refused for another
// reason than a conflict (another admission webhook's policy, say) hands
// the pod to the native controller.
func (u *podUpdater) write(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, from *corev1.PodTemplateSpec, d inplace.TemplateDiff, t *podTarget) error {
	base := pod.DeepCopy()
	setImages(pod, t.template, d.Restarts())
	applyTemplateMetadata(pod, from, t.template)
	pod.Labels[t.revisionLabel] = state.Revision
	metav1.SetMetaDataAnnotation(&pod.ObjectMeta, inplace.AnnotationUpdateState, state.Encode())
	err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{}))
	if err == nil || apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil
	}
	if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return u.recreate(ctx, base, t, inplace.FallbackPatchRefused, err.Error())
	}
	return fmt.Errorf("patching pod %s: %w", klog.KObj(pod), err)
}

// recreate hands a pod whose update cannot go on in place to the native
// controller: it deletes the pod (conditionally on what was read), and its
// controller creates it again at the target revision. The pod is not ready
// already (its gate is closed), so this spends no more of maxUnavailable.
func (u *podUpdater) recreate(ctx context.Context, pod *corev1.Pod, t *podTarget, reason, detail string) error {
	err := u.client.Delete(ctx, pod, client.Preconditions{UID: &pod.UID, ResourceVersion: &pod.ResourceVersion})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // the pod changed or went; its next event brings it back
	}
	if err != nil {
		return fmt.Errorf("deleting pod %s to recreate it: %w", klog.KObj(pod), err)
	}
	fallbacksTotal.WithLabelValues(t.kind, reason).Inc()
	u.recorder.Eventf(pod, t.workload, corev1.EventTypeWarning, ReasonRecreatedNotInPlace, "Recreate",
		"Deleted for %s to recreate, not in place: %s: %s", klog.KObj(t.workload), inplace.FallbackWords[reason], detail)
	logf.FromContext(ctx).Info("Recreating a pod instead of updating it in place", "pod", klog.KObj(pod), "reason", reason, "detail", detail)
	return nil
}

// retarget moves a pod whose update aimed at an older revision to the new
// one, once the kubelet has settled the older patch (the replaced
// containers gone, or the update failed): a patch on top of one the kubelet
// has not acted on would leave it unclear which container is whose.
//   - Done (ready on the older target): it is relabelled to that revision,
//     and the rollout updates it again like any other pod, closing its gate
//     first.
//   - Not ready (it failed, or never became ready): it is patched at once;
//     changing the image back rolls a failed pod back in place.
//   - The new target cannot be reached in place from the older one: the
//     native controller recreates the pod; until then it finishes or stays
//     as it is.
func (u *podUpdater) retarget(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, progress inplace.Progress, t *podTarget) error {
	if progress.GateMayOpen(u.guarded()) && !gateOpen(pod) {
		if err := u.openGate(ctx, pod); err != nil {
			return ignoreConflict(err)
		}
	}
	if progress.Done {
		return u.finish(ctx, pod, state, t)
	}
	if !progress.Settled() {
		return nil
	}
	from, err := t.templateOf(ctx, state.Revision)
	if err != nil {
		return err
	}
	d, fallback := t.eligibility(ctx, pod, from)
	if fallback != "" {
		return nil
	}
	now := metav1.NewTime(u.clock.Now())
	next := &inplace.UpdateState{
		Revision:   t.revision,
		From:       state.Revision,
		Since:      state.Since,
		PatchedAt:  &now,
		Containers: inplace.Snapshot(pod, d.Restarts()),
	}
	logf.FromContext(ctx).V(1).Info("Retargeting an in-place update", "pod", klog.KObj(pod), "from", state.Revision, "to", t.revision)
	return u.write(ctx, pod, next, from, d, t)
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

// fail reports, once per cause, a pod whose update cannot complete. The pod
// stays not ready and counts against maxUnavailable, so the rollout halts
// instead of spreading the failure. The cause is kept in the state in a
// stable form (the container and the kubelet's reason): the kubelet's
// message changes with every back-off and would repeat the event.
func (u *podUpdater) fail(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, t *podTarget, p inplace.Progress) error {
	if state.Failure == p.Failure {
		return nil
	}
	base := pod.DeepCopy()
	state.Failure = p.Failure
	metav1.SetMetaDataAnnotation(&pod.ObjectMeta, inplace.AnnotationUpdateState, state.Encode())
	if err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ignoreConflict(err)
	}
	updatesTotal.WithLabelValues(t.kind, resultFailure).Inc()
	u.recorder.Eventf(pod, t.workload, corev1.EventTypeWarning, ReasonInPlaceUpdateFailed, "Update",
		"In-place update to revision %s cannot complete: %s", state.Revision, p.Detail)
	logf.FromContext(ctx).Info("An in-place update cannot complete", "pod", klog.KObj(pod), "revision", state.Revision, "failure", p.Detail)
	return nil
}

// settle finishes what an update left on a pod that the rollout no longer
// wants (the workload handed back to its native controller, the pod out of
// the rollout's range or orphaned): an update not patched yet is abandoned,
// one whose containers were replaced gets its gate open, and one done is
// relabelled to the revision it reached.
func (u *podUpdater) settle(ctx context.Context, pod *corev1.Pod, revisionLabel string) error {
	state, err := inplace.StateOf(pod)
	if err != nil {
		return nil // recreated by the rollout, or left to release-holds
	}
	if state == nil {
		return ignoreConflict(u.openGate(ctx, pod))
	}
	progress := inplace.CheckProgress(pod, state)
	if progress.GateMayOpen(u.guarded()) && !gateOpen(pod) {
		if err := u.openGate(ctx, pod); err != nil {
			return ignoreConflict(err)
		}
	}
	if !progress.Done {
		return nil
	}
	base := pod.DeepCopy()
	pod.Labels[revisionLabel] = state.Revision
	delete(pod.Annotations, inplace.AnnotationUpdateState)
	return ignoreConflict(u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})))
}

// closeGate marks the pod not ready for an in-place update to revision.
// Guarded, Ready False goes with it in the kubelet's own words: written
// alone, the gate makes the kubelet re-sync the pod, and an image patch
// right after waits behind that sync. Unguarded, the gate goes alone: the
// kubelet's sync is the proof the patch waits for.
func (u *podUpdater) closeGate(ctx context.Context, pod *corev1.Pod, revision string) error {
	base := pod.DeepCopy()
	now := metav1.NewTime(u.clock.Now())
	setCondition(pod, corev1.PodCondition{
		Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse,
		Reason: inplace.ReasonInPlaceUpdate, Message: "updating in place to revision " + revision,
	}, now)
	if ready := inplace.ReadyCondition(pod, corev1.ConditionFalse); u.guarded() && ready.Reason == inplace.ReasonReadinessGatesNotReady {
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

func condition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// setImages sets the named containers (and native sidecars) of the pod to
// the template's images.
func setImages(pod *corev1.Pod, t *corev1.PodTemplateSpec, names []string) {
	for _, name := range names {
		for _, pair := range []struct{ pod, tpl []corev1.Container }{
			{pod.Spec.InitContainers, t.Spec.InitContainers},
			{pod.Spec.Containers, t.Spec.Containers},
		} {
			for i := range pair.pod {
				for _, tc := range pair.tpl {
					if tc.Name == name && pair.pod[i].Name == name {
						pair.pod[i].Image = tc.Image
					}
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
