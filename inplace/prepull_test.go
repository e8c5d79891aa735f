package inplace

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestPrepullPod(t *testing.T) {
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: "ds-uid"}
	from := &corev1.PodSpec{ServiceAccountName: "agent", ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry"}}}
	pod := PrepullPod(owner, "agent-7f9", "node-1", from, []corev1.Container{
		{Name: "app", Image: "registry.example/app:v2", ImagePullPolicy: corev1.PullAlways, Env: []corev1.EnvVar{{Name: "X", Value: "y"}}},
	})
	if pod.Spec.NodeName != "node-1" || pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("node %q, restart policy %q: want bound to node-1, never restarted", pod.Spec.NodeName, pod.Spec.RestartPolicy)
	}
	if pod.Spec.ServiceAccountName != "agent" || len(pod.Spec.ImagePullSecrets) != 1 || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("credentials %q %v, token mounted %t: want the workload's, no token", pod.Spec.ServiceAccountName, pod.Spec.ImagePullSecrets, *pod.Spec.AutomountServiceAccountToken)
	}
	c := pod.Spec.Containers[0]
	if c.Image != "registry.example/app:v2" || c.ImagePullPolicy != corev1.PullAlways || len(c.Command) != 1 || c.Command[0] != PrepullCommand ||
		len(c.Env) != 1 || c.Env[0].ValueFrom.ConfigMapKeyRef.Name != PrepullConfigMap {
		t.Errorf("container %+v: want the image and pull policy, the command that runs nothing, nothing else", c)
	}
	if sc := pod.Spec.SecurityContext; !*sc.RunAsNonRoot || *sc.RunAsUser == 0 || *c.SecurityContext.AllowPrivilegeEscalation || len(c.SecurityContext.Capabilities.Drop) != 1 {
		t.Errorf("security: want non-root, no escalation, every capability dropped")
	}
	if pod.Labels[LabelPrepullFor] != "ds-uid" || len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].UID != "ds-uid" {
		t.Errorf("labels %v, owners %v: want marked and owned by the workload", pod.Labels, pod.OwnerReferences)
	}
}

func TestPrepullName(t *testing.T) {
	long := strings.Repeat("a", 250)
	for _, w := range []string{"agent", long, "web-"} {
		n := PrepullName(w, "rev", "node-1")
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 || len(n) > 63 {
			t.Errorf("PrepullName(%.20s...) = %q: %v", w, n, errs)
		}
	}
	if PrepullName("web", "r1", "node-1") == PrepullName("web", "r1", "node-2") || PrepullName("web", "r1", "n") == PrepullName("web", "r2", "n") {
		t.Errorf("names collide across nodes or revisions")
	}
}

func TestPrepullState(t *testing.T) {
	waiting := func(reason, msg string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}}
	}
	terminated := corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "StartError", ExitCode: 128}}}
	for name, tc := range map[string]struct {
		statuses []corev1.ContainerStatus
		want     string
	}{
		"no status yet":                     {nil, PrepullPulling},
		"pulling":                           {[]corev1.ContainerStatus{waiting("ContainerCreating", "")}, PrepullPulling},
		"a tag that does not exist":         {[]corev1.ContainerStatus{waiting("ErrImagePull", "not found")}, PrepullFailed},
		"backing off a pull":                {[]corev1.ContainerStatus{waiting("ImagePullBackOff", "")}, PrepullFailed},
		"pulled, its start refused":         {[]corev1.ContainerStatus{terminated}, PrepullPulled},
		"pulled, its start backing off":     {[]corev1.ContainerStatus{waiting("RunContainerError", "exec: no such file")}, PrepullPulled},
		"pulled, its configuration refused": {[]corev1.ContainerStatus{waiting("CreateContainerConfigError", `configmap "inplace-prepull-runs-nothing" not found`)}, PrepullPulled},
	} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}, Status: corev1.PodStatus{ContainerStatuses: tc.statuses}}
		if got, detail := PrepullState(pod); got != tc.want {
			t.Errorf("%s: %s (%s), want %s", name, got, detail, tc.want)
		}
	}
}

func TestOnNode(t *testing.T) {
	node := &corev1.Node{Status: corev1.NodeStatus{Images: []corev1.ContainerImage{
		{Names: []string{"docker.io/library/nginx@sha256:0123456789012345678901234567890123456789012345678901234567890123", "docker.io/library/nginx:1.28"}},
		{Names: []string{"registry.example/app:v2"}},
	}}}
	c := func(image string, policy corev1.PullPolicy) corev1.Container {
		return corev1.Container{Name: "c", Image: image, ImagePullPolicy: policy}
	}
	for name, tc := range map[string]struct {
		containers []corev1.Container
		want       bool
	}{
		"reported, as the kubelet names it":          {[]corev1.Container{c("nginx:1.28", corev1.PullIfNotPresent)}, true},
		"reported, every one":                        {[]corev1.Container{c("nginx:1.28", corev1.PullIfNotPresent), c("registry.example/app:v2", corev1.PullIfNotPresent)}, true},
		"one not reported":                           {[]corev1.Container{c("nginx:1.28", corev1.PullIfNotPresent), c("registry.example/app:v3", corev1.PullIfNotPresent)}, false},
		"reported, but Always asks the registry":     {[]corev1.Container{c("registry.example/app:v2", corev1.PullAlways)}, false},
		"Never pulls":                                {[]corev1.Container{c("registry.example/app:v9", corev1.PullNever)}, true},
		"a reference that does not parse is missing": {[]corev1.Container{c("Registry.Example/App:v2", corev1.PullIfNotPresent)}, false},
	} {
		if got := OnNode(node, tc.containers); got != tc.want {
			t.Errorf("%s: OnNode = %t, want %t", name, got, tc.want)
		}
	}
}
