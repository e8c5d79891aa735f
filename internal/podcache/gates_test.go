package podcache

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/inplace"
)

type pods []any

func (p pods) List() []any { return p }

func TestGateMetrics(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	pod := func(owner string, gate corev1.ConditionStatus, closedFor time.Duration) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p",
			OwnerReferences: []metav1.OwnerReference{{Kind: owner, Name: "w", Controller: ptr.To(true)}}}}
		if gate != "" {
			p.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: gate,
				LastTransitionTime: metav1.NewTime(now.Add(-closedFor))}}
		}
		return p
	}
	g := &gateCollector{now: func() time.Time { return now }}

	// Not told where the pods are: no figure at all.
	if n := testutil.CollectAndCount(g); n != 0 {
		t.Errorf("%d series before the store is set, want none", n)
	}

	g.set(pods{
		pod("StatefulSet", corev1.ConditionFalse, 30*time.Second),
		pod("StatefulSet", corev1.ConditionFalse, 20*time.Minute),
		pod("StatefulSet", corev1.ConditionTrue, time.Hour),
		pod("ReplicaSet", corev1.ConditionFalse, 90*time.Second),
		pod("ReplicaSet", "", 0),                     // no condition yet
		pod("Job", corev1.ConditionFalse, time.Hour), // not a workload inplace rolls
		&corev1.Node{}, // not a pod
	})
	want := `
# HELP inplace_pods_gate_closed Managed pods whose InPlaceUpdateReady condition is False (out of their Services for an update, or kept out), by workload kind.
# TYPE inplace_pods_gate_closed gauge
inplace_pods_gate_closed{kind="DaemonSet"} 0
inplace_pods_gate_closed{kind="Deployment"} 1
inplace_pods_gate_closed{kind="StatefulSet"} 2
# HELP inplace_pods_gate_closed_longest_seconds How long the longest-closed of those pods has had its InPlaceUpdateReady condition False, by workload kind; 0 when none.
# TYPE inplace_pods_gate_closed_longest_seconds gauge
inplace_pods_gate_closed_longest_seconds{kind="DaemonSet"} 0
inplace_pods_gate_closed_longest_seconds{kind="Deployment"} 90
inplace_pods_gate_closed_longest_seconds{kind="StatefulSet"} 1200
`
	if err := testutil.CollectAndCompare(g, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
