package deployment

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// planFixture is a Deployment of replicas mid-rollout from its old
// ReplicaSet (hash "old", image v1) to its new one ("new", v2), each with
// its replicas as the Deployment controller set them and its pods, one
// letter a pod:
//
//	o: Ready   x: not Ready   g: Ready, no readiness gate
//	b: begun (gate closed, not moved yet)
//	m: moved here, its update in progress
type planFixture struct {
	replicas         int32
	oldSpec, newSpec int32
	oldPods, newPods string
	minReadySeconds  int32
	// defaultStrategy leaves maxSurge and maxUnavailable to the API's
	// defaults (25%); else both are 1.
	defaultStrategy bool
	// staleSpec, when set, adds an earlier target's ReplicaSet ("stale",
	// image v9) with those replicas and no pod: one the Deployment
	// controller scaled up for a revision it then went past.
	staleSpec int32
}

func (f planFixture) build() *workload {
	d := builder.Deployment("web", "apps").Template(func(t *builder.Template) { t.Image("app", "app:v2") }).Obj()
	d.UID, d.Spec.Replicas, d.Spec.MinReadySeconds = "d-uid", ptr.To(f.replicas), f.minReadySeconds
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intOrString(1)), MaxSurge: ptr.To(intOrString(1))}
	if f.defaultStrategy {
		d.Spec.Strategy.RollingUpdate = nil
	}
	rs := func(hash, image string, spec int32, created int) *appsv1.ReplicaSet {
		t := builder.PodTemplate("web", image).Label(appsv1.DefaultDeploymentUniqueLabelKey, hash).Obj()
		r := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + hash, Namespace: "apps", UID: types.UID("rs-" + hash),
				Labels: map[string]string{"app": "web", appsv1.DefaultDeploymentUniqueLabelKey: hash}, CreationTimestamp: metav1.Unix(int64(created), 0)},
			Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(spec), Template: *t},
		}
		r.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}
		return r
	}
	old, next := rs("old", "app:v1", f.oldSpec, 1), rs("new", "app:v2", f.newSpec, 3)
	all := []*appsv1.ReplicaSet{old, next}
	if f.staleSpec > 0 {
		all = append(all, rs("stale", "app:v9", f.staleSpec, 2))
	}
	w := &workload{view: inplace.NewDeploymentView(d, all),
		kubeletVersion: func(context.Context, string) string { return "v1.37.2" }}
	add := func(owner *appsv1.ReplicaSet, letters string) {
		for _, c := range letters {
			p := builder.Pod(fmt.Sprintf("%s-%d", owner.Name, len(w.pods)), "apps").OwnedBy("apps/v1", "ReplicaSet", owner.Name, owner.UID).
				Label("app", "web").Label(appsv1.DefaultDeploymentUniqueLabelKey, owner.Labels[appsv1.DefaultDeploymentUniqueLabelKey])
			if c != 'g' {
				p.ReadinessGate(inplace.ConditionInPlaceUpdateReady)
			}
			ready := corev1.ConditionTrue
			switch c {
			case 'x':
				ready = corev1.ConditionFalse
			case 'b':
				p.Condition(inplace.ConditionInPlaceUpdateReady, corev1.ConditionFalse)
				p.Status.Conditions[0].Reason = inplace.ReasonInPlaceUpdate
				ready = corev1.ConditionFalse
			case 'm':
				p.Annotation(inplace.AnnotationUpdateState, `{"revision":"new","patchedAt":"2026-01-01T00:00:00Z","containers":{"app":{"containerID":"c1"}}}`)
				ready = corev1.ConditionFalse
			}
			p.Condition(string(corev1.PodReady), ready)
			pod := p.Obj()
			pod.Status.Phase = corev1.PodRunning
			w.pods = append(w.pods, pod)
		}
	}
	add(old, f.oldPods)
	add(next, f.newPods)
	for _, r := range w.view.ReplicaSets {
		for _, p := range w.pods {
			if w.view.Owner(p) == r {
				r.Status.Replicas++
			}
		}
	}
	return w
}

func intOrString(n int) intstr.IntOrString { return intstr.FromInt(n) }

