package controller

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
)

// AbandonAfter is how long past its grace period an in-place update may
// keep a pod's gate closed without its images patched before any manager
// replica opens the gate again: the elected replica patches within
// milliseconds of the grace period, so an update still unpatched then was
// left by a replica that stopped. The rollout begins it again if it still
// wants it.
const AbandonAfter = 30 * time.Second

// ReadinessGateKeeper keeps the InPlaceUpdateReady gate of every managed pod
// from staying closed without a reason. A pod with the gate and no writer
// would never become Ready (OpenKruise issues #114 and #892), so the keeper
// runs on every manager replica, not only the elected one, and opens the
// gate of:
//   - a pod with no in-place update in progress: on its creation, before its
//     containers start, so that the gate costs it no time;
//   - a pod whose update the kubelet has taken in (and, unguarded, whose
//     replaced containers are gone), and whose resize, if it has one, the
//     kubelet has applied: the kubelet then turns it Ready the moment its
//     new containers are;
//   - a pod whose update was begun and never patched (its gate closed for
//     longer than the grace period and AbandonAfter, or its workload gone),
//     or whose resize is still not applied AbandonAfter past the rollout's
//     ResizeDeadline: the replica that began it stopped.
//
// Its writes are conditional on the resourceVersion it read: of two
// replicas opening the same gate one succeeds and the other finds the pod
// changed, and none opens a gate that an update closed since it read. So
// that they do not race for every gate, the keeper leaves a gate for
// ElectedHeadStart to the writer expected to open it: a new pod's to the
// elected replica's keeper, an updated pod's to the elected replica's
// rollout.
type ReadinessGateKeeper struct {
	Client client.Client
	Clock  clock.PassiveClock
	// Guard says when a patched pod's gate may open (see rollout.Guard);
	// nil is unguarded.
	Guard rollout.Guard
	// Scope's excluded namespaces are never touched: a pod there is not
	// inplace's, whatever its labels say.
	Scope inplace.Scope
	// Passes tracks the keeper's passes (nil tracks nothing).
	Passes *rollout.Passes
	// Elected is closed once this replica is elected (the manager's
	// Elected); nil is elected.
	Elected <-chan struct{}
}

// ElectedHeadStart is how long past a pod's last change the keeper waits
// before it opens a gate that the elected replica is expected to open:
// that one, watching the same pod, opens it within milliseconds, and a
// second writer only has its write refused as a conflict (two in three
// gate writes were, before). When the elected replica has stopped, until
// another one takes its lease, a gate opens this late.
const ElectedHeadStart = 2 * time.Second

// KeeperConcurrency is how many gates the keeper opens at once: a burst of
// pods created together (a scale-up, a Deployment's rollout) waits for one
// write each otherwise, and a gate still closed when the pod's containers
// are ready delays its Ready (make bench-gate).
const KeeperConcurrency = 4

// SetupWithManager registers the keeper on every replica. Only the pods
// whose gate may need opening reach the queue.
func (r *ReadinessGateKeeper) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("readiness-gate-keeper").
		For(&corev1.Pod{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			pod, ok := o.(*corev1.Pod)
			return ok && !r.Scope.Excluded[pod.Namespace] && inplace.HasGate(pod) && !inplace.ControlledByOther(pod) &&
				(inplace.NeedsGateOpened(pod) || inplace.Updating(pod) && !rollout.GateOpen(pod))
		}))).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false), ReconciliationTimeout: rollout.ReconcileTimeout,
			MaxConcurrentReconciles: KeeperConcurrency}).
		Complete(r)
}

// Reconcile opens the pod's gate if nothing holds it closed.
func (r *ReadinessGateKeeper) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	end, ok := r.Passes.Begin()
	if !ok {
		return ctrl.Result{}, nil // stopping: the shutdown drain opens what is left
	}
	defer end()
	pod := &corev1.Pod{}
	if err := r.Client.Get(ctx, req.NamespacedName, pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	open, after, why := r.shouldOpen(ctx, pod)
	if !open {
		return ctrl.Result{RequeueAfter: after}, nil
	}
	if wait := r.headStart(pod); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	err := rollout.OpenGate(ctx, r.Client, pod, metav1.NewTime(r.Clock.Now()))
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		// The pod changed since the cache saw it (the kubelet, the rollout
		// or another replica wrote first); its watch event brings it back.
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	logf.FromContext(ctx).V(1).Info("Opened the readiness gate", "pod", klog.KObj(pod), "why", why)
	return ctrl.Result{}, nil
}

