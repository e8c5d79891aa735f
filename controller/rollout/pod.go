package rollout

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/inplace-dev/inplace/inplace"
)

// Deadlines of a pod's in-place update, from its image patch. An update
// that passes one without the progress it bounds fails, with an event:
// never a silent wait.
const (
	// ObserveDeadline bounds the kubelet's taking in of the patch (the
	// pod's observedGeneration reaching its generation): seconds on a
	// healthy node. Past it the pod is recreated.
	ObserveDeadline = 2 * time.Minute
	// ResizeDeadline bounds how long the kubelet may defer a resize it
	// could make (PodResizePending, Deferred: the node short of room right
	// now) or keep failing it (PodResizeInProgress, Error). Past it the pod
	// is recreated: a new pod is scheduled where its resources fit.
	ResizeDeadline = 2 * time.Minute
	// DefaultUpdateDeadline bounds the whole update, from the patch to its
	// new containers Ready (a pull, a start, the readiness probe). Past it
	// the update is reported failed and the pod left as it is, as a new pod
	// that never became Ready would be; the rollout halts at maxUnavailable.
	DefaultUpdateDeadline = 10 * time.Minute
)

// target is what a pass updates a workload's pods to.
type target struct {
	// kind is the workload's kind, for metrics.
	kind string
	// workload is the pods' owner, for events.
	workload client.Object
	w        Workload
	// rev is the revision the pods go to.
	rev *Revision
	// grace is how long a pod stays not ready before its images change.
	grace time.Duration
	// kubeletVersion returns the version of a node's kubelet.
	kubeletVersion func(ctx context.Context, node string) string
}

// templateOf returns the template of a revision of the workload, nil when
// it is gone.
func (t *target) templateOf(ctx context.Context, name string) (*corev1.PodTemplateSpec, error) {
	if name == "" {
		return nil, nil
	}
	rev, err := t.w.Revision(ctx, name)
	if rev == nil || err != nil {
		return nil, err
	}
	return rev.Template, nil
}

// eligibility decides whether the pod can go in place from a template to
// the target (inplace.Eligibility), on its node's kubelet.
func (t *target) eligibility(ctx context.Context, pod *corev1.Pod, from *corev1.PodTemplateSpec) (inplace.TemplateDiff, string) {
	version := ""
	if t.kubeletVersion != nil {
		version = t.kubeletVersion(ctx, pod.Spec.NodeName)
	}
	return inplace.Eligibility(pod, from, t.rev.Template, version)
}

// mark sets on the pod what makes its controller count it at the named
// revision; false when that revision is gone.
func (t *target) mark(ctx context.Context, pod *corev1.Pod, name string) (bool, error) {
	if name == t.rev.Name {
		t.rev.Mark(pod)
		return true, nil
	}
	rev, err := t.w.Revision(ctx, name)
	if rev == nil || err != nil {
		return false, err
	}
	rev.Mark(pod)
	return true, nil
}

// podStep is what advancing one pod's update came to.
type podStep struct {
	// requeueAfter, when set, is when the pod needs looking at again with
	// no event to say so (a grace period or a deadline running out).
	requeueAfter time.Duration
	// failure says why the pod's update cannot complete, if it cannot: a
	// stable text that changes only when the cause does.
	failure string
}

// podUpdater performs the per-pod in-place update of DESIGN.md, "One pod,
// in place": close the gate, patch the images, open the gate, clear the
// state once the new containers are ready. Every write is conditional on
// the resourceVersion it read, so a stale read cannot double-apply a step;
// a conflict ends the pass, and the pod's next watch event resumes it.
//
// The order of the writes, and why it cannot make a pod flip Ready, rests
// on how the kubelet computes a pod's Ready condition: see
// docs/design/2026-11-30-per-pod-update-order.md. Guarded (the readiness
// guard in force) the gate closes with Ready False, the images change at
// once and the gate opens once the kubelet has taken the patch in;
// unguarded the gate closes alone, the images change once the kubelet has
// turned the pod not Ready itself, and the gate opens once the replaced
// containers are gone. The revision's marks change with the images: the
// workload's status counts the pod updated and not Ready, as it counts a
// recreated pod from its creation.
type podUpdater struct {
	client   client.Client
	live     client.Reader
	recorder events.EventRecorder
	clock    clock.PassiveClock
	// guard tells whether the readiness guard policy is in force; nil is
	// unguarded.
	guard Guard
	// deadline bounds a whole update (DefaultUpdateDeadline when 0).
	deadline time.Duration
}

