// Package statefulset is the rollout engine's adapter for StatefulSets: it
// answers, from a StatefulSet and its pods, what the StatefulSet controller
// replaces next in a rolling update, and how a pod is marked at a revision
// (its controller-revision-hash label).
//
// It holds no state and writes nothing but the release of an earlier
// version's partition hold; the engine (controller/rollout) does the rest.
package statefulset

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
)

// Kind is the StatefulSet kind for the rollout engine.
type Kind struct{}

var (
	_ rollout.Kind     = Kind{}
	_ rollout.Preparer = Kind{}
)

// Name implements rollout.Kind.
func (Kind) Name() string { return "StatefulSet" }

// Object implements rollout.Kind.
func (Kind) Object() client.Object { return &appsv1.StatefulSet{} }

// Watch implements rollout.Kind: the pods a StatefulSet controls.
func (Kind) Watch(b *builder.Builder, mgr manager.Manager) *builder.Builder {
	return b.Watches(&corev1.Pod{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &appsv1.StatefulSet{}, handler.OnlyControllerOwner()))
}

// Pending implements rollout.Kind: a spec the StatefulSet controller has
// not observed, a revision not rolled out to every pod, a record or a hold.
func (Kind) Pending(obj client.Object) bool {
	sts, ok := obj.(*appsv1.StatefulSet)
	if !ok {
		return false
	}
	_, hold := sts.Annotations[inplace.AnnotationHold]
	return rollout.Recorded(sts) || hold || sts.Status.ObservedGeneration < sts.Generation ||
		sts.Status.CurrentRevision != sts.Status.UpdateRevision ||
		sts.Status.UpdatedReplicas != sts.Status.Replicas
}

// Prepare implements rollout.Preparer: it undoes a hold written by an
// earlier version of inplace (the partition raised to replicas): the user's
// partition back, the hold gone.
func (Kind) Prepare(ctx context.Context, c client.Client, obj client.Object) (bool, string, error) {
	sts := obj.(*appsv1.StatefulSet)
	if _, held := sts.Annotations[inplace.AnnotationHold]; !held {
		return false, "", nil
	}
	hold, err := inplace.HoldOf(sts.Annotations)
	if err != nil {
		logf.FromContext(ctx).Error(err, "Releasing a malformed hold: the partition goes to 0", "statefulset", klog.KObj(sts))
	}
	if err := Release(ctx, c, sts, hold); err != nil {
		return true, "", err
	}
	return true, fmt.Sprintf("Released the partition hold of an earlier inplace version: partition %d", inplace.Partition(sts)), nil
}

// Release undoes a hold written by an earlier version of inplace: the
// user's partition restored (hold may be nil when it could not be read: the
// partition then goes to 0, the default), the hold removed. The write is
// conditional on the resourceVersion sts was read at.
func Release(ctx context.Context, c client.Client, sts *appsv1.StatefulSet, hold *inplace.Hold) error {
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

// Load implements rollout.Kind.
func (Kind) Load(ctx context.Context, r rollout.Readers, obj client.Object) (rollout.Workload, error) {
	sts := obj.(*appsv1.StatefulSet)
	selector, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of StatefulSet %s: %w", klog.KObj(sts), err)
	}
	want := max(int(sts.Status.Replicas), int(ptr.Deref(sts.Spec.Replicas, 1)))
	pods, err := rollout.OwnedPods(ctx, r, sts.Namespace, client.MatchingLabelsSelector{Selector: selector}, sts.UID, want)
	if err != nil {
		return nil, err
	}
	return &workload{sts: sts, pods: pods, r: r}, nil
}

// workload is a StatefulSet and its pods.
type workload struct {
	sts  *appsv1.StatefulSet
	pods []*corev1.Pod
	r    rollout.Readers
}

func (w *workload) HandedBack() string              { return inplace.StatefulSetHandedBack(w.sts) }
func (w *workload) Pods() []*corev1.Pod             { return w.pods }
func (w *workload) RevisionOf(p *corev1.Pod) string { return p.Labels[appsv1.StatefulSetRevisionLabel] }

