package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testclock"
)

var (
	scheme       = clientgoscheme.Scheme
	templatePath = field.NewPath("spec", "template")
)

// kubeletRunning sets the app container's status as the kubelet reports a
// running container, and the conditions it computes from it.
func kubeletRunning(pod *corev1.Pod, id string, ready bool, started time.Time) {
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: "app", ContainerID: "containerd://" + id, Image: pod.Spec.Containers[0].Image, Ready: ready,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}},
	}}
	pod.Status.ObservedGeneration = pod.Generation
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	setCondition(pod, corev1.PodCondition{Type: corev1.ContainersReady, Status: status}, metav1.NewTime(started))
	setCondition(pod, inplace.ReadyCondition(pod, gateStatus(pod)), metav1.NewTime(started))
}

func gateStatus(pod *corev1.Pod) corev1.ConditionStatus {
	if c := inplace.GateCondition(pod); c != nil {
		return c.Status
	}
	return ""
}

// guarded is a Guard that says what it is.
type guarded bool

func (g guarded) Guarded() bool { return bool(g) }

// TestPodUpdateSteps walks one pod through its in-place update against a fake
// API server, playing the kubelet's part, and checks each write.
func TestPodUpdateSteps(t *testing.T) { testclock.Run(t, testPodUpdateSteps) }

