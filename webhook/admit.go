package webhook

import (
	"context"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
)

// admitter holds what every workload defaulter shares.
type admitter struct {
	namespaces      *namespaces
	decoder         admission.Decoder
	managerUsername string
	clock           clock.PassiveClock
}

// admission is one workload write, as a defaulter sees it.
type workloadWrite struct {
	req admission.Request
	// old is the stored object of an update; nil on create.
	old client.Object
	// policy is the workload's effective update policy.
	policy inplace.UpdatePolicy
}

// begin decides whether a defaulter acts on a write, and guards the
// manager-owned annotations. It returns nil when the write is the manager's
// own (which passes untouched), when the namespace is not managed, or when
// the workload's policy is malformed (the validator refuses it). Otherwise it
// restores the manager-owned annotations a re-apply or a replace dropped,
// and refuses, with a 422, a user's write of one.
//
// The guard lives here, not in the validating webhook: only the mutating
// webhook sees the user's own request, before this webhook restores or
// updates the hold on the user's behalf.
func (a *admitter) begin(ctx context.Context, obj client.Object, newObject func() client.Object) (*workloadWrite, error) {
	req, err := request(ctx)
	if err != nil {
		return nil, err
	}
	if req.UserInfo.Username == a.managerUsername {
		return nil, nil
	}
	managed, err := a.namespaces.managed(ctx, req.Namespace)
	if err != nil {
		logf.FromContext(ctx).Error(err, "Leaving the workload unchanged", "namespace", req.Namespace)
		return nil, nil
	}
	if !managed {
		return nil, nil
	}
	w := &workloadWrite{req: req}
	var oldAnnotations map[string]string
	if req.Operation == admissionv1.Update {
		w.old = newObject()
		if err := a.decoder.DecodeRaw(req.OldObject, w.old); err != nil {
			return nil, err
		}
		oldAnnotations = w.old.GetAnnotations()
		restoreManagerAnnotations(oldAnnotations, obj)
	}
	if errs := inplace.ValidateManagerAnnotations(oldAnnotations, obj.GetAnnotations(), annotationsPath); len(errs) > 0 {
		return nil, apierrors.NewInvalid(groupKind(req), obj.GetName(), errs)
	}
	if w.policy, err = inplace.UpdatePolicyOf(obj.GetAnnotations()); err != nil {
		return nil, nil
	}
	return w, nil
}

// restoreManagerAnnotations puts back the manager-owned annotations of the
// stored object that the request dropped: a kubectl apply or replace of the
// user's manifest, which never carries them, must not end a hold.
func restoreManagerAnnotations(stored map[string]string, obj metav1.Object) {
	var annotations map[string]string
	for k, v := range stored {
		if !inplace.IsManagerOwned(k) {
			continue
		}
		if _, ok := obj.GetAnnotations()[k]; ok {
			continue
		}
		if annotations == nil {
			annotations = obj.GetAnnotations()
			if annotations == nil {
				annotations = map[string]string{}
			}
		}
		annotations[k] = v
	}
	if annotations != nil {
		obj.SetAnnotations(annotations)
	}
}
