package inplace

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inplace-dev/inplace/internal/builder"
)

func TestAlive(t *testing.T) {
	cases := map[string]struct {
		pod  *corev1.Pod
		want bool
	}{
		"a running pod":                      {pod: builder.Pod("web-0", "apps").Phase(corev1.PodRunning).Obj(), want: true},
		"a pending pod":                      {pod: builder.Pod("web-0", "apps").Phase(corev1.PodPending).Obj(), want: true},
		"a pod with no phase yet (a create)": {pod: builder.Pod("web-0", "apps").Obj(), want: true},
		"a terminating pod":                  {pod: builder.Pod("web-0", "apps").Phase(corev1.PodRunning).Terminating().Obj()},
		"a failed pod":                       {pod: builder.Pod("web-0", "apps").Phase(corev1.PodFailed).Obj()},
		"a succeeded pod":                    {pod: builder.Pod("web-0", "apps").Phase(corev1.PodSucceeded).Obj()},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Alive(tc.pod); got != tc.want {
				t.Errorf("Alive = %v, want %v", got, tc.want)
			}
		})
	}
}

// replacementPod is a gated pod labelled at no revision (Replacement takes
// the revision as an argument), with edits.
func replacementPod(edit ...func(*corev1.Pod)) *corev1.Pod {
	p := builder.Pod("web-0", "apps").ReadinessGate(ConditionInPlaceUpdateReady).Obj()
	for _, e := range edit {
		e(p)
	}
	return p
}

// withState records an update state on the pod: to revision, patched or
// not.
func withState(revision string, isPatched bool) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		s := &UpdateState{Revision: revision}
		if isPatched {
			s.PatchedAt = &patched // not the zero time: it encodes as null, read back as not patched
		}
		metav1.SetMetaDataAnnotation(&p.ObjectMeta, AnnotationUpdateState, s.Encode())
	}
}

