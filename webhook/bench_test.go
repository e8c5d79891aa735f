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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
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

// BenchmarkDeploymentPodCreate is the ReplicaSet controller's create of a
// pod of a managed Deployment at rest that runs 300 (a scale-up), which
// the pod-creation webhook decides on the Deployment's pods as the cache
// holds them (each with the status a kubelet writes). Its sub-benchmarks,
// for benchstat -col /handler:
//   - copying: the handler with its lists deep-copied, as the cache gives
//     them by default (the handler before 2026-12-05);
//   - inplace: the handler, which reads them in place.
func BenchmarkDeploymentPodCreate(b *testing.B) {
	const pods = 300
	d := apiDeployment(func(w *builder.DeploymentWrapper) { w.Replicas(pods + 1) })
	old, cur := apiReplicaSets(d, 0, 0, pods+1, pods)
	r := cacheReader{}
	for _, o := range []client.Object{namespace("apps", enabled), d, old, cur} {
		r.put(b, o)
	}
	for i := range pods {
		r.put(b, runningPod(rsPod(fmt.Sprintf("api-h2-%d", i), cur)))
	}
	h := Handlers(Config{
		Scope:           inplace.NewScope(inplace.PolicyNamespace, "inplace-system"),
		Reader:          r,
		ManagerUsername: managerUser,
		Scheme:          testScheme,
	})[PathMutatePod]
	pod := newRSPod(cur, noGate) // as the ReplicaSet controller sends it
	delete(pod.Labels, inplace.LabelManaged)
	req := createBy(b, replicaSetController, pod)
	for _, handler := range []struct {
		name   string
		shared bool
	}{{"copying", false}, {"inplace", true}} {
		b.Run(fmt.Sprintf("pods=%d/handler=%s", pods, handler.name), func(b *testing.B) {
			readOnly = client.UnsafeDisableDeepCopyOption(handler.shared)
			defer func() { readOnly = client.UnsafeDisableDeepCopy }()
			runHandler(b, h, req, true)
		})
	}
}

// runningPod gives the pod the status its kubelet writes: its conditions,
// addresses and container's status.
func runningPod(pod *corev1.Pod) *corev1.Pod {
	started := metav1.Now()
	for _, c := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady,
		corev1.ContainersReady, corev1.PodScheduled, inplace.ConditionInPlaceUpdateReady} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: started})
	}
	pod.Status.HostIP, pod.Status.PodIP = "10.0.0.1", "10.244.0.10"
	pod.Status.HostIPs, pod.Status.PodIPs = []corev1.HostIP{{IP: "10.0.0.1"}}, []corev1.PodIP{{IP: "10.244.0.10"}}
	pod.Status.StartTime, pod.Status.QOSClass = &started, corev1.PodQOSBurstable
	for _, c := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "docker.io/library/nginx@sha256:0123456789abcdef", Ready: true, Started: ptr.To(true),
			ContainerID: "containerd://0123456789abcdef", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		})
	}
	return pod
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
// informer cache does, or with UnsafeDisableDeepCopy its objects' structs
// (their maps and slices shared), as the cache does too. It gives the
// metadata of a typed object it holds.
type cacheReader map[string]client.Object

func key(gvk schema.GroupVersionKind, namespace, name string) string {
	return fmt.Sprintf("%s/%s/%s", gvk, namespace, name)
}

// put stores a typed object.
func (r cacheReader) put(b *testing.B, obj client.Object) {
	gvk, err := apiutil.GVKForObject(obj, testScheme)
	if err != nil {
		b.Fatal(err)
	}
	r[key(gvk, obj.GetNamespace(), obj.GetName())] = obj
}

func (r cacheReader) Get(_ context.Context, k client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	gvk, err := apiutil.GVKForObject(obj, testScheme)
	if err != nil {
		return err
	}
	stored, ok := r[key(gvk, k.Namespace, k.Name)]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: gvk.Kind}, k.Name)
	}
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		if _, ok := stored.(*metav1.PartialObjectMetadata); !ok {
			m.ObjectMeta = *stored.(metav1.ObjectMetaAccessor).GetObjectMeta().(*metav1.ObjectMeta).DeepCopy()
			return nil
		}
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(stored.DeepCopyObject()).Elem())
	return nil
}

func (r cacheReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	o := (&client.ListOptions{}).ApplyOptions(opts)
	switch l := list.(type) {
	case *corev1.PodList:
		l.Items = listed[corev1.Pod](r, o)
	case *appsv1.ReplicaSetList:
		l.Items = listed[appsv1.ReplicaSet](r, o)
	case *appsv1.ControllerRevisionList:
		l.Items = listed[appsv1.ControllerRevision](r, o)
	default:
		return fmt.Errorf("listing %T is not supported", list)
	}
	return nil
}

// listed returns the objects of type T that the options select, in a
// list made as the cache makes it (meta.SetList: one slice, each object's
// struct copied in).
func listed[T any, PT interface {
	*T
	client.Object
}](r cacheReader, o *client.ListOptions) []T {
	shared := o.UnsafeDisableDeepCopy != nil && *o.UnsafeDisableDeepCopy
	var objs []PT
	for _, stored := range r {
		obj, ok := stored.(PT)
		if !ok || o.Namespace != "" && obj.GetNamespace() != o.Namespace ||
			o.LabelSelector != nil && !o.LabelSelector.Matches(labels.Set(obj.GetLabels())) {
			continue
		}
		if !shared {
			obj = obj.DeepCopyObject().(PT)
		}
		objs = append(objs, obj)
	}
	out := make([]T, len(objs))
	for i, obj := range objs {
		out[i] = *obj
	}
	return out
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
