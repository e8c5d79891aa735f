package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testclock"
)

const (
	statefulSetController = "system:serviceaccount:kube-system:statefulset-controller"
	daemonSetController   = "system:serviceaccount:kube-system:daemon-set-controller"
	replicaSetController  = "system:serviceaccount:kube-system:replicaset-controller"
)

// The clusters the pod webhook is tested against: in the managed namespace
// "apps", a StatefulSet "web", a DaemonSet "agent" and a Deployment "api",
// each rolling out from nginx:1.27 to nginx:1.28, and their pods on the
// node "node-a", gated and labelled managed as the pod webhook makes them.

var (
	podsBefore = builder.PodTemplate("x", "nginx:1.27").Obj().Spec
	rsCreated  = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
)

// webStatefulSet is the StatefulSet "web" of 3 replicas going from revision
// web-1 to web-2.
func webStatefulSet(edit ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	s := builder.StatefulSet("web", "apps").Replicas(3).Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") }).Obj()
	s.UID = "sts-uid"
	s.Status.CurrentRevision, s.Status.UpdateRevision = "web-1", "web-2"
	for _, e := range edit {
		e(s)
	}
	return s
}

// statefulSetCluster is the StatefulSet, its two revisions, and the
// namespaces.
func statefulSetCluster(sts *appsv1.StatefulSet) []client.Object {
	v1 := sts.Spec.Template.DeepCopy()
	v1.Spec = *podsBefore.DeepCopy()
	return []client.Object{sts,
		builder.ControllerRevision(sts, "StatefulSet", "1", 1, v1),
		builder.ControllerRevision(sts, "StatefulSet", "2", 2, &sts.Spec.Template),
	}
}

// stsPod is a pod of the StatefulSet at a revision.
func stsPod(name, revision string, edit ...func(*builder.PodWrapper)) *corev1.Pod {
	return managedPod(builder.Pod(name, "apps").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").
		Label("app", "web").Label(appsv1.StatefulSetRevisionLabel, revision), edit...)
}

// agentDaemonSet is the DaemonSet "agent" going from revision h1 to h2
// (template generation 2).
func agentDaemonSet(edit ...func(*builder.DaemonSetWrapper)) *appsv1.DaemonSet {
	w := builder.DaemonSet("agent", "apps").UID("ds-uid").TemplateGeneration("2").
		Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") })
	for _, e := range edit {
		e(w)
	}
	return w.Obj()
}

// daemonSetCluster is the DaemonSet and its two ControllerRevisions.
func daemonSetCluster(ds *appsv1.DaemonSet) []client.Object {
	v1 := ds.Spec.Template.DeepCopy()
	v1.Spec = *podsBefore.DeepCopy()
	return []client.Object{ds,
		builder.ControllerRevision(ds, "DaemonSet", "h1", 1, v1),
		builder.ControllerRevision(ds, "DaemonSet", "h2", 2, &ds.Spec.Template),
	}
}

// dsPod is a pod of the DaemonSet at a revision hash and template
// generation.
func dsPod(name, hash, generation string, edit ...func(*builder.PodWrapper)) *corev1.Pod {
	return managedPod(builder.Pod(name, "apps").OwnedBy("apps/v1", "DaemonSet", "agent", "ds-uid").
		Label("app", "agent").Label(appsv1.DefaultDaemonSetUniqueLabelKey, hash).Label(inplace.LabelPodTemplateGeneration, generation), edit...)
}

// apiDeployment is the Deployment "api" of 4 replicas (the default 25%
// maxSurge and maxUnavailable: 1 each) going from ReplicaSet h1 to h2.
func apiDeployment(edit ...func(*builder.DeploymentWrapper)) *appsv1.Deployment {
	w := builder.Deployment("api", "apps").UID("d-uid").Replicas(4).Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") })
	for _, e := range edit {
		e(w)
	}
	return w.Obj()
}

// apiReplicaSets returns the Deployment's old ReplicaSet (h1, nginx:1.27)
// and new one (h2), with their spec and live replicas.
func apiReplicaSets(d *appsv1.Deployment, oldSpec, oldLive, newSpec, newLive int32) (old, cur *appsv1.ReplicaSet) {
	v1 := d.DeepCopy()
	v1.Spec.Template.Spec = *podsBefore.DeepCopy()
	return builder.ReplicaSet(v1, "h1").Replicas(oldSpec, oldLive).Created(rsCreated).Obj(),
		builder.ReplicaSet(d, "h2").Replicas(newSpec, newLive).Created(rsCreated.Add(time.Hour)).Obj()
}

// rsPod is a pod of a ReplicaSet of the Deployment.
func rsPod(name string, rs *appsv1.ReplicaSet, edit ...func(*builder.PodWrapper)) *corev1.Pod {
	w := builder.Pod(name, "apps").OwnedBy("apps/v1", "ReplicaSet", rs.Name, rs.UID).
		Label("app", "api").Label(appsv1.DefaultDeploymentUniqueLabelKey, rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey]).
		Image("app", rs.Spec.Template.Spec.Containers[0].Image)
	return managedPod(w, edit...)
}

// newRSPod is the ReplicaSet controller's create of a pod of rs: a
// generated name, no status.
func newRSPod(rs *appsv1.ReplicaSet, edit ...func(*builder.PodWrapper)) *corev1.Pod {
	p := rsPod("", rs, edit...)
	p.GenerateName = rs.Name + "-"
	p.Spec.NodeName = ""
	p.Status = corev1.PodStatus{}
	return p
}

// deploymentCluster is the Deployment, its two ReplicaSets at those replicas
// and live pods (their status), and those live pods running: the old
// ReplicaSet's api-h1-a, b, ... (edited by podEdit), the new one's api-h2-m,
// n, ...; deploymentCluster(d, 3, 4, 1, 0) is the first rollout step.
func deploymentCluster(d *appsv1.Deployment, oldSpec, oldLive, newSpec, newLive int32, podEdit ...func(*builder.PodWrapper)) []client.Object {
	return deploymentClusterSeen(d, oldSpec, oldLive, newSpec, newLive, oldLive, newLive, podEdit...)
}

// deploymentClusterSeen is deploymentCluster with other pods running than
// the ReplicaSets' status says: seenOld and seenNew, as the cache holds
// them while a move is in flight.
func deploymentClusterSeen(d *appsv1.Deployment, oldSpec, oldLive, newSpec, newLive, seenOld, seenNew int32, podEdit ...func(*builder.PodWrapper)) []client.Object {
	old, cur := apiReplicaSets(d, oldSpec, oldLive, newSpec, newLive)
	objs := []client.Object{d, old, cur}
	for i := range seenOld {
		objs = append(objs, rsPod("api-h1-"+string(rune('a'+i)), old, podEdit...))
	}
	for i := range seenNew {
		objs = append(objs, rsPod("api-h2-"+string(rune('m'+i)), cur))
	}
	return objs
}

// templateChanged is the cluster with the Deployment's template changed
// again (nginx:1.29: no ReplicaSet's), at generation 3, its controller
// having seen generation observed.
func templateChanged(objs []client.Object, observed int64) []client.Object {
	out := slices.Clone(objs)
	for i, o := range out {
		if d, ok := o.(*appsv1.Deployment); ok {
			d = d.DeepCopy()
			d.Spec.Template.Spec.Containers[0].Image = "nginx:1.29"
			d.Generation, d.Status.ObservedGeneration = 3, observed
			out[i] = d
		}
	}
	return out
}

// lastMoved is the Deployment at its rollout's last step: the old
// ReplicaSet scaled to 0 still counts the pod the manager moved (edited by
// moved) to the new one, which the cache holds with the other three.
func lastMoved(d *appsv1.Deployment, moved func(*builder.PodWrapper)) []client.Object {
	old, cur := apiReplicaSets(d, 0, 1, 4, 3)
	objs := []client.Object{d, old, cur}
	for i := range 3 {
		objs = append(objs, rsPod("api-h2-"+string(rune('m'+i)), cur))
	}
	return append(objs, rsPod("api-h1-a", cur, moved))
}

// managedPod finishes a pod as the pod webhook and the kubelet make it:
// the managed label, the gate, a node, running.
func managedPod(w *builder.PodWrapper, edit ...func(*builder.PodWrapper)) *corev1.Pod {
	w.Label(inplace.LabelManaged, "true").ReadinessGate(inplace.ConditionInPlaceUpdateReady).Node("node-a").Phase(corev1.PodRunning)
	for _, e := range edit {
		e(w)
	}
	return w.Obj()
}

