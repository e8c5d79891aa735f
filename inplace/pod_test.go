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
