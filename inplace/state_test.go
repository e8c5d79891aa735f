package inplace

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/inplace-dev/inplace/internal/builder"
)

var (
	t0      = metav1.NewTime(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	patched = metav1.NewTime(t0.Add(2 * time.Second))
	later   = metav1.NewTime(t0.Add(3 * time.Second))
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// running is a container status as the kubelet reports it.
func running(id, image, imageID string, restarts int32, started metav1.Time, ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: "app", ContainerID: "containerd://" + id, Image: image, ImageID: imageID,
		RestartCount: restarts, Ready: ready,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
	}
}

func waiting(reason, message string, restarts int32) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: "app", ContainerID: "containerd://old", RestartCount: restarts,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
	}
}

// updating returns a pod whose "app" container was patched to specImage,
// with the state recorded from before.
func updating(specImage string, before corev1.ContainerStatus, now corev1.ContainerStatus) (*corev1.Pod, *UpdateState) {
	pod := builder.Pod("web-0", "apps").ReadinessGate(ConditionInPlaceUpdateReady).Obj()
	pod.Spec.Containers[0].Image = specImage
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{before}
	s := &UpdateState{Revision: "web-2", From: "web-1", Since: t0, Containers: Snapshot(pod, []string{"app"})}
	s.PatchedAt = &patched
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{now}
	return pod, s
}

func TestCheckProgress(t *testing.T) {
	v1 := running("c1", "docker.io/example/app:v1", "example/app@"+digestA, 0, t0, true)
	cases := map[string]struct {
		spec string
		now  corev1.ContainerStatus
		want Progress
	}{
		"a new container running the new image, ready": {
			spec: "example/app:v2", now: running("c2", "docker.io/example/app:v2", "example/app@"+digestB, 1, later, true),
			want: Progress{Observed: true, Replaced: true, Started: true, Done: true},
		},
		"not restarted yet: the same container, still running (a preStop hook)": {
			spec: "example/app:v2", now: v1,
			want: Progress{Observed: true},
		},
		"restarted but not ready yet": {
			spec: "example/app:v2", now: running("c2", "docker.io/example/app:v2", "example/app@"+digestB, 1, later, false),
			want: Progress{Observed: true, Replaced: true},
		},
		"the old container stopped, the new one not created yet": {
			spec: "example/app:v2", now: waiting("ContainerCreating", "", 0),
			want: Progress{Observed: true, Replaced: true},
		},
		"docker.io/library/x reported for x": {
			spec: "nginx:1.27", now: running("c2", "docker.io/library/nginx:1.27", "nginx@"+digestA, 1, later, true),
			want: Progress{Observed: true, Replaced: true, Started: true, Done: true},
		},
		"a retag to the same digest: the kubelet reports the old tag and the same image ID": {
			spec: "example/app:v1-retag", now: running("c2", "docker.io/example/app:v1", "example/app@"+digestA, 1, later, true),
			want: Progress{Observed: true, Replaced: true, Started: true, Done: true},
		},
		"a rollback to an image the node has: the same image ID as before the first update": {
			spec: "example/app:v1", now: running("c2", "docker.io/example/app:v1", "example/app@"+digestA, 1, later, true),
			want: Progress{Observed: true, Replaced: true, Started: true, Done: true},
		},
		"a registry mirror's name and a new image ID": {
			spec: "example/app:v2", now: running("c2", "mirror.local/example/app:v2", "mirror.local/example/app@"+digestB, 1, later, true),
			want: Progress{Observed: true, Replaced: true, Started: true, Done: true},
		},
		"a container older than the one it replaces is not the new one": {
			spec: "example/app:v2", now: running("c2", "docker.io/example/app:v2", "example/app@"+digestB, 1, metav1.NewTime(t0.Add(-time.Second)), true),
			want: Progress{Observed: true, Replaced: true},
		},
		"an image that cannot be pulled": {
			spec: "example/app:v9", now: withImage(waiting("ImagePullBackOff", `Back-off pulling image "example/app:v9"`, 0), "example/app:v9"),
			want: Progress{Observed: true, Replaced: true, Failure: "container app: ImagePullBackOff", Detail: `container app: ImagePullBackOff: Back-off pulling image "example/app:v9"`},
		},
		"a failed pull": {
			spec: "example/app:v9", now: withImage(waiting("ErrImagePull", "not found", 0), "example/app:v9"),
			want: Progress{Observed: true, Replaced: true, Failure: "container app: ErrImagePull", Detail: "container app: ErrImagePull: not found"},
		},
		"a pull error of the old image is not the new image's": {
			spec: "example/app:v9", now: withImage(waiting("ImagePullBackOff", "", 0), "example/app:v1"),
			want: Progress{Observed: true, Replaced: true},
		},
		"an image the node may not pull, reported under the old container's image": {
			spec: "example/app:v9", now: withImage(waiting("ErrImageNeverPull", `Container image "example/app:v9" is not present with pull policy of Never`, 0), "example/app:v1"),
			want: Progress{Observed: true, Replaced: true, Failure: "container app: ErrImageNeverPull", Detail: `container app: ErrImageNeverPull: Container image "example/app:v9" is not present with pull policy of Never`},
		},
		"a failed pull named by the runtime's full reference": {
			spec: "example/app:v9", now: withImage(waiting("ErrImagePull", `failed to pull and unpack image "docker.io/example/app:v9": not found`, 0), "example/app:v1"),
			want: Progress{Observed: true, Replaced: true, Failure: "container app: ErrImagePull", Detail: `container app: ErrImagePull: failed to pull and unpack image "docker.io/example/app:v9": not found`},
		},
		"a pull error of another image is not the new image's": {
			spec: "example/app:v9", now: withImage(waiting("ErrImagePull", `failed to pull and unpack image "docker.io/example/app:v1": not found`, 0), "example/app:v1"),
			want: Progress{Observed: true, Replaced: true},
		},
		"a new container that crash-loops": {
			spec: "example/app:bad", now: withID(waiting("CrashLoopBackOff", "back-off 10s restarting failed container", 2), "c2"),
			want: Progress{Observed: true, Replaced: true, Failure: "container app: CrashLoopBackOff", Detail: "container app: CrashLoopBackOff: back-off 10s restarting failed container"},
		},
		"the old container's crash loop, still reported, is not the new image's": {
			spec: "example/app:v2", now: withID(waiting("CrashLoopBackOff", "back-off 10s restarting failed container", 2), "c1"),
			want: Progress{Observed: true, Replaced: true},
		},
		"a container that cannot be created": {
			spec: "example/app:v2", now: withImage(waiting("CreateContainerError", "no such volume", 0), "example/app:v2"),
			want: Progress{Observed: true, Replaced: true, Failure: "container app: CreateContainerError", Detail: "container app: CreateContainerError: no such volume"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod, s := updating(tc.spec, v1, tc.now)
			if diff := cmp.Diff(tc.want, CheckProgress(pod, s)); diff != "" {
				t.Errorf("progress (-want,+got):\n%s", diff)
			}
		})
	}
}

