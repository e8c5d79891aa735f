//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The cluster's own faults in the middle of a rollout: the API server
// restarted (every watch dropped, every request refused for seconds), a
// node's kubelet killed while a pod's update is under way. Each restarts a
// daemon every test depends on, so none runs in parallel with the others.

// TestAPIServerRestartedMidRollout kills the API server (SIGKILL: a crash,
// an OOM kill) while a StatefulSet, a Deployment and a DaemonSet roll out in
// place, and starts it again: the manager's watches and the native
// controllers' drop, their writes fail until it is back. Every rollout
// finishes with every pod Ready on the new image, nothing applied twice (a
// pod kept is restarted once), nothing left recorded. A pod may be
// recreated instead: the webhooks fail open while they cannot be called.
func TestAPIServerRestartedMidRollout(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("db", ns, 3, images.V1, withMaxUnavailable(1), withAnnotation(annotationGracePeriod, "2"))
	d := newDeployment("web", ns, 3, images.V1, withRollingUpdate("0", "1"))
	d.Spec.MinReadySeconds = 2
	ds := newDaemonSet("agent", ns, images.V1)
	ds.Spec.MinReadySeconds = 2
	for _, obj := range []client.Object{sts, d, ds} {
		create(t, obj)
	}
	waitForStatefulSetReady(t, sts)
	waitForDeploymentComplete(t, d)
	waitForDaemonSetComplete(t, ds)
	before := map[client.Object][]podView{sts: observe(t, sts), d: observeWorkload(t, d), ds: observeWorkload(t, ds)}

	setImage(t, sts, appContainer, images.V2)
	setTemplateImage(t, d, appContainer, images.V2)
	setTemplateImage(t, ds, appContainer, images.V2)
	waitForUpdateBegun(t, sts)
	restartDaemon(t, "kube-apiserver", "KILL")
	restarted := time.Now()
	eventually(t, managerTimeout, "the API server to answer again", func(ctx context.Context) error {
		return k8s.Get(ctx, client.ObjectKeyFromObject(sts), sts)
	})
	t.Logf("the API server answered %.1fs after it was killed", time.Since(restarted).Seconds())

	waitForRolloutComplete(t, sts)
	t.Logf("the StatefulSet's rollout completed %.1fs after the API server was killed", time.Since(restarted).Seconds())
	waitForDeploymentComplete(t, d)
	t.Logf("the Deployment's %.1fs after", time.Since(restarted).Seconds())
	waitForDaemonSetComplete(t, ds)
	t.Logf("the DaemonSet's %.1fs after", time.Since(restarted).Seconds())
	for _, obj := range []client.Object{sts, d, ds} {
		after := observeWorkload(t, obj)
		logPods(t, describeObject(obj), after)
		wantFinishedOnce(t, before[obj], after, images.V2)
	}
	waitForNoRecords(t, sts, d, ds)
	eventually(t, managerTimeout, "the manager serving again", managerServing)
}

// wantFinishedOnce checks a rollout that may have recreated pods: every pod
// Ready on image, and each pod kept from before restarted exactly once.
func wantFinishedOnce(t *testing.T, before, after []podView, image string) {
	t.Helper()
	was := map[types.UID]podView{}
	for _, b := range before {
		was[b.UID] = b
	}
	kept := 0
	for _, a := range after {
		if want := images.Serves(image); !a.Ready || a.Image != image || a.Version != want {
			t.Errorf("pod %s: Ready %t, image %s, serves %q; want Ready, %s, %q", a.Name, a.Ready, a.Image, a.Version, image, want)
		}
		b, ok := was[a.UID]
		if !ok {
			continue
		}
		kept++
		if a.Restarts != b.Restarts+1 {
			t.Errorf("pod %s kept: %d restarts, want %d (once for the update)", a.Name, a.Restarts, b.Restarts+1)
		}
	}
	t.Logf("%d of %d pods updated in place, %d recreated", kept, len(after), len(after)-kept)
}

// TestKubeletKilledMidUpdate kills the kubelet of the node of a pod whose
// update is under way, right after the manager patched its image (SIGKILL:
// no shutdown of its own), while the old container runs its preStop hook,
// and starts it again. The kubelet finds the pod's container on the old
// image and restarts it once; the update completes, the pod the same, and
// the rollout goes on in place.
func TestKubeletKilledMidUpdate(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("kubelet", ns, 3, images.V1, withMaxUnavailable(1), withPreStopSleep(3))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	// The pod's patch is seen from a watch: it is a moment's state, which
	// polling would miss.
	patchedCh := make(chan corev1.Pod, 1)
	stop := onPodEvents(t, ns, func(p *corev1.Pod) {
		if _, updating := p.Annotations[annotationUpdateState]; updating && p.Spec.Containers[0].Image == images.V2 {
			select {
			case patchedCh <- *p.DeepCopy():
			default:
			}
		}
	})
	defer stop()
	setImage(t, sts, appContainer, images.V2)
	var patched corev1.Pod
	select {
	case patched = <-patchedCh:
	case <-time.After(podTimeout):
		t.Fatal("no pod seen patched to v2 with its update under way")
	}
	kubelet := kubeletOf(patched.Spec.NodeName)
	restartDaemon(t, kubelet, "KILL")
	t.Logf("killed and restarted %s, the kubelet of %s, with %s mid-update", kubelet, patched.Spec.NodeName, patched.Name)

	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before, after, images.V2, 1)
	waitForNoRecords(t, sts)
	eventually(t, podTimeout, "the node "+patched.Spec.NodeName+" Ready", func(ctx context.Context) error {
		node := &corev1.Node{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: patched.Spec.NodeName}, node); err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready: %+v", node.Status.Conditions)
	})
}

// kubeletOf is the name e2e/cluster records a node's kubelet under.
func kubeletOf(node string) string {
	if n, ok := strings.CutPrefix(node, "inplace-e2e-node"); ok && n != "" {
		return "node" + n + "-kubelet"
	}
	return "kubelet"
}

// restartDaemon restarts one of the cluster's daemons with
// e2e/cluster/restart.sh.
func restartDaemon(t *testing.T, name, signal string) {
	t.Helper()
	root, err := repositoryRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), filepath.Join(root, "e2e/cluster/restart.sh"), name, signal).CombinedOutput()
	if err != nil {
		t.Fatalf("restarting %s: %v: %s", name, err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

// waitForNoRecords waits until the workloads carry no rollout record and
// their pods no update state: what a finished rollout leaves behind.
func waitForNoRecords(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, obj := range objs {
		eventually(t, answerTimeout, "no record left on "+describeObject(obj)+" or its pods", func(ctx context.Context) error {
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				return err
			}
			if r, ok := obj.GetAnnotations()[annotationRollout]; ok {
				return fmt.Errorf("the rollout record is still %s", r)
			}
			pods, err := workloadPods(ctx, obj)
			if err != nil {
				return err
			}
			for _, p := range pods {
				if s, ok := p.Annotations[annotationUpdateState]; ok {
					return fmt.Errorf("pod %s still records %s", p.Name, s)
				}
			}
			return nil
		})
	}
}

// withPreStopSleep gives the application container a preStop hook that
// sleeps, as pods that drain have: its stop takes that long.
func withPreStopSleep(seconds int64) stsOption {
	return func(s *appsv1.StatefulSet) {
		s.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To(seconds + 10)
		c := &s.Spec.Template.Spec.Containers[0]
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: seconds}}}
	}
}
