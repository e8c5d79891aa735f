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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A refused replacement is a promise that the manager is about to update
// the pod; whenever it cannot keep it, the replacement must pass. These
// tests break the manager's power to keep it in the ways a cluster does.

// TestRecordRefusedRollsOutAnyway: a policy lets nobody but the GitOps
// account change StatefulSets, so the manager's write of its rollout record
// is refused. The rollout goes on in place without it, and a Warning event
// says so; nothing waits on the record.
func TestRecordRefusedRollsOutAnyway(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	name := "gitops-only-" + ns
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"statefulsets"}},
				}}},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "request.userInfo.username != '" + managerUser + "'",
				Message:    "StatefulSets are changed through GitOps only (a test's policy)",
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
	sts := newStatefulSet("gitops", ns, 3, images.V1, withMaxUnavailable(1))
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	// The API server loads the policy asynchronously: wait until it refuses
	// the manager's identity (an impersonated dry run).
	eventually(t, answerTimeout, "the policy to refuse the manager's StatefulSet updates", func(ctx context.Context) error {
		cur := &appsv1.StatefulSet{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(sts), cur); err != nil {
			return err
		}
		base := cur.DeepCopy()
		// An annotation the manager may write (its own guard allows it).
		metav1.SetMetaDataAnnotation(&cur.ObjectMeta, "inplace.dev/e2e-probe", "x")
		err := asManager(t).Patch(ctx, cur, client.MergeFrom(base), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "GitOps only") {
			return fmt.Errorf("a dry-run update as the manager = %v, want refused by the policy", err)
		}
		return nil
	})
	before := observe(t, sts)

	setImage(t, sts, appContainer, images.V2)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	wantInPlace(t, before, after, images.V2, 1)
	wantEvents(t, ns, "InPlaceRolloutHalted", 1)
}

// TestHandPatchedPodRestartsNothing: a pod is hot-patched by hand to the
// image its StatefulSet is then changed to. Its update has nothing to
// restart: it is relabelled, Ready throughout, and the rollout goes on past
// it (web-0, on OrderedReady, after it).
func TestHandPatchedPodRestartsNothing(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("patched", ns, 3, images.V1, withMaxUnavailable(1))
	create(t, sts)
	waitForStatefulSetReady(t, sts)

	kubectl(t, "set", "image", "pod/patched-1", appContainer+"="+images.V2, "-n", ns)
	eventually(t, podTimeout, "patched-1 to run v2 by hand", func(ctx context.Context) error {
		pod := &corev1.Pod{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "patched-1"}, pod); err != nil {
			return err
		}
		// The new container answers before the kubelet's status says it
		// runs: wait for the restart to be counted too.
		if v := viewPod(t, pod); !v.Ready || v.Version != images.Serves(images.V2) || v.Restarts == 0 {
			return fmt.Errorf("Ready %t, serves %q, %d restarts", v.Ready, v.Version, v.Restarts)
		}
		return nil
	})
	before := observe(t, sts)
	r := watchReadiness(t, ns)
	setImage(t, sts, appContainer, images.V2)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "after", after)
	for i, p := range after {
		want := before[i].Restarts + 1
		if i == 1 {
			want = before[i].Restarts // it runs v2 already: nothing restarts
		}
		if p.UID != before[i].UID || p.Restarts != want || !p.Ready || p.Version != images.Serves(images.V2) {
			t.Errorf("pod %s: UID %s -> %s, restarts %d (want %d), Ready %t, serves %q", p.Name, before[i].UID, p.UID, p.Restarts, want, p.Ready, p.Version)
		}
	}
	for _, s := range r.stop() {
		if s.pod == "patched-1" {
			t.Errorf("patched-1 left Ready (%v): it had nothing to restart", s)
		}
	}
}

