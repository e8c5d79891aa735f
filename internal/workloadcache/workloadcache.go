// Package workloadcache keeps the manager's cache of workloads following
// the namespaces it manages, not the cluster.
//
// The manager watches every StatefulSet, Deployment, DaemonSet, ReplicaSet
// and ControllerRevision of the cluster: a namespace may be labelled at any
// time, and an informer cannot be told of it. Most of such an object is its
// pod template (a ControllerRevision's data), and a cluster keeps many of
// them: ten old ReplicaSets a Deployment and ten revisions a StatefulSet by
// default; and one applied with kubectl apply (or Argo CD's default sync)
// carries its manifest again in an annotation. The manager reads templates
// only in the namespaces it manages. So the cache keeps the objects of the
// others without their templates and applied manifests, and reads through
// it give the whole object: as cached where nothing was trimmed, else at
// the same resourceVersion, read live once and kept while the cache holds
// that version (a namespace labelled after the object was last cached).
package workloadcache

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/inplace"
)

// NamespaceWait bounds how long the transform of an object waits for the
// cache's namespaces to sync, at start; past it, the object is kept whole.
const NamespaceWait = time.Minute

// Trimmer trims the templates of the objects of namespaces the manager does
// not manage, as the cache receives them, and makes the reads through
// Wrap whole again.
type Trimmer struct {
	scope inplace.Scope
	// namespaces reads the cache's namespaces; live the API server. Both
	// are set by Wrap, once the cache exists: before, only the excluded
	// namespaces' objects are trimmed.
	namespaces, live atomic.Pointer[client.Reader]

	mu sync.Mutex
	// whole holds, by UID, the objects read live for a trimmed one, at the
	// resourceVersion read; an object's next version in the cache
	// forgets its entry.
	whole map[types.UID]client.Object
}

// New returns a Trimmer for the namespaces scope manages.
func New(scope inplace.Scope) *Trimmer {
	return &Trimmer{scope: scope, whole: map[types.UID]client.Object{}}
}

// Objects are the kinds Transform trims.
func Objects() []client.Object {
	return []client.Object{&appsv1.StatefulSet{}, &appsv1.Deployment{}, &appsv1.DaemonSet{}, &appsv1.ReplicaSet{}, &appsv1.ControllerRevision{}}
}

// ByObject returns the cache's options for the kinds it trims.
func (t *Trimmer) ByObject() map[client.Object]cache.ByObject {
	m := make(map[client.Object]cache.ByObject, len(Objects()))
	for _, obj := range Objects() {
		m[obj] = cache.ByObject{Transform: t.Transform}
	}
	return m
}

// Transform is the informers' transform for Objects: it drops the managed
// fields of every object, and the template of one whose namespace the
// manager does not manage. Of the same kinds' metadata (the pod webhook's
// owner lookups, in every namespace) it drops the manifest kubectl apply
// keeps: no reader of metadata reads it.
func (t *Trimmer) Transform(in any) (any, error) {
	obj, ok := in.(client.Object)
	if !ok {
		return in, nil // a deleted object's tombstone
	}
	obj.SetManagedFields(nil)
	if !trimmable(obj) {
		dropLastApplied(obj)
		return obj, nil
	}
	t.forget(obj.GetUID())
	if t.unmanaged(obj.GetNamespace()) {
		trim(obj)
	}
	return obj, nil
}

// trimmable reports whether obj is of a kind trim trims, typed.
func trimmable(obj client.Object) bool {
	_, revision := obj.(*appsv1.ControllerRevision)
	return revision || podTemplate(obj) != nil
}

// podTemplate returns the pod template of a workload or a ReplicaSet, nil
// for any other object.
func podTemplate(obj runtime.Object) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.DaemonSet:
		return &o.Spec.Template
	case *appsv1.ReplicaSet:
		return &o.Spec.Template
	}
	return nil
}

func (t *Trimmer) forget(uid types.UID) {
	t.mu.Lock()
	delete(t.whole, uid)
	t.mu.Unlock()
}

// unmanaged reports whether the namespace is one the manager does not
// manage. A namespace the cache has not seen is taken as managed: the
// object is kept whole.
func (t *Trimmer) unmanaged(namespace string) bool {
	if namespace == "" {
		return false
	}
	if t.scope.Excluded[namespace] {
		return true
	}
	r := t.namespaces.Load()
	if r == nil {
		return false
	}
	// The cache's read waits for its namespaces to sync: at start the
	// workloads' informers may list before the namespaces' has.
	ctx, cancel := context.WithTimeout(context.Background(), NamespaceWait)
	defer cancel()
	ns := &corev1.Namespace{}
	if err := (*r).Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return false
	}
	return !t.scope.Manages(namespace, ns.Labels)
}

