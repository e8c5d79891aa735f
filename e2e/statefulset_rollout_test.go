//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// In-place rollouts of StatefulSets on a real kubelet: the user changes the
// image of a StatefulSet with nothing in-place-specific in it, in an opted-in
// namespace, and reads back what a user would: the same pod UIDs, RESTARTS 1,
// the new version answering, the StatefulSet's rollout complete and its
// partition back to what the user wrote.

const annotationGracePeriod = domain + "grace-period-seconds"

// TestSeedScenarioInPlace is the seed document's scenario on a native
// StatefulSet: 3 replicas, Parallel, maxUnavailable 2, v1 -> v2. The
// StatefulSet keeps the spec its user wrote: nothing is held back.
func TestSeedScenarioInPlace(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("sample", ns, 3, images.V1, withParallelPods(), withMaxUnavailable(2))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)
	logPods(t, "before", before)
	strategy := sts.Spec.UpdateStrategy.DeepCopy()

	setImage(t, sts, appContainer, images.V2)
	if !apiequality.Semantic.DeepEqual(&sts.Spec.UpdateStrategy, strategy) {
		t.Errorf("the update strategy changed: %+v, the user wrote %+v", sts.Spec.UpdateStrategy, strategy)
	}
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)

	wantInPlace(t, before, after, images.V2, 1)
	get(t, sts)
	if !apiequality.Semantic.DeepEqual(&sts.Spec.UpdateStrategy, strategy) {
		t.Errorf("the update strategy is %+v after the rollout, the user wrote %+v", sts.Spec.UpdateStrategy, strategy)
	}
	wantEvents(t, ns, "InPlaceUpdated", 3)
	wantEvents(t, ns, "InPlaceRolloutCompleted", 1)
}

// TestRolloutStatusTellsTheTruth watches an in-place rollout as a CD
// pipeline does: kubectl rollout status (the real one) returns, with
// success, only once every pod runs the new image and is Ready, and kstatus
// (Helm --wait, Flux) and Argo CD say InProgress and Progressing until then.
// OrderedReady with maxUnavailable 1, four pods: many steps to get wrong.
func TestRolloutStatusTellsTheTruth(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("truth", ns, 4, images.V1, withMaxUnavailable(1))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2)
	w := watchRolloutTo(t, sts, images.V2, before)
	w.finish(t)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before, after, images.V2, 1)
}

// TestOrderedReadyInPlace checks the order on OrderedReady with
// maxUnavailable 1: from the highest ordinal down, one pod at a time, each
// Ready again before the next leaves Ready.
func TestOrderedReadyInPlace(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("ordered", ns, 3, images.V1, withMaxUnavailable(1))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	w := watchReadiness(t, ns)
	setImage(t, sts, appContainer, images.V2)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before, after, images.V2, 1)

	spans := w.stop()
	t.Logf("not-Ready spans: %v", spans)
	var order []string
	for _, s := range spans {
		order = append(order, s.pod)
	}
	if want := []string{"ordered-2", "ordered-1", "ordered-0"}; !slices.Equal(order, want) {
		t.Errorf("pods left Ready in the order %v, want %v", order, want)
	}
	for i := 1; i < len(spans); i++ {
		if spans[i].from.Before(spans[i-1].to) {
			t.Errorf("%s left Ready at %v, before %s was Ready again at %v: more than maxUnavailable 1 at once",
				spans[i].pod, spans[i].from.Format(time.StampMilli), spans[i-1].pod, spans[i-1].to.Format(time.StampMilli))
		}
	}
}