func testPodUpdateSteps(t *testing.T, now time.Time) {
	clock := clocktesting.NewFakeClock(now)
	pod := builder.Pod("web-0", "apps").Label(inplace.LabelManaged, "true").Label(appsv1.StatefulSetRevisionLabel, "web-1").
		ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	pod.Generation = 1
	pod.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue}}
	kubeletRunning(pod, "c1", true, now.Add(-time.Minute))
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
	u := &podUpdater{client: c, live: c, recorder: events.NewFakeRecorder(10), clock: clock, guard: guarded(true)}
	from := builder.PodTemplate("web", "nginx:1.27").Obj()
	target := testTarget(from, builder.PodTemplate("web", "nginx:1.28").Label("tier", "front").Obj(), 0)
	read := func() *corev1.Pod {
		t.Helper()
		got := &corev1.Pod{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	// Begin: the gate closes with Ready, in the kubelet's words; with no
	// grace period the images are patched in the same pass, with the state.
	if err := u.begin(t.Context(), read(), from, inplace.DiffTemplates(templatePath, from, target.rev.Template), target); err != nil {
		t.Fatal(err)
	}
	got := read()
	gate, ready := inplace.GateCondition(got), condition(got, corev1.PodReady)
	if gate.Status != corev1.ConditionFalse || gate.Reason != inplace.ReasonInPlaceUpdate {
		t.Errorf("gate = %+v, want False for InPlaceUpdate", gate)
	}
	if ready.Status != corev1.ConditionFalse || ready.Reason != inplace.ReasonReadinessGatesNotReady ||
		ready.Message != `the status of pod readiness gate "InPlaceUpdateReady" is not "True", but False` {
		t.Errorf("Ready = %+v, want False in the kubelet's words", ready)
	}
	state, err := inplace.StateOf(got)
	if err != nil || state == nil || state.PatchedAt == nil || state.Containers["app"].ContainerID != "containerd://c1" {
		t.Fatalf("state = %+v, %v; want the patch recorded with container c1", state, err)
	}
	if got.Spec.Containers[0].Image != "nginx:1.28" || got.Labels["tier"] != "front" || got.Labels[appsv1.StatefulSetRevisionLabel] != "web-2" {
		t.Errorf("pod after the patch: image %s, labels %v", got.Spec.Containers[0].Image, got.Labels)
	}

	// The kubelet takes in the patch and replaces the container; the new
	// one is not ready yet: the gate is open (guarded, it opened once the
	// kubelet took the patch in), Ready stays the kubelet's to turn.
	got.Generation = 2
	kubeletRunning(got, "c2", false, now.Add(time.Second))
	if err := c.Status().Update(t.Context(), got); err != nil {
		t.Fatal(err)
	}
	if _, err := u.advance(t.Context(), read(), target); err != nil {
		t.Fatal(err)
	}
	got = read()
	if g := inplace.GateCondition(got); g.Status != corev1.ConditionTrue {
		t.Errorf("gate = %+v after the container was replaced, want True", g)
	}
	if r := condition(got, corev1.PodReady); r.Status != corev1.ConditionFalse {
		t.Errorf("Ready = %+v while the new container is not ready", r)
	}

	// The new container is ready, and the kubelet turns Ready True: the pod
	// is relabelled, the state gone.
	kubeletRunning(got, "c2", true, now.Add(time.Second))
	if err := c.Status().Update(t.Context(), got); err != nil {
		t.Fatal(err)
	}
	clock.Step(2 * time.Second)
	if _, err := u.advance(t.Context(), read(), target); err != nil {
		t.Fatal(err)
	}
	got = read()
	if r := condition(got, corev1.PodReady); r.Status != corev1.ConditionTrue || r.Reason != "" || r.Message != "" {
		t.Errorf("Ready = %+v, want True as the kubelet writes it", r)
	}
	if inplace.Updating(got) || got.Labels[appsv1.StatefulSetRevisionLabel] != "web-2" {
		t.Errorf("after the update: state %q, revision %q", got.Annotations[inplace.AnnotationUpdateState], got.Labels[appsv1.StatefulSetRevisionLabel])
	}
}

// TestPodUpdateWaitsForTheGracePeriod checks the images are not patched
// before the grace period has passed since the gate closed.
func TestPodUpdateWaitsForTheGracePeriod(t *testing.T) {
	testclock.Run(t, testPodUpdateWaitsForTheGracePeriod)
}

func testPodUpdateWaitsForTheGracePeriod(t *testing.T, now time.Time) {
	clock := clocktesting.NewFakeClock(now)
	pod := builder.Pod("web-0", "apps").Label(appsv1.StatefulSetRevisionLabel, "web-1").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	kubeletRunning(pod, "c1", true, now.Add(-time.Minute))
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
	u := &podUpdater{client: c, live: c, recorder: events.NewFakeRecorder(10), clock: clock, guard: guarded(true)}
	from := builder.PodTemplate("web", "nginx:1.27").Obj()
	target := testTarget(from, builder.PodTemplate("web", "nginx:1.28").Obj(), 10*time.Second)
	if err := u.begin(t.Context(), pod.DeepCopy(), from, inplace.DiffTemplates(templatePath, from, target.rev.Template), target); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	_ = c.Get(t.Context(), client.ObjectKeyFromObject(pod), got)
	step, err := u.advance(t.Context(), got, target)
	if err != nil {
		t.Fatal(err)
	}
	if step.requeueAfter != 11*time.Second {
		t.Errorf("requeueAfter = %v, want 11s (10s, and a second for the condition's rounding)", step.requeueAfter)
	}
	if state, _ := inplace.StateOf(got); state != nil || got.Spec.Containers[0].Image != "nginx:1.27" {
		t.Errorf("patched before the grace period: image %s", got.Spec.Containers[0].Image)
	}
	clock.Step(11 * time.Second)
	if _, err := u.advance(t.Context(), got, target); err != nil {
		t.Fatal(err)
	}
	_ = c.Get(t.Context(), client.ObjectKeyFromObject(pod), got)
	if got.Spec.Containers[0].Image != "nginx:1.28" {
		t.Errorf("not patched after the grace period: image %s", got.Spec.Containers[0].Image)
	}
}

// testWorkload is a workload whose pods name their revision in the label
// controller-revision-hash, with the revisions of a map.
type testWorkload struct {
	revisions map[string]*corev1.PodTemplateSpec
}

func (w testWorkload) HandedBack() string  { return "" }
func (w testWorkload) Target() *Revision   { return nil }
func (w testWorkload) Pods() []*corev1.Pod { return nil }
func (w testWorkload) Plan(time.Time) Plan { return Plan{} }
func (w testWorkload) RevisionOf(pod *corev1.Pod) string {
	return pod.Labels[appsv1.StatefulSetRevisionLabel]
}
func (w testWorkload) Revision(_ context.Context, name string) (*Revision, error) {
	if t, ok := w.revisions[name]; ok {
		return testRevision(name, t), nil
	}
	return nil, nil
}

func testRevision(name string, t *corev1.PodTemplateSpec) *Revision {
	return &Revision{Name: name, Template: t, Mark: func(pod *corev1.Pod) {
		pod.Labels[appsv1.StatefulSetRevisionLabel] = name
	}}
}

// testTarget is a StatefulSet's revision web-2 of template to, whose pods run
// revision web-1 of template from.
func testTarget(from, to *corev1.PodTemplateSpec, grace time.Duration) *target {
	return &target{
		kind: "StatefulSet", workload: builder.StatefulSet("web", "apps").Obj(),
		w:   testWorkload{revisions: map[string]*corev1.PodTemplateSpec{"web-1": from, "web-2": to}},
		rev: testRevision("web-2", to), grace: grace,
	}
}

// TestWhenTheGateOpens: the kubelet reports the patched generation as it
// begins to replace the container, and the old one may run on for seconds
// (a preStop hook, a long grace period), reported ready. Guarded (the API
// server refuses a Ready True while it runs), the gate opens at once, so
// that the kubelet's next sync caches it open; unguarded, only once the
// kubelet reports the old container gone.
func TestWhenTheGateOpens(t *testing.T) { testclock.Run(t, testWhenTheGateOpens) }

func testWhenTheGateOpens(t *testing.T, now time.Time) {
	for _, tc := range []struct {
		guarded                       bool
		openWhileOldRuns, openWhenNew bool
	}{
		{guarded: true, openWhileOldRuns: true, openWhenNew: true},
		{guarded: false, openWhileOldRuns: false, openWhenNew: true},
	} {
		t.Run(fmt.Sprintf("guarded %v", tc.guarded), func(t *testing.T) {
			pod := builder.Pod("web-0", "apps").Label(appsv1.StatefulSetRevisionLabel, "web-1").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
			pod.Generation = 1
			pod.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue}}
			kubeletRunning(pod, "c1", true, now.Add(-time.Minute))
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
			u := &podUpdater{client: c, live: c, recorder: events.NewFakeRecorder(10), clock: clocktesting.NewFakeClock(now), guard: guarded(tc.guarded)}
			from := builder.PodTemplate("web", "nginx:1.27").Obj()
			target := testTarget(from, builder.PodTemplate("web", "nginx:1.28").Obj(), 0)
			if err := u.begin(t.Context(), pod.DeepCopy(), from, inplace.DiffTemplates(templatePath, from, target.rev.Template), target); err != nil {
				t.Fatal(err)
			}
			got := &corev1.Pod{}
			step := func(edit func(*corev1.Pod)) {
				t.Helper()
				_ = c.Get(t.Context(), client.ObjectKeyFromObject(pod), got)
				edit(got)
				if err := c.Status().Update(t.Context(), got); err != nil {
					t.Fatal(err)
				}
				got.Generation = 2 // as the API server counts the patch; the fake one does not
				if _, err := u.advance(t.Context(), got, target); err != nil {
					t.Fatal(err)
				}
				_ = c.Get(t.Context(), client.ObjectKeyFromObject(pod), got)
			}
			if !tc.guarded {
				// Unguarded, the gate closed alone and the images wait for the
				// kubelet to turn the pod not Ready itself.
				if _, err := u.advance(t.Context(), got, target); err != nil {
					t.Fatal(err)
				}
				_ = c.Get(t.Context(), client.ObjectKeyFromObject(pod), got)
				if r := condition(got, corev1.PodReady); r.Status != corev1.ConditionTrue {
					t.Fatalf("unguarded, the manager wrote Ready: %+v", r)
				}
				if got.Spec.Containers[0].Image != "nginx:1.27" {
					t.Fatalf("unguarded, the images changed before the kubelet took in the closed gate")
				}
				step(func(p *corev1.Pod) {
					setCondition(p, inplace.ReadyCondition(p, corev1.ConditionFalse), metav1.NewTime(now))
				})
				if got.Spec.Containers[0].Image != "nginx:1.28" {
					t.Fatalf("the images did not change once the kubelet took in the closed gate")
				}
			}

			step(func(p *corev1.Pod) {})
			if GateOpen(got) {
				t.Fatalf("the gate opened before the kubelet saw the patch")
			}
			// The kubelet took in the patch and is running the old container's
			// preStop hook: the old container is still running, still ready.
			step(func(p *corev1.Pod) { p.Status.ObservedGeneration = 2 })
			if GateOpen(got) != tc.openWhileOldRuns {
				t.Fatalf("gate open while the replaced container still runs: %v, want %v", GateOpen(got), tc.openWhileOldRuns)
			}
			// The kubelet reports the new container, not ready yet.
			step(func(p *corev1.Pod) {
				p.Generation = 2
				kubeletRunning(p, "c2", false, now.Add(5*time.Second))
			})
			if GateOpen(got) != tc.openWhenNew {
				t.Errorf("gate open once the old container is gone: %v, want %v", GateOpen(got), tc.openWhenNew)
			}
			if r := condition(got, corev1.PodReady); r.Status != corev1.ConditionFalse {
				t.Errorf("Ready = %+v: the new container is not ready", r)
			}
		})
	}
}

