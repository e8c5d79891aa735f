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
)

const statefulSetController = "system:serviceaccount:kube-system:statefulset-controller"

// TestPodDeleteValidator feeds the pod-delete webhook the StatefulSet
// controller's deletes, and others, and checks which are refused.
func TestPodDeleteValidator(t *testing.T) {
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
				Clock:         clocktesting.NewFakePassiveClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)),
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
