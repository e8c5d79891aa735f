package controller

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testclock"
)

var (
	scheme = func() *runtime.Scheme {
		s := runtime.NewScheme()
		_ = clientgoscheme.AddToScheme(s)
		return s
	}()
)

func TestReadinessGateKeeper(t *testing.T) { testclock.Run(t, testReadinessGateKeeper) }

func testReadinessGateKeeper(t *testing.T, now time.Time) {
	gated := func() *builder.PodWrapper {
		return builder.Pod("web-0", "apps").Label(inplace.LabelManaged, "true").ReadinessGate(inplace.ConditionInPlaceUpdateReady)
	}
	earlier := metav1.NewTime(now.Add(-time.Hour))
	cases := map[string]struct {
		pod        *corev1.Pod
		wantStatus corev1.ConditionStatus // "" means no condition
		wantTime   metav1.Time
	}{
		"a new pod with the gate gets it True": {
			pod: gated().Obj(), wantStatus: corev1.ConditionTrue, wantTime: metav1.NewTime(now),
		},
		"a False condition with no update in progress turns True": {
			pod:        gated().Condition(inplace.ConditionInPlaceUpdateReady, corev1.ConditionFalse).Obj(),
			wantStatus: corev1.ConditionTrue, wantTime: metav1.NewTime(now),
		},
		"an update in progress keeps it False": {
			pod: gated().Annotation(inplace.AnnotationUpdateState, "{}").
				Condition(inplace.ConditionInPlaceUpdateReady, corev1.ConditionFalse).Obj(),
			wantStatus: corev1.ConditionFalse,
		},
		"a True condition is not rewritten": {
			pod: func() *corev1.Pod {
				p := gated().Obj()
				p.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue, LastTransitionTime: earlier}}
				return p
			}(),
			wantStatus: corev1.ConditionTrue, wantTime: earlier,
		},
		"a pod a Kruise CloneSet controls keeps the gate Kruise closed, managed label or not": {
			pod: gated().OwnedBy("apps.kruise.io/v1beta1", "CloneSet", "web", "cs-uid").
				Condition(inplace.ConditionInPlaceUpdateReady, corev1.ConditionFalse).Obj(),
			wantStatus: corev1.ConditionFalse,
		},
		"a pod an Advanced StatefulSet controls keeps its gate unset": {
			pod: gated().OwnedBy("apps.kruise.io/v1beta1", "StatefulSet", "web", "sts-uid").Obj(),
		},
		"a pod a native StatefulSet controls gets it True": {
			pod:        gated().OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Obj(),
			wantStatus: corev1.ConditionTrue, wantTime: metav1.NewTime(now),
		},
		"a new container Ready, its resize not applied yet, keeps it False": {
			pod:        resizing(gated(), now.Add(-time.Minute)),
			wantStatus: corev1.ConditionFalse,
		},
		"a resize left unapplied past the rollout's deadline turns it True": {
			pod:        resizing(gated(), now.Add(-rollout.ResizeDeadline-AbandonAfter-time.Second)),
			wantStatus: corev1.ConditionTrue, wantTime: metav1.NewTime(now),
		},
		"a pod without the gate is left alone": {
			pod: builder.Pod("web-0", "apps").Label(inplace.LabelManaged, "true").Obj(),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.pod).WithStatusSubresource(&corev1.Pod{}).Build()
			r := &ReadinessGateKeeper{Client: c, Clock: clocktesting.NewFakePassiveClock(now)}
			if _, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(tc.pod)}); err != nil {
				t.Fatal(err)
			}
			got := &corev1.Pod{}
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(tc.pod), got); err != nil {
				t.Fatal(err)
			}
			cond := inplace.GateCondition(got)
			if tc.wantStatus == "" {
				if cond != nil {
					t.Fatalf("condition %+v, want none", cond)
				}
				return
			}
			if cond == nil || cond.Status != tc.wantStatus {
				t.Fatalf("condition %+v, want status %s", cond, tc.wantStatus)
			}
			if !tc.wantTime.IsZero() && !cond.LastTransitionTime.Equal(&tc.wantTime) {
				t.Errorf("lastTransitionTime %v, want %v", cond.LastTransitionTime, tc.wantTime)
			}
		})
	}
}

