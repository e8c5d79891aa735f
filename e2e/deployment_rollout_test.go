//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// In-place rollouts of Deployments on a real kubelet: the user changes the
// image of a Deployment with nothing in-place-specific in it, and reads back
// what a user would: the same pods (names, UIDs, IPs), RESTARTS 1, the new
// version answering, no pod created or deleted, the Deployment's rollout
// complete as kubectl and the CD tools judge it, one ReplicaSet with the
// replicas, the history and `rollout undo` as always.

// TestDeploymentInPlace rolls a 4-replica Deployment (the default 25%/25%:
// maxUnavailable 1) to v2 in place, watched by the real kubectl rollout
// status, kstatus and Argo CD's health, then undoes it, in place too.
func TestDeploymentInPlace(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	d := newDeployment("web", ns, 4, images.V1)
	create(t, d)
	waitForDeploymentComplete(t, d)
	before := observeWorkload(t, d)
	logPods(t, "before", before)

	c := watchChurn(t, ns)
	setTemplateImage(t, d, appContainer, images.V2)
	w := watchRolloutTo(t, d, images.V2, before)
	w.finish(t)
	waitForDeploymentComplete(t, d)
	after := observeWorkload(t, d)
	logPods(t, "after", after)
	wantInPlaceByName(t, before, after, images.V2, 1)
	wantNoChurn(t, c)
	wantReplicaSets(t, d, 2, 1)
	if out := kubectl(t, "rollout", "history", "deployment/"+d.Name, "-n", ns); !strings.Contains(out, "\n1 ") || !strings.Contains(out, "\n2 ") {
		t.Errorf("kubectl rollout history lists %q, want revisions 1 and 2", out)
	}
	wantEvents(t, ns, "InPlaceRolloutCompleted", 1)

	// kubectl rollout undo: back to v1, in place, as a user's most common
	// incident command.
	c = watchChurn(t, ns)
	kubectl(t, "rollout", "undo", "deployment/"+d.Name, "-n", ns)
	get(t, d)
	waitForDeploymentComplete(t, d)
	undone := observeWorkload(t, d)
	logPods(t, "undone", undone)
	wantInPlaceByName(t, after, undone, images.V1, 1)
	wantNoChurn(t, c)
}