// TestRefusedPatchRecreates: another admission webhook refuses the image
// patch after the gate closed. The pod is not left not ready: it is deleted,
// for its controller to recreate, with a Warning event.
func TestRefusedPatchRecreates(t *testing.T) { testclock.Run(t, testRefusedPatchRecreates) }

func testRefusedPatchRecreates(t *testing.T, now time.Time) {
	pod := builder.Pod("web-0", "apps").Label(appsv1.StatefulSetRevisionLabel, "web-1").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	kubeletRunning(pod, "c1", true, now.Add(-time.Minute))
	base := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
	c := interceptor.NewClient(base, interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			return apierrors.NewForbidden(corev1.Resource("pods"), obj.GetName(), errors.New("images must come from registry.example"))
		},
	})
	recorder := events.NewFakeRecorder(10)
	u := &podUpdater{client: c, live: base, recorder: recorder, clock: clocktesting.NewFakeClock(now), guard: guarded(true)}
	from := builder.PodTemplate("web", "nginx:1.27").Obj()
	target := testTarget(from, builder.PodTemplate("web", "nginx:1.28").Obj(), 0)
	if err := u.begin(t.Context(), pod.DeepCopy(), from, inplace.DiffTemplates(templatePath, from, target.rev.Template), target); err != nil {
		t.Fatal(err)
	}
	if err := base.Get(t.Context(), client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("the pod whose patch was refused is still there (%v)", err)
	}
	var got []string
	for len(recorder.Events) > 0 {
		got = append(got, <-recorder.Events)
	}
	if !slices.ContainsFunc(got, func(e string) bool {
		return strings.HasPrefix(e, "Warning RecreatedNotInPlace") && strings.Contains(e, "images must come from registry.example")
	}) {
		t.Errorf("events %q: want a RecreatedNotInPlace warning that says why", got)
	}
}