// resizing is a pod whose update, patched at patchedAt, restarted its app
// container for a new image and resizes its cpu limit to 300m: the new
// container runs, Ready, under the 400m it was created with.
func resizing(w *builder.PodWrapper, patchedAt time.Time) *corev1.Pod {
	limits := func(cpu string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}
	}
	at := metav1.NewTime(patchedAt)
	state := &inplace.UpdateState{Revision: "web-2", From: "web-1", Since: at, PatchedAt: &at,
		Containers: map[string]inplace.ContainerSnapshot{"app": {ContainerID: "containerd://c1"}},
		Resize:     map[string]corev1.ResourceRequirements{"app": limits("300m")}}
	pod := w.Annotation(inplace.AnnotationUpdateState, state.Encode()).
		Condition(inplace.ConditionInPlaceUpdateReady, corev1.ConditionFalse).Obj()
	old := limits("400m")
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://c2", Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}, Resources: &old}}
	return pod
}

// A stale read (another writer got there first) is not an error: the watch
// event of the newer pod brings it back.
func TestReadinessGateKeeperOnConflict(t *testing.T) {
	testclock.Run(t, testReadinessGateKeeperOnConflict)
}

func testReadinessGateKeeperOnConflict(t *testing.T, now time.Time) {
	pod := builder.Pod("web-0", "apps").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	patches := 0
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).
		WithInterceptorFuncs(interceptor.Funcs{
			SubResourcePatch: func(context.Context, client.Client, string, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
				patches++
				return apierrors.NewConflict(corev1.Resource("pods"), pod.Name, nil)
			},
		}).Build()
	r := &ReadinessGateKeeper{Client: c, Clock: clocktesting.NewFakePassiveClock(now)}
	res, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pod)})
	if err != nil || !res.IsZero() || patches != 1 {
		t.Errorf("Reconcile() = %+v, %v after %d patches; want no error, no requeue, one patch", res, err, patches)
	}
}

// TestReadinessGateKeeperHeadStart: a replica that is not elected leaves a
// gate to the elected one for ElectedHeadStart past the pod's last change,
// then opens it if it is still closed.
func TestReadinessGateKeeperHeadStart(t *testing.T) {
	testclock.Run(t, testReadinessGateKeeperHeadStart)
}

func testReadinessGateKeeperHeadStart(t *testing.T, now time.Time) {
	created := func(at time.Time) *builder.PodWrapper {
		w := builder.Pod("web-0", "apps").Label(inplace.LabelManaged, "true").ReadinessGate(inplace.ConditionInPlaceUpdateReady)
		w.CreationTimestamp = metav1.NewTime(at)
		return w
	}
	elected, notElected := make(chan struct{}), make(chan struct{})
	close(elected)
	cases := map[string]struct {
		pod       *corev1.Pod
		elected   <-chan struct{}
		wantOpen  bool
		wantAfter time.Duration
	}{
		"elected: a new pod's gate opens at once": {
			pod: created(now).Obj(), elected: elected, wantOpen: true,
		},
		"not elected: a pod created a second ago waits out the rest of the head start": {
			pod: created(now.Add(-time.Second)).Obj(), elected: notElected, wantAfter: ElectedHeadStart - time.Second,
		},
		"not elected: the head start counts from the pod's last change": {
			pod: func() *corev1.Pod {
				p := created(now.Add(-time.Minute)).Obj()
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.ContainersReady, Status: corev1.ConditionTrue,
					LastTransitionTime: metav1.NewTime(now.Add(-time.Second))}}
				return p
			}(),
			elected: notElected, wantAfter: ElectedHeadStart - time.Second,
		},
		"not elected: a pod created past the head start and still gated gets it opened": {
			pod: created(now.Add(-ElectedHeadStart)).Obj(), elected: notElected, wantOpen: true,
		},
		"not elected: a pod the clock says is from the future waits no more than the head start": {
			pod: created(now.Add(time.Hour)).Obj(), elected: notElected, wantAfter: ElectedHeadStart,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.pod).WithStatusSubresource(&corev1.Pod{}).Build()
			r := &ReadinessGateKeeper{Client: c, Clock: clocktesting.NewFakePassiveClock(now), Elected: tc.elected}
			checkReconcile(t, r, c, tc.pod, tc.wantOpen, tc.wantAfter)
		})
	}
}

