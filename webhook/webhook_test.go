package webhook

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

const managerUser = "system:serviceaccount:inplace-system:inplace-manager"

var testScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

var enabled = map[string]string{inplace.LabelEnabled: "true"}

// testHandlers returns the handlers over a fake cluster with a managed
// namespace "apps", an unlabelled one "plain", kube-system labelled, and the
// given objects, on the real clock: the workload and pod-creation handlers
// read no time.
func testHandlers(t testing.TB, objs ...client.Object) map[string]*admission.Webhook {
	t.Helper()
	objs = append(objs,
		namespace("apps", enabled),
		namespace("plain", nil),
		namespace("kube-system", enabled),
		namespace("inplace-system", enabled),
	)
	c := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(objs...).Build()
	return Handlers(Config{
		Scope:           inplace.NewScope(inplace.PolicyNamespace, "inplace-system"),
		Reader:          c,
		LiveReader:      c,
		ManagerUsername: managerUser,
		Scheme:          testScheme,
	})
}

// review builds an admission request as the API server sends it: the raw
// JSON of the objects, the operation, the kind and the user.
func review(t testing.TB, op admissionv1.Operation, obj, old runtime.Object) admission.Request {
	t.Helper()
	raw := func(o runtime.Object) runtime.RawExtension {
		if o == nil {
			return runtime.RawExtension{}
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		return runtime.RawExtension{Raw: b}
	}
	m := obj.(metav1.Object)
	gvk := obj.GetObjectKind().GroupVersionKind()
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       types.UID("review-1"),
		Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
		Namespace: m.GetNamespace(),
		Name:      m.GetName(),
		Operation: op,
		UserInfo:  authenticationv1.UserInfo{Username: "alice"},
		Object:    raw(obj),
		OldObject: raw(old),
	}}
}

func asManager(req admission.Request) admission.Request {
	req.UserInfo.Username = managerUser
	return req
}

var policyPatch = jsonpatch.JsonPatchOperation{
	Operation: "add", Path: "/metadata/annotations",
	Value: map[string]any{inplace.AnnotationUpdatePolicy: "InPlaceIfPossible"},
}

func TestNativeDefaulter(t *testing.T) {
	sts := func(ns string) *builder.StatefulSetWrapper { return builder.StatefulSet("web", ns) }
	cases := map[string]struct {
		path     string
		op       admissionv1.Operation
		obj, old runtime.Object
		want     []jsonpatch.JsonPatchOperation
	}{
		"a StatefulSet created in a managed namespace gets the policy, and nothing else": {
			path: PathMutateStatefulSet, op: admissionv1.Create, obj: sts("apps").Obj(),
			want: []jsonpatch.JsonPatchOperation{policyPatch},
		},
		"a Deployment created in a managed namespace gets the policy": {
			path: PathMutateDeployment, op: admissionv1.Create, obj: builder.Deployment("web", "apps").Obj(),
			want: []jsonpatch.JsonPatchOperation{policyPatch},
		},
		"a DaemonSet created with other annotations gets the policy beside them": {
			path: PathMutateDaemonSet, op: admissionv1.Create,
			obj: func() runtime.Object {
				d := builder.DaemonSet("agent", "apps").Obj()
				d.Annotations = map[string]string{"team": "infra"}
				return d
			}(),
			want: []jsonpatch.JsonPatchOperation{{
				Operation: "add", Path: "/metadata/annotations/inplace.dev~1update-policy", Value: "InPlaceIfPossible",
			}},
		},
		"a policy the user chose is kept": {
			path: PathMutateStatefulSet, op: admissionv1.Create,
			obj: sts("apps").Annotation(inplace.AnnotationUpdatePolicy, "InPlaceOnly").Obj(),
		},
		"Recreate opts out": {
			path: PathMutateStatefulSet, op: admissionv1.Create,
			obj: sts("apps").Annotation(inplace.AnnotationUpdatePolicy, "Recreate").Obj(),
		},
		"a malformed policy is left for the validator to refuse": {
			path: PathMutateStatefulSet, op: admissionv1.Create,
			obj: sts("apps").Annotation(inplace.AnnotationUpdatePolicy, "Sometimes").Obj(),
		},
		"an unlabelled namespace is not managed": {
			path: PathMutateStatefulSet, op: admissionv1.Create, obj: sts("plain").Obj(),
		},
		"kube-system is never managed, even labelled": {
			path: PathMutateStatefulSet, op: admissionv1.Create, obj: sts("kube-system").Obj(),
		},
		"the manager's own namespace is never managed": {
			path: PathMutateStatefulSet, op: admissionv1.Create, obj: sts("inplace-system").Obj(),
		},
		"an update that changes the template gets the policy": {
			path: PathMutateStatefulSet, op: admissionv1.Update,
			obj:  sts("apps").Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") }).Obj(),
			old:  sts("apps").Obj(),
			want: []jsonpatch.JsonPatchOperation{policyPatch},
		},
		"an update that leaves the template alone is not patched": {
			path: PathMutateStatefulSet, op: admissionv1.Update,
			obj: sts("apps").Replicas(5).Obj(), old: sts("apps").Obj(),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := testHandlers(t)[tc.path]
			resp := h.Handle(t.Context(), review(t, tc.op, tc.obj, tc.old))
			if !resp.Allowed {
				t.Fatalf("not allowed: %v", resp.Result)
			}
			if diff := cmp.Diff(tc.want, resp.Patches, byPath); diff != "" {
				t.Errorf("patch (-want,+got):\n%s", diff)
			}
		})
	}
}