// TestGuardRefusalIsRetried: inplace's own readiness guard refusing the
// gate's close (the manager in the unguarded order for a moment while the
// guard is in force) leaves the pod as it was, to be written again on the
// next pass: it is not recreated as another policy's refusal would be.
func TestGuardRefusalIsRetried(t *testing.T) { testclock.Run(t, testGuardRefusalIsRetried) }

func testGuardRefusalIsRetried(t *testing.T, now time.Time) {
	pod := builder.Pod("web-0", "apps").Label(appsv1.StatefulSetRevisionLabel, "web-1").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	pod.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue}}
	kubeletRunning(pod, "c1", true, now.Add(-time.Minute))
	base := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
	// The API server's words for the guard's refusal.
	refusal := &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: 422, Reason: metav1.StatusReasonInvalid,
		Message: `pods "web-0" is forbidden: ValidatingAdmissionPolicy 'inplace-readiness-guard' with binding 'inplace-readiness-guard' ` +
			`denied request: inplace: Ready cannot be True while the InPlaceUpdateReady readiness gate is False`,
	}}
	c := interceptor.NewClient(base, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, subResource string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			return refusal
		},
	})
	recorder := events.NewFakeRecorder(10)
	u := &podUpdater{client: c, live: base, recorder: recorder, clock: clocktesting.NewFakeClock(now), guard: guarded(false)}
	from := builder.PodTemplate("web", "nginx:1.27").Obj()
	target := testTarget(from, builder.PodTemplate("web", "nginx:1.28").Obj(), 0)
	err := u.begin(t.Context(), pod.DeepCopy(), from, inplace.DiffTemplates(templatePath, from, target.rev.Template), target)
	if err == nil || !strings.Contains(err.Error(), "readiness guard") {
		t.Errorf("begin = %v, want an error to retry that names the readiness guard", err)
	}
	got := &corev1.Pod{}
	if err := base.Get(t.Context(), client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatalf("the pod is gone (%v): recreated for the manager's own guard", err)
	}
	if inplace.Updating(got) || got.Spec.Containers[0].Image != "nginx:1.27" || !GateOpen(got) {
		t.Errorf("pod after the refusal: state %q, image %s, gate open %t; want it untouched",
			got.Annotations[inplace.AnnotationUpdateState], got.Spec.Containers[0].Image, GateOpen(got))
	}
	for len(recorder.Events) > 0 {
		if e := <-recorder.Events; strings.Contains(e, ReasonRecreatedNotInPlace) {
			t.Errorf("event %q: the guard's refusal recreates nothing", e)
		}
	}
}

