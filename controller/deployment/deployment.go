// Package deployment is the rollout engine's adapter for Deployments.
//
// The Deployment controller runs its own rolling update, untouched: it
// scales the new ReplicaSet up and the old ones down within maxSurge and
// maxUnavailable. Where the ReplicaSet controller would then delete an old
// pod and create a new one, the pod webhook refuses both, and the engine
// moves an old pod to the new ReplicaSet instead, in place, in one write:
// its images, its pod-template-hash label and its controller reference. The
// new ReplicaSet counts it at once (updated, not available until Ready),
// the old one no longer does, and the Deployment controller goes on.
//
// How many pods move now is the Deployment controller's own decision read
// back: the old ReplicaSets' pods above their replicas, as far as the new
// ReplicaSet has room below its own. A Recreate strategy, or a rolling
// update whose maxUnavailable comes to 0, rolls out natively. The adapter
// holds no state and writes nothing.
package deployment

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
)

// Kind is the Deployment kind for the rollout engine.
type Kind struct{}

var _ rollout.Kind = Kind{}

// Name implements rollout.Kind.
func (Kind) Name() string { return "Deployment" }

// Object implements rollout.Kind.
func (Kind) Object() client.Object { return &appsv1.Deployment{} }

// Watch implements rollout.Kind: a Deployment's ReplicaSets, and the pods
// of those ReplicaSets.
func (Kind) Watch(b *builder.Builder, mgr manager.Manager) *builder.Builder {
	c := mgr.GetClient()
	return b.
		Watches(&appsv1.ReplicaSet{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &appsv1.Deployment{}, handler.OnlyControllerOwner())).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
			ref := metav1.GetControllerOfNoCopy(obj)
			if ref == nil || ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" {
				return nil
			}
			rs := &appsv1.ReplicaSet{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: ref.Name}, rs); err != nil || rs.UID != ref.UID {
				return nil
			}
			d := metav1.GetControllerOfNoCopy(rs)
			if d == nil || d.Kind != "Deployment" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: d.Name}}}
		}))
}

// Pending implements rollout.Kind: a spec the Deployment controller has not
// observed, a rollout not complete, a record.
func (Kind) Pending(obj client.Object) bool {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return false
	}
	s := d.Status
	return rollout.Recorded(d) || s.ObservedGeneration < d.Generation || s.UpdatedReplicas != ptr.Deref(d.Spec.Replicas, 1) ||
		s.Replicas != s.UpdatedReplicas || s.AvailableReplicas != s.UpdatedReplicas
}

// Load implements rollout.Kind.
func (Kind) Load(ctx context.Context, r rollout.Readers, obj client.Object) (rollout.Workload, error) {
	d := obj.(*appsv1.Deployment)
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of Deployment %s: %w", klog.KObj(d), err)
	}
	var view inplace.DeploymentView
	for _, reader := range []client.Reader{r.Cache, r.Live} {
		if reader == nil {
			continue
		}
		rss, err := replicaSets(ctx, reader, d.Namespace, selector)
		if err != nil {
			return nil, err
		}
		if view = inplace.NewDeploymentView(d, rss); view.New != nil {
			break // else the cache may not have seen the new ReplicaSet yet
		}
	}
	w := &workload{view: view, kubeletVersion: r.KubeletVersion}
	owners, want := map[types.UID]bool{}, 0
	for _, rs := range view.ReplicaSets {
		owners[rs.UID] = true
		want += int(rs.Status.Replicas)
	}
	pods, err := ownedPods(ctx, r, d.Namespace, selector, owners, want)
	if err != nil {
		return nil, err
	}
	w.pods = pods
	return w, nil
}

