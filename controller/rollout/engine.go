package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/workloadcache"
)

// ReconcileTimeout bounds one pass: every step is a few API calls, and a
// pass that hangs on one must not wedge the rollout.
const ReconcileTimeout = 30 * time.Second

// Reconciler is the rollout engine for one kind: it updates in place the
// pods of the kind's workloads that their own controller would replace in
// a rolling update.
//
// The workload is left exactly as its user wrote it: its controller runs
// the rollout, and its status, which kubectl rollout status, kstatus (Helm,
// Flux) and Argo CD read, stays its own and true. When that controller
// replaces a pod, the pod webhook refuses the replacement if the engine
// updates that pod in place instead; the engine closes the pod's gate,
// patches its images and marks it at the new revision, and the controller,
// seeing the pod updated, goes on. With the manager down, the webhook fails
// open and the controller replaces the pods as it always has.
//
// The engine chooses the pods the kind's controller would (the Kind's
// Plan): those already unavailable first where that controller does, then
// the others within its budget. A pod it cannot update in place (no
// readiness gate, a change live pods cannot take) is left to the kind's
// controller, whose replacement the webhook lets through.
//
// Everything it needs to resume is on the objects: each pod's update state
// and the rollout record on the workload. Watch events drive it.
type Reconciler struct {
	Kind   Kind
	Client client.Client
	// APIReader reads live, where a stale cache would skip a step.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Scope decides whether the workload's namespace is managed; its
	// excluded namespaces are never touched.
	Scope inplace.Scope
	// Guard says which order of writes is safe (see Guard); nil is
	// unguarded.
	Guard Guard
	// KubeletVersion returns the version of a node's kubelet.
	KubeletVersion func(ctx context.Context, node string) string
	// UpdateDeadline bounds a pod's update (DefaultUpdateDeadline when 0).
	UpdateDeadline time.Duration
	// Prepull, when set, has nodes pull a rollout's new images before its
	// pods there restart for them.
	Prepull *Prepull
	// Passes tracks the engine's passes (nil tracks nothing): once the
	// replica stops, no pass begins.
	Passes *Passes

	updater *podUpdater
	active  *activeSet
	told    *memo
}

// SetupWithManager registers the engine for its kind.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.init()
	b := ctrl.NewControllerManagedBy(mgr).
		Named(strings.ToLower(r.Kind.Name())+"-rollout").
		For(r.Kind.Object(), builder.WithPredicates(pending{r.Kind})).
		WithOptions(controller.Options{ReconciliationTimeout: ReconcileTimeout, EnableWarmup: ptr.To(true)})
	b = r.Kind.Watch(b, mgr)
	if r.Prepull != nil {
		// A prepull pod's progress brings its workload back; the workload
		// owns it (not as its controller).
		if c, ok := r.Prepull.Pods.(cache.Cache); ok {
			b = b.WatchesRawSource(source.Kind(c, &corev1.Pod{},
				handler.TypedEnqueueRequestForOwner[*corev1.Pod](mgr.GetScheme(), mgr.GetRESTMapper(), r.Kind.Object())))
		}
	}
	return b.Complete(r)
}

func (r *Reconciler) init() {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.updater = &podUpdater{client: r.Client, live: r.APIReader, recorder: r.Recorder, clock: r.Clock, guard: r.Guard, deadline: r.UpdateDeadline}
	r.active = newActiveSet(r.Kind.Name())
	r.told = &memo{}
}

// pending lets through the workloads the Kind says may have a rollout to
// make, or a record to keep. Pod events reach the engine through the
// Kind's watches.
type pending struct{ kind Kind }

func (p pending) Create(e event.CreateEvent) bool   { return p.kind.Pending(e.Object) }
func (p pending) Delete(event.DeleteEvent) bool     { return false }
func (p pending) Generic(e event.GenericEvent) bool { return p.kind.Pending(e.Object) }
func (p pending) Update(e event.UpdateEvent) bool {
	return p.kind.Pending(e.ObjectOld) || p.kind.Pending(e.ObjectNew)
}