// TestOnlyTheRevisionsChangesArePatched: the containers the update changes
// come from the diff between the pod's revision and the target, not from
// the live pod: an image rewritten at the pod's creation (a registry
// mirror) is neither restarted nor written back unmirrored.
func TestOnlyTheRevisionsChangesArePatched(t *testing.T) {
	testclock.Run(t, testOnlyTheRevisionsChangesArePatched)
}

func testOnlyTheRevisionsChangesArePatched(t *testing.T, now time.Time) {
	pod := builder.Pod("web-0", "apps").Label(appsv1.StatefulSetRevisionLabel, "web-1").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	pod.Spec.Containers = []corev1.Container{
		{Name: "app", Image: "mirror.local/library/nginx:1.27"},
		{Name: "proxy", Image: "mirror.local/envoy:1"},
	}
	pod.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue}}
	kubeletRunning(pod, "c1", true, now.Add(-time.Minute))
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
	u := &podUpdater{client: c, live: c, recorder: events.NewFakeRecorder(10), clock: clocktesting.NewFakeClock(now), guard: guarded(true)}
	from := builder.PodTemplate("web", "nginx:1.27").Image("proxy", "envoy:1").Obj()
	to := builder.PodTemplate("web", "nginx:1.27").Image("proxy", "envoy:2").Obj()
	target := testTarget(from, to, 0)
	if err := u.begin(t.Context(), pod.DeepCopy(), from, inplace.DiffTemplates(templatePath, from, to), target); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	if img := got.Spec.Containers[0].Image; img != "mirror.local/library/nginx:1.27" {
		t.Errorf("app image %s: the unchanged container's rewritten image was touched", img)
	}
	if img := got.Spec.Containers[1].Image; img != "envoy:2" {
		t.Errorf("proxy image %s, want envoy:2", img)
	}
	state, err := inplace.StateOf(got)
	if err != nil || state == nil {
		t.Fatalf("state %v, %v", state, err)
	}
	if _, ok := state.Containers["app"]; ok || len(state.Containers) != 1 {
		t.Errorf("recorded containers %v, want proxy alone", state.Containers)
	}
}

// TestMalformedStateRecreates: a state the manager cannot read (written by
// hand, or by a bug) leaves it unable to judge the update: the pod is
// recreated rather than left not ready.
func TestMalformedStateRecreates(t *testing.T) { testclock.Run(t, testMalformedStateRecreates) }

func testMalformedStateRecreates(t *testing.T, now time.Time) {
	pod := builder.Pod("web-0", "apps").Label(appsv1.StatefulSetRevisionLabel, "web-1").ReadinessGate(inplace.ConditionInPlaceUpdateReady).
		Annotation(inplace.AnnotationUpdateState, "{not json").Obj()
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
	u := &podUpdater{client: c, live: c, recorder: events.NewFakeRecorder(10), clock: clocktesting.NewFakeClock(now)}
	from := builder.PodTemplate("web", "nginx:1.27").Obj()
	if _, err := u.advance(t.Context(), pod.DeepCopy(), testTarget(from, builder.PodTemplate("web", "nginx:1.28").Obj(), 0)); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("the pod with a malformed state is still there (%v)", err)
	}
}

// TestAPodRunningTheTargetAlreadyRestartsNothing: a pod hot-patched by hand
// to the image its workload then rolls out (kubectl set image pod/...) has
// nothing to restart. Its update is labels only: its gate never closes, no
// state is recorded (the kubelet would never replace the container it
// names, and the readiness guard would hold the pod not Ready forever).
func TestAPodRunningTheTargetAlreadyRestartsNothing(t *testing.T) {
	testclock.Run(t, testAPodRunningTheTargetAlreadyRestartsNothing)
}

