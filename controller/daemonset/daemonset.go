// Package daemonset is the rollout engine's adapter for DaemonSets: it
// answers, from a DaemonSet, its ControllerRevisions and its pods, what the
// DaemonSet controller replaces next in a rolling update (node by node,
// within maxUnavailable, unavailable old pods at once), and how a pod is
// marked at a revision (its controller-revision-hash and
// pod-template-generation labels).
//
// A DaemonSet that surges (maxSurge > 0) or is OnDelete rolls out
// natively. The adapter holds no state and writes nothing.
package daemonset

import (
	"context"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
)

// Kind is the DaemonSet kind for the rollout engine.
type Kind struct{}

var _ rollout.Kind = Kind{}

// Name implements rollout.Kind.
func (Kind) Name() string { return "DaemonSet" }

// Object implements rollout.Kind.
func (Kind) Object() client.Object { return &appsv1.DaemonSet{} }

// Watch implements rollout.Kind: the pods a DaemonSet controls.
func (Kind) Watch(b *builder.Builder, mgr manager.Manager) *builder.Builder {
	return b.Watches(&corev1.Pod{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &appsv1.DaemonSet{}, handler.OnlyControllerOwner()))
}

// Pending implements rollout.Kind: a spec the DaemonSet controller has not
// observed, nodes without an updated or available pod, a record.
func (Kind) Pending(obj client.Object) bool {
	ds, ok := obj.(*appsv1.DaemonSet)
	if !ok {
		return false
	}
	s := ds.Status
	return rollout.Recorded(ds) || s.ObservedGeneration < ds.Generation ||
		s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberAvailable != s.DesiredNumberScheduled
}

// Load implements rollout.Kind.
func (Kind) Load(ctx context.Context, r rollout.Readers, obj client.Object) (rollout.Workload, error) {
	ds := obj.(*appsv1.DaemonSet)
	selector, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of DaemonSet %s: %w", klog.KObj(ds), err)
	}
	pods, err := rollout.OwnedPods(ctx, r, ds.Namespace, client.MatchingLabelsSelector{Selector: selector}, ds.UID, int(ds.Status.DesiredNumberScheduled))
	if err != nil {
		return nil, err
	}
	w := &workload{ds: ds, pods: pods, generation: inplace.DaemonSetTemplateGeneration(ds)}
	for _, reader := range []client.Reader{r.Cache, r.Live} {
		if reader == nil {
			continue
		}
		if w.revisions, err = ownedRevisions(ctx, reader, ds); err != nil {
			return nil, err
		}
		if w.current = inplace.CurrentDaemonSetRevision(ds, w.revisions); w.current != nil {
			break // else the cache may not have seen the DaemonSet controller's new revision yet
		}
	}
	return w, nil
}

func ownedRevisions(ctx context.Context, r client.Reader, ds *appsv1.DaemonSet) ([]*appsv1.ControllerRevision, error) {
	list := &appsv1.ControllerRevisionList{}
	if err := r.List(ctx, list, client.InNamespace(ds.Namespace)); err != nil {
		return nil, err
	}
	var out []*appsv1.ControllerRevision
	for i := range list.Items {
		if ref := metav1.GetControllerOfNoCopy(&list.Items[i]); ref != nil && ref.UID == ds.UID {
			out = append(out, &list.Items[i])
		}
	}
	return out, nil
}

// workload is a DaemonSet, its revisions and its pods.
type workload struct {
	ds        *appsv1.DaemonSet
	pods      []*corev1.Pod
	revisions []*appsv1.ControllerRevision
	// current is the revision of the DaemonSet's template, nil until its
	// controller has recorded it; generation its template generation.
	current    *appsv1.ControllerRevision
	generation string
}

func (w *workload) HandedBack() string  { return inplace.DaemonSetHandedBack(w.ds) }
func (w *workload) Pods() []*corev1.Pod { return w.pods }

// RevisionOf names a pod's revision by its controller-revision-hash.
func (w *workload) RevisionOf(p *corev1.Pod) string {
	return p.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]
}