func TestPlan(t *testing.T) {
	for name, tc := range map[string]struct {
		fixture      planFixture
		wantStart    []string
		wantUpdating []string
		wantComplete bool
		// wantUnstarted: the pods neither moved nor begun.
		wantUnstarted int
	}{
		"the rollout begins: no old ReplicaSet scaled down yet, nothing moves": {
			fixture: planFixture{replicas: 4, oldSpec: 4, newSpec: 1, oldPods: "oooo"}, wantUnstarted: 4,
		},
		"the old ReplicaSet scaled down by one, the new one has room: one pod moves": {
			fixture: planFixture{replicas: 4, oldSpec: 3, newSpec: 1, oldPods: "oooo"}, wantStart: []string{"web-old-0"}, wantUnstarted: 4,
		},
		"scaled down by two, room for one: one moves": {
			fixture: planFixture{replicas: 4, oldSpec: 2, newSpec: 1, oldPods: "oooo"}, wantStart: []string{"web-old-0"}, wantUnstarted: 4,
		},
		"scaled down, but no room yet (its scale-up comes in the next sync)": {
			fixture: planFixture{replicas: 4, oldSpec: 3, newSpec: 0, oldPods: "oooo"}, wantUnstarted: 4,
		},
		"no room, but an earlier target's ReplicaSet wants a pod it never got (the rollout retargeted while held): one moves": {
			fixture: planFixture{replicas: 3, oldSpec: 2, newSpec: 0, oldPods: "ooo", staleSpec: 1}, wantStart: []string{"web-old-0"}, wantUnstarted: 3,
		},
		"an earlier target's ReplicaSet wanting a pod, nothing scaled down: nothing moves": {
			fixture: planFixture{replicas: 3, oldSpec: 3, newSpec: 0, oldPods: "ooo", staleSpec: 1}, wantUnstarted: 3,
		},
		"a pod not Ready moves first": {
			fixture: planFixture{replicas: 4, oldSpec: 3, newSpec: 1, oldPods: "ooxo"}, wantStart: []string{"web-old-2"}, wantUnstarted: 4,
		},
		"a pod begun counts against the budget and is advanced": {
			fixture: planFixture{replicas: 4, oldSpec: 3, newSpec: 2, oldPods: "booo"}, wantUpdating: []string{"web-old-0"}, wantUnstarted: 3,
		},
		"a pod moved mid-update is advanced, the next waits for the next scale-down": {
			fixture: planFixture{replicas: 4, oldSpec: 3, newSpec: 2, oldPods: "ooo", newPods: "m"}, wantUpdating: []string{"web-new-3"}, wantUnstarted: 3,
		},
		"a pod without the gate is not moved: its ReplicaSet's delete passes": {
			fixture: planFixture{replicas: 2, oldSpec: 1, newSpec: 1, oldPods: "go"}, wantStart: []string{"web-old-1"}, wantUnstarted: 2,
		},
		"the default 25% of 2 replicas comes to maxUnavailable 0: nothing moves, the rollout is native": {
			fixture: planFixture{replicas: 2, oldSpec: 1, newSpec: 2, oldPods: "oo", defaultStrategy: true}, wantUnstarted: 2,
		},
		"every pod moved and Ready: complete": {
			fixture: planFixture{replicas: 3, oldSpec: 0, newSpec: 3, newPods: "ooo"}, wantComplete: true,
		},
		"every pod moved, one not Ready: not complete": {
			fixture: planFixture{replicas: 3, oldSpec: 0, newSpec: 3, newPods: "oox"},
		},
		"the last pod moved, its update in progress: none unstarted (the record goes before it turns Ready)": {
			fixture: planFixture{replicas: 3, oldSpec: 0, newSpec: 3, newPods: "oom"}, wantUpdating: []string{"web-new-2"},
		},
		"the last pod begun, not moved yet: none unstarted": {
			fixture: planFixture{replicas: 3, oldSpec: 0, newSpec: 3, oldPods: "b", newPods: "oo"}, wantUpdating: []string{"web-old-0"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			plan := tc.fixture.build().Plan(time.Now())
			if diff := cmp.Diff(tc.wantStart, podNames(rollout.Choose(plan, inplace.HasGate))); diff != "" {
				t.Errorf("start (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantUpdating, podNames(plan.Updating)); diff != "" {
				t.Errorf("updating (-want,+got):\n%s", diff)
			}
			if plan.Complete != tc.wantComplete {
				t.Errorf("complete = %v, want %v", plan.Complete, tc.wantComplete)
			}
			if plan.Unstarted == nil || *plan.Unstarted != tc.wantUnstarted {
				t.Errorf("unstarted = %v, want %d", ptr.Deref(plan.Unstarted, -1), tc.wantUnstarted)
			}
		})
	}
}

// TestMark: a pod marked at the new ReplicaSet carries its
// pod-template-hash and has it, alone, as its controller; its other owner
// references stay.
func TestMark(t *testing.T) {
	w := planFixture{replicas: 1, oldSpec: 0, newSpec: 1, oldPods: "o"}.build()
	pod := w.pods[0]
	pod.OwnerReferences = append(pod.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "keep", UID: "cm"})
	target := w.Target()
	if target == nil || target.Name != "new" {
		t.Fatalf("target %+v, want the new ReplicaSet", target)
	}
	target.Mark(pod)
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.UID != "rs-new" || ref.Kind != "ReplicaSet" || !ptr.Deref(ref.BlockOwnerDeletion, false) {
		t.Errorf("controller %+v, want the new ReplicaSet", ref)
	}
	if len(pod.OwnerReferences) != 2 || pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey] != "new" {
		t.Errorf("owners %v, labels %v", pod.OwnerReferences, pod.Labels)
	}
	if ok, _ := w.view.Movable(pod, "v1.37.2"); ok {
		t.Errorf("a pod of the new ReplicaSet is movable")
	}
}

func podNames(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}
