package inplace

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/internal/builder"
)

func intOrPercent(s string) *intstr.IntOrString { return ptr.To(intstr.Parse(s)) }

func TestDaemonSetHandedBack(t *testing.T) {
	ds := func() *builder.DaemonSetWrapper { return builder.DaemonSet("agent", "apps") }
	cases := map[string]struct {
		ds   *appsv1.DaemonSet
		want string
	}{
		"no strategy written (the API server's default, RollingUpdate)": {ds: ds().Obj()},
		"RollingUpdate with maxUnavailable 1":                           {ds: ds().RollingUpdate(nil, intOrPercent("1")).Obj()},
		"RollingUpdate with maxSurge 0":                                 {ds: ds().RollingUpdate(intOrPercent("0"), intOrPercent("1")).Obj()},
		"RollingUpdate with maxSurge 0%":                                {ds: ds().RollingUpdate(intOrPercent("0%"), intOrPercent("1")).Obj()},
		"OnDelete: each replacement is the user's": {
			ds: ds().OnDelete().Obj(), want: "its update strategy is OnDelete",
		},
		"maxSurge 1: each node's new pod starts beside the old": {
			ds:   ds().RollingUpdate(intOrPercent("1"), intOrPercent("0")).Obj(),
			want: "its rolling update surges (maxSurge 1): each node's new pod starts beside the old one",
		},
		"maxSurge 1%: rounded up, a surge on any number of nodes": {
			ds:   ds().RollingUpdate(intOrPercent("1%"), intOrPercent("0")).Obj(),
			want: "its rolling update surges (maxSurge 1%): each node's new pod starts beside the old one",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := DaemonSetHandedBack(tc.ds); got != tc.want {
				t.Errorf("DaemonSetHandedBack = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDaemonSetMaxUnavailable checks the budget against the DaemonSet
// controller's (pkg/controller/daemon: util.UnavailableCount, rounded up,
// and updatedDesiredNodeCounts, 1 when it and maxSurge come to 0 on a
// DaemonSet that should run pods).
func TestDaemonSetMaxUnavailable(t *testing.T) {
	ds := func(maxSurge, maxUnavailable string) *appsv1.DaemonSet {
		w := builder.DaemonSet("agent", "apps")
		var s, u *intstr.IntOrString
		if maxSurge != "" {
			s = intOrPercent(maxSurge)
		}
		if maxUnavailable != "" {
			u = intOrPercent(maxUnavailable)
		}
		return w.RollingUpdate(s, u).Obj()
	}
	cases := map[string]struct {
		ds      *appsv1.DaemonSet
		desired int
		want    int
	}{
		"no strategy written: the default 1":           {ds: builder.DaemonSet("agent", "apps").Obj(), desired: 10, want: 1},
		"maxUnavailable unset: the default 1":          {ds: ds("", ""), desired: 10, want: 1},
		"an absolute number":                           {ds: ds("", "3"), desired: 10, want: 3},
		"an absolute number above the nodes, as is":    {ds: ds("", "5"), desired: 2, want: 5},
		"10% of 3 nodes rounds up to 1":                {ds: ds("", "10%"), desired: 3, want: 1},
		"50% of 3 nodes rounds up to 2":                {ds: ds("", "50%"), desired: 3, want: 2},
		"25% of 10 nodes rounds up to 3":               {ds: ds("", "25%"), desired: 10, want: 3},
		"30% of 10 nodes is 3 exactly":                 {ds: ds("", "30%"), desired: 10, want: 3},
		"100% of 4 nodes":                              {ds: ds("", "100%"), desired: 4, want: 4},
		"0 with maxSurge 0: 1, never a stuck rollout":  {ds: ds("0", "0"), desired: 4, want: 1},
		"0% of any number with no surge: 1":            {ds: ds("", "0%"), desired: 4, want: 1},
		"0 with a surge: 0, the surge makes room":      {ds: ds("1", "0"), desired: 4, want: 0},
		"a percentage of no nodes: 0, not raised to 1": {ds: ds("", "10%"), desired: 0, want: 0},
		"an absolute 1 of no nodes: 1":                 {ds: ds("", "1"), desired: 0, want: 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := DaemonSetMaxUnavailable(tc.ds, tc.desired); got != tc.want {
				t.Errorf("DaemonSetMaxUnavailable(%d nodes) = %d, want %d", tc.desired, got, tc.want)
			}
		})
	}
}

func TestDaemonSetTemplateGeneration(t *testing.T) {
	cases := map[string]struct {
		ds   *appsv1.DaemonSet
		want string
	}{
		"recorded by the API server": {ds: builder.DaemonSet("agent", "apps").TemplateGeneration("3").Obj(), want: "3"},
		"not recorded":               {ds: builder.DaemonSet("agent", "apps").Obj()},
		"not a number":               {ds: builder.DaemonSet("agent", "apps").TemplateGeneration("three").Obj()},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := DaemonSetTemplateGeneration(tc.ds); got != tc.want {
				t.Errorf("DaemonSetTemplateGeneration = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDaemonPodUpdated(t *testing.T) {
	pod := func(labels ...string) *corev1.Pod {
		w := builder.Pod("agent-x", "apps")
		for i := 0; i+1 < len(labels); i += 2 {
			w.Label(labels[i], labels[i+1])
		}
		return w.Obj()
	}
	hash, gen := appsv1.DefaultDaemonSetUniqueLabelKey, LabelPodTemplateGeneration
	cases := map[string]struct {
		pod              *corev1.Pod
		hash, generation string
		want             bool
	}{
		"the current hash": {pod: pod(hash, "h2"), hash: "h2", generation: "2", want: true},
		"the current template generation, an older hash":     {pod: pod(hash, "h1", gen, "2"), hash: "h2", generation: "2", want: true},
		"an older hash and generation":                       {pod: pod(hash, "h1", gen, "1"), hash: "h2", generation: "2"},
		"no current revision yet and a pod without the hash": {pod: pod(gen, "1"), hash: "", generation: "2"},
		"no template generation and a pod without one":       {pod: pod(hash, "h1"), hash: "h2", generation: ""},
		"no labels at all":                                   {pod: pod(), hash: "", generation: ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := DaemonPodUpdated(tc.pod, tc.hash, tc.generation); got != tc.want {
				t.Errorf("DaemonPodUpdated = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCurrentDaemonSetRevision(t *testing.T) {
	ds := builder.DaemonSet("agent", "apps").UID("ds-uid").Obj()
	v1 := builder.PodTemplate("agent", "agent:v1").Obj()
	v2 := builder.PodTemplate("agent", "agent:v2").Obj()
	at := func(tpl *corev1.PodTemplateSpec) *appsv1.DaemonSet {
		d := ds.DeepCopy()
		d.Spec.Template = *tpl.DeepCopy()
		return d
	}
	rev := func(hash string, n int64, tpl *corev1.PodTemplateSpec) *appsv1.ControllerRevision {
		return builder.ControllerRevision(ds, "DaemonSet", hash, n, tpl)
	}
	malformed := rev("hbad", 9, v1)
	malformed.Data = runtime.RawExtension{Raw: []byte(`{"spec":{"template":"x"}}`)}
	cases := map[string]struct {
		ds        *appsv1.DaemonSet
		revisions []*appsv1.ControllerRevision
		want      string // the hash; "" for none
	}{
		"the one revision of the template": {
			ds: at(v2), revisions: []*appsv1.ControllerRevision{rev("h1", 1, v1), rev("h2", 2, v2)}, want: "h2",
		},
		"in any order": {
			ds: at(v2), revisions: []*appsv1.ControllerRevision{rev("h2", 2, v2), rev("h1", 1, v1)}, want: "h2",
		},
		"none recorded yet for a new template": {
			ds: at(v2), revisions: []*appsv1.ControllerRevision{rev("h1", 1, v1)},
		},
		"no revisions at all": {ds: at(v2)},
		"a rollback: the older revision of the template, before its controller renumbers it": {
			ds: at(v1), revisions: []*appsv1.ControllerRevision{rev("h1", 1, v1), rev("h2", 2, v2)}, want: "h1",
		},
		"two revisions of the same template: the newest": {
			ds: at(v1), revisions: []*appsv1.ControllerRevision{rev("h1b", 3, v1), rev("h1", 1, v1), rev("h2", 2, v2)}, want: "h1b",
		},
		"a revision that cannot be read is skipped": {
			ds: at(v1), revisions: []*appsv1.ControllerRevision{malformed, rev("h1", 1, v1)}, want: "h1",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := ""
			if cur := CurrentDaemonSetRevision(tc.ds, tc.revisions); cur != nil {
				got = cur.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]
			}
			if got != tc.want {
				t.Errorf("CurrentDaemonSetRevision = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRefuseDaemonSetDelete(t *testing.T) {
	v1 := builder.PodTemplate("agent", "agent:v1").Obj()
	v2 := builder.PodTemplate("agent", "agent:v2").Obj()
	v2env := builder.PodTemplate("agent", "agent:v2").Env("MODE", "fast").Obj()
	templates := map[string]*corev1.PodTemplateSpec{"h1": v1, "h2": v2, "h2env": v2env}
	templateOf := func(h string) *corev1.PodTemplateSpec { return templates[h] }

	ds := func(tpl *corev1.PodTemplateSpec, edit ...func(*builder.DaemonSetWrapper)) *appsv1.DaemonSet {
		w := builder.DaemonSet("agent", "apps").TemplateGeneration("2")
		w.Spec.Template = *tpl.DeepCopy()
		for _, e := range edit {
			e(w)
		}
		return w.Obj()
	}
	pod := func(hash, generation string, edit ...func(*builder.PodWrapper)) *corev1.Pod {
		w := builder.Pod("agent-x", "apps").ReadinessGate(ConditionInPlaceUpdateReady).
			Label(appsv1.DefaultDaemonSetUniqueLabelKey, hash).Label(LabelPodTemplateGeneration, generation).Phase(corev1.PodRunning)
		for _, e := range edit {
			e(w)
		}
		return w.Obj()
	}
	midUpdate := func(w *builder.PodWrapper) {
		w.ConditionAt(ConditionInPlaceUpdateReady, corev1.ConditionFalse, ReasonInPlaceUpdate, time.Now())
	}
	cases := map[string]struct {
		ds           *appsv1.DaemonSet
		pod          *corev1.Pod
		hash         string
		recent       bool
		wantRefuse   bool
		wantFallback string
	}{
		"an old pod, an image change: refused, updated in place": {
			ds: ds(v2), pod: pod("h1", "1"), hash: "h2", wantRefuse: true,
		},
		"an old pod, an env change: recreated": {
			ds: ds(v2env), pod: pod("h1", "1"), hash: "h2env", wantFallback: FallbackNotInPlaceable,
		},
		"an old pod without the gate: recreated": {
			ds: ds(v2), pod: pod("h1", "1", func(w *builder.PodWrapper) { w.Spec.ReadinessGates = nil }), hash: "h2",
			wantFallback: FallbackNoReadinessGate,
		},
		"an old pod whose revision is gone: recreated": {
			ds: ds(v2), pod: pod("h0", "0"), hash: "h2", wantFallback: FallbackNoRevision,
		},
		"no current revision recorded yet: passes, nothing to update to": {
			ds: ds(v2), pod: pod("h1", "1"), hash: "",
		},
		"a surge (maxSurge 1): the controller's rollout": {
			ds:  ds(v2, func(w *builder.DaemonSetWrapper) { w.RollingUpdate(intOrPercent("1"), intOrPercent("0")) }),
			pod: pod("h1", "1"), hash: "h2",
		},
		"OnDelete: the user's delete": {
			ds:  ds(v2, func(w *builder.DaemonSetWrapper) { w.OnDelete() }),
			pod: pod("h1", "1"), hash: "h2",
		},
		"a failed pod: replaced whatever its revision": {
			ds: ds(v2), pod: pod("h1", "1", func(w *builder.PodWrapper) { w.Phase(corev1.PodFailed) }), hash: "h2",
		},
		"a terminating pod": {
			ds: ds(v2), pod: pod("h1", "1", func(w *builder.PodWrapper) { w.Terminating() }), hash: "h2",
		},
		"an updated pod, just updated in place: refused, a delete decided on a stale view": {
			ds: ds(v2), pod: pod("h2", "2"), hash: "h2", recent: true, wantRefuse: true,
		},
		"an updated pod, updated long ago: passes, its node no longer fits": {
			ds: ds(v2), pod: pod("h2", "2"), hash: "h2",
		},
		"updated by its template generation alone, just updated: refused": {
			ds: ds(v2), pod: pod("h1", "2"), hash: "h2", recent: true, wantRefuse: true,
		},
		"updated by its template generation alone, long ago: passes": {
			ds: ds(v2), pod: pod("h1", "2"), hash: "h2",
		},
		"an updated pod mid-update (relabelled, the gate still closed): refused": {
			ds: ds(v2), pod: pod("h2", "2", midUpdate), hash: "h2", wantRefuse: true,
		},
		"an old pod mid-update: refused": {
			ds: ds(v2), pod: pod("h1", "1", midUpdate), hash: "h2", wantRefuse: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			refuse, fallback := RefuseDaemonSetDelete(tc.ds, tc.pod, tc.hash, templateOf, "v1.37.2", tc.recent)
			if refuse != tc.wantRefuse || fallback != tc.wantFallback {
				t.Errorf("RefuseDaemonSetDelete = %v, %q; want %v, %q", refuse, fallback, tc.wantRefuse, tc.wantFallback)
			}
		})
	}
}