// checkReconcile has r reconcile pod and checks that the gate c then holds
// is open or not as wanted, and that r asked to look again after wantAfter.
func checkReconcile(t *testing.T, r *ReadinessGateKeeper, c client.Client, pod *corev1.Pod, wantOpen bool, wantAfter time.Duration) {
	t.Helper()
	res, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(pod)})
	if err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	if open := rollout.GateOpen(got); open != wantOpen {
		t.Errorf("gate open = %v, want %v", open, wantOpen)
	}
	if res.RequeueAfter != wantAfter {
		t.Errorf("RequeueAfter = %v, want %v", res.RequeueAfter, wantAfter)
	}
}

// TestReadinessGateKeeperReopens: the keeper runs on every replica and opens
// the gates that an update left closed when nothing holds them any more.
func TestReadinessGateKeeperReopens(t *testing.T) { testclock.Run(t, testReadinessGateKeeperReopens) }

func testReadinessGateKeeperReopens(t *testing.T, now time.Time) {
	sts := builder.StatefulSet("web", "apps").Annotation(inplace.AnnotationGracePeriod, "5").Obj()
	sts.UID = "sts-uid"
	closedAt := metav1.NewTime(now.Add(-10 * time.Second))
	updating := func() *builder.PodWrapper {
		w := builder.Pod("web-0", "apps").Label(inplace.LabelManaged, "true").ReadinessGate(inplace.ConditionInPlaceUpdateReady).
			OwnedBy("apps/v1", "StatefulSet", "web", sts.UID)
		w.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse,
			Reason: inplace.ReasonInPlaceUpdate, LastTransitionTime: closedAt}}
		return w
	}
	patched := func(observed bool, id string) *corev1.Pod {
		p := updating().Annotation(inplace.AnnotationUpdateState,
			`{"revision":"web-2","since":null,"patchedAt":"`+now.Add(-5*time.Second).Format(time.RFC3339)+`","containers":{"app":{"containerID":"containerd://c1","restartCount":0}}}`).Obj()
		p.Generation, p.Status.ObservedGeneration = 2, 1
		if observed {
			p.Status.ObservedGeneration = 2
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://" + id, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(now)}}}}
		return p
	}
	cases := map[string]struct {
		pod       *corev1.Pod
		guarded   bool
		clock     time.Time
		wantOpen  bool
		wantAfter time.Duration
	}{
		"begun, never patched, within the grace period and AbandonAfter: stays closed": {
			pod: updating().Obj(), clock: now, wantAfter: 5*time.Second + AbandonAfter + time.Second - 10*time.Second,
		},
		"begun, never patched, past the grace period and AbandonAfter: abandoned": {
			pod: updating().Obj(), clock: now.Add(time.Minute), wantOpen: true,
		},
		"begun on a pod whose workload is gone: abandoned at once": {
			pod: func() *corev1.Pod { p := updating().Obj(); p.OwnerReferences = nil; return p }(), clock: now, wantOpen: true,
		},
		"patched, the kubelet has not taken it in": {
			pod: patched(false, "c1"), guarded: true, clock: now,
		},
		"patched and taken in, guarded, within the head start: left to the rollout": {
			pod: patched(true, "c1"), guarded: true, clock: now, wantAfter: ElectedHeadStart,
		},
		"patched and taken in, the old container still runs, guarded: opens": {
			pod: patched(true, "c1"), guarded: true, clock: now.Add(ElectedHeadStart), wantOpen: true,
		},
		"patched and taken in, the old container still runs, unguarded: stays closed": {
			pod: patched(true, "c1"), clock: now,
		},
		"patched, the old container replaced, unguarded: opens": {
			pod: patched(true, "c2"), clock: now.Add(ElectedHeadStart), wantOpen: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.pod, sts.DeepCopy()).WithStatusSubresource(&corev1.Pod{}).Build()
			r := &ReadinessGateKeeper{Client: c, Clock: clocktesting.NewFakePassiveClock(tc.clock), Guard: guard(tc.guarded)}
			checkReconcile(t, r, c, tc.pod, tc.wantOpen, tc.wantAfter)
		})
	}
}

