package statefulset

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testclock"
)

// planFixture is a StatefulSet mid-rollout from revision "web-old" (image
// v1) to "web-new" (image v2), with its pods described by a string per
// ordinal:
//
//	o: at web-old, Ready     n: at web-new, Ready     u: updating (state recorded)
//	x: at web-old, not Ready r: at web-new, not Ready  _: missing
//	g: at web-old, Ready, no readiness gate (to be recreated)
type planFixture struct {
	replicas, partition int32
	maxUnavailable      int
	parallel            bool
	pods                string
}

func (f planFixture) build() *workload {
	sts := builder.StatefulSet("web", "apps").Replicas(f.replicas).Obj()
	sts.Spec.Template = *builder.PodTemplate("web", "app:v2").Obj()
	sts.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{
		Partition: ptr.To(f.partition), MaxUnavailable: ptr.To(intstr.FromInt(max(f.maxUnavailable, 1))),
	}
	if f.parallel {
		sts.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	}
	sts.Status.UpdateRevision = "web-new"
	var pods []*corev1.Pod
	for i, c := range f.pods {
		if c == '_' {
			continue
		}
		w := builder.Pod(fmt.Sprintf("web-%d", i), "apps").Label(appsv1.StatefulSetRevisionLabel, "web-old")
		if c != 'g' {
			w.ReadinessGate(inplace.ConditionInPlaceUpdateReady)
		}
		ready := corev1.ConditionTrue
		switch c {
		case 'n':
			w.Label(appsv1.StatefulSetRevisionLabel, "web-new")
		case 'u':
			w.Annotation(inplace.AnnotationUpdateState, `{"revision":"web-new"}`)
			ready = corev1.ConditionFalse
		case 'x':
			ready = corev1.ConditionFalse
		case 'r':
			w.Label(appsv1.StatefulSetRevisionLabel, "web-new")
			ready = corev1.ConditionFalse
		}
		w.Condition(string(corev1.PodReady), ready)
		pod := w.Obj()
		pod.Status.Phase = corev1.PodRunning
		pods = append(pods, pod)
	}
	return &workload{sts: sts, pods: pods}
}

// starts is what a pass begins: the plan with the engine's budget, a pod
// without the readiness gate not in place.
func starts(plan rollout.Plan) []*corev1.Pod {
	return rollout.Choose(plan, inplace.HasGate)
}

func TestPlan(t *testing.T) {
	cases := map[string]struct {
		fixture      planFixture
		wantStart    []int
		wantProgress []int
		wantSettling []int
		wantComplete bool
	}{
		"the first pass starts the highest ordinal": {
			fixture:   planFixture{replicas: 3, pods: "ooo"},
			wantStart: []int{2},
		},
		"Parallel with maxUnavailable 2 starts two at once, from the top": {
			fixture:   planFixture{replicas: 3, maxUnavailable: 2, parallel: true, pods: "ooo"},
			wantStart: []int{2, 1},
		},
		"a pod mid-update uses the budget": {
			fixture:      planFixture{replicas: 3, pods: "oou"},
			wantProgress: []int{2},
		},
		"a finished pod lets the next start": {
			fixture:   planFixture{replicas: 3, pods: "oon"},
			wantStart: []int{1},
		},
		"a pod already down on the old revision goes at once, whatever the budget": {
			fixture:   planFixture{replicas: 3, pods: "xoo"},
			wantStart: []int{0},
		},
		"Parallel: every pod down on the old revision goes at once": {
			fixture:   planFixture{replicas: 3, parallel: true, pods: "xxo"},
			wantStart: []int{1, 0},
		},
		"OrderedReady: a pod down goes, the available ones wait for every pod": {
			fixture:      planFixture{replicas: 3, maxUnavailable: 2, pods: "oux"},
			wantProgress: []int{1}, wantStart: []int{2},
		},
		"Parallel goes past a missing pod": {
			fixture:   planFixture{replicas: 3, maxUnavailable: 2, parallel: true, pods: "oo_"},
			wantStart: []int{1},
		},
		"a pod to be recreated takes its share of the budget": {
			fixture: planFixture{replicas: 3, pods: "oog"},
		},
		"a pod to be recreated, and the next in place within maxUnavailable 2": {
			fixture:   planFixture{replicas: 3, maxUnavailable: 2, parallel: true, pods: "oog"},
			wantStart: []int{1},
		},
		"the partition is never crossed": {
			fixture:      planFixture{replicas: 3, partition: 2, pods: "oon"},
			wantComplete: true,
		},
		"a pod mid-update below a partition raised since is settled": {
			fixture:      planFixture{replicas: 3, partition: 2, pods: "oun"},
			wantSettling: []int{1}, wantComplete: true,
		},
		"every pod done completes the rollout": {
			fixture:      planFixture{replicas: 3, pods: "nnn"},
			wantComplete: true,
		},
		"done but one not Ready yet is not complete": {
			fixture: planFixture{replicas: 2, pods: "nr"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			plan := tc.fixture.build().Plan(time.Now())
			if diff := cmp.Diff(tc.wantStart, ordinals(starts(plan))); diff != "" {
				t.Errorf("start (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantProgress, ordinals(plan.Updating)); diff != "" {
				t.Errorf("in progress (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantSettling, ordinals(plan.Settling)); diff != "" {
				t.Errorf("settling (-want,+got):\n%s", diff)
			}
			if plan.Complete != tc.wantComplete {
				t.Errorf("complete = %v, want %v", plan.Complete, tc.wantComplete)
			}
		})
	}
}

func TestPlanMinReadySeconds(t *testing.T) { testclock.Run(t, testPlanMinReadySeconds) }

func testPlanMinReadySeconds(t *testing.T, now time.Time) {
	w := planFixture{replicas: 2, pods: "on"}.build()
	w.sts.Spec.MinReadySeconds = 10
	for _, p := range w.pods {
		p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(now.Add(-4 * time.Second))
	}
	plan := w.Plan(now)
	// web-1 is updated but not yet available: it uses the budget, and
	// web-0, Ready, waits.
	if s := starts(plan); len(s) != 0 {
		t.Errorf("started %v before web-1 was available for minReadySeconds", ordinals(s))
	}
	if plan.RecheckIn != 6*time.Second {
		t.Errorf("RecheckIn = %v, want 6s", plan.RecheckIn)
	}
}

func ordinals(pods []*corev1.Pod) []int {
	var out []int
	for _, p := range pods {
		var n int
		fmt.Sscanf(p.Name, "web-%d", &n)
		out = append(out, n)
	}
	return out
}
