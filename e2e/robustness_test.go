//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Nothing may be left stuck: a rollout in place must be able to roll out a
// fix, to be rolled back, to meet scaling and deletes, and to lose its
// manager, and still end as a native rollout would, with no pod left not
// Ready.

// TestCrashLoopingRevisionFixedInPlace: every pod crash-loops on the first
// revision; a fixed image rolls out in place to all of them at once, whatever
// maxUnavailable (they are down already). On OrderedReady only the first pod
// exists (the next wait for it to be Ready); it is fixed in place, and the
// others are created on the fix.
func TestCrashLoopingRevisionFixedInPlace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		parallel bool
		existing int
	}{
		{name: "Parallel", parallel: true, existing: 3},
		{name: "OrderedReady", existing: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t, optedIn)
			opts := []stsOption{withMaxUnavailable(1)}
			if tc.parallel {
				opts = append(opts, withParallelPods())
			}
			sts := newStatefulSet("broken", ns, 3, images.Bad, opts...)
			create(t, sts)
			crashing := waitForCrashLoop(t, sts, tc.existing)

			setImage(t, sts, appContainer, images.V2)
			waitForRolloutComplete(t, sts)
			after := observe(t, sts)
			logPods(t, "after", after)
			for _, p := range after {
				if !p.Ready || p.Version != images.Serves(images.V2) {
					t.Errorf("pod %s: Ready %t, serves %q; want Ready on v2", p.Name, p.Ready, p.Version)
				}
				if uid, ok := crashing[p.Name]; ok && p.UID != uid {
					t.Errorf("pod %s was recreated (UID %s -> %s), not fixed in place", p.Name, uid, p.UID)
				}
			}
		})
	}
}

// waitForCrashLoop waits until n pods of the StatefulSet have restarted at
// least twice, and returns their UIDs by name.
func waitForCrashLoop(t *testing.T, sts *appsv1.StatefulSet, n int) map[string]types.UID {
	t.Helper()
	uids := map[string]types.UID{}
	eventually(t, podTimeout, fmt.Sprintf("%d pods crash-looping", n), func(ctx context.Context) error {
		pods, err := statefulSetPods(ctx, sts)
		if err != nil {
			return err
		}
		clear(uids)
		for _, p := range pods {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.RestartCount >= 2 {
					uids[p.Name] = p.UID
				}
			}
		}
		if len(uids) < n {
			return fmt.Errorf("%d of %d crash-looping", len(uids), n)
		}
		return nil
	})
	return uids
}

// TestNeverReadyRevisionRolledBack: the new image runs and never becomes
// ready. The rollout halts at maxUnavailable 1 with the other pods
// untouched, and setting the image back rolls the pod back in place.
func TestNeverReadyRevisionRolledBack(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("unready", ns, 3, images.V1, withMaxUnavailable(1))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.Unready)
	eventually(t, podTimeout, "the top pod to run the never-ready image", func(ctx context.Context) error {
		pod := &corev1.Pod{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "unready-2"}, pod); err != nil {
			return err
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == appContainer && cs.RestartCount == 1 && cs.State.Running != nil && !cs.Ready {
				return nil
			}
		}
		return fmt.Errorf("not yet: %s", whyNotReady(pod))
	})
	time.Sleep(5 * time.Second) // time enough for a rollout that does not halt to go on
	halted := observe(t, sts)
	logPods(t, "halted", halted)
	for _, p := range halted[:2] {
		if b := before[ordinal(p.Name)]; !p.Ready || p.UID != b.UID || p.Restarts != 0 || p.Version != images.Serves(images.V1) {
			t.Errorf("pod %s was touched past maxUnavailable: Ready %t, %d restarts, serves %q", p.Name, p.Ready, p.Restarts, p.Version)
		}
	}
	if halted[2].Ready {
		t.Errorf("pod %s, on the never-ready image, is Ready", halted[2].Name)
	}

	setImage(t, sts, appContainer, images.V1)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "rolled back", after)
	for i, p := range after {
		if p.UID != before[i].UID || !p.Ready || p.Version != images.Serves(images.V1) {
			t.Errorf("pod %s: UID %s -> %s, Ready %t, serves %q; want the same pod Ready on v1", p.Name, before[i].UID, p.UID, p.Ready, p.Version)
		}
	}
	if r := after[2].Restarts; r != 2 {
		t.Errorf("pod %s restarted %d times, want 2 (to the never-ready image and back)", after[2].Name, r)
	}
}

