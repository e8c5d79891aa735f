package webhook

import (
	"context"

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
	if policyErr == nil && policy != inplace.Recreate && templateChanged {
		return warnHandedBack(c.handedBack), nil
	}
	return nil, nil
}
