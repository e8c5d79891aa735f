package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
)

// podDefaulter injects the InPlaceUpdateReady readiness gate, and the label
// the controllers watch by, into each pod of a managed apps/v1 workload as it
// is created.
//
// The gate goes into the pod, never into the workload's template: with the
// manager down, pods are created without it and still become Ready, GitOps
// tools see no drift, and opting a namespace in starts no rollout.
type podDefaulter struct {
	namespaces *namespaces
	owners     *owners
}

var _ admission.Defaulter[*corev1.Pod] = &podDefaulter{}

// Default implements admission.Defaulter.
func (d *podDefaulter) Default(ctx context.Context, pod *corev1.Pod) error {
	owner := metav1.GetControllerOfNoCopy(pod)
	if owner == nil || !gatedOwnerKinds[schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind)] {
		return nil
	}
	req, err := request(ctx)
	if err != nil {
		return err
	}
	log := logf.FromContext(ctx)
	if managed, err := d.namespaces.managed(ctx, req.Namespace); err != nil || !managed {
		if err != nil {
			log.Error(err, "Creating the pod without the readiness gate", "namespace", req.Namespace)
		}
		return nil
	}
	workload, err := d.owners.workload(ctx, req.Namespace, owner)
	if err != nil {
		log.Error(err, "Creating the pod without the readiness gate", "namespace", req.Namespace, "owner", owner.Name)
		return nil
	}
	if workload == nil {
		return nil
	}
	if policy, err := inplace.UpdatePolicyOf(workload.Annotations); err != nil || policy == inplace.Recreate {
		return nil
	}
	injectPodGate(pod)
	return nil
}

// injectPodGate adds the readiness gate and the managed label, once, and
// removes the manager's records a new pod cannot have (a template that
// carried one): the pod would be taken for a pod mid-update.
func injectPodGate(pod *corev1.Pod) {
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[inplace.LabelManaged] = "true"
	for k := range pod.Annotations {
		if inplace.IsManagerOwned(k) {
			delete(pod.Annotations, k)
		}
	}
	if inplace.HasGate(pod) {
		return
	}
	pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: inplace.ConditionInPlaceUpdateReady})
}

var (
	replicaSetKind  = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}
	deploymentGVK   = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	statefulSetGVK  = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}
	daemonSetGVK    = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}
	gatedOwnerKinds = map[schema.GroupVersionKind]bool{replicaSetKind: true, statefulSetGVK: true, daemonSetGVK: true}
)

// OwnerKinds are the kinds whose metadata the pod webhook reads; the manager
// starts their metadata informers before it serves.
var OwnerKinds = []schema.GroupVersionKind{replicaSetKind, deploymentGVK, statefulSetGVK, daemonSetGVK}

// owners finds the workload a pod belongs to, by metadata only.
type owners struct {
	reader, live client.Reader
}

// workload returns the metadata of the Deployment, StatefulSet or DaemonSet
// that controls a pod through owner, or nil when there is none (a
// ReplicaSet of its own, or an owner already gone).
func (o *owners) workload(ctx context.Context, namespace string, owner *metav1.OwnerReference) (*metav1.PartialObjectMetadata, error) {
	gvk := schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind)
	m, err := o.metadata(ctx, gvk, namespace, owner.Name, owner.UID)
	if err != nil || m == nil || gvk != replicaSetKind {
		return m, err
	}
	rsOwner := metav1.GetControllerOfNoCopy(m)
	if rsOwner == nil || schema.FromAPIVersionAndKind(rsOwner.APIVersion, rsOwner.Kind) != deploymentGVK {
		return nil, nil
	}
	return o.metadata(ctx, deploymentGVK, namespace, rsOwner.Name, rsOwner.UID)
}

// metadata reads an object's metadata from the cache, or live when the cache
// has not seen it yet (a ReplicaSet creates its pods an instant after it is
// created itself). It returns nil when the object is gone or was replaced.
func (o *owners) metadata(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string, uid types.UID) (*metav1.PartialObjectMetadata, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := o.reader.Get(ctx, key, m)
	if (apierrors.IsNotFound(err) || err == nil && m.UID != uid) && o.live != nil {
		err = o.live.Get(ctx, key, m)
	}
	if apierrors.IsNotFound(err) || err == nil && m.UID != uid {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s %s/%s: %w", gvk.Kind, namespace, name, err)
	}
	return m, nil
}