func noGate(w *builder.PodWrapper) { w.Spec.ReadinessGates = nil }

func disrupted(w *builder.PodWrapper) {
	w.Condition(string(corev1.DisruptionTarget), corev1.ConditionTrue)
}

// midUpdate closes the pod's gate for an in-place update, as the engine
// does first.
func midUpdate(at time.Time) func(*builder.PodWrapper) {
	return func(w *builder.PodWrapper) {
		w.ConditionAt(inplace.ConditionInPlaceUpdateReady, corev1.ConditionFalse, inplace.ReasonInPlaceUpdate, at)
	}
}

// updatedAt opens the pod's gate at t, after an update in place (its
// generation past 1) or, with generation 1, at its creation.
func updatedAt(at time.Time, generation int64) func(*builder.PodWrapper) {
	return func(w *builder.PodWrapper) {
		w.Generation(generation).ConditionAt(inplace.ConditionInPlaceUpdateReady, corev1.ConditionTrue, "", at)
	}
}

// withUpdateState records an update state on the pod (failed when failure
// is not "").
func withUpdateState(revision, failure string) func(*builder.PodWrapper) {
	return func(w *builder.PodWrapper) {
		s := &inplace.UpdateState{Revision: revision, Failure: failure}
		w.Annotation(inplace.AnnotationUpdateState, s.Encode())
	}
}

func beingDeleted(o client.Object) client.Object {
	o.SetDeletionTimestamp(&metav1.Time{Time: time.Unix(1, 0)})
	o.SetFinalizers([]string{"foregroundDeletion"})
	return o
}

// fakeNodes is every node's kubelet at v1.37.2, and the lost ones.
type fakeNodes struct{ lost map[string]bool }

func (fakeNodes) KubeletVersion(context.Context, string) string { return "v1.37.2" }
func (n fakeNodes) Lost(_ context.Context, node string) bool    { return n.lost[node] }

// podValidatorHarness is the pod webhooks over a fake cache and API server,
// with what they count and tell.
type podValidatorHarness struct {
	// handler answers a replacement as the API server asks: validate,
	// a delete; the pod-creation webhook, a create.
	handler  replacements
	validate *admission.Webhook
	cache    client.Client
	live     client.Client
	recorder *events.FakeRecorder
	// waker wakes the controllers refused, writing to live; running says
	// whether a manager replica runs the rollout engine.
	waker   *Waker
	running atomic.Bool

	mu                         sync.Mutex
	fallbacks, refusals, woken []string
}

type harnessOptions struct {
	// cache is what the cache holds, live what the API server holds: the
	// cache's when nil.
	cache, live []client.Object
	lost        map[string]bool
	notRunning  bool
	clock       *clocktesting.FakeClock
}

func newPodValidatorHarness(t *testing.T, o harnessOptions) *podValidatorHarness {
	t.Helper()
	namespaces := func() []client.Object {
		return []client.Object{namespace("apps", enabled), namespace("plain", nil), namespace("kube-system", enabled)}
	}
	build := func(objs []client.Object) client.Client {
		copies := namespaces()
		for _, o := range objs {
			copies = append(copies, o.DeepCopyObject().(client.Object))
		}
		return fake.NewClientBuilder().WithScheme(testScheme).WithObjects(copies...).Build()
	}
	cache := build(o.cache)
	live := cache
	if o.live != nil {
		live = build(o.live)
	}
	if o.clock == nil {
		o.clock = clocktesting.NewFakeClock(time.Now())
	}
	h := &podValidatorHarness{cache: cache, live: live, recorder: events.NewFakeRecorder(100)}
	h.running.Store(!o.notRunning)
	hooks, pods := handlers(Config{
		Scope:  inplace.NewScope(inplace.PolicyNamespace, "inplace-system"),
		Reader: cache, LiveReader: live, ManagerUsername: managerUser, Scheme: testScheme,
		Clock:         o.clock,
		Nodes:         fakeNodes{lost: o.lost},
		EngineRunning: h.running.Load,
		OnFallback: func(kind, reason string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.fallbacks = append(h.fallbacks, kind+"/"+reason)
		},
		OnRefusal: func(kind string) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.refusals = append(h.refusals, kind)
		},
		Recorder: h.recorder,
	})
	h.validate = hooks[PathValidatePod]
	h.handler = replacements{create: hooks[PathMutatePod], delete: hooks[PathValidatePod]}
	h.waker = &Waker{validator: pods, Client: live, OnWake: func(kind, reason string) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.woken = append(h.woken, kind+"/"+reason)
	}}
	return h
}

// events drains the events told so far.
func (h *podValidatorHarness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// replacements are the pod webhooks a workload controller's replacement of
// a pod goes through: its create to the pod-creation webhook, which gates
// the pod too, its delete to the pod-validating one.
type replacements struct{ create, delete *admission.Webhook }

func (r replacements) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation == admissionv1.Create {
		return r.create.Handle(ctx, req)
	}
	return r.delete.Handle(ctx, req)
}

// deleteBy is user's delete of pod, as the API server sends it to the
// webhook: the stored pod as the old object.
func deleteBy(t testing.TB, user string, pod *corev1.Pod) admission.Request {
	req := review(t, admissionv1.Delete, pod, pod)
	req.Object = runtime.RawExtension{}
	req.UserInfo.Username = user
	return req
}

// createBy is user's create of pod.
func createBy(t testing.TB, user string, pod *corev1.Pod) admission.Request {
	req := review(t, admissionv1.Create, pod, nil)
	req.UserInfo.Username = user
	return req
}

// checkAnswer checks the webhook's answer: allowed (wantDenied "") with a
// 200, or refused with a 403 and that message.
func checkAnswer(t *testing.T, resp admission.Response, wantDenied string) {
	t.Helper()
	if resp.Result == nil {
		t.Fatalf("no result in the response")
	}
	if wantDenied == "" {
		if !resp.Allowed || resp.Result.Code != http.StatusOK {
			t.Fatalf("refused with %d: %s; want allowed", resp.Result.Code, resp.Result.Message)
		}
		return
	}
	if resp.Allowed {
		t.Fatalf("allowed; want refused with %q", wantDenied)
	}
	if resp.Result.Code != http.StatusForbidden {
		t.Errorf("refused with %d, want 403", resp.Result.Code)
	}
	if resp.Result.Message != wantDenied {
		t.Errorf("message:\n got %s\nwant %s", resp.Result.Message, wantDenied)
	}
}

const (
	refusedWeb2         = "inplace: pod web-2 is updated in place to revision web-2 of its StatefulSet instead of recreated; the StatefulSet controller goes on once the pod runs that revision"
	refusedWeb2New      = "inplace: pod web-2 is updated in place to the template of generation 2 of its StatefulSet instead of recreated; the StatefulSet controller goes on once the pod runs that revision"
	refusedAgentX       = "inplace: pod agent-x is updated in place to revision h2 of its DaemonSet instead of recreated; the DaemonSet controller goes on once the pod runs that revision"
	refusedApiA         = "inplace: pod api-h1-a is updated in place to revision h2 of its Deployment instead of recreated; the Deployment controller goes on once the pod runs that revision"
	refusedApiATemplate = "inplace: pod api-h1-a is updated in place to the new template of its Deployment instead of recreated; the Deployment controller goes on once the pod runs that revision"
	refusedApiNew       = "inplace: the Deployment api is rolled out in place: its old pods are moved to the new ReplicaSet instead of new pods created"
)

// TestPodValidator feeds the pod webhook the workload controllers'
// replacements of pods, and others', for each kind, and checks which are
// refused, with what words, and what is counted and told.
func TestPodValidator(t *testing.T) { testclock.Run(t, testPodValidator) }