// TestPartitionCanary rolls v2 out to the pod above a partition of 2, as a
// canary, then lowers the partition to 0: every pod is updated in place, the
// canary first, the others when the partition comes down, and kubectl
// rollout status reports each step as the StatefulSet controller counts it.
func TestPartitionCanary(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("canary", ns, 3, images.V1, withParallelPods(), withMaxUnavailable(2), withPartition(2))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2)
	eventually(t, podTimeout, "the canary updated", func(ctx context.Context) error {
		cur := &appsv1.StatefulSet{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(sts), cur); err != nil {
			return err
		}
		if cur.Status.UpdatedReplicas != 1 || cur.Status.ReadyReplicas != 3 {
			return fmt.Errorf("%d updated, %d Ready", cur.Status.UpdatedReplicas, cur.Status.ReadyReplicas)
		}
		if record, ok := cur.Annotations[annotationRollout]; ok {
			return fmt.Errorf("the manager still records a rollout: %s", record)
		}
		return nil
	})
	canary := observe(t, sts)
	logPods(t, "canary", canary)
	wantInPlace(t, before[2:], canary[2:], images.V2, 1)
	for _, p := range canary[:2] {
		if b := before[ordinal(p.Name)]; p.UID != b.UID || p.Restarts != 0 || p.Version != images.Serves(images.V1) {
			t.Errorf("pod %s (below the partition) was touched: UID %s -> %s, %d restarts, serves %q", p.Name, b.UID, p.UID, p.Restarts, p.Version)
		}
	}
	wantPartition(t, sts, 2)

	update(t, sts, func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To[int32](0) })
	w := watchRolloutTo(t, sts, images.V2, before)
	w.finish(t)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before, after, images.V2, 1)
	wantPartition(t, sts, 0)
}

// TestNotInPlaceChangesAreRecreated hands what live pods cannot take to the
// native controller, whose deletes the webhook lets through: an env change;
// an image and env change together; an init container's image (the kubelet
// never runs an init container again on a live pod); and kubectl rollout
// restart (a pod annotation that restarts every container). Every pod is
// recreated and the rollout reads as complete.
func TestNotInPlaceChangesAreRecreated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   []stsOption
		change func(t *testing.T, sts *appsv1.StatefulSet)
		serves string
	}{
		{name: "env only", serves: images.Serves(images.V1), change: func(t *testing.T, sts *appsv1.StatefulSet) {
			update(t, sts, func(s *appsv1.StatefulSet) {
				c := &s.Spec.Template.Spec.Containers[0]
				c.Env = append(c.Env, corev1.EnvVar{Name: "MODE", Value: "fast"})
			})
		}},
		{name: "image and env", serves: images.Serves(images.V2), change: func(t *testing.T, sts *appsv1.StatefulSet) {
			update(t, sts, func(s *appsv1.StatefulSet) {
				c := &s.Spec.Template.Spec.Containers[0]
				c.Env = append(c.Env, corev1.EnvVar{Name: "MODE", Value: "fast"})
				c.Image = images.V2
			})
		}},
		{name: "init container image", opts: []stsOption{withInitContainer(images.V1)}, serves: images.Serves(images.V1),
			change: func(t *testing.T, sts *appsv1.StatefulSet) {
				update(t, sts, func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.InitContainers[0].Image = images.V2 })
			}},
		{name: "kubectl rollout restart", serves: images.Serves(images.V1), change: func(t *testing.T, sts *appsv1.StatefulSet) {
			kubectl(t, "rollout", "restart", "statefulset/"+sts.Name, "-n", sts.Namespace)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t, optedIn)
			sts := newStatefulSet("web", ns, 2, images.V1, append([]stsOption{withParallelPods(), withMaxUnavailable(2)}, tc.opts...)...)
			create(t, sts)
			waitForStatefulSetReady(t, sts)
			before := observe(t, sts)

			tc.change(t, sts)
			waitForRolloutComplete(t, sts)
			after := observe(t, sts)
			logPods(t, "after", after)
			for i := range after {
				if after[i].UID == before[i].UID || after[i].Restarts != 0 || after[i].Version != tc.serves {
					t.Errorf("pod %s: UID %s -> %s, %d restarts, serves %q; want a new pod, 0 restarts, %q",
						after[i].Name, before[i].UID, after[i].UID, after[i].Restarts, after[i].Version, tc.serves)
				}
			}
		})
	}
}

