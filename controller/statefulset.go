package controller

import (
	"context"
	"fmt"
	"slices"
	"strconv"
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
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/inplace-dev/inplace/inplace"
)

const statefulSetKind = "StatefulSet"

var templatePath = field.NewPath("spec", "template")

// heldOrUpdating lets through the StatefulSets that are held, or were: a
// released one may leave pods to settle.
type heldOrUpdating struct{ predicate.Funcs }

func (heldOrUpdating) Create(e event.CreateEvent) bool { return isHeld(e.Object) }
func (heldOrUpdating) Delete(e event.DeleteEvent) bool { return isHeld(e.Object) }
func (heldOrUpdating) Update(e event.UpdateEvent) bool {
	return isHeld(e.ObjectOld) || isHeld(e.ObjectNew)
}
func (heldOrUpdating) Generic(e event.GenericEvent) bool { return isHeld(e.Object) }

func isHeld(o client.Object) bool {
	_, ok := o.GetAnnotations()[inplace.AnnotationHold]
	return ok
}

// StatefulSetRollout performs the in-place rollout of a StatefulSet that the
// webhook holds (its partition raised to replicas, the user's recorded in the
// hold annotation). From the highest ordinal down to the user's partition,
// at most maxUnavailable at once, it updates each pod in place, or hands it
// to the native controller to recreate when it cannot (no readiness gate, or
// a change live pods cannot take); it lowers the partition as pods finish,
// so the native controller never deletes one, and restores the user's
// partition at the end.
//
// Everything it needs to resume is on the objects: the hold on the
// StatefulSet and each pod's update state. Watch events drive it: a pod's
// status change, a StatefulSet's spec or status change.
type StatefulSetRollout struct {
	Client client.Client
	// APIReader reads live, where a stale cache would skip a step.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Scope decides whether the StatefulSet's namespace is still managed.
	Scope inplace.Scope

	updater *podUpdater
	held    *heldSet
}

// SetupWithManager registers the reconciler: StatefulSets, and the managed
// pods they control.
func (r *StatefulSetRollout) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.updater = &podUpdater{client: r.Client, live: r.APIReader, recorder: r.Recorder, clock: r.Clock}
	r.held = newHeldSet(statefulSetKind)
	return ctrl.NewControllerManagedBy(mgr).
		Named("statefulset-rollout").
		For(&appsv1.StatefulSet{}, builder.WithPredicates(heldOrUpdating{})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &appsv1.StatefulSet{}, handler.OnlyControllerOwner())).
		Complete(r)
}

