package podcache

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// runningPod is the n-th pod of a StatefulSet as its kubelet leaves it
// running, encoded as the API server sends it (protobuf).
func runningPod(t testing.TB, n int) []byte {
	t.Helper()
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	started := metav1.Unix(1_700_000_000, 0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("web-%d", n), GenerateName: "web-",
			UID: types.UID(fmt.Sprintf("6f1c2d3e-0000-4000-8000-%012d", n)), ResourceVersion: fmt.Sprint(1000 + n),
			Labels: map[string]string{"app": "web", "controller-revision-hash": "web-7d9c5b8f6", "inplace.dev/managed": "true",
				"statefulset.kubernetes.io/pod-name": fmt.Sprintf("web-%d", n), "apps.kubernetes.io/pod-index": fmt.Sprint(n)},
			Annotations:     map[string]string{"kubectl.kubernetes.io/default-container": "app", "inplace.dev/update-state": `{"revision":"web-7d9c5b8f6","images":{"app":"registry.example.com/shop/web:v2"},"since":"2026-12-03T07:00:00Z","phase":"done"}`},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "0b1c2d3e-0000-4000-8000-000000000001", Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{
			NodeName: fmt.Sprintf("node-%03d", n%20), ServiceAccountName: "default", DeprecatedServiceAccount: "default",
			SchedulerName: "default-scheduler", RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst,
			ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "InPlaceUpdateReady"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBurstable, HostIP: "192.168.0.10",
			HostIPs: []corev1.HostIP{{IP: "192.168.0.10"}}, PodIP: fmt.Sprintf("10.64.%d.%d", n/250, n%250+2), StartTime: &started},
	}
	for _, c := range []string{"app", "proxy"} {
		image := "registry.example.com/shop/" + c + ":v2"
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: image, ImagePullPolicy: corev1.PullIfNotPresent, Resources: res})
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: c, Image: image,
			ImageID: image + "@sha256:" + strings.Repeat("ab", 32), ContainerID: fmt.Sprintf("containerd://%064x", n*2+len(c)),
			Ready: true, Started: ptr.To(true), RestartCount: 1, Resources: res.DeepCopy(),
			State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed", StartedAt: started, FinishedAt: started}}})
	}
	for _, c := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled, "InPlaceUpdateReady"} {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: started})
	}
	raw, err := pod.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func decode(t testing.TB, raw []byte) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{}
	if err := pod.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	return pod
}

func same(a, b string) bool { return len(a) > 0 && unsafe.StringData(a) == unsafe.StringData(b) }

func TestTransformSharesRepeatedStrings(t *testing.T) {
	a, b := decode(t, runningPod(t, 0)), decode(t, runningPod(t, 20)) // the same node
	if same(a.Namespace, b.Namespace) || same(a.Status.ContainerStatuses[0].ImageID, b.Status.ContainerStatuses[0].ImageID) {
		t.Fatal("two decoded pods share strings before the transform: the test proves nothing")
	}
	wantA := a.DeepCopy()
	trim(wantA)
	for _, p := range []*corev1.Pod{a, b} {
		if _, err := Transform(p); err != nil {
			t.Fatal(err)
		}
	}
	if !equality.Semantic.DeepEqual(a, wantA) {
		t.Fatal("interning changed the pod")
	}
	keyOf := func(m map[string]string, k string) string {
		for key := range m {
			if key == k {
				return key
			}
		}
		return ""
	}
	for what, pair := range map[string][2]string{
		"namespace":           {a.Namespace, b.Namespace},
		"label key":           {keyOf(a.Labels, "controller-revision-hash"), keyOf(b.Labels, "controller-revision-hash")},
		"label value":         {a.Labels["controller-revision-hash"], b.Labels["controller-revision-hash"]},
		"short annotation":    {a.Annotations["kubectl.kubernetes.io/default-container"], b.Annotations["kubectl.kubernetes.io/default-container"]},
		"owner name":          {a.OwnerReferences[0].Name, b.OwnerReferences[0].Name},
		"node":                {a.Spec.NodeName, b.Spec.NodeName},
		"image":               {a.Spec.Containers[0].Image, b.Spec.Containers[0].Image},
		"status image ID":     {a.Status.ContainerStatuses[0].ImageID, b.Status.ContainerStatuses[0].ImageID},
		"condition type":      {string(a.Status.Conditions[5].Type), string(b.Status.Conditions[5].Type)},
		"gate":                {string(a.Spec.ReadinessGates[0].ConditionType), string(b.Status.Conditions[5].Type)},
		"last terminated why": {a.Status.ContainerStatuses[0].LastTerminationState.Terminated.Reason, b.Status.ContainerStatuses[1].LastTerminationState.Terminated.Reason},
	} {
		if !same(pair[0], pair[1]) {
			t.Errorf("%s %q: two copies after the transform, want one", what, pair[0])
		}
	}
	// A pod's own values, and long annotation values, keep their own copy.
	if same(a.Annotations["inplace.dev/update-state"], b.Annotations["inplace.dev/update-state"]) {
		t.Error("a long annotation value was interned")
	}
}

// keeps are what the benchmarks compare: a pod decoded whole, trimmed
// (before 2026-12-03), trimmed with its repeated strings kept once (the
// cache's transform).
var keeps = []struct {
	name string
	keep func(*corev1.Pod)
}{
	{"decoded", func(*corev1.Pod) {}},
	{"trimmed", trim},
	{"trimmed+interned", func(p *corev1.Pod) { trim(p); internStrings(p) }},
}

// BenchmarkCachedPod reports the heap a cached pod keeps
// (retained-B/pod), decoded whole, trimmed, and trimmed with its repeated
// strings kept once (what the cache holds): 2,000 pods of one StatefulSet
// over 20 nodes an iteration.
func BenchmarkCachedPod(b *testing.B) {
	const pods = 2000
	raw := make([][]byte, pods)
	for i := range raw {
		raw[i] = runningPod(b, i)
	}
	for _, mode := range keeps {
		b.Run(mode.name, func(b *testing.B) {
			var retained float64
			for b.Loop() {
				kept := make([]*corev1.Pod, pods)
				before := liveHeap()
				for i := range kept {
					kept[i] = decode(b, raw[i])
					mode.keep(kept[i])
				}
				retained += float64(liveHeap()-before) / pods
				runtime.KeepAlive(kept)
			}
			b.ReportMetric(retained/float64(b.N), "retained-B/pod")
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkTransform is the CPU a pod event costs the cache: decoding it,
// and trimming it with and without its strings kept once.
func BenchmarkTransform(b *testing.B) {
	raw := runningPod(b, 7)
	for _, mode := range keeps {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mode.keep(decode(b, raw))
			}
		})
	}
}