// TestEveryReplicaKilledAtOnce kills every manager replica abruptly (grace
// 0, no drain) while a pod is mid-update on an OrderedReady StatefulSet. The
// manager's Deployment brings replicas back, and they finish what was left:
// the rollout completes, no pod is left not Ready, no gate closed; the time
// it took is the bound a user can expect while the cluster can run the
// manager's pods (see docs: when it cannot, release-holds).
func TestEveryReplicaKilledAtOnce(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("killed", ns, 3, images.V1, withMaxUnavailable(1), withAnnotation(annotationGracePeriod, "2"))
	create(t, sts)
	waitForStatefulSetReady(t, sts)

	setImage(t, sts, appContainer, images.V2)
	waitForUpdateBegun(t, sts)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: managerDeployment}}
	get(t, d)
	pods, err := managerPods(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pods {
		if err := k8s.Delete(t.Context(), &pods[i], client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
	}
	killed := time.Now()
	t.Logf("killed every manager replica %s mid-update", podNames(pods))
	waitForRolloutComplete(t, sts)
	t.Logf("the rollout completed %.1fs after every replica was killed", time.Since(killed).Seconds())
	for _, p := range observe(t, sts) {
		if !p.Ready || p.Version != images.Serves(images.V2) || p.Gate == corev1.ConditionFalse {
			t.Errorf("pod %s: Ready %t, gate %q, serves %q; want Ready on v2, no gate closed", p.Name, p.Ready, p.Gate, p.Version)
		}
	}
	eventually(t, managerTimeout, "the manager serving again", managerServing)
}

// TestManagerDownMidRolloutEveryKind: the manager scaled to zero in the
// middle of a Deployment's and a DaemonSet's in-place rollout. The native
// controllers finish them from where they stand; nothing is left refused,
// gated or recorded. It stops the manager, so it does not run in parallel.
func TestManagerDownMidRolloutEveryKind(t *testing.T) {
	ns := newNamespace(t, optedIn)
	d := newDeployment("web", ns, 4, images.V1, withRollingUpdate("0", "1"))
	d.Spec.MinReadySeconds = 3
	ds := newDaemonSet("agent", ns, images.V1)
	ds.Spec.MinReadySeconds = 3
	create(t, d)
	create(t, ds)
	waitForDeploymentComplete(t, d)
	waitForDaemonSetComplete(t, ds)

	setTemplateImage(t, d, appContainer, images.V2)
	setTemplateImage(t, ds, appContainer, images.V2)
	waitForUpdated(t, d, 1)
	restore := stopManager(t)
	started := time.Now()
	waitForDeploymentComplete(t, d)
	waitForDaemonSetComplete(t, ds)
	t.Logf("the native controllers finished %.1fs after the manager was gone", time.Since(started).Seconds())
	for _, obj := range []client.Object{d, ds} {
		for _, p := range observeWorkload(t, obj) {
			if !p.Ready || p.Version != images.Serves(images.V2) || p.Gate == corev1.ConditionFalse {
				t.Errorf("pod %s: Ready %t, gate %q, serves %q; want Ready on v2, no gate closed", p.Name, p.Ready, p.Gate, p.Version)
			}
		}
	}
	restore()
	// The manager back: its next change is in place again, and the records
	// of the rollouts it lost are gone.
	for _, obj := range []client.Object{d, ds} {
		get(t, obj)
		if _, ok := obj.GetAnnotations()[annotationRollout]; ok {
			eventually(t, managerTimeout, "the rollout record of "+describeObject(obj)+" to be gone", func(ctx context.Context) error {
				if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
					return err
				}
				if r, ok := obj.GetAnnotations()[annotationRollout]; ok {
					return fmt.Errorf("still %s", r)
				}
				return nil
			})
		}
	}
	// The pods the ReplicaSet controller made while the manager was gone
	// were admitted without the pod webhook: no readiness gate, which a pod
	// cannot gain. The next rollout moves the gated ones in place and
	// recreates the others, gated; the one after is wholly in place.
	before := observeWorkload(t, d)
	gated := map[types.UID]bool{}
	for _, p := range before {
		gated[p.UID] = p.Gated
	}
	setTemplateImage(t, d, appContainer, images.V3)
	waitForDeploymentComplete(t, d)
	after := observeWorkload(t, d)
	kept := 0
	for _, p := range after {
		if !p.Gated || !p.Ready || p.Version != images.Serves(images.V3) {
			t.Errorf("pod %s: gated %t, Ready %t, serves %q; want every pod gated and Ready on v3", p.Name, p.Gated, p.Ready, p.Version)
		}
		if g, ok := gated[p.UID]; ok {
			kept++
			if !g {
				t.Errorf("pod %s has no gate and was kept: it cannot go in place", p.Name)
			}
		}
	}
	want := 0
	for _, g := range gated {
		if g {
			want++
		}
	}
	if kept != want {
		t.Errorf("%d pods kept through the rollout to v3, want the %d that carried the gate", kept, want)
	}
	t.Logf("after the manager came back: %d pods moved in place, %d without the gate recreated", kept, len(after)-kept)
	setTemplateImage(t, d, appContainer, images.V1)
	waitForDeploymentComplete(t, d)
	wantInPlaceByName(t, after, observeWorkload(t, d), images.V1, 1)
}

// TestLeaderKilledMidRolloutEveryKind kills the elected manager replica
// (grace 0) in the middle of a Deployment's and a DaemonSet's in-place
// rollouts: the other replica is elected and finishes them in place.
func TestLeaderKilledMidRolloutEveryKind(t *testing.T) {
	ns := newNamespace(t, optedIn)
	d := newDeployment("web", ns, 4, images.V1, withRollingUpdate("0", "1"))
	d.Spec.MinReadySeconds = 2
	ds := newDaemonSet("agent", ns, images.V1)
	ds.Spec.MinReadySeconds = 2
	create(t, d)
	create(t, ds)
	waitForDeploymentComplete(t, d)
	waitForDaemonSetComplete(t, ds)
	beforeD, beforeDS := observeWorkload(t, d), observeWorkload(t, ds)

	c := watchChurn(t, ns)
	setTemplateImage(t, d, appContainer, images.V2)
	setTemplateImage(t, ds, appContainer, images.V2)
	waitForUpdated(t, d, 1)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: managerLease}}
	get(t, lease)
	leader, _, _ := strings.Cut(ptr.Deref(lease.Spec.HolderIdentity, ""), "_")
	if err := k8s.Delete(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: leader}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatalf("killing the leader %s: %v", leader, err)
	}
	t.Logf("killed the leader %s mid-rollout", leader)
	waitForDeploymentComplete(t, d)
	waitForDaemonSetComplete(t, ds)
	wantInPlaceByName(t, beforeD, observeWorkload(t, d), images.V2, 1)
	wantInPlaceByName(t, beforeDS, observeWorkload(t, ds), images.V2, 1)
	wantNoChurn(t, c)
	eventually(t, managerTimeout, "the manager serving again", managerServing)
}