// Target is the StatefulSet's update revision, once its controller has
// observed the spec.
func (w *workload) Target() *rollout.Revision {
	if w.sts.Status.ObservedGeneration < w.sts.Generation || w.sts.Status.UpdateRevision == "" {
		return nil
	}
	return revision(w.sts.Status.UpdateRevision, &w.sts.Spec.Template)
}

// Revision reads a ControllerRevision of the StatefulSet.
func (w *workload) Revision(ctx context.Context, name string) (*rollout.Revision, error) {
	t, err := rollout.RevisionTemplate(ctx, w.r, w.sts.Namespace, name)
	if t == nil || err != nil {
		return nil, err
	}
	return revision(name, t), nil
}

func revision(name string, t *corev1.PodTemplateSpec) *rollout.Revision {
	return &rollout.Revision{Name: name, Template: t, Mark: func(pod *corev1.Pod) {
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		pod.Labels[appsv1.StatefulSetRevisionLabel] = name
	}}
}

// Plan sorts the StatefulSet's pods as its controller's rolling update
// would (pkg/controller/statefulset, updateStatefulSetAfterInvariantEstablished):
// the pods from the partition to replicas whose revision is not the update
// revision are its candidates, highest ordinal first; unavailable ones go at
// once, the others as maxUnavailable allows, and on OrderedReady only once
// every pod is available.
func (w *workload) Plan(now time.Time) rollout.Plan {
	sts := w.sts
	replicas := int(ptr.Deref(sts.Spec.Replicas, 1))
	type slot struct {
		pod      *corev1.Pod
		updating bool
	}
	byOrdinal := make([]*slot, replicas)
	var plan rollout.Plan
	for _, pod := range w.pods {
		ord, ok := inplace.Ordinal(sts, pod)
		if !ok {
			continue
		}
		s := &slot{pod: pod, updating: inplace.Updating(pod)}
		if ord >= replicas || !inplace.InRolloutRange(sts, ord) {
			if s.updating {
				plan.Settling = append(plan.Settling, pod)
			}
			if ord < replicas {
				byOrdinal[ord] = s
			}
			continue
		}
		if byOrdinal[ord] == nil {
			byOrdinal[ord] = s
		}
	}

	minReady := time.Duration(sts.Spec.MinReadySeconds) * time.Second
	unavailable, allAvailable := 0, true
	for _, s := range byOrdinal {
		if s == nil {
			unavailable++
			allAvailable = false
			continue
		}
		wait, ok := rollout.AvailableIn(s.pod, minReady, now)
		if inplace.OutOfService(s.pod) || !ok {
			unavailable++
			allAvailable = false
		}
		if wait > 0 && (plan.RecheckIn == 0 || wait < plan.RecheckIn) {
			plan.RecheckIn = wait
		}
	}

	target := sts.Status.UpdateRevision
	plan.Complete = true
	for ord := replicas - 1; ord >= int(inplace.Partition(sts)); ord-- {
		s := byOrdinal[ord]
		if s == nil {
			plan.Complete = false
			continue
		}
		if s.updating {
			if s.pod.DeletionTimestamp == nil { // a terminating pod is the StatefulSet controller's
				plan.Updating = append(plan.Updating, s.pod)
			}
			plan.Complete = false
			continue
		}
		if _, ok := rollout.AvailableIn(s.pod, minReady, now); !ok {
			plan.Complete = false
		}
		if w.RevisionOf(s.pod) == target {
			continue
		}
		plan.Complete = false
		if !inplace.Alive(s.pod) {
			continue // the StatefulSet controller replaces it
		}
		plan.Candidates = append(plan.Candidates, s.pod)
	}
	plan.DownFirst = true
	plan.Budget = maxUnavailable(sts, replicas) - unavailable
	plan.Wait = sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement && !allAvailable
	return plan
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
