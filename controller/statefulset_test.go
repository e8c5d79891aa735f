package controller

import (
	"context"
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

var (
	oldTemplate = builder.PodTemplate("web", "app:v1").Obj()
	newTemplate = builder.PodTemplate("web", "app:v2").Obj()
)

func (f planFixture) build() (*appsv1.StatefulSet, []*corev1.Pod, *podTarget) {
	sts := builder.StatefulSet("web", "apps").Replicas(f.replicas).Obj()
	sts.Spec.Template = *newTemplate.DeepCopy()
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
	templates := map[string]*corev1.PodTemplateSpec{"web-old": oldTemplate, "web-new": newTemplate}
	t := &podTarget{
		kind: statefulSetKind, workload: sts, revisionLabel: appsv1.StatefulSetRevisionLabel,
		revision: "web-new", template: &sts.Spec.Template,
		templateOf: func(_ context.Context, r string) (*corev1.PodTemplateSpec, error) { return templates[r], nil },
		eligibility: func(_ context.Context, pod *corev1.Pod, from *corev1.PodTemplateSpec) (inplace.TemplateDiff, string) {
			return inplace.Eligibility(pod, from, &sts.Spec.Template, "v1.37.2")
		},
	}
	return sts, pods, t
}

func TestStatefulSetPlan(t *testing.T) {
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
			sts, pods, target := tc.fixture.build()
			r := &StatefulSetRollout{Clock: clocktesting.NewFakePassiveClock(time.Now())}
			plan, err := r.plan(t.Context(), sts, pods, target)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantStart, ordinals(plan.start)); diff != "" {
				t.Errorf("start (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantProgress, ordinals(plan.inProgress)); diff != "" {
				t.Errorf("in progress (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantSettling, ordinals(plan.settling)); diff != "" {
				t.Errorf("settling (-want,+got):\n%s", diff)
			}
			if plan.complete != tc.wantComplete {
				t.Errorf("complete = %v, want %v", plan.complete, tc.wantComplete)
			}
		})
	}
}

func TestStatefulSetPlanMinReadySeconds(t *testing.T) {
	testclock.Run(t, testStatefulSetPlanMinReadySeconds)
}

func testStatefulSetPlanMinReadySeconds(t *testing.T, now time.Time) {
	sts, pods, target := planFixture{replicas: 2, pods: "on"}.build()
	sts.Spec.MinReadySeconds = 10
	for _, p := range pods {
		p.Status.Conditions[0].LastTransitionTime = metav1.NewTime(now.Add(-4 * time.Second))
	}
	r := &StatefulSetRollout{Clock: clocktesting.NewFakePassiveClock(now)}
	plan, err := r.plan(t.Context(), sts, pods, target)
	if err != nil {
		t.Fatal(err)
	}
	// web-1 is updated but not yet available: it uses the budget, and
	// web-0, Ready, waits.
	if len(plan.start) != 0 {
		t.Errorf("started %v before web-1 was available for minReadySeconds", ordinals(plan.start))
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
