package webhook

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/inplace-dev/inplace/inplace"
)

var gatePatch = jsonpatch.JsonPatchOperation{
	Operation: "add", Path: "/spec/template/spec/readinessGates",
	Value: []any{map[string]any{"conditionType": "InPlaceUpdateReady"}},
}

func TestKruiseDefaulter(t *testing.T) {
	cases := map[string]struct {
		path     string
		op       admissionv1.Operation
		obj, old *unstructured.Unstructured
		want     []jsonpatch.JsonPatchOperation
	}{
		"a CloneSet gets the policy, the gate in its template and InPlaceIfPossible": {
			path: PathMutateCloneSet, op: admissionv1.Create, obj: kruiseObject(t, cloneSet, "apps", nil),
			want: []jsonpatch.JsonPatchOperation{policyPatch, gatePatch, {
				Operation: "add", Path: "/spec/updateStrategy", Value: map[string]any{"type": "InPlaceIfPossible"},
			}},
		},
		"a CloneSet whose user chose ReCreate keeps it": {
			path: PathMutateCloneSet, op: admissionv1.Create,
			obj:  kruiseObject(t, cloneSet, "apps", map[string]any{"type": "ReCreate"}),
			want: []jsonpatch.JsonPatchOperation{policyPatch, gatePatch},
		},
		"a v1beta1 CloneSet gets podUpdatePolicy, where its version keeps the switch": {
			path: PathMutateCloneSetV1beta1, op: admissionv1.Create, obj: kruiseObject(t, cloneSetV1beta1, "apps", nil),
			want: []jsonpatch.JsonPatchOperation{policyPatch, gatePatch, {
				Operation: "add", Path: "/spec/updateStrategy",
				Value: map[string]any{"rollingUpdate": map[string]any{"podUpdatePolicy": "InPlaceIfPossible"}},
			}},
		},
		"a v1beta1 CloneSet whose user chose ReCreate keeps it": {
			path: PathMutateCloneSetV1beta1, op: admissionv1.Create,
			obj: kruiseObject(t, cloneSetV1beta1, "apps", map[string]any{
				"type": "RollingUpdate", "rollingUpdate": map[string]any{"podUpdatePolicy": "ReCreate"},
			}),
			want: []jsonpatch.JsonPatchOperation{policyPatch, gatePatch},
		},
		"a v1beta1 CloneSet on OnDelete gets no rollingUpdate": {
			path: PathMutateCloneSetV1beta1, op: admissionv1.Create,
			obj:  kruiseObject(t, cloneSetV1beta1, "apps", map[string]any{"type": "OnDelete"}),
			want: []jsonpatch.JsonPatchOperation{policyPatch, gatePatch},
		},
		"an Advanced StatefulSet gets podUpdatePolicy": {
			path: PathMutateAdvancedStatefulSet, op: admissionv1.Create,
			obj: kruiseObject(t, advancedStatefulSet, "apps", map[string]any{
				"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": int64(2)},
			}),
			want: []jsonpatch.JsonPatchOperation{policyPatch, gatePatch, {
				Operation: "add", Path: "/spec/updateStrategy/rollingUpdate/podUpdatePolicy", Value: "InPlaceIfPossible",
			}},
		},
		"an Advanced StatefulSet on OnDelete gets no rollingUpdate": {
			path: PathMutateAdvancedStatefulSet, op: admissionv1.Create,
			obj:  kruiseObject(t, advancedStatefulSet, "apps", map[string]any{"type": "OnDelete"}),
			want: []jsonpatch.JsonPatchOperation{policyPatch, gatePatch},
		},
		"an Advanced DaemonSet gets rollingUpdateType": {
			path: PathMutateAdvancedDaemonSet, op: admissionv1.Create, obj: kruiseObject(t, advancedDaemonSet, "apps", nil),
			want: []jsonpatch.JsonPatchOperation{policyPatch, gatePatch, {
				Operation: "add", Path: "/spec/updateStrategy",
				Value: map[string]any{"rollingUpdate": map[string]any{"rollingUpdateType": "InPlaceIfPossible"}},
			}},
		},
		"a template that already has the gate keeps one": {
			path: PathMutateCloneSet, op: admissionv1.Create,
			obj: func() *unstructured.Unstructured {
				u := kruiseObject(t, cloneSet, "apps", map[string]any{"type": "InPlaceIfPossible"})
				_ = injectTemplateGate(u)
				return u
			}(),
			want: []jsonpatch.JsonPatchOperation{policyPatch},
		},
		"an unlabelled namespace is not managed": {
			path: PathMutateCloneSet, op: admissionv1.Create, obj: kruiseObject(t, cloneSet, "plain", nil),
		},
		"an update that leaves the template alone is not patched": {
			path: PathMutateCloneSet, op: admissionv1.Update,
			obj: func() *unstructured.Unstructured {
				u := kruiseObject(t, cloneSet, "apps", nil)
				_ = unstructured.SetNestedField(u.Object, int64(5), "spec", "replicas")
				return u
			}(),
			old: kruiseObject(t, cloneSet, "apps", nil),
		},
		"an update of the template turns in-place on": {
			path: PathMutateCloneSet, op: admissionv1.Update,
			obj: func() *unstructured.Unstructured {
				u := kruiseObject(t, cloneSet, "apps", nil)
				_ = unstructured.SetNestedField(u.Object, "nginx:latest", "spec", "template", "spec", "containers", "0", "image")
				c, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
				c[0].(map[string]any)["image"] = "nginx:latest"
				_ = unstructured.SetNestedSlice(u.Object, c, "spec", "template", "spec", "containers")
				return u
			}(),
			old: kruiseObject(t, cloneSet, "apps", nil),
			want: []jsonpatch.JsonPatchOperation{policyPatch, gatePatch, {
				Operation: "add", Path: "/spec/updateStrategy", Value: map[string]any{"type": "InPlaceIfPossible"},
			}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := testHandlers(t)[tc.path]
			var old *unstructured.Unstructured
			if tc.old != nil {
				old = tc.old
			}
			req := review(t, tc.op, tc.obj, nil)
			if old != nil {
				req = review(t, tc.op, tc.obj, old)
			}
			resp := h.Handle(t.Context(), req)
			if !resp.Allowed {
				t.Fatalf("not allowed: %v", resp.Result)
			}
			if diff := cmp.Diff(tc.want, resp.Patches, byPath); diff != "" {
				t.Errorf("patch (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestInjectTemplateGateKeepsOtherGates(t *testing.T) {
	u := kruiseObject(t, cloneSet, "apps", nil)
	_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{"conditionType": "example.com/ready"}}, "spec", "template", "spec", "readinessGates")
	if err := injectTemplateGate(u); err != nil {
		t.Fatal(err)
	}
	got, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "readinessGates")
	want := []any{
		map[string]any{"conditionType": "example.com/ready"},
		map[string]any{"conditionType": inplace.ConditionInPlaceUpdateReady},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("gates (-want,+got):\n%s", diff)
	}
}
