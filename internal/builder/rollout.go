package builder

import (
	"encoding/json"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The builders of what the rollouts of Deployments and DaemonSets read:
// their strategies, ReplicaSets, ControllerRevisions, and pods at a
// revision.

// UID sets the Deployment's UID.
func (w *DeploymentWrapper) UID(uid types.UID) *DeploymentWrapper {
	w.ObjectMeta.UID = uid
	return w
}

// Replicas sets spec.replicas.
func (w *DeploymentWrapper) Replicas(n int32) *DeploymentWrapper {
	w.Spec.Replicas = &n
	return w
}

// RollingUpdate sets the RollingUpdate strategy with maxSurge and
// maxUnavailable; a nil one is left unset.
func (w *DeploymentWrapper) RollingUpdate(maxSurge, maxUnavailable *intstr.IntOrString) *DeploymentWrapper {
	w.Spec.Strategy = appsv1.DeploymentStrategy{
		Type:          appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: maxSurge, MaxUnavailable: maxUnavailable},
	}
	return w
}

// Recreate sets the Recreate strategy.
func (w *DeploymentWrapper) Recreate() *DeploymentWrapper {
	w.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	return w
}

// MinReadySeconds sets spec.minReadySeconds.
func (w *DeploymentWrapper) MinReadySeconds(n int32) *DeploymentWrapper {
	w.Spec.MinReadySeconds = n
	return w
}

// ReplicaSetWrapper wraps a ReplicaSet.
type ReplicaSetWrapper struct{ appsv1.ReplicaSet }

// ReplicaSet returns the ReplicaSet of a Deployment's template with that
// pod-template-hash, as the Deployment controller makes it: named after
// the Deployment and the hash, the hash in its labels, its selector and its
// template, controlled by the Deployment, with the Deployment's replicas
// (spec and status).
func ReplicaSet(d *appsv1.Deployment, hash string) *ReplicaSetWrapper {
	t := d.Spec.Template.DeepCopy()
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	selector := d.Spec.Selector.DeepCopy()
	if selector == nil {
		selector = &metav1.LabelSelector{}
	}
	if selector.MatchLabels == nil {
		selector.MatchLabels = map[string]string{}
	}
	selector.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	labels := map[string]string{}
	for k, v := range t.Labels {
		labels[k] = v
	}
	replicas := ptr.Deref(d.Spec.Replicas, 1)
	return &ReplicaSetWrapper{appsv1.ReplicaSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace, UID: types.UID("rs-" + hash), Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec:   appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: selector, Template: *t},
		Status: appsv1.ReplicaSetStatus{Replicas: replicas},
	}}
}

// Replicas sets spec.replicas and status.replicas (the live pods).
func (w *ReplicaSetWrapper) Replicas(spec, live int32) *ReplicaSetWrapper {
	w.Spec.Replicas = &spec
	w.Status.Replicas = live
	return w
}

// Created sets the creation timestamp.
func (w *ReplicaSetWrapper) Created(t time.Time) *ReplicaSetWrapper {
	w.CreationTimestamp = metav1.NewTime(t)
	return w
}

// Template edits the pod template.
func (w *ReplicaSetWrapper) Template(edit func(*Template)) *ReplicaSetWrapper {
	t := &Template{w.Spec.Template}
	edit(t)
	w.Spec.Template = t.PodTemplateSpec
	return w
}

// OwnedBy replaces the controller reference.
func (w *ReplicaSetWrapper) OwnedBy(apiVersion, kind, name string, uid types.UID) *ReplicaSetWrapper {
	w.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
	return w
}

// Obj returns the ReplicaSet.
func (w *ReplicaSetWrapper) Obj() *appsv1.ReplicaSet { return &w.ReplicaSet }

// UID sets the DaemonSet's UID.
func (w *DaemonSetWrapper) UID(uid types.UID) *DaemonSetWrapper {
	w.ObjectMeta.UID = uid
	return w
}

// Template edits the pod template.
func (w *DaemonSetWrapper) Template(edit func(*Template)) *DaemonSetWrapper {
	t := &Template{w.Spec.Template}
	edit(t)
	w.Spec.Template = t.PodTemplateSpec
	return w
}

