package workloadcache_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testenv"
	"github.com/inplace-dev/inplace/internal/workloadcache"
)

// counting counts the reads that reach the API server.
type counting struct {
	client.Reader
	gets atomic.Int32
}

func (c *counting) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	return c.Reader.Get(ctx, key, obj, opts...)
}

// objects returns one object of each kind the cache trims, in namespace.
func objects(namespace string) []client.Object {
	tmpl := builder.PodTemplate("web", "registry.example.com/web:1").Obj()
	data, err := json.Marshal(map[string]any{"spec": map[string]any{"template": tmpl, "$patch": "replace"}})
	if err != nil {
		panic(err)
	}
	selector := &metav1.LabelSelector{MatchLabels: tmpl.Labels}
	objs := []client.Object{
		builder.StatefulSet("web", namespace).Obj(),
		builder.Deployment("web", namespace).Obj(),
		builder.DaemonSet("web", namespace).Obj(),
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-6c9d8f7b5", Namespace: namespace},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0), Selector: selector, Template: *tmpl}},
		&appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "web-5d8c7b9f6", Namespace: namespace},
			Data: runtime.RawExtension{Raw: data}, Revision: 1},
	}
	// Applied with kubectl apply: the manifest in an annotation, beside
	// one of the owner's.
	for _, obj := range objs {
		obj.SetAnnotations(map[string]string{
			corev1.LastAppliedConfigAnnotation: `{"apiVersion":"apps/v1","kind":"` + kindOf(obj) + `"}`,
			"team.example.com/owner":           "web",
		})
	}
	return objs
}

