//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The readiness gate on a real kubelet: the webhook injects it into the pods
// of managed workloads, the keeper opens it, and nothing of it reaches
// workloads the user did not opt in, nor pods created while the manager is
// down.

// TestManagedStatefulSetPodsAreGatedAndReady creates the seed scenario's
// StatefulSet (3 replicas, Parallel, maxUnavailable 2, nothing
// in-place-specific) in an opted-in namespace: every pod gets the gate and
// the managed label, the keeper sets the gate True, and every pod becomes
// Ready and serves v1. The StatefulSet gets the policy annotation and no gate
// in its template.
func TestManagedStatefulSetPodsAreGatedAndReady(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("web", ns, 3, images.V1, withParallelPods(), withMaxUnavailable(2))
	create(t, sts)
	waitForStatefulSetReady(t, sts)

	pods := observe(t, sts)
	logPods(t, "pods of StatefulSet web", pods)
	uids := map[types.UID]bool{}
	for _, p := range pods {
		if !p.Gated || p.Gate != corev1.ConditionTrue || !p.Managed {
			t.Errorf("pod %s: readiness gate %s in spec %t, condition %q, label %s %t; want the gate in spec, its condition True, the label true",
				p.Name, gateCondition, p.Gated, p.Gate, labelManaged, p.Managed)
		}
		if want := images.Serves(images.V1); p.Version != want || p.Restarts != 0 {
			t.Errorf("pod %s serves %q with %d restarts, want %q with 0", p.Name, p.Version, p.Restarts, want)
		}
		uids[p.UID] = true
	}
	if len(uids) != 3 {
		t.Errorf("%d distinct pod UIDs among %d pods", len(uids), len(pods))
	}

	get(t, sts)
	if got := sts.Annotations[annotationUpdatePolicy]; got != "InPlaceIfPossible" {
		t.Errorf("StatefulSet annotation %s = %q, want InPlaceIfPossible (the default written on managed workloads)", annotationUpdatePolicy, got)
	}
	if gates := sts.Spec.Template.Spec.ReadinessGates; len(gates) != 0 {
		t.Errorf("the StatefulSet's template got readiness gates %v: the gate belongs in the pods only", gates)
	}
	if keys := inplaceKeys(sts.Spec.Template.Annotations); len(keys) != 0 {
		t.Errorf("the StatefulSet's template got annotations %v", keys)
	}
}

// TestFailOpenWithManagerDown stops every manager replica: a StatefulSet can
// still be created, a new pod (scale up) and a recreated one (deleted) come
// up without the gate and become Ready, and the pods that had the gate keep
// it and stay Ready. Once the manager is back, it gates new pods again and
// leaves the ungated ones alone.
//
// It stops the manager, so it must not run in parallel with other tests.
func TestFailOpenWithManagerDown(t *testing.T) {
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("web", ns, 2, images.V1, withParallelPods())
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)
	logPods(t, "with the manager up", before)
	for _, p := range before {
		if !p.Gated || !p.Managed {
			t.Fatalf("pod %s was created without the gate (%t) or the managed label (%t) while the manager was up", p.Name, p.Gated, p.Managed)
		}
	}

	restore := stopManager(t)

	other := newStatefulSet("other", ns, 1, images.V1)
	create(t, other) // the workload webhook is down, failurePolicy Ignore
	if got, ok := other.Annotations[annotationUpdatePolicy]; ok {
		t.Errorf("StatefulSet other, created with the manager down, has %s=%q", annotationUpdatePolicy, got)
	}
	scale(t, sts, 3)                 // web-2: new
	deletePod(t, ns, before[0].Name) // web-0: recreated
	waitForPodReplaced(t, ns, before[0].Name, before[0].UID)
	waitForStatefulSetReady(t, sts)
	waitForStatefulSetReady(t, other)

	down := observe(t, sts)
	logPods(t, "with the manager down (web-0 deleted, web-2 added)", down)
	if len(down) != 3 {
		t.Fatalf("%d pods, want 3", len(down))
	}
	ungated := append([]podView{down[0], down[2]}, observe(t, other)...)
	for _, p := range ungated {
		if p.Gated || p.Managed || p.Gate != "" {
			t.Errorf("pod %s, created with the manager down: gate in spec %t, condition %q, managed label %t; want none of them", p.Name, p.Gated, p.Gate, p.Managed)
		}
		if !p.Ready || p.Version != images.Serves(images.V1) {
			t.Errorf("pod %s, created with the manager down: Ready %t, serves %q; want Ready, serving %q", p.Name, p.Ready, p.Version, images.Serves(images.V1))
		}
	}
	if down[0].UID == before[0].UID {
		t.Errorf("pod %s kept UID %s although it was deleted", down[0].Name, down[0].UID)
	}
	if p := down[1]; p.UID != before[1].UID || !p.Gated || p.Gate != corev1.ConditionTrue || !p.Ready || p.Restarts != 0 {
		t.Errorf("pod %s, untouched while the manager was down: UID %s (was %s), gate %t/%q, Ready %t, restarts %d; want it as it was",
			p.Name, p.UID, before[1].UID, p.Gated, p.Gate, p.Ready, p.Restarts)
	}

	restore()
	scale(t, sts, 4) // web-3: created with the manager back
	waitForStatefulSetReady(t, sts)
	after := observe(t, sts)
	logPods(t, "with the manager back (web-3 added)", after)
	if p := after[3]; !p.Gated || p.Gate != corev1.ConditionTrue || !p.Managed {
		t.Errorf("pod %s, created with the manager back: gate in spec %t, condition %q, managed label %t; want all three", p.Name, p.Gated, p.Gate, p.Managed)
	}
	for _, i := range []int{0, 2} {
		if p := after[i]; p.UID != down[i].UID || p.Gated || !p.Ready || p.Restarts != 0 {
			t.Errorf("pod %s, ungated: UID %s (was %s), gated %t, Ready %t, restarts %d; want it left alone by the manager's return",
				p.Name, p.UID, down[i].UID, p.Gated, p.Ready, p.Restarts)
		}
	}
}

