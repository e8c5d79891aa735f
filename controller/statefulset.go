package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/inplace-dev/inplace/inplace"
)

const statefulSetKind = "StatefulSet"

var templatePath = field.NewPath("spec", "template")

// rolloutPending lets through the StatefulSets that may have pods to update
// or a record to keep: a spec the StatefulSet controller has not observed,
// a revision not rolled out to every pod, a rollout or a hold recorded.
// Pod events reach the reconciler on their own.
type rolloutPending struct{ predicate.Funcs }

func (rolloutPending) Create(e event.CreateEvent) bool   { return pending(e.Object) }
func (rolloutPending) Delete(event.DeleteEvent) bool     { return false }
func (rolloutPending) Generic(e event.GenericEvent) bool { return pending(e.Object) }
func (rolloutPending) Update(e event.UpdateEvent) bool {
	return pending(e.ObjectOld) || pending(e.ObjectNew)
}

func pending(o client.Object) bool {
	sts, ok := o.(*appsv1.StatefulSet)
	if !ok {
		return false
	}
	a := sts.Annotations
	_, rollout := a[inplace.AnnotationRollout]
	_, hold := a[inplace.AnnotationHold]
	return rollout || hold || sts.Status.ObservedGeneration < sts.Generation ||
		sts.Status.CurrentRevision != sts.Status.UpdateRevision ||
		sts.Status.UpdatedReplicas != sts.Status.Replicas
}

// StatefulSetRollout updates in place the pods of a managed StatefulSet
// that its own controller would recreate in a rolling update.
//
// The StatefulSet is left exactly as the user wrote it: no partition raised,
// no strategy changed. Its controller runs the rollout, and its status, which
// kubectl rollout status, kstatus (Helm, Flux) and Argo CD read, stays its
// own and true. When it deletes a pod to recreate it at the new revision,
// the validating webhook refuses the delete if this reconciler updates that
// pod in place instead (inplace.RefuseRolloutDelete); the reconciler then
// closes the pod's gate, patches its images, and relabels it to the new
// revision once its new containers are ready, and the StatefulSet controller,
// seeing the pod updated, goes on to the next. With the manager down, the
// webhook fails open and the StatefulSet controller recreates the pods as it
// always has.
//
// The reconciler chooses the pods the StatefulSet controller would: from
// the highest ordinal down to the partition, those already unavailable on an
// old revision at once (a fix for a crash-looping revision must be able to
// roll out), then the others within maxUnavailable, one after another on
// OrderedReady once every pod is available. A pod it cannot update in place
// (no readiness gate, a change live pods cannot take) counts against the
// same budget and is left to the StatefulSet controller, whose delete the
// webhook lets through.
//
// Everything it needs to resume is on the objects: each pod's update state
// and the rollout record on the StatefulSet. Watch events drive it: a pod's
// status change, a StatefulSet's spec or status change.
type StatefulSetRollout struct {
	Client client.Client
	// APIReader reads live, where a stale cache would skip a step.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Scope decides whether the StatefulSet's namespace is still managed.
	Scope inplace.Scope
	// Guard says which order of writes is safe (see Guard); nil is
	// unguarded.
	Guard Guard

	updater  *podUpdater
	active   *activeSet
	kubelets *kubeletVersions
}

// SetupWithManager registers the reconciler: StatefulSets, and the managed
// pods they control.
func (r *StatefulSetRollout) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.updater = &podUpdater{client: r.Client, live: r.APIReader, recorder: r.Recorder, clock: r.Clock, guard: r.Guard}
	r.active = newActiveSet(statefulSetKind)
	r.kubelets = &kubeletVersions{reader: r.APIReader}
	return ctrl.NewControllerManagedBy(mgr).
		Named("statefulset-rollout").
		For(&appsv1.StatefulSet{}, builder.WithPredicates(rolloutPending{})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &appsv1.StatefulSet{}, handler.OnlyControllerOwner())).
		WithOptions(controller.Options{ReconciliationTimeout: reconcileTimeout, EnableWarmup: ptr.To(true)}).
		Complete(r)
}

// reconcileTimeout bounds one pass: every step is a few API calls, and a
// pass that hangs on one must not wedge the rollout.
const reconcileTimeout = 30 * time.Second