// TestScaleUpAndDownMidRollout scales a StatefulSet up and then down while
// its pods are updated in place: the new pods are created on the new
// revision, the removed ones go, and the rollout completes with the pods
// that stay updated in place.
func TestScaleUpAndDownMidRollout(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("scaled", ns, 4, images.V1, withMaxUnavailable(1), withAnnotation(annotationGracePeriod, "2"))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2)
	waitForUpdateBegun(t, sts)
	scale(t, sts, 6)
	eventually(t, podTimeout, "six pods", func(ctx context.Context) error {
		pods, err := statefulSetPods(ctx, sts)
		if err != nil {
			return err
		}
		if len(pods) != 6 {
			return fmt.Errorf("%d pods", len(pods))
		}
		return nil
	})
	scale(t, sts, 3)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before[:3], after, images.V2, 1)
}

// waitForUpdateBegun waits until one of the StatefulSet's pods is being
// updated in place: its gate closed, which lasts its grace period and the
// restart. Not its update state: the manager records that with the image
// patch and removes it once the new containers are Ready, a moment with an
// image already on the node, which polling misses (it failed
// TestManagerRestartMidRollout once in a few runs).
func waitForUpdateBegun(t *testing.T, sts *appsv1.StatefulSet) string {
	t.Helper()
	var name string
	eventually(t, podTimeout, "a pod's in-place update to begin", func(ctx context.Context) error {
		pods, err := statefulSetPods(ctx, sts)
		if err != nil {
			return err
		}
		for _, p := range pods {
			if g := podCondition(&p, gateCondition); g != nil && g.Status == corev1.ConditionFalse {
				name = p.Name
				return nil
			}
		}
		return fmt.Errorf("no pod updating yet: %s", describeUpdates(pods))
	})
	return name
}

// TestPodDeletedMidUpdate: a user deletes a pod in the middle of its
// in-place update. The StatefulSet controller recreates it on the new
// revision, and the rollout goes on in place for the others.
func TestPodDeletedMidUpdate(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("deleted", ns, 3, images.V1, withMaxUnavailable(1), withAnnotation(annotationGracePeriod, "3"))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2)
	victim := waitForUpdateBegun(t, sts)
	deletePod(t, ns, victim)
	t.Logf("deleted %s mid-update", victim)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	for i, p := range after {
		if p.Name == victim {
			if p.UID == before[i].UID || !p.Ready || p.Version != images.Serves(images.V2) {
				t.Errorf("deleted pod %s: UID %s -> %s, Ready %t, serves %q; want a new pod Ready on v2", p.Name, before[i].UID, p.UID, p.Ready, p.Version)
			}
			continue
		}
		wantInPlace(t, before[i:i+1], after[i:i+1], images.V2, 1)
	}
}

// TestLeaderKilledMidUpdate kills the elected manager replica (no graceful
// shutdown, as a crashed node) in the middle of a pod's update. The other
// replica is elected once the lease expires and finishes the rollout in
// place; no pod is left not Ready. It kills a manager pod, so it does not
// run in parallel with the other tests.
func TestLeaderKilledMidUpdate(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("leader", ns, 3, images.V1, withMaxUnavailable(1), withAnnotation(annotationGracePeriod, "2"))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2)
	waitForUpdateBegun(t, sts)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: managerLease}}
	get(t, lease)
	leader, _, _ := strings.Cut(ptr.Deref(lease.Spec.HolderIdentity, ""), "_")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: leader}}
	if err := k8s.Delete(t.Context(), pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatalf("killing the leader %s: %v", leader, err)
	}
	t.Logf("killed the leader %s mid-update", leader)

	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before, after, images.V2, 1)
	eventually(t, managerTimeout, "the manager serving again", managerServing)
}