// TestRetagToTheSameDigestCompletes changes v2 to a tag of the very same
// image: the containers restart in place and the rollout completes, where a
// completion check on the image ID or on the reported image name hangs.
func TestRetagToTheSameDigestCompletes(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("retag", ns, 2, images.V2, withParallelPods(), withMaxUnavailable(2))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2Retag)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before, after, images.V2Retag, 1)
	for i := range after {
		if after[i].ImageID != before[i].ImageID {
			t.Logf("pod %s: image ID %s -> %s", after[i].Name, before[i].ImageID, after[i].ImageID)
		}
	}
}

// TestBadImageHaltsAndRollsBackInPlace rolls v2 -> bad (an image that exits
// at once) -> v2. The bad image halts the rollout at maxUnavailable: one pod
// fails, the others stay on v2 and Ready, the failure is told in events on
// the pod and the StatefulSet and in the rollout record. Changing the image back rolls
// the failed pod back in place.
func TestBadImageHaltsAndRollsBackInPlace(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("rollback", ns, 3, images.V2, withMaxUnavailable(1))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.Bad)
	waitForRecordedFailure(t, sts, "CrashLoopBackOff")
	wantEvents(t, ns, "InPlaceUpdateFailed", 1)
	wantEvents(t, ns, "InPlaceRolloutHalted", 1)
	halted := observe(t, sts)
	logPods(t, "halted", halted)
	if halted[2].Ready {
		t.Errorf("pod %s, on the bad image, is Ready", halted[2].Name)
	}
	for _, p := range halted[:2] {
		if !p.Ready || p.UID != before[ordinal(p.Name)].UID || p.Version != images.Serves(images.V2) {
			t.Errorf("pod %s was touched past maxUnavailable: Ready %t, serves %q", p.Name, p.Ready, p.Version)
		}
	}

	setImage(t, sts, appContainer, images.V2)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "rolled back", after)
	for i, p := range after {
		if p.UID != before[i].UID || p.Version != images.Serves(images.V2) {
			t.Errorf("pod %s: UID %s -> %s, serves %q; want the same pod serving v2", p.Name, before[i].UID, p.UID, p.Version)
		}
	}
	wantPartition(t, sts, 0)
}

// TestManagerRestartMidRollout deletes every manager pod while a rollout is
// under way: a pod's gate closed, its grace period (2 s) not over. Until
// the new replicas serve, the webhook fails open and the StatefulSet
// controller may recreate the pod it was at; the new manager resumes from
// the state on the objects, and the rollout completes with every pod on the
// new image, its gate open, Ready: none is left not ready. (That the
// manager resumes an update in place is TestLeaderKilledMidUpdate's: there
// the other replica serves throughout.)
func TestManagerRestartMidRollout(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("resume", ns, 3, images.V1, withMaxUnavailable(1), withAnnotation(annotationGracePeriod, "2"))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2)
	waitForUpdateBegun(t, sts)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: managerDeployment}}
	get(t, d)
	pods, err := managerPods(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pods {
		if err := k8s.Delete(t.Context(), &pods[i]); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
	}
	t.Logf("deleted the manager's pods %s mid-rollout", podNames(pods))

	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	inPlace := 0
	for i, p := range after {
		// A pod recreated while no replica served has no gate (fail open).
		if !p.Ready || p.Version != images.Serves(images.V2) || p.Gate == corev1.ConditionFalse {
			t.Errorf("pod %s: Ready %t, gate %q, serves %q; want Ready on v2, no gate closed", p.Name, p.Ready, p.Gate, p.Version)
		}
		if p.UID == before[i].UID && p.Restarts == before[i].Restarts+1 {
			inPlace++
		}
	}
	t.Logf("%d of 3 pods updated in place, the others recreated while no manager replica served", inPlace)
	eventually(t, managerTimeout, "the manager serving again", managerServing)
}

