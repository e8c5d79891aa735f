package inplace

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/internal/builder"
)

// TestDeploymentMaxUnavailable checks the budget against the Deployment
// controller's (pkg/controller/deployment/util: MaxUnavailable over
// ResolveFenceposts): maxUnavailable rounded down, maxSurge rounded up, 1
// when both come to 0, never above replicas, 0 for Recreate or no
// replicas; unset fields are the API server's defaults, 25% each.
func TestDeploymentMaxUnavailable(t *testing.T) {
	d := func(replicas int32, maxSurge, maxUnavailable string) *appsv1.Deployment {
		var s, u *intstr.IntOrString
		if maxSurge != "" {
			s = intOrPercent(maxSurge)
		}
		if maxUnavailable != "" {
			u = intOrPercent(maxUnavailable)
		}
		return builder.Deployment("web", "apps").Replicas(replicas).RollingUpdate(s, u).Obj()
	}
	defaults := func(replicas int32) *appsv1.Deployment {
		return builder.Deployment("web", "apps").Replicas(replicas).Obj()
	}
	cases := map[string]struct {
		d    *appsv1.Deployment
		want int
	}{
		"the defaults at 4 replicas: 25% is 1":                         {d: defaults(4), want: 1},
		"the defaults at 10 replicas: 25% is 2.5, rounded down":        {d: defaults(10), want: 2},
		"the defaults at 3 replicas: 0, the surge of 1 makes room":     {d: defaults(3), want: 0},
		"the defaults at 2 replicas: 0":                                {d: defaults(2), want: 0},
		"the defaults at 1 replica":                                    {d: defaults(1), want: 0},
		"replicas unset: 1, and the defaults give 0":                   {d: func() *appsv1.Deployment { x := defaults(1); x.Spec.Replicas = nil; return x }(), want: 0},
		"a rolling update with both fields unset: the defaults":        {d: d(8, "", ""), want: 2},
		"maxSurge 0, maxUnavailable unset (25%) at 2: both 0, so 1":    {d: d(2, "0", ""), want: 1},
		"maxSurge 0%, maxUnavailable 0% (refused by validation): 1":    {d: d(5, "0%", "0%"), want: 1},
		"maxUnavailable 1 at 2 replicas":                               {d: d(2, "", "1"), want: 1},
		"maxUnavailable 50% of 3: 1.5, rounded down":                   {d: d(3, "1", "50%"), want: 1},
		"maxUnavailable 99% of 10: 9.9, rounded down, not up":          {d: d(10, "0", "99%"), want: 9},
		"maxUnavailable 100% of 3":                                     {d: d(3, "0", "100%"), want: 3},
		"maxUnavailable 5 of 3 replicas: never above replicas":         {d: d(3, "0", "5"), want: 3},
		"maxSurge 1% of 10 rounds up to 1: maxUnavailable 1% stays 0":  {d: d(10, "1%", "1%"), want: 0},
		"maxSurge 1% of 10, maxUnavailable 10%: 1":                     {d: d(10, "1%", "10%"), want: 1},
		"a surge of 0 and 24% of 4 (0.96, rounded down): both 0, so 1": {d: d(4, "0", "24%"), want: 1},
		"no replicas: 0":                 {d: d(0, "0", "1"), want: 0},
		"Recreate: 0":                    {d: builder.Deployment("web", "apps").Replicas(4).Recreate().Obj(), want: 0},
		"a value that does not parse: 0": {d: d(4, "1", "one"), want: 0},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := DeploymentMaxUnavailable(tc.d); got != tc.want {
				t.Errorf("DeploymentMaxUnavailable = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestDeploymentHandedBack(t *testing.T) {
	cases := map[string]struct {
		d    *appsv1.Deployment
		want string
	}{
		"the defaults at 4 replicas: in place": {d: builder.Deployment("web", "apps").Replicas(4).Obj()},
		"maxUnavailable 1 at 2 replicas: in place": {
			d: builder.Deployment("web", "apps").Replicas(2).RollingUpdate(nil, intOrPercent("1")).Obj(),
		},
		"Recreate": {
			d: builder.Deployment("web", "apps").Replicas(4).Recreate().Obj(), want: "its strategy is Recreate",
		},
		"scaled to zero: nothing to roll out, nothing to say": {
			d: builder.Deployment("web", "apps").Replicas(0).Obj(),
		},
		"the defaults at 2 replicas: maxUnavailable comes to 0": {
			d:    builder.Deployment("web", "apps").Replicas(2).Obj(),
			want: "its maxUnavailable comes to 0 at 2 replicas: each pod it replaces gets a new one beside it first (set maxUnavailable: 1 for in place)",
		},
		"maxUnavailable 0 with a surge": {
			d:    builder.Deployment("web", "apps").Replicas(5).RollingUpdate(intOrPercent("1"), intOrPercent("0")).Obj(),
			want: "its maxUnavailable comes to 0 at 5 replicas: each pod it replaces gets a new one beside it first (set maxUnavailable: 1 for in place)",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := DeploymentHandedBack(tc.d); got != tc.want {
				t.Errorf("DeploymentHandedBack:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestEqualIgnoreHash(t *testing.T) {
	hashed := func(tpl *corev1.PodTemplateSpec, hash string) *corev1.PodTemplateSpec {
		tpl = tpl.DeepCopy()
		if tpl.Labels == nil {
			tpl.Labels = map[string]string{}
		}
		tpl.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
		return tpl
	}
	v1 := builder.PodTemplate("web", "app:v1").Obj()
	bare := &corev1.PodTemplateSpec{Spec: v1.Spec}
	cases := map[string]struct {
		a, b *corev1.PodTemplateSpec
		want bool
	}{
		"the Deployment's template and its ReplicaSet's": {a: v1, b: hashed(v1, "h1"), want: true},
		"two hashes of one template":                     {a: hashed(v1, "h1"), b: hashed(v1, "h2"), want: true},
		"no labels at all, and only the hash":            {a: bare, b: hashed(bare, "h1"), want: true},
		"another image":                                  {a: v1, b: hashed(builder.PodTemplate("web", "app:v2").Obj(), "h1")},
		"another label":                                  {a: v1, b: builder.PodTemplate("web", "app:v1").Label("tier", "front").Obj()},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := tc.a.DeepCopy()
			if got := EqualIgnoreHash(tc.a, tc.b); got != tc.want {
				t.Errorf("EqualIgnoreHash = %v, want %v", got, tc.want)
			}
			if diff := cmp.Diff(before, tc.a); diff != "" {
				t.Errorf("EqualIgnoreHash changed its argument (-want,+got):\n%s", diff)
			}
		})
	}
}

// rollout is a Deployment of replicas rolling out from app:v1 (ReplicaSet
// h1) to app:v2 (ReplicaSet h2), and what its rules read.
type rollout struct {
	d         *appsv1.Deployment
	old, new  *builder.ReplicaSetWrapper
	base      time.Time
	skipNewRS bool // the Deployment controller has not made it yet
}

func newRollout(replicas int32) *rollout {
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	v1 := builder.Deployment("web", "apps").UID("d-uid").Replicas(replicas).Template(func(t *builder.Template) { t.Image("app", "app:v1") }).Obj()
	d := v1.DeepCopy()
	d.Spec.Template.Spec.Containers[0].Image = "app:v2"
	return &rollout{
		d:    d,
		old:  builder.ReplicaSet(v1, "h1").Created(base),
		new:  builder.ReplicaSet(d, "h2").Replicas(0, 0).Created(base.Add(time.Hour)),
		base: base,
	}
}

func (r *rollout) view() DeploymentView {
	rss := []*appsv1.ReplicaSet{r.old.Obj()}
	if !r.skipNewRS {
		rss = append(rss, r.new.Obj())
	}
	return NewDeploymentView(r.d, rss)
}

// deploymentPod is a gated, running pod of the ReplicaSet.
func deploymentPod(name string, rs *appsv1.ReplicaSet, edit ...func(*builder.PodWrapper)) *corev1.Pod {
	w := builder.Pod(name, "apps").OwnedBy("apps/v1", "ReplicaSet", rs.Name, rs.UID).
		Label(appsv1.DefaultDeploymentUniqueLabelKey, rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]).
		Image("app", rs.Spec.Template.Spec.Containers[0].Image).
		ReadinessGate(ConditionInPlaceUpdateReady).Phase(corev1.PodRunning)
	for _, e := range edit {
		e(w)
	}
	return w.Obj()
}

func TestNewDeploymentView(t *testing.T) {
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	d := builder.Deployment("web", "apps").UID("d-uid").Replicas(3).Template(func(t *builder.Template) { t.Image("app", "app:v2") }).Obj()
	v1 := d.DeepCopy()
	v1.Spec.Template.Spec.Containers[0].Image = "app:v1"
	old := builder.ReplicaSet(v1, "h1").Created(base).Obj()
	cur := builder.ReplicaSet(d, "h2").Created(base.Add(time.Hour)).Obj()
	dup := builder.ReplicaSet(d, "h2b").Created(base.Add(2 * time.Hour)).Obj()
	sameTimeA := builder.ReplicaSet(d, "h2a").Created(base.Add(time.Hour)).Obj()
	foreign := builder.ReplicaSet(d, "hx").OwnedBy("apps/v1", "Deployment", "web", "another-uid").Created(base.Add(-time.Hour)).Obj()
	orphan := builder.ReplicaSet(d, "hy").Created(base.Add(-time.Hour)).Obj()
	orphan.OwnerReferences = nil

	names := func(rss []*appsv1.ReplicaSet) []string {
		var out []string
		for _, rs := range rss {
			out = append(out, rs.Name)
		}
		return out
	}
	cases := map[string]struct {
		rss       []*appsv1.ReplicaSet
		wantRSs   []string
		wantNewRS string
	}{
		"the new ReplicaSet is the one of the template, sorted oldest first": {
			rss: []*appsv1.ReplicaSet{cur, old}, wantRSs: []string{"web-h1", "web-h2"}, wantNewRS: "web-h2",
		},
		"two of the template (kubernetes#40415): the oldest is the new one": {
			rss: []*appsv1.ReplicaSet{dup, old, cur}, wantRSs: []string{"web-h1", "web-h2", "web-h2b"}, wantNewRS: "web-h2",
		},
		"two of the template created in the same second: by name": {
			rss: []*appsv1.ReplicaSet{cur, sameTimeA, old}, wantRSs: []string{"web-h1", "web-h2", "web-h2a"}, wantNewRS: "web-h2",
		},
		"none of the template yet": {
			rss: []*appsv1.ReplicaSet{old}, wantRSs: []string{"web-h1"},
		},
		"another Deployment's ReplicaSet and an orphan are ignored, older though they are": {
			rss: []*appsv1.ReplicaSet{foreign, orphan, old, cur}, wantRSs: []string{"web-h1", "web-h2"}, wantNewRS: "web-h2",
		},
		"no ReplicaSets": {},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			v := NewDeploymentView(d, tc.rss)
			if diff := cmp.Diff(tc.wantRSs, names(v.ReplicaSets)); diff != "" {
				t.Errorf("ReplicaSets (-want,+got):\n%s", diff)
			}
			got := ""
			if v.New != nil {
				got = v.New.Name
			}
			if got != tc.wantNewRS {
				t.Errorf("New = %q, want %q", got, tc.wantNewRS)
			}
		})
	}
}

func TestDeploymentViewLookups(t *testing.T) {
	r := newRollout(4)
	r.old.Replicas(3, 3)
	r.new.Replicas(1, 2)
	v := r.view()
	if got := v.ReplicaSet("h1"); got == nil || got.Name != "web-h1" {
		t.Errorf("ReplicaSet(h1) = %v, want web-h1", got)
	}
	if got := v.ReplicaSet(""); got != nil {
		t.Errorf("ReplicaSet(\"\") = %s, want none", got.Name)
	}
	if got := v.ReplicaSet("h9"); got != nil {
		t.Errorf("ReplicaSet(h9) = %s, want none", got.Name)
	}
	if got := v.TemplateOf("h1"); got == nil || got.Spec.Containers[0].Image != "app:v1" {
		t.Errorf("TemplateOf(h1) = %v, want app:v1's", got)
	}
	if got := v.TemplateOf("h9"); got != nil {
		t.Errorf("TemplateOf(h9) = %v, want nil", got)
	}
	if got := v.Active(); got != 5 {
		t.Errorf("Active = %d, want 5 (status.replicas 3 + 2, not spec 3 + 1)", got)
	}
	if got := v.Owner(deploymentPod("web-a", r.old.Obj())); got == nil || got.Name != "web-h1" {
		t.Errorf("Owner = %v, want web-h1", got)
	}
	stray := builder.Pod("web-z", "apps").OwnedBy("apps/v1", "ReplicaSet", "web-h1", "another-uid").Obj()
	if got := v.Owner(stray); got != nil {
		t.Errorf("Owner of a pod of a ReplicaSet of that name but another UID = %s, want none", got.Name)
	}
	if got := v.Owner(builder.Pod("web-z", "apps").Obj()); got != nil {
		t.Errorf("Owner of an orphan = %s, want none", got.Name)
	}
}

func TestDeploymentMovable(t *testing.T) {
	r := newRollout(4)
	r.old.Replicas(3, 4)
	r.new.Replicas(1, 0)
	cases := map[string]struct {
		r            *rollout
		pod          func(r *rollout) *corev1.Pod
		wantMovable  bool
		wantFallback string
	}{
		"a gated pod of the old ReplicaSet": {
			r: r, pod: func(r *rollout) *corev1.Pod { return deploymentPod("web-a", r.old.Obj()) }, wantMovable: true,
		},
		"a pod without the gate": {
			r: r, pod: func(r *rollout) *corev1.Pod {
				return deploymentPod("web-a", r.old.Obj(), func(w *builder.PodWrapper) { w.Spec.ReadinessGates = nil })
			},
			wantFallback: FallbackNoReadinessGate,
		},
		"a pod of the new ReplicaSet": {
			r: r, pod: func(r *rollout) *corev1.Pod { return deploymentPod("web-b", r.new.Obj()) },
		},
		"a failed pod": {
			r: r, pod: func(r *rollout) *corev1.Pod {
				return deploymentPod("web-a", r.old.Obj(), func(w *builder.PodWrapper) { w.Phase(corev1.PodFailed) })
			},
		},
		"an env change": {
			r: func() *rollout {
				r := newRollout(4)
				r.d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "fast"}}
				r.new = builder.ReplicaSet(r.d, "h2").Replicas(1, 0).Created(r.base.Add(time.Hour))
				return r
			}(),
			pod:          func(r *rollout) *corev1.Pod { return deploymentPod("web-a", r.old.Obj()) },
			wantFallback: FallbackNotInPlaceable,
		},
		"handed back (maxUnavailable 0)": {
			r: func() *rollout {
				r := newRollout(4)
				r.d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: intOrPercent("0")}}
				return r
			}(),
			pod: func(r *rollout) *corev1.Pod { return deploymentPod("web-a", r.old.Obj()) },
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			movable, fallback := tc.r.view().Movable(tc.pod(tc.r), "v1.37.2")
			if movable != tc.wantMovable || fallback != tc.wantFallback {
				t.Errorf("Movable = %v, %q; want %v, %q", movable, fallback, tc.wantMovable, tc.wantFallback)
			}
		})
	}
}

