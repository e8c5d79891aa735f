package webhook

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// The benchmarks measure a handler from the decoded AdmissionRequest to the
// response with its patch, as the webhook server runs it. Reads go to
// cacheReader, which costs what the manager's informer cache costs: a map
// lookup and a deep copy.

// BenchmarkPodCreate is the pod-creation path: a StatefulSet's pod in a
// managed namespace. Its sub-benchmarks, for benchstat -col /handler:
//   - empty: a controller-runtime webhook that allows every request without
//     reading it, the baseline;
//   - noop: a typed pod defaulter that changes nothing, the framework's own
//     cost of decoding the pod;
//   - inplace: the pod defaulter, which injects the readiness gate.
func BenchmarkPodCreate(b *testing.B) {
	req := benchPodReview(b)
	b.Run("handler=empty", func(b *testing.B) { runHandler(b, emptyHandler(), req, false) })
	b.Run("handler=noop", func(b *testing.B) {
		runHandler(b, admission.WithDefaulter(testScheme, noopDefaulter[*corev1.Pod]{}), req, false)
	})
	b.Run("handler=inplace", func(b *testing.B) { runHandler(b, benchHandlers(b)[PathMutatePod], req, true) })
}

// BenchmarkStatefulSetCreate is a managed StatefulSet's create, against the
// same baselines.
func BenchmarkStatefulSetCreate(b *testing.B) {
	req := review(b, admissionv1.Create, builder.StatefulSet("web", "apps").Obj(), nil)
	b.Run("handler=empty", func(b *testing.B) { runHandler(b, emptyHandler(), req, false) })
	b.Run("handler=noop", func(b *testing.B) {
		runHandler(b, admission.WithDefaulter(testScheme, noopDefaulter[*appsv1.StatefulSet]{}), req, false)
	})
	b.Run("handler=inplace", func(b *testing.B) { runHandler(b, benchHandlers(b)[PathMutateStatefulSet], req, true) })
}

func emptyHandler() *admission.Webhook {
	return &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})}
}

// noopDefaulter changes nothing: what remains is the framework's decoding.
type noopDefaulter[T runtime.Object] struct{}

func (noopDefaulter[T]) Default(context.Context, T) error { return nil }

func benchPodReview(b *testing.B) admission.Request {
	return review(b, admissionv1.Create, builder.Pod("web-0", "apps").
		OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Label("app", "web").Obj(), nil)
}

func benchHandlers(b *testing.B) map[string]*admission.Webhook {
	owner := &metav1.PartialObjectMetadata{ObjectMeta: ownerStatefulSet().ObjectMeta}
	owner.SetGroupVersionKind(statefulSetGVK)
	r := cacheReader{
		key(corev1.SchemeGroupVersion.WithKind("Namespace"), "", "apps"): namespace("apps", enabled),
		key(statefulSetGVK, "apps", "web"):                               owner,
	}
	return Handlers(Config{
		Scope:           inplace.NewScope(inplace.PolicyNamespace, "inplace-system"),
		Reader:          r,
		ManagerUsername: managerUser,
		Scheme:          testScheme,
	})
}

// cacheReader is a client.Reader over a map, returning deep copies as the
// informer cache does.
type cacheReader map[string]client.Object

func key(gvk schema.GroupVersionKind, namespace, name string) string {
	return fmt.Sprintf("%s/%s/%s", gvk, namespace, name)
}

func (r cacheReader) Get(_ context.Context, k client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if _, ok := obj.(*corev1.Namespace); ok {
		gvk = corev1.SchemeGroupVersion.WithKind("Namespace")
	}
	stored, ok := r[key(gvk, k.Namespace, k.Name)]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: gvk.Kind}, k.Name)
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(stored.DeepCopyObject()).Elem())
	return nil
}

func (r cacheReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return fmt.Errorf("not supported")
}

func runHandler(b *testing.B, h *admission.Webhook, req admission.Request, wantPatch bool) {
	b.Helper()
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		resp := h.Handle(ctx, req)
		if !resp.Allowed || (len(resp.Patches) > 0) != wantPatch {
			b.Fatalf("unexpected response: %+v", resp)
		}
	}
}
