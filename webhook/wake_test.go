package webhook

import (
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/testclock"
)

// TestWaker: a controller the pod webhook refused is woken, by the
// annotation on the object it syncs, once its replacement would pass with
// no event of its own to make it retry; never while the refusal holds, and
// never once it has an event of its own.
func TestWaker(t *testing.T) { testclock.Run(t, testWaker) }

func testWaker(t *testing.T, start time.Time) {
	type step struct {
		at time.Duration
		// change is what happens before the Waker's pass.
		change func(t *testing.T, h *podValidatorHarness, f promiseFixture, victim *corev1.Pod)
		// wantWoken is the reason the controller is woken for, "" for not.
		wantWoken string
	}
	stopEngine := func(_ *testing.T, h *podValidatorHarness, _ promiseFixture, _ *corev1.Pod) { h.running.Store(false) }
	podChanged := func(t *testing.T, h *podValidatorHarness, _ promiseFixture, victim *corev1.Pod) {
		pod := victim.DeepCopy()
		pod.Labels["touched"] = "yes"
		if err := h.cache.Update(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
	}
	rsSatisfied := func(t *testing.T, h *podValidatorHarness, _ promiseFixture, victim *corev1.Pod) {
		rs := &appsv1.ReplicaSet{}
		get(t, h.cache, metav1.GetControllerOfNoCopy(victim).Name, rs)
		rs.Status.Replicas, rs.Status.ObservedGeneration = *rs.Spec.Replicas, rs.Generation
		if err := h.cache.Status().Update(t.Context(), rs); err != nil {
			t.Fatal(err)
		}
	}
	// statusLags adds a pod of the victim's ReplicaSet, Ready for an hour,
	// that the ReplicaSet's status does not count.
	statusLags := func(t *testing.T, h *podValidatorHarness, _ promiseFixture, victim *corev1.Pod) {
		pod := victim.DeepCopy()
		pod.Name, pod.ResourceVersion, pod.UID, pod.Annotations = victim.Name+"-twin", "", "", nil
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(start.Add(-time.Hour))}}
		create(t, h.cache, pod)
		if err := h.cache.Status().Update(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
	}
	cases := map[string]struct {
		steps []step
		// deleteOnly, createOnly: the case is about one operation;
		// deploymentOnly: about a ReplicaSet's.
		deleteOnly, createOnly, deploymentOnly bool
	}{
		"the ReplicaSet's status lags its pods: woken": {
			steps: []step{
				{at: 5 * time.Second},
				{at: 10 * time.Second, change: statusLags, wantWoken: WakeStaleStatus},
				{at: 15 * time.Second},
			},
			deploymentOnly: true,
		},
		"the promise holding: not woken; broken: woken once": {
			steps: []step{
				{at: 5 * time.Second},
				{at: 25 * time.Second},
				{at: 31 * time.Second, wantWoken: WakePromiseBroken},
				{at: 36 * time.Second},
			},
		},
		"the engine stopped: woken": {
			steps: []step{
				{at: 5 * time.Second},
				{at: 10 * time.Second, change: stopEngine, wantWoken: WakeNoEngine},
				{at: 40 * time.Second},
			},
		},
		"the pod changed since: its controller has its own event": {
			steps: []step{
				{at: 5 * time.Second, change: podChanged},
				{at: 31 * time.Second},
			},
			deleteOnly: true,
		},
		"the ReplicaSet has its pods: nothing to retry": {
			steps: []step{
				{at: 5 * time.Second, change: rsSatisfied},
				{at: 31 * time.Second},
			},
			createOnly: true,
		},
		"an hour gone: forgotten": {
			steps: []step{
				{at: 61 * time.Minute},
			},
		},
	}
	for _, f := range promiseFixtures() {
		op := "delete"
		if !f.deleted {
			op = "create"
		}
		for name, tc := range cases {
			if tc.deleteOnly && !f.deleted || tc.createOnly && f.deleted || tc.deploymentOnly && f.kind != "Deployment" {
				continue
			}
			t.Run(f.kind+" "+op+"/"+name, func(t *testing.T) {
				clock := clocktesting.NewFakeClock(start)
				h := newPodValidatorHarness(t, harnessOptions{cache: f.cluster(0), clock: clock})
				victim := f.victim()
				if f.deleted {
					victim = stored(t, h, f.victim()) // the request carries the stored pod
				}
				if resp := h.handler.Handle(t.Context(), f.req(t, victim)); resp.Allowed {
					t.Fatalf("allowed: %s; want refused", resp.Result.Message)
				}
				owner := metav1.GetControllerOfNoCopy(victim)
				woken := 0
				for i, s := range tc.steps {
					clock.SetTime(start.Add(s.at))
					if s.change != nil {
						s.change(t, h, f, victim)
					}
					h.waker.Pass(t.Context())
					at := wokenAt(t, h.live, owner, victim.Namespace)
					if s.wantWoken == "" {
						if len(h.woken) != woken {
							t.Fatalf("step %d (at %v): woken for %v, want not", i, s.at, h.woken[woken:])
						}
						continue
					}
					woken++
					if want := []string{f.kind + "/" + s.wantWoken}; !slices.Equal(h.woken[woken-1:], want) {
						t.Fatalf("step %d (at %v): woken %v, want %v", i, s.at, h.woken, want)
					}
					if want := clock.Now().UTC().Format(time.RFC3339Nano); at != want {
						t.Errorf("step %d: %s %s has %s=%q, want %q", i, owner.Kind, owner.Name, inplace.AnnotationWokenAt, at, want)
					}
				}
				if woken == 0 {
					if at := wokenAt(t, h.live, owner, victim.Namespace); at != "" {
						t.Errorf("%s %s has %s=%q, want none", owner.Kind, owner.Name, inplace.AnnotationWokenAt, at)
					}
				}
			})
		}
	}
}

// stored is pod as the API server holds it, stored first if it is not.
func stored(t *testing.T, h *podValidatorHarness, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	got := &corev1.Pod{}
	err := h.cache.Get(t.Context(), client.ObjectKeyFromObject(pod), got)
	if apierrors.IsNotFound(err) {
		create(t, h.cache, pod)
		err = h.cache.Get(t.Context(), client.ObjectKeyFromObject(pod), got)
	}
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// wokenAt reads AnnotationWokenAt of the object ref names.
func wokenAt(t *testing.T, c client.Client, ref *metav1.OwnerReference, namespace string) string {
	t.Helper()
	var obj client.Object
	switch ref.Kind {
	case "StatefulSet":
		obj = &appsv1.StatefulSet{}
	case "DaemonSet":
		obj = &appsv1.DaemonSet{}
	case "ReplicaSet":
		obj = &appsv1.ReplicaSet{}
	default:
		t.Fatalf("no object of kind %s", ref.Kind)
	}
	if err := c.Get(t.Context(), types.NamespacedName{Namespace: namespace, Name: ref.Name}, obj); err != nil {
		t.Fatal(err)
	}
	return obj.GetAnnotations()[inplace.AnnotationWokenAt]
}