// TestDeploymentNamespaceLabelledLater: a Deployment rolled before its
// namespace was labelled keeps an old ReplicaSet, at rest, that the manager
// cached without its template (its namespace was not managed). Labelled,
// the next rollout recreates the pods (they have no gate); kubectl rollout
// undo to that old ReplicaSet then goes in place, the rollout reading the
// ReplicaSet whole.
func TestDeploymentNamespaceLabelledLater(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, unlabelled)
	d := newDeployment("later", ns, 4, images.V1) // 25% of 4: maxUnavailable 1
	create(t, d)
	waitForDeploymentComplete(t, d)
	setTemplateImage(t, d, appContainer, images.V2)
	waitForDeploymentComplete(t, d)

	n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := k8s.Patch(t.Context(), n, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"inplace.dev/enabled":"true"}}}`))); err != nil {
		t.Fatal(err)
	}
	// Both replicas' caches have seen the label once a few dry runs in a
	// row come back gated.
	seen := 0
	eventually(t, answerTimeout, "the webhook answering for the labelled namespace", func(ctx context.Context) error {
		probe := newDeployment("probe", ns, 1, images.V1)
		if err := k8s.Create(ctx, probe, client.DryRunAll); err != nil {
			return err
		}
		if _, ok := probe.Annotations[annotationUpdatePolicy]; !ok {
			seen = 0
			return fmt.Errorf("a Deployment created (dry run) came back without %s", annotationUpdatePolicy)
		}
		if seen++; seen < 5 {
			return fmt.Errorf("answered %d times in a row", seen)
		}
		return nil
	})

	setTemplateImage(t, d, appContainer, images.V3)
	waitForDeploymentComplete(t, d)
	before := observeWorkload(t, d)
	logPods(t, "before", before)
	for _, p := range before {
		if !p.Gated {
			t.Fatalf("pod %s has no gate after a rollout in the labelled namespace", p.Name)
		}
	}

	c := watchChurn(t, ns)
	kubectl(t, "rollout", "undo", "deployment/"+d.Name, "-n", ns, "--to-revision=1")
	get(t, d)
	waitForDeploymentComplete(t, d)
	after := observeWorkload(t, d)
	logPods(t, "after", after)
	wantInPlaceByName(t, before, after, images.V1, 1)
	wantNoChurn(t, c)
	wantReplicaSets(t, d, 3, 1)
}

// TestDeploymentNoSurge: maxSurge 0, maxUnavailable 1, 3 replicas: one pod
// at a time, in place, each Ready again before the next leaves Ready.
func TestDeploymentNoSurge(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	d := newDeployment("nosurge", ns, 3, images.V1, withRollingUpdate("0", "1"))
	create(t, d)
	waitForDeploymentComplete(t, d)
	before := observeWorkload(t, d)

	c := watchChurn(t, ns)
	r := watchReadiness(t, ns)
	setTemplateImage(t, d, appContainer, images.V2)
	waitForDeploymentComplete(t, d)
	after := observeWorkload(t, d)
	logPods(t, "after", after)
	wantInPlaceByName(t, before, after, images.V2, 1)
	wantNoChurn(t, c)
	spans := r.stop()
	t.Logf("not-Ready spans: %v", spans)
	if len(spans) != 3 {
		t.Errorf("%d pods left Ready, want 3 (each once)", len(spans))
	}
	for i := 1; i < len(spans); i++ {
		if spans[i].from.Before(spans[i-1].to) {
			t.Errorf("%s left Ready before %s was Ready again: more than maxUnavailable 1 at once", spans[i].pod, spans[i-1].pod)
		}
	}
}

// TestDeploymentNotInPlaceRollsNatively: an env change, and kubectl rollout
// restart, are not in place: the Deployment controller recreates every
// pod, as without inplace, and the rollout completes.
func TestDeploymentNotInPlaceRollsNatively(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	d := newDeployment("native", ns, 2, images.V1, withRollingUpdate("1", "1"))
	create(t, d)
	waitForDeploymentComplete(t, d)
	for _, change := range []struct {
		what string
		do   func()
	}{
		{"an env change", func() {
			editTemplate(t, d, func(tpl *corev1.PodTemplateSpec) {
				tpl.Spec.Containers[0].Env = append(tpl.Spec.Containers[0].Env, corev1.EnvVar{Name: "MODE", Value: "fast"})
			})
		}},
		{"kubectl rollout restart", func() { kubectl(t, "rollout", "restart", "deployment/"+d.Name, "-n", ns); get(t, d) }},
	} {
		before := observeWorkload(t, d)
		change.do()
		waitForDeploymentComplete(t, d)
		after := observeWorkload(t, d)
		for _, a := range after {
			for _, b := range before {
				if a.UID == b.UID {
					t.Errorf("%s: pod %s kept, want every pod recreated", change.what, a.Name)
				}
			}
		}
	}
}

// TestDeploymentBadImageHalts: without pulling ahead (the workload turns it
// off), a v2 that cannot be pulled halts the rollout at maxUnavailable (one
// pod), the Deployment reports
// ProgressDeadlineExceeded as natively and kubectl rollout status fails;
// rollout undo puts the failed pod back on v1 in place.
func TestDeploymentBadImageHalts(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	d := newDeployment("badimage", ns, 3, images.V1, withRollingUpdate("0", "1"), withProgressDeadline(15), withoutPrepull())
	create(t, d)
	waitForDeploymentComplete(t, d)
	before := observeWorkload(t, d)

	c := watchChurn(t, ns)
	setTemplateImage(t, d, appContainer, "inplace.invalid/does-not-exist:v2")
	eventually(t, podTimeout, "the progress deadline to be exceeded", func(ctx context.Context) error {
		cur := &appsv1.Deployment{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(d), cur); err != nil {
			return err
		}
		if c := deploymentCondition(cur, appsv1.DeploymentProgressing); c == nil || c.Reason != "ProgressDeadlineExceeded" {
			return fmt.Errorf("Progressing is %+v", c)
		}
		return nil
	})
	out, err := exec.CommandContext(t.Context(), tool(t, "E2E_KUBECTL", "kubectl"), "rollout", "status", "deployment/"+d.Name, "-n", ns, "--timeout", "20s").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "exceeded its progress deadline") {
		t.Errorf("kubectl rollout status = %v: %s; want it to fail on the progress deadline", err, out)
	}
	halted := observeWorkload(t, d)
	logPods(t, "halted", halted)
	broken := 0
	for _, p := range halted {
		if !p.Ready {
			broken++
		}
	}
	if broken != 1 {
		t.Errorf("%d pods not Ready, want exactly maxUnavailable 1", broken)
	}
	wantEvents(t, ns, "InPlaceUpdateFailed", 1)

	kubectl(t, "rollout", "undo", "deployment/"+d.Name, "-n", ns)
	get(t, d)
	waitForDeploymentComplete(t, d)
	after := observeWorkload(t, d)
	logPods(t, "after", after)
	for i := range after {
		if after[i].UID != before[i].UID || after[i].Version != images.Serves(images.V1) {
			t.Errorf("pod %s: UID %s -> %s, serves %q; want the same pod back on v1", after[i].Name, before[i].UID, after[i].UID, after[i].Version)
		}
	}
	wantNoChurn(t, c)
}

// TestDeploymentScaledMidRollout: an HPA's scale up, then down, in the
// middle of an in-place rollout: the rollout converges, with the replicas
// asked for, every pod on v2 and Ready.
func TestDeploymentScaledMidRollout(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	d := newDeployment("scaled", ns, 4, images.V1, withRollingUpdate("1", "1"))
	d.Spec.MinReadySeconds = 2 // a rollout slow enough to scale in the middle of
	create(t, d)
	waitForDeploymentComplete(t, d)

	setTemplateImage(t, d, appContainer, images.V2)
	waitForUpdated(t, d, 1)
	scale(t, d, 6)
	waitForUpdated(t, d, 3)
	scale(t, d, 3)
	get(t, d)
	pods := waitForDeploymentComplete(t, d)
	if len(pods) != 3 {
		t.Errorf("%d pods, want 3", len(pods))
	}
	logPods(t, "after", observeWorkload(t, d))
}

// TestDeploymentPauseIsKept: a paused Deployment's template change moves no
// pod; once resumed it rolls out in place.
func TestDeploymentPauseIsKept(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	d := newDeployment("paused", ns, 2, images.V1, withRollingUpdate("0", "1"))
	create(t, d)
	waitForDeploymentComplete(t, d)
	before := observeWorkload(t, d)

	kubectl(t, "rollout", "pause", "deployment/"+d.Name, "-n", ns)
	setTemplateImage(t, d, appContainer, images.V2)
	time.Sleep(5 * time.Second) // time for a rollout that does not wait to begin
	held := observeWorkload(t, d)
	for i, p := range held {
		if p.UID != before[i].UID || p.Restarts != before[i].Restarts || p.Version != images.Serves(images.V1) {
			t.Errorf("paused, pod %s was touched: restarts %d, serves %q", p.Name, p.Restarts, p.Version)
		}
	}
	kubectl(t, "rollout", "resume", "deployment/"+d.Name, "-n", ns)
	get(t, d)
	waitForDeploymentComplete(t, d)
	wantInPlaceByName(t, before, observeWorkload(t, d), images.V2, 1)
}

// waitForUpdated waits until a Deployment counts at least n replicas updated.
func waitForUpdated(t *testing.T, d *appsv1.Deployment, n int32) {
	t.Helper()
	eventually(t, podTimeout, fmt.Sprintf("%d replicas updated", n), func(ctx context.Context) error {
		cur := &appsv1.Deployment{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(d), cur); err != nil {
			return err
		}
		if cur.Status.UpdatedReplicas < n {
			return fmt.Errorf("%d updated", cur.Status.UpdatedReplicas)
		}
		*d = *cur
		return nil
	})
}

// wantReplicaSets checks a Deployment has total ReplicaSets, withPods of
// them with replicas (after a rollout, the new one alone).
func wantReplicaSets(t *testing.T, d *appsv1.Deployment, total, withPods int) {
	t.Helper()
	list := &appsv1.ReplicaSetList{}
	if err := k8s.List(t.Context(), list, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	n, busy := 0, 0
	for _, rs := range list.Items {
		if ref := metav1.GetControllerOf(&rs); ref == nil || ref.UID != d.UID {
			continue
		}
		n++
		if ptr.Deref(rs.Spec.Replicas, 0) > 0 || rs.Status.Replicas > 0 {
			busy++
		}
	}
	if n != total || busy != withPods {
		t.Errorf("%d ReplicaSets, %d with replicas; want %d and %d", n, busy, total, withPods)
	}
}