func testPodValidator(t *testing.T, now time.Time) {
	d := apiDeployment()
	old, cur := apiReplicaSets(d, 3, 4, 1, 0)
	cases := map[string]struct {
		cluster      []client.Object
		req          func(t testing.TB) admission.Request
		lost         map[string]bool
		notRunning   bool
		wantDenied   string
		wantFallback []string
		wantEvents   []string
	}{
		// The StatefulSet.
		"the StatefulSet controller's delete of a pod updated in place": {
			cluster: statefulSetCluster(webStatefulSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1"))
			},
			wantDenied: refusedWeb2,
		},
		"the StatefulSet controller's first delete of a rollout, its status not written yet": {
			cluster: statefulSetCluster(webStatefulSet(func(s *appsv1.StatefulSet) {
				s.Generation, s.Status.ObservedGeneration = 2, 1
				s.Status.CurrentRevision, s.Status.UpdateRevision = "web-1", "web-1"
			})),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1"))
			},
			wantDenied: refusedWeb2New,
		},
		"a user's delete": {
			cluster: statefulSetCluster(webStatefulSet()),
			req:     func(t testing.TB) admission.Request { return deleteBy(t, "alice", stsPod("web-2", "web-1")) },
		},
		"the workload opted out with Recreate": {
			cluster: statefulSetCluster(webStatefulSet(func(s *appsv1.StatefulSet) {
				metav1.SetMetaDataAnnotation(&s.ObjectMeta, inplace.AnnotationUpdatePolicy, "Recreate")
			})),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1"))
			},
		},
		"no manager replica runs the rollout": {
			cluster: statefulSetCluster(webStatefulSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1"))
			},
			notRunning: true,
		},
		"a pod in an unlabelled namespace": {
			cluster: statefulSetCluster(webStatefulSet(func(s *appsv1.StatefulSet) { s.Namespace = "plain" })),
			req: func(t testing.TB) admission.Request {
				p := stsPod("web-2", "web-1")
				p.Namespace = "plain"
				return deleteBy(t, statefulSetController, p)
			},
		},
		"a StatefulSet's scale-down (ordinal 3 of 3 replicas)": {
			cluster: statefulSetCluster(webStatefulSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-3", "web-1"))
			},
		},
		"a StatefulSet pod without the gate: recreated, counted and told": {
			cluster: statefulSetCluster(webStatefulSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1", noGate))
			},
			wantFallback: []string{"StatefulSet/" + inplace.FallbackNoReadinessGate},
			wantEvents: []string{"Normal " + ReasonRecreatedNotInPlace + " The StatefulSet controller recreates the pod, not in place: " +
				inplace.FallbackWords[inplace.FallbackNoReadinessGate]},
		},
		"a StatefulSet pod being evicted (DisruptionTarget)": {
			cluster: statefulSetCluster(webStatefulSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1", disrupted))
			},
		},
		"a StatefulSet pod on a lost node": {
			cluster: statefulSetCluster(webStatefulSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1"))
			},
			lost: map[string]bool{"node-a": true},
		},
		"a pod of a StatefulSet being deleted": {
			cluster: statefulSetCluster(beingDeleted(webStatefulSet()).(*appsv1.StatefulSet)),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1"))
			},
		},
		"a pod of a StatefulSet of that name replaced since (another UID)": {
			cluster: statefulSetCluster(webStatefulSet(func(s *appsv1.StatefulSet) { s.UID = "sts-uid-2" })),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1"))
			},
		},
		"a pod of a StatefulSet gone": {
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1"))
			},
		},

		// The DaemonSet.
		"the DaemonSet controller's delete of an old pod": {
			cluster: daemonSetCluster(agentDaemonSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h1", "1"))
			},
			wantDenied: refusedAgentX,
		},
		"the DaemonSet controller's delete of a pod it counts updated, updated long ago: its node no longer fits": {
			cluster: daemonSetCluster(agentDaemonSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h2", "2", updatedAt(now.Add(-time.Hour), 2)))
			},
		},
		"the DaemonSet controller's delete of a pod updated in place 5 s ago: a stale view": {
			cluster: daemonSetCluster(agentDaemonSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h2", "2", updatedAt(now.Add(-5*time.Second), 2)))
			},
			wantDenied: refusedAgentX,
		},
		"the DaemonSet controller's delete of an updated pod whose gate opened 5 s ago at its creation": {
			cluster: daemonSetCluster(agentDaemonSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h2", "2", updatedAt(now.Add(-5*time.Second), 1)))
			},
		},
		"a DaemonSet that surges (maxSurge 1)": {
			cluster: daemonSetCluster(agentDaemonSet(func(w *builder.DaemonSetWrapper) {
				w.RollingUpdate(ptr.To(intstr.FromInt32(1)), ptr.To(intstr.FromInt32(0)))
			})),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h1", "1"))
			},
		},
		"a DaemonSet OnDelete": {
			cluster: daemonSetCluster(agentDaemonSet(func(w *builder.DaemonSetWrapper) { w.OnDelete() })),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h1", "1"))
			},
		},
		"a DaemonSet whose revisions are another DaemonSet's: no current revision, passes": {
			cluster: func() []client.Object {
				objs := daemonSetCluster(agentDaemonSet())
				for _, o := range objs[1:] {
					o.(*appsv1.ControllerRevision).OwnerReferences[0].UID = "another-ds"
				}
				return objs
			}(),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h1", "1"))
			},
		},
		"a DaemonSet pod on a lost node": {
			cluster: daemonSetCluster(agentDaemonSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h1", "1"))
			},
			lost: map[string]bool{"node-a": true},
		},
		"a DaemonSet pod being evicted": {
			cluster: daemonSetCluster(agentDaemonSet()),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h1", "1", disrupted))
			},
		},
		"a pod of a DaemonSet being deleted": {
			cluster: daemonSetCluster(beingDeleted(agentDaemonSet()).(*appsv1.DaemonSet)),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h1", "1"))
			},
		},

		// The Deployment.
		"the ReplicaSet controller's delete of an old pod, 4 live of 4: the rollout's": {
			cluster:    deploymentCluster(d, 3, 4, 1, 0),
			req:        func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
			wantDenied: refusedApiA,
		},
		"its create of a pod of the new ReplicaSet, 4 live of 4: a surge": {
			cluster:    deploymentCluster(d, 4, 4, 1, 0),
			req:        func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
			wantDenied: refusedApiNew,
		},
		"its delete of an old pod, 5 live of 4: a scale-down": {
			cluster: deploymentCluster(d, 3, 4, 1, 1),
			req:     func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
		},
		"its create of a pod of the new ReplicaSet, 3 live of 4: capacity": {
			cluster: deploymentCluster(d, 3, 3, 2, 0),
			req:     func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
		},
		"its create, a move in flight: the status says 3 live (the old ReplicaSet's counted the pod gone, the new one not yet), 4 are: a surge": {
			cluster:    deploymentClusterSeen(d, 2, 2, 3, 1, 2, 2),
			req:        func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
			wantDenied: refusedApiNew,
		},
		"its delete of an old pod, a move in flight: the status says 5 live (the new ReplicaSet counted the pod, the old one still), 4 are: a rollout's": {
			cluster:    deploymentClusterSeen(d, 2, 3, 2, 2, 2, 2),
			req:        func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
			wantDenied: refusedApiA,
		},
		"its delete of an old pod, the template changed again and its ReplicaSet not made yet: still the rollout's": {
			cluster:    templateChanged(deploymentCluster(d, 3, 4, 1, 0), 2),
			req:        func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
			wantDenied: refusedApiATemplate,
		},
		"its create of a pod of the ReplicaSet that was new, the template changed again and its ReplicaSet not made yet: still a surge": {
			cluster:    templateChanged(deploymentCluster(d, 3, 4, 1, 0), 2),
			req:        func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
			wantDenied: refusedApiNew,
		},
		"its delete of an old pod, the template changed and the Deployment controller saw it without a ReplicaSet (paused): passes": {
			cluster: templateChanged(deploymentCluster(d, 3, 4, 1, 0), 3),
			req:     func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
		},
		"its create of a pod of the new ReplicaSet, no old pod movable (none gated): the rollout is native": {
			cluster: deploymentCluster(d, 4, 4, 1, 0, noGate),
			req:     func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
		},
		"its create, the last old pod moved and mid-update, the ReplicaSet's view from before the move: a surge": {
			cluster:    lastMoved(d, midUpdate(now)),
			req:        func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
			wantDenied: refusedApiNew,
		},
		"its create, the last old pod moved 5s ago, the ReplicaSet's view from before the move: a surge": {
			cluster:    lastMoved(d, updatedAt(now.Add(-5*time.Second), 2)),
			req:        func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
			wantDenied: refusedApiNew,
		},
		"its create, every pod moved a minute ago and 4 live of 4: passes, no move to stand for it": {
			cluster: lastMoved(d, updatedAt(now.Add(-time.Minute), 2)),
			req:     func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
		},
		"its delete of an old pod without the gate: recreated, counted and told": {
			cluster: deploymentCluster(d, 3, 4, 1, 0),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, replicaSetController, rsPod("api-h1-a", old, noGate))
			},
			wantFallback: []string{"Deployment/" + inplace.FallbackNoReadinessGate},
			wantEvents: []string{"Normal " + ReasonRecreatedNotInPlace + " The Deployment controller recreates the pod, not in place: " +
				inplace.FallbackWords[inplace.FallbackNoReadinessGate]},
		},
		"a user's create of a pod of the new ReplicaSet": {
			cluster: deploymentCluster(d, 4, 4, 1, 0),
			req:     func(t testing.TB) admission.Request { return createBy(t, "alice", newRSPod(cur)) },
		},
		"a Deployment pod being evicted": {
			cluster: deploymentCluster(d, 3, 4, 1, 0),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, replicaSetController, rsPod("api-h1-a", old, disrupted))
			},
		},
		"a Deployment pod on a lost node": {
			cluster: deploymentCluster(d, 3, 4, 1, 0),
			req:     func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
			lost:    map[string]bool{"node-a": true},
		},
		"a pod of an old ReplicaSet being deleted": {
			cluster: func() []client.Object {
				objs := deploymentCluster(d, 3, 4, 1, 0)
				beingDeleted(objs[1])
				return objs
			}(),
			req: func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
		},
		"a pod of a Deployment being deleted": {
			cluster: deploymentCluster(beingDeleted(apiDeployment()).(*appsv1.Deployment), 3, 4, 1, 0),
			req:     func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
		},
		"a create while no manager replica runs the rollout": {
			cluster:    deploymentCluster(d, 4, 4, 1, 0),
			req:        func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
			notRunning: true,
		},
		"a Deployment of 2 replicas with the default 25%: maxUnavailable 0, native": {
			cluster: deploymentCluster(apiDeployment(func(w *builder.DeploymentWrapper) { w.Replicas(2) }), 1, 2, 1, 0),
			req:     func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
		},
		"a Deployment with the Recreate strategy": {
			cluster: deploymentCluster(apiDeployment(func(w *builder.DeploymentWrapper) { w.Recreate() }), 0, 4, 0, 0),
			req:     func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
		},
		"a pod of a ReplicaSet of no Deployment": {
			cluster: func() []client.Object {
				objs := deploymentCluster(d, 3, 4, 1, 0)
				objs[1].SetOwnerReferences(nil)
				return objs
			}(),
			req: func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
		},
		"a pod controlled by something else than a workload (a Job)": {
			cluster: deploymentCluster(d, 3, 4, 1, 0),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, replicaSetController, managedPod(builder.Pod("job-x", "apps").OwnedBy("batch/v1", "Job", "job", "job-uid")))
			},
		},
		"an orphan pod": {
			cluster: deploymentCluster(d, 3, 4, 1, 0),
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, replicaSetController, managedPod(builder.Pod("lone", "apps")))
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := newPodValidatorHarness(t, harnessOptions{
				cache: tc.cluster, lost: tc.lost, notRunning: tc.notRunning, clock: clocktesting.NewFakeClock(now),
			})
			req := tc.req(t)
			resp := h.handler.Handle(t.Context(), req)
			checkAnswer(t, resp, tc.wantDenied)
			if resp.UID != req.UID {
				t.Errorf("response UID %q, want %q", resp.UID, req.UID)
			}
			var wantRefusals []string
			if tc.wantDenied != "" {
				wantRefusals = []string{refusedKind(tc.wantDenied)}
			}
			if diff := cmp.Diff(wantRefusals, h.refusals); diff != "" {
				t.Errorf("refusals counted (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantFallback, h.fallbacks); diff != "" {
				t.Errorf("fallbacks counted (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantEvents, h.events()); diff != "" {
				t.Errorf("events (-want,+got):\n%s", diff)
			}
		})
	}
}