func (u *podUpdater) guarded() bool { return IsGuarded(u.guard) }

func (u *podUpdater) now() metav1.Time { return metav1.NewTime(u.clock.Now()) }

// begin starts the in-place update of pod from the template it runs (from)
// to t, the change being d: it reads the pod live and closes its gate. A
// change that restarts no container (labels only, or images the pod already
// runs) is written at once: the pod never leaves Ready.
func (u *podUpdater) begin(ctx context.Context, cached *corev1.Pod, from *corev1.PodTemplateSpec, d inplace.TemplateDiff, t *target) error {
	pod := &corev1.Pod{}
	if err := u.live.Get(ctx, client.ObjectKeyFromObject(cached), pod); err != nil {
		return client.IgnoreNotFound(err)
	}
	if pod.UID != cached.UID || inplace.Updating(pod) || t.w.RevisionOf(pod) == t.rev.Name || pod.DeletionTimestamp != nil {
		return nil // the cache was behind; the pod's event brings it back
	}
	c := changesOf(pod, t.rev.Template, d)
	if len(c.restarts) == 0 && len(c.resizes) == 0 {
		return u.relabel(ctx, pod, from, t, "labels only, no container restarted")
	}
	if len(c.restarts) == 0 {
		return u.resizeOnly(ctx, pod, c, t)
	}
	containers := c.restarts
	if err := closeGate(ctx, u.client, pod, t.rev.Name, u.guarded(), u.now()); err != nil {
		return u.refused(ctx, pod, t, err)
	}
	u.recorder.Eventf(pod, t.workload, corev1.EventTypeNormal, ReasonInPlaceUpdateStarted, "Update",
		"Updating %v in place to revision %s", containers, t.rev.Name)
	logf.FromContext(ctx).V(1).Info("Began an in-place update", "pod", klog.KObj(pod), "revision", t.rev.Name, "containers", containers)
	if t.grace == 0 {
		_, err := u.advance(ctx, pod, t)
		return err
	}
	return nil
}

// refused handles a write of the update refused: a conflict or a gone pod
// end the pass (the pod's event brings it back); another refusal (another
// admission policy's) hands the pod to its native controller, which
// recreates it; anything else is retried.
func (u *podUpdater) refused(ctx context.Context, pod *corev1.Pod, t *target, err error) error {
	return u.refusedAs(ctx, pod, t, err, inplace.FallbackPatchRefused, "writing")
}

// refusedAs is refused, with the fallback reason a refusal recreates the pod
// for, and what the write was in the error that is retried.
func (u *podUpdater) refusedAs(ctx context.Context, pod *corev1.Pod, t *target, err error, reason, writing string) error {
	switch {
	case err == nil, apierrors.IsConflict(err), apierrors.IsNotFound(err):
		return nil
	case refusedByGuard(err):
		// inplace's own readiness guard: the write was made on a view the
		// guard does not share (the manager in the unguarded order for a
		// moment, a status it has not read). Nothing was written; the
		// next pass writes again from a fresh read. Recreating the pod
		// for it would be a fallback the user never asked for.
		return fmt.Errorf("%s pod %s: refused by the readiness guard; writing again: %w", writing, klog.KObj(pod), err)
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return u.recreate(ctx, pod, t, reason, err.Error())
	}
	return fmt.Errorf("%s pod %s: %w", writing, klog.KObj(pod), err)
}