// Reconcile advances the StatefulSet's in-place rollout by what its pods'
// states allow.
func (r *StatefulSetRollout) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	defer Watchdog.track()()
	sts := &appsv1.StatefulSet{}
	if err := r.Client.Get(ctx, req.NamespacedName, sts); err != nil {
		if apierrors.IsNotFound(err) {
			r.active.set(req.String(), false)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if _, held := sts.Annotations[inplace.AnnotationHold]; held {
		return ctrl.Result{}, r.releaseHold(ctx, sts)
	}
	rollout, err := inplace.RolloutOf(sts.Annotations)
	if err != nil {
		logf.FromContext(ctx).Error(err, "Replacing a malformed rollout record", "statefulset", klog.KObj(sts))
		rollout = &inplace.Rollout{}
	}
	r.active.set(req.String(), rollout != nil)

	if reason := r.handedBack(ctx, sts); reason != "" {
		// Only the pods the webhook gated can have an update to settle: the
		// cache's. No live read for a StatefulSet that is not managed.
		selector, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
		if err != nil {
			return ctrl.Result{}, nil
		}
		pods, err := r.listOwned(ctx, r.Client, sts, selector)
		if err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.handBack(ctx, sts, rollout, pods, reason)
	}
	pods, err := r.pods(ctx, sts)
	if err != nil {
		return ctrl.Result{}, err
	}
	if sts.Status.ObservedGeneration < sts.Generation || sts.Status.UpdateRevision == "" {
		return ctrl.Result{}, nil // the StatefulSet controller has not computed the revision yet
	}

	target := r.target(sts)
	plan, err := r.plan(ctx, sts, pods, target)
	if err != nil {
		return ctrl.Result{}, err
	}
	var result ctrl.Result
	var failures []string
	for _, p := range plan.inProgress {
		step, err := r.updater.advance(ctx, p.pod, target)
		if err != nil {
			return ctrl.Result{}, err
		}
		if step.failure != "" {
			failures = append(failures, fmt.Sprintf("pod %s: %s", p.pod.Name, step.failure))
		}
		result = sooner(result, step.requeueAfter)
	}
	for _, p := range plan.settling {
		if err := r.updater.settle(ctx, p.pod, appsv1.StatefulSetRevisionLabel); err != nil {
			return ctrl.Result{}, err
		}
	}
	if len(plan.start) > 0 {
		if rollout, err = r.recordStart(ctx, sts, rollout); err != nil {
			return ctrl.Result{}, err
		}
	}
	for _, p := range plan.start {
		if err := r.updater.begin(ctx, p.pod, p.from, p.diff, target); err != nil {
			return ctrl.Result{}, err
		}
	}
	if rollout != nil {
		if plan.complete {
			return ctrl.Result{}, r.complete(ctx, sts, rollout)
		}
		if err := r.reportFailures(ctx, sts, rollout, failures); err != nil {
			return ctrl.Result{}, err
		}
	}
	return sooner(result, plan.availableIn), nil
}

// statefulPod is a pod of the StatefulSet in the terms of the plan.
type statefulPod struct {
	pod      *corev1.Pod
	ordinal  int
	updating bool
	// from and diff are the template the pod runs and its change to the
	// target; fallback says why it cannot be updated in place ("" when it
	// can). Set for the pods the rollout must update.
	from     *corev1.PodTemplateSpec
	diff     inplace.TemplateDiff
	fallback string
}

// statefulPlan is what a pass can do, computed from the StatefulSet and its
// pods alone.
type statefulPlan struct {
	// inProgress are the pods the rollout is updating.
	inProgress []statefulPod
	// settling are pods with an update left over that the rollout no
	// longer wants: out of its range.
	settling []statefulPod
	// start are the pods to begin updating in place now.
	start []statefulPod
	// complete is true when every pod from the partition up runs the
	// update revision, none is being updated, and all are available.
	complete bool
	// availableIn, when set, is when a pod becomes available (minReadySeconds).
	availableIn time.Duration
}

// plan sorts the StatefulSet's pods as its controller's rolling update would
// (pkg/controller/statefulset, updateStatefulSetAfterInvariantEstablished):
// the pods from the partition to replicas whose revision is not the update
// revision are its targets, highest ordinal first; unavailable ones go at
// once, the others as maxUnavailable allows, and on OrderedReady only once
// every pod is available.
func (r *StatefulSetRollout) plan(ctx context.Context, sts *appsv1.StatefulSet, pods []*corev1.Pod, t *podTarget) (statefulPlan, error) {
	replicas := int(ptr.Deref(sts.Spec.Replicas, 1))
	byOrdinal := make([]*statefulPod, replicas)
	var plan statefulPlan
	for _, pod := range pods {
		ord, ok := inplace.Ordinal(sts, pod)
		if !ok {
			continue
		}
		p := &statefulPod{pod: pod, ordinal: ord, updating: inplace.Updating(pod)}
		if ord >= replicas || !inplace.InRolloutRange(sts, ord) {
			if p.updating {
				plan.settling = append(plan.settling, *p)
			}
			if ord < replicas {
				byOrdinal[ord] = p
			}
			continue
		}
		if byOrdinal[ord] == nil {
			byOrdinal[ord] = p
		}
	}

	now := r.Clock.Now()
	minReady := time.Duration(sts.Spec.MinReadySeconds) * time.Second
	unavailable, allAvailable := 0, true
	for _, p := range byOrdinal {
		if p == nil {
			unavailable++
			allAvailable = false
			continue
		}
		wait, ok := availableIn(p.pod, minReady, now)
		if p.updating || !ok {
			unavailable++
			allAvailable = false
		}
		if wait > 0 && (plan.availableIn == 0 || wait < plan.availableIn) {
			plan.availableIn = wait
		}
	}

	// Targets, highest ordinal first.
	var targets []*statefulPod
	plan.complete = true
	for ord := replicas - 1; ord >= int(inplace.Partition(sts)); ord-- {
		p := byOrdinal[ord]
		if p == nil {
			plan.complete = false
			continue
		}
		if p.updating {
			if p.pod.DeletionTimestamp == nil { // a terminating pod is the StatefulSet controller's
				plan.inProgress = append(plan.inProgress, *p)
			}
			plan.complete = false
			continue
		}
		if _, ok := availableIn(p.pod, minReady, now); !ok {
			plan.complete = false
		}
		if p.pod.Labels[appsv1.StatefulSetRevisionLabel] == t.revision {
			continue
		}
		plan.complete = false
		if p.pod.DeletionTimestamp != nil || p.pod.Status.Phase == corev1.PodFailed || p.pod.Status.Phase == corev1.PodSucceeded {
			continue // the StatefulSet controller replaces it
		}
		from, err := t.templateOf(ctx, p.pod.Labels[appsv1.StatefulSetRevisionLabel])
		if err != nil {
			return plan, err
		}
		p.from = from
		p.diff, p.fallback = t.eligibility(ctx, p.pod, from)
		targets = append(targets, p)
	}

	// First the targets that are down (not Ready): updating them costs no
	// availability, and a fix for a crash-looping revision must be able to
	// roll out whatever the budget. (The StatefulSet controller does the
	// same on Parallel; on OrderedReady it would wait forever for them.)
	budget := maxUnavailable(sts, replicas) - unavailable
	for _, p := range targets {
		if !podReady(p.pod) && p.fallback == "" {
			plan.start = append(plan.start, *p)
		}
	}
	// Then the available ones, as the budget allows; one the StatefulSet
	// controller recreates takes its share of the budget as well.
	ordered := sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	if ordered && !allAvailable {
		return plan, nil
	}
	for _, p := range targets {
		if budget <= 0 {
			break
		}
		if !podReady(p.pod) {
			continue
		}
		budget--
		if p.fallback == "" {
			plan.start = append(plan.start, *p)
		}
	}
	return plan, nil
}

// target is the update revision of the StatefulSet, for its pods.
func (r *StatefulSetRollout) target(sts *appsv1.StatefulSet) *podTarget {
	grace, _ := inplace.GracePeriodOf(sts.Annotations)
	t := &podTarget{
		kind:          statefulSetKind,
		workload:      sts,
		revisionLabel: appsv1.StatefulSetRevisionLabel,
		revision:      sts.Status.UpdateRevision,
		template:      &sts.Spec.Template,
		grace:         time.Duration(grace) * time.Second,
		templateOf: func(ctx context.Context, revision string) (*corev1.PodTemplateSpec, error) {
			if revision == "" {
				return nil, nil
			}
			return revisionTemplate(ctx, r.Client, r.APIReader, sts.Namespace, revision)
		},
	}
	t.eligibility = func(ctx context.Context, pod *corev1.Pod, from *corev1.PodTemplateSpec) (inplace.TemplateDiff, string) {
		d, fallback := inplace.Eligibility(pod, from, t.template, "")
		if fallback == inplace.FallbackSidecarKubelet {
			d, fallback = inplace.Eligibility(pod, from, t.template, r.kubelets.version(ctx, pod.Spec.NodeName))
		}
		return d, fallback
	}
	return t
}

// recordStart records the rollout on the StatefulSet when its first pod's
// update begins, or when the target changed: kubectl get -o yaml then shows
// an in-place rollout under way, since when, and why it halted if it does.
func (r *StatefulSetRollout) recordStart(ctx context.Context, sts *appsv1.StatefulSet, rollout *inplace.Rollout) (*inplace.Rollout, error) {
	if rollout != nil && rollout.Revision == sts.Status.UpdateRevision {
		return rollout, nil
	}
	next := &inplace.Rollout{Revision: sts.Status.UpdateRevision, Since: metav1.NewTime(r.Clock.Now())}
	base := sts.DeepCopy()
	metav1.SetMetaDataAnnotation(&sts.ObjectMeta, inplace.AnnotationRollout, next.Encode())
	if err := r.Client.Patch(ctx, sts, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return rollout, ignoreConflict(err)
	}
	r.active.set(client.ObjectKeyFromObject(sts).String(), true)
	r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonInPlaceRolloutStarted, "Rollout",
		"Rolling out revision %s in place", next.Revision)
	return next, nil
}