// TestDefaultersAreIdempotent applies each mutation and runs the handler
// again on its result, as the API server does when it reinvokes webhooks:
// the second patch must be empty.
func TestDefaultersAreIdempotent(t *testing.T) {
	cases := map[string]struct {
		path string
		obj  runtime.Object
	}{
		"StatefulSet":          {PathMutateStatefulSet, builder.StatefulSet("web", "apps").Obj()},
		"Deployment":           {PathMutateDeployment, builder.Deployment("web", "apps").Obj()},
		"CloneSet":             {PathMutateCloneSet, kruiseObject(t, cloneSet, "apps", nil)},
		"CloneSet v1beta1":     {PathMutateCloneSetV1beta1, kruiseObject(t, cloneSetV1beta1, "apps", nil)},
		"Advanced StatefulSet": {PathMutateAdvancedStatefulSet, kruiseObject(t, advancedStatefulSet, "apps", nil)},
		"Advanced DaemonSet":   {PathMutateAdvancedDaemonSet, kruiseObject(t, advancedDaemonSet, "apps", nil)},
		"Pod": {PathMutatePod, builder.Pod("web-0", "apps").
			OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Obj()},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := testHandlers(t, ownerStatefulSet())[tc.path]
			first := h.Handle(t.Context(), review(t, admissionv1.Create, tc.obj, nil))
			if len(first.Patches) == 0 {
				t.Fatalf("the first pass made no patch: %v", first.Result)
			}
			mutated := applyPatch(t, review(t, admissionv1.Create, tc.obj, nil).Object.Raw, first.Patches)
			req := review(t, admissionv1.Create, tc.obj, nil)
			req.Object.Raw = mutated
			second := h.Handle(t.Context(), req)
			if len(second.Patches) != 0 {
				t.Errorf("the second pass patched again: %v", second.Patches)
			}
		})
	}
}

func applyPatch(t testing.TB, raw []byte, ops []jsonpatch.JsonPatchOperation) []byte {
	t.Helper()
	p, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodePatch(p).Apply(raw)
	if err != nil {
		t.Fatalf("applying %s: %v", p, err)
	}
	return out
}

func ownerStatefulSet() *appsv1.StatefulSet {
	s := builder.StatefulSet("web", "apps").Obj()
	s.UID = "sts-uid"
	return s
}

// kruiseObject returns a Kruise workload of the kind as unstructured, with
// the given update strategy.
func kruiseObject(t testing.TB, k kruiseKind, ns string, strategy map[string]any) *unstructured.Unstructured {
	t.Helper()
	tpl, err := runtime.DefaultUnstructuredConverter.ToUnstructured(builder.PodTemplate("web", "nginx:alpine").Obj())
	if err != nil {
		t.Fatal(err)
	}
	spec := map[string]any{
		"replicas": int64(3),
		"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
		"template": tpl,
	}
	if strategy != nil {
		spec["updateStrategy"] = strategy
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(k.gvk)
	u.SetName("web")
	u.SetNamespace(ns)
	return u
}
