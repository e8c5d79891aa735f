package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
)

// kruiseKind describes an OpenKruise workload kind. Kruise performs the
// in-place update itself; inplace only turns it on. No Kruise Go module is
// needed: the objects are handled as unstructured.
type kruiseKind struct {
	gvk schema.GroupVersionKind
	// inPlaceField is the path of Kruise's own in-place switch.
	inPlaceField []string
	// rollingUpdateOnly is true when the switch lives under rollingUpdate,
	// which an OnDelete strategy forbids.
	rollingUpdateOnly bool
}

var (
	cloneSet = kruiseKind{
		gvk:          schema.GroupVersionKind{Group: "apps.kruise.io", Version: "v1alpha1", Kind: "CloneSet"},
		inPlaceField: []string{"spec", "updateStrategy", "type"},
	}
	// cloneSetV1beta1 is the CloneSet of Kruise's storage version, which
	// moved the switch under rollingUpdate. It has its own webhook: Kruise's
	// conversion of a v1beta1 CloneSet without podUpdatePolicy to v1alpha1
	// says type ReCreate, which would read as the user's choice.
	cloneSetV1beta1 = kruiseKind{
		gvk:               schema.GroupVersionKind{Group: "apps.kruise.io", Version: "v1beta1", Kind: "CloneSet"},
		inPlaceField:      []string{"spec", "updateStrategy", "rollingUpdate", "podUpdatePolicy"},
		rollingUpdateOnly: true,
	}
	advancedStatefulSet = kruiseKind{
		gvk:               schema.GroupVersionKind{Group: "apps.kruise.io", Version: "v1beta1", Kind: "StatefulSet"},
		inPlaceField:      []string{"spec", "updateStrategy", "rollingUpdate", "podUpdatePolicy"},
		rollingUpdateOnly: true,
	}
	advancedDaemonSet = kruiseKind{
		gvk:               schema.GroupVersionKind{Group: "apps.kruise.io", Version: "v1alpha1", Kind: "DaemonSet"},
		inPlaceField:      []string{"spec", "updateStrategy", "rollingUpdate", "rollingUpdateType"},
		rollingUpdateOnly: true,
	}
)

// kruiseInPlaceIfPossible is the value of Kruise's in-place switch.
const kruiseInPlaceIfPossible = "InPlaceIfPossible"

var templateFields = []string{"spec", "template"}

// kruiseDefaulter turns Kruise's own in-place update on for a managed Kruise
// workload: the policy annotation, the readiness gate in the template (where
// Kruise expects it), and Kruise's switch unless the user chose a value.
type kruiseDefaulter struct {
	*admitter
	kind kruiseKind
}

var _ admission.Defaulter[*unstructured.Unstructured] = &kruiseDefaulter{}

// Default implements admission.Defaulter.
func (d *kruiseDefaulter) Default(ctx context.Context, obj *unstructured.Unstructured) error {
	w, err := d.begin(ctx, obj, func() client.Object { return &unstructured.Unstructured{} })
	if w == nil || err != nil || w.policy == inplace.Recreate {
		return err
	}
	if w.update() {
		old, err := w.stored()
		if err != nil {
			return err
		}
		from, _, _ := unstructured.NestedFieldNoCopy(old.(*unstructured.Unstructured).Object, templateFields...)
		to, _, _ := unstructured.NestedFieldNoCopy(obj.Object, templateFields...)
		if apiequality.Semantic.DeepEqual(from, to) {
			return nil
		}
	}
	setDefaultPolicy(obj)
	if err := injectTemplateGate(obj); err != nil {
		return err
	}
	return d.setInPlaceSwitch(obj)
}

// injectTemplateGate adds the InPlaceUpdateReady readiness gate to the pod
// template of a Kruise workload.
func injectTemplateGate(obj *unstructured.Unstructured) error {
	path := []string{"spec", "template", "spec", "readinessGates"}
	gates, _, err := unstructured.NestedSlice(obj.Object, path...)
	if err != nil {
		return fmt.Errorf("%v: %w", path, err)
	}
	for _, g := range gates {
		if m, ok := g.(map[string]any); ok && m["conditionType"] == inplace.ConditionInPlaceUpdateReady {
			return nil
		}
	}
	gates = append(gates, map[string]any{"conditionType": inplace.ConditionInPlaceUpdateReady})
	return unstructured.SetNestedSlice(obj.Object, gates, path...)
}

func (d *kruiseDefaulter) setInPlaceSwitch(obj *unstructured.Unstructured) error {
	if d.kind.rollingUpdateOnly {
		strategy, _, _ := unstructured.NestedString(obj.Object, "spec", "updateStrategy", "type")
		if strategy == "OnDelete" {
			return nil
		}
	}
	if v, found, _ := unstructured.NestedFieldNoCopy(obj.Object, d.kind.inPlaceField...); found && v != nil && v != "" {
		return nil
	}
	return unstructured.SetNestedField(obj.Object, kruiseInPlaceIfPossible, d.kind.inPlaceField...)
}

// kruiseValidator validates a Kruise workload with the rules of every kind.
type kruiseValidator struct {
	*validator
	kind kruiseKind
}

var _ admission.Validator[*unstructured.Unstructured] = &kruiseValidator{}

// ValidateCreate implements admission.Validator.
func (v *kruiseValidator) ValidateCreate(ctx context.Context, obj *unstructured.Unstructured) (admission.Warnings, error) {
	to, err := podTemplateOf(obj)
	if err != nil {
		return nil, err
	}
	return v.validate(ctx, workloadChange{to: obj, toTemplate: to})
}

// ValidateUpdate implements admission.Validator.
func (v *kruiseValidator) ValidateUpdate(ctx context.Context, oldObj, obj *unstructured.Unstructured) (admission.Warnings, error) {
	from, err := podTemplateOf(oldObj)
	if err != nil {
		return nil, err
	}
	to, err := podTemplateOf(obj)
	if err != nil {
		return nil, err
	}
	return v.validate(ctx, workloadChange{from: oldObj, fromTemplate: from, to: obj, toTemplate: to})
}

// ValidateDelete implements admission.Validator.
func (v *kruiseValidator) ValidateDelete(context.Context, *unstructured.Unstructured) (admission.Warnings, error) {
	return nil, nil
}

// podTemplateOf converts the pod template of an unstructured workload; nil
// when it has none. A template that is not a pod template is a 422.
func podTemplateOf(obj *unstructured.Unstructured) (*corev1.PodTemplateSpec, error) {
	m, found, err := unstructured.NestedMap(obj.Object, templateFields...)
	if !found && err == nil {
		return nil, nil
	}
	t := &corev1.PodTemplateSpec{}
	if err == nil {
		err = runtime.DefaultUnstructuredConverter.FromUnstructured(m, t)
	}
	if err != nil {
		return nil, apierrors.NewInvalid(obj.GroupVersionKind().GroupKind(), obj.GetName(), field.ErrorList{
			field.Invalid(templatePath, "", "not a pod template: "+err.Error()),
		})
	}
	return t, nil
}