// complete ends the record of a rollout whose every pod is updated. The
// event is told once: only the pass whose conditional write removed the
// record tells it.
func (r *StatefulSetRollout) complete(ctx context.Context, sts *appsv1.StatefulSet, rollout *inplace.Rollout) error {
	base := sts.DeepCopy()
	delete(sts.Annotations, inplace.AnnotationRollout)
	if err := r.Client.Patch(ctx, sts, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ignoreConflict(err)
	}
	r.active.set(client.ObjectKeyFromObject(sts).String(), false)
	if rollout.Revision == sts.Status.UpdateRevision {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonInPlaceRolloutCompleted, "Rollout",
			"Rolled out revision %s in place in %v", rollout.Revision, r.Clock.Since(rollout.Since.Time).Round(time.Millisecond))
	}
	return nil
}

// reportFailures makes a halted rollout visible on the StatefulSet: the
// reason in the rollout record, and a Warning event when it changes.
func (r *StatefulSetRollout) reportFailures(ctx context.Context, sts *appsv1.StatefulSet, rollout *inplace.Rollout, failures []string) error {
	slices.Sort(failures)
	failure := strings.Join(failures, "; ")
	if failure == rollout.Failure {
		return nil
	}
	base := sts.DeepCopy()
	rollout.Failure = failure
	metav1.SetMetaDataAnnotation(&sts.ObjectMeta, inplace.AnnotationRollout, rollout.Encode())
	if err := r.Client.Patch(ctx, sts, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ignoreConflict(err)
	}
	if failure != "" {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, ReasonInPlaceRolloutHalted, "Rollout",
			"The in-place rollout is halted at maxUnavailable: %s", failure)
	}
	return nil
}