// refusedKind is the workload kind a refusal's message names.
func refusedKind(message string) string {
	for _, k := range []string{"StatefulSet", "DaemonSet", "Deployment"} {
		if strings.Contains(message, " "+k+" ") {
			return k
		}
	}
	return ""
}

// The StatefulSet controller deletes on a view at least as new as the one
// that made it decide: a partition just lowered that the cache has not seen
// yet must not let a pod of the rollout be recreated.
func TestPodDeleteValidatorDecidesOnALiveReadBeforeLettingGo(t *testing.T) {
	testclock.Run(t, testPodDeleteValidatorDecidesOnALiveReadBeforeLettingGo)
}

func testPodDeleteValidatorDecidesOnALiveReadBeforeLettingGo(t *testing.T, now time.Time) {
	v1 := builder.PodTemplate("web", "nginx:1.27").Obj()
	raw, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": v1}})
	rev := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "apps"}, Data: runtime.RawExtension{Raw: raw}}
	withPartition := func(p int32, resourceVersion string) *appsv1.StatefulSet {
		s := builder.StatefulSet("web", "apps").Replicas(3).Template(func(t *builder.Template) { t.Image("app", "nginx:1.28") }).Obj()
		s.UID = "sts-uid"
		s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
			Type:          appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &p},
		}
		s.ResourceVersion = resourceVersion
		return s
	}
	// web-1 is below the canary's partition (2) in the cache, in the
	// rollout once the partition is 0.
	pod := builder.Pod("web-1", "apps").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").
		Label(appsv1.StatefulSetRevisionLabel, "web-1").Label(inplace.LabelManaged, "true").
		ReadinessGate(inplace.ConditionInPlaceUpdateReady).Obj()
	for name, tc := range map[string]struct {
		live       *appsv1.StatefulSet
		wantRefuse bool
	}{
		"the partition lowered, seen live only": {live: withPartition(0, "20"), wantRefuse: true},
		"the cache is current":                  {live: withPartition(2, "10"), wantRefuse: false},
	} {
		t.Run(name, func(t *testing.T) {
			cached := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(withPartition(2, "10"), rev.DeepCopy(), namespace("apps", enabled)).Build()
			live := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(tc.live, rev.DeepCopy(), namespace("apps", enabled)).Build()
			h := Handlers(Config{
				Scope:  inplace.NewScope(inplace.PolicyNamespace, "inplace-system"),
				Reader: cached, LiveReader: live, ManagerUsername: managerUser, Scheme: testScheme,
				Clock:         clocktesting.NewFakePassiveClock(now),
				EngineRunning: func() bool { return true },
			})[PathValidatePod]
			req := review(t, admissionv1.Delete, pod, pod)
			req.Object = runtime.RawExtension{}
			req.UserInfo.Username = statefulSetController
			resp := h.Handle(t.Context(), req)
			if refused := !resp.Allowed; refused != tc.wantRefuse {
				t.Fatalf("refused = %v (%v), want %v", refused, resp.Result, tc.wantRefuse)
			}
		})
	}
}

// TestPodValidatorReadsLiveWhatTheCacheHasNotSeen: a rollout's first
// replacements come an instant after its controller recorded the new
// revision (a new ReplicaSet, a new ControllerRevision), which the cache
// may not hold yet; a managed pod is let go only on a live read.
func TestPodValidatorReadsLiveWhatTheCacheHasNotSeen(t *testing.T) {
	testclock.Run(t, testPodValidatorReadsLiveWhatTheCacheHasNotSeen)
}

func testPodValidatorReadsLiveWhatTheCacheHasNotSeen(t *testing.T, now time.Time) {
	d := apiDeployment()
	old, cur := apiReplicaSets(d, 4, 4, 1, 0)
	without := func(objs []client.Object, name string) []client.Object {
		var out []client.Object
		for _, o := range objs {
			if o.GetName() != name {
				out = append(out, o)
			}
		}
		return out
	}
	cases := map[string]struct {
		live       []client.Object
		cacheLacks string
		req        func(t testing.TB) admission.Request
		wantDenied string
	}{
		"the new ReplicaSet's first pod, the ReplicaSet made an instant ago": {
			live: deploymentCluster(d, 4, 4, 1, 0), cacheLacks: cur.Name,
			req:        func(t testing.TB) admission.Request { return createBy(t, replicaSetController, newRSPod(cur)) },
			wantDenied: refusedApiNew,
		},
		"an old pod's delete, the new ReplicaSet made an instant ago": {
			live: deploymentCluster(d, 3, 4, 1, 0), cacheLacks: cur.Name,
			req:        func(t testing.TB) admission.Request { return deleteBy(t, replicaSetController, rsPod("api-h1-a", old)) },
			wantDenied: refusedApiA,
		},
		"an old DaemonSet pod's delete, the new revision recorded an instant ago": {
			live: daemonSetCluster(agentDaemonSet()), cacheLacks: "agent-h2",
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, daemonSetController, dsPod("agent-x", "h1", "1"))
			},
			wantDenied: refusedAgentX,
		},
		"a StatefulSet pod's delete, the new revision recorded an instant ago": {
			live: statefulSetCluster(webStatefulSet()), cacheLacks: "web-2",
			req: func(t testing.TB) admission.Request {
				return deleteBy(t, statefulSetController, stsPod("web-2", "web-1"))
			},
			wantDenied: refusedWeb2,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := newPodValidatorHarness(t, harnessOptions{
				cache: without(tc.live, tc.cacheLacks), live: tc.live, clock: clocktesting.NewFakeClock(now),
			})
			checkAnswer(t, h.handler.Handle(t.Context(), tc.req(t)), tc.wantDenied)
		})
	}
}

