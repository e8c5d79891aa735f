//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/utils/ptr"
)

// A native sidecar (an init container that restarts always) whose image
// changes: the kubelet restarts it with the new image from 1.32 on, so the
// pod is updated in place there; an older kubelet would leave it running the
// old image, so the pod is recreated there, with an event that says why.

const (
	sidecarName = "proxy"
	sidecarPort = 8081
)

// sidecarRestartVersion is the first kubelet that restarts a native sidecar
// whose image changed.
var sidecarRestartVersion = version.MajorMinor(1, 32)

// withSidecar adds the native sidecar "proxy", the test application on
// :8081, ready when it answers there.
func withSidecar(image string) stsOption {
	return func(s *appsv1.StatefulSet) {
		s.Spec.Template.Spec.InitContainers = append(s.Spec.Template.Spec.InitContainers, corev1.Container{
			Name: sidecarName, Image: image, ImagePullPolicy: corev1.PullNever,
			Args:          []string{"-listen", fmt.Sprintf(":%d", sidecarPort)},
			RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
		})
	}
}

// sidecarView is what a user reads of a pod's sidecar: its status and what
// it serves.
type sidecarView struct {
	uid      types.UID
	image    string
	restarts int32
	serves   string
}

func observeSidecars(t *testing.T, sts *appsv1.StatefulSet) map[string]sidecarView {
	t.Helper()
	pods, err := statefulSetPods(t.Context(), sts)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]sidecarView{}
	for _, p := range pods {
		v := sidecarView{uid: p.UID}
		for _, s := range p.Status.InitContainerStatuses {
			if s.Name == sidecarName {
				v.image, v.restarts = s.Image, s.RestartCount
			}
		}
		if v.serves, err = servedAt(t.Context(), p.Status.PodIP, sidecarPort, "/"); err != nil {
			t.Fatalf("pod %s: the sidecar on :%d: %v", p.Name, sidecarPort, err)
		}
		out[p.Name] = v
	}
	return out
}

// TestNativeSidecarImage changes the image of a StatefulSet's native
// sidecar. On kubelets 1.32 and later: the same pods, the sidecar restarted
// once and serving the new version, the app container not restarted. On
// older ones: every pod recreated, running the new sidecar, each with a
// RecreatedNotInPlace event naming the kubelet.
func TestNativeSidecarImage(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("web", ns, 2, images.V1, withParallelPods(), withMaxUnavailable(2), withSidecar(images.V1))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before, apps := observeSidecars(t, sts), observe(t, sts)

	oldest := oldestKubelet(t)
	inPlace := oldest.AtLeast(sidecarRestartVersion)
	t.Logf("the nodes' kubelets (oldest %s) restart a native sidecar in place: %t", oldest, inPlace)
	update(t, sts, func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.InitContainers[0].Image = images.V2 })
	waitForRolloutComplete(t, sts)
	logPods(t, "after", observe(t, sts))

	// The sidecar's status as its kubelet reports it: kubelet 1.32.2 was
	// seen reporting the old container's image and restart count for a
	// few seconds after the new one served (2 runs in 4), then the new
	// ones. How long it lagged is logged; the rollout is not held for it.
	completed := time.Now()
	var after map[string]sidecarView
	eventually(t, answerTimeout, "the sidecars' status to show the update", func(context.Context) error {
		after = observeSidecars(t, sts)
		var problems []error
		for name, a := range after {
			b := before[name]
			if a.image != images.V2 || a.serves != images.Serves(images.V2) {
				problems = append(problems, fmt.Errorf("pod %s: the sidecar runs %s and serves %q, want %s serving %q", name, a.image, a.serves, images.V2, images.Serves(images.V2)))
			}
			switch {
			case inPlace && (a.uid != b.uid || a.restarts != b.restarts+1):
				problems = append(problems, fmt.Errorf("pod %s: UID %s -> %s, sidecar restarts %d -> %d; want the same pod, the sidecar restarted once", name, b.uid, a.uid, b.restarts, a.restarts))
			case !inPlace && a.uid == b.uid:
				problems = append(problems, fmt.Errorf("pod %s (%s) was not recreated: its kubelet does not restart sidecars in place", name, a.uid))
			}
		}
		return errors.Join(problems...)
	})
	if lag := time.Since(completed); lag > time.Second {
		t.Logf("the sidecars' status showed the update %s after the rollout completed", lag.Round(time.Millisecond))
	}
	if inPlace {
		for i, a := range observe(t, sts) {
			if a.Restarts != apps[i].Restarts {
				t.Errorf("pod %s: the app container restarted (%d -> %d): only the sidecar changed", a.Name, apps[i].Restarts, a.Restarts)
			}
		}
		wantEvents(t, ns, "InPlaceUpdated", len(after))
		return
	}
	const why = "does not restart sidecars in place"
	wantEventsSaying(t, ns, "RecreatedNotInPlace", why, len(after))
}
