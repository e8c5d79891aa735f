package webhook

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
)

// nativeKind describes an apps/v1 workload kind to the generic handlers.
type nativeKind[T client.Object] struct {
	new      func() T
	template func(T) *corev1.PodTemplateSpec
	// handedBack returns why the kind's controller alone rolls the
	// workload out (an OnDelete strategy, a surge, a Recreate strategy), or
	// "" when inplace makes its rollouts in place: the kind's rule in
	// inplace/, which the rollout engine follows too.
	handedBack func(T) string
}

var deploymentKind = nativeKind[*appsv1.Deployment]{
	new:        func() *appsv1.Deployment { return &appsv1.Deployment{} },
	template:   func(d *appsv1.Deployment) *corev1.PodTemplateSpec { return &d.Spec.Template },
	handedBack: inplace.DeploymentHandedBack,
}

var statefulSetKind = nativeKind[*appsv1.StatefulSet]{
	new:        func() *appsv1.StatefulSet { return &appsv1.StatefulSet{} },
	template:   func(s *appsv1.StatefulSet) *corev1.PodTemplateSpec { return &s.Spec.Template },
	handedBack: inplace.StatefulSetHandedBack,
}

var daemonSetKind = nativeKind[*appsv1.DaemonSet]{
	new:        func() *appsv1.DaemonSet { return &appsv1.DaemonSet{} },
	template:   func(d *appsv1.DaemonSet) *corev1.PodTemplateSpec { return &d.Spec.Template },
	handedBack: inplace.DaemonSetHandedBack,
}

// nativeDefaulter sets the update policy on a managed apps/v1 workload when
// it is created or its template changes. It changes nothing else: the
// native controller rolls out the workload as the user wrote it, and the
// pod-delete webhook and the rollout controller make its rollout in place.
type nativeDefaulter[T client.Object] struct {
	*admitter
	kind nativeKind[T]
}

var (
	_ admission.Defaulter[*appsv1.Deployment]  = &nativeDefaulter[*appsv1.Deployment]{}
	_ admission.Defaulter[*appsv1.StatefulSet] = &nativeDefaulter[*appsv1.StatefulSet]{}
	_ admission.Defaulter[*appsv1.DaemonSet]   = &nativeDefaulter[*appsv1.DaemonSet]{}
)

func newNativeDefaulter[T client.Object](a *admitter, kind nativeKind[T]) *nativeDefaulter[T] {
	return &nativeDefaulter[T]{admitter: a, kind: kind}
}

// Default implements admission.Defaulter.
func (d *nativeDefaulter[T]) Default(ctx context.Context, obj T) error {
	w, err := d.begin(ctx, obj, func() client.Object { return d.kind.new() })
	if w == nil || err != nil {
		return err
	}
	template := d.kind.template(obj)
	if hasManagerOwned(template.Annotations) {
		var stored *metav1.ObjectMeta
		if w.update() {
			old, err := w.stored()
			if err != nil {
				return err
			}
			stored = &d.kind.template(old.(T)).ObjectMeta
		}
		stripTemplateAnnotations(ctx, stored, &template.ObjectMeta)
	}
	if _, set := obj.GetAnnotations()[inplace.AnnotationUpdatePolicy]; set || w.policy == inplace.Recreate {
		return nil // setDefaultPolicy has nothing to set
	}
	if w.update() {
		old, err := w.stored()
		if err != nil {
			return err
		}
		if apiequality.Semantic.DeepEqual(d.kind.template(old.(T)), template) {
			return nil
		}
	}
	setDefaultPolicy(obj)
	return nil
}

// hasManagerOwned reports whether one of the keys is the manager's.
func hasManagerOwned(m map[string]string) bool {
	for k := range m {
		if inplace.IsManagerOwned(k) {
			return true
		}
	}
	return false
}

// setDefaultPolicy makes the effective policy visible on the workload.
func setDefaultPolicy(obj metav1.Object) {
	if _, ok := obj.GetAnnotations()[inplace.AnnotationUpdatePolicy]; ok {
		return
	}
	annotations := obj.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[inplace.AnnotationUpdatePolicy] = string(inplace.InPlaceIfPossible)
	obj.SetAnnotations(annotations)
}

// nativeValidator validates an apps/v1 workload.
type nativeValidator[T client.Object] struct {
	*validator
	kind nativeKind[T]
}

var (
	_ admission.Validator[*appsv1.Deployment]  = &nativeValidator[*appsv1.Deployment]{}
	_ admission.Validator[*appsv1.StatefulSet] = &nativeValidator[*appsv1.StatefulSet]{}
	_ admission.Validator[*appsv1.DaemonSet]   = &nativeValidator[*appsv1.DaemonSet]{}
)

func newNativeValidator[T client.Object](v *validator, kind nativeKind[T]) *nativeValidator[T] {
	return &nativeValidator[T]{validator: v, kind: kind}
}

// ValidateCreate implements admission.Validator.
func (v *nativeValidator[T]) ValidateCreate(ctx context.Context, obj T) (admission.Warnings, error) {
	return v.validate(ctx, workloadChange{
		to: obj, toTemplate: v.kind.template(obj), handedBack: v.kind.handedBack(obj),
	})
}

// ValidateUpdate implements admission.Validator.
func (v *nativeValidator[T]) ValidateUpdate(ctx context.Context, oldObj, obj T) (admission.Warnings, error) {
	return v.validate(ctx, workloadChange{
		from: oldObj, fromTemplate: v.kind.template(oldObj),
		to: obj, toTemplate: v.kind.template(obj), handedBack: v.kind.handedBack(obj),
	})
}

// ValidateDelete implements admission.Validator.
func (v *nativeValidator[T]) ValidateDelete(context.Context, T) (admission.Warnings, error) {
	return nil, nil
}

// workloadChange is a create (from is nil) or an update of a workload, in
// the terms the validation needs, whatever the kind.
type workloadChange struct {
	from, to                 metav1.Object
	fromTemplate, toTemplate *corev1.PodTemplateSpec
	handedBack               string
}

func warnHandedBack(reason string) admission.Warnings {
	if reason == "" {
		return nil
	}
	return admission.Warnings{fmt.Sprintf("inplace: its rollouts are not done in place: %s", reason)}
}
