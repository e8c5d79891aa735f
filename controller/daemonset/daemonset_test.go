package daemonset

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// planFixture is a DaemonSet mid-rollout from the revision of hash "old"
// (image v1, template generation 1) to "new" (v2, generation 2), one
// letter per node, nodes named n0, n1, ...:
//
//	o: old, Ready      n: new, Ready      u: updating (state recorded)
//	x: old, not Ready  r: new, not Ready  _: no pod yet
//	g: old, Ready, no readiness gate      2: two pods on the node
type planFixture struct {
	maxUnavailable string
	nodes          string
}

func revision(hash string, template *corev1.PodTemplateSpec, rev int64, owner *appsv1.DaemonSet) *appsv1.ControllerRevision {
	raw, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": template}})
	r := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: "agent-" + hash, Namespace: "apps", Labels: map[string]string{appsv1.DefaultDaemonSetUniqueLabelKey: hash}},
		Data:       runtime.RawExtension{Raw: raw}, Revision: rev,
	}
	r.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, appsv1.SchemeGroupVersion.WithKind("DaemonSet"))}
	return r
}

func (f planFixture) build() *workload {
	ds := builder.DaemonSet("agent", "apps").Obj()
	ds.UID = "ds-uid"
	ds.Spec.Template = *builder.PodTemplate("agent", "app:v2").Obj()
	if f.maxUnavailable != "" {
		v := intstr.Parse(f.maxUnavailable)
		ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &v}
	}
	ds.Annotations = map[string]string{appsv1.DeprecatedTemplateGeneration: "2"}
	ds.Status.DesiredNumberScheduled = int32(len(f.nodes))
	w := &workload{ds: ds, generation: "2", revisions: []*appsv1.ControllerRevision{
		revision("old", builder.PodTemplate("agent", "app:v1").Obj(), 1, ds),
		revision("new", &ds.Spec.Template, 2, ds),
	}}
	w.current = inplace.CurrentDaemonSetRevision(ds, w.revisions)
	for i, c := range f.nodes {
		node := fmt.Sprintf("n%d", i)
		count := 1
		switch c {
		case '_':
			continue
		case '2':
			count = 2
		}
		for j := range count {
			p := builder.Pod(fmt.Sprintf("agent-%s-%d", node, j), "apps").OwnedBy("apps/v1", "DaemonSet", "agent", ds.UID).
				Label(appsv1.DefaultDaemonSetUniqueLabelKey, "old").Label(inplace.LabelPodTemplateGeneration, "1")
			if c != 'g' {
				p.ReadinessGate(inplace.ConditionInPlaceUpdateReady)
			}
			ready := corev1.ConditionTrue
			switch c {
			case 'n', 'r':
				p.Label(appsv1.DefaultDaemonSetUniqueLabelKey, "new").Label(inplace.LabelPodTemplateGeneration, "2")
			case 'u':
				p.Annotation(inplace.AnnotationUpdateState, `{"revision":"new"}`)
			}
			if c == 'x' || c == 'r' || c == 'u' {
				ready = corev1.ConditionFalse
			}
			p.Condition(string(corev1.PodReady), ready)
			pod := p.Obj()
			pod.Spec.NodeName = node
			pod.Status.Phase = corev1.PodRunning
			w.pods = append(w.pods, pod)
		}
	}
	return w
}

func TestPlan(t *testing.T) {
	for name, tc := range map[string]struct {
		fixture      planFixture
		wantStart    []string // nodes
		wantUpdating []string
		wantComplete bool
	}{
		"one node at a time, by node name": {
			fixture: planFixture{nodes: "ooo"}, wantStart: []string{"n0"},
		},
		"maxUnavailable 2: two nodes at once": {
			fixture: planFixture{maxUnavailable: "2", nodes: "ooo"}, wantStart: []string{"n0", "n1"},
		},
		"a pod updating uses the budget": {
			fixture: planFixture{nodes: "uoo"}, wantUpdating: []string{"n0"},
		},
		"an updated pod not Ready yet uses the budget": {
			fixture: planFixture{nodes: "roo"},
		},
		"an old pod down goes whatever the budget": {
			fixture: planFixture{nodes: "uox"}, wantUpdating: []string{"n0"}, wantStart: []string{"n2"},
		},
		"a node with no pod yet uses the budget": {
			fixture: planFixture{nodes: "_oo"},
		},
		"a node with two pods uses the budget (its controller deletes one)": {
			fixture: planFixture{maxUnavailable: "2", nodes: "2oo"}, wantStart: []string{"n1"},
		},
		"a pod without the gate takes its share and is recreated natively": {
			fixture: planFixture{maxUnavailable: "2", nodes: "goo"}, wantStart: []string{"n1"},
		},
		"50% of 3 nodes is 2, rounded up": {
			fixture: planFixture{maxUnavailable: "50%", nodes: "ooo"}, wantStart: []string{"n0", "n1"},
		},
		"every node updated and Ready: complete": {
			fixture: planFixture{nodes: "nnn"}, wantComplete: true,
		},
		"a node still to get its pod: not complete": {
			fixture: planFixture{nodes: "nn_"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			plan := tc.fixture.build().Plan(time.Now())
			if diff := cmp.Diff(tc.wantStart, nodeNames(rollout.Choose(plan, inplace.HasGate))); diff != "" {
				t.Errorf("start (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantUpdating, nodeNames(plan.Updating)); diff != "" {
				t.Errorf("updating (-want,+got):\n%s", diff)
			}
			if plan.Complete != tc.wantComplete {
				t.Errorf("complete = %v, want %v", plan.Complete, tc.wantComplete)
			}
		})
	}
}

// TestTargetAndMarks: the target is the revision of the DaemonSet's
// template, and a pod marked at it carries what the DaemonSet controller
// counts updated; one marked back at an older revision does not.
func TestTargetAndMarks(t *testing.T) {
	w := planFixture{nodes: "o"}.build()
	target := w.Target()
	if target == nil || target.Name != "new" {
		t.Fatalf("target %+v, want the revision of hash new", target)
	}
	pod := w.pods[0].DeepCopy()
	target.Mark(pod)
	if !inplace.DaemonPodUpdated(pod, "new", "2") || pod.Labels[inplace.LabelPodTemplateGeneration] != "2" {
		t.Errorf("marked at the target, labels %v: not counted updated", pod.Labels)
	}
	old, err := w.Revision(t.Context(), "old")
	if err != nil || old == nil {
		t.Fatalf("revision old: %v, %v", old, err)
	}
	old.Mark(pod)
	if inplace.DaemonPodUpdated(pod, "new", "2") {
		t.Errorf("marked back at the old revision, labels %v: still counted updated", pod.Labels)
	}
	if gone, _ := w.Revision(t.Context(), "gone"); gone != nil {
		t.Errorf("a revision not in the history: %+v", gone)
	}
	w.ds.Generation, w.ds.Status.ObservedGeneration = 3, 2
	if w.Target() != nil {
		t.Errorf("a target before the DaemonSet controller observed the spec")
	}
}

func nodeNames(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Spec.NodeName)
	}
	return out
}