func testAPodRunningTheTargetAlreadyRestartsNothing(t *testing.T, now time.Time) {
	pod := builder.Pod("web-1", "apps").Label(appsv1.StatefulSetRevisionLabel, "web-1").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	pod.Spec.Containers[0].Image = "nginx:1.28" // set by hand
	pod.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue}}
	kubeletRunning(pod, "c2", true, now.Add(-time.Minute))
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
	recorder := events.NewFakeRecorder(10)
	u := &podUpdater{client: c, live: c, recorder: recorder, clock: clocktesting.NewFakeClock(now), guard: guarded(true)}
	from := builder.PodTemplate("web", "nginx:1.27").Obj()
	target := testTarget(from, builder.PodTemplate("web", "nginx:1.28").Obj(), 0)
	if err := u.begin(t.Context(), pod.DeepCopy(), from, inplace.DiffTemplates(templatePath, from, target.rev.Template), target); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	if inplace.Updating(got) || !GateOpen(got) {
		t.Errorf("gate %+v, state %q: want the gate open and no update in progress", inplace.GateCondition(got), got.Annotations[inplace.AnnotationUpdateState])
	}
	if got.Labels[appsv1.StatefulSetRevisionLabel] != "web-2" {
		t.Errorf("revision label %q, want web-2", got.Labels[appsv1.StatefulSetRevisionLabel])
	}
	if e := <-recorder.Events; !strings.Contains(e, "InPlaceUpdated") || !strings.Contains(e, "no container restarted") {
		t.Errorf("event %q, want InPlaceUpdated saying no container restarted", e)
	}
}

// TestUpdateDeadlines: an update that makes no progress within its bound
// fails, with an event, never a silent wait. A kubelet that never takes the
// patch in, or never takes the old container down, gets the pod recreated;
// a new container never Ready is reported and the pod left as it is.
func TestUpdateDeadlines(t *testing.T) { testclock.Run(t, testUpdateDeadlines) }

func testUpdateDeadlines(t *testing.T, now time.Time) {
	grace := int64(30)
	for name, tc := range map[string]struct {
		kubelet func(p *corev1.Pod)
		// after is how long after the patch the pass runs.
		after        time.Duration
		wantRecreate bool
		wantFailure  string
		wantRequeue  time.Duration
	}{
		"not taken in yet, within its bound: looked at again when the bound falls": {
			kubelet: func(p *corev1.Pod) {}, after: time.Minute, wantRequeue: ObserveDeadline - time.Minute,
		},
		"never taken in: recreated": {
			kubelet: func(p *corev1.Pod) {}, after: ObserveDeadline + time.Second, wantRecreate: true,
		},
		"taken in, the old container runs on past the grace period: recreated": {
			kubelet: func(p *corev1.Pod) { p.Status.ObservedGeneration = p.Generation },
			after:   ObserveDeadline + time.Duration(grace)*time.Second + time.Second, wantRecreate: true,
		},
		"taken in, the old container in its grace period: waited for": {
			kubelet:     func(p *corev1.Pod) { p.Status.ObservedGeneration = p.Generation },
			after:       ObserveDeadline + 10*time.Second,
			wantRequeue: time.Duration(grace)*time.Second - 10*time.Second,
		},
		"replaced, the new container not Ready past the update deadline: failed, kept": {
			kubelet: func(p *corev1.Pod) { kubeletRunning(p, "c2", false, now.Add(time.Second)) },
			after:   DefaultUpdateDeadline + time.Second, wantFailure: "are not Ready 10m0s after the image patch",
		},
	} {
		t.Run(name, func(t *testing.T) {
			pod := builder.Pod("web-0", "apps").Label(appsv1.StatefulSetRevisionLabel, "web-1").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
			pod.Spec.TerminationGracePeriodSeconds = &grace
			pod.Generation = 1
			kubeletRunning(pod, "c1", true, now.Add(-time.Minute))
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
			clock := clocktesting.NewFakeClock(now)
			recorder := events.NewFakeRecorder(10)
			u := &podUpdater{client: c, live: c, recorder: recorder, clock: clock, guard: guarded(true)}
			from := builder.PodTemplate("web", "nginx:1.27").Obj()
			target := testTarget(from, builder.PodTemplate("web", "nginx:1.28").Obj(), 0)
			if err := u.begin(t.Context(), pod.DeepCopy(), from, inplace.DiffTemplates(templatePath, from, target.rev.Template), target); err != nil {
				t.Fatal(err)
			}
			got := &corev1.Pod{}
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), got); err != nil {
				t.Fatal(err)
			}
			got.Generation = 2 // as the API server counts the patch
			tc.kubelet(got)
			if err := c.Status().Update(t.Context(), got); err != nil {
				t.Fatal(err)
			}
			got.Generation = 2
			for len(recorder.Events) > 0 {
				<-recorder.Events // the update's start
			}
			clock.Step(tc.after)
			step, err := u.advance(t.Context(), got, target)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Get(t.Context(), client.ObjectKeyFromObject(pod), &corev1.Pod{})
			if recreated := apierrors.IsNotFound(err); recreated != tc.wantRecreate {
				t.Fatalf("recreated = %v (%v), want %v", recreated, err, tc.wantRecreate)
			}
			if !strings.Contains(step.failure, tc.wantFailure) || (tc.wantFailure == "") != (step.failure == "") {
				t.Errorf("failure %q, want one containing %q", step.failure, tc.wantFailure)
			}
			if step.requeueAfter != tc.wantRequeue {
				t.Errorf("requeueAfter = %v, want %v", step.requeueAfter, tc.wantRequeue)
			}
			var told []string
			for len(recorder.Events) > 0 {
				told = append(told, <-recorder.Events)
			}
			switch {
			case tc.wantRecreate && !slices.ContainsFunc(told, func(e string) bool { return strings.HasPrefix(e, "Warning RecreatedNotInPlace") }):
				t.Errorf("events %q: want a RecreatedNotInPlace warning", told)
			case tc.wantFailure != "" && !slices.ContainsFunc(told, func(e string) bool { return strings.HasPrefix(e, "Warning InPlaceUpdateFailed") }):
				t.Errorf("events %q: want an InPlaceUpdateFailed warning", told)
			case !tc.wantRecreate && tc.wantFailure == "" && len(told) > 0:
				t.Errorf("events %q: want none", told)
			}
		})
	}
}