func TestRefuseDeploymentDelete(t *testing.T) {
	midUpdate := func(w *builder.PodWrapper) {
		w.ConditionAt(ConditionInPlaceUpdateReady, corev1.ConditionFalse, ReasonInPlaceUpdate, time.Now())
	}
	// at returns a rollout of 4 replicas: the old ReplicaSet at spec
	// oldSpec with oldLive pods, the new one at newSpec with newLive.
	at := func(oldSpec, oldLive, newSpec, newLive int32, edit ...func(*rollout)) *rollout {
		r := newRollout(4)
		r.old.Replicas(oldSpec, oldLive)
		r.new.Replicas(newSpec, newLive)
		for _, e := range edit {
			e(r)
		}
		return r
	}
	oldPod := func(edit ...func(*builder.PodWrapper)) func(r *rollout) *corev1.Pod {
		return func(r *rollout) *corev1.Pod { return deploymentPod("web-a", r.old.Obj(), edit...) }
	}
	newPod := func(edit ...func(*builder.PodWrapper)) func(r *rollout) *corev1.Pod {
		return func(r *rollout) *corev1.Pod { return deploymentPod("web-b", r.new.Obj(), edit...) }
	}
	cases := map[string]struct {
		r            *rollout
		pod          func(r *rollout) *corev1.Pod
		recent       bool
		wantRefuse   bool
		wantFallback string
	}{
		"the rollout takes an old pod down (4 live of 4): refused, moved in place": {
			r: at(3, 4, 1, 0), pod: oldPod(), wantRefuse: true,
		},
		"fewer live than replicas (a pod lost meanwhile): still the rollout's": {
			r: at(2, 3, 2, 0), pod: oldPod(), wantRefuse: true,
		},
		"a scale-down: 5 live of 4, passes": {
			r: at(3, 4, 1, 1), pod: oldPod(),
		},
		"a scale-down of the Deployment during its rollout: passes": {
			r: at(1, 3, 1, 1, func(r *rollout) { r.d.Spec.Replicas = ptr.To(int32(2)) }), pod: oldPod(),
		},
		"an old pod that cannot go in place (no gate): recreated": {
			r: at(3, 4, 1, 0), pod: oldPod(func(w *builder.PodWrapper) { w.Spec.ReadinessGates = nil }),
			wantFallback: FallbackNoReadinessGate,
		},
		"an old pod of an env change: recreated": {
			r: at(3, 4, 1, 0, func(r *rollout) {
				r.d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "fast"}}
				r.new = builder.ReplicaSet(r.d, "h2").Replicas(1, 0).Created(r.base.Add(time.Hour))
			}),
			pod: oldPod(), wantFallback: FallbackNotInPlaceable,
		},
		"an old pod whose hash names no ReplicaSet: recreated": {
			r: at(3, 4, 1, 0), pod: oldPod(func(w *builder.PodWrapper) { w.Label(appsv1.DefaultDeploymentUniqueLabelKey, "h0") }),
			wantFallback: FallbackNoRevision,
		},
		"an old pod mid-update: refused, the engine is moving it": {
			r: at(3, 4, 1, 0), pod: oldPod(midUpdate), wantRefuse: true,
		},
		"an old pod mid-update in a scale-down: passes": {
			r: at(2, 4, 1, 1), pod: oldPod(midUpdate),
		},
		"a failed old pod: replaced": {
			r: at(3, 4, 1, 0), pod: oldPod(func(w *builder.PodWrapper) { w.Phase(corev1.PodFailed) }),
		},
		"a terminating old pod": {
			r: at(3, 4, 1, 0), pod: oldPod(func(w *builder.PodWrapper) { w.Terminating() }),
		},
		"a pod of the new ReplicaSet just moved: refused, decided on a view from before the move": {
			r: at(3, 3, 1, 1), pod: newPod(), recent: true, wantRefuse: true,
		},
		"a pod of the new ReplicaSet mid-update: refused": {
			r: at(3, 3, 1, 1), pod: newPod(midUpdate), wantRefuse: true,
		},
		"a pod of the new ReplicaSet, neither recent nor updating: passes": {
			r: at(3, 3, 1, 1), pod: newPod(),
		},
		"the new ReplicaSet above its replicas, a recent pod: passes, a scale-down": {
			r: at(3, 3, 1, 2), pod: newPod(), recent: true,
		},
		"the new ReplicaSet above its replicas, the Deployment not (a pod moved ahead of its scale-up), mid-update: refused": {
			r: at(3, 3, 0, 1), pod: newPod(midUpdate), wantRefuse: true,
		},
		"the new ReplicaSet above its replicas, the Deployment not, a pod neither recent nor updating: passes": {
			r: at(3, 3, 0, 1), pod: newPod(),
		},
		"no new ReplicaSet yet: passes": {
			r: at(4, 4, 0, 0, func(r *rollout) { r.skipNewRS = true }), pod: oldPod(),
		},
		"Recreate: passes": {
			r: at(0, 4, 0, 0, func(r *rollout) {
				r.d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
			}),
			pod: oldPod(),
		},
		"maxUnavailable 0 (the default 25% at 2 replicas): passes": {
			r: at(1, 2, 1, 0, func(r *rollout) { r.d.Spec.Replicas = ptr.To(int32(2)) }), pod: oldPod(),
		},
		"a pod of a ReplicaSet the Deployment does not control: passes": {
			r: at(3, 4, 1, 0), pod: func(r *rollout) *corev1.Pod {
				other := builder.ReplicaSet(r.d, "hz").OwnedBy("apps/v1", "Deployment", "web", "another-uid").Obj()
				return deploymentPod("web-z", other)
			},
		},
		"an orphan pod: passes": {
			r: at(3, 4, 1, 0), pod: oldPod(func(w *builder.PodWrapper) { w.OwnerReferences = nil }),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			refuse, fallback := RefuseDeploymentDelete(tc.r.view(), tc.pod(tc.r), "v1.37.2", tc.recent)
			if refuse != tc.wantRefuse || fallback != tc.wantFallback {
				t.Errorf("RefuseDeploymentDelete = %v, %q; want %v, %q", refuse, fallback, tc.wantRefuse, tc.wantFallback)
			}
		})
	}
}