// refusedByGuard reports whether err is inplace's readiness guard refusing
// a write, by the API server's words for a ValidatingAdmissionPolicy.
func refusedByGuard(err error) bool {
	return (apierrors.IsForbidden(err) || apierrors.IsInvalid(err)) &&
		strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+inplace.ReadinessGuardName+"'")
}

// relabel writes an update that restarts no container: the target's
// labels, annotations and marks, and the gate open if a begun update had
// closed it.
func (u *podUpdater) relabel(ctx context.Context, pod *corev1.Pod, from *corev1.PodTemplateSpec, t *target, what string) error {
	base := pod.DeepCopy()
	applyTemplateMetadata(pod, from, t.rev.Template)
	t.rev.Mark(pod)
	if err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return u.refused(ctx, base, t, err)
	}
	if !GateOpen(pod) && inplace.GateCondition(pod) != nil {
		if err := OpenGate(ctx, u.client, pod, u.now()); err != nil {
			return ignoreConflict(err)
		}
	}
	updatesTotal.WithLabelValues(t.kind, resultSuccess).Inc()
	u.recorder.Eventf(pod, t.workload, corev1.EventTypeNormal, ReasonInPlaceUpdated, "Update",
		"Updated in place to revision %s: %s", t.rev.Name, what)
	return nil
}

// advance takes the next step of a pod whose update is in progress.
func (u *podUpdater) advance(ctx context.Context, pod *corev1.Pod, t *target) (podStep, error) {
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
	if state.Revision != t.rev.Name {
		return podStep{failure: progress.Failure}, u.retarget(ctx, pod, state, progress, t)
	}
	if len(state.Resize) > 0 {
		// The resize goes through its own subresource: written again if a
		// conflict lost it; one the kubelet cannot make recreates the pod.
		if err := u.resize(ctx, pod, state.Resize, t); err != nil {
			return podStep{}, err
		}
		switch progress.Resize {
		case corev1.PodReasonInfeasible:
			return podStep{}, u.recreate(ctx, pod, t, inplace.FallbackResizeInfeasible, progress.ResizeMessage)
		case corev1.PodReasonDeferred, inplace.ResizeError:
			if at := state.PatchedAt.Add(ResizeDeadline); u.clock.Now().After(at) {
				return podStep{}, u.recreate(ctx, pod, t, inplace.FallbackResizeDeferred,
					fmt.Sprintf("%s %v after it was asked for: %s", progress.Resize, ResizeDeadline, progress.ResizeMessage))
			}
		}
	}
	stalled, failure, next := u.deadlines(pod, state, progress)
	if stalled != "" {
		return podStep{}, u.recreate(ctx, pod, t, inplace.FallbackStalled, stalled)
	}
	if failure != "" && progress.Failure == "" {
		progress.Failure, progress.Detail = failure, failure
	}
	switch {
	case progress.Failure != "":
		if progress.GateMayOpen(u.guarded()) && !GateOpen(pod) {
			// Nothing old runs: the gate need not hold the pod; its Ready
			// follows the failing container.
			if err := OpenGate(ctx, u.client, pod, u.now()); err != nil {
				return podStep{}, ignoreConflict(err)
			}
		}
		return podStep{failure: progress.Failure, requeueAfter: next}, u.fail(ctx, pod, state, t, progress)
	case progress.Done:
		return podStep{}, u.finish(ctx, pod, state, t)
	case progress.GateMayOpen(u.guarded()) && !GateOpen(pod):
		return podStep{requeueAfter: next}, ignoreConflict(OpenGate(ctx, u.client, pod, u.now()))
	}
	return podStep{requeueAfter: next}, nil
}

