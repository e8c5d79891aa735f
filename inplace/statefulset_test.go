package inplace

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/internal/builder"
)

func TestOrdinal(t *testing.T) {
	sts := builder.StatefulSet("web", "apps").Obj()
	started := builder.StatefulSet("web", "apps").Obj()
	started.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 5}
	cases := map[string]struct {
		sts    *appsv1.StatefulSet
		pod    string
		want   int
		wantOK bool
	}{
		"the first pod":                         {sts: sts, pod: "web-0", want: 0, wantOK: true},
		"a pod of a set whose name is a prefix": {sts: sts, pod: "web-api-0"},
		"a leading zero is not an ordinal":      {sts: sts, pod: "web-01"},
		"start ordinal 5, pod 7 is index 2":     {sts: started, pod: "web-7", want: 2, wantOK: true},
		"start ordinal 5, pod 4 is out":         {sts: started, pod: "web-4", want: -1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, ok := Ordinal(tc.sts, builder.Pod(tc.pod, "apps").Obj())
			if ok != tc.wantOK || (ok && got != tc.want) {
				t.Errorf("Ordinal(%s) = %d, %v; want %d, %v", tc.pod, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestScaledDown(t *testing.T) {
	sts := builder.StatefulSet("web", "apps").Replicas(3).Obj()
	started := builder.StatefulSet("web", "apps").Replicas(3).Obj()
	started.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 5}
	for _, tc := range []struct {
		sts  *appsv1.StatefulSet
		pod  string
		want bool
	}{
		{sts, "web-2", false},
		{sts, "web-3", true},
		{sts, "web-api-7", false},
		{started, "web-7", false},
		{started, "web-8", true},
	} {
		if got := ScaledDown(tc.sts, builder.Pod(tc.pod, "apps").Obj()); got != tc.want {
			t.Errorf("ScaledDown(%s of 3, start %v) = %t, want %t", tc.pod, tc.sts.Spec.Ordinals, got, tc.want)
		}
	}
}

func TestRefuseStatefulSetDelete(t *testing.T) {
	v1 := builder.PodTemplate("web", "app:v1").Obj()
	v2 := builder.PodTemplate("web", "app:v2").Obj()
	v2env := builder.PodTemplate("web", "app:v2").Env("MODE", "fast").Obj()
	revisions := map[string]*corev1.PodTemplateSpec{"web-1": v1, "web-2": v2, "web-2env": v2env}
	templateOf := func(r string) *corev1.PodTemplateSpec { return revisions[r] }

	set := func(template *corev1.PodTemplateSpec, edit ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
		sts := builder.StatefulSet("web", "apps").Replicas(3).Obj()
		sts.Spec.Template = *template.DeepCopy()
		for _, e := range edit {
			e(sts)
		}
		return sts
	}
	pod := func(name, revision string, edit ...func(*corev1.Pod)) *corev1.Pod {
		p := builder.Pod(name, "apps").Label(appsv1.StatefulSetRevisionLabel, revision).ReadinessGate(ConditionInPlaceUpdateReady).Obj()
		for _, e := range edit {
			e(p)
		}
		return p
	}
	patchedTo := func(revision string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			s := &UpdateState{Revision: revision, PatchedAt: &patched} // the zero time encodes as null: not patched
			metav1.SetMetaDataAnnotation(&p.ObjectMeta, AnnotationUpdateState, s.Encode())
		}
	}
	cases := map[string]struct {
		sts  *appsv1.StatefulSet
		pod  *corev1.Pod
		want bool
	}{
		"an image change: refused, the manager updates it":          {sts: set(v2), pod: pod("web-2", "web-1"), want: true},
		"an env change: recreated":                                  {sts: set(v2env), pod: pod("web-2", "web-1")},
		"no readiness gate: recreated":                              {sts: set(v2), pod: pod("web-2", "web-1", func(p *corev1.Pod) { p.Spec.ReadinessGates = nil })},
		"its revision is gone from the history: recreated":          {sts: set(v2), pod: pod("web-2", "web-0")},
		"already at the template: a delete decided on a stale view": {sts: set(v2), pod: pod("web-2", "web-2"), want: true},
		"already at the template, without the gate":                 {sts: set(v2), pod: pod("web-2", "web-2", func(p *corev1.Pod) { p.Spec.ReadinessGates = nil }), want: true},
		"scale-down: the ordinal is at replicas":                    {sts: set(v2), pod: pod("web-3", "web-1")},
		"below the partition":                                       {sts: set(v2, func(s *appsv1.StatefulSet) { SetPartition(s, 2) }), pod: pod("web-1", "web-1")},
		"at the partition":                                          {sts: set(v2, func(s *appsv1.StatefulSet) { SetPartition(s, 2) }), pod: pod("web-2", "web-1"), want: true},
		"OnDelete: the user's own deletes": {sts: set(v2, func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
		}), pod: pod("web-2", "web-1")},
		"a failed pod is replaced":                      {sts: set(v2), pod: pod("web-2", "web-1", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed })},
		"a terminating pod":                             {sts: set(v2), pod: pod("web-2", "web-1", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} })},
		"patched to the template, finishing its update": {sts: set(v2), pod: pod("web-2", "web-1", patchedTo("web-2")), want: true},
		"patched to an older target, the new one in place from it too": {
			sts: set(builder.PodTemplate("web", "app:v3").Obj()), pod: pod("web-2", "web-1", patchedTo("web-2")), want: true,
		},
		"patched to an older target, the new one not in place from it: recreated": {
			sts: set(builder.PodTemplate("web", "app:v3").Env("MODE", "fast").Obj()), pod: pod("web-2", "web-1", patchedTo("web-2")),
		},
		"a malformed update state: recreated": {sts: set(v2), pod: pod("web-2", "web-1", func(p *corev1.Pod) {
			metav1.SetMetaDataAnnotation(&p.ObjectMeta, AnnotationUpdateState, "{")
		})},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got, _ := RefuseStatefulSetDelete(tc.sts, tc.pod, templateOf, "v1.37.2"); got != tc.want {
				t.Errorf("RefuseStatefulSetDelete = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEligibilityOfSidecars(t *testing.T) {
	withProxy := func(image string) *corev1.PodTemplateSpec {
		t := builder.PodTemplate("web", "app:v1").Obj()
		t.Spec.InitContainers = []corev1.Container{{Name: "proxy", Image: image, RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}}
		return t
	}
	pod := builder.Pod("web-0", "apps").ReadinessGate(ConditionInPlaceUpdateReady).Obj()
	for version, want := range map[string]string{"v1.37.2": "", "v1.31.4": FallbackSidecarKubelet} {
		if _, got := Eligibility(pod, withProxy("envoy:1"), withProxy("envoy:2"), version); got != want {
			t.Errorf("a sidecar's image on kubelet %s: fallback %q, want %q", version, got, want)
		}
	}
}
