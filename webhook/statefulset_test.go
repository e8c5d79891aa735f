package webhook

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

var holdSince = metav1.NewTime(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))

// steady returns a managed StatefulSet of 3 replicas whose last rollout has
// finished, as the API server stores it.
func steady() *builder.StatefulSetWrapper {
	w := builder.StatefulSet("web", "apps").Replicas(3).Annotation(inplace.AnnotationUpdatePolicy, "InPlaceIfPossible")
	w.Generation = 4
	w.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
		Type:          appsv1.RollingUpdateStatefulSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](0)},
	}
	w.Status = appsv1.StatefulSetStatus{ObservedGeneration: 4, Replicas: 3, UpdatedReplicas: 3, CurrentRevision: "web-a", UpdateRevision: "web-a"}
	return w
}

func withImage(image string) func(*builder.Template) {
	return func(t *builder.Template) { t.Image("app", image) }
}

func withPartition(w *builder.StatefulSetWrapper, p int32) *builder.StatefulSetWrapper {
	w.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To(p)
	return w
}

func held(w *builder.StatefulSetWrapper, userPartition, partition int32) *builder.StatefulSetWrapper {
	h := &inplace.Hold{Since: holdSince, Reason: inplace.ReasonInPlaceRollout, Partition: ptr.To(userPartition)}
	return withPartition(w.Annotation(inplace.AnnotationHold, h.Encode()), partition)
}

