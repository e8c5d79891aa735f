package manifests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/internal/testenv"
)

// gkeCriticalPods is the ResourceQuota admission configuration GKE's API
// server runs with (the Kubernetes documentation's "limit priority class
// consumption by default"): a pod at a critical priority is admitted only in
// a namespace with a quota that names its class.
const gkeCriticalPods = `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ResourceQuota
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: ResourceQuotaConfiguration
    limitedResources:
    - resource: pods
      matchScopes:
      - scopeName: PriorityClass
        operator: In
        values: [system-node-critical, system-cluster-critical]
`

// TestCriticalPodsAdmittedWhereTheyAreLimited: on an API server that limits
// the critical priority classes as GKE's does, a manager pod is refused in a
// namespace without a quota that names its class, and admitted in
// inplace-system once the install's ResourceQuota is there (with the status
// the quota controller, which envtest does not run, would write).
func TestCriticalPodsAdmittedWhereTheyAreLimited(t *testing.T) {
	kustomize := tool(t, "KUSTOMIZE", "kustomize")
	config := filepath.Join(t.TempDir(), "admission.yaml")
	if err := os.WriteFile(config, []byte(gkeCriticalPods), 0o644); err != nil {
		t.Fatal(err)
	}
	_, c := testenv.Start(t, app.Scheme(), func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().Set("admission-control-config-file", config)
	})

	out, err := exec.Command(kustomize, "build", kustomization(t, "builtin-certs")).Output()
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	objs, err := testenv.Objects(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var deployment appsv1.Deployment
	var quota corev1.ResourceQuota
	for _, obj := range objs {
		switch obj.GetKind() {
		case "Deployment":
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &deployment)
		case "ResourceQuota":
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &quota)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if deployment.Name == "" || quota.Name == "" {
		t.Fatalf("the install has no Deployment or no ResourceQuota (%q, %q)", deployment.Name, quota.Name)
	}
	if got := deployment.Spec.Template.Spec.PriorityClassName; got != "system-cluster-critical" {
		t.Fatalf("the manager's priority class is %q; this test is about system-cluster-critical", got)
	}

	// A manager pod, as its ReplicaSet would create it, in namespace ns.
	createPod := func(ns string) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "inplace-manager-x", Namespace: ns, Labels: deployment.Spec.Template.Labels},
			Spec:       *deployment.Spec.Template.Spec.DeepCopy(),
		}
		return c.Create(t.Context(), pod, client.DryRunAll)
	}
	for _, ns := range []string{"inplace-system", "elsewhere"} {
		if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: deployment.Spec.Template.Spec.ServiceAccountName, Namespace: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := createPod("inplace-system"); err == nil || !strings.Contains(err.Error(), "insufficient quota to match these scopes") {
		t.Fatalf("a critical pod with no quota: %v; want it refused for quota, or the API server does not limit them and this test proves nothing", err)
	}

	if err := c.Create(t.Context(), &quota); err != nil {
		t.Fatalf("creating the install's ResourceQuota: %v", err)
	}
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}
	if err := c.Status().Update(t.Context(), &quota); err != nil {
		t.Fatalf("writing the quota's status: %v", err)
	}
	if err := createPod("inplace-system"); err != nil {
		t.Errorf("a manager pod in inplace-system with the install's quota: %v", err)
	}
	if err := createPod("elsewhere"); err == nil {
		t.Error("a critical pod in a namespace without a quota was admitted: the quota reaches beyond inplace-system")
	}
	if pods := quota.Spec.Hard[corev1.ResourcePods]; pods.Value() < 2*int64(*deployment.Spec.Replicas) {
		t.Errorf("the quota allows %s pods: fewer than the %d replicas and a surge each", pods.String(), *deployment.Spec.Replicas)
	}
}
