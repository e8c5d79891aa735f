package controller

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

var (
	scheme = func() *runtime.Scheme {
		s := runtime.NewScheme()
		_ = clientgoscheme.AddToScheme(s)
		return s
	}()
	now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
)

func TestReadinessGateKeeper(t *testing.T) {
	gated := func() *builder.PodWrapper {
		return builder.Pod("web-0", "apps").Label(inplace.LabelManaged, "true").ReadinessGate(inplace.ConditionInPlaceUpdateReady)
	}
	earlier := metav1.NewTime(now.Add(-time.Hour))
	cases := map[string]struct {
		pod        *corev1.Pod
		wantStatus corev1.ConditionStatus // "" means no condition
		wantTime   metav1.Time
	}{
		"a new pod with the gate gets it True": {
			pod: gated().Obj(), wantStatus: corev1.ConditionTrue, wantTime: metav1.NewTime(now),
		},
		"a False condition with no update in progress turns True": {
			pod:        gated().Condition(inplace.ConditionInPlaceUpdateReady, corev1.ConditionFalse).Obj(),
			wantStatus: corev1.ConditionTrue, wantTime: metav1.NewTime(now),
		},
		"an update in progress keeps it False": {
			pod: gated().Annotation(inplace.AnnotationUpdateState, "{}").
				Condition(inplace.ConditionInPlaceUpdateReady, corev1.ConditionFalse).Obj(),
			wantStatus: corev1.ConditionFalse,
		},
		"a True condition is not rewritten": {
			pod: func() *corev1.Pod {
				p := gated().Obj()
				p.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue, LastTransitionTime: earlier}}
				return p
			}(),
			wantStatus: corev1.ConditionTrue, wantTime: earlier,
		},
		"a pod without the gate is left alone": {
			pod: builder.Pod("web-0", "apps").Label(inplace.LabelManaged, "true").Obj(),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.pod).WithStatusSubresource(&corev1.Pod{}).Build()
			r := &ReadinessGateKeeper{Client: c, Clock: clocktesting.NewFakePassiveClock(now)}
			if _, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tc.pod)}); err != nil {
				t.Fatal(err)
			}
			got := &corev1.Pod{}
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(tc.pod), got); err != nil {
				t.Fatal(err)
			}
			cond := inplace.GateCondition(got)
			if tc.wantStatus == "" {
				if cond != nil {
					t.Fatalf("condition %+v, want none", cond)
				}
				return
			}
			if cond == nil || cond.Status != tc.wantStatus {
				t.Fatalf("condition %+v, want status %s", cond, tc.wantStatus)
			}
			if !tc.wantTime.IsZero() && !cond.LastTransitionTime.Equal(&tc.wantTime) {
				t.Errorf("lastTransitionTime %v, want %v", cond.LastTransitionTime, tc.wantTime)
			}
		})
	}
}

// A stale read (another writer got there first) is not an error: the watch
// event of the newer pod brings it back.
func TestReadinessGateKeeperOnConflict(t *testing.T) {
	pod := builder.Pod("web-0", "apps").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	patches := 0
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourcePatch: func(context.Context, client.Client, string, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
				patches++
				return apierrors.NewConflict(corev1.Resource("pods"), pod.Name, nil)
			},
		}).Build()
	r := &ReadinessGateKeeper{Client: c, Clock: clocktesting.NewFakePassiveClock(now)}
	res, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pod)})
	if err != nil || !res.IsZero() || patches != 1 {
		t.Errorf("Reconcile() = %+v, %v after %d patches; want no error, no requeue, one patch", res, err, patches)
	}
}