// TestUnmanagedStatefulSetIsUntouched creates the same StatefulSet where the
// manager must leave it alone: no gate, no label and no annotation on its
// pods, no inplace.dev annotation on it but the user's own, and every pod
// Ready as Kubernetes makes it. Its image change rolls out natively: every
// pod recreated.
func TestUnmanagedStatefulSetIsUntouched(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name            string
		namespace       nsPolicy
		opts            []stsOption
		wantAnnotations map[string]string // the StatefulSet's inplace.dev annotations
	}{
		{name: "namespace not labelled", namespace: unlabelled},
		{name: "namespace opted out", namespace: optedOut},
		{
			name:            "workload annotated Recreate in an opted-in namespace",
			namespace:       optedIn,
			opts:            []stsOption{withAnnotation(annotationUpdatePolicy, "Recreate")},
			wantAnnotations: map[string]string{annotationUpdatePolicy: "Recreate"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t, tc.namespace)
			sts := newStatefulSet("web", ns, 3, images.V1, append([]stsOption{withParallelPods()}, tc.opts...)...)
			create(t, sts)
			pods := waitForStatefulSetReady(t, sts)
			views := observe(t, sts)
			logPods(t, "pods of StatefulSet web", views)

			for i, p := range views {
				if p.Gated || p.Gate != "" || p.Managed {
					t.Errorf("pod %s: gate in spec %t, condition %q, managed label %t; want none", p.Name, p.Gated, p.Gate, p.Managed)
				}
				if keys := inplaceKeys(pods[i].Annotations); len(keys) != 0 {
					t.Errorf("pod %s has annotations %v", p.Name, keys)
				}
				if keys := inplaceKeys(pods[i].Labels); len(keys) != 0 {
					t.Errorf("pod %s has labels %v", p.Name, keys)
				}
				if want := images.Serves(images.V1); !p.Ready || p.Version != want || p.Restarts != 0 {
					t.Errorf("pod %s: Ready %t, serves %q, %d restarts; want Ready, %q, 0", p.Name, p.Ready, p.Version, p.Restarts, want)
				}
			}
			got := &appsv1.StatefulSet{}
			got.Namespace, got.Name = sts.Namespace, sts.Name
			get(t, got)
			want := tc.wantAnnotations
			if want == nil {
				want = map[string]string{}
			}
			if keys := inplaceKeys(got.Annotations); !maps.Equal(keys, want) {
				t.Errorf("StatefulSet annotations %v, want %v", keys, want)
			}
			if gates := got.Spec.Template.Spec.ReadinessGates; len(gates) != 0 {
				t.Errorf("the StatefulSet's template got readiness gates %v", gates)
			}

			// An image change rolls out natively: every pod recreated.
			setImage(t, sts, appContainer, images.V2)
			waitForRolloutComplete(t, sts)
			after := observe(t, sts)
			logPods(t, "after the image change to v2", after)
			if len(after) != len(views) {
				t.Fatalf("%d pods after the rollout, %d before", len(after), len(views))
			}
			for i, p := range after {
				if p.UID == views[i].UID {
					t.Errorf("pod %s kept UID %s: the native rollout recreates pods, nothing else may touch them", p.Name, p.UID)
				}
				if want := images.Serves(images.V2); p.Version != want || p.Restarts != 0 || p.Gated || p.Managed {
					t.Errorf("pod %s: serves %q, %d restarts, gated %t, managed %t; want %q, 0, no gate, no label", p.Name, p.Version, p.Restarts, p.Gated, p.Managed, want)
				}
			}
			get(t, got)
			if keys := inplaceKeys(got.Annotations); !maps.Equal(keys, want) {
				t.Errorf("StatefulSet annotations after the rollout %v, want %v", keys, want)
			}
		})
	}
}