func TestRefuseDeploymentCreate(t *testing.T) {
	at := func(oldSpec, oldLive, newSpec, newLive int32, edit ...func(*rollout)) *rollout {
		r := newRollout(4)
		r.old.Replicas(oldSpec, oldLive)
		r.new.Replicas(newSpec, newLive)
		for _, e := range edit {
			e(r)
		}
		return r
	}
	// created is the ReplicaSet controller's new pod of rs: no name yet,
	// no phase.
	created := func(rs func(r *rollout) *appsv1.ReplicaSet) func(r *rollout) *corev1.Pod {
		return func(r *rollout) *corev1.Pod {
			p := deploymentPod("", rs(r))
			p.Status = corev1.PodStatus{}
			return p
		}
	}
	ofNew := created(func(r *rollout) *appsv1.ReplicaSet { return r.new.Obj() })
	ofOld := created(func(r *rollout) *appsv1.ReplicaSet { return r.old.Obj() })
	cases := map[string]struct {
		r       *rollout
		pod     func(r *rollout) *corev1.Pod
		movable bool
		want    bool
	}{
		"a surge (4 live of 4), an old pod movable: refused": {
			r: at(4, 4, 1, 0), pod: ofNew, movable: true, want: true,
		},
		"above replicas already (a move under way), an old pod movable: refused": {
			r: at(3, 4, 2, 1), pod: ofNew, movable: true, want: true,
		},
		"a surge, no old pod movable: passes, the rollout is native": {
			r: at(4, 4, 1, 0), pod: ofNew,
		},
		"capacity (3 live of 4, a pod lost): passes": {
			r: at(3, 3, 1, 0), pod: ofNew, movable: true,
		},
		"a scale-up during the rollout (4 live of 6): passes": {
			r: at(4, 4, 2, 0, func(r *rollout) { r.d.Spec.Replicas = ptr.To(int32(6)) }), pod: ofNew, movable: true,
		},
		"a pod of an old ReplicaSet (a lost pod replaced, 3 live of 4): passes": {
			r: at(4, 3, 1, 0), pod: ofOld, movable: true,
		},
		"a pod of an old ReplicaSet while the Deployment has its replicas (an earlier target's, held): refused": {
			r: at(4, 4, 1, 0), pod: ofOld, movable: true, want: true,
		},
		"no new ReplicaSet in the view: passes": {
			r: at(4, 4, 1, 0, func(r *rollout) { r.skipNewRS = true }), pod: ofNew, movable: true,
		},
		"handed back (maxUnavailable 0): passes": {
			r: at(4, 4, 1, 0, func(r *rollout) {
				r.d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: intOrPercent("1"), MaxUnavailable: intOrPercent("0")}}
			}),
			pod: ofNew, movable: true,
		},
		"an orphan pod: passes": {
			r: at(4, 4, 1, 0), pod: func(r *rollout) *corev1.Pod {
				p := ofNew(r)
				p.OwnerReferences = nil
				return p
			},
			movable: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := RefuseDeploymentCreate(tc.r.view(), tc.pod(tc.r), tc.movable); got != tc.want {
				t.Errorf("RefuseDeploymentCreate = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDeploymentNoRoom: the new ReplicaSet's room is the replicas the
// Deployment controller scales it to once the old ones are at theirs, plus
// what earlier targets short of their pods hold, less the pods it has (its
// status or the pods seen, the higher).
func TestDeploymentNoRoom(t *testing.T) {
	surgeZero := func(r *rollout) {
		r.d.Spec.Replicas = ptr.To(int32(3))
		r.d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: intOrPercent("0"), MaxUnavailable: intOrPercent("1")}
	}
	cases := map[string]struct {
		edit                               func(*rollout)
		oldSpec, oldLive, newSpec, newLive int32
		seenNew                            int // pods of the new ReplicaSet seen, beyond its status
		want                               bool
	}{
		"maxSurge 0, the first step (old scaled down, new not up yet)": {edit: surgeZero, oldSpec: 2, oldLive: 3},
		"maxSurge 0, the new ReplicaSet's room taken (a pod created without the gate)": {
			edit: surgeZero, oldSpec: 1, oldLive: 2, newSpec: 2, newLive: 2, want: true,
		},
		"maxSurge 0, a move its status has not counted yet":                               {edit: surgeZero, oldSpec: 1, oldLive: 1, newSpec: 2, newLive: 1, seenNew: 2, want: true},
		"maxSurge 1 of 4: the new ReplicaSet (2 of 3) goes to 4 once the old one is at 1": {oldSpec: 1, oldLive: 2, newSpec: 3, newLive: 2},
		"maxSurge 1 of 4: at 4 of 4":                                                      {oldSpec: 1, oldLive: 2, newSpec: 4, newLive: 4, want: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := newRollout(4)
			if tc.edit != nil {
				tc.edit(r)
			}
			r.old.Replicas(tc.oldSpec, tc.oldLive)
			r.new.Replicas(tc.newSpec, tc.newLive)
			v := r.view()
			for i := range tc.seenNew {
				v.Pods = append(v.Pods, deploymentPod(string(rune('a'+i)), v.New))
			}
			if got := v.NoRoom(); got != tc.want {
				t.Errorf("NoRoom = %t, want %t (%s)", got, tc.want, v)
			}
		})
	}
	if (DeploymentView{Deployment: newRollout(3).d}).NoRoom() {
		t.Error("NoRoom without a new ReplicaSet = true, want false")
	}
}
