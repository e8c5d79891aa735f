package rollout

import (
	"context"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/inplace-dev/inplace/inplace"
)

// DefaultPrepullParallelism is how many nodes pull a workload's new images
// at once when Prepull.Parallelism is 0.
const DefaultPrepullParallelism = 4

// Prepull has the nodes of a rollout pull its new images before the first
// pod on each has its containers restarted (inplace.PrepullPod): the pull
// is spent while the old containers still serve, and an image that cannot
// be pulled halts the rollout before any pod is taken down.
type Prepull struct {
	// Default says whether a workload without inplace.dev/prepull pulls
	// ahead.
	Default bool
	// Parallelism bounds how many nodes pull one workload's images at once
	// (DefaultPrepullParallelism when 0).
	Parallelism int
	// Pods reads the prepull pods: a cache of the pods labelled
	// inplace.dev/prepull-for.
	Pods client.Reader

	pulled pulledNodes
	// failing remembers the failures counted, one per node and revision.
	failing memo
}

// pullAheadFailure begins the failure of a rollout whose nodes cannot pull
// its images ahead.
const pullAheadFailure = "pulling ahead: "

// pulledNodes remembers, per workload, the nodes that pulled its target
// revision's images (or that cannot pull ahead: those go without), since
// their prepull pods are deleted once read. A restarted manager forgets:
// it pulls again where pods are left, which the images on the node make
// quick.
type pulledNodes struct {
	mu sync.Mutex
	by map[string]*pulledRevision
}

type pulledRevision struct {
	revision string
	nodes    map[string]bool
}

// of returns the nodes known to have pulled revision for the workload key,
// forgetting another revision's.
func (p *pulledNodes) of(key, revision string) map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.by == nil {
		p.by = map[string]*pulledRevision{}
	}
	r := p.by[key]
	if r == nil || r.revision != revision {
		r = &pulledRevision{revision: revision, nodes: map[string]bool{}}
		p.by[key] = r
	}
	return r.nodes
}

func (p *pulledNodes) add(key, revision, node string) {
	nodes := p.of(key, revision)
	p.mu.Lock()
	defer p.mu.Unlock()
	nodes[node] = true
}

func (p *pulledNodes) has(key, revision, node string) bool {
	nodes := p.of(key, revision)
	p.mu.Lock()
	defer p.mu.Unlock()
	return nodes[node]
}

func (p *pulledNodes) forget(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.by, key)
}

// prepullOn says whether the workload pulls ahead: its annotation, else the
// manager's default. A malformed annotation (the webhook refuses it) is
// the default.
func (r *Reconciler) prepullOn(obj client.Object) bool {
	if r.Prepull == nil || r.Prepull.Pods == nil {
		return false
	}
	on, _ := inplace.PrepullOf(obj.GetAnnotations(), r.Prepull.Default)
	return on
}

