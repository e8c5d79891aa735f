package podcache_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/internal/podcache"
	"github.com/inplace-dev/inplace/internal/testenv"
)

// fullPod is a pod as a real service's: volumes, environment, probes,
// mounts, security contexts, scheduling constraints.
func fullPod() *corev1.Pod {
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8080)}}}
	restricted := &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0",
			Labels:      map[string]string{"app": "web", "inplace.dev/managed": "true"},
			Annotations: map[string]string{"team": "shop"}},
		Spec: corev1.PodSpec{
			NodeName:           "node-a",
			ServiceAccountName: "default",
			ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "pull"}},
			ReadinessGates:     []corev1.PodReadinessGate{{ConditionType: "InPlaceUpdateReady"}},
			InitContainers: []corev1.Container{{Name: "proxy", Image: "proxy:1", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
				Env: []corev1.EnvVar{{Name: "MODE", Value: "sidecar"}}, SecurityContext: restricted}},
			Containers: []corev1.Container{{
				Name: "app", Image: "web:1", ImagePullPolicy: corev1.PullIfNotPresent, Resources: res,
				ResizePolicy: []corev1.ContainerResizePolicy{{ResourceName: corev1.ResourceMemory, RestartPolicy: corev1.RestartContainer}},
				Args:         []string{"--listen=:8080"},
				Ports:        []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "LOG_LEVEL", Value: "info"}},
				ReadinessProbe: probe, LivenessProbe: probe,
				VolumeMounts:    []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app"}},
				SecurityContext: restricted,
			}},
			Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"}}}}},
			Tolerations:  []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "web", Effect: corev1.TaintEffectNoSchedule}},
			NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
			TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone",
				WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
		},
	}
}

func TestTransformKeepsWhatTheManagerReads(t *testing.T) {
	pod := fullPod()
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		Conditions: []corev1.PodCondition{{Type: "InPlaceUpdateReady", Status: corev1.ConditionTrue}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "web:1", ImageID: "web@sha256:1", RestartCount: 2, Ready: true,
			Resources:    &pod.Spec.Containers[0].Resources,
			VolumeMounts: []corev1.VolumeMountStatus{{Name: "config", MountPath: "/etc/app"}},
			User:         &corev1.ContainerUser{Linux: &corev1.LinuxContainerUser{UID: 1000}}}},
	}
	want := pod.DeepCopy()
	got, err := podcache.Transform(pod)
	if err != nil {
		t.Fatal(err)
	}
	trimmed := got.(*corev1.Pod)

	// What the manager reads is kept as it was.
	if !equality.Semantic.DeepEqual(trimmed.ObjectMeta.Labels, want.Labels) || !equality.Semantic.DeepEqual(trimmed.Annotations, want.Annotations) {
		t.Errorf("metadata changed: %v %v", trimmed.Labels, trimmed.Annotations)
	}
	if trimmed.Spec.NodeName != "node-a" || trimmed.Spec.ServiceAccountName != "default" || len(trimmed.Spec.ImagePullSecrets) != 1 || len(trimmed.Spec.ReadinessGates) != 1 {
		t.Errorf("node, credentials or gates lost: %+v", trimmed.Spec)
	}
	app := trimmed.Spec.Containers[0]
	if app.Name != "app" || app.Image != "web:1" || app.ImagePullPolicy != corev1.PullIfNotPresent ||
		!equality.Semantic.DeepEqual(app.Resources, want.Spec.Containers[0].Resources) || len(app.ResizePolicy) != 1 {
		t.Errorf("container's read fields lost: %+v", app)
	}
	if sidecar := trimmed.Spec.InitContainers[0]; sidecar.Image != "proxy:1" || sidecar.RestartPolicy == nil {
		t.Errorf("native sidecar's image or restart policy lost: %+v", sidecar)
	}
	cs := trimmed.Status.ContainerStatuses[0]
	if cs.ImageID != "web@sha256:1" || cs.RestartCount != 2 || !cs.Ready || cs.Resources == nil || len(trimmed.Status.Conditions) != 1 || trimmed.Status.Phase != corev1.PodRunning {
		t.Errorf("status lost: %+v", trimmed.Status)
	}

	// What it does not read is gone.
	if trimmed.ManagedFields != nil || trimmed.Spec.Volumes != nil || trimmed.Spec.Tolerations != nil || trimmed.Spec.NodeSelector != nil ||
		trimmed.Spec.TopologySpreadConstraints != nil || trimmed.Spec.SecurityContext != nil {
		t.Errorf("pod-level fields kept: %+v", trimmed.Spec)
	}
	if app.Env != nil || app.Args != nil || app.Ports != nil || app.ReadinessProbe != nil || app.LivenessProbe != nil ||
		app.VolumeMounts != nil || app.SecurityContext != nil || trimmed.Spec.InitContainers[0].Env != nil {
		t.Errorf("container fields kept: %+v", app)
	}
	if cs.VolumeMounts != nil || cs.User != nil {
		t.Errorf("container status fields kept: %+v", cs)
	}

	// The informer may transform a pod twice (its reflector's store, then
	// its queue): the second changes nothing.
	again, err := podcache.Transform(trimmed.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(again, trimmed) {
		t.Errorf("a second transform changed the pod:\nonce  %+v\ntwice %+v", trimmed, again)
	}

	// Anything else passes through untouched.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	if got, _ := podcache.Transform(node); got != node {
		t.Error("a node was changed")
	}
}