// deadlines judges a patched update against its deadlines: stalled says why
// it is recreated (the kubelet did not take the patch in, or did not take
// the old containers down); failure says why it is reported failed (its new
// containers not Ready in time); next is when the next deadline falls.
func (u *podUpdater) deadlines(pod *corev1.Pod, state *inplace.UpdateState, p inplace.Progress) (stalled, failure string, next time.Duration) {
	if state.PatchedAt == nil || p.Done || p.Failure != "" {
		return "", "", 0
	}
	now := u.clock.Now()
	patched := state.PatchedAt.Time
	grace := time.Duration(ptr.Deref(pod.Spec.TerminationGracePeriodSeconds, corev1.DefaultTerminationGracePeriodSeconds)) * time.Second
	deadline := u.deadline
	if deadline <= 0 {
		deadline = DefaultUpdateDeadline
	}
	switch {
	case !p.Observed:
		if at := patched.Add(ObserveDeadline); now.Before(at) {
			return "", "", at.Sub(now)
		}
		return fmt.Sprintf("the kubelet of node %s has not taken in the image patch %v after it", pod.Spec.NodeName, ObserveDeadline), "", 0
	case !p.Replaced:
		if at := patched.Add(ObserveDeadline + grace); now.Before(at) {
			return "", "", at.Sub(now)
		}
		return fmt.Sprintf("the containers it replaces %v still run %v after the image patch", sortedNames(state.Containers), ObserveDeadline+grace), "", 0
	}
	if at := patched.Add(deadline); now.Before(at) {
		return "", "", at.Sub(now)
	}
	if len(state.Containers) == 0 || p.Started {
		return "", fmt.Sprintf("the kubelet has not applied its resize of %v %v after it was asked for", sortedNames(state.Resize), deadline), 0
	}
	return "", fmt.Sprintf("its new containers %v are not Ready %v after the image patch", sortedNames(state.Containers), deadline), 0
}

// patch records the update's state and changes the pod's images, labels and
// annotations to the target's, in one write, from a live read: the recorded
// containers are those the kubelet will replace. The containers to change
// are those of the diff between the pod's revision and the target whose
// image the pod does not run yet: an image rewritten at the pod's creation
// (a registry mirror) is left alone, and one set by hand to the target's
// already restarts nothing.
func (u *podUpdater) patch(ctx context.Context, cached *corev1.Pod, t *target) error {
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
	from, err := t.templateOf(ctx, t.w.RevisionOf(pod))
	if err != nil {
		return err
	}
	d, fallback := t.eligibility(ctx, pod, from)
	if fallback != "" {
		// The pod's revision went from the history, or the target changed,
		// since the gate closed: nothing to patch; the native controller
		// recreates it.
		return ignoreConflict(OpenGate(ctx, u.client, pod, u.now()))
	}
	c := changesOf(pod, t.rev.Template, d)
	if len(c.restarts) == 0 && len(c.resizes) == 0 {
		return u.relabel(ctx, pod, from, t, "no container restarted, it runs the revision's images already")
	}
	now := u.now()
	state := &inplace.UpdateState{
		Revision:   t.rev.Name,
		From:       t.w.RevisionOf(pod),
		Since:      inplace.GateCondition(pod).LastTransitionTime,
		PatchedAt:  &now,
		Containers: inplace.Snapshot(pod, c.restarts),
		Resize:     c.resizes,
	}
	if err := u.write(ctx, pod, state, from, c.images, t); err != nil {
		return err
	}
	return u.resize(ctx, pod, c.resizes, t)
}

// write records state on the pod, sets the images of containers to the
// target's, the labels and annotations to the target's and marks the pod at
// the revision it now runs, in one conditional write. From then on the pod's
// spec is that revision's, and its workload's status counts it updated and
// not Ready (its gate is closed), as it counts a recreated pod from its
// creation: every tool keeps waiting for it to be Ready, and the workload's
// controller no longer tries to replace it. A write refused for another
// reason than a conflict (another admission webhook's policy, say) hands
// the pod to the native controller.
func (u *podUpdater) write(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, from *corev1.PodTemplateSpec, containers []string, t *target) error {
	base := pod.DeepCopy()
	setImages(pod, t.rev.Template, containers)
	applyTemplateMetadata(pod, from, t.rev.Template)
	t.rev.Mark(pod)
	metav1.SetMetaDataAnnotation(&pod.ObjectMeta, inplace.AnnotationUpdateState, state.Encode())
	err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{}))
	return u.refused(ctx, base, t, err)
}