var _ predicate.Predicate = pending{}

// Recorded reports whether a workload carries a rollout record: a Kind's
// Pending lets those through.
func Recorded(obj client.Object) bool {
	_, ok := obj.GetAnnotations()[inplace.AnnotationRollout]
	return ok
}

// Reconcile advances the workload's in-place rollout by what its pods'
// states allow.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	end, ok := r.Passes.Begin()
	if !ok {
		return ctrl.Result{}, nil // stopping: the shutdown drain reads the pods now
	}
	defer end()
	if r.Scope.Excluded[req.Namespace] {
		return ctrl.Result{}, nil
	}
	key := req.String()
	obj := r.Kind.Object()
	// As cached: in a namespace not managed, without its template (most
	// workloads of a cluster, and most passes: a ReplicaSet's every change
	// brings its Deployment here).
	if err := r.Client.Get(ctx, req.NamespacedName, obj, workloadcache.AsCached); err != nil {
		if apierrors.IsNotFound(err) {
			r.active.set(key, false)
			r.told.forget(key)
			if r.Prepull != nil {
				r.Prepull.pulled.forget(key)
				r.Prepull.failing.forget(key)
			}
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	rollout, err := inplace.RolloutOf(obj.GetAnnotations())
	if err != nil {
		logf.FromContext(ctx).Error(err, "Replacing a malformed rollout record", "workload", klog.KObj(obj))
		rollout = &inplace.Rollout{}
	}
	r.active.set(key, rollout != nil || r.ended(key) != nil)

	readers := Readers{Cache: r.Client, Live: r.APIReader, KubeletVersion: r.KubeletVersion}
	reason := r.handedBack(ctx, obj)
	if reason != "" && rollout == nil && !r.managedPodsIn(ctx, obj.GetNamespace()) {
		// Nothing to hand back (no record, no pod the webhook gated to
		// settle), and no template to read.
		r.clearPrepulls(ctx, obj)
		return ctrl.Result{}, nil
	}
	if workloadcache.Trimmed(obj) {
		if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
	}
	if reason != "" {
		// Only the pods the webhook gated can have an update to settle:
		// the cache's. No live read for a workload that is not managed.
		readers.Live = nil
	} else if p, ok := r.Kind.(Preparer); ok {
		done, message, err := p.Prepare(ctx, r.Client, obj)
		if message != "" {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonHoldReleased, "Release", "%s", message)
		}
		if done || err != nil {
			return ctrl.Result{}, ignoreConflict(err)
		}
	}
	w, err := r.Kind.Load(ctx, readers, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	if reason == "" {
		reason = w.HandedBack()
	}
	if reason != "" {
		return ctrl.Result{}, r.handBack(ctx, obj, w, rollout, reason)
	}
	rev := w.Target()
	if rev == nil {
		return ctrl.Result{}, nil // the kind's controller has not computed the revision yet
	}
	grace, _ := inplace.GracePeriodOf(obj.GetAnnotations())
	t := &target{kind: r.Kind.Name(), workload: obj, w: w, rev: rev, grace: time.Duration(grace) * time.Second, kubeletVersion: r.KubeletVersion}
	now := r.Clock.Now()
	plan := w.Plan(now)

	// One pod's error must not stop the others: each is tried, the errors
	// returned together (the pass is retried with back-off).
	var errs, failures []string
	result := ctrl.Result{RequeueAfter: plan.RecheckIn}
	for _, pod := range plan.Updating {
		step, err := r.updater.advance(ctx, pod, t)
		if err != nil {
			errs = append(errs, err.Error())
		}
		if step.failure != "" {
			failures = append(failures, fmt.Sprintf("pod %s: %s", pod.Name, step.failure))
		}
		result = sooner(result, step.requeueAfter)
	}
	for _, pod := range plan.Settling {
		if err := r.updater.settle(ctx, pod, t); err != nil {
			errs = append(errs, err.Error())
		}
	}
	// A pass that cannot judge its starts (a template or the prepull pods
	// unread, a prepull pod not created) starts nothing and leaves the
	// record as it is: clearing its pull state would end the webhook's
	// hold on the workload controller's replacements while a node still
	// pulls, or cannot.
	starts, eligible, err := r.starts(ctx, plan, t)
	if err != nil {
		return result, passError(append(errs, err.Error()))
	}
	held := false
	var pulls []string
	if r.prepullOn(obj) && !plan.Complete {
		starts, held, pulls, err = r.pullAhead(ctx, obj, t, eligible, starts)
		if err != nil {
			return result, passError(append(errs, err.Error()))
		}
		failures = append(failures, pulls...)
	} else {
		r.clearPrepulls(ctx, obj)
	}
	if len(starts) > 0 || held {
		var stale bool
		if rollout, stale = r.recordStart(ctx, obj, rollout, rev.Name); stale {
			if err := passError(errs); err != nil {
				return result, err
			}
			return sooner(result, staleRetry), nil
		}
	}
	rollout = r.recordPulling(ctx, obj, rollout, held, len(pulls) > 0)
	if log := logf.FromContext(ctx).V(1); log.Enabled() {
		log.Info("A rollout pass", "revision", rev.Name, "complete", plan.Complete, "updating", len(plan.Updating),
			"settling", len(plan.Settling), "candidates", len(plan.Candidates), "eligible", len(eligible), "budget", plan.Budget,
			"downFirst", plan.DownFirst, "wait", plan.Wait, "starting", len(starts), "held", held, "counts", plan.Counts)
	}
	began := 0
	for _, s := range starts {
		if err := r.updater.begin(ctx, s.pod, s.from, s.diff, t); err != nil {
			errs = append(errs, err.Error())
			failures = append(failures, fmt.Sprintf("pod %s: cannot begin its update: %v", s.pod.Name, err))
		} else {
			began++
		}
	}
	if plan.Unstarted != nil && *plan.Unstarted == began && !plan.Complete && len(failures) == 0 && rollout != nil && rollout.Revision == rev.Name {
		rollout = r.endRecord(ctx, obj, rollout)
	}
	switch {
	case plan.Complete && rollout != nil:
		r.complete(ctx, obj, rollout, rev.Name)
	case plan.Complete:
		r.completeEnded(obj, rev.Name)
	case rollout != nil:
		r.reportFailures(ctx, obj, rollout, failures)
	case len(failures) > 0:
		// A last pod failed after the record went: it is written again.
		if ended := r.ended(key); ended != nil && ended.Revision == rev.Name {
			r.reportFailures(ctx, obj, ended, failures)
		}
	}
	return result, passError(errs)
}

// passError is the error of a pass from its steps' errors, nil without
// any: one pod's error does not stop the others, and the pass is retried
// with back-off.
func passError(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// start is a pod the pass begins to update.
type start struct {
	pod  *corev1.Pod
	from *corev1.PodTemplateSpec
	diff inplace.TemplateDiff
}

// starts chooses, of the plan's candidates, those to begin now (Choose),
// with the template each runs and its change to the target; eligible are
// every candidate that can go in place, in the plan's order.
func (r *Reconciler) starts(ctx context.Context, plan Plan, t *target) (chosen, eligible []start, err error) {
	byPod := make(map[*corev1.Pod]start, len(plan.Candidates))
	ok := make(map[*corev1.Pod]bool, len(plan.Candidates))
	for _, pod := range plan.Candidates {
		from, err := t.templateOf(ctx, t.w.RevisionOf(pod))
		if err != nil {
			return nil, nil, err
		}
		d, fallback := t.eligibility(ctx, pod, from)
		byPod[pod] = start{pod: pod, from: from, diff: d}
		if ok[pod] = fallback == ""; ok[pod] {
			eligible = append(eligible, byPod[pod])
		}
	}
	for _, pod := range Choose(plan, func(p *corev1.Pod) bool { return ok[p] }) {
		chosen = append(chosen, byPod[pod])
	}
	return chosen, eligible, nil
}

// Choose returns, of the plan's candidates, those to begin updating in
// place now, in order: with DownFirst, those not Ready whatever the budget;
// then, unless the plan waits, Ready ones (every one without DownFirst) as
// the budget allows. A candidate that cannot go in place (eligible false)
// takes its share of the budget too: its controller replaces it, and the
// webhook lets it.
func Choose(plan Plan, eligible func(*corev1.Pod) bool) []*corev1.Pod {
	var out []*corev1.Pod
	if plan.DownFirst {
		for _, pod := range plan.Candidates {
			if !PodReady(pod) && eligible(pod) {
				out = append(out, pod)
			}
		}
	}
	if plan.Wait {
		return out
	}
	budget := plan.Budget
	for _, pod := range plan.Candidates {
		if budget <= 0 {
			break
		}
		if plan.DownFirst && !PodReady(pod) {
			continue
		}
		budget--
		if eligible(pod) {
			out = append(out, pod)
		}
	}
	return out
}

// handedBack says why the workload's rollouts are no longer in place for
// reasons every kind shares, "" while they are: it is being deleted, its
// policy is Recreate (or malformed: the webhook refuses that), its
// namespace is no longer managed.
func (r *Reconciler) handedBack(ctx context.Context, obj client.Object) string {
	if obj.GetDeletionTimestamp() != nil {
		return "it is being deleted"
	}
	if p, err := inplace.UpdatePolicyOf(obj.GetAnnotations()); err != nil || p == inplace.Recreate {
		return "its update policy is not in place"
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: obj.GetNamespace()}, ns); err == nil && !r.Scope.Manages(ns.Name, ns.Labels) {
		return "its namespace is not managed"
	}
	return ""
}

// managedPodsIn reports whether the cache holds a pod the webhook gated in
// the namespace, or cannot tell.
func (r *Reconciler) managedPodsIn(ctx context.Context, namespace string) bool {
	pods := &corev1.PodList{}
	err := r.Client.List(ctx, pods, client.InNamespace(namespace), client.Limit(1))
	return err != nil || len(pods.Items) > 0
}

// handBack settles the pods an in-place rollout left mid-update on a
// workload whose rollouts are its controller's alone now (the webhook lets
// its controller replace the rest), and removes the rollout record.
func (r *Reconciler) handBack(ctx context.Context, obj client.Object, w Workload, rollout *inplace.Rollout, reason string) error {
	rev := w.Target()
	if rev == nil {
		rev = &Revision{Mark: func(*corev1.Pod) {}}
	}
	t := &target{kind: r.Kind.Name(), workload: obj, w: w, rev: rev}
	var errs []error
	for _, pod := range w.Pods() {
		if inplace.Updating(pod) {
			errs = append(errs, r.updater.settle(ctx, pod, t))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.clearPrepulls(ctx, obj)
	if rollout == nil || obj.GetDeletionTimestamp() != nil {
		return nil
	}
	if err := r.writeRecord(ctx, obj, nil); err != nil {
		return ignoreConflict(err)
	}
	r.active.set(client.ObjectKeyFromObject(obj).String(), false)
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonHoldReleased, "Release",
		"Left the rollout to the %s controller: %s", r.Kind.Name(), reason)
	return nil
}

// staleRetry is when a pass that lost a write to a newer version of its
// workload is tried again, should the newer version's event not have
// brought the workload back by then.
const staleRetry = time.Second

// sooner returns r, requeued after at the latest.
func sooner(r ctrl.Result, after time.Duration) ctrl.Result {
	if after > 0 && (r.RequeueAfter == 0 || after < r.RequeueAfter) {
		r.RequeueAfter = after
	}
	return r
}

// controllerOf returns the pod's controller reference, or nil.
func controllerOf(pod *corev1.Pod) *metav1.OwnerReference { return metav1.GetControllerOfNoCopy(pod) }
