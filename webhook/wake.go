package webhook

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
)

// A workload controller whose request the pod webhook refused retries with
// an exponential back-off that a run of refusals takes to its cap: 5 ms
// doubled per failed sync, at most 1000 s (client-go's
// DefaultTypedControllerRateLimiter, which the StatefulSet, DaemonSet and
// ReplicaSet controllers use). Only an event on its own objects (a pod it
// owns updated, its workload changed) makes it retry sooner. When a refusal
// no longer holds with no such event to follow (the promise broken, the
// workload handed back or opted out, no manager replica running the engine,
// a refusal decided on a cache that lagged), the controller would sit out
// its back-off: the Waker writes AnnotationWokenAt on the object the
// controller syncs, and it retries at once.

// WakeInterval is how often the Waker decides again the refusals it keeps.
const WakeInterval = 5 * time.Second

// Reasons for waking a controller, the values of the reason label of
// inplace_controllers_woken_total.
const (
	// WakePasses: decided again, the replacement passes.
	WakePasses = "Passes"
	// WakeNoEngine: no manager replica runs the rollout engine.
	WakeNoEngine = "NoEngine"
	// WakePromiseBroken: the rollout shows no progress (PromiseTimeout).
	WakePromiseBroken = "PromiseBroken"
	// WakeStaleStatus: the refusal holds, but the ReplicaSet's status
	// counts fewer ready or available pods than it has. A ReplicaSet
	// controller whose create or delete failed returns before it plans the
	// availability check of minReadySeconds (syncReplicaSet in 1.37), so
	// its status waits out the back-off, and the Deployment controller,
	// which reads it, with it.
	WakeStaleStatus = "StaleStatus"
)

// refusal is one replacement the pod webhook refused: the last one of a
// controller object.
type refusal struct {
	// pod is the pod as the request carried it: the one to be deleted (its
	// resourceVersion the stored one), or the one to be created.
	pod *corev1.Pod
	op  admissionv1.Operation
	// kind is the workload's kind (a Deployment for a ReplicaSet's pod).
	kind string
	at   time.Time
}

// controller is the object whose controller made the request: the pod's
// controller reference.
func (r refusal) controller() *metav1.OwnerReference { return metav1.GetControllerOfNoCopy(r.pod) }

// refusals keeps the last refusal of each controller object, by its UID.
type refusals struct {
	mu   sync.Mutex
	last map[types.UID]refusal
}

func (s *refusals) remember(pod *corev1.Pod, op admissionv1.Operation, kind string, at time.Time) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[types.UID]refusal{}
	}
	s.last[ref.UID] = refusal{pod: pod, op: op, kind: kind, at: at}
}

func (s *refusals) all() []refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]refusal, 0, len(s.last))
	for _, r := range s.last {
		out = append(out, r)
	}
	return out
}

// drop forgets r, unless a later refusal of its controller replaced it.
func (s *refusals) drop(r refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ref := r.controller(); ref != nil && s.last[ref.UID].at.Equal(r.at) {
		delete(s.last, ref.UID)
	}
}

// recheck decides again a refused replacement. wake, when not "", says
// why its controller should retry now; done says the refusal needs no
// more watching: the pod changed or is gone since (an event its controller
// received), or the ReplicaSet has the pods it wants.
func (v *podValidator) recheck(ctx context.Context, r refusal) (wake string, done bool) {
	pod := r.pod
	decide := v.deleteVerdict
	switch r.op {
	case admissionv1.Delete:
		cur := &corev1.Pod{}
		if err := v.reader.Get(ctx, client.ObjectKeyFromObject(pod), cur); err != nil {
			return "", apierrors.IsNotFound(err)
		}
		if cur.UID != pod.UID || cur.ResourceVersion != pod.ResourceVersion {
			return "", true
		}
		pod = cur
	case admissionv1.Create:
		ref := r.controller()
		rs := &appsv1.ReplicaSet{}
		if err := v.reader.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}, rs); err != nil {
			return "", apierrors.IsNotFound(err)
		}
		if rs.UID != ref.UID || rs.DeletionTimestamp != nil {
			return "", true
		}
		if rs.Status.ObservedGeneration >= rs.Generation && rs.Status.Replicas >= *rs.Spec.Replicas {
			return "", true
		}
		decide = v.createVerdict
	default:
		return "", true
	}
	vd, err := decide(ctx, v.reader, pod)
	if err == nil && (vd == nil || !vd.refuse) && v.live != nil {
		vd, err = decide(ctx, v.live, pod) // the cache may lag: as the handler does
	}
	switch {
	case err != nil:
		return "", false
	case vd == nil || !vd.refuse:
		return WakePasses, false
	case !v.engineRunning():
		return WakeNoEngine, false
	}
	if holds, _, _, _ := v.promise(ctx, pod, vd); !holds {
		return WakePromiseBroken, false
	}
	if ref := r.controller(); ref.Kind == "ReplicaSet" && v.staleStatus(ctx, pod.Namespace, ref) {
		return WakeStaleStatus, false
	}
	return "", false
}