func TestReplacement(t *testing.T) {
	v1 := builder.PodTemplate("web", "app:v1").Obj()
	v2 := builder.PodTemplate("web", "app:v2").Obj()
	v3 := builder.PodTemplate("web", "app:v3").Obj()
	v3env := builder.PodTemplate("web", "app:v3").Env("MODE", "fast").Obj()
	v2env := builder.PodTemplate("web", "app:v2").Env("MODE", "fast").Obj()
	v2init := builder.PodTemplate("web", "app:v1").InitImage("migrate", "migrate:v2").Obj()
	v1init := builder.PodTemplate("web", "app:v1").InitImage("migrate", "migrate:v1").Obj()
	// From r1 both containers' images change; from r2, where the pod was
	// patched to, only app's does, and the annotation would need side
	// restarted too.
	sides1 := builder.PodTemplate("web", "app:v1").Image("side", "side:s1").Annotation("a", "1").Obj()
	sides2 := builder.PodTemplate("web", "app:v2").Image("side", "side:s2").Annotation("a", "2").Obj()
	sides3 := builder.PodTemplate("web", "app:v3").Image("side", "side:s2").Annotation("a", "1").Obj()
	restarted := builder.PodTemplate("web", "app:v1").Annotation("kubectl.kubernetes.io/restartedAt", "2026-12-01T00:00:00Z").Obj()
	relabelled := builder.PodTemplate("web", "app:v1").Label("tier", "front").Obj()
	proxy1, proxy2 := withSidecar(v1.DeepCopy(), "envoy:1"), withSidecar(v1.DeepCopy(), "envoy:2")
	history := map[string]*corev1.PodTemplateSpec{
		"r1": v1, "r2": v2, "r1init": v1init, "r1proxy": proxy1, "s1": sides1, "s2": sides2,
	}
	templateOf := func(r string) *corev1.PodTemplateSpec { return history[r] }

	cases := map[string]struct {
		pod          *corev1.Pod
		revision     string
		to           *corev1.PodTemplateSpec
		kubelet      string
		wantRefuse   bool
		wantFallback string
	}{
		"an image change: refused, updated in place": {
			pod: replacementPod(), revision: "r1", to: v2, wantRefuse: true,
		},
		"an env change: recreated, not in place": {
			pod: replacementPod(), revision: "r1", to: v2env, wantFallback: FallbackNotInPlaceable,
		},
		"a regular init container's image: recreated, it never runs again": {
			pod: replacementPod(), revision: "r1init", to: v2init, wantFallback: FallbackNotInPlaceable,
		},
		"a pod annotation alone (rollout restart): recreated, no image restarts the containers": {
			pod: replacementPod(), revision: "r1", to: restarted, wantFallback: FallbackNotInPlaceable,
		},
		"a pod label alone: in place, a labels-only update": {
			pod: replacementPod(), revision: "r1", to: relabelled, wantRefuse: true,
		},
		"no readiness gate: recreated": {
			pod: replacementPod(func(p *corev1.Pod) { p.Spec.ReadinessGates = nil }), revision: "r1", to: v2,
			wantFallback: FallbackNoReadinessGate,
		},
		"its revision is gone from the history: recreated": {
			pod: replacementPod(), revision: "r0", to: v2, wantFallback: FallbackNoRevision,
		},
		"no revision label at all: recreated": {
			pod: replacementPod(), revision: "", to: v2, wantFallback: FallbackNoRevision,
		},
		"already at the target: refused, a delete decided on a stale view": {
			pod: replacementPod(), revision: "r2", to: v2, wantRefuse: true,
		},
		"already at the target, without the gate: refused all the same": {
			pod: replacementPod(func(p *corev1.Pod) { p.Spec.ReadinessGates = nil }), revision: "r2", to: v2, wantRefuse: true,
		},
		"a native sidecar's image on a kubelet that restarts sidecars": {
			pod: replacementPod(), revision: "r1proxy", to: proxy2, kubelet: "v1.32.0", wantRefuse: true,
		},
		"a native sidecar's image on a kubelet before 1.32: recreated": {
			pod: replacementPod(), revision: "r1proxy", to: proxy2, kubelet: "v1.31.9", wantFallback: FallbackSidecarKubelet,
		},
		"a native sidecar's image on a node of unknown version: recreated, the safe side": {
			pod: replacementPod(), revision: "r1proxy", to: proxy2, kubelet: "", wantFallback: FallbackSidecarKubelet,
		},
		"a malformed update state: recreated": {
			pod: replacementPod(func(p *corev1.Pod) {
				metav1.SetMetaDataAnnotation(&p.ObjectMeta, AnnotationUpdateState, `{"revision":`)
			}),
			revision: "r1", to: v2, wantFallback: FallbackBadState,
		},
		"an update begun, not patched yet: refused": {
			pod: replacementPod(withState("r2", false)), revision: "r1", to: v2, wantRefuse: true,
		},
		"patched to the target, finishing its update: refused": {
			pod: replacementPod(withState("r2", true)), revision: "r1", to: v2, wantRefuse: true,
		},
		"patched to the revision it is labelled at: refused": {
			pod: replacementPod(withState("r1", true)), revision: "r1", to: v2, wantRefuse: true,
		},
		"patched to an older target, the new one in place from it too: refused": {
			pod: replacementPod(withState("r2", true)), revision: "r1", to: v3, wantRefuse: true,
		},
		"patched to an older target, the new one not in place from it: recreated": {
			pod: replacementPod(withState("s2", true)), revision: "s1", to: sides3, wantFallback: FallbackNotInPlaceable,
		},
		"not patched yet, the new target in place from its labelled revision: refused": {
			pod: replacementPod(withState("s2", false)), revision: "s1", to: sides3, wantRefuse: true,
		},
		"not in place from its labelled revision, whatever it was patched to: recreated": {
			pod: replacementPod(withState("r2", true)), revision: "r1", to: v3env, wantFallback: FallbackNotInPlaceable,
		},
		"patched to a revision gone from the history: recreated": {
			pod: replacementPod(withState("r9", true)), revision: "r1", to: v3, wantFallback: FallbackNoRevision,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			kubelet := tc.kubelet
			if kubelet == "" && tc.to != proxy2 {
				kubelet = "v1.37.2"
			}
			refuse, fallback := Replacement(tc.pod, tc.revision, templateOf, tc.to, kubelet)
			if refuse != tc.wantRefuse || fallback != tc.wantFallback {
				t.Errorf("Replacement = %v, %q; want %v, %q", refuse, fallback, tc.wantRefuse, tc.wantFallback)
			}
			if refuse && fallback != "" {
				t.Errorf("refused with a fallback %q: a refused pod is not recreated", fallback)
			}
			if fallback != "" && FallbackWords[fallback] == "" {
				t.Errorf("fallback %q has no words for its event", fallback)
			}
		})
	}
}

func TestEligibility(t *testing.T) {
	v1 := builder.PodTemplate("web", "app:v1").Obj()
	cases := map[string]struct {
		pod          *corev1.Pod
		from, to     *corev1.PodTemplateSpec
		wantFallback string
		wantImages   int
	}{
		"an image change":                  {pod: replacementPod(), from: v1, to: builder.PodTemplate("web", "app:v2").Obj(), wantImages: 1},
		"nothing changes: eligible, empty": {pod: replacementPod(), from: v1, to: v1},
		"the gate is checked first, before the revision": {
			pod: replacementPod(func(p *corev1.Pod) { p.Spec.ReadinessGates = nil }), from: nil, to: v1,
			wantFallback: FallbackNoReadinessGate,
		},
		"another readiness gate is not ours": {
			pod: builder.Pod("web-0", "apps").ReadinessGate("example.com/ready").Obj(), from: v1, to: v1,
			wantFallback: FallbackNoReadinessGate,
		},
		"no template to go from": {pod: replacementPod(), from: nil, to: v1, wantFallback: FallbackNoRevision},
		"a port added": {
			pod: replacementPod(), from: v1,
			to: func() *corev1.PodTemplateSpec {
				t := v1.DeepCopy()
				t.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}}
				return t
			}(),
			wantFallback: FallbackNotInPlaceable,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d, fallback := Eligibility(tc.pod, tc.from, tc.to, "v1.37.2")
			if fallback != tc.wantFallback {
				t.Errorf("fallback = %q, want %q", fallback, tc.wantFallback)
			}
			if len(d.Images) != tc.wantImages {
				t.Errorf("images changed = %d, want %d", len(d.Images), tc.wantImages)
			}
		})
	}
}
