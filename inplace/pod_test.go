package inplace

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inplace-dev/inplace/internal/builder"
)

func TestNeedsGateOpened(t *testing.T) {
	gated := func() *builder.PodWrapper { return builder.Pod("p", "ns").ReadinessGate(ConditionInPlaceUpdateReady) }
	cases := map[string]struct {
		pod  *corev1.Pod
		want bool
	}{
		"a new pod with the gate and no condition": {gated().Obj(), true},
		"the condition False, nothing in progress": {gated().Condition(ConditionInPlaceUpdateReady, corev1.ConditionFalse).Obj(), true},
		"the condition already True":               {gated().Condition(ConditionInPlaceUpdateReady, corev1.ConditionTrue).Obj(), false},
		"an update in progress holds it False": {gated().Annotation(AnnotationUpdateState, "{}").
			Condition(ConditionInPlaceUpdateReady, corev1.ConditionFalse).Obj(), false},
		"no gate":           {builder.Pod("p", "ns").Obj(), false},
		"another gate only": {builder.Pod("p", "ns").ReadinessGate("example.com/lb").Obj(), false},
		"a pod being deleted": {func() *corev1.Pod {
			p := gated().Obj()
			p.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
			return p
		}(), false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := NeedsGateOpened(tc.pod); got != tc.want {
				t.Errorf("NeedsGateOpened() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestControlledByOther(t *testing.T) {
	cases := map[string]struct {
		pod  *corev1.Pod
		want bool
	}{
		"a pod of no controller":                 {builder.Pod("p", "ns").Obj(), false},
		"a pod of an apps/v1 ReplicaSet":         {builder.Pod("p", "ns").OwnedBy("apps/v1", "ReplicaSet", "rs", "u").Obj(), false},
		"a pod of an apps/v1 StatefulSet":        {builder.Pod("p", "ns").OwnedBy("apps/v1", "StatefulSet", "s", "u").Obj(), false},
		"a pod of an apps/v1 DaemonSet":          {builder.Pod("p", "ns").OwnedBy("apps/v1", "DaemonSet", "d", "u").Obj(), false},
		"a pod of a Kruise CloneSet":             {builder.Pod("p", "ns").OwnedBy("apps.kruise.io/v1beta1", "CloneSet", "c", "u").Obj(), true},
		"a pod of a Kruise Advanced StatefulSet": {builder.Pod("p", "ns").OwnedBy("apps.kruise.io/v1beta1", "StatefulSet", "s", "u").Obj(), true},
		"a pod of a Kruise Advanced DaemonSet":   {builder.Pod("p", "ns").OwnedBy("apps.kruise.io/v1alpha1", "DaemonSet", "d", "u").Obj(), true},
		"a pod of a Job":                         {builder.Pod("p", "ns").OwnedBy("batch/v1", "Job", "j", "u").Obj(), true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := ControlledByOther(tc.pod); got != tc.want {
				t.Errorf("ControlledByOther = %t, want %t", got, tc.want)
			}
		})
	}
}