// TestReadsAreWhole runs the trimmed cache against a real API server: the
// objects of a namespace not managed are cached without their templates,
// and every read gives them whole, live once for a version and then as
// kept; a namespace labelled later is read whole, and cached whole from
// its objects' next versions.
func TestReadsAreWhole(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	env, c := testenv.Start(t, scheme, nil)
	ctx := t.Context()
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "managed", Labels: map[string]string{inplace.LabelEnabled: "true"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other"}},
	} {
		if err := c.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	stored := map[string]client.Object{} // namespace/kind -> as the API server stores it
	for _, ns := range []string{"managed", "other"} {
		for _, obj := range objects(ns) {
			if err := c.Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
			stored[ns+"/"+kindOf(obj)] = obj
		}
	}

	trimmer := workloadcache.New(inplace.NewScope(inplace.PolicyNamespace, "inplace-system"))
	inner, err := cache.New(env.Config, cache.Options{Scheme: scheme, ByObject: trimmer.ByObject()})
	if err != nil {
		t.Fatal(err)
	}
	live := &counting{Reader: c}
	wrapped, err := trimmer.Wrap(inner, live)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range append(workloadcache.Objects(), &corev1.Namespace{}) {
		if _, err := wrapped.GetInformer(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = wrapped.Start(ctx) }()
	if !wrapped.WaitForCacheSync(ctx) {
		t.Fatal("the cache did not sync")
	}

	// cached reads each object as the cache keeps it, and as a read gives it.
	cached := func(key string) (kept, read client.Object) {
		t.Helper()
		want := stored[key]
		kept, read = newOf(want), newOf(want)
		if err := wrapped.Get(ctx, client.ObjectKeyFromObject(want), kept, workloadcache.AsCached); err != nil {
			t.Fatal(err)
		}
		if err := wrapped.Get(ctx, client.ObjectKeyFromObject(want), read); err != nil {
			t.Fatal(err)
		}
		return kept, read
	}
	for key, want := range stored {
		kept, read := cached(key)
		wantTrimmed := want.GetNamespace() == "other"
		if got := workloadcache.Trimmed(kept); got != wantTrimmed {
			t.Errorf("%s as cached: trimmed %v, want %v", key, got, wantTrimmed)
		}
		if !equality.Semantic.DeepEqual(templateOf(read), templateOf(want)) || workloadcache.Trimmed(read) {
			t.Errorf("%s as read: template %v, want %v", key, templateOf(read), templateOf(want))
		}
	}
	if got := live.gets.Load(); got != 5 {
		t.Errorf("%d live reads for the five trimmed objects, want 5", got)
	}
	// Read again, at the same versions: as kept, no live read.
	list := &appsv1.ReplicaSetList{}
	if err := wrapped.List(ctx, list, client.InNamespace("other")); err != nil || len(list.Items) != 1 || workloadcache.Trimmed(&list.Items[0]) {
		t.Fatalf("listing the ReplicaSets of a namespace not managed: %v, %d items, want 1 whole", err, len(list.Items))
	}
	for key := range stored {
		cached(key)
	}
	if got := live.gets.Load(); got != 5 {
		t.Errorf("%d live reads after reading each object again, want still 5", got)
	}

	// The namespace labelled: its objects' next versions are cached whole.
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: "other"}, ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{inplace.LabelEnabled: "true"}
	if err := c.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		got := &corev1.Namespace{}
		return wrapped.Get(ctx, client.ObjectKey{Name: "other"}, got) == nil && got.Labels[inplace.LabelEnabled] == "true"
	})
	for key, obj := range stored {
		if obj.GetNamespace() != "other" {
			continue
		}
		if err := c.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"touched":"yes"}}}`))); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool {
			kept, _ := cached(key)
			return kept.GetLabels()["touched"] == "yes"
		})
		if kept, _ := cached(key); workloadcache.Trimmed(kept) {
			t.Errorf("%s: trimmed in the cache at a version seen after its namespace was labelled", key)
		}
	}
}

func kindOf(obj client.Object) string { return reflect.TypeOf(obj).Elem().Name() }

func newOf(obj client.Object) client.Object {
	return reflect.New(reflect.TypeOf(obj).Elem()).Interface().(client.Object)
}

// templateOf returns what trimming drops of obj: its template, and the
// manifest kubectl apply keeps.
func templateOf(obj client.Object) any {
	return []any{template(obj), obj.GetAnnotations()[corev1.LastAppliedConfigAnnotation]}
}

func template(obj client.Object) any {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		return o.Spec.Template
	case *appsv1.Deployment:
		return o.Spec.Template
	case *appsv1.DaemonSet:
		return o.Spec.Template
	case *appsv1.ReplicaSet:
		return o.Spec.Template
	case *appsv1.ControllerRevision:
		return string(o.Data.Raw)
	}
	return nil
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTransform: only the typed objects of a namespace not managed lose
// their templates; an unknown namespace keeps them, as do the same kinds'
// metadata and a deleted object's tombstone.
func TestTransform(t *testing.T) {
	trimmer := workloadcache.New(inplace.NewScope(inplace.PolicyNamespace, "inplace-system"))
	for _, tc := range []struct {
		namespace string
		want      bool
	}{
		{"kube-system", true},    // excluded: never managed
		{"inplace-system", true}, // the manager's own
		{"shop", false},          // not seen: kept whole
	} {
		for _, obj := range objects(tc.namespace) {
			obj.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl"}})
			out, err := trimmer.Transform(obj)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(client.Object)
			if workloadcache.Trimmed(got) != tc.want || got.GetManagedFields() != nil {
				t.Errorf("%s in %s: trimmed %v, managed fields %v; want trimmed %v, no managed fields",
					kindOf(obj), tc.namespace, workloadcache.Trimmed(got), got.GetManagedFields(), tc.want)
			}
			_, applied := got.GetAnnotations()[corev1.LastAppliedConfigAnnotation]
			if applied == tc.want || got.GetAnnotations()["team.example.com/owner"] != "web" {
				t.Errorf("%s in %s: annotations %v; want the last applied manifest only if not trimmed, the others kept",
					kindOf(obj), tc.namespace, got.GetAnnotations())
			}
		}
	}
	// Metadata, in any namespace: no managed fields, no applied manifest.
	meta := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web",
		Labels:        map[string]string{"app": "web"},
		Annotations:   objects("shop")[1].GetAnnotations(),
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	meta.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("Deployment"))
	out, err := trimmer.Transform(meta)
	if got := out.(*metav1.PartialObjectMetadata); err != nil || got.Labels["app"] != "web" || got.ManagedFields != nil ||
		len(got.Annotations) != 1 || got.Annotations["team.example.com/owner"] != "web" {
		t.Errorf("a Deployment's metadata: %v, %v; want its labels and its owner's annotation, no managed fields, no applied manifest", got, err)
	}
	tombstone := toolscache.DeletedFinalStateUnknown{Key: "kube-system/coredns", Obj: objects("kube-system")[1]}
	if out, err := trimmer.Transform(tombstone); err != nil || out != tombstone {
		t.Errorf("a tombstone: %v, %v; want it as it is", out, err)
	}
}