// TestShutdownDrain: a replica, stopping, opens the gates of new pods no
// keeper opened yet; the elected one also the gates its updates hold
// closed, as far as it is safe.
func TestShutdownDrain(t *testing.T) { testclock.Run(t, testShutdownDrain) }

func drainingPod(name string) *builder.PodWrapper {
	w := builder.Pod(name, "apps").Label(inplace.LabelManaged, "true").ReadinessGate(inplace.ConditionInPlaceUpdateReady)
	w.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse, Reason: inplace.ReasonInPlaceUpdate}}
	return w
}

// patchedPod is a pod whose update patched its image 5 s before now, the
// replaced container c1 still running.
func patchedPod(name string, now time.Time) *corev1.Pod {
	pod := drainingPod(name).Annotation(inplace.AnnotationUpdateState,
		`{"revision":"r2","since":null,"patchedAt":"`+now.Add(-5*time.Second).Format(time.RFC3339)+`","containers":{"app":{"containerID":"containerd://c1"}}}`).Obj()
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", ContainerID: "containerd://c1",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	return pod
}

func testShutdownDrain(t *testing.T, now time.Time) {
	unpatched := drainingPod("unpatched").Obj()
	running := patchedPod("old-still-running", now)
	// fresh: created with the gate a moment before the replicas stopped,
	// no keeper having opened it.
	fresh := builder.Pod("fresh", "apps").Label(inplace.LabelManaged, "true").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	elected, notElected := make(chan struct{}), make(chan struct{})
	close(elected)
	for _, tc := range []struct {
		guarded  bool
		elected  chan struct{}
		wantOpen map[string]bool
	}{
		{guarded: true, elected: elected, wantOpen: map[string]bool{"unpatched": true, "old-still-running": true, "fresh": true}},
		{guarded: false, elected: elected, wantOpen: map[string]bool{"unpatched": true, "old-still-running": false, "fresh": true}},
		{guarded: true, elected: notElected, wantOpen: map[string]bool{"unpatched": false, "old-still-running": false, "fresh": true}},
	} {
		t.Run(fmt.Sprintf("guarded %v, elected %v", tc.guarded, tc.elected == elected), func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(unpatched.DeepCopy(), running.DeepCopy(), fresh.DeepCopy()).WithStatusSubresource(&corev1.Pod{}).Build()
			// Unguarded, the old container never goes: the drain waits
			// for it until its time is up.
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			(&ShutdownDrain{Reader: c, Client: c, Guard: guard(tc.guarded), Clock: clocktesting.NewFakePassiveClock(now), Elected: tc.elected}).Drain(ctx)
			for name, want := range tc.wantOpen {
				if got := gateOpen(t, c, name); got != want {
					t.Errorf("pod %s: gate open %v, want %v", name, got, want)
				}
			}
		})
	}
}

// TestShutdownDrainRetries: a gate the drain could not open at its first
// read is opened at a later one: its write conflicted with the kubelet's
// status write, or the replaced container was still running, unguarded.
// Either used to leave the gate closed with every replica gone, the pod
// never Ready again until a manager came back.
func TestShutdownDrainRetries(t *testing.T) { testclock.Run(t, testShutdownDrainRetries) }

func testShutdownDrainRetries(t *testing.T, now time.Time) {
	conflicted, replaced := drainingPod("conflicted").Obj(), patchedPod("replaced", now)
	lists, conflicts := 0, 0
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(conflicted, replaced).WithStatusSubresource(&corev1.Pod{}).
		WithInterceptorFuncs(interceptor.Funcs{
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				lists++
				if lists == 2 {
					// Between two reads the kubelet has replaced the
					// old container.
					pod := &corev1.Pod{}
					if err := c.Get(ctx, client.ObjectKeyFromObject(replaced), pod); err != nil {
						return err
					}
					pod.Status.ContainerStatuses[0].ContainerID = "containerd://c2"
					if err := c.Status().Update(ctx, pod); err != nil {
						return err
					}
				}
				return c.List(ctx, list, opts...)
			},
			SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
				if obj.GetName() == "conflicted" && conflicts == 0 {
					conflicts++
					return apierrors.NewConflict(corev1.Resource("pods"), obj.GetName(), nil)
				}
				return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
			},
		}).Build()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	(&ShutdownDrain{Reader: c, Client: c, Guard: guard(false), Clock: clocktesting.NewFakePassiveClock(now)}).Drain(ctx)
	if ctx.Err() != nil {
		t.Errorf("the drain used all its time (%d reads)", lists)
	}
	for _, name := range []string{"conflicted", "replaced"} {
		if !gateOpen(t, c, name) {
			t.Errorf("pod %s: gate closed after the drain (%d reads, %d conflicts)", name, lists, conflicts)
		}
	}
}