// TestFailOpenUnderLoad stops every manager replica while a writer changes a
// managed namespace at a fixed rate: the Deployment's and the StatefulSet's
// annotations (the workload webhooks' writes) and the StatefulSet's scale (its
// controller's pod creates and deletes, the pod webhooks'). No write is
// refused, neither the writer's nor the controllers' (no FailedCreate or
// FailedDelete); the Deployment's image change made meanwhile rolls out
// natively. Once the manager is back, the StatefulSet's image change goes in
// place.
//
// It stops the manager, so it must not run in parallel with other tests.
func TestFailOpenUnderLoad(t *testing.T) {
	const (
		rate     = 10 // writes a second
		duration = 20 * time.Second
	)
	ns := newNamespace(t, optedIn)
	d := newDeployment("api", ns, 2, images.V1)
	sts := newStatefulSet("web", ns, 2, images.V1, withParallelPods())
	create(t, d)
	create(t, sts)
	waitForDeploymentComplete(t, d)
	waitForStatefulSetReady(t, sts)
	apiBefore := observeWorkload(t, d)

	restore := stopManager(t)
	down := time.Now()

	type result struct {
		what    string
		latency time.Duration
		err     error
	}
	results := make(chan result, rate*int(duration/time.Second)+1)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / rate)
	for i := 0; time.Since(down) < duration; i++ {
		<-tick.C
		if i == rate*5 { // 5 s in: a rollout begun while the manager is down
			setTemplateImage(t, d, appContainer, images.V2)
		}
		var obj client.Object
		var patch, what string
		switch i % 4 {
		case 0:
			obj, what = d, "Deployment annotation"
			patch = fmt.Sprintf(`{"metadata":{"annotations":{"e2e.inplace.dev/write":"%d"}}}`, i)
		case 1:
			obj, what = sts, "StatefulSet annotation"
			patch = fmt.Sprintf(`{"metadata":{"annotations":{"e2e.inplace.dev/write":"%d"}}}`, i)
		default: // the StatefulSet's pods created and deleted by its controller
			obj, what = sts, "StatefulSet scale"
			patch = fmt.Sprintf(`{"spec":{"replicas":%d}}`, 2+i/4%2)
		}
		target := obj.DeepCopyObject().(client.Object)
		wg.Go(func() {
			began := time.Now()
			err := k8s.Patch(t.Context(), target, client.RawPatch(types.MergePatchType, []byte(patch)))
			results <- result{what: what, latency: time.Since(began), err: err}
		})
	}
	tick.Stop()
	wg.Wait()
	close(results)
	var latencies []time.Duration
	slow := map[string]int{} // writes that took a second or more, by what
	for r := range results {
		if r.err != nil {
			t.Errorf("%s refused with the manager down: %v", r.what, r.err)
		}
		latencies = append(latencies, r.latency)
		if r.latency >= time.Second {
			slow[r.what]++
		}
	}
	slices.Sort(latencies)
	t.Logf("%d writes in %v with the manager down: p50 %v, p99 %v, max %v; a second or more: %v", len(latencies), duration,
		latencies[len(latencies)/2], latencies[len(latencies)*99/100], latencies[len(latencies)-1], slow)

	// The Deployment's change rolled natively: new pods, none gated.
	scale(t, sts, 2)
	waitForDeploymentComplete(t, d)
	waitForStatefulSetReady(t, sts)
	apiAfter := observeWorkload(t, d)
	logPods(t, "the Deployment after its rollout with the manager down", apiAfter)
	for _, p := range apiAfter {
		if slices.ContainsFunc(apiBefore, func(b podView) bool { return b.UID == p.UID }) {
			t.Errorf("pod %s kept its UID: the rollout made with the manager down went in place", p.Name)
		}
		if p.Gated || !p.Ready || p.Version != images.Serves(images.V2) {
			t.Errorf("pod %s: gated %t, Ready %t, serves %q; want ungated, Ready, serving %q", p.Name, p.Gated, p.Ready, p.Version, images.Serves(images.V2))
		}
	}
	events := &corev1.EventList{}
	if err := k8s.List(t.Context(), events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		if (e.Reason == "FailedCreate" || e.Reason == "FailedDelete") && eventTime(&e).After(down) {
			t.Errorf("%s %s/%s: %s: a controller's write was refused with the manager down", e.Reason, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message)
		}
	}

	// Back: the next change goes in place, on the pods created with the
	// gate before the manager went down.
	restore()
	before := observe(t, sts)
	setImage(t, sts, appContainer, images.V2)
	waitForRolloutComplete(t, sts)
	after := observe(t, sts)
	logPods(t, "the StatefulSet after its rollout with the manager back", after)
	wantInPlace(t, before, after, images.V2, 1)
}