// TestManagerRolledMidRollout: the manager's own rolling update (kubectl
// rollout restart, as a helm upgrade makes one) in the middle of an
// in-place rollout. A replica serves throughout (the manager's maxUnavailable
// is 0), so no webhook call may fail open, and every pod is updated in place,
// none recreated. A stopping replica's keep-alive connections used to fail
// the API server's calls on them as its webhook server shut down ("write:
// broken pipe"), and a refused delete passed: seen after a helm upgrade. It
// restarts the manager, so it does not run in parallel with the other tests.
func TestManagerRolledMidRollout(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("rolled", ns, 6, images.V1, withAnnotation(annotationGracePeriod, "2"))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2)
	waitForUpdateBegun(t, sts)
	kubectl(t, "rollout", "restart", "deployment/"+managerDeployment, "-n", managerNamespace)
	restarted := time.Now()
	t.Log("restarting the manager mid-rollout, one replica at a time")

	waitForRolloutComplete(t, sts)
	rolledOut := time.Since(restarted)
	eventually(t, managerTimeout, "the manager serving again", managerServing)
	t.Logf("the rollout completed %.1fs after the manager's restart began, which took %.1fs", rolledOut.Seconds(), time.Since(restarted).Seconds())
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before, after, images.V2, 1)
}

// TestManagerDownMidRollout scales the manager to zero in the middle of a
// rollout. The elected replica opens, as it stops, the gates its updates
// held closed; with the webhooks gone the StatefulSet controller finishes
// the rollout as it always has, within a bounded time, and no pod is left
// not Ready. It stops the manager, so it does not run in parallel.
func TestManagerDownMidRollout(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("down", ns, 3, images.V1, withMaxUnavailable(1), withAnnotation(annotationGracePeriod, "3"))
	create(t, sts)
	waitForStatefulSetReady(t, sts)

	setImage(t, sts, appContainer, images.V2)
	waitForUpdateBegun(t, sts)
	restore := stopManager(t)
	started := time.Now()
	waitForRolloutComplete(t, sts)
	t.Logf("the StatefulSet controller finished the rollout %.1fs after the manager was gone", time.Since(started).Seconds())
	after := observe(t, sts)
	logPods(t, "after", after)
	for _, p := range after {
		if !p.Ready || p.Version != images.Serves(images.V2) || p.Gate == corev1.ConditionFalse {
			t.Errorf("pod %s: Ready %t, gate %q, serves %q; want Ready on v2, no gate closed", p.Name, p.Ready, p.Gate, p.Version)
		}
	}
	restore()
}

// TestRefusedPatchIsRecreated: another admission policy refuses the
// manager's image patch (here a ValidatingAdmissionPolicy on pod updates).
// The pod is not left not Ready: the manager deletes it, with a Warning
// event, and the StatefulSet controller recreates it on the new revision.
func TestRefusedPatchIsRecreated(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	name := "refuse-image-patches-" + ns
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}}},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "object.spec.containers.all(c, oldObject.spec.containers.exists(o, o.name == c.name && o.image == c.image))",
				Message:    "images are changed by redeploying only (a test's policy)",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: name, ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	for _, obj := range []client.Object{policy, binding} {
		create(t, obj)
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
	}

	sts := newStatefulSet("refused", ns, 2, images.V1, withParallelPods(), withMaxUnavailable(2))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	// The API server loads a new policy asynchronously: wait until it
	// refuses an image change (a dry run) rather than a fixed time.
	eventually(t, answerTimeout, "the policy to refuse an image patch", func(ctx context.Context) error {
		pod := &corev1.Pod{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: sts.Name + "-0"}, pod); err != nil {
			return err
		}
		base := pod.DeepCopy()
		pod.Spec.Containers[0].Image = images.V2
		err := k8s.Patch(ctx, pod, client.MergeFrom(base), client.DryRunAll)
		if !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) {
			return fmt.Errorf("a dry-run image patch = %v, want refused", err)
		}
		return nil
	})
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	for i, p := range after {
		if p.UID == before[i].UID || !p.Ready || p.Version != images.Serves(images.V2) {
			t.Errorf("pod %s: UID %s -> %s, Ready %t, serves %q; want a new pod Ready on v2", p.Name, before[i].UID, p.UID, p.Ready, p.Version)
		}
	}
	wantEvents(t, ns, "RecreatedNotInPlace", 2)
}

