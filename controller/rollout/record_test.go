package rollout

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// TestRecordStartLostToANewerVersion: a record write that loses to a newer
// version of the workload (the Deployment controller writes its status all
// through a rollout) says so, leaves the object read as it was, and tells
// no start; the next write, on the newer version, records it.
func TestRecordStartLostToANewerVersion(t *testing.T) {
	sts := builder.StatefulSet("web", "apps").Obj()
	conflicts := 1
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sts).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if conflicts > 0 {
				conflicts--
				return apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "statefulsets"}, obj.GetName(), errExceededQuota)
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	}).Build()
	recorder := events.NewFakeRecorder(5)
	r := &Reconciler{Client: c, Recorder: recorder, Clock: clock.RealClock{}, active: newActiveSet("StatefulSet"), told: &memo{}}

	obj := &appsv1.StatefulSet{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(sts), obj); err != nil {
		t.Fatal(err)
	}
	got, stale := r.recordStart(t.Context(), obj, nil, "web-2")
	if !stale || got != nil {
		t.Fatalf("lost write: record %+v, stale %t; want none, stale", got, stale)
	}
	if _, ok := obj.Annotations[inplace.AnnotationRollout]; ok {
		t.Errorf("the object read carries the record that was not written: %v", obj.Annotations)
	}
	if len(recorder.Events) > 0 {
		t.Errorf("event %q told of a start not recorded", <-recorder.Events)
	}

	got, stale = r.recordStart(t.Context(), obj, nil, "web-2")
	if stale || got == nil || got.Revision != "web-2" {
		t.Fatalf("record %+v, stale %t: want web-2 recorded", got, stale)
	}
	if len(recorder.Events) != 1 {
		t.Errorf("%d events, want the start told once", len(recorder.Events))
	}
}
