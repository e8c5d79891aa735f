package webhook

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// The workload defaulters read of an update's stored object its annotations
// only, and decode the whole of it when they need its template: the
// manager's annotations the user's write must not change are guarded
// whichever they read.
func TestWorkloadUpdateGuardsTheStoredObject(t *testing.T) {
	const record = `{"revision":"r2"}`
	sts := func() *builder.StatefulSetWrapper {
		return builder.StatefulSet("web", "apps").Annotation(inplace.AnnotationUpdatePolicy, "InPlaceIfPossible")
	}
	withTemplateState := func(w *builder.StatefulSetWrapper) *builder.StatefulSetWrapper {
		return w.Template(func(t *builder.Template) { t.Annotation(inplace.AnnotationUpdateState, "{}") })
	}
	cases := map[string]struct {
		obj, old     runtime.Object
		oldRaw       []byte
		want         []jsonpatch.JsonPatchOperation
		wantWarnings []string
		wantCode     int32
	}{
		"the stored record is put back when the user's write drops it": {
			obj: sts().Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") }).Obj(),
			old: sts().Annotation(inplace.AnnotationRollout, record).Obj(),
			want: []jsonpatch.JsonPatchOperation{{
				Operation: "add", Path: "/metadata/annotations/inplace.dev~1rollout", Value: record,
			}},
		},
		"the stored record is kept when the user's write changes it": {
			obj:          sts().Annotation(inplace.AnnotationRollout, `{"revision":"forged"}`).Obj(),
			old:          sts().Annotation(inplace.AnnotationRollout, record).Obj(),
			want:         []jsonpatch.JsonPatchOperation{{Operation: "replace", Path: "/metadata/annotations/inplace.dev~1rollout", Value: record}},
			wantWarnings: []string{"inplace: kept the stored value of the annotation inplace.dev/rollout: it is the inplace manager's record and is written by the manager only"},
		},
		"a manager's annotation the stored template had stays in the template": {
			obj: withTemplateState(sts()).Replicas(5).Obj(),
			old: withTemplateState(sts()).Obj(),
		},
		"a manager's annotation the stored template did not have is removed from it": {
			obj:          withTemplateState(sts()).Obj(),
			old:          sts().Obj(),
			want:         []jsonpatch.JsonPatchOperation{{Operation: "remove", Path: "/spec/template/metadata/annotations"}},
			wantWarnings: []string{"inplace: removed the annotation inplace.dev/update-state from the pod template: it is written on pods by the inplace manager only"},
		},
		"a template change without the policy gets it, compared with the stored template": {
			obj:  builder.StatefulSet("web", "apps").Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") }).Obj(),
			old:  sts().Obj(),
			want: []jsonpatch.JsonPatchOperation{policyPatch},
		},
		"a stored object that is not JSON is refused": {
			obj:      sts().Obj(),
			oldRaw:   []byte(`{"metadata":`),
			wantCode: http.StatusForbidden,
		},
		"a stored template that does not decode is refused when the template is needed": {
			obj:      builder.StatefulSet("web", "apps").Obj(),
			oldRaw:   []byte(`{"metadata":{"name":"web"},"spec":{"template":"x"}}`),
			wantCode: http.StatusForbidden,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			req := review(t, admissionv1.Update, tc.obj, tc.old)
			if tc.oldRaw != nil {
				req.OldObject.Raw = tc.oldRaw
			}
			resp := testHandlers(t)[PathMutateStatefulSet].Handle(t.Context(), req)
			if tc.wantCode != 0 {
				if resp.Allowed || resp.Result == nil || resp.Result.Code != tc.wantCode {
					t.Fatalf("answer %+v, want a refusal with code %d", resp.AdmissionResponse, tc.wantCode)
				}
				return
			}
			if !resp.Allowed {
				t.Fatalf("not allowed: %v", resp.Result)
			}
			if diff := cmp.Diff(tc.want, resp.Patches, byPath); diff != "" {
				t.Errorf("patch (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWarnings, []string(resp.Warnings)); diff != "" {
				t.Errorf("warnings (-want,+got):\n%s", diff)
			}
		})
	}
}
