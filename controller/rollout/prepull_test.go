package rollout

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// prepullFixture is a StatefulSet going from nginx:1.27 to 1.28, whose
// pods web-0 and web-1 run on node-a, web-2 on node-b, web-3 (not Ready)
// on node-c, and an engine that pulls ahead on two nodes at once.
type prepullFixture struct {
	r          *Reconciler
	c          client.Client
	t          *target
	all        []start
	recorder   *events.FakeRecorder
	web0, web3 start
}

func newPrepullFixture(t *testing.T, funcs interceptor.Funcs) *prepullFixture {
	t.Helper()
	from := builder.PodTemplate("web", "nginx:1.27").Obj()
	to := builder.PodTemplate("web", "nginx:1.28").Obj()
	tgt := testTarget(from, to, 0)
	tgt.workload.SetUID("sts-uid")
	d := inplace.DiffTemplates(templatePath, from, to)
	var all []start
	for i, node := range []string{"node-a", "node-a", "node-b", "node-c"} {
		pod := builder.Pod("web-"+string(rune('0'+i)), "apps").Obj()
		pod.Spec.NodeName = node
		pod.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
		if node != "node-c" {
			pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}
		all = append(all, start{pod: pod, from: from, diff: d})
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tgt.workload).WithStatusSubresource(&corev1.Pod{}).WithInterceptorFuncs(funcs).Build()
	recorder := events.NewFakeRecorder(20)
	r := &Reconciler{Client: c, Recorder: recorder, Prepull: &Prepull{Default: true, Parallelism: 2, Pods: c}}
	return &prepullFixture{r: r, c: c, t: tgt, all: all, recorder: recorder, web0: all[0], web3: all[3]}
}

// pass runs pullAhead with web-0 and web-3 chosen to start.
func (f *prepullFixture) pass(t *testing.T) (kept []string, failures []string) {
	t.Helper()
	keep, held, failures, err := f.r.pullAhead(t.Context(), f.t.workload, f.t, f.all, []start{f.web0, f.web3})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range keep {
		kept = append(kept, s.pod.Name)
	}
	if held != (len(kept) < 2) {
		t.Errorf("held %t with %v kept of web-0 and web-3", held, kept)
	}
	return kept, failures
}

// prepulls returns the prepull pods by node.
func (f *prepullFixture) prepulls(t *testing.T) map[string]*corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := f.c.List(t.Context(), list, client.MatchingLabels{inplace.LabelPrepullFor: "sts-uid"}); err != nil {
		t.Fatal(err)
	}
	out := map[string]*corev1.Pod{}
	for i := range list.Items {
		out[list.Items[i].Spec.NodeName] = &list.Items[i]
	}
	return out
}

// kubelet writes a prepull pod's container status.
func (f *prepullFixture) kubelet(t *testing.T, pod *corev1.Pod, state corev1.ContainerState) {
	t.Helper()
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: state}}
	if err := f.c.Status().Update(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
}

var (
	startRefused = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "StartError", ExitCode: 128}}
	notFound     = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: `rpc error: nginx:1.28: not found`}}
	backingOff   = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
		Message: `Back-off pulling image "nginx:1.28": ErrImagePull: rpc error: nginx:1.28: not found`}}
)

// TestPullAhead: the nodes of the next pods pull first, two at once; a Ready
// pod starts only once its node has pulled, a pod that is not Ready at
// once; a node that cannot pull holds every Ready start, with one stable
// failure whether the kubelet is pulling or backing off; a prepull pod is
// deleted once read.
func TestPullAhead(t *testing.T) {
	f := newPrepullFixture(t, interceptor.Funcs{})

	kept, failures := f.pass(t)
	pods := f.prepulls(t)
	if !slices.Equal(kept, []string{"web-3"}) || len(failures) > 0 {
		t.Fatalf("first pass kept %v, failures %v: want web-3 alone (not Ready), no failure", kept, failures)
	}
	if len(pods) != 2 || pods["node-a"] == nil || pods["node-b"] == nil {
		t.Fatalf("prepull pods on %v: want node-a and node-b (two at once, web-3 needs none)", keys(pods))
	}
	p := pods["node-a"]
	if c := p.Spec.Containers; len(c) != 1 || c[0].Image != "nginx:1.28" || c[0].Command[0] != inplace.PrepullCommand ||
		p.Spec.ImagePullSecrets[0].Name != "registry" || p.OwnerReferences[0].Kind != "StatefulSet" || p.OwnerReferences[0].Controller != nil {
		t.Errorf("prepull pod %+v: want the new image, the command that runs nothing, the pod's pull secrets, owned by the StatefulSet", p)
	}

	f.kubelet(t, pods["node-a"], startRefused)
	f.kubelet(t, pods["node-b"], notFound)
	kept, failures = f.pass(t)
	if !slices.Equal(kept, []string{"web-3"}) || len(failures) != 1 || !strings.Contains(failures[0], "node node-b cannot pull") || !strings.Contains(failures[0], "not found") {
		t.Fatalf("with node-b failing: kept %v, failures %v; want web-3 alone, node-b's failure", kept, failures)
	}
	if pods := f.prepulls(t); pods["node-a"] != nil || pods["node-b"] == nil {
		t.Errorf("prepull pods on %v: want node-a's deleted once pulled, node-b's kept for users to see", keys(pods))
	}
	first := failures[0]
	f.kubelet(t, f.prepulls(t)["node-b"], backingOff)
	if _, failures = f.pass(t); len(failures) != 1 || failures[0] != first {
		t.Errorf("backing off, the failure reads %q, want it unchanged: %q", failures, first)
	}

	f.kubelet(t, f.prepulls(t)["node-b"], startRefused)
	kept, failures = f.pass(t)
	if !slices.Equal(kept, []string{"web-0", "web-3"}) || len(failures) > 0 {
		t.Fatalf("node-b pulled: kept %v, failures %v; want web-0 and web-3", kept, failures)
	}
	if pods := f.prepulls(t); len(pods) != 0 {
		t.Errorf("prepull pods left on %v", keys(pods))
	}
}

