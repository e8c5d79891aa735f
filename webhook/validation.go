package webhook

import (
	"context"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
)

var (
	annotationsPath = field.NewPath("metadata", "annotations")
	templatePath    = field.NewPath("spec", "template")
)

// validator holds the rules every workload kind shares.
type validator struct {
	namespaces *namespaces
}

// validate refuses, with a 422 naming the fields, a malformed inplace.dev
// annotation and an InPlaceOnly template change that cannot be applied in
// place. (The manager-owned annotations are guarded by the mutating webhook,
// which sees the user's request before it restores them.)
func (v *validator) validate(ctx context.Context, c workloadChange) (admission.Warnings, error) {
	req, err := request(ctx)
	if err != nil {
		return nil, err
	}
	managed, err := v.namespaces.managed(ctx, req.Namespace)
	if err != nil {
		// Validation is a guard rail, not a gate: fail open.
		logf.FromContext(ctx).Error(err, "Admitting the workload unvalidated", "namespace", req.Namespace)
		return nil, nil
	}
	if !managed {
		return nil, nil
	}

	toAnnotations := c.to.GetAnnotations()
	errs := inplace.ValidateUserAnnotations(toAnnotations, annotationsPath)
	policy, policyErr := inplace.UpdatePolicyOf(toAnnotations)
	if req.Operation == admissionv1.Update && policyErr == nil && policy == inplace.InPlaceOnly {
		errs = append(errs, inplace.DiffTemplates(templatePath, c.fromTemplate, c.toTemplate).NotInPlaceableErrors()...)
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(groupKind(req), c.to.GetName(), errs)
	}
	// Warn when a rollout begins that inplace will not take over; not on
	// every re-apply of an unchanged template.
	templateChanged := c.from == nil || !apiequality.Semantic.DeepEqual(c.fromTemplate, c.toTemplate)
	if !templateChanged {
		return nil, nil
	}
	warnings := warnImages(inplace.ValidateImages(templatePath, c.toTemplate))
	if policyErr == nil && policy != inplace.Recreate {
		warnings = append(warnings, warnHandedBack(c.handedBack)...)
	}
	return warnings, nil
}

// shownImageErrors bounds the image references one warning names: a
// template of hundreds of containers gets one warning of a few lines.
const shownImageErrors = 3

// warnImages tells, in one warning, the image references of a template that
// no kubelet can pull. They are not refused: the API server and the native
// controllers accept them too, and the pods say InvalidImageName.
func warnImages(errs field.ErrorList) admission.Warnings {
	if len(errs) == 0 {
		return nil
	}
	shown := make([]string, 0, shownImageErrors)
	for _, e := range errs[:min(len(errs), shownImageErrors)] {
		shown = append(shown, e.Error())
	}
	msg := "inplace: its pods will not start (InvalidImageName): " + strings.Join(shown, "; ")
	if more := len(errs) - len(shown); more > 0 {
		msg += fmt.Sprintf("; and %d more", more)
	}
	return admission.Warnings{msg}
}