// promiseFixture is one kind's replacement for the promise's tests.
type promiseFixture struct {
	kind string
	// variant tells apart, in the tests' names, fixtures of one kind.
	variant string
	// cluster is the workload, what its rule reads, and its pods.
	cluster func(minReady int32) []client.Object
	// victim is the pod the controller replaces; req its replacement.
	victim func(edit ...func(*builder.PodWrapper)) *corev1.Pod
	req    func(t testing.TB, pod *corev1.Pod) admission.Request
	// sibling is another pod of the workload's, one that would be updated
	// in place (of the new ReplicaSet for a Deployment).
	sibling func(edit ...func(*builder.PodWrapper)) *corev1.Pod
	// arrived is a pod of the workload at the target, its gate never
	// closed: one an update that restarted nothing relabelled; nil when
	// no pod can be at the target (it has no ReplicaSet yet), and then
	// the engine records no pull for it either.
	arrived func(name string) *corev1.Pod
	// retarget changes the workload's template: a new target revision;
	// retargeted is the pod replaced after it, when another.
	retarget   func(t *testing.T, c client.Client)
	retargeted func() *corev1.Pod
	// deleted is true when the replacement is a delete (the victim exists).
	deleted bool
	message string
	// workload is the workload's name and an empty object of its kind;
	// target the revision its rollout goes to.
	workload func() (string, client.Object)
	target   string
}

// record writes a rollout record on the fixture's workload.
func (f promiseFixture) record(t *testing.T, c client.Client, r *inplace.Rollout) {
	t.Helper()
	name, obj := f.workload()
	get(t, c, name, obj)
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[inplace.AnnotationRollout] = r.Encode()
	obj.SetAnnotations(a)
	replace(t, c, obj)
}

func promiseFixtures() []promiseFixture {
	d := apiDeployment()
	old, cur := apiReplicaSets(d, 3, 4, 1, 0)
	retargetTemplate := func(t *corev1.PodTemplateSpec) { t.Spec.Containers[0].Image = "nginx:1.29" }
	return []promiseFixture{{
		kind: "StatefulSet",
		cluster: func(minReady int32) []client.Object {
			return statefulSetCluster(webStatefulSet(func(s *appsv1.StatefulSet) { s.Spec.MinReadySeconds = minReady }))
		},
		victim:  func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return stsPod("web-2", "web-1", edit...) },
		req:     func(t testing.TB, p *corev1.Pod) admission.Request { return deleteBy(t, statefulSetController, p) },
		sibling: func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return stsPod("web-1", "web-1", edit...) },
		arrived: func(name string) *corev1.Pod { return stsPod(name, "web-2") },
		retarget: func(t *testing.T, c client.Client) {
			sts := &appsv1.StatefulSet{}
			get(t, c, "web", sts)
			retargetTemplate(&sts.Spec.Template)
			sts.Status.UpdateRevision = "web-3"
			replace(t, c, sts)
			create(t, c, builder.ControllerRevision(sts, "StatefulSet", "3", 3, &sts.Spec.Template))
		},
		deleted: true, message: refusedWeb2,
		workload: func() (string, client.Object) { return "web", &appsv1.StatefulSet{} }, target: "web-2",
	}, {
		kind: "DaemonSet",
		cluster: func(minReady int32) []client.Object {
			return daemonSetCluster(agentDaemonSet(func(w *builder.DaemonSetWrapper) { w.MinReadySeconds(minReady) }))
		},
		victim:  func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return dsPod("agent-x", "h1", "1", edit...) },
		req:     func(t testing.TB, p *corev1.Pod) admission.Request { return deleteBy(t, daemonSetController, p) },
		sibling: func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return dsPod("agent-y", "h1", "1", edit...) },
		arrived: func(name string) *corev1.Pod { return dsPod(name, "h2", "2") },
		retarget: func(t *testing.T, c client.Client) {
			ds := &appsv1.DaemonSet{}
			get(t, c, "agent", ds)
			retargetTemplate(&ds.Spec.Template)
			replace(t, c, ds)
			create(t, c, builder.ControllerRevision(ds, "DaemonSet", "h3", 3, &ds.Spec.Template))
		},
		deleted: true, message: refusedAgentX,
		workload: func() (string, client.Object) { return "agent", &appsv1.DaemonSet{} }, target: "h2",
	}, {
		kind: "Deployment",
		// The new ReplicaSet has room for the pods that arrive in it and
		// for the victim (NoRoom: without, its delete would pass).
		cluster: func(minReady int32) []client.Object {
			return deploymentCluster(apiDeployment(func(w *builder.DeploymentWrapper) { w.MinReadySeconds(minReady) }), 3, 4, 3, 0)
		},
		victim:  func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return rsPod("api-h1-a", old, edit...) },
		req:     func(t testing.TB, p *corev1.Pod) admission.Request { return deleteBy(t, replicaSetController, p) },
		sibling: func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return rsPod("api-h2-m", cur, edit...) },
		arrived: func(name string) *corev1.Pod { return rsPod(name, cur) },
		retarget: func(t *testing.T, c client.Client) {
			d := &appsv1.Deployment{}
			get(t, c, "api", d)
			retargetTemplate(&d.Spec.Template)
			replace(t, c, d)
			create(t, c, builder.ReplicaSet(d, "h3").Replicas(1, 0).Created(rsCreated.Add(2*time.Hour)).Obj())
		},
		deleted: true, message: refusedApiA,
		workload: func() (string, client.Object) { return "api", &appsv1.Deployment{} }, target: "h2",
	}, {
		kind: "Deployment",
		cluster: func(minReady int32) []client.Object {
			return deploymentCluster(apiDeployment(func(w *builder.DeploymentWrapper) { w.MinReadySeconds(minReady) }), 4, 4, 1, 0)
		},
		victim:  func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return newRSPod(cur, edit...) },
		req:     func(t testing.TB, p *corev1.Pod) admission.Request { return createBy(t, replicaSetController, p) },
		sibling: func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return rsPod("api-h2-m", cur, edit...) },
		arrived: func(name string) *corev1.Pod { return rsPod(name, cur) },
		retarget: func(t *testing.T, c client.Client) {
			d := &appsv1.Deployment{}
			get(t, c, "api", d)
			retargetTemplate(&d.Spec.Template)
			replace(t, c, d)
			create(t, c, builder.ReplicaSet(d, "h3").Replicas(1, 0).Created(rsCreated.Add(2*time.Hour)).Obj())
		},
		retargeted: func() *corev1.Pod {
			d := apiDeployment()
			d.Spec.Template.Spec.Containers[0].Image = "nginx:1.29"
			return newRSPod(builder.ReplicaSet(d, "h3").Obj())
		},
		message:  refusedApiNew,
		workload: func() (string, client.Object) { return "api", &appsv1.Deployment{} }, target: "h2",
	}, {
		// The template changed again and the Deployment controller has not
		// made its ReplicaSet: the refusals stand for that one (with no
		// name yet), and are bounded by the same clock while the status
		// lags.
		kind: "Deployment", variant: ", its new ReplicaSet not made yet,",
		cluster: func(minReady int32) []client.Object {
			return templateChanged(deploymentCluster(apiDeployment(func(w *builder.DeploymentWrapper) { w.MinReadySeconds(minReady) }), 3, 4, 1, 0), 2)
		},
		victim:  func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return rsPod("api-h1-a", old, edit...) },
		req:     func(t testing.TB, p *corev1.Pod) admission.Request { return deleteBy(t, replicaSetController, p) },
		sibling: func(edit ...func(*builder.PodWrapper)) *corev1.Pod { return rsPod("api-h2-m", cur, edit...) },
		retarget: func(t *testing.T, c client.Client) {
			d := &appsv1.Deployment{}
			get(t, c, "api", d)
			create(t, c, builder.ReplicaSet(d, "h3").Replicas(1, 0).Created(rsCreated.Add(2*time.Hour)).Obj())
		},
		deleted: true, message: refusedApiATemplate,
		workload: func() (string, client.Object) { return "api", &appsv1.Deployment{} }, target: "",
	}}
}