// TestChoose: the engine's budget, the same for every kind.
func TestChoose(t *testing.T) {
	pod := func(name string, ready bool) *corev1.Pod {
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		return builder.Pod(name, "apps").Condition(string(corev1.PodReady), status).Obj()
	}
	a, b, c, down := pod("a", true), pod("b", true), pod("c", true), pod("down", false)
	notGated := func(p *corev1.Pod) bool { return p != b }
	for name, tc := range map[string]struct {
		plan Plan
		want []*corev1.Pod
	}{
		"a budget of one takes the first":                      {plan: Plan{Candidates: []*corev1.Pod{a, b, c}, Budget: 1}, want: []*corev1.Pod{a}},
		"no budget, nothing":                                   {plan: Plan{Candidates: []*corev1.Pod{a, b}}},
		"a pod that cannot go in place takes its share":        {plan: Plan{Candidates: []*corev1.Pod{b, a, c}, Budget: 2}, want: []*corev1.Pod{a}},
		"down first: a pod not Ready goes whatever the budget": {plan: Plan{Candidates: []*corev1.Pod{a, down}, DownFirst: true}, want: []*corev1.Pod{down}},
		"down first, then Ready ones within the budget": {
			plan: Plan{Candidates: []*corev1.Pod{a, down, c}, DownFirst: true, Budget: 1}, want: []*corev1.Pod{down, a},
		},
		"waiting: only the pods down":                              {plan: Plan{Candidates: []*corev1.Pod{a, down}, DownFirst: true, Budget: 2, Wait: true}, want: []*corev1.Pod{down}},
		"without down first a pod not Ready uses the budget":       {plan: Plan{Candidates: []*corev1.Pod{down, a}, Budget: 1}, want: []*corev1.Pod{down}},
		"a negative budget (more down than allowed) takes nothing": {plan: Plan{Candidates: []*corev1.Pod{a}, Budget: -1}},
	} {
		t.Run(name, func(t *testing.T) {
			got := Choose(tc.plan, notGated)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Choose = %v, want %v", names(got), names(tc.want))
			}
		})
	}
}