// handedBack says why the StatefulSet's rollouts are its controller's alone
// now, or "" while they are in place.
func (r *StatefulSetRollout) handedBack(ctx context.Context, sts *appsv1.StatefulSet) string {
	if sts.DeletionTimestamp != nil {
		return "it is being deleted"
	}
	if !inplace.RollsOut(sts) {
		return "its update strategy is " + string(sts.Spec.UpdateStrategy.Type)
	}
	if p, err := inplace.UpdatePolicyOf(sts.Annotations); err != nil || p == inplace.Recreate {
		return "its update policy is not in place"
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: sts.Namespace}, ns); err == nil && !r.Scope.Manages(ns.Name, ns.Labels) {
		return "its namespace is no longer managed"
	}
	return ""
}

// handBack settles the pods an in-place rollout left mid-update on a
// StatefulSet that is no longer managed (the webhook now lets its
// controller recreate the rest), and removes the rollout record.
func (r *StatefulSetRollout) handBack(ctx context.Context, sts *appsv1.StatefulSet, rollout *inplace.Rollout, pods []*corev1.Pod, reason string) error {
	for _, pod := range pods {
		if inplace.Updating(pod) {
			if err := r.updater.settle(ctx, pod, appsv1.StatefulSetRevisionLabel); err != nil {
				return err
			}
		}
	}
	if rollout == nil || sts.DeletionTimestamp != nil {
		return nil
	}
	base := sts.DeepCopy()
	delete(sts.Annotations, inplace.AnnotationRollout)
	if err := r.Client.Patch(ctx, sts, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ignoreConflict(err)
	}
	r.active.set(client.ObjectKeyFromObject(sts).String(), false)
	r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonHoldReleased, "Release",
		"Left the rollout to the StatefulSet controller: %s", reason)
	return nil
}

