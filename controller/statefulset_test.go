package controller

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// planFixture is a StatefulSet mid-rollout from revision "web-old" to
// "web-new", with its pods described by a string per ordinal:
//
//	o: at web-old, Ready     n: at web-new, Ready     u: updating (state recorded)
//	x: at web-old, not Ready r: at web-new, not Ready  _: missing
type planFixture struct {
	replicas, userPartition int32
	maxUnavailable          int
	parallel                bool
	pods                    string
}

func (f planFixture) build() (*appsv1.StatefulSet, *inplace.Hold, []*corev1.Pod) {
	sts := builder.StatefulSet("web", "apps").Replicas(f.replicas).Obj()
	sts.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{
		Partition: ptr.To(f.replicas), MaxUnavailable: ptr.To(intstr.FromInt(max(f.maxUnavailable, 1))),
	}
	if f.parallel {
		sts.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	}
	sts.Status.UpdateRevision = "web-new"
	hold := &inplace.Hold{Partition: ptr.To(f.userPartition)}
	var pods []*corev1.Pod
	for i, c := range f.pods {
		if c == '_' {
			continue
		}
		w := builder.Pod(fmt.Sprintf("web-%d", i), "apps").Label(appsv1.StatefulSetRevisionLabel, "web-old").
			ReadinessGate(inplace.ConditionInPlaceUpdateReady)
		ready := corev1.ConditionTrue
		switch c {
		case 'n':
			w.Label(appsv1.StatefulSetRevisionLabel, "web-new")
		case 'u':
			w.Annotation(inplace.AnnotationUpdateState, "{}")
			ready = corev1.ConditionFalse
		case 'x':
			ready = corev1.ConditionFalse
		case 'r':
			w.Label(appsv1.StatefulSetRevisionLabel, "web-new")
			ready = corev1.ConditionFalse
		}
		w.Condition(string(corev1.PodReady), ready)
		pods = append(pods, w.Obj())
	}
	return sts, hold, pods
}

func TestStatefulSetPlan(t *testing.T) {
	cases := map[string]struct {
		fixture        planFixture
		wantCandidates []int
		wantProgress   []int
		wantPartition  int32
		wantComplete   bool
	}{
		"the first pass starts the highest ordinal": {
			fixture:        planFixture{replicas: 3, pods: "ooo"},
			wantCandidates: []int{2}, wantPartition: 3,
		},
		"Parallel with maxUnavailable 2 starts two at once, from the top": {
			fixture:        planFixture{replicas: 3, maxUnavailable: 2, parallel: true, pods: "ooo"},
			wantCandidates: []int{2, 1}, wantPartition: 3,
		},
		"a pod mid-update uses the budget": {
			fixture:      planFixture{replicas: 3, pods: "oou"},
			wantProgress: []int{2}, wantPartition: 3,
		},
		"a finished pod lowers the partition and lets the next start": {
			fixture:        planFixture{replicas: 3, pods: "oon"},
			wantCandidates: []int{1}, wantPartition: 2,
		},
		"an unready pod elsewhere uses the budget": {
			fixture:       planFixture{replicas: 3, pods: "xoo"},
			wantPartition: 3,
		},
		"OrderedReady never passes a pod that is not done": {
			fixture:       planFixture{replicas: 3, maxUnavailable: 2, pods: "oux"},
			wantProgress:  []int{1},
			wantPartition: 3,
		},
		"Parallel goes past a missing pod": {
			fixture:        planFixture{replicas: 3, maxUnavailable: 2, parallel: true, pods: "oo_"},
			wantCandidates: []int{1}, wantPartition: 3,
		},
		"the user's partition is never crossed": {
			fixture:       planFixture{replicas: 3, userPartition: 2, pods: "oon"},
			wantPartition: 2, wantComplete: true,
		},
		"every pod done completes the rollout": {
			fixture:       planFixture{replicas: 3, pods: "nnn"},
			wantPartition: 0, wantComplete: true,
		},
		"done but one not Ready yet is not complete": {
			fixture:       planFixture{replicas: 2, pods: "nr"},
			wantPartition: 0,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			sts, hold, pods := tc.fixture.build()
			r := &StatefulSetRollout{Clock: clocktesting.NewFakePassiveClock(time.Now())}
			plan := r.plan(sts, hold, pods)
			if diff := cmp.Diff(tc.wantCandidates, ordinals(plan.candidates)); diff != "" {
				t.Errorf("candidates (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantProgress, ordinals(plan.inProgress)); diff != "" {
				t.Errorf("in progress (-want,+got):\n%s", diff)
			}
			if plan.partition != tc.wantPartition || plan.complete != tc.wantComplete {
				t.Errorf("partition, complete = %d, %v; want %d, %v", plan.partition, plan.complete, tc.wantPartition, tc.wantComplete)
			}
		})
	}
}

func TestStatefulSetPlanMinReadySeconds(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	sts, hold, pods := planFixture{replicas: 2, pods: "on"}.build()
	sts.Spec.MinReadySeconds = 10
	for _, p := range pods {
		p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(now.Add(-4 * time.Second))
	}
	r := &StatefulSetRollout{Clock: clocktesting.NewFakePassiveClock(now)}
	plan := r.plan(sts, hold, pods)
	if len(plan.candidates) != 0 {
		t.Errorf("started %v before web-1 was available for minReadySeconds", ordinals(plan.candidates))
	}
	if plan.availableIn != 6*time.Second {
		t.Errorf("availableIn = %v, want 6s", plan.availableIn)
	}
}

func ordinals(ps []statefulPod) []int {
	var out []int
	for _, p := range ps {
		out = append(out, p.ordinal)
	}
	return out
}