func TestStatefulSetHold(t *testing.T) {
	now := holdSince.Add(time.Hour)
	cases := map[string]struct {
		obj, old      *appsv1.StatefulSet
		asManager     bool
		wantPartition int32
		// wantHold is the hold recorded after admission; nil means none.
		wantHold *inplace.Hold
		// wantMessage is a 422's message; "" means admitted.
		wantMessage string
	}{
		"an image change raises the partition to replicas and records the user's": {
			old: steady().Obj(), obj: steady().Template(withImage("nginx:1.28")).Obj(),
			wantPartition: 3,
			wantHold:      &inplace.Hold{Since: metav1.NewTime(now), Reason: "InPlaceRollout", Partition: ptr.To[int32](0)},
		},
		"the user's partition is recorded": {
			old: withPartition(steady(), 1).Obj(), obj: withPartition(steady(), 1).Template(withImage("nginx:1.28")).Obj(),
			wantPartition: 3,
			wantHold:      &inplace.Hold{Since: metav1.NewTime(now), Reason: "InPlaceRollout", Partition: ptr.To[int32](1)},
		},
		"a label change is in place too": {
			old: steady().Obj(), obj: steady().Template(func(t *builder.Template) { t.Label("tier", "web") }).Obj(),
			wantPartition: 3,
			wantHold:      &inplace.Hold{Since: metav1.NewTime(now), Reason: "InPlaceRollout", Partition: ptr.To[int32](0)},
		},
		"an env change is left to the native controller": {
			old: steady().Obj(), obj: steady().Template(func(t *builder.Template) { t.Env("A", "b") }).Obj(),
		},
		"an image and an env change together are left to the native controller": {
			old: steady().Obj(), obj: steady().Template(func(t *builder.Template) { t.Image("app", "nginx:2").Env("A", "b") }).Obj(),
		},
		"OnDelete keeps the rollout the user's": {
			old: func() *appsv1.StatefulSet {
				s := steady().Obj()
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
				return s
			}(),
			obj: func() *appsv1.StatefulSet {
				s := steady().Template(withImage("nginx:1.28")).Obj()
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
				return s
			}(),
		},
		"a native rollout under way is left to finish": {
			old: func() *appsv1.StatefulSet {
				s := steady().Obj()
				s.Status.UpdatedReplicas = 1
				return s
			}(),
			obj: steady().Template(withImage("nginx:1.28")).Obj(),
		},
		"a spec the native controller has not seen yet is left to it": {
			old: func() *appsv1.StatefulSet {
				s := steady().Obj()
				s.Status.ObservedGeneration = 3
				return s
			}(),
			obj: steady().Template(withImage("nginx:1.28")).Obj(),
		},
		"Recreate opts out": {
			old: steady().Annotation(inplace.AnnotationUpdatePolicy, "Recreate").Obj(),
			obj: steady().Annotation(inplace.AnnotationUpdatePolicy, "Recreate").Template(withImage("nginx:1.28")).Obj(),
		},
		"a re-apply of the user's manifest during the hold keeps it": {
			old:           held(steady().Template(withImage("nginx:1.28")), 0, 2).Obj(),
			obj:           steady().Template(withImage("nginx:1.28")).Obj(), // no hold, partition 0
			wantPartition: 2,
			wantHold:      &inplace.Hold{Since: holdSince, Reason: "InPlaceRollout", Partition: ptr.To[int32](0)},
		},
		"a partition the user writes during the hold is recorded, the held one kept": {
			old:           held(steady().Template(withImage("nginx:1.28")), 0, 2).Obj(),
			obj:           held(steady().Template(withImage("nginx:1.28")), 0, 1).Obj(),
			wantPartition: 2,
			wantHold:      &inplace.Hold{Since: holdSince, Reason: "InPlaceRollout", Partition: ptr.To[int32](1)},
		},
		"a new image during the hold retargets it": {
			old:           held(steady().Template(withImage("nginx:1.28")), 0, 1).Obj(),
			obj:           held(steady().Template(withImage("nginx:1.29")), 0, 1).Obj(),
			wantPartition: 3,
			wantHold:      &inplace.Hold{Since: holdSince, Reason: "InPlaceRollout", Partition: ptr.To[int32](0)},
		},
		"a change that is not in place during the hold goes back to the native controller": {
			old:           held(steady().Template(withImage("nginx:1.28")), 1, 2).Obj(),
			obj:           held(steady().Template(func(t *builder.Template) { t.Image("app", "nginx:1.28").Env("A", "b") }), 1, 2).Obj(),
			wantPartition: 1,
		},
		"the manager's own writes pass untouched": {
			old:       held(steady().Template(withImage("nginx:1.28")), 0, 2).Obj(),
			obj:       withPartition(steady().Template(withImage("nginx:1.28")), 0).Obj(),
			asManager: true,
		},
		"a user cannot write the hold": {
			old: steady().Obj(), obj: held(steady(), 0, 0).Obj(),
			wantMessage: `StatefulSet.apps "web" is invalid: metadata.annotations[inplace.dev/hold]: Forbidden: written by the inplace manager only`,
		},
		"a user cannot change the hold": {
			old: held(steady(), 0, 3).Obj(), obj: held(steady(), 2, 3).Obj(),
			wantMessage: `StatefulSet.apps "web" is invalid: metadata.annotations[inplace.dev/hold]: Forbidden: written by the inplace manager only`,
		},
		"a user cannot create a workload with the hold": {
			obj:         held(steady(), 0, 0).Obj(),
			wantMessage: `StatefulSet.apps "web" is invalid: metadata.annotations[inplace.dev/hold]: Forbidden: written by the inplace manager only`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := testHandlersAt(t, now)[PathMutateStatefulSet]
			op := admissionv1.Update
			if tc.old == nil {
				op = admissionv1.Create
			}
			req := review(t, op, tc.obj, tc.old)
			if tc.asManager {
				req = asManager(req)
			}
			resp := h.Handle(t.Context(), req)
			checkValidation(t, resp, tc.wantMessage)
			if tc.wantMessage != "" {
				return
			}
			if tc.asManager {
				if len(resp.Patches) != 0 {
					t.Errorf("the manager's write was patched: %v", resp.Patches)
				}
				return
			}
			got := &appsv1.StatefulSet{}
			if err := json.Unmarshal(applyPatch(t, req.Object.Raw, resp.Patches), got); err != nil {
				t.Fatal(err)
			}
			wantPartition := tc.wantPartition
			if tc.wantHold == nil && wantPartition == 0 {
				wantPartition = inplace.Partition(tc.obj)
			}
			if p := inplace.Partition(got); p != wantPartition {
				t.Errorf("partition = %d, want %d", p, wantPartition)
			}
			gotHold, err := inplace.HoldOf(got.Annotations)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantHold, gotHold); diff != "" {
				t.Errorf("hold (-want,+got):\n%s", diff)
			}
		})
	}
}