// TestShutdownDrainWaitsForPasses: the drain reads the pods only once the
// engine's running passes have ended, and no pass begins after: a gate
// closed by a pass still running would otherwise be left closed.
func TestShutdownDrainWaitsForPasses(t *testing.T) {
	listed := make(chan struct{}, 1)
	c := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&corev1.Pod{}).
		WithInterceptorFuncs(interceptor.Funcs{
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				select {
				case listed <- struct{}{}:
				default:
				}
				return c.List(ctx, list, opts...)
			},
		}).Build()
	passes := rollout.NewPasses(nil)
	end, ok := passes.Begin()
	if !ok {
		t.Fatal("a pass could not begin on a running replica")
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- (&ShutdownDrain{Reader: c, Client: c, Passes: passes}).Start(ctx) }()
	stop()

	// Begin fails once the drain has started quiescing; the pass that
	// was running still holds it back.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		end, ok := passes.Begin()
		if !ok {
			break
		}
		end()
		if time.Now().After(deadline) {
			t.Fatal("passes still begin after the replica stopped")
		}
	}
	select {
	case <-listed:
		t.Fatal("the drain read the pods while a pass was running")
	case <-time.After(200 * time.Millisecond):
	}
	end()
	select {
	case <-listed:
	case <-time.After(5 * time.Second):
		t.Fatal("the drain did not read the pods once the pass ended")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestShutdownDrainWaitsForLastGate: the drain reads the pods only once
// this replica's pod webhook gates no more pods, and a moment after, so
// that a pod it gated while the API server's open connections still
// reached it is read, its gate opened. Reading earlier left such a pod,
// with every replica stopping, gated for good.
func TestShutdownDrainWaitsForLastGate(t *testing.T) {
	var listedAt atomic.Value
	c := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&corev1.Pod{}).
		WithInterceptorFuncs(interceptor.Funcs{
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				listedAt.CompareAndSwap(nil, time.Now())
				return c.List(ctx, list, opts...)
			},
		}).Build()
	lastGate := make(chan struct{})
	const settle = 100 * time.Millisecond
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error)
	go func() {
		done <- (&ShutdownDrain{Reader: c, Client: c, Guard: guard(true), LastGate: lastGate, Settle: settle}).Start(ctx)
	}()
	stop()

	time.Sleep(200 * time.Millisecond)
	if at := listedAt.Load(); at != nil {
		t.Fatal("the drain read the pods while the webhook still gated new ones")
	}
	// The webhook gates a pod with its last answer, and stops gating.
	fresh := builder.Pod("fresh", "apps").Label(inplace.LabelManaged, "true").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	if err := c.Create(t.Context(), fresh); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	close(lastGate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	at, _ := listedAt.Load().(time.Time)
	if at.IsZero() {
		t.Fatal("the drain never read the pods")
	}
	if waited := at.Sub(closed); waited < settle {
		t.Errorf("the drain read the pods %v after the last gate, before the %v a gated pod may take to be stored", waited, settle)
	}
	if !gateOpen(t, c, "fresh") {
		t.Error("the pod gated by the webhook's last answer is left gated")
	}
}

func gateOpen(t *testing.T, c client.Client, name string) bool {
	t.Helper()
	got := &corev1.Pod{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: "apps", Name: name}, got); err != nil {
		t.Fatal(err)
	}
	return rollout.GateOpen(got)
}

// guard is a rollout.Guard that says what it is.
type guard bool

func (g guard) Guarded() bool { return bool(g) }
