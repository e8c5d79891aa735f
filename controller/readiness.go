package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/inplace-dev/inplace/inplace"
)

// ReadinessGateKeeper sets InPlaceUpdateReady=True on every managed pod that
// has the gate and no in-place update in progress. A pod with the gate and
// no writer would never become Ready (OpenKruise issues #114 and #892), so
// the keeper sits on the readiness path of every pod the webhook gated: it
// acts on the pod's creation, before its containers start, so that the gate
// is open by the time they are ready and costs the pod no time.
type ReadinessGateKeeper struct {
	Client client.Client
	Clock  clock.PassiveClock
}

// SetupWithManager registers the keeper. Only pods whose gate needs opening
// reach the queue.
func (r *ReadinessGateKeeper) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("readiness-gate-keeper").
		For(&corev1.Pod{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			pod, ok := o.(*corev1.Pod)
			return ok && inplace.NeedsGateOpened(pod)
		}))).
		Complete(r)
}

// Reconcile opens the pod's gate if it needs opening.
func (r *ReadinessGateKeeper) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pod := &corev1.Pod{}
	if err := r.Client.Get(ctx, req.NamespacedName, pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !inplace.NeedsGateOpened(pod) {
		return ctrl.Result{}, nil
	}
	err := OpenGate(ctx, r.Client, pod, metav1.NewTime(r.Clock.Now()))
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		// The pod changed since the cache saw it (the kubelet or the
		// rollout wrote first); its watch event brings it back here.
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	logf.FromContext(ctx).V(1).Info("Opened the readiness gate", "pod", klog.KObj(pod))
	return ctrl.Result{}, nil
}

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
