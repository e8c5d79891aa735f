package webhook

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/internal/builder"
)

var fuzzKinds = map[string]metav1.GroupVersionKind{
	PathMutateDeployment:            {Group: "apps", Version: "v1", Kind: "Deployment"},
	PathMutateStatefulSet:           {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	PathMutateDaemonSet:             {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	PathMutateCloneSet:              {Group: "apps.kruise.io", Version: "v1alpha1", Kind: "CloneSet"},
	PathMutateCloneSetV1beta1:       {Group: "apps.kruise.io", Version: "v1beta1", Kind: "CloneSet"},
	PathMutateAdvancedStatefulSet:   {Group: "apps.kruise.io", Version: "v1beta1", Kind: "StatefulSet"},
	PathMutateAdvancedDaemonSet:     {Group: "apps.kruise.io", Version: "v1alpha1", Kind: "DaemonSet"},
	PathMutatePod:                   {Version: "v1", Kind: "Pod"},
	PathValidateDeployment:          {Group: "apps", Version: "v1", Kind: "Deployment"},
	PathValidateStatefulSet:         {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	PathValidateDaemonSet:           {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	PathValidateCloneSet:            {Group: "apps.kruise.io", Version: "v1alpha1", Kind: "CloneSet"},
	PathValidateCloneSetV1beta1:     {Group: "apps.kruise.io", Version: "v1beta1", Kind: "CloneSet"},
	PathValidateAdvancedStatefulSet: {Group: "apps.kruise.io", Version: "v1beta1", Kind: "StatefulSet"},
	PathValidateAdvancedDaemonSet:   {Group: "apps.kruise.io", Version: "v1alpha1", Kind: "DaemonSet"},
}

// FuzzHandlers feeds every handler arbitrary objects and checks that it never
// panics and always answers with a well-formed AdmissionResponse: the
// request's UID, a result code when it refuses, and a patch that applies to
// the object it was given.
func FuzzHandlers(f *testing.F) {
	paths := make([]string, 0, len(fuzzKinds))
	for p := range fuzzKinds {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	handlers := testHandlers(f, ownerStatefulSet())
	for _, h := range handlers {
		h.WithRecoverPanic(false)
	}

	seed := func(o runtime.Object) []byte {
		b, _ := json.Marshal(o)
		return b
	}
	sts := seed(builder.StatefulSet("web", "apps").Obj())
	stsNew := seed(builder.StatefulSet("web", "apps").Template(func(t *builder.Template) { t.Image("app", "nginx:2").Env("A", "B") }).Annotation("inplace.dev/update-policy", "InPlaceOnly").Obj())
	pod := seed(builder.Pod("web-0", "apps").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Obj())
	clone := seed(kruiseObject(f, cloneSet, "apps", nil))
	for i := range paths {
		f.Add(uint8(i), uint8(0), sts, []byte(nil))
		f.Add(uint8(i), uint8(1), stsNew, sts)
		f.Add(uint8(i), uint8(0), pod, []byte(nil))
		f.Add(uint8(i), uint8(1), clone, clone)
	}
	f.Add(uint8(0), uint8(0), []byte(`{"metadata":{"namespace":"apps","annotations":{"inplace.dev/hold":"x"}}}`), []byte(`null`))
	f.Add(uint8(0), uint8(1), []byte(`{"spec":{"template":[]}}`), []byte(`{"spec":{"template":"x"}}`))

	ops := []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete}
	f.Fuzz(func(t *testing.T, which, op uint8, obj, old []byte) {
		path := paths[int(which)%len(paths)]
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID:       "fuzz",
			Kind:      fuzzKinds[path],
			Namespace: "apps",
			Name:      "web",
			Operation: ops[int(op)%len(ops)],
			Object:    runtime.RawExtension{Raw: obj},
			OldObject: runtime.RawExtension{Raw: old},
		}}
		resp := handlers[path].Handle(t.Context(), req)
		if resp.UID != req.UID {
			t.Fatalf("response UID %q, want %q", resp.UID, req.UID)
		}
		if !resp.Allowed {
			if resp.Result == nil || resp.Result.Code < http.StatusBadRequest {
				t.Fatalf("refused without an error code: %+v", resp.Result)
			}
			return
		}
		if len(resp.Patches) > 0 {
			if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patches without the JSONPatch type")
			}
			if _, err := decodePatch(resp.Patch).Apply(obj); err != nil {
				t.Fatalf("the patch does not apply to the object: %v\n%s", err, resp.Patch)
			}
		}
	})
}