// resizeOnly begins an update whose only change is a resize that restarts
// nothing: the pod stays Ready throughout, its gate open. The state goes
// first, with the resources asked for, then the resize; the pod is marked at
// the revision once the kubelet reports them applied (finish), so that its
// workload counts it updated only then.
func (u *podUpdater) resizeOnly(ctx context.Context, pod *corev1.Pod, c changes, t *target) error {
	now := u.now()
	state := &inplace.UpdateState{Revision: t.rev.Name, From: t.w.RevisionOf(pod), Since: now, PatchedAt: &now, Resize: c.resizes}
	base := pod.DeepCopy()
	metav1.SetMetaDataAnnotation(&pod.ObjectMeta, inplace.AnnotationUpdateState, state.Encode())
	if err := u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return u.refused(ctx, base, t, err)
	}
	u.recorder.Eventf(pod, t.workload, corev1.EventTypeNormal, ReasonInPlaceUpdateStarted, "Resize",
		"Resizing %v in place to revision %s, no container restarted", sortedNames(c.resizes), t.rev.Name)
	return u.resize(ctx, pod, c.resizes, t)
}

// resize asks the kubelet, through the pod's resize subresource, for the
// resources of want where the pod's spec does not say them yet. A resize
// refused for another reason than a conflict (a node that cannot resize)
// hands the pod to its native controller.
func (u *podUpdater) resize(ctx context.Context, pod *corev1.Pod, want map[string]corev1.ResourceRequirements, t *target) error {
	base := pod.DeepCopy()
	changed := false
	for name, r := range want {
		if c := containerOf(pod.Spec.InitContainers, pod.Spec.Containers, name); c != nil &&
			!(inplace.ResourcesApplied(c.Resources, r) && inplace.ResourcesApplied(r, c.Resources)) {
			c.Resources = *r.DeepCopy()
			changed = true
		}
	}
	if !changed {
		return nil
	}
	err := u.client.SubResource("resize").Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{}))
	return u.refusedAs(ctx, base, t, err, inplace.FallbackResizeRefused, "resizing")
}