func replicaSets(ctx context.Context, r client.Reader, namespace string, selector labels.Selector) ([]*appsv1.ReplicaSet, error) {
	list := &appsv1.ReplicaSetList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, err
	}
	out := make([]*appsv1.ReplicaSet, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// ownedPods lists the pods one of the ReplicaSets controls, from the cache
// and live when the cache holds fewer than want (pods the webhook did not
// gate).
func ownedPods(ctx context.Context, r rollout.Readers, namespace string, selector labels.Selector, owners map[types.UID]bool, want int) ([]*corev1.Pod, error) {
	var pods []*corev1.Pod
	for _, reader := range []client.Reader{r.Cache, r.Live} {
		if reader == nil {
			continue
		}
		list := &corev1.PodList{}
		if err := reader.List(ctx, list, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
			return nil, err
		}
		pods = pods[:0]
		for i := range list.Items {
			if ref := metav1.GetControllerOfNoCopy(&list.Items[i]); ref != nil && owners[ref.UID] {
				pods = append(pods, &list.Items[i])
			}
		}
		if len(pods) >= want {
			break
		}
	}
	return pods, nil
}

// workload is a Deployment, its ReplicaSets and their pods.
type workload struct {
	view           inplace.DeploymentView
	pods           []*corev1.Pod
	kubeletVersion func(ctx context.Context, node string) string
}

func (w *workload) HandedBack() string  { return inplace.DeploymentHandedBack(w.view.Deployment) }
func (w *workload) Pods() []*corev1.Pod { return w.pods }

// RevisionOf names a pod's revision by its pod-template-hash.
func (w *workload) RevisionOf(p *corev1.Pod) string {
	return p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
}

// Target is the new ReplicaSet, once the Deployment controller has made it
// for the spec it observed.
func (w *workload) Target() *rollout.Revision {
	d := w.view.Deployment
	if d.Status.ObservedGeneration < d.Generation || w.view.New == nil {
		return nil
	}
	return revision(w.view.New)
}

// Revision returns the revision of a ReplicaSet of the Deployment, by its
// pod-template-hash.
func (w *workload) Revision(_ context.Context, hash string) (*rollout.Revision, error) {
	if rs := w.view.ReplicaSet(hash); rs != nil {
		return revision(rs), nil
	}
	return nil, nil
}

// revision is a ReplicaSet as a revision: a pod marked at it carries its
// pod-template-hash and has it as its controller.
func revision(rs *appsv1.ReplicaSet) *rollout.Revision {
	hash := rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	return &rollout.Revision{Name: hash, Template: &rs.Spec.Template, Mark: func(pod *corev1.Pod) {
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
		refs := make([]metav1.OwnerReference, 0, len(pod.OwnerReferences))
		for _, ref := range pod.OwnerReferences {
			if ptr.Deref(ref.Controller, false) {
				continue
			}
			refs = append(refs, ref)
		}
		pod.OwnerReferences = append(refs, *metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet")))
	}}
}

// Plan reads the Deployment controller's decision back from its
// ReplicaSets: the old ones' live pods above their replicas are the pods it
// takes down now, and as many may move as the new ReplicaSet has room for
// below its own replicas (its controller's creates are refused meanwhile).
// The pods that move are the old ones that can go in place, those not Ready
// first (the ReplicaSet controller deletes those first), then oldest
// ReplicaSet first.
func (w *workload) Plan(now time.Time) rollout.Plan {
	v := w.view
	d := v.Deployment
	minReady := time.Duration(d.Spec.MinReadySeconds) * time.Second
	var plan rollout.Plan
	if v.New == nil {
		return plan
	}
	active := map[types.UID]int{}
	moving, unstarted := 0, 0
	target := v.New.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
	var movable, settled []*corev1.Pod
	plan.Complete = true
	for _, pod := range w.pods {
		if !inplace.Alive(pod) {
			if pod.DeletionTimestamp != nil {
				plan.Complete = false
			}
			continue
		}
		owner := v.Owner(pod)
		if owner == nil {
			continue
		}
		active[owner.UID]++
		wait, available := rollout.AvailableIn(pod, minReady, now)
		if wait > 0 && (plan.RecheckIn == 0 || wait < plan.RecheckIn) {
			plan.RecheckIn = wait
		}
		if owner != v.New || !available || inplace.Updating(pod) {
			plan.Complete = false
		}
		switch {
		case owner == v.New && inplace.Updating(pod):
			plan.Updating = append(plan.Updating, pod)
		case owner == v.New:
		case inplace.Updating(pod):
			// Begun and not moved yet; or moved to a ReplicaSet the
			// rollout has gone past: moved on once settled, as the budget
			// allows, as any old pod.
			state, _ := inplace.StateOf(pod)
			if state != nil && state.Revision != target {
				unstarted++
			}
			if state == nil || !inplace.CheckProgress(pod, state).Settled() {
				moving++
				plan.Updating = append(plan.Updating, pod)
			} else {
				settled = append(settled, pod)
			}
		default:
			unstarted++
			if ok, _ := v.Movable(pod, w.kubeletVersion(context.Background(), pod.Spec.NodeName)); ok {
				movable = append(movable, pod)
			}
		}
	}
	if int(ptr.Deref(v.New.Spec.Replicas, 1)) != active[v.New.UID] {
		plan.Complete = false
	}
	// A pod moves when its old ReplicaSet was scaled down (excess) and the
	// new one up (room). An earlier target's ReplicaSet short of the pods
	// it was scaled up to (stale: the rollout went past it while the
	// manager held the moves, pulling ahead or halted on a pull) holds the
	// room the new one would get: the Deployment controller cannot scale
	// it down while an old ReplicaSet has more available pods than it
	// wants (it refuses to "scale down" to more), so the excess moves
	// into the new ReplicaSet ahead of its scale-up; the pod webhook keeps
	// its ReplicaSet from deleting it meanwhile.
	excess, stale := 0, 0
	for _, rs := range v.ReplicaSets {
		if rs != v.New {
			spec := int(ptr.Deref(rs.Spec.Replicas, 1))
			excess += max(active[rs.UID]-spec, 0)
			stale += max(spec-active[rs.UID], 0)
		}
	}
	room := int(ptr.Deref(v.New.Spec.Replicas, 1)) - active[v.New.UID]
	budget := min(excess, room+stale) - moving
	// Settled updates to a ReplicaSet gone past move on first (not Ready,
	// the ReplicaSet controller's first choice); the rest of them settle.
	for _, pod := range settled {
		if budget > 0 {
			plan.Updating = append(plan.Updating, pod)
			budget--
		} else {
			plan.Settling = append(plan.Settling, pod)
		}
	}
	slices.SortStableFunc(movable, func(a, b *corev1.Pod) int {
		if ra, rb := rollout.PodReady(a), rollout.PodReady(b); ra != rb {
			if !ra {
				return -1
			}
			return 1
		}
		ca, cb := v.Owner(a).CreationTimestamp.Time, v.Owner(b).CreationTimestamp.Time
		if c := ca.Compare(cb); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	plan.Candidates = movable
	plan.Budget = budget
	plan.Counts = fmt.Sprintf("new ReplicaSet %d of %d, excess %d, stale %d, moving %d",
		active[v.New.UID], ptr.Deref(v.New.Spec.Replicas, 1), excess, stale, moving)
	plan.Unstarted = &unstarted
	return plan
}
