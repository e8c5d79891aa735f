package webhook

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// FuzzPodPatch holds the pod-creation webhook, whose patch is written
// directly (podPatch), to the framework's typed defaulter over the same
// decision, whose patch is the diff of the marshalled pod: for any pod, both
// answer alike, and their patches, applied to the pod as sent, give the same
// pod as the API server decodes it.
func FuzzPodPatch(f *testing.F) {
	direct := testHandlers(f, ownerStatefulSet())[PathMutatePod]
	direct.WithRecoverPanic(false)
	typed := &admission.Webhook{Handler: direct.Handler.(*podCreate).typed}
	typed.WithRecoverPanic(false)

	seed := func(p *builder.PodWrapper) {
		b, err := json.Marshal(p.OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Obj())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	pod := func() *builder.PodWrapper { return builder.Pod("web-0", "apps") }
	seed(pod())
	seed(pod().Label("app", "web").ReadinessGate("example.com/lb"))
	seed(pod().Label(inplace.LabelManaged, "false"))
	seed(pod().Label(inplace.LabelManaged, "true").ReadinessGate(inplace.ConditionInPlaceUpdateReady))
	seed(pod().Annotation(inplace.AnnotationUpdateState, `{"revision":"x"}`))
	seed(pod().Annotation(inplace.AnnotationUpdateState, "x").Annotation("inplace.dev/other~key", "y").Annotation("team", "web"))
	seed(pod().Annotation(inplace.AnnotationUpdatePolicy, "InPlaceOnly"))
	noContainers := pod()
	noContainers.Spec.Containers = nil
	seed(noContainers)
	f.Add([]byte(`{"metadata":{"ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web","uid":"sts-uid","controller":true}],"labels":null},"spec":{"containers":[{"name":"a"}],"readinessGates":[]}}`))
	f.Add([]byte(`{"metadata":{"ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web","uid":"sts-uid","controller":true}]},"spec":null}`))
	f.Add([]byte(`{"metadata":{"ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web","uid":"sts-uid","controller":true}],"labels":{}},"spec":{"containers":[{"name":"a"}],"terminationGracePeriodSeconds":30.0}}`))

	f.Fuzz(func(t *testing.T, raw []byte) {
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "fuzz", Kind: fuzzKinds[PathMutatePod], Namespace: "apps", Name: "web-0",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		}}
		got, want := direct.Handle(t.Context(), req), typed.Handle(t.Context(), req)
		if got.Allowed != want.Allowed || (got.Result == nil) != (want.Result == nil) ||
			got.Result != nil && got.Result.Code != want.Result.Code {
			t.Fatalf("answers differ: direct %+v, typed %+v", got.AdmissionResponse, want.AdmissionResponse)
		}
		if len(want.Patches) == 0 {
			if len(got.Patches) != 0 {
				t.Fatalf("direct patches %v, typed none", got.Patches)
			}
			return
		}
		if got.PatchType == nil || *got.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("direct patch without the JSONPatch type")
		}
		gotPod, wantPod := patchedPod(t, raw, got.Patch), patchedPod(t, raw, want.Patch)
		if !apiequality.Semantic.DeepEqual(gotPod, wantPod) {
			t.Errorf("patched pods differ (-typed,+direct):\n%s\ndirect patch: %s\ntyped patch: %s", cmp.Diff(wantPod, gotPod), got.Patch, want.Patch)
		}
	})
}

// patchedPod applies patch to raw and decodes the result as the API server
// would.
func patchedPod(t *testing.T, raw, patch []byte) *corev1.Pod {
	t.Helper()
	out, err := decodePatch(patch).Apply(raw)
	if err != nil {
		t.Fatalf("the patch %s does not apply: %v", patch, err)
	}
	pod := &corev1.Pod{}
	if err := admission.NewDecoder(testScheme).DecodeRaw(runtime.RawExtension{Raw: out}, pod); err != nil {
		t.Fatalf("the patched pod does not decode: %v\n%s", err, out)
	}
	return pod
}
