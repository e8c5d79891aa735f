package webhook

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

var (
	podGatePatch = jsonpatch.JsonPatchOperation{
		Operation: "add", Path: "/spec/readinessGates",
		Value: []any{map[string]any{"conditionType": "InPlaceUpdateReady"}},
	}
	podLabelPatch = jsonpatch.JsonPatchOperation{
		Operation: "add", Path: "/metadata/labels", Value: map[string]any{"inplace.dev/managed": "true"},
	}
)

func TestPodDefaulter(t *testing.T) {
	deployment := builder.Deployment("web", "apps").Obj()
	deployment.UID = "deploy-uid"
	replicaSet := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{
		Name: "web-6d4b", Namespace: "apps", UID: "rs-uid",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "deploy-uid", Controller: ptr.To(true)}},
	}}
	orphanRS := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "lonely", Namespace: "apps", UID: "lonely-uid"}}
	recreate := builder.StatefulSet("db", "apps").Annotation(inplace.AnnotationUpdatePolicy, "Recreate").Obj()
	recreate.UID = "db-uid"
	daemonSet := builder.DaemonSet("agent", "apps").Obj()
	daemonSet.UID = "ds-uid"
	objects := []client.Object{ownerStatefulSet(), deployment, replicaSet, orphanRS, recreate, daemonSet}

	pod := func(ns string) *builder.PodWrapper { return builder.Pod("p", ns) }
	cases := map[string]struct {
		pod  *corev1.Pod
		want []jsonpatch.JsonPatchOperation
	}{
		"a StatefulSet's pod gets the gate and the label": {
			pod:  pod("apps").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Obj(),
			want: []jsonpatch.JsonPatchOperation{podGatePatch, podLabelPatch},
		},
		"a Deployment's pod, through its ReplicaSet": {
			pod:  pod("apps").OwnedBy("apps/v1", "ReplicaSet", "web-6d4b", "rs-uid").Obj(),
			want: []jsonpatch.JsonPatchOperation{podGatePatch, podLabelPatch},
		},
		"a DaemonSet's pod": {
			pod:  pod("apps").OwnedBy("apps/v1", "DaemonSet", "agent", "ds-uid").Obj(),
			want: []jsonpatch.JsonPatchOperation{podGatePatch, podLabelPatch},
		},
		"a pod with labels and other gates keeps them": {
			pod: pod("apps").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").
				Label("app", "web").ReadinessGate("example.com/lb").Obj(),
			want: []jsonpatch.JsonPatchOperation{
				{Operation: "add", Path: "/spec/readinessGates/1", Value: map[string]any{"conditionType": "InPlaceUpdateReady"}},
				{Operation: "add", Path: "/metadata/labels/inplace.dev~1managed", Value: "true"},
			},
		},
		"a ReplicaSet without a Deployment is not a managed workload": {
			pod: pod("apps").OwnedBy("apps/v1", "ReplicaSet", "lonely", "lonely-uid").Obj(),
		},
		"a workload that opted out with Recreate": {
			pod: pod("apps").OwnedBy("apps/v1", "StatefulSet", "db", "db-uid").Obj(),
		},
		"an owner that was replaced (another UID)": {
			pod: pod("apps").OwnedBy("apps/v1", "StatefulSet", "web", "old-uid").Obj(),
		},
		"an owner that does not exist": {
			pod: pod("apps").OwnedBy("apps/v1", "StatefulSet", "ghost", "ghost-uid").Obj(),
		},
		"a Kruise StatefulSet's pod gets its gate from the template, not here": {
			pod: pod("apps").OwnedBy("apps.kruise.io/v1beta1", "StatefulSet", "web", "sts-uid").Obj(),
		},
		"a Job's pod": {
			pod: pod("apps").OwnedBy("batch/v1", "Job", "once", "job-uid").Obj(),
		},
		"a bare pod": {
			pod: pod("apps").Obj(),
		},
		"a pod in an unlabelled namespace": {
			pod: pod("plain").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Obj(),
		},
		"a pod in kube-system, labelled": {
			pod: pod("kube-system").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Obj(),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := testHandlers(t, objects...)[PathMutatePod]
			resp := h.Handle(t.Context(), review(t, admissionv1.Create, tc.pod, nil))
			if !resp.Allowed {
				t.Fatalf("not allowed: %v", resp.Result)
			}
			if diff := cmp.Diff(tc.want, resp.Patches, byPath); diff != "" {
				t.Errorf("patch (-want,+got):\n%s", diff)
			}
		})
	}
}
