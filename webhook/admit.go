package webhook

import (
	"context"
	"errors"
	"fmt"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/inplace-dev/inplace/inplace"
)

// admitter holds what every workload defaulter shares.
type admitter struct {
	namespaces      *namespaces
	decoder         admission.Decoder
	managerUsername string
}

// workloadWrite is one workload write, as a defaulter sees it.
type workloadWrite struct {
	req admission.Request
	// policy is the workload's effective update policy.
	policy inplace.UpdatePolicy

	decoder   admission.Decoder
	newObject func() client.Object
	old       client.Object
}

// update reports whether the write is an update (the stored object is
// OldObject), not a create.
func (w *workloadWrite) update() bool { return w.req.Operation == admissionv1.Update }

// stored returns the stored object of an update, decoded on first use: most
// updates need only its annotations (storedAnnotations), and decoding all
// of it made 40% of the handler's allocations (a StatefulSet of 7 kB).
func (w *workloadWrite) stored() (client.Object, error) {
	if w.old == nil {
		old := w.newObject()
		if err := w.decoder.DecodeRaw(w.req.OldObject, old); err != nil {
			return nil, err
		}
		w.old = old
	}
	return w.old, nil
}

// storedAnnotations decodes only the annotations of a stored object, as the
// scheme's decoder reads JSON (case-sensitive field names), leaving the rest
// of it unread: an object the decoder would refuse for another field is
// refused when stored decodes it, if it is needed.
func storedAnnotations(raw []byte) (map[string]string, error) {
	var o struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if len(raw) == 0 {
		return nil, errors.New("there is no content to decode")
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &o); err != nil {
		return nil, err
	}
	return o.Metadata.Annotations, nil
}

// begin decides whether a defaulter acts on a write, and guards the
// manager-owned annotations. It returns nil when the write is the manager's
// own (which passes untouched), when the namespace is not managed, or when
// the workload's policy is malformed (the validator refuses it).
//
// The manager-owned annotations (inplace.dev/ names but the two users write)
// are the manager's record of a rollout under way; a user's write never
// sets them. They are not refused either, which would break a restore from
// backup or a `kubectl get -o yaml | kubectl apply`: on create they are
// removed, on update the stored values are kept, each with a warning.
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
	w := &workloadWrite{req: req, decoder: a.decoder, newObject: newObject}
	var stored map[string]string
	if w.update() {
		if stored, err = storedAnnotations(req.OldObject.Raw); err != nil {
			return nil, err
		}
	}
	for _, k := range keepManagerAnnotations(stored, obj) {
		_, had := stored[k]
		switch {
		case !had && !inplace.IsKnownAnnotation(k):
			warn(ctx, fmt.Sprintf("inplace: removed the annotation %s: inplace has no such annotation; users write %s, %s and %s",
				k, inplace.AnnotationUpdatePolicy, inplace.AnnotationGracePeriod, inplace.AnnotationPrepull))
		case req.Operation == admissionv1.Create:
			warn(ctx, fmt.Sprintf("inplace: removed the annotation %s: it is the inplace manager's record and is written by the manager only", k))
		default:
			warn(ctx, fmt.Sprintf("inplace: kept the stored value of the annotation %s: it is the inplace manager's record and is written by the manager only", k))
		}
	}
	if w.policy, err = inplace.UpdatePolicyOf(obj.GetAnnotations()); err != nil {
		return nil, nil
	}
	return w, nil
}

// keepManagerAnnotations sets the object's manager-owned annotations to the
// stored ones (none on create): a user's value is replaced, one the user's
// write dropped (a kubectl apply or replace of the user's manifest, which
// never carries them) is put back. It returns the keys the user had set to
// another value, sorted.
func keepManagerAnnotations(stored map[string]string, obj metav1.Object) []string {
	annotations := obj.GetAnnotations()
	var changed []string
	for k, v := range annotations {
		if inplace.IsManagerOwned(k) {
			if sv, ok := stored[k]; !ok || sv != v {
				changed = append(changed, k)
			}
		}
	}
	dropped := false
	for k := range stored {
		if _, ok := annotations[k]; inplace.IsManagerOwned(k) && !ok {
			dropped = true
		}
	}
	if len(changed) == 0 && !dropped {
		return nil
	}
	next := make(map[string]string, len(annotations))
	for k, v := range annotations {
		if !inplace.IsManagerOwned(k) {
			next[k] = v
		}
	}
	for k, v := range stored {
		if inplace.IsManagerOwned(k) {
			next[k] = v
		}
	}
	obj.SetAnnotations(next)
	slices.Sort(changed)
	return changed
}

// stripTemplateAnnotations removes from a pod template the manager-owned
// annotations that its stored version did not have (stored is nil on
// create): a pod created with one would be taken for a pod mid-update. One
// the stored template already had is left, so that no rollout starts; the
// pod webhook removes it from the pods.
func stripTemplateAnnotations(ctx context.Context, stored, template *metav1.ObjectMeta) {
	for k := range template.Annotations {
		if !inplace.IsManagerOwned(k) {
			continue
		}
		if stored != nil {
			if _, had := stored.Annotations[k]; had {
				continue
			}
		}
		delete(template.Annotations, k)
		warn(ctx, fmt.Sprintf("inplace: removed the annotation %s from the pod template: it is written on pods by the inplace manager only", k))
	}
}

// warningsKey holds, in a request's context, the warnings its handler adds.
type warningsKey struct{}

// warn adds a warning to the admission response of the request being
// handled (when its handler is wrapped by withWarnings).
func warn(ctx context.Context, msg string) {
	if w, ok := ctx.Value(warningsKey{}).(*[]string); ok {
		*w = append(*w, msg)
	}
}

// withWarnings lets a typed defaulter, whose Default returns no warnings,
// add them with warn.
func withWarnings(wh *admission.Webhook) *admission.Webhook {
	inner := wh.Handler
	wh.Handler = admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		var warnings []string
		resp := inner.Handle(context.WithValue(ctx, warningsKey{}, &warnings), req)
		if resp.Allowed {
			resp.Warnings = append(resp.Warnings, warnings...)
		}
		return resp
	})
	return wh
}