func get(t *testing.T, c client.Client, name string, obj client.Object) {
	t.Helper()
	if err := c.Get(t.Context(), types.NamespacedName{Namespace: "apps", Name: name}, obj); err != nil {
		t.Fatal(err)
	}
}

// replace stores obj, spec and status, in place of the object of its name
// (the fake client, as the API server, keeps an update's status out).
func replace(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Delete(t.Context(), obj); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	obj.SetResourceVersion("")
	create(t, c, obj)
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
}

// TestPodValidatorKeepsItsPromiseOnlyWhileTheRolloutProgresses replays
// replacements over time, on a fake clock: a refusal stands while the
// rollout shows progress, and for PromiseTimeout (and minReadySeconds) from
// the first refusal without any; past that every replacement passes, told.
func TestPodValidatorKeepsItsPromiseOnlyWhileTheRolloutProgresses(t *testing.T) {
	testclock.Run(t, testPodValidatorKeepsItsPromise)
}

func testPodValidatorKeepsItsPromise(t *testing.T, start time.Time) {
	// A step is a replacement at a time after the first; before it, change
	// edits the cluster (now is the step's time).
	type step struct {
		at          time.Duration
		change      func(t *testing.T, f promiseFixture, c client.Client, now time.Time)
		victimEdit  func(now time.Time) func(*builder.PodWrapper)
		wantRefused bool
	}
	putSibling := func(edit func(now time.Time) func(*builder.PodWrapper)) func(t *testing.T, f promiseFixture, c client.Client, now time.Time) {
		return func(t *testing.T, f promiseFixture, c client.Client, now time.Time) {
			replace(t, c, f.sibling(edit(now)))
		}
	}
	// putStranger stores a pod that the workload's selector matches,
	// controlled by another workload.
	putStranger := func(edit func(now time.Time) func(*builder.PodWrapper)) func(t *testing.T, f promiseFixture, c client.Client, now time.Time) {
		return func(t *testing.T, f promiseFixture, c client.Client, now time.Time) {
			p := f.sibling(edit(now))
			p.Name, p.OwnerReferences[0].UID = "stranger", "stranger-uid"
			replace(t, c, p)
		}
	}
	openedAgo := func(ago time.Duration, generation int64) func(now time.Time) func(*builder.PodWrapper) {
		return func(now time.Time) func(*builder.PodWrapper) { return updatedAt(now.Add(-ago), generation) }
	}
	updating := func(failure string) func(now time.Time) func(*builder.PodWrapper) {
		return func(now time.Time) func(*builder.PodWrapper) {
			return func(w *builder.PodWrapper) {
				midUpdate(now)(w)
				withUpdateState("target", failure)(w)
			}
		}
	}
	// putArrived stores a pod that reached the target with no restart.
	putArrived := func(name string) func(t *testing.T, f promiseFixture, c client.Client, now time.Time) {
		return func(t *testing.T, f promiseFixture, c client.Client, now time.Time) {
			replace(t, c, f.arrived(name))
		}
	}
	// pulling records the engine waiting for a pull ahead, since now, to
	// the fixture's target or another revision.
	pulling := func(failed, otherRevision bool) func(t *testing.T, f promiseFixture, c client.Client, now time.Time) {
		return func(t *testing.T, f promiseFixture, c client.Client, now time.Time) {
			r := &inplace.Rollout{Revision: f.target, Since: metav1.NewTime(now), Pulling: ptr.To(metav1.NewTime(now)), PullFailed: failed}
			if otherRevision {
				r.Revision = "another"
			}
			f.record(t, c, r)
		}
	}
	retargeted := false
	retarget := func(t *testing.T, f promiseFixture, c client.Client, _ time.Time) {
		f.retarget(t, c)
		retargeted = true
	}
	cases := map[string]struct {
		minReady int32
		steps    []step
		// wantHalted is how many times the workload is told its rollout
		// halted; wantRecreated how many pods are told.
		wantHalted, wantRecreated int
		// atTarget is true when the case puts a pod or a pull at the
		// target.
		atTarget bool
	}{
		"the engine pulling ahead (its record): refused while the pull runs, within PullHold; then 30 s more": {
			atTarget: true,
			steps: []step{
				{at: 0, change: pulling(false, false), wantRefused: true},
				{at: 5 * time.Minute, wantRefused: true},
				{at: inplace.PullHold - time.Second, wantRefused: true},
				{at: inplace.PullHold, wantRefused: true},
				{at: inplace.PullHold + 30*time.Second},
			},
			wantHalted: 1, wantRecreated: 1,
		},
		"a node that cannot pull ahead (its record): refused as long as it is recorded": {
			atTarget: true,
			steps: []step{
				{at: 0, change: pulling(true, false), wantRefused: true},
				{at: time.Hour, wantRefused: true},
			},
		},
		"a pull recorded for another revision is no progress": {
			steps: []step{
				{at: 0, change: pulling(true, true), wantRefused: true},
				{at: 30 * time.Second},
			},
			wantHalted: 1, wantRecreated: 1,
		},
		"no progress: refused for 30 s from the first refusal, then passing, the workload told once": {
			steps: []step{
				{at: 0, wantRefused: true},
				{at: 29 * time.Second, wantRefused: true},
				{at: 30 * time.Second},
				{at: 31 * time.Second},
			},
			wantHalted: 1, wantRecreated: 2,
		},
		"minReadySeconds comes on top of the 30 s": {
			minReady: 10,
			steps: []step{
				{at: 0, wantRefused: true},
				{at: 39 * time.Second, wantRefused: true},
				{at: 40 * time.Second},
			},
			wantHalted: 1, wantRecreated: 1,
		},
		"a pod of the workload mid-update: refused as long as it is": {
			steps: []step{
				{at: 0, change: putSibling(updating("")), wantRefused: true},
				{at: 60 * time.Second, wantRefused: true},
				{at: 10 * time.Minute, wantRefused: true},
			},
		},
		"a pod of the workload whose update failed is no progress": {
			steps: []step{
				{at: 0, change: putSibling(updating("container app: ImagePullBackOff")), wantRefused: true},
				{at: 30 * time.Second},
			},
			wantHalted: 1, wantRecreated: 1,
		},
		"a pod of the workload updated 10 s before each replacement: refused; once they stop, 30 s more": {
			steps: []step{
				{at: 0, change: putSibling(openedAgo(10*time.Second, 2)), wantRefused: true},
				{at: 60 * time.Second, change: putSibling(openedAgo(10*time.Second, 2)), wantRefused: true},
				{at: 120 * time.Second, change: putSibling(openedAgo(10*time.Second, 2)), wantRefused: true},
				// updated 50 s before: no progress since; the clock starts now
				{at: 160 * time.Second, wantRefused: true},
				{at: 189 * time.Second, wantRefused: true},
				{at: 190 * time.Second},
			},
			wantHalted: 1, wantRecreated: 1,
		},
		"progress after a first refusal: the clock restarts once it stops": {
			steps: []step{
				{at: 0, wantRefused: true},
				{at: 20 * time.Second, change: putSibling(openedAgo(5*time.Second, 2)), wantRefused: true},
				// updated 35 s before: the first refusal without progress is now
				{at: 50 * time.Second, wantRefused: true},
				{at: 79 * time.Second, wantRefused: true},
				{at: 80 * time.Second},
			},
			wantHalted: 1, wantRecreated: 1,
		},
		"pods reaching the target with nothing restarted (labels only): each arrival restarts the clock": {
			atTarget: true,
			steps: []step{
				{at: 0, wantRefused: true},
				{at: 25 * time.Second, change: putArrived("arrived-1"), wantRefused: true},
				{at: 50 * time.Second, change: putArrived("arrived-2"), wantRefused: true},
				{at: 79 * time.Second, wantRefused: true},
				{at: 80 * time.Second},
			},
			wantHalted: 1, wantRecreated: 1,
		},
		"a pod of another workload that the selector matches, mid-update, is not this rollout's progress": {
			steps: []step{
				{at: 0, change: putStranger(updating("")), wantRefused: true},
				{at: 30 * time.Second},
			},
			wantHalted: 1, wantRecreated: 1,
		},
		"a pod whose gate opened at its creation (generation 1) is no progress": {
			steps: []step{
				{at: 0, change: putSibling(openedAgo(time.Second, 1)), wantRefused: true},
				{at: 30 * time.Second, change: putSibling(openedAgo(time.Second, 1))},
			},
			wantHalted: 1, wantRecreated: 1,
		},
		"a new target revision restarts the clock": {
			steps: []step{
				{at: 0, wantRefused: true},
				{at: 30 * time.Second},
				{at: 31 * time.Second, change: retarget, wantRefused: true},
				{at: 60 * time.Second, wantRefused: true},
				{at: 61 * time.Second},
			},
			wantHalted: 2, wantRecreated: 2,
		},
		"the pod replaced is itself mid-update: refused past the timeout": {
			steps: []step{
				{at: 0, victimEdit: midUpdate, wantRefused: true},
				{at: 5 * time.Minute, victimEdit: midUpdate, wantRefused: true},
			},
		},
	}
	for _, f := range promiseFixtures() {
		op := "delete"
		if !f.deleted {
			op = "create"
		}
		for name, tc := range cases {
			if !f.deleted && tc.steps[0].victimEdit != nil {
				continue // a pod being created is not being updated
			}
			if f.arrived == nil && tc.atTarget {
				continue
			}
			t.Run(f.kind+f.variant+" "+op+"/"+name, func(t *testing.T) {
				retargeted = false
				clock := clocktesting.NewFakeClock(start)
				h := newPodValidatorHarness(t, harnessOptions{cache: f.cluster(tc.minReady), clock: clock})
				for i, s := range tc.steps {
					clock.SetTime(start.Add(s.at))
					if s.change != nil {
						s.change(t, f, h.cache, clock.Now())
					}
					var victim *corev1.Pod
					switch {
					case s.victimEdit != nil:
						victim = f.victim(s.victimEdit(clock.Now()))
					case retargeted && f.retargeted != nil:
						victim = f.retargeted()
					default:
						victim = f.victim()
					}
					resp := h.handler.Handle(t.Context(), f.req(t, victim))
					if s.wantRefused == resp.Allowed {
						t.Fatalf("step %d (at %v): allowed = %v (%s), want %v", i, s.at, resp.Allowed, resp.Result.Message, !s.wantRefused)
					}
					if code := resp.Result.Code; s.wantRefused && code != http.StatusForbidden || !s.wantRefused && code != http.StatusOK {
						t.Errorf("step %d (at %v): answered %d", i, s.at, code)
					}
					if s.wantRefused && !retargeted && resp.Result.Message != f.message {
						t.Errorf("step %d: message:\n got %s\nwant %s", i, resp.Result.Message, f.message)
					}
				}
				halted, recreated := 0, 0
				for _, e := range h.events() {
					switch {
					case strings.HasPrefix(e, "Warning "+ReasonInPlaceRolloutHalted+" "):
						halted++
					case strings.HasPrefix(e, "Warning "+ReasonRecreatedNotInPlace+" "):
						recreated++
						if want := inplace.FallbackWords[inplace.FallbackPromiseBroken]; !strings.HasSuffix(e, want) {
							t.Errorf("event %q does not say %q", e, want)
						}
					default:
						t.Errorf("unexpected event %q", e)
					}
				}
				if halted != tc.wantHalted || recreated != tc.wantRecreated {
					t.Errorf("told the workload %d times and pods %d times; want %d and %d", halted, recreated, tc.wantHalted, tc.wantRecreated)
				}
				var wantFallbacks []string
				for range tc.wantRecreated {
					wantFallbacks = append(wantFallbacks, f.kind+"/"+inplace.FallbackPromiseBroken)
				}
				if diff := cmp.Diff(wantFallbacks, h.fallbacks); diff != "" {
					t.Errorf("fallbacks counted (-want,+got):\n%s", diff)
				}
			})
		}
	}
}

