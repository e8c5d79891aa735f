// Package builder makes Kubernetes objects for tests, one fluent wrapper per
// kind: builder.StatefulSet("web", "ns").Image("app", "nginx:1").Obj().
//
// It is for tests only; the product never imports it.
package builder

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// Template wraps a pod template.
type Template struct{ corev1.PodTemplateSpec }

// PodTemplate returns a template with one container "app" running image and
// the label app=name.
func PodTemplate(name, image string) *Template {
	return &Template{corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: image}},
		},
	}}
}

// Image sets the image of the named container, adding the container if absent.
func (t *Template) Image(container, image string) *Template {
	for i := range t.Spec.Containers {
		if t.Spec.Containers[i].Name == container {
			t.Spec.Containers[i].Image = image
			return t
		}
	}
	t.Spec.Containers = append(t.Spec.Containers, corev1.Container{Name: container, Image: image})
	return t
}

// InitImage sets the image of the named init container, adding it if absent.
func (t *Template) InitImage(container, image string) *Template {
	for i := range t.Spec.InitContainers {
		if t.Spec.InitContainers[i].Name == container {
			t.Spec.InitContainers[i].Image = image
			return t
		}
	}
	t.Spec.InitContainers = append(t.Spec.InitContainers, corev1.Container{Name: container, Image: image})
	return t
}

// Resources sets the named container's cpu request and limit ("" leaves
// one unset).
func (t *Template) Resources(container, cpuRequest, cpuLimit string) *Template {
	for i := range t.Spec.Containers {
		c := &t.Spec.Containers[i]
		if c.Name != container {
			continue
		}
		c.Resources = corev1.ResourceRequirements{}
		if cpuRequest != "" {
			c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuRequest)}
		}
		if cpuLimit != "" {
			c.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuLimit)}
		}
	}
	return t
}

// Env sets an environment variable on the first container.
func (t *Template) Env(name, value string) *Template {
	c := &t.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	return t
}

// Label sets a template label.
func (t *Template) Label(k, v string) *Template {
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels[k] = v
	return t
}

// Annotation sets a template annotation.
func (t *Template) Annotation(k, v string) *Template {
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	t.Annotations[k] = v
	return t
}

// ReadinessGate adds a readiness gate.
func (t *Template) ReadinessGate(condition string) *Template {
	t.Spec.ReadinessGates = append(t.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: corev1.PodConditionType(condition)})
	return t
}

// Obj returns the template.
func (t *Template) Obj() *corev1.PodTemplateSpec { return &t.PodTemplateSpec }

// StatefulSetWrapper wraps a StatefulSet.
type StatefulSetWrapper struct{ appsv1.StatefulSet }

// StatefulSet returns a one-replica StatefulSet running nginx:1.27.
func StatefulSet(name, namespace string) *StatefulSetWrapper {
	t := PodTemplate(name, "nginx:1.27")
	return &StatefulSetWrapper{appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](1),
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template:    t.PodTemplateSpec,
			ServiceName: name,
		},
	}}
}

// Replicas sets spec.replicas.
func (w *StatefulSetWrapper) Replicas(n int32) *StatefulSetWrapper {
	w.Spec.Replicas = &n
	return w
}

// Annotation sets an annotation on the StatefulSet.
func (w *StatefulSetWrapper) Annotation(k, v string) *StatefulSetWrapper {
	metav1.SetMetaDataAnnotation(&w.ObjectMeta, k, v)
	return w
}

// Template edits the pod template.
func (w *StatefulSetWrapper) Template(edit func(*Template)) *StatefulSetWrapper {
	t := &Template{w.Spec.Template}
	edit(t)
	w.Spec.Template = t.PodTemplateSpec
	return w
}

// Obj returns the StatefulSet.
func (w *StatefulSetWrapper) Obj() *appsv1.StatefulSet { return &w.StatefulSet }

// DeploymentWrapper wraps a Deployment.
type DeploymentWrapper struct{ appsv1.Deployment }

// Deployment returns a one-replica Deployment running nginx:1.27.
func Deployment(name, namespace string) *DeploymentWrapper {
	t := PodTemplate(name, "nginx:1.27")
	return &DeploymentWrapper{appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: t.PodTemplateSpec,
		},
	}}
}

// Annotation sets an annotation on the Deployment.
func (w *DeploymentWrapper) Annotation(k, v string) *DeploymentWrapper {
	metav1.SetMetaDataAnnotation(&w.ObjectMeta, k, v)
	return w
}

// Template edits the pod template.
func (w *DeploymentWrapper) Template(edit func(*Template)) *DeploymentWrapper {
	t := &Template{w.Spec.Template}
	edit(t)
	w.Spec.Template = t.PodTemplateSpec
	return w
}

// Obj returns the Deployment.
func (w *DeploymentWrapper) Obj() *appsv1.Deployment { return &w.Deployment }

// DaemonSetWrapper wraps a DaemonSet.
type DaemonSetWrapper struct{ appsv1.DaemonSet }

// DaemonSet returns a DaemonSet running nginx:1.27.
func DaemonSet(name, namespace string) *DaemonSetWrapper {
	t := PodTemplate(name, "nginx:1.27")
	return &DaemonSetWrapper{appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: t.PodTemplateSpec,
		},
	}}
}

// Obj returns the DaemonSet.
func (w *DaemonSetWrapper) Obj() *appsv1.DaemonSet { return &w.DaemonSet }

// PodWrapper wraps a Pod.
type PodWrapper struct{ corev1.Pod }

// Pod returns a pod with one container "app" running nginx:1.27.
func Pod(name, namespace string) *PodWrapper {
	return &PodWrapper{corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}},
		},
	}}
}

// OwnedBy sets the pod's controller owner reference.
func (w *PodWrapper) OwnedBy(apiVersion, kind, name string, uid types.UID) *PodWrapper {
	w.OwnerReferences = append(w.OwnerReferences, metav1.OwnerReference{
		APIVersion: apiVersion, Kind: kind, Name: name, UID: uid,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	})
	return w
}

// Label sets a label.
func (w *PodWrapper) Label(k, v string) *PodWrapper {
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	w.Labels[k] = v
	return w
}

// Annotation sets an annotation.
func (w *PodWrapper) Annotation(k, v string) *PodWrapper {
	metav1.SetMetaDataAnnotation(&w.ObjectMeta, k, v)
	return w
}

// ReadinessGate adds a readiness gate.
func (w *PodWrapper) ReadinessGate(condition string) *PodWrapper {
	w.Spec.ReadinessGates = append(w.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: corev1.PodConditionType(condition)})
	return w
}

// Condition sets a status condition.
func (w *PodWrapper) Condition(t string, status corev1.ConditionStatus) *PodWrapper {
	w.Status.Conditions = append(w.Status.Conditions, corev1.PodCondition{Type: corev1.PodConditionType(t), Status: status})
	return w
}

// Obj returns the pod.
func (w *PodWrapper) Obj() *corev1.Pod { return &w.Pod }