// Reconcile advances the StatefulSet's in-place rollout by what its pods'
// states allow.
func (r *StatefulSetRollout) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sts := &appsv1.StatefulSet{}
	if err := r.Client.Get(ctx, req.NamespacedName, sts); err != nil {
		if apierrors.IsNotFound(err) {
			r.held.set(req.String(), false)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := logf.FromContext(ctx)
	hold, err := inplace.HoldOf(sts.Annotations)
	if err != nil {
		log.Error(err, "Ignoring a malformed hold", "statefulset", klog.KObj(sts))
		return ctrl.Result{}, nil
	}
	r.held.set(req.String(), hold != nil)
	pods, err := r.pods(ctx, sts)
	if err != nil {
		return ctrl.Result{}, err
	}
	target := r.target(sts)
	if hold == nil {
		return ctrl.Result{}, r.settle(ctx, pods, target)
	}
	if reason := r.releaseReason(ctx, sts); reason != "" {
		return ctrl.Result{}, r.release(ctx, sts, hold, reason)
	}
	if sts.Status.ObservedGeneration < sts.Generation || sts.Status.UpdateRevision == "" {
		return ctrl.Result{}, nil // the StatefulSet controller has not computed the revision yet
	}

	plan := r.plan(sts, hold, pods)
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
	if err := r.start(ctx, sts, plan, target); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.reportFailures(ctx, sts, hold, failures); err != nil {
		return ctrl.Result{}, err
	}
	if plan.complete {
		return ctrl.Result{}, r.complete(ctx, sts, hold)
	}
	if plan.partition < inplace.Partition(sts) {
		if err := r.setPartition(ctx, sts, plan.partition); err != nil {
			return ctrl.Result{}, err
		}
	}
	return sooner(result, plan.availableIn), nil
}

// statefulPod is a pod of the StatefulSet in the terms of the plan.
type statefulPod struct {
	pod     *corev1.Pod
	ordinal int
	updated bool // at the update revision, with no update in progress
}

// statefulPlan is what a pass can do, computed from the StatefulSet and its
// pods alone.
type statefulPlan struct {
	// inProgress are the pods with an update in progress.
	inProgress []statefulPod
	// candidates are the pods to start, highest ordinal first, as many as
	// maxUnavailable allows.
	candidates []statefulPod
	// partition is the lowest the partition may go: every pod at or above
	// it is at the update revision.
	partition int32
	// complete is true when every pod from the user's partition up is
	// updated and available.
	complete bool
	// availableIn, when set, is when a pod becomes available (minReadySeconds).
	availableIn time.Duration
}

func (r *StatefulSetRollout) plan(sts *appsv1.StatefulSet, hold *inplace.Hold, pods []*corev1.Pod) statefulPlan {
	replicas := int(ptr.Deref(sts.Spec.Replicas, 1))
	userPartition := int(hold.UserPartition())
	byOrdinal := make([]*statefulPod, replicas)
	for _, pod := range pods {
		ord, ok := ordinal(sts, pod)
		if !ok || ord >= replicas || byOrdinal[ord] != nil {
			continue
		}
		byOrdinal[ord] = &statefulPod{pod: pod, ordinal: ord,
			updated: pod.Labels[appsv1.StatefulSetRevisionLabel] == sts.Status.UpdateRevision && !inplace.Updating(pod)}
	}

	now := r.Clock.Now()
	minReady := time.Duration(sts.Spec.MinReadySeconds) * time.Second
	var plan statefulPlan
	unavailable := 0
	for _, p := range byOrdinal {
		if p == nil {
			unavailable++
			continue
		}
		if inplace.Updating(p.pod) {
			plan.inProgress = append(plan.inProgress, *p)
			unavailable++
			continue
		}
		if wait, ok := availableIn(p.pod, minReady, now); !ok {
			unavailable++
			if wait > 0 && (plan.availableIn == 0 || wait < plan.availableIn) {
				plan.availableIn = wait
			}
		}
	}

	// The partition follows the pods that are done, from the top.
	plan.partition = int32(replicas)
	for ord := replicas - 1; ord >= userPartition; ord-- {
		if byOrdinal[ord] == nil || !byOrdinal[ord].updated {
			break
		}
		plan.partition = int32(ord)
	}
	plan.partition = max(plan.partition, int32(userPartition))
	plan.complete = plan.partition == int32(userPartition) && plan.availableIn == 0 && len(plan.inProgress) == 0
	if plan.complete {
		for ord := userPartition; ord < replicas; ord++ {
			if _, ok := availableIn(byOrdinal[ord].pod, minReady, now); !ok {
				plan.complete = false
			}
		}
	}

	budget := maxUnavailable(sts, replicas) - unavailable
	ordered := sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	for ord := replicas - 1; ord >= userPartition && budget > 0; ord-- {
		p := byOrdinal[ord]
		if p != nil && p.updated {
			continue
		}
		startable := p != nil && !inplace.Updating(p.pod) && p.pod.DeletionTimestamp == nil
		if ordered && (!startable || !higherDone(byOrdinal, ord, minReady, now)) {
			break // OrderedReady: one ordinal after another, each available first
		}
		if !startable {
			continue
		}
		plan.candidates = append(plan.candidates, *p)
		budget--
	}
	return plan
}

// higherDone reports whether every pod above ord is updated and available.
func higherDone(byOrdinal []*statefulPod, ord int, minReady time.Duration, now time.Time) bool {
	for _, p := range byOrdinal[ord+1:] {
		if p == nil || !p.updated {
			return false
		}
		if _, ok := availableIn(p.pod, minReady, now); !ok {
			return false
		}
	}
	return true
}

// start begins the update of each candidate: in place when the pod has the
// gate and its change can be applied in place, else by the native
// controller, once every pod above it is done (the partition must come down
// to it, and the StatefulSet controller recreates a pod below the partition
// at the old revision).
func (r *StatefulSetRollout) start(ctx context.Context, sts *appsv1.StatefulSet, plan statefulPlan, target *podTarget) error {
	for _, p := range plan.candidates {
		from, err := target.templateOf(ctx, p.pod.Labels[appsv1.StatefulSetRevisionLabel])
		if err != nil {
			return err
		}
		reason := ""
		switch {
		case !inplace.HasGate(p.pod):
			reason = "NoReadinessGate"
		case from == nil:
			reason = "NoRevision"
		case !inplace.DiffTemplates(templatePath, from, target.template).InPlaceable():
			reason = "NotInPlaceable"
		}
		if reason == "" {
			if err := r.updater.begin(ctx, p.pod, from, target); err != nil {
				return err
			}
			continue
		}
		if int32(p.ordinal+1) < plan.partition {
			continue // wait for the pods above it
		}
		if err := r.recreate(ctx, sts, p, reason); err != nil {
			return err
		}
	}
	return nil
}

// recreate hands a pod to the native controller: the partition comes down
// to its ordinal and the pod is deleted, to come back at the update revision.
func (r *StatefulSetRollout) recreate(ctx context.Context, sts *appsv1.StatefulSet, p statefulPod, reason string) error {
	if err := r.setPartition(ctx, sts, int32(p.ordinal)); err != nil {
		return err
	}
	err := r.Client.Delete(ctx, p.pod, client.Preconditions{UID: &p.pod.UID, ResourceVersion: &p.pod.ResourceVersion})
	if err := ignoreConflict(err); err != nil {
		return err
	}
	fallbacksTotal.WithLabelValues(statefulSetKind, reason).Inc()
	r.Recorder.Eventf(p.pod, sts, corev1.EventTypeNormal, ReasonRecreatedNotInPlace, "Recreate",
		"Recreated by the StatefulSet controller, not in place: %s", fallbackWords[reason])
	logf.FromContext(ctx).Info("Handed a pod to the native controller", "pod", klog.KObj(p.pod), "reason", reason)
	return nil
}

var fallbackWords = map[string]string{
	"NoReadinessGate": "the pod has no InPlaceUpdateReady readiness gate (it was created before its namespace was managed, or while the manager was down)",
	"NoRevision":      "the revision the pod runs is no longer in the StatefulSet's history",
	"NotInPlaceable":  "its change is more than images, labels and annotations",
}

// complete ends the rollout: the user's partition back, the hold gone. The
// StatefulSet's status then reads as after a native rollout.
func (r *StatefulSetRollout) complete(ctx context.Context, sts *appsv1.StatefulSet, hold *inplace.Hold) error {
	if err := r.release(ctx, sts, hold, ""); err != nil {
		return err
	}
	r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonInPlaceRolloutCompleted, "Rollout",
		"Rolled out revision %s in place in %v", sts.Status.UpdateRevision, r.Clock.Since(hold.Since.Time).Round(time.Millisecond))
	return nil
}