// recreate hands a pod whose update cannot go on in place to the native
// controller: it deletes the pod (conditionally on what was read), and its
// controller creates it again at the target revision. The pod is not ready
// already (its gate is closed), so this spends no more of maxUnavailable.
func (u *podUpdater) recreate(ctx context.Context, pod *corev1.Pod, t *target, reason, detail string) error {
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
//   - Done (ready on the older target): it is marked at that revision, and
//     the rollout updates it again like any other pod, closing its gate
//     first.
//   - Not ready (it failed, or never became ready): it is patched at once;
//     changing the image back rolls a failed pod back in place.
//   - The new target cannot be reached in place from the older one: the
//     native controller recreates the pod; until then it finishes or stays
//     as it is.
func (u *podUpdater) retarget(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, progress inplace.Progress, t *target) error {
	if progress.GateMayOpen(u.guarded()) && !GateOpen(pod) {
		if err := OpenGate(ctx, u.client, pod, u.now()); err != nil {
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
	c := changesOf(pod, t.rev.Template, d)
	now := u.now()
	next := &inplace.UpdateState{
		Revision:   t.rev.Name,
		From:       state.Revision,
		Since:      state.Since,
		PatchedAt:  &now,
		Containers: inplace.Snapshot(pod, c.restarts),
		Resize:     c.resizes,
	}
	if len(c.restarts) == 0 {
		// Back to images it runs already: the containers the older patch
		// replaced are the ones to wait for.
		next.Containers = state.Containers
	}
	logf.FromContext(ctx).V(1).Info("Retargeting an in-place update", "pod", klog.KObj(pod), "from", state.Revision, "to", t.rev.Name)
	if err := u.write(ctx, pod, next, from, c.images, t); err != nil {
		return err
	}
	return u.resize(ctx, pod, c.resizes, t)
}

// finish opens the gate of a pod whose update completed, if it is not open
// yet, then marks the pod at its new revision and clears the state.
func (u *podUpdater) finish(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, t *target) error {
	if !GateOpen(pod) {
		if err := OpenGate(ctx, u.client, pod, u.now()); err != nil {
			return ignoreConflict(err)
		}
	}
	base := pod.DeepCopy()
	if len(state.Containers) == 0 {
		// A resize that restarted nothing is marked at its revision only
		// now that the kubelet has applied it.
		from, err := t.templateOf(ctx, state.From)
		if err != nil {
			return err
		}
		if to, err := t.templateOf(ctx, state.Revision); err != nil {
			return err
		} else if to != nil {
			applyTemplateMetadata(pod, from, to)
		}
	}
	if _, err := t.mark(ctx, pod, state.Revision); err != nil {
		return err
	}
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
func (u *podUpdater) fail(ctx context.Context, pod *corev1.Pod, state *inplace.UpdateState, t *target, p inplace.Progress) error {
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
// the rollout's range): an update not patched yet is abandoned, one whose
// containers were replaced gets its gate open, and one done is marked at the
// revision it reached.
func (u *podUpdater) settle(ctx context.Context, pod *corev1.Pod, t *target) error {
	state, err := inplace.StateOf(pod)
	if err != nil {
		return nil // recreated by the rollout, or left to release-holds
	}
	if state == nil {
		return ignoreConflict(OpenGate(ctx, u.client, pod, u.now()))
	}
	progress := inplace.CheckProgress(pod, state)
	// Nothing resends a resize the rollout no longer wants, so the gate
	// does not wait for one.
	if progress.TakenIn(u.guarded()) && !GateOpen(pod) {
		if err := OpenGate(ctx, u.client, pod, u.now()); err != nil {
			return ignoreConflict(err)
		}
	}
	if !progress.Done {
		return nil
	}
	base := pod.DeepCopy()
	if _, err := t.mark(ctx, pod, state.Revision); err != nil {
		return err
	}
	delete(pod.Annotations, inplace.AnnotationUpdateState)
	return ignoreConflict(u.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})))
}

// changes are what an update really changes on a live pod: the containers
// whose image in its spec is not the target's, those resized (with the
// resources they go to), and those the update restarts (an image, or a
// resize the container's resizePolicy applies by a restart).
type changes struct {
	images, restarts []string
	resizes          map[string]corev1.ResourceRequirements
}

// changesOf compares the pod's spec with the target template t, for the
// containers the diff d changes: what is already as the target changes
// nothing (an image set by hand, a resize asked for before).
func changesOf(pod *corev1.Pod, t *corev1.PodTemplateSpec, d inplace.TemplateDiff) changes {
	var c changes
	for _, name := range d.Restarts() {
		podImage, tplImage := imageOf(pod.Spec.InitContainers, pod.Spec.Containers, name), imageOf(t.Spec.InitContainers, t.Spec.Containers, name)
		if tplImage != "" && podImage != tplImage {
			c.images = append(c.images, name)
		}
	}
	c.restarts = slices.Clone(c.images)
	for _, r := range d.Resizes {
		got := containerOf(pod.Spec.InitContainers, pod.Spec.Containers, r.Container)
		if got == nil || inplace.ResourcesApplied(got.Resources, r.To) && inplace.ResourcesApplied(r.To, got.Resources) {
			continue
		}
		if c.resizes == nil {
			c.resizes = map[string]corev1.ResourceRequirements{}
		}
		c.resizes[r.Container] = r.To
		if r.Restart && !slices.Contains(c.restarts, r.Container) {
			c.restarts = append(c.restarts, r.Container)
		}
	}
	return c
}

func containerOf(init, containers []corev1.Container, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{init, containers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func imageOf(init, containers []corev1.Container, name string) string {
	for _, list := range [][]corev1.Container{init, containers} {
		for _, c := range list {
			if c.Name == name {
				return c.Image
			}
		}
	}
	return ""
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

func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
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