// TestScaleDownMidRollout: a StatefulSet scaled down and given a new image
// in one edit. The pods above the new replicas go (the pod webhook lets the
// scale-down's deletes through on its cache alone, refusing none); the pods
// that stay are updated in place.
func TestScaleDownMidRollout(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("shrink", ns, 4, images.V1, withMaxUnavailable(1))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	update(t, sts, func(s *appsv1.StatefulSet) {
		s.Spec.Replicas = ptr.To[int32](2)
		for i := range s.Spec.Template.Spec.Containers {
			if c := &s.Spec.Template.Spec.Containers[i]; c.Name == appContainer {
				c.Image = images.V2
			}
		}
	})
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before[:2], after, images.V2, 1)

	events := &corev1.EventList{}
	if err := k8s.List(t.Context(), events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		if e.Reason == "FailedDelete" && (strings.Contains(e.Message, sts.Name+"-2") || strings.Contains(e.Message, sts.Name+"-3")) {
			t.Errorf("a scale-down's delete was refused: %s", e.Message)
		}
	}
}

// wantInPlace checks what a user checks after an in-place rollout: every
// pod the same (UID, IP and node), its container restarted restarts times
// more, Ready, and serving the image's version.
func wantInPlace(t *testing.T, before, after []podView, image string, restarts int32) {
	t.Helper()
	if len(after) != len(before) {
		t.Fatalf("%d pods after, %d before", len(after), len(before))
	}
	for i := range after {
		b, a := before[i], after[i]
		if a.UID != b.UID {
			t.Errorf("pod %s was recreated: UID %s -> %s", a.Name, b.UID, a.UID)
		}
		if a.Restarts != b.Restarts+restarts {
			t.Errorf("pod %s: %d restarts, want %d", a.Name, a.Restarts, b.Restarts+restarts)
		}
		if want := images.Serves(image); !a.Ready || a.Version != want || a.Image != image {
			t.Errorf("pod %s: Ready %t, image %s, serves %q; want Ready, %s, %q", a.Name, a.Ready, a.Image, a.Version, image, want)
		}
		if a.IP != b.IP {
			t.Errorf("pod %s changed IP: %s -> %s", a.Name, b.IP, a.IP)
		}
		// Implied by the UID (a pod's node never changes), stated as a
		// DaemonSet's user reads it.
		if a.Node != b.Node {
			t.Errorf("pod %s changed node: %s -> %s", a.Name, b.Node, a.Node)
		}
	}
}

// withInitContainer adds an init container "setup" running the test
// application's image, which prints its version and exits.
func withInitContainer(image string) stsOption {
	return func(s *appsv1.StatefulSet) {
		s.Spec.Template.Spec.InitContainers = append(s.Spec.Template.Spec.InitContainers, corev1.Container{
			Name: "setup", Image: image, ImagePullPolicy: corev1.PullNever, Args: []string{"-exit"},
		})
	}
}

// kubectl runs the cluster's kubectl as a user would, and fails the test if
// it fails.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), tool(t, "E2E_KUBECTL", "kubectl"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// wantPartition checks the StatefulSet's partition is still the user's.
func wantPartition(t *testing.T, sts *appsv1.StatefulSet, want int32) {
	t.Helper()
	get(t, sts)
	got := int32(0)
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		got = ptr.Deref(ru.Partition, 0)
	}
	if got != want {
		t.Errorf("partition %d, want the user's %d", got, want)
	}
}

// waitForRecordedFailure waits for the workload's rollout record to tell its
// rollout halted, its failure saying each of what.
func waitForRecordedFailure(t *testing.T, obj client.Object, what ...string) {
	t.Helper()
	eventually(t, podTimeout, "the rollout to halt with its failure on "+describeObject(obj), func(ctx context.Context) error {
		cur := obj.DeepCopyObject().(client.Object)
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return err
		}
		record := cur.GetAnnotations()[annotationRollout]
		for _, w := range what {
			if !strings.Contains(record, w) {
				return fmt.Errorf("the rollout record %q does not say %q yet", record, w)
			}
		}
		return nil
	})
}

// wantEvents waits for at least n events of the reason in the namespace.
func wantEvents(t *testing.T, ns, reason string, n int) {
	t.Helper()
	wantEventsSaying(t, ns, reason, "", n)
}

