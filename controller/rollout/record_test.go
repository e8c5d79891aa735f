package rollout

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
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

// TestRecordEndedBeforeTheLastPodsTurnReady: the record of a rollout whose
// last pods have begun goes from the workload and is kept in memory; a
// failure of those pods writes it again, and the completion is told once,
// from memory.
func TestRecordEndedBeforeTheLastPodsTurnReady(t *testing.T) {
	d := builder.Deployment("web", "apps").Obj()
	since := metav1.NewTime(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	d.Annotations = map[string]string{inplace.AnnotationRollout: (&inplace.Rollout{Revision: "abc", Since: since}).Encode()}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(d).Build()
	recorder := events.NewFakeRecorder(5)
	clk := clocktesting.NewFakeClock(since.Add(90 * time.Second))
	r := &Reconciler{Client: c, Recorder: recorder, Clock: clk, active: newActiveSet("Deployment"), told: &memo{}}
	key := client.ObjectKeyFromObject(d).String()
	read := func() *inplace.Rollout {
		t.Helper()
		got := &appsv1.Deployment{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(d), got); err != nil {
			t.Fatal(err)
		}
		d = got
		rec, err := inplace.RolloutOf(got.Annotations)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	rec := read()

	if got := r.endRecord(t.Context(), d, rec); got != nil {
		t.Fatalf("endRecord returned %+v, want nil", got)
	}
	if got := read(); got != nil {
		t.Fatalf("record %+v left on the workload", got)
	}
	if got := r.ended(key); got == nil || got.Revision != "abc" || !got.Since.Equal(&since) {
		t.Fatalf("remembered %+v, want revision abc since %v", got, since)
	}

	r.reportFailures(t.Context(), d, r.ended(key), []string{"pod web-3: CrashLoopBackOff"})
	if got := read(); got == nil || got.Revision != "abc" || got.Failure != "pod web-3: CrashLoopBackOff" {
		t.Fatalf("record %+v: want it written again with the failure", got)
	}
	<-recorder.Events // the halt

	r.completeEnded(d, "abc")
	r.completeEnded(d, "abc")
	if len(recorder.Events) != 1 {
		t.Fatalf("%d completion events, want 1", len(recorder.Events))
	}
	if e := <-recorder.Events; !strings.Contains(e, "InPlaceRolloutCompleted") || !strings.Contains(e, "1m30s") {
		t.Errorf("event %q: want the completion with the rollout's time", e)
	}
}