// TestCheckProgressObservedGeneration: where the kubelet says its status is
// of the patched spec, a pull error is the new image's whatever image the
// status names; a status of the spec before says nothing.
func TestCheckProgressObservedGeneration(t *testing.T) {
	v1 := running("c1", "docker.io/example/app:v1", "example/app@"+digestA, 0, t0, true)
	for _, tc := range []struct {
		observed int64
		want     Progress
	}{
		{observed: 2, want: Progress{Observed: true, Replaced: true, Failure: "container app: ImagePullBackOff", Detail: "container app: ImagePullBackOff"}},
		{observed: 1, want: Progress{}},
	} {
		pod, s := updating("example/app:v9", v1, withImage(waiting("ImagePullBackOff", "", 0), "example/app:v1"))
		pod.Generation, pod.Status.ObservedGeneration = 2, tc.observed
		if diff := cmp.Diff(tc.want, CheckProgress(pod, s)); diff != "" {
			t.Errorf("observedGeneration %d: progress (-want,+got):\n%s", tc.observed, diff)
		}
	}
}

func withImage(cs corev1.ContainerStatus, image string) corev1.ContainerStatus {
	cs.Image = image
	return cs
}

func withID(cs corev1.ContainerStatus, id string) corev1.ContainerStatus {
	cs.ContainerID = "containerd://" + id
	return cs
}

func TestSettled(t *testing.T) {
	for p, want := range map[Progress]bool{
		{}:                            false,
		{Replaced: true}:              true,
		{Failure: "container app: X"}: true,
		{Replaced: true, Done: true}:  true,
	} {
		if got := p.Settled(); got != want {
			t.Errorf("%+v.Settled() = %v, want %v", p, got, want)
		}
	}
}