// wantEventsSaying waits for at least n events of the reason in the
// namespace whose message says what.
func wantEventsSaying(t *testing.T, ns, reason, what string, n int) {
	t.Helper()
	eventually(t, answerTimeout, fmt.Sprintf("%d %s events saying %q", n, reason, what), func(ctx context.Context) error {
		list := &corev1.EventList{}
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		got := 0
		for _, e := range list.Items {
			if e.Reason == reason && strings.Contains(e.Message, what) {
				got++
			}
		}
		if got < n {
			return fmt.Errorf("%d of %d", got, n)
		}
		return nil
	})
}

// withPartition sets the user's rollingUpdate.partition.
func withPartition(p int32) stsOption {
	return func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		if s.Spec.UpdateStrategy.RollingUpdate == nil {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
		s.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To(p)
	}
}

// update changes a StatefulSet as kubectl edit would, retrying on conflict,
// and leaves sts as the API server returned it.
func update(t *testing.T, sts *appsv1.StatefulSet, change func(*appsv1.StatefulSet)) {
	t.Helper()
	eventually(t, answerTimeout, "the update of "+describeObject(sts), func(ctx context.Context) error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(sts), sts); err != nil {
			return err
		}
		change(sts)
		return k8s.Update(ctx, sts)
	})
}

// readinessSpan is a stretch of time a pod was not Ready.
type readinessSpan struct {
	pod      string
	from, to time.Time
}

func (s readinessSpan) String() string {
	return fmt.Sprintf("%s %s..%s", s.pod, s.from.Format("15:04:05.000"), s.to.Format("15:04:05.000"))
}

type readinessWatch struct {
	stop func() []readinessSpan
}

// watchReadiness records, from a watch, when each pod of the namespace left
// Ready and came back, until stop is called.
func watchReadiness(t *testing.T, ns string) readinessWatch {
	t.Helper()
	var spans []readinessSpan
	open := map[types.UID]*readinessSpan{}
	stopWatch := onPodEvents(t, ns, func(pod *corev1.Pod) {
		if isPrepull(pod) {
			return
		}
		now := time.Now()
		ready := podReady(pod)
		if s := open[pod.UID]; s != nil && ready {
			s.to = now
			spans = append(spans, *s)
			delete(open, pod.UID)
		} else if s == nil && !ready {
			open[pod.UID] = &readinessSpan{pod: pod.Name, from: now}
		}
	})
	return readinessWatch{stop: func() []readinessSpan {
		stopWatch()
		slices.SortFunc(spans, func(a, b readinessSpan) int { return a.from.Compare(b.from) })
		return spans
	}}
}

// TestUngatedPodIsRecreated mixes pods with and without the gate: one is
// created while the manager is down, so it has no gate and cannot be
// updated in place. The image change updates the gated pods in place and
// hands the ungated one to the StatefulSet controller, which recreates it
// (with the gate, now that the manager is back).
//
// It stops the manager, so it must not run in parallel with other tests.
func TestUngatedPodIsRecreated(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("mixed", ns, 2, images.V1, withParallelPods(), withMaxUnavailable(2))
	create(t, sts)
	waitForStatefulSetReady(t, sts)

	restore := stopManager(t)
	scale(t, sts, 3)
	get(t, sts)
	waitForStatefulSetReady(t, sts)
	restore()
	before := observe(t, sts)
	logPods(t, "before", before)
	if !before[0].Gated || !before[1].Gated || before[2].Gated {
		t.Fatalf("want pods 0 and 1 gated and pod 2 not: %t %t %t", before[0].Gated, before[1].Gated, before[2].Gated)
	}

	setImage(t, sts, appContainer, images.V2)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before[:2], after[:2], images.V2, 1)
	if p := after[2]; p.UID == before[2].UID || p.Version != images.Serves(images.V2) || !p.Gated {
		t.Errorf("pod %s: UID %s -> %s, serves %q, gated %t; want a new pod with the gate serving v2", p.Name, before[2].UID, p.UID, p.Version, p.Gated)
	}
	wantEvents(t, ns, "RecreatedNotInPlace", 1)
	wantPartition(t, sts, 0)
}