// trim drops obj's template, what the manager reads only in the namespaces
// it manages, and the manifest kubectl apply keeps in an annotation, as
// large as the template.
func trim(obj client.Object) {
	if t := podTemplate(obj); t != nil {
		*t = corev1.PodTemplateSpec{}
	}
	dropLastApplied(obj)
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		o.Spec.VolumeClaimTemplates = nil
	case *appsv1.ControllerRevision:
		o.Data = runtime.RawExtension{}
	}
}

// dropLastApplied drops the manifest kubectl apply keeps in obj's
// annotations.
func dropLastApplied(obj client.Object) {
	if a := obj.GetAnnotations(); a[corev1.LastAppliedConfigAnnotation] != "" {
		delete(a, corev1.LastAppliedConfigAnnotation)
		obj.SetAnnotations(a)
	}
}

// Trimmed reports whether obj lost its template to trim. The API server
// stores none without: a pod template has at least one container, a
// ControllerRevision its data.
func Trimmed(obj runtime.Object) bool {
	if t := podTemplate(obj); t != nil {
		return len(t.Spec.Containers) == 0
	}
	if o, ok := obj.(*appsv1.ControllerRevision); ok {
		return o.Data.Raw == nil && o.Data.Object == nil
	}
	return false
}

// AsCached is a Get option: the object as the cache keeps it, its template
// perhaps trimmed (Trimmed says). A reader that needs no template there (the
// rollouts, until they know the namespace managed) saves the live read.
var AsCached asCached

type asCached struct{}

func (asCached) ApplyToGet(*client.GetOptions) {}

// Wrap returns c, whose reads give whole objects, and starts trimming:
// namespaces are read from c, and what was trimmed from live. c must not
// be started yet: Wrap adds its informers for Objects.
func (t *Trimmer) Wrap(c cache.Cache, live client.Reader) (cache.Cache, error) {
	// An object deleted while its watch was down reaches the informer as
	// a tombstone, which no transform is given: its handlers are, and
	// forget the copy kept for it.
	for _, obj := range Objects() {
		informer, err := c.GetInformer(context.Background(), obj)
		if err != nil {
			return nil, fmt.Errorf("the informer of %s: %w", reflect.TypeOf(obj).Elem().Name(), err)
		}
		if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: t.deleted}); err != nil {
			return nil, err
		}
	}
	var namespaces client.Reader = c
	t.namespaces.Store(&namespaces)
	t.live.Store(&live)
	return &wholeReads{Cache: c, t: t}, nil
}

// deleted forgets the copy kept for a deleted object, given as the
// informer gives it: the object, or its tombstone.
func (t *Trimmer) deleted(obj any) {
	if tombstone, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	if o, ok := obj.(client.Object); ok {
		t.forget(o.GetUID())
	}
}

// wholeReads is a cache whose reads give whole objects.
type wholeReads struct {
	cache.Cache
	t *Trimmer
}

func (w *wholeReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := w.Cache.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	if !Trimmed(obj) || slices.Contains(opts, client.GetOption(AsCached)) {
		return nil
	}
	return w.t.fill(ctx, obj)
}

func (w *wholeReads) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := w.Cache.List(ctx, list, opts...); err != nil {
		return err
	}
	return meta.EachListItem(list, func(item runtime.Object) error {
		if !Trimmed(item) {
			return nil
		}
		obj, ok := item.(client.Object)
		if !ok {
			return fmt.Errorf("%T is not an object", item)
		}
		return w.t.fill(ctx, obj)
	})
}

// fill replaces obj, as the cache trimmed it, with the whole object: the
// one kept for its UID at its resourceVersion, or read live (then newer,
// if the cache lags; kept for the version the cache will show).
func (t *Trimmer) fill(ctx context.Context, obj client.Object) error {
	uid, version := obj.GetUID(), obj.GetResourceVersion()
	t.mu.Lock()
	kept := t.whole[uid]
	t.mu.Unlock()
	if kept == nil || kept.GetResourceVersion() != version {
		live := t.live.Load()
		if live == nil {
			return fmt.Errorf("%s %s: trimmed in the cache, and no live reader", reflect.TypeOf(obj).Elem().Name(), client.ObjectKeyFromObject(obj))
		}
		read := obj.DeepCopyObject().(client.Object)
		if err := (*live).Get(ctx, client.ObjectKeyFromObject(obj), read); err != nil {
			return err
		}
		read.SetManagedFields(nil)
		if read.GetUID() == uid {
			t.mu.Lock()
			t.whole[uid] = read
			t.mu.Unlock()
		}
		kept = read
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(kept.DeepCopyObject()).Elem())
	return nil
}