func (w *workload) hash() string {
	if w.current == nil {
		return ""
	}
	return w.current.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]
}

// Target is the DaemonSet's current revision, once its controller has
// observed the spec and recorded it.
func (w *workload) Target() *rollout.Revision {
	if w.ds.Status.ObservedGeneration < w.ds.Generation || w.hash() == "" {
		return nil
	}
	hash, generation := w.hash(), w.generation
	return &rollout.Revision{Name: hash, Template: &w.ds.Spec.Template, Mark: func(pod *corev1.Pod) {
		setLabel(pod, appsv1.DefaultDaemonSetUniqueLabelKey, hash)
		if generation != "" {
			setLabel(pod, inplace.LabelPodTemplateGeneration, generation)
		}
	}}
}

// Revision returns the revision of that hash. A pod marked at an older
// revision keeps its template generation: an older one, never the
// DaemonSet's current.
func (w *workload) Revision(_ context.Context, hash string) (*rollout.Revision, error) {
	if hash == w.hash() {
		return w.Target(), nil
	}
	for _, rev := range w.revisions {
		if hash == "" || rev.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] != hash {
			continue
		}
		t, err := inplace.RevisionTemplate(rev)
		if err != nil {
			return nil, err
		}
		return &rollout.Revision{Name: hash, Template: t, Mark: func(pod *corev1.Pod) {
			setLabel(pod, appsv1.DefaultDaemonSetUniqueLabelKey, hash)
			if pod.Labels[inplace.LabelPodTemplateGeneration] == w.generation {
				delete(pod.Labels, inplace.LabelPodTemplateGeneration)
			}
		}}, nil
	}
	return nil, nil
}

func setLabel(pod *corev1.Pod, k, v string) {
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[k] = v
}

// Plan sorts the DaemonSet's pods as its controller's rolling update
// without surge would (pkg/controller/daemon/update.go, rollingUpdate): per
// node, an old pod not available is replaced at once, the available ones as
// maxUnavailable (of the nodes that should run a pod, rounded up) allows,
// counting the nodes without an available updated pod. The DaemonSet
// controller takes its candidates in a random order of nodes; the engine
// takes them by node name, and the webhook refuses the controller's choices
// while the rollout makes progress.
func (w *workload) Plan(now time.Time) rollout.Plan {
	ds := w.ds
	hash := w.hash()
	minReady := time.Duration(ds.Spec.MinReadySeconds) * time.Second
	byNode := map[string][]*corev1.Pod{}
	for _, pod := range w.pods {
		if pod.DeletionTimestamp == nil {
			byNode[pod.Spec.NodeName] = append(byNode[pod.Spec.NodeName], pod)
		}
	}
	nodes := make([]string, 0, len(byNode))
	for n := range byNode {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)

	var plan rollout.Plan
	desired := int(ds.Status.DesiredNumberScheduled)
	unavailable := max(desired-len(nodes), 0) // nodes the controller has yet to give a pod
	plan.Complete = unavailable == 0
	for _, node := range nodes {
		pods := byNode[node]
		if len(pods) > 1 {
			unavailable++ // the controller keeps one pod per node
			plan.Complete = false
			continue
		}
		pod := pods[0]
		wait, available := rollout.AvailableIn(pod, minReady, now)
		if wait > 0 && (plan.RecheckIn == 0 || wait < plan.RecheckIn) {
			plan.RecheckIn = wait
		}
		switch {
		case inplace.Updating(pod):
			plan.Updating = append(plan.Updating, pod)
			if inplace.OutOfService(pod) || !available {
				unavailable++
			}
			plan.Complete = false
		case inplace.DaemonPodUpdated(pod, hash, w.generation):
			if !available {
				unavailable++
				plan.Complete = false
			}
		default:
			plan.Complete = false
			if !available {
				unavailable++
			}
			if inplace.Alive(pod) {
				plan.Candidates = append(plan.Candidates, pod)
			}
		}
	}
	plan.DownFirst = true
	plan.Budget = inplace.DaemonSetMaxUnavailable(ds, desired) - unavailable
	return plan
}