// TestPodValidatorLetsThroughWhatItCannotRead: whatever the handler cannot
// decode passes, with a 200; an answer with an error code would be a
// refusal (the failurePolicy applies only when the call fails).
func TestPodValidatorLetsThroughWhatItCannotRead(t *testing.T) {
	pod := stsPod("web-2", "web-1")
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	deployment, err := json.Marshal(apiDeployment())
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		op       admissionv1.Operation
		obj, old []byte
	}{
		"a delete whose old object is not JSON":                {op: admissionv1.Delete, old: []byte(`{"metadata":`)},
		"a delete with no old object":                          {op: admissionv1.Delete},
		"a delete whose old object is null":                    {op: admissionv1.Delete, old: []byte(`null`)},
		"a delete whose old object is a Deployment":            {op: admissionv1.Delete, old: deployment},
		"a delete whose old object has labels of a wrong type": {op: admissionv1.Delete, old: []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":"web"}}`)},
		"a delete whose owner reference is a string":           {op: admissionv1.Delete, old: []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"ownerReferences":"web"}}`)},
		"a create whose object is not JSON":                    {op: admissionv1.Create, obj: []byte(`[`)},
		"a create with no object":                              {op: admissionv1.Create},
		"a create whose object is a Deployment":                {op: admissionv1.Create, obj: deployment},
		"an update (never the controllers' replacement)":       {op: admissionv1.Update, obj: raw, old: raw},
		"a connect": {op: admissionv1.Connect, obj: raw},
	}
	h := newPodValidatorHarness(t, harnessOptions{cache: statefulSetCluster(webStatefulSet()), clock: clocktesting.NewFakeClock(time.Now())})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for _, user := range []string{statefulSetController, replicaSetController, "alice"} {
				req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
					UID: "bad", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
					Namespace: "apps", Name: "web-2", Operation: tc.op,
					Object: runtime.RawExtension{Raw: tc.obj}, OldObject: runtime.RawExtension{Raw: tc.old},
				}}
				req.UserInfo.Username = user
				checkAnswer(t, h.validate.Handle(t.Context(), req), "")
			}
		})
	}
}

// countingReader counts the reads that go through it.
type countingReader struct {
	client.Reader
	reads *int
}

func (c countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	*c.reads++
	return c.Reader.Get(ctx, key, obj, opts...)
}

func (c countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	*c.reads++
	return c.Reader.List(ctx, list, opts...)
}

// podValidatorCountingLiveReads is the pod webhooks' answer to a
// replacement over a cache of objs, their live reads (of the same objects)
// counted in reads.
func podValidatorCountingLiveReads(objs []client.Object, reads *int) admission.Handler {
	c := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(objs...).Build()
	hooks, _ := handlers(Config{
		Scope:  inplace.NewScope(inplace.PolicyNamespace, "inplace-system"),
		Reader: c, LiveReader: countingReader{Reader: c, reads: reads}, ManagerUsername: managerUser, Scheme: testScheme,
		Clock: clocktesting.NewFakeClock(time.Now()), Nodes: fakeNodes{}, EngineRunning: func() bool { return true },
	})
	return replacements{create: hooks[PathMutatePod], delete: hooks[PathValidatePod]}
}

// TestSurgeCreateRefusedAtCreation: the ReplicaSet controller's surge
// create, while the engine moves a Deployment's pods in place, is refused
// by the pod-creation webhook, in the call that would gate the pod, with no
// patch; the pod-validating webhook, which no longer sees creates, lets it
// through. A create that adds capacity is gated and passes.
func TestSurgeCreateRefusedAtCreation(t *testing.T) {
	d := apiDeployment()
	_, cur := apiReplicaSets(d, 0, 0, 0, 0)
	for name, tc := range map[string]struct {
		cluster    []client.Object
		wantDenied string
	}{
		"a surge, 4 live of 4":  {cluster: deploymentCluster(d, 4, 4, 1, 0), wantDenied: refusedApiNew},
		"capacity, 3 live of 4": {cluster: deploymentCluster(d, 3, 3, 2, 0)},
	} {
		t.Run(name, func(t *testing.T) {
			h := newPodValidatorHarness(t, harnessOptions{cache: tc.cluster})
			// As the controller sends it: from the template, no gate.
			req := createBy(t, replicaSetController, newRSPod(cur, noGate))
			if resp := h.validate.Handle(t.Context(), req); !resp.Allowed {
				t.Errorf("the pod-validating webhook refused a create: %s", resp.Result.Message)
			}
			resp := h.handler.create.Handle(t.Context(), req)
			checkAnswer(t, resp, tc.wantDenied)
			if tc.wantDenied != "" {
				if len(resp.Patches) > 0 || resp.Patch != nil {
					t.Errorf("the refusal carries a patch: %v", resp.Patches)
				}
				if len(h.refusals) != 1 {
					t.Errorf("refusals counted %v, want one", h.refusals)
				}
				return
			}
			if !slices.ContainsFunc(resp.Patches, func(op jsonpatch.JsonPatchOperation) bool { return op.Path == "/spec/readinessGates" }) {
				t.Errorf("the create that passes is not gated: %v", resp.Patches)
			}
		})
	}
}

// TestDeploymentCreateReadsLiveUnlessSettled: a managed Deployment's pod
// create that the cache lets through is decided again on a live read, but
// for a scale-up of a Deployment the cache shows at rest: its old
// ReplicaSet scaled to 0 with no pod left, no pod moving. A cache that lags
// a rollout's start cannot show that (the old ReplicaSet still holds its
// pods), and a burst of scale-up creates would otherwise each wait on two
// reads of the API server.
func TestDeploymentCreateReadsLiveUnlessSettled(t *testing.T) {
	d := apiDeployment()
	for name, tc := range map[string]struct {
		cluster   []client.Object
		wantReads bool
	}{
		// Four pods of h2, a fifth asked for; h1 at 0, none of its pods.
		"a scale-up at rest": {cluster: deploymentCluster(d, 0, 0, 5, 4)},
		// h1 holds three pods, the rollout's first step; the cache lets
		// the create through (not full), the live read decides.
		"a rollout under way": {cluster: deploymentCluster(d, 3, 3, 1, 0), wantReads: true},
		// Scaled up to 5 while h1, scaled to 0, still has a pod: the
		// cache lets the create through (four of five), not at rest.
		"an old pod left": {
			cluster:   deploymentClusterSeen(apiDeployment(func(w *builder.DeploymentWrapper) { w.Replicas(5) }), 0, 0, 5, 3, 1, 3),
			wantReads: true,
		},
	} {
		t.Run(name, func(t *testing.T) {
			objs := append([]client.Object{namespace("apps", enabled)}, tc.cluster...)
			reads := 0
			validate := podValidatorCountingLiveReads(objs, &reads)
			_, cur := apiReplicaSets(d, 0, 0, 0, 0)
			checkAnswer(t, validate.Handle(t.Context(), createBy(t, replicaSetController, newRSPod(cur))), "")
			if got := reads > 0; got != tc.wantReads {
				t.Errorf("%d live reads; want them %t", reads, tc.wantReads)
			}
		})
	}
}

// TestDeploymentExcessPassesOnceNoRoomLasts: a pod created without the gate
// (its webhook call failed) took the new ReplicaSet's room, so the old
// ReplicaSet's excess pod can be moved nowhere (hack/ungated-room.sh). Its
// delete is refused while that could be a view lagging the controllers',
// and passes once the new ReplicaSet has had no room for NoRoomWindow; with
// room, it stays refused, the manager moving the pod.
func TestDeploymentExcessPassesOnceNoRoomLasts(t *testing.T) {
	d := apiDeployment(func(w *builder.DeploymentWrapper) {
		w.Replicas(3).RollingUpdate(ptr.To(intstr.FromInt32(0)), ptr.To(intstr.FromInt32(1)))
	})
	old, _ := apiReplicaSets(d, 0, 0, 0, 0)
	victim := rsPod("api-h1-a", old)
	for name, tc := range map[string]struct {
		cluster    []client.Object
		passesFrom time.Duration // 0: refused throughout
	}{
		// Old at 1 with 2 pods; new at 2 with 2, one of them unseen (no gate).
		"no room: passes once it lasts": {cluster: deploymentClusterSeen(d, 1, 2, 2, 2, 2, 1), passesFrom: NoRoomWindow},
		// New at 2 with 1: the manager moves the old pod into it.
		"room: refused": {cluster: deploymentClusterSeen(d, 1, 2, 2, 1, 2, 1)},
	} {
		t.Run(name, func(t *testing.T) {
			clock := clocktesting.NewFakeClock(time.Now())
			h := newPodValidatorHarness(t, harnessOptions{cache: tc.cluster, clock: clock})
			start := clock.Now()
			for _, at := range []time.Duration{0, time.Second, NoRoomWindow - time.Second, NoRoomWindow, NoRoomWindow + 3*time.Second} {
				clock.SetTime(start.Add(at))
				resp := h.validate.Handle(t.Context(), deleteBy(t, replicaSetController, victim))
				if want := tc.passesFrom > 0 && at >= tc.passesFrom; resp.Allowed != want {
					t.Errorf("at %v: allowed %t, want %t (%v)", at, resp.Allowed, want, resp.Result)
				}
			}
		})
	}
	// A sighting with no other for longer than the Waker's rechecks take is
	// a moment of an earlier rollout: the clock starts again (within
	// PromiseTimeout of the first refusal, past which every delete passes).
	clock := clocktesting.NewFakeClock(time.Now())
	h := newPodValidatorHarness(t, harnessOptions{cache: deploymentClusterSeen(d, 1, 2, 2, 2, 2, 1), clock: clock})
	start := clock.Now()
	for _, step := range []struct {
		at      time.Duration
		allowed bool
	}{{0, false}, {3 * WakeInterval, false}, {3*WakeInterval + NoRoomWindow - time.Second, false}, {3*WakeInterval + NoRoomWindow, true}} {
		clock.SetTime(start.Add(step.at))
		if resp := h.validate.Handle(t.Context(), deleteBy(t, replicaSetController, victim)); resp.Allowed != step.allowed {
			t.Errorf("seen again after a gap, at %v: allowed %t, want %t", step.at, resp.Allowed, step.allowed)
		}
	}
}

// TestStatefulSetScaleDownReadsNoLive: the StatefulSet controller's delete
// of a pod at or above the replicas the cache shows (a scale-down) passes on
// the cache alone; a delete the cache lets through for any other reason is
// decided again live.
func TestStatefulSetScaleDownReadsNoLive(t *testing.T) {
	for name, tc := range map[string]struct {
		pod       *corev1.Pod
		wantReads bool
	}{
		"a scale-down's (web-3 of 3)":        {pod: stsPod("web-3", "web-1")},
		"a failed pod":                       {pod: stsPod("web-1", "web-1", func(w *builder.PodWrapper) { w.Status.Phase = corev1.PodFailed }), wantReads: true},
		"a pod below the partition (canary)": {pod: stsPod("web-0", "web-1"), wantReads: true},
	} {
		t.Run(name, func(t *testing.T) {
			sts := webStatefulSet(func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](1)}
			})
			objs := append(statefulSetCluster(sts), namespace("apps", enabled), tc.pod)
			reads := 0
			validate := podValidatorCountingLiveReads(objs, &reads)
			checkAnswer(t, validate.Handle(t.Context(), deleteBy(t, statefulSetController, tc.pod)), "")
			if got := reads > 0; got != tc.wantReads {
				t.Errorf("%d live reads; want them %t", reads, tc.wantReads)
			}
		})
	}
}

// TestDeploymentReadsTwice: a Deployment's pod names its Deployment by its
// ReplicaSet's name and its pod-template-hash, so a decision reads the
// Deployment and lists its ReplicaSets, two reads of the API server where
// reading the ReplicaSet first made three; a pod whose hash does not name
// its ReplicaSet is decided by the same Deployment, on the three reads.
func TestDeploymentReadsTwice(t *testing.T) {
	for name, tc := range map[string]struct {
		edit      func(*corev1.Pod)
		wantReads int
	}{
		"the hash names the Deployment": {func(*corev1.Pod) {}, 2},
		"no hash label":                 {func(p *corev1.Pod) { delete(p.Labels, appsv1.DefaultDeploymentUniqueLabelKey) }, 3},
		"another hash":                  {func(p *corev1.Pod) { p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "zz" }, 3},
	} {
		t.Run(name, func(t *testing.T) {
			f := promiseFixtures()[2] // a Deployment's old pod, deleted by its ReplicaSet
			c := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(append(f.cluster(0), namespace("apps", enabled))...).Build()
			reads := 0
			_, v := handlers(Config{
				Scope:  inplace.NewScope(inplace.PolicyNamespace, "inplace-system"),
				Reader: c, ManagerUsername: managerUser, Scheme: testScheme,
				Clock: clocktesting.NewFakeClock(time.Now()), Nodes: fakeNodes{}, EngineRunning: func() bool { return true },
			})
			victim := f.victim()
			tc.edit(victim)
			live := countingReader{Reader: c, reads: &reads}
			vd, err := v.deleteVerdict(t.Context(), live, victim)
			if err != nil || vd == nil {
				t.Fatalf("verdict %v, %v; want one", vd, err)
			}
			if got := vd.workload.GetName(); got != "api" {
				t.Errorf("decided by the Deployment %s, want api", got)
			}
			if tc.wantReads == 2 && !vd.refuse {
				t.Errorf("the delete passes; want it refused (the pod is moved in place)")
			}
			if reads != tc.wantReads {
				t.Errorf("%d reads, want %d", reads, tc.wantReads)
			}
		})
	}
}