// releaseHold undoes a hold written by an earlier version of inplace (the
// partition raised to replicas): the user's partition back, the hold gone.
func (r *StatefulSetRollout) releaseHold(ctx context.Context, sts *appsv1.StatefulSet) error {
	hold, err := inplace.HoldOf(sts.Annotations)
	if err != nil {
		logf.FromContext(ctx).Error(err, "Releasing a malformed hold: the partition goes to 0", "statefulset", klog.KObj(sts))
	}
	if err := ReleaseStatefulSet(ctx, r.Client, sts, hold); err != nil {
		return ignoreConflict(err)
	}
	r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonHoldReleased, "Release",
		"Released the partition hold of an earlier inplace version: partition %d", inplace.Partition(sts))
	return nil
}

// ReleaseStatefulSet undoes a hold written by an earlier version of
// inplace: the user's partition restored (hold may be nil when it could not
// be read: the partition then goes to 0, the default), the hold removed.
// The write is conditional on the resourceVersion sts was read at.
func ReleaseStatefulSet(ctx context.Context, c client.Client, sts *appsv1.StatefulSet, hold *inplace.Hold) error {
	base := sts.DeepCopy()
	if inplace.RollsOut(sts) {
		p := int32(0)
		if hold != nil {
			p = hold.UserPartition()
		}
		inplace.SetPartition(sts, p)
	}
	delete(sts.Annotations, inplace.AnnotationHold)
	return c.Patch(ctx, sts, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// pods returns the pods the StatefulSet controls. The cache holds only the
// pods the webhook gated; when it holds fewer than the StatefulSet has, the
// others (created before the namespace was managed, or while the manager was
// down) are read live.
func (r *StatefulSetRollout) pods(ctx context.Context, sts *appsv1.StatefulSet) ([]*corev1.Pod, error) {
	selector, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of StatefulSet %s: %w", klog.KObj(sts), err)
	}
	owned, err := r.listOwned(ctx, r.Client, sts, selector)
	if err != nil {
		return nil, err
	}
	if int32(len(owned)) >= sts.Status.Replicas && int32(len(owned)) >= ptr.Deref(sts.Spec.Replicas, 1) {
		return owned, nil
	}
	return r.listOwned(ctx, r.APIReader, sts, selector)
}

func (r *StatefulSetRollout) listOwned(ctx context.Context, c client.Reader, sts *appsv1.StatefulSet, selector labels.Selector) ([]*corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := c.List(ctx, list, client.InNamespace(sts.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, err
	}
	var owned []*corev1.Pod
	for i := range list.Items {
		if ref := metav1.GetControllerOfNoCopy(&list.Items[i]); ref != nil && ref.UID == sts.UID {
			owned = append(owned, &list.Items[i])
		}
	}
	return owned, nil
}

// availableIn reports whether the pod is available (Ready for
// minReadySeconds), and if it is Ready but not yet available, how long until
// it is.
func availableIn(pod *corev1.Pod, minReady time.Duration, now time.Time) (time.Duration, bool) {
	if pod == nil || pod.DeletionTimestamp != nil {
		return 0, false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type != corev1.PodReady {
			continue
		}
		if c.Status != corev1.ConditionTrue {
			return 0, false
		}
		if wait := c.LastTransitionTime.Add(minReady).Sub(now); minReady > 0 && wait > 0 {
			return wait, false
		}
		return 0, true
	}
	return 0, false
}

func podReady(pod *corev1.Pod) bool {
	c := condition(pod, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue && pod.DeletionTimestamp == nil
}

// maxUnavailable is the user's rollingUpdate.maxUnavailable, 1 by default,
// never less than 1, rounded down: as the StatefulSet controller counts it.
func maxUnavailable(sts *appsv1.StatefulSet, replicas int) int {
	v := intstr.FromInt32(1)
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		v = *ru.MaxUnavailable
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&v, replicas, false)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func sooner(r ctrl.Result, after time.Duration) ctrl.Result {
	if after > 0 && (r.RequeueAfter == 0 || after < r.RequeueAfter) {
		r.RequeueAfter = after
	}
	return r
}