// TestPullAheadRefused: a prepull pod an admission control refuses (a
// quota, a pod security level) does not hold the rollout: the node goes
// without, with a Warning event.
func TestPullAheadRefused(t *testing.T) {
	f := newPrepullFixture(t, interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, obj.GetName(), errExceededQuota)
	}})
	kept, failures := f.pass(t)
	if !slices.Equal(kept, []string{"web-0", "web-3"}) || len(failures) > 0 {
		t.Fatalf("kept %v, failures %v: want both starts, no failure", kept, failures)
	}
	select {
	case e := <-f.recorder.Events:
		if !strings.Contains(e, "Warning PrepullSkipped") || !strings.Contains(e, "node-a") {
			t.Errorf("event %q: want a Warning PrepullSkipped for node-a", e)
		}
	default:
		t.Error("no event")
	}
}

var errExceededQuota = apierrors.NewBadRequest("exceeded quota: pods")

func keys(m map[string]*corev1.Pod) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestRecordPulling: the rollout record says since when a start waits for
// a pull ahead, and whether one failed, which the pod webhook reads to keep
// its refusals; the time stays that of the first wait, and clears with it.
func TestRecordPulling(t *testing.T) {
	sts := builder.StatefulSet("web", "apps").Obj()
	clock := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sts).Build()
	r := &Reconciler{Client: c, Clock: clock}
	read := func() *inplace.Rollout {
		t.Helper()
		got := &appsv1.StatefulSet{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(sts), got); err != nil {
			t.Fatal(err)
		}
		rec, err := inplace.RolloutOf(got.Annotations)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	rec := &inplace.Rollout{Revision: "web-2"}
	rec = r.recordPulling(t.Context(), sts, rec, true, false)
	first := clock.Now()
	if got := read(); !got.HoldsForPull("web-2", first) || got.PullFailed {
		t.Fatalf("record %+v: want pulling since now, not failed", got)
	}
	clock.Step(time.Minute)
	rec = r.recordPulling(t.Context(), sts, rec, true, true)
	if got := read(); !got.Pulling.Time.Equal(first) || !got.PullFailed || !got.HoldsForPull("web-2", first.Add(time.Hour)) {
		t.Fatalf("record %+v: want pulling since the first wait, failed, held for good", got)
	}
	r.recordPulling(t.Context(), sts, rec, false, false)
	if got := read(); got.Pulling != nil || got.PullFailed || got.HoldsForPull("web-2", clock.Now()) {
		t.Fatalf("record %+v: want the pull cleared", got)
	}
}

// TestPullAheadSkipsNodesThatHaveTheImages: a node whose kubelet reports the
// new image (a rollback) pulls nothing ahead: its pods start at once.
func TestPullAheadSkipsNodesThatHaveTheImages(t *testing.T) {
	f := newPrepullFixture(t, interceptor.Funcs{})
	f.t.rev.Template.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
	has := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
		Status: corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"docker.io/library/nginx:1.28"}}}}}
	lacks := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}
	f.r.APIReader = fake.NewClientBuilder().WithScheme(scheme).WithObjects(has, lacks).Build()
	kept, failures := f.pass(t)
	if !slices.Equal(kept, []string{"web-0", "web-3"}) || len(failures) > 0 {
		t.Fatalf("kept %v, failures %v: want web-0 at once (node-a has the image) and web-3", kept, failures)
	}
	if pods := f.prepulls(t); len(pods) != 1 || pods["node-b"] == nil {
		t.Errorf("prepull pods on %v: want node-b's alone", keys(pods))
	}
}