// TestDeploymentRoomTakenByAnUngatedPod: the pod webhook fails open for a
// moment at the start of a Deployment's rollout (maxSurge 0), so the
// ReplicaSet controller creates the new ReplicaSet's first pod without the
// readiness gate, while the old ReplicaSet's delete is refused for a move.
// That pod takes the room the move was for: the old pod is then an excess,
// and once the new ReplicaSet has had no room for NoRoomWindow (5 s), its
// delete passes. Before, the webhook went on refusing it while the
// Deployment controller would neither scale the new ReplicaSet up nor the
// old one down (an old ReplicaSet with more available pods than it wants
// is not "scaled down" to more), and the rollout stood still until the
// promise broke, 30 s on (make chaos: 64.8 and 72.5 s rollouts;
// hack/ungated-room.sh). Not parallel: the pod webhook is broken for every
// namespace meanwhile.
func TestDeploymentRoomTakenByAnUngatedPod(t *testing.T) {
	ns := newNamespace(t, optedIn)
	// A grace period holds the engine's first move for 5 s, as a real
	// workload's would: the ungated pod lands in the new ReplicaSet first.
	d := newDeployment("room", ns, 3, images.V1, withRollingUpdate("0", "1"), func(d *appsv1.Deployment) {
		metav1.SetMetaDataAnnotation(&d.ObjectMeta, "inplace.dev/grace-period-seconds", "5")
	})
	create(t, d)
	waitForDeploymentComplete(t, d)
	before := observeWorkload(t, d)

	// The pod webhook's Service port made one nothing listens on: its
	// calls fail, and its failurePolicy (Ignore) admits the pods ungated.
	setPort := func(port int32) {
		t.Helper()
		eventually(t, answerTimeout, fmt.Sprintf("the pod webhook's port set to %d", port), func(ctx context.Context) error {
			cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := k8s.Get(ctx, client.ObjectKey{Name: "inplace-mutating"}, cfg); err != nil {
				return err
			}
			for i := range cfg.Webhooks {
				if cfg.Webhooks[i].Name == "pods.mutate.inplace.dev" {
					cfg.Webhooks[i].ClientConfig.Service.Port = ptr.To(port)
				}
			}
			return k8s.Update(ctx, cfg)
		})
	}
	setPort(444)
	restored := false
	t.Cleanup(func() {
		if !restored {
			setPort(443)
		}
	})
	start := time.Now()
	setTemplateImage(t, d, appContainer, images.V2)
	ungated := 0
	eventually(t, answerTimeout, "a pod created without the gate", func(ctx context.Context) error {
		ungated = 0
		for _, p := range observeWorkload(t, d) {
			if !p.Gated {
				ungated++
			}
		}
		if ungated == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})
	setPort(443)
	restored = true
	waitForDeploymentComplete(t, d)
	t.Logf("rolled out %.1fs after the image change, %d pod(s) created without the gate", time.Since(start).Seconds(), ungated)

	after := observeWorkload(t, d)
	logPods(t, "after", after)
	kept := 0
	for _, p := range after {
		if !p.Ready || p.Version != images.Serves(images.V2) {
			t.Errorf("pod %s: Ready %t, serves %q; want Ready on v2", p.Name, p.Ready, p.Version)
		}
		for _, b := range before {
			if b.UID == p.UID {
				kept++
				if p.Restarts != b.Restarts+1 {
					t.Errorf("pod %s kept: %d restarts, want %d (updated in place once)", p.Name, p.Restarts, b.Restarts+1)
				}
			}
		}
	}
	// An ungated pod stands in for an old pod, deleted as an excess, unless
	// it is itself the new ReplicaSet's surplus; the other old pods moved.
	if want := len(before) - ungated; kept < want {
		t.Errorf("%d pods kept through the rollout, want at least %d (%d, less the %d created without the gate)", kept, want, len(before), ungated)
	}
	list := &corev1.EventList{}
	if err := k8s.List(t.Context(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.Reason == "InPlaceRolloutHalted" || e.Reason == "RecreatedNotInPlace" {
			t.Errorf("%s event on %s: %s (the rollout waited for a promise it could not keep)", e.Reason, e.InvolvedObject.Name, e.Message)
		}
	}
}