// TestHandedBackMidRollout takes a workload out of inplace's hands in the
// middle of a rollout, as a user would: the namespace's label removed, or
// the workload annotated Recreate. The updates in flight finish or are
// abandoned, the StatefulSet controller rolls the rest out natively, and no
// pod is left not Ready.
func TestHandedBackMidRollout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		handOff func(t *testing.T, ns string, sts *appsv1.StatefulSet)
	}{
		{"namespace unlabelled", func(t *testing.T, ns string, _ *appsv1.StatefulSet) {
			n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
			patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"inplace.dev/enabled":null}}}`))
			if err := k8s.Patch(t.Context(), n, patch); err != nil {
				t.Fatal(err)
			}
		}},
		{"workload annotated Recreate", func(t *testing.T, _ string, sts *appsv1.StatefulSet) {
			update(t, sts, func(s *appsv1.StatefulSet) { s.Annotations[annotationUpdatePolicy] = "Recreate" })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t, optedIn)
			sts := newStatefulSet("handed", ns, 3, images.V1, withMaxUnavailable(1), withAnnotation(annotationGracePeriod, "2"))
			create(t, sts)
			waitForStatefulSetReady(t, sts)

			setImage(t, sts, appContainer, images.V2)
			waitForUpdateBegun(t, sts)
			tc.handOff(t, ns, sts)
			waitForRolloutComplete(t, sts)
			after := observe(t, sts)
			logPods(t, "after", after)
			for _, p := range after {
				if !p.Ready || p.Version != images.Serves(images.V2) || p.Gate == corev1.ConditionFalse {
					t.Errorf("pod %s: Ready %t, gate %q, serves %q; want Ready on v2, no gate closed", p.Name, p.Ready, p.Gate, p.Version)
				}
			}
		})
	}
}

// TestHoldOfAnEarlierVersionIsReleased: a StatefulSet held by an earlier
// version of inplace (its partition raised to replicas, the user's recorded
// in the hold annotation), as after an upgrade. The manager restores the
// user's partition and removes the hold.
func TestHoldOfAnEarlierVersionIsReleased(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, unlabelled) // the hold is written past the webhook
	sts := newStatefulSet("legacy", ns, 3, images.V1, withPartition(3),
		withAnnotation(annotationHold, `{"since":"2026-11-01T00:00:00Z","reason":"InPlaceRollout","partition":1}`))
	create(t, sts)
	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := k8s.Patch(t.Context(), n, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"inplace.dev/enabled":"true"}}}`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, answerTimeout, "the hold released", func(ctx context.Context) error {
		cur := &appsv1.StatefulSet{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(sts), cur); err != nil {
			return err
		}
		if _, held := cur.Annotations[annotationHold]; held {
			return fmt.Errorf("still held")
		}
		if p := ptr.Deref(cur.Spec.UpdateStrategy.RollingUpdate.Partition, -1); p != 1 {
			return fmt.Errorf("partition %d, want the user's 1", p)
		}
		return nil
	})
	wantEvents(t, ns, "HoldReleased", 1)
}