// pullAhead keeps, of the starts a pass chose, those whose node has the new
// images already; it has the nodes of the rollout's next pods pull them,
// a bounded number at once, in the order the pods come; and it reports a
// node that cannot pull them as the rollout's failure, which holds every
// start: the pods keep serving the old images. A pod that is not Ready
// starts whatever its node holds: it serves nothing to protect. all are the
// eligible candidates in the plan's order. held says whether a chosen start
// waits for a pull.
func (r *Reconciler) pullAhead(ctx context.Context, obj client.Object, t *target, all, chosen []start) (keep []start, held bool, failures []string, err error) {
	key := client.ObjectKeyFromObject(obj).String()
	list, err := r.prepullPods(ctx, obj)
	if err != nil {
		return nil, false, nil, err
	}
	gvk, err := apiutil.GVKForObject(obj, r.Client.Scheme())
	if err != nil {
		return nil, false, nil, err
	}
	pulling := 0
	byNode := map[string]*corev1.Pod{}
	for i := range list.Items {
		pod := &list.Items[i]
		node := pod.Spec.NodeName
		if pod.Annotations[inplace.AnnotationPrepullRevision] != t.rev.Name || r.Prepull.pulled.has(key, t.rev.Name, node) {
			r.deletePrepull(ctx, pod)
			continue
		}
		switch state, detail := inplace.PrepullState(pod); {
		case state == inplace.PrepullPulled:
			r.Prepull.pulled.add(key, t.rev.Name, node)
			prepullsTotal.WithLabelValues(t.kind, prepullPulled).Inc()
			r.deletePrepull(ctx, pod)
		case state == inplace.PrepullFailed:
			byNode[node] = pod
			if r.Prepull.failing.first(key, node, t.rev.Name) {
				prepullsTotal.WithLabelValues(t.kind, prepullFailed).Inc()
			}
			failures = append(failures, fmt.Sprintf("node %s cannot pull the new images: %s", node, detail))
		case pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil:
			// The kubelet refused the pod (a node full of pods), or its
			// deadline passed: this node goes without pulling ahead.
			r.Prepull.pulled.add(key, t.rev.Name, node)
			prepullsTotal.WithLabelValues(t.kind, prepullSkipped).Inc()
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonPrepullSkipped, "Prepull",
				"Updating the pods on node %s without pulling ahead: %s", node, prepullEnded(pod))
			r.deletePrepull(ctx, pod)
		default:
			byNode[node] = pod
			pulling++
		}
	}

	limit := r.Prepull.Parallelism
	if limit <= 0 {
		limit = DefaultPrepullParallelism
	}
	for _, s := range all {
		node := s.pod.Spec.NodeName
		if pulling >= limit || len(failures) > 0 {
			break
		}
		if !PodReady(s.pod) || node == "" || byNode[node] != nil || r.Prepull.pulled.has(key, t.rev.Name, node) {
			continue
		}
		containers := newImages(s.pod, t.rev.Template, s.diff)
		if len(containers) == 0 {
			continue
		}
		if r.onNode(ctx, node, containers) {
			// Its kubelet reports the images (a rollback, an image
			// shared with another workload): nothing to pull.
			r.Prepull.pulled.add(key, t.rev.Name, node)
			continue
		}
		owner := metav1.OwnerReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: obj.GetName(), UID: obj.GetUID()}
		pod := inplace.PrepullPod(owner, t.rev.Name, node, &s.pod.Spec, containers)
		pod.Namespace = obj.GetNamespace()
		switch err := r.Client.Create(ctx, pod); {
		case err == nil, apierrors.IsAlreadyExists(err):
			logf.FromContext(ctx).V(1).Info("Pulling ahead", "node", node, "revision", t.rev.Name, "pod", klog.KObj(pod))
			byNode[node] = pod
			pulling++
		case apierrors.IsForbidden(err), apierrors.IsInvalid(err):
			// A quota, a pod security level or another admission control
			// refuses the pod: the node goes without.
			r.Prepull.pulled.add(key, t.rev.Name, node)
			prepullsTotal.WithLabelValues(t.kind, prepullSkipped).Inc()
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, ReasonPrepullSkipped, "Prepull",
				"Updating the pods on node %s without pulling ahead: the prepull pod was refused: %v", node, err)
		default:
			return nil, false, nil, fmt.Errorf("creating prepull pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}

	if len(failures) > 0 {
		slices.Sort(failures)
		failure := failures[0]
		if len(failures) > 1 {
			failure = fmt.Sprintf("%s (and %d more nodes)", failure, len(failures)-1)
		}
		for _, s := range chosen {
			if !PodReady(s.pod) {
				keep = append(keep, s)
			}
		}
		return keep, true, []string{pullAheadFailure + failure}, nil
	}
	for _, s := range chosen {
		if !PodReady(s.pod) || len(newImages(s.pod, t.rev.Template, s.diff)) == 0 || r.Prepull.pulled.has(key, t.rev.Name, s.pod.Spec.NodeName) {
			keep = append(keep, s)
		} else {
			held = true
		}
	}
	return keep, held, nil, nil
}

// onNode reads the node live and reports whether its kubelet reports every
// container's image (inplace.OnNode). A node that cannot be read pulls.
func (r *Reconciler) onNode(ctx context.Context, name string, containers []corev1.Container) bool {
	if r.APIReader == nil {
		return false
	}
	node := &corev1.Node{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
		return false
	}
	return inplace.OnNode(node, containers)
}

// clearPrepulls deletes the prepull pods of a workload whose rollout is
// over or no longer pulls ahead, and forgets its pulled nodes.
func (r *Reconciler) clearPrepulls(ctx context.Context, obj client.Object) {
	if r.Prepull == nil || r.Prepull.Pods == nil {
		return
	}
	key := client.ObjectKeyFromObject(obj).String()
	r.Prepull.pulled.forget(key)
	r.Prepull.failing.forget(key)
	list, err := r.prepullPods(ctx, obj)
	if err != nil {
		return
	}
	for i := range list.Items {
		r.deletePrepull(ctx, &list.Items[i])
	}
}

// prepullPods lists the workload's prepull pods.
func (r *Reconciler) prepullPods(ctx context.Context, obj client.Object) (*corev1.PodList, error) {
	list := &corev1.PodList{}
	err := r.Prepull.Pods.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.MatchingLabels{inplace.LabelPrepullFor: string(obj.GetUID())})
	return list, err
}

// deletePrepull deletes a prepull pod at once: it runs nothing. A failed
// delete is left to the next pass, and to the pod's deadline.
func (r *Reconciler) deletePrepull(ctx context.Context, pod *corev1.Pod) {
	if pod.DeletionTimestamp != nil {
		return
	}
	err := r.Client.Delete(ctx, pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &pod.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		logf.FromContext(ctx).Error(err, "Cannot delete a prepull pod", "pod", klog.KObj(pod))
	}
}

// prepullEnded says why a prepull pod ended before it pulled.
func prepullEnded(pod *corev1.Pod) string {
	switch {
	case pod.DeletionTimestamp != nil:
		return "its prepull pod was deleted"
	case pod.Status.Reason != "":
		return fmt.Sprintf("its prepull pod failed: %s: %s", pod.Status.Reason, pod.Status.Message)
	}
	return "its prepull pod failed"
}

// newImages are the target's containers whose image the pod does not run:
// what its update pulls.
func newImages(pod *corev1.Pod, tpl *corev1.PodTemplateSpec, d inplace.TemplateDiff) []corev1.Container {
	var out []corev1.Container
	for _, name := range changesOf(pod, tpl, d).images {
		if c := containerOf(tpl.Spec.InitContainers, tpl.Spec.Containers, name); c != nil {
			out = append(out, *c)
		}
	}
	return out
}