func TestCheckProgressWaitsForTheKubeletToSeeThePatch(t *testing.T) {
	pod, s := updating("example/app:v2", running("c1", "example/app:v1", digestA, 0, t0, true),
		running("c2", "example/app:v2", digestB, 1, later, true))
	pod.Generation, pod.Status.ObservedGeneration = 3, 2
	if got := CheckProgress(pod, s); got.Done {
		t.Errorf("done before the kubelet observed generation 3")
	}
	pod.Status.ObservedGeneration = 3
	if got := CheckProgress(pod, s); !got.Done {
		t.Errorf("not done once the kubelet observed the patch")
	}
}

// TestGateWaitsForTheResize: a container restarted for its image starts
// under the resources allocated then, and the kubelet applies the resize
// asked for with the image to the new container a moment later. The gate
// stays closed until it has: the pod does not run its revision before.
// A failed update opens it (the pod's Ready follows its containers).
func TestGateWaitsForTheResize(t *testing.T) {
	limits := func(cpu string) *corev1.ResourceRequirements {
		return &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}
	}
	started := running("c2", "example/app:v2", digestB, 1, later, true)
	started.Resources = limits("400m")
	pod, s := updating("example/app:v2", running("c1", "example/app:v1", digestA, 0, t0, true), started)
	s.Resize = map[string]corev1.ResourceRequirements{"app": *limits("300m")}

	p := CheckProgress(pod, s)
	if !p.Started || p.Done || p.Resize != ResizeInProgress {
		t.Errorf("new container Ready, resize not applied: progress %+v, want Started, not Done, resize %s", p, ResizeInProgress)
	}
	for _, guarded := range []bool{true, false} {
		if !p.TakenIn(guarded) || p.GateMayOpen(guarded) {
			t.Errorf("guarded %t: taken in %t, gate may open %t; want taken in, the gate closed until the resize is applied", guarded, p.TakenIn(guarded), p.GateMayOpen(guarded))
		}
	}
	if p.Failure = "container app: X"; !p.GateMayOpen(true) || !p.GateMayOpen(false) {
		t.Errorf("a failed update keeps its gate closed for its resize")
	}

	pod.Status.ContainerStatuses[0].Resources = limits("300m")
	p = CheckProgress(pod, s)
	if !p.Done || p.Resize != ResizeDone || !p.GateMayOpen(true) || !p.GateMayOpen(false) {
		t.Errorf("resize applied: progress %+v, want Done and the gate free to open", p)
	}
}

func TestCheckProgressBeforeThePatch(t *testing.T) {
	pod, s := updating("example/app:v2", running("c1", "example/app:v1", digestA, 0, t0, true),
		running("c2", "example/app:v2", digestB, 1, later, true))
	s.PatchedAt = nil
	if got := CheckProgress(pod, s); got.Done || got.Failure != "" {
		t.Errorf("progress before the patch = %+v, want none", got)
	}
}

func TestCheckProgressInitContainers(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := builder.Pod("web-0", "apps").Obj()
	pod.Spec.InitContainers = []corev1.Container{{Name: "setup", Image: "busybox:2"}, {Name: "proxy", Image: "envoy:2", RestartPolicy: &always}}
	s := &UpdateState{Revision: "r2", Since: t0, PatchedAt: &patched, Containers: map[string]ContainerSnapshot{
		"setup": {ContainerID: "containerd://s1"}, "proxy": {ContainerID: "containerd://p1"},
	}}
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{
		{Name: "setup", ContainerID: "containerd://s1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
		{Name: "proxy", ContainerID: "containerd://p1", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: t0}}},
	}
	if got := CheckProgress(pod, s); got.Done {
		t.Errorf("done before the sidecar restarted")
	}
	pod.Status.InitContainerStatuses[1] = corev1.ContainerStatus{Name: "proxy", ContainerID: "containerd://p2", Image: "envoy:2", Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: later}}}
	if got := CheckProgress(pod, s); !got.Done {
		t.Errorf("not done: a regular init container is not rerun on a live pod, and the sidecar restarted")
	}
}

func TestUpdateStateRoundTrip(t *testing.T) {
	s := &UpdateState{Revision: "web-2", From: "web-1", Since: t0, PatchedAt: &patched,
		Containers: map[string]ContainerSnapshot{"app": {ContainerID: "containerd://c1", ImageID: digestA, RestartCount: 2, StartedAt: &t0}}}
	pod := builder.Pod("p", "ns").Annotation(AnnotationUpdateState, s.Encode()).Obj()
	got, err := StateOf(pod)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got); diff != "" {
		t.Errorf("state (-want,+got):\n%s", diff)
	}
	if _, err := StateOf(builder.Pod("p", "ns").Annotation(AnnotationUpdateState, "{").Obj()); err == nil {
		t.Errorf("a malformed state parsed")
	}
}