func names(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

// TestResizeInPlace: a change of the app container's cpu alone is made
// through the resize subresource with the pod's gate open (it stays Ready),
// and the pod is marked at the revision only once the kubelet reports the
// new resources; a resize the kubelet finds Infeasible recreates the pod,
// with an event that names the reason.
func TestResizeInPlace(t *testing.T) { testclock.Run(t, testResizeInPlace) }

func testResizeInPlace(t *testing.T, now time.Time) {
	cpu := func(tpl *corev1.PodTemplateSpec, q string) *corev1.PodTemplateSpec {
		tpl.Spec.Containers[0].Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(q)},
		}
		return tpl
	}
	for name, tc := range map[string]struct {
		kubelet      func(p *corev1.Pod)
		wantDone     bool
		wantRecreate bool
	}{
		"the kubelet applies it: done, marked, the gate never closed": {
			kubelet: func(p *corev1.Pod) {
				p.Status.ContainerStatuses[0].Resources = p.Spec.Containers[0].Resources.DeepCopy()
			},
			wantDone: true,
		},
		"the kubelet has not yet: the pod waits, unmarked": {
			kubelet: func(p *corev1.Pod) {},
		},
		"Infeasible: recreated": {
			kubelet: func(p *corev1.Pod) {
				p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodResizePending, Status: corev1.ConditionTrue,
					Reason: corev1.PodReasonInfeasible, Message: "Node didn't have enough capacity: cpu, requested: 64000, capacity: 2000"})
			},
			wantRecreate: true,
		},
	} {
		t.Run(name, func(t *testing.T) {
			pod := builder.Pod("web-0", "apps").Label(appsv1.StatefulSetRevisionLabel, "web-1").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
			pod.Spec.Containers[0].Resources = cpu(builder.PodTemplate("web", "nginx:1.27").Obj(), "1").Spec.Containers[0].Resources
			pod.Generation = 1
			pod.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue}}
			kubeletRunning(pod, "c1", true, now.Add(-time.Minute))
			pod.Status.ContainerStatuses[0].Resources = pod.Spec.Containers[0].Resources.DeepCopy()
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).WithStatusSubresource(&corev1.Pod{}).Build()
			recorder := events.NewFakeRecorder(10)
			u := &podUpdater{client: c, live: c, recorder: recorder, clock: clocktesting.NewFakeClock(now), guard: guarded(true)}
			from := cpu(builder.PodTemplate("web", "nginx:1.27").Obj(), "1")
			to := cpu(builder.PodTemplate("web", "nginx:1.27").Label("tier", "front").Obj(), "2")
			target := testTarget(from, to, 0)
			d := inplace.DiffTemplates(templatePath, from, to)
			if err := u.begin(t.Context(), pod.DeepCopy(), from, d, target); err != nil {
				t.Fatal(err)
			}
			got := &corev1.Pod{}
			if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), got); err != nil {
				t.Fatal(err)
			}
			state, err := inplace.StateOf(got)
			if err != nil || state == nil || len(state.Resize) != 1 || len(state.Containers) != 0 {
				t.Fatalf("state %+v, %v: want the resize of app recorded, no container to restart", state, err)
			}
			if lim := got.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU]; lim.String() != "2" {
				t.Errorf("the pod's cpu limit is %s: the resize was not asked for", lim.String())
			}
			if !GateOpen(got) || got.Labels[appsv1.StatefulSetRevisionLabel] != "web-1" || got.Labels["tier"] != "" {
				t.Errorf("gate %+v, labels %v: want the gate open and the pod unmarked until the kubelet applies it",
					inplace.GateCondition(got), got.Labels)
			}

			tc.kubelet(got)
			got.Status.ObservedGeneration = got.Generation
			if err := c.Status().Update(t.Context(), got); err != nil {
				t.Fatal(err)
			}
			if _, err := u.advance(t.Context(), got, target); err != nil {
				t.Fatal(err)
			}
			err = c.Get(t.Context(), client.ObjectKeyFromObject(pod), got)
			if recreated := apierrors.IsNotFound(err); recreated != tc.wantRecreate {
				t.Fatalf("recreated = %v (%v), want %v", recreated, err, tc.wantRecreate)
			}
			var told []string
			for len(recorder.Events) > 0 {
				told = append(told, <-recorder.Events)
			}
			if tc.wantRecreate {
				if !slices.ContainsFunc(told, func(e string) bool {
					return strings.Contains(e, "RecreatedNotInPlace") && strings.Contains(e, "Infeasible")
				}) {
					t.Errorf("events %q: want a RecreatedNotInPlace naming Infeasible", told)
				}
				return
			}
			done := !inplace.Updating(got) && got.Labels[appsv1.StatefulSetRevisionLabel] == "web-2" && got.Labels["tier"] == "front"
			if done != tc.wantDone {
				t.Errorf("done = %v (labels %v, state %q), want %v", done, got.Labels, got.Annotations[inplace.AnnotationUpdateState], tc.wantDone)
			}
			if !GateOpen(got) {
				t.Errorf("the gate closed for a resize that restarts nothing")
			}
		})
	}
}