// staleStatus reports whether the ReplicaSet ref names counts fewer ready
// or available pods in its status than the pods it controls are.
func (v *podValidator) staleStatus(ctx context.Context, namespace string, ref *metav1.OwnerReference) bool {
	rs := &appsv1.ReplicaSet{}
	if err := v.reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, rs); err != nil || rs.UID != ref.UID {
		return false
	}
	selector, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		return false
	}
	pods := &corev1.PodList{}
	if err := v.reader.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: selector}, readOnly); err != nil {
		return false
	}
	minReady := time.Duration(rs.Spec.MinReadySeconds) * time.Second
	now := v.clock.Now()
	var ready, available int32
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !metav1.IsControlledBy(pod, rs) || !rollout.PodReady(pod) {
			continue
		}
		ready++
		if _, ok := rollout.AvailableIn(pod, minReady, now); ok {
			available++
		}
	}
	return ready > rs.Status.ReadyReplicas || available > rs.Status.AvailableReplicas
}

// Waker wakes the controllers the pod webhook refused whose replacements
// would now pass, or whose status lags (WakeStaleStatus).
// Every replica runs one for the refusals it made.
type Waker struct {
	validator *podValidator
	// Client writes the annotation.
	Client client.Client
	// Interval is WakeInterval when 0.
	Interval time.Duration
	// OnWake counts a controller woken; nil to not count.
	OnWake func(kind, reason string)
}

var (
	_ manager.Runnable               = &Waker{}
	_ manager.LeaderElectionRunnable = &Waker{}
)

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica answers admission requests, and wakes for its own refusals.
func (*Waker) NeedLeaderElection() bool { return false }

// Start implements manager.Runnable.
func (w *Waker) Start(ctx context.Context) error {
	interval := w.Interval
	if interval <= 0 {
		interval = WakeInterval
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			w.Pass(ctx)
		}
	}
}

// Pass decides again every refusal kept, and wakes the controllers of
// those that would now pass.
func (w *Waker) Pass(ctx context.Context) {
	log := logf.FromContext(ctx).WithName("wake")
	for _, r := range w.validator.refusals.all() {
		if w.validator.clock.Since(r.at) > time.Hour {
			w.validator.refusals.drop(r) // its controller has retried since, whatever its back-off
			continue
		}
		reason, done := w.validator.recheck(ctx, r)
		if reason != "" {
			ref := r.controller()
			err := wake(ctx, w.Client, r.pod.Namespace, ref, w.validator.clock.Now())
			switch {
			case apierrors.IsNotFound(err), apierrors.IsInvalid(err):
				// Gone, or another object of its name (the UID
				// precondition): a new object is synced anyway.
				w.validator.refusals.drop(r)
				continue
			case err != nil:
				log.Error(err, "Waking a controller the pod webhook refused", "kind", ref.Kind, "object", klog.KRef(r.pod.Namespace, ref.Name))
				continue
			}
			log.Info("Woke a controller the pod webhook refused", "kind", ref.Kind, "object", klog.KRef(r.pod.Namespace, ref.Name),
				"pod", klog.KObj(r.pod), "operation", r.op, "reason", reason)
			if w.OnWake != nil {
				w.OnWake(r.kind, reason)
			}
			done = true
		}
		if done {
			w.validator.refusals.drop(r)
		}
	}
}

// wake writes AnnotationWokenAt, at now, on the object ref names in
// namespace, if it is still the one of ref's UID: the patch carries the
// UID, which the API server refuses to change (422).
func wake(ctx context.Context, c client.Client, namespace string, ref *metav1.OwnerReference, now time.Time) error {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind))
	obj.SetNamespace(namespace)
	obj.SetName(ref.Name)
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"uid":         ref.UID,
		"annotations": map[string]string{inplace.AnnotationWokenAt: now.UTC().Format(time.RFC3339Nano)},
	}})
	if err != nil {
		return err
	}
	return c.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch))
}