// RollingUpdate sets the RollingUpdate strategy with maxSurge and
// maxUnavailable; a nil one is left unset.
func (w *DaemonSetWrapper) RollingUpdate(maxSurge, maxUnavailable *intstr.IntOrString) *DaemonSetWrapper {
	w.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{
		Type:          appsv1.RollingUpdateDaemonSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxSurge: maxSurge, MaxUnavailable: maxUnavailable},
	}
	return w
}

// OnDelete sets the OnDelete strategy.
func (w *DaemonSetWrapper) OnDelete() *DaemonSetWrapper {
	w.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	return w
}

// TemplateGeneration sets the template generation the API server records
// (its deprecated.daemonset.template.generation annotation).
func (w *DaemonSetWrapper) TemplateGeneration(g string) *DaemonSetWrapper {
	metav1.SetMetaDataAnnotation(&w.ObjectMeta, appsv1.DeprecatedTemplateGeneration, g)
	return w
}

// Annotation sets an annotation on the DaemonSet.
func (w *DaemonSetWrapper) Annotation(k, v string) *DaemonSetWrapper {
	metav1.SetMetaDataAnnotation(&w.ObjectMeta, k, v)
	return w
}

// MinReadySeconds sets spec.minReadySeconds.
func (w *DaemonSetWrapper) MinReadySeconds(n int32) *DaemonSetWrapper {
	w.Spec.MinReadySeconds = n
	return w
}

// ControllerRevision returns revision n of a DaemonSet's or StatefulSet's
// template as their controllers record it: the patch
// {"spec":{"template":...}}, the hash in its controller-revision-hash label,
// controlled by owner (nil for none).
func ControllerRevision(owner metav1.Object, kind, hash string, n int64, template *corev1.PodTemplateSpec) *appsv1.ControllerRevision {
	raw, err := json.Marshal(map[string]any{"spec": map[string]any{"template": template}})
	if err != nil {
		panic(err)
	}
	rev := &appsv1.ControllerRevision{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
		ObjectMeta: metav1.ObjectMeta{
			Name: owner.GetName() + "-" + hash, Namespace: owner.GetNamespace(),
			Labels: map[string]string{appsv1.DefaultDaemonSetUniqueLabelKey: hash},
		},
		Data:     runtime.RawExtension{Raw: raw},
		Revision: n,
	}
	if owner.GetUID() != "" {
		rev.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: kind, Name: owner.GetName(), UID: owner.GetUID(), Controller: ptr.To(true),
		}}
	}
	return rev
}

// Node sets spec.nodeName.
func (w *PodWrapper) Node(name string) *PodWrapper {
	w.Spec.NodeName = name
	return w
}

// Generation sets metadata.generation: past 1 once its spec was patched.
func (w *PodWrapper) Generation(g int64) *PodWrapper {
	w.ObjectMeta.Generation = g
	return w
}

// Phase sets status.phase.
func (w *PodWrapper) Phase(p corev1.PodPhase) *PodWrapper {
	w.Status.Phase = p
	return w
}

// Terminating sets a deletion timestamp.
func (w *PodWrapper) Terminating() *PodWrapper {
	w.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
	return w
}

// ConditionAt sets a status condition that last changed at t, with a
// reason.
func (w *PodWrapper) ConditionAt(t string, status corev1.ConditionStatus, reason string, at time.Time) *PodWrapper {
	w.Status.Conditions = append(w.Status.Conditions, corev1.PodCondition{
		Type: corev1.PodConditionType(t), Status: status, Reason: reason, LastTransitionTime: metav1.NewTime(at),
	})
	return w
}

// Image sets the image of the named container, adding the container if absent.
func (w *PodWrapper) Image(container, image string) *PodWrapper {
	for i := range w.Spec.Containers {
		if w.Spec.Containers[i].Name == container {
			w.Spec.Containers[i].Image = image
			return w
		}
	}
	w.Spec.Containers = append(w.Spec.Containers, corev1.Container{Name: container, Image: image})
	return w
}
