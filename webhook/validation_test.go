package webhook

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

func TestValidator(t *testing.T) {
	sts := func(ns string) *builder.StatefulSetWrapper { return builder.StatefulSet("web", ns) }
	only := func() *builder.StatefulSetWrapper {
		return sts("apps").Annotation(inplace.AnnotationUpdatePolicy, "InPlaceOnly")
	}
	cases := map[string]struct {
		path      string
		op        admissionv1.Operation
		obj, old  runtime.Object
		asManager bool
		// wantMessage is the 422's message; "" means allowed.
		wantMessage  string
		wantWarnings []string
	}{
		"a valid StatefulSet": {
			path: PathValidateStatefulSet, op: admissionv1.Create, obj: sts("apps").Obj(),
		},
		"a malformed update policy is refused, naming the annotation and the values": {
			path: PathValidateStatefulSet, op: admissionv1.Create,
			obj:         sts("apps").Annotation(inplace.AnnotationUpdatePolicy, "InPlace").Obj(),
			wantMessage: `StatefulSet.apps "web" is invalid: metadata.annotations[inplace.dev/update-policy]: Unsupported value: "InPlace": supported values: "InPlaceIfPossible", "InPlaceOnly", "Recreate"`,
		},
		"a malformed grace period": {
			path: PathValidateDeployment, op: admissionv1.Create,
			obj:         builder.Deployment("web", "apps").Annotation(inplace.AnnotationGracePeriod, "10s").Obj(),
			wantMessage: `Deployment.apps "web" is invalid: metadata.annotations[inplace.dev/grace-period-seconds]: Invalid value: "10s": must be a whole number of seconds from 0 to 3600`,
		},
		"InPlaceOnly refuses an env change, naming the field": {
			path: PathValidateStatefulSet, op: admissionv1.Update,
			obj:         only().Template(func(t *builder.Template) { t.Env("MODE", "fast") }).Obj(),
			old:         only().Obj(),
			wantMessage: `StatefulSet.apps "web" is invalid: spec.template.spec.containers[0].env: Forbidden: cannot change in place: only container images, their cpu and memory, pod labels and pod annotations can (update policy InPlaceOnly)`,
		},
		"InPlaceOnly accepts a cpu change: a resize": {
			path: PathValidateStatefulSet, op: admissionv1.Update,
			obj: only().Template(func(t *builder.Template) { t.Resources("app", "100m", "2") }).Obj(),
			old: only().Template(func(t *builder.Template) { t.Resources("app", "100m", "1") }).Obj(),
		},
		"InPlaceOnly refuses a QoS class change, saying why": {
			path: PathValidateStatefulSet, op: admissionv1.Update,
			obj: only().Template(func(t *builder.Template) { t.Resources("app", "100m", "") }).Obj(),
			old: only().Obj(),
			wantMessage: `StatefulSet.apps "web" is invalid: spec.template.spec: Forbidden: cannot change in place: ` +
				`the pod's QoS class would change from BestEffort to Burstable, which a live pod's cannot (update policy InPlaceOnly)`,
		},
		"InPlaceOnly accepts an image change": {
			path: PathValidateStatefulSet, op: admissionv1.Update,
			obj: only().Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") }).Obj(),
			old: only().Obj(),
		},
		"InPlaceIfPossible accepts an env change": {
			path: PathValidateStatefulSet, op: admissionv1.Update,
			obj: sts("apps").Template(func(t *builder.Template) { t.Env("MODE", "fast") }).Obj(),
			old: sts("apps").Obj(),
		},
		"an unmanaged namespace is not validated": {
			path: PathValidateStatefulSet, op: admissionv1.Create,
			obj: sts("plain").Annotation(inplace.AnnotationUpdatePolicy, "InPlace").Obj(),
		},
		"a Kruise CloneSet with a malformed policy": {
			path: PathValidateCloneSet, op: admissionv1.Create,
			obj: func() runtime.Object {
				u := kruiseObject(t, cloneSet, "apps", nil)
				u.SetAnnotations(map[string]string{inplace.AnnotationUpdatePolicy: "Never"})
				return u
			}(),
			wantMessage: `CloneSet.apps.kruise.io "web" is invalid: metadata.annotations[inplace.dev/update-policy]: Unsupported value: "Never": supported values: "InPlaceIfPossible", "InPlaceOnly", "Recreate"`,
		},
		"an OnDelete StatefulSet is admitted with a warning": {
			path: PathValidateStatefulSet, op: admissionv1.Create,
			obj: func() runtime.Object {
				s := sts("apps").Obj()
				s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
				return s
			}(),
			wantWarnings: []string{"inplace: its rollouts are not done in place: its update strategy is OnDelete"},
		},
		"a Deployment with the Recreate strategy is admitted with a warning": {
			path: PathValidateDeployment, op: admissionv1.Create,
			obj:          builder.Deployment("web", "apps").Replicas(4).Recreate().Obj(),
			wantWarnings: []string{"inplace: its rollouts are not done in place: its strategy is Recreate"},
		},
		"a Deployment of 2 replicas with the default 25%/25%: maxUnavailable comes to 0, the warning says what to set": {
			path: PathValidateDeployment, op: admissionv1.Create,
			obj: builder.Deployment("web", "apps").Replicas(2).Obj(),
			wantWarnings: []string{"inplace: its rollouts are not done in place: its maxUnavailable comes to 0 at 2 replicas: " +
				"each pod it replaces gets a new one beside it first (set maxUnavailable: 1 for in place)"},
		},
		"a Deployment of 2 replicas with maxUnavailable 1: no warning": {
			path: PathValidateDeployment, op: admissionv1.Create,
			obj: builder.Deployment("web", "apps").Replicas(2).RollingUpdate(nil, ptr.To(intstr.FromInt32(1))).Obj(),
		},
		"a Deployment of 4 replicas with the defaults: no warning": {
			path: PathValidateDeployment, op: admissionv1.Create, obj: builder.Deployment("web", "apps").Replicas(4).Obj(),
		},
		"a Deployment of 2 replicas whose template change starts a rollout: warned": {
			path: PathValidateDeployment, op: admissionv1.Update,
			obj: builder.Deployment("web", "apps").Replicas(2).Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") }).Obj(),
			old: builder.Deployment("web", "apps").Replicas(2).Obj(),
			wantWarnings: []string{"inplace: its rollouts are not done in place: its maxUnavailable comes to 0 at 2 replicas: " +
				"each pod it replaces gets a new one beside it first (set maxUnavailable: 1 for in place)"},
		},
		"a Deployment of 2 replicas re-applied unchanged: not warned again": {
			path: PathValidateDeployment, op: admissionv1.Update,
			obj: builder.Deployment("web", "apps").Replicas(2).Annotation("team", "a").Obj(),
			old: builder.Deployment("web", "apps").Replicas(2).Obj(),
		},
		"a Deployment with Recreate that opted out with the Recreate policy: nothing to warn of": {
			path: PathValidateDeployment, op: admissionv1.Create,
			obj: builder.Deployment("web", "apps").Replicas(4).Recreate().Annotation(inplace.AnnotationUpdatePolicy, "Recreate").Obj(),
		},
		"a DaemonSet that surges (maxSurge 1) is admitted with a warning": {
			path: PathValidateDaemonSet, op: admissionv1.Create,
			obj: builder.DaemonSet("agent", "apps").RollingUpdate(ptr.To(intstr.FromInt32(1)), ptr.To(intstr.FromInt32(0))).Obj(),
			wantWarnings: []string{"inplace: its rollouts are not done in place: " +
				"its rolling update surges (maxSurge 1): each node's new pod starts beside the old one"},
		},
		"a DaemonSet OnDelete is admitted with a warning": {
			path: PathValidateDaemonSet, op: admissionv1.Create,
			obj:          builder.DaemonSet("agent", "apps").OnDelete().Obj(),
			wantWarnings: []string{"inplace: its rollouts are not done in place: its update strategy is OnDelete"},
		},
		"a DaemonSet with the default rolling update: no warning": {
			path: PathValidateDaemonSet, op: admissionv1.Create,
			obj: builder.DaemonSet("agent", "apps").RollingUpdate(nil, ptr.To(intstr.FromInt32(1))).Obj(),
		},
		"a DaemonSet that surges in an unmanaged namespace: nothing to warn of": {
			path: PathValidateDaemonSet, op: admissionv1.Create,
			obj: builder.DaemonSet("agent", "plain").RollingUpdate(ptr.To(intstr.FromInt32(1)), ptr.To(intstr.FromInt32(0))).Obj(),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := testHandlers(t)[tc.path]
			req := review(t, tc.op, tc.obj, tc.old)
			if tc.asManager {
				req = asManager(req)
			}
			resp := h.Handle(t.Context(), req)
			checkValidation(t, resp, tc.wantMessage)
			if diff := cmp.Diff(tc.wantWarnings, resp.Warnings); diff != "" {
				t.Errorf("warnings (-want,+got):\n%s", diff)
			}
		})
	}
}

func checkValidation(t *testing.T, resp admission.Response, wantMessage string) {
	t.Helper()
	if wantMessage == "" {
		if !resp.Allowed {
			t.Fatalf("refused: %v", resp.Result)
		}
		return
	}
	if resp.Allowed {
		t.Fatalf("allowed, want refused with %q", wantMessage)
	}
	if resp.Result.Code != http.StatusUnprocessableEntity {
		t.Errorf("code = %d, want 422", resp.Result.Code)
	}
	if resp.Result.Message != wantMessage {
		t.Errorf("message:\n got %s\nwant %s", resp.Result.Message, wantMessage)
	}
}