// release restores the user's partition and removes the hold.
func (r *StatefulSetRollout) release(ctx context.Context, sts *appsv1.StatefulSet, hold *inplace.Hold, reason string) error {
	if err := ReleaseStatefulSet(ctx, r.Client, sts, hold); err != nil {
		return ignoreConflict(err)
	}
	r.held.set(client.ObjectKeyFromObject(sts).String(), false)
	if reason != "" {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeNormal, ReasonHoldReleased, "Release",
			"Handed the rollout back to the StatefulSet controller: %s", reason)
	}
	return nil
}

// ReleaseStatefulSet hands a held StatefulSet back to its native
// controller: the user's partition restored (hold may be nil when it could
// not be read: the partition then goes to 0, the default), the hold removed.
// The write is conditional on the resourceVersion sts was read at.
func ReleaseStatefulSet(ctx context.Context, c client.Client, sts *appsv1.StatefulSet, hold *inplace.Hold) error {
	base := sts.DeepCopy()
	if sts.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType {
		p := int32(0)
		if hold != nil {
			p = hold.UserPartition()
		}
		inplace.SetPartition(sts, p)
	}
	delete(sts.Annotations, inplace.AnnotationHold)
	return c.Patch(ctx, sts, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// releaseReason says why a held StatefulSet must go back to its native
// controller, or "" when it stays held.
func (r *StatefulSetRollout) releaseReason(ctx context.Context, sts *appsv1.StatefulSet) string {
	if sts.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return "its update strategy is OnDelete"
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

// settle finishes what a StatefulSet that is no longer held left in its pods:
// an update already patched completes, one not yet patched is abandoned.
func (r *StatefulSetRollout) settle(ctx context.Context, pods []*corev1.Pod, target *podTarget) error {
	for _, pod := range pods {
		if !inplace.Updating(pod) {
			continue
		}
		state, err := inplace.StateOf(pod)
		switch {
		case err != nil:
			continue
		case state == nil:
			err = r.updater.abandon(ctx, pod)
		case inplace.CheckProgress(pod, state).Done:
			err = r.updater.finish(ctx, pod, state, target)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// reportFailures makes a halted rollout visible on the StatefulSet: the
// reason in the hold, and a Warning event when it changes.
func (r *StatefulSetRollout) reportFailures(ctx context.Context, sts *appsv1.StatefulSet, hold *inplace.Hold, failures []string) error {
	slices.Sort(failures)
	failure := strings.Join(failures, "; ")
	if failure == hold.Failure {
		return nil
	}
	base := sts.DeepCopy()
	hold.Failure = failure
	sts.Annotations[inplace.AnnotationHold] = hold.Encode()
	if err := r.Client.Patch(ctx, sts, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return ignoreConflict(err)
	}
	if failure != "" {
		r.Recorder.Eventf(sts, nil, corev1.EventTypeWarning, ReasonInPlaceRolloutHalted, "Rollout",
			"The in-place rollout is halted at maxUnavailable: %s", failure)
	}
	return nil
}

func (r *StatefulSetRollout) setPartition(ctx context.Context, sts *appsv1.StatefulSet, p int32) error {
	if inplace.Partition(sts) == p {
		return nil
	}
	base := sts.DeepCopy()
	inplace.SetPartition(sts, p)
	return ignoreConflict(r.Client.Patch(ctx, sts, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})))
}

// target is the update revision of the StatefulSet, for its pods.
func (r *StatefulSetRollout) target(sts *appsv1.StatefulSet) *podTarget {
	grace, _ := inplace.GracePeriodOf(sts.Annotations)
	return &podTarget{
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
			return revisionTemplate(ctx, r.Client, sts.Namespace, revision)
		},
	}
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

// ordinal returns the pod's ordinal index (its ordinal less the
// StatefulSet's start ordinal), which the partition counts in.
func ordinal(sts *appsv1.StatefulSet, pod *corev1.Pod) (int, bool) {
	suffix, ok := strings.CutPrefix(pod.Name, sts.Name+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(suffix)
	if err != nil {
		return 0, false
	}
	if sts.Spec.Ordinals != nil {
		n -= int(sts.Spec.Ordinals.Start)
	}
	return n, n >= 0
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

// maxUnavailable is the user's rollingUpdate.maxUnavailable, 1 by default,
// never less than 1.
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