// The manager writes pods it read from its cache with strategic merge
// patches from the cached copy. Against a real API server, every write it
// makes of a pod (images, labels and annotations, the gate's condition)
// leaves what the cache trimmed as it was.
func TestTrimmedPodPatchesKeepWhatIsTrimmed(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	env, c := testenv.Start(t, scheme, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Create(ctx, fullPod()); err != nil {
		t.Fatal(err)
	}
	pods, err := cache.New(env.Config, cache.Options{Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: {Transform: podcache.Transform}}})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = pods.Start(ctx) }()
	if !pods.WaitForCacheSync(ctx) {
		t.Fatal("the cache never synced")
	}
	key := client.ObjectKey{Namespace: "default", Name: "web-0"}
	read := func() *corev1.Pod {
		t.Helper()
		pod := &corev1.Pod{}
		if err := pods.Get(ctx, key, pod); err != nil {
			t.Fatal(err)
		}
		if pod.Spec.Volumes != nil || pod.Spec.Containers[0].Env != nil {
			t.Fatal("the cache holds the pod untrimmed")
		}
		return pod
	}
	before := &corev1.Pod{}
	if err := c.Get(ctx, key, before); err != nil {
		t.Fatal(err)
	}

	// The image patch, with a label and an annotation.
	pod := read()
	base := pod.DeepCopy()
	pod.Spec.Containers[0].Image = "web:2"
	pod.Spec.InitContainers[0].Image = "proxy:2"
	pod.Labels["controller-revision-hash"] = "web-2"
	pod.Annotations["inplace.dev/update-state"] = `{"revision":"web-2"}`
	if err := c.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		t.Fatal(err)
	}
	// The gate's condition, once the cache has the patched pod.
	for read().ResourceVersion != pod.ResourceVersion {
		time.Sleep(50 * time.Millisecond)
	}
	pod = read()
	base = pod.DeepCopy()
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: "InPlaceUpdateReady", Status: corev1.ConditionFalse, Reason: "Updating"})
	if err := c.Status().Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
		t.Fatal(err)
	}

	after := &corev1.Pod{}
	if err := c.Get(ctx, key, after); err != nil {
		t.Fatal(err)
	}
	if after.Spec.Containers[0].Image != "web:2" || after.Spec.InitContainers[0].Image != "proxy:2" ||
		after.Labels["controller-revision-hash"] != "web-2" || len(after.Status.Conditions) != 1 {
		t.Fatalf("the patches did not apply: %+v", after)
	}
	// But for what the patches changed, the pod is as it was.
	after.Spec.Containers[0].Image, after.Spec.InitContainers[0].Image = "web:1", "proxy:1"
	if !equality.Semantic.DeepEqual(after.Spec, before.Spec) {
		t.Errorf("the spec lost what the cache trimmed:\nbefore %+v\nafter  %+v", before.Spec, after.Spec)
	}
}

// A workload's pods ask for the same resources, and the kubelet reports what
// they ask: the cache keeps one copy of each list.
func TestTransformSharesEqualResourceLists(t *testing.T) {
	a, b := fullPod(), fullPod()
	b.Name = "web-1"
	for _, p := range []*corev1.Pod{a, b} {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Resources: p.Spec.Containers[0].Resources.DeepCopy()}}
	}
	// Another list: kept apart.
	b.Spec.InitContainers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}
	for _, p := range []*corev1.Pod{a, b} {
		if _, err := podcache.Transform(p); err != nil {
			t.Fatal(err)
		}
	}
	same := func(x, y corev1.ResourceList) bool {
		return reflect.ValueOf(x).UnsafePointer() == reflect.ValueOf(y).UnsafePointer()
	}
	if !same(a.Spec.Containers[0].Resources.Requests, b.Spec.Containers[0].Resources.Requests) ||
		!same(a.Spec.Containers[0].Resources.Requests, a.Status.ContainerStatuses[0].Resources.Requests) ||
		!same(a.Spec.Containers[0].Resources.Limits, b.Status.ContainerStatuses[0].Resources.Limits) {
		t.Error("equal resource lists are not shared")
	}
	if same(a.Spec.Containers[0].Resources.Requests, b.Spec.InitContainers[0].Resources.Requests) {
		t.Error("different resource lists are shared")
	}
	if got := b.Spec.InitContainers[0].Resources.Requests[corev1.ResourceCPU]; got.String() != "10m" {
		t.Errorf("the init container asks for %s, want 10m", got.String())
	}
}
