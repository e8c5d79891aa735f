package webhook

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testclock"
)

const statefulSetController = "system:serviceaccount:kube-system:statefulset-controller"

// TestPodDeleteValidator feeds the pod-delete webhook the StatefulSet
// controller's deletes, and others, and checks which are refused.
func TestPodDeleteValidator(t *testing.T) { testclock.Run(t, testPodDeleteValidator) }

func testPodDeleteValidator(t *testing.T, now time.Time) {
	v1 := builder.PodTemplate("web", "nginx:1.27").Obj()
	revision := func(name string, tpl *corev1.PodTemplateSpec) *appsv1.ControllerRevision {
		raw, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": tpl}})
		return &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"}, Data: runtime.RawExtension{Raw: raw}}
	}
	sts := func(policy string) *appsv1.StatefulSet {
		s := builder.StatefulSet("web", "apps").Replicas(3).Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") }).Obj()
		s.UID = "sts-uid"
		if policy != "" {
			metav1.SetMetaDataAnnotation(&s.ObjectMeta, inplace.AnnotationUpdatePolicy, policy)
		}
		return s
	}
	pod := builder.Pod("web-2", "apps").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").
		Label(appsv1.StatefulSetRevisionLabel, "web-1").Label(inplace.LabelManaged, "true").
		ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	cases := map[string]struct {
		user       string
		sts        *appsv1.StatefulSet
		pod        *corev1.Pod
		notRunning bool
		wantRefuse bool
	}{
		"the StatefulSet controller's delete of a pod updated in place": {
			user: statefulSetController, sts: sts(""), pod: pod, wantRefuse: true,
		},
		"a user's delete": {user: "alice", sts: sts(""), pod: pod},
		"the workload opted out with Recreate": {
			user: statefulSetController, sts: sts("Recreate"), pod: pod,
		},
		"no manager replica runs the rollout": {
			user: statefulSetController, sts: sts(""), pod: pod, notRunning: true,
		},
		"a pod in an unlabelled namespace": {
			user: statefulSetController, sts: func() *appsv1.StatefulSet { s := sts(""); s.Namespace = "plain"; return s }(),
			pod: func() *corev1.Pod { p := pod.DeepCopy(); p.Namespace = "plain"; return p }(),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(
				tc.sts, revision("web-1", v1), namespace("apps", enabled), namespace("plain", nil),
			).Build()
			h := Handlers(Config{
				Scope:  inplace.NewScope(inplace.PolicyNamespace, "inplace-system"),
				Reader: c, LiveReader: c, ManagerUsername: managerUser, Scheme: testScheme,
				Clock:         clocktesting.NewFakePassiveClock(now),
				EngineRunning: func() bool { return !tc.notRunning },
			})[PathValidatePod]
			req := review(t, admissionv1.Delete, tc.pod, tc.pod)
			req.Object = runtime.RawExtension{}
			req.UserInfo.Username = tc.user
			resp := h.Handle(t.Context(), req)
			if refused := !resp.Allowed; refused != tc.wantRefuse {
				t.Fatalf("refused = %v (%v), want %v", refused, resp.Result, tc.wantRefuse)
			}
			if tc.wantRefuse && resp.Result.Code != http.StatusForbidden {
				t.Errorf("refused with %d, want 403", resp.Result.Code)
			}
		})
	}
}

// The StatefulSet controller deletes on a view at least as new as the one
// that made it decide: a partition just lowered that the cache has not seen
// yet must not let a pod of the rollout be recreated.
func TestPodDeleteValidatorDecidesOnALiveReadBeforeLettingGo(t *testing.T) {
	testclock.Run(t, testPodDeleteValidatorDecidesOnALiveReadBeforeLettingGo)
}

func testPodDeleteValidatorDecidesOnALiveReadBeforeLettingGo(t *testing.T, now time.Time) {
	v1 := builder.PodTemplate("web", "nginx:1.27").Obj()
	raw, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": v1}})
	rev := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "apps"}, Data: runtime.RawExtension{Raw: raw}}
	withPartition := func(p int32, resourceVersion string) *appsv1.StatefulSet {
		s := builder.StatefulSet("web", "apps").Replicas(3).Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") }).Obj()
		s.UID = "sts-uid"
		s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
			Type:          appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &p},
		}
		s.ResourceVersion = resourceVersion
		return s
	}
	// web-1 is below the canary's partition (2) in the cache, in the
	// rollout once the partition is 0.
	pod := builder.Pod("web-1", "apps").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").
		Label(appsv1.StatefulSetRevisionLabel, "web-1").Label(inplace.LabelManaged, "true").
		ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	for name, tc := range map[string]struct {
		live       *appsv1.StatefulSet
		wantRefuse bool
	}{
		"the partition lowered, seen live only": {live: withPartition(0, "20"), wantRefuse: true},
		"the cache is current":                  {live: withPartition(2, "10"), wantRefuse: false},
	} {
		t.Run(name, func(t *testing.T) {
			cached := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(withPartition(2, "10"), rev.DeepCopy(), namespace("apps", enabled)).Build()
			live := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(tc.live, rev.DeepCopy(), namespace("apps", enabled)).Build()
			h := Handlers(Config{
				Scope:  inplace.NewScope(inplace.PolicyNamespace, "inplace-system"),
				Reader: cached, LiveReader: live, ManagerUsername: managerUser, Scheme: testScheme,
				Clock:         clocktesting.NewFakePassiveClock(now),
				EngineRunning: func() bool { return true },
			})[PathValidatePod]
			req := review(t, admissionv1.Delete, pod, pod)
			req.Object = runtime.RawExtension{}
			req.UserInfo.Username = statefulSetController
			resp := h.Handle(t.Context(), req)
			if refused := !resp.Allowed; refused != tc.wantRefuse {
				t.Fatalf("refused = %v (%v), want %v", refused, resp.Result, tc.wantRefuse)
			}
		})
	}
}