// shouldOpen decides whether the pod's gate opens now; if not, after says
// when to look again (0: at the pod's next event).
func (r *ReadinessGateKeeper) shouldOpen(ctx context.Context, pod *corev1.Pod) (open bool, after time.Duration, why string) {
	if r.Scope.Excluded[pod.Namespace] || !inplace.HasGate(pod) || pod.DeletionTimestamp != nil || rollout.GateOpen(pod) || inplace.ControlledByOther(pod) {
		return false, 0, ""
	}
	if inplace.NeedsGateOpened(pod) {
		return true, 0, "no update in progress"
	}
	state, err := inplace.StateOf(pod)
	if err != nil {
		return false, 0, "" // the rollout recreates the pod
	}
	if state != nil {
		guarded := rollout.IsGuarded(r.Guard)
		progress := inplace.CheckProgress(pod, state)
		if progress.GateMayOpen(guarded) {
			return true, 0, "the kubelet has taken in the patch"
		}
		if !progress.TakenIn(guarded) || state.PatchedAt == nil {
			return false, 0, ""
		}
		// Its containers are taken in, its resize is not applied yet: the
		// elected replica ends a resize that does not come within its
		// deadlines; one that outlives them lost its writer.
		deadline := state.PatchedAt.Add(rollout.ResizeDeadline + AbandonAfter)
		if wait := deadline.Sub(r.Clock.Now()); wait > 0 {
			return false, wait, ""
		}
		return true, 0, "its resize was left unapplied"
	}
	// Begun, not patched.
	grace, found := r.gracePeriod(ctx, pod)
	if !found {
		return true, 0, "its workload is gone"
	}
	gate := inplace.GateCondition(pod)
	deadline := gate.LastTransitionTime.Add(grace + AbandonAfter + time.Second)
	if wait := deadline.Sub(r.Clock.Now()); wait > 0 {
		return false, wait, ""
	}
	return true, 0, "the update was begun and never patched"
}

// headStart is how much longer the keeper leaves the pod's gate to the
// elected replica: none for a new pod's on the elected replica, else what
// is left of ElectedHeadStart past the pod's last change as its object
// records it (never more, whatever the clocks say).
func (r *ReadinessGateKeeper) headStart(pod *corev1.Pod) time.Duration {
	if isElected(r.Elected) && !inplace.Updating(pod) {
		return 0
	}
	last := pod.CreationTimestamp.Time
	later := func(t time.Time) {
		if t.After(last) {
			last = t
		}
	}
	if pod.Status.StartTime != nil {
		later(pod.Status.StartTime.Time)
	}
	for i := range pod.Status.Conditions {
		later(pod.Status.Conditions[i].LastTransitionTime.Time)
	}
	for i := range pod.Status.ContainerStatuses {
		if running := pod.Status.ContainerStatuses[i].State.Running; running != nil {
			later(running.StartedAt.Time)
		}
	}
	if state, err := inplace.StateOf(pod); err == nil && state != nil && state.PatchedAt != nil {
		later(state.PatchedAt.Time)
	}
	return min(ElectedHeadStart, last.Add(ElectedHeadStart).Sub(r.Clock.Now()))
}

// isElected reports whether elected, a manager's Elected channel, is
// closed; nil is elected.
func isElected(elected <-chan struct{}) bool {
	if elected == nil {
		return true
	}
	select {
	case <-elected:
		return true
	default:
		return false
	}
}

// gracePeriod returns the grace period of the workload that controls the pod
// (inplace.dev/grace-period-seconds), read from the cache's metadata; found
// is false when the pod has no controller or it is gone.
func (r *ReadinessGateKeeper) gracePeriod(ctx context.Context, pod *corev1.Pod) (time.Duration, bool) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return 0, false
	}
	gvk := schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind)
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: ref.Name}, m); err != nil || m.UID != ref.UID {
		if apierrors.IsNotFound(err) || err == nil {
			return 0, false
		}
		return inplace.MaxGracePeriodSeconds * time.Second, true // cannot tell: the longest
	}
	if gvk.GroupKind() == (schema.GroupKind{Group: appsv1.GroupName, Kind: "ReplicaSet"}) {
		if owner := metav1.GetControllerOfNoCopy(m); owner != nil {
			d := &metav1.PartialObjectMetadata{}
			d.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind(owner.Kind))
			if err := r.Client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: owner.Name}, d); err == nil {
				m = d
			}
		}
	}
	seconds, err := inplace.GracePeriodOf(m.Annotations)
	if err != nil {
		seconds = inplace.MaxGracePeriodSeconds
	}
	return time.Duration(seconds) * time.Second, true
}
