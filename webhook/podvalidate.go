package webhook

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
)

// ReasonRecreatedNotInPlace is the reason of the event on a pod of a
// rollout that its controller recreates because it cannot go in place (the
// rollout engine tells the same reason for the pods it deletes itself).
const ReasonRecreatedNotInPlace = "RecreatedNotInPlace"

// ReasonInPlaceRolloutHalted is the reason of the Warning event on a
// workload whose in-place rollout made no progress after its controller's
// replacements were refused: they pass from then on.
const ReasonInPlaceRolloutHalted = "InPlaceRolloutHalted"

// DefaultWorkloadControllerUsers are the users the kube-controller-manager's
// workload controllers create and delete pods as, when it runs with
// --use-service-account-credentials (kubeadm and the managed offerings do).
var DefaultWorkloadControllerUsers = []string{
	"system:serviceaccount:kube-system:replicaset-controller",
	"system:serviceaccount:kube-system:statefulset-controller",
	"system:serviceaccount:kube-system:daemon-set-controller",
}

// PromiseTimeout is how long a workload's controller's replacements may be
// refused with no progress of the in-place rollout to show for it (no pod
// of the workload being updated, none updated in that time; the workload's
// minReadySeconds comes on top): past it they pass, and the controller
// replaces the pods as it always has.
const PromiseTimeout = 30 * time.Second

// NodeInfo answers what the pod webhook asks about nodes.
type NodeInfo interface {
	// KubeletVersion returns the version of a node's kubelet, "" when
	// unknown.
	KubeletVersion(ctx context.Context, node string) string
	// Lost reports whether a node is gone or not Ready.
	Lost(ctx context.Context, node string) bool
}

// podValidator answers the workload controllers' replacements of managed
// pods: the ReplicaSet, StatefulSet and DaemonSet controllers' deletes, as
// the pod-validating webhook, and the ReplicaSet controller's creates of a
// Deployment's new pods, inside the pod-creation webhook (podCreate: one
// call a create, not two).
//
// It refuses a replacement that the rollout engine makes in place instead
// (the kind's rule, in inplace/): the native controller runs its rollout as
// the user wrote it, its replacement of a pod the engine takes over is
// refused, and it goes on once the engine has marked the pod at the new
// revision. Its status, and every tool that reads it, stays true.
//
// A refusal is a promise that the engine is about to update the pod, and
// every replacement passes whenever the promise cannot be kept: another
// user's, a scale-down, a failed pod's, a pod that must be recreated (no
// readiness gate, a change live pods cannot take), a workload or owner
// being deleted, a pod on a lost node or one being evicted (its
// DisruptionTarget condition), every replacement while no elected manager
// replica runs the engine, and every replacement of a workload whose
// rollout shows no progress for PromiseTimeout. Whatever the handler cannot
// read passes too: an answer with an error would be a refusal (the
// failurePolicy applies only when the call fails).
type podValidator struct {
	namespaces *namespaces
	// reader reads the cache; live reads the API server, with a deadline.
	reader, live client.Reader
	decoder      admission.Decoder
	// controllers are the users whose replacements may be refused.
	controllers   map[string]bool
	engineRunning func() bool
	nodes         NodeInfo
	clock         clock.PassiveClock
	promises      *promises
	rooms         *rooms
	refusals      *refusals
	onFallback    func(kind, reason string)
	onRefusal     func(kind string)
	recorder      events.EventRecorder
}

var _ admission.Handler = &podValidator{}

// verdict is the answer about one replacement of a pod, and what it rests on.
type verdict struct {
	// kind and workload are the pod's workload (a Deployment for a
	// ReplicaSet's pod), for metrics and events.
	kind     string
	workload client.Object
	// refuse: the engine updates the pod in place instead.
	refuse bool
	// fallback, for a pod of the rollout recreated instead, says why.
	fallback string
	// target is the revision the rollout goes to.
	target string
	// to names, in a refusal, what the pod is updated to when target
	// cannot: the StatefulSet controller deletes the first pod of a
	// rollout before it writes the new revision into its status.
	to string
	// selector and owners find the workload's pods: their controller is
	// one of owners.
	selector labels.Selector
	owners   map[types.UID]bool
	// atTarget reports whether a pod of the workload runs the target.
	atTarget func(pod *corev1.Pod) bool
	minReady time.Duration
	// settled: the cache's pass stands without a live read. A create the
	// view shows as a scale-up's, of a Deployment at rest
	// (inplace.DeploymentView.Settled) with no pod moving; a delete of a
	// StatefulSet's pod at or above its replicas, a scale-down's.
	settled bool
}

// Handle implements admission.Handler: the workload controllers' deletes.
// A create passes: the pod-creation webhook answers the ReplicaSet
// controller's (podCreate, create).
func (v *podValidator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Delete || !v.controllers[req.UserInfo.Username] {
		return admission.Allowed("")
	}
	raw := req.OldObject.Raw
	pod := &corev1.Pod{}
	if err := v.decoder.DecodeRaw(runtime.RawExtension{Raw: raw}, pod); err != nil || len(raw) == 0 {
		logf.FromContext(ctx).Info("Letting a pod through that cannot be read", "namespace", req.Namespace, "name", req.Name, "error", err)
		return admission.Allowed("")
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	return v.replaced(ctx, req, pod, v.deleteVerdict, pod.Labels[inplace.LabelManaged] == "true")
}

// create answers a create of pod, decoded from req, in the pod-creation
// webhook: refused, the ReplicaSet controller's create of a pod of a
// Deployment whose pods the engine moves in place instead; nil when it
// passes. gated says whether the pod gets the readiness gate, as the
// managed label says it of a pod being deleted.
func (v *podValidator) create(ctx context.Context, req admission.Request, pod *corev1.Pod, gated bool) *admission.Response {
	if !v.controllers[req.UserInfo.Username] {
		return nil
	}
	if resp := v.replaced(ctx, req, pod, v.createVerdict, gated); !resp.Allowed {
		return &resp
	}
	return nil
}

// replaced answers a replacement of pod: find its workload's rule's
// verdict, keep the promise or let the replacement pass. managed says
// whether the pod is gated, so that a pass the cache gives is worth
// deciding again live.
func (v *podValidator) replaced(ctx context.Context, req admission.Request, pod *corev1.Pod,
	decide func(ctx context.Context, r client.Reader, pod *corev1.Pod) (*verdict, error), managed bool) admission.Response {
	log := logf.FromContext(ctx).WithValues("pod", klog.KObj(pod), "operation", req.Operation)
	vd, err := decide(ctx, v.reader, pod)
	if err != nil {
		log.Error(err, "Letting the pod through")
		return admission.Allowed("")
	}
	if (vd == nil || !vd.refuse && !vd.settled) && v.live != nil && managed {
		// The controller decides on a view at least as new as the one
		// that made it (a partition just lowered, a new revision, a new
		// ReplicaSet whose first pod it creates an instant after), and
		// the cache may lag it: decide again on a live read before
		// letting a managed pod go, a pod whose owner the cache does not
		// hold yet too. Only this path pays for it; the refusals a
		// rollout draws do not, nor a Deployment's scale-up the cache
		// shows at rest: a cache that lags a rollout's start shows the
		// old ReplicaSet still holding its pods (two live reads for
		// each of a burst of creates cost 70 ms a create at the median,
		// make bench-apiserver). Nor a StatefulSet's scale-down: to be
		// wrong, the cache would have to lag a scale-up back over the
		// pod's ordinal made while its scale-down was under way, and
		// the cost would be that pod recreated instead of updated in
		// place (make bench-admission: a live read took a scale-down's
		// delete from 1.4 to 4.8 ms at the median).
		if fresh, err := decide(ctx, v.live, pod); err != nil {
			log.Error(err, "Reading live; deciding on the cache")
		} else {
			vd = fresh
		}
	}
	if vd == nil {
		return admission.Allowed("")
	}
	if !vd.refuse {
		v.countFallback(ctx, pod, vd, req.Operation)
		return admission.Allowed("")
	}
	if !v.engineRunning() {
		log.Info("Letting the pod through: no manager replica runs the rollout engine now")
		return admission.Allowed("")
	}
	if !v.keepsPromise(ctx, pod, vd) {
		return admission.Allowed("")
	}
	v.onRefusal(vd.kind)
	v.refusals.remember(pod, req.Operation, vd.kind, v.clock.Now())
	if req.Operation == admissionv1.Create {
		return admission.Denied(fmt.Sprintf("inplace: the %s %s is rolled out in place: its old pods are moved to the new ReplicaSet instead of new pods created",
			vd.kind, vd.workload.GetName()))
	}
	return admission.Denied(fmt.Sprintf("inplace: pod %s is updated in place to %s of its %s instead of recreated; "+
		"the %s controller goes on once the pod runs that revision", pod.Name, vd.goingTo(), vd.kind, vd.kind))
}

// goingTo names, in a refusal, what the pod is updated to.
func (vd *verdict) goingTo() string {
	switch {
	case vd.to != "":
		return vd.to
	case vd.target == "":
		return "the new template"
	}
	return "revision " + vd.target
}

// deleteVerdict is the verdict on a workload controller's delete of pod,
// by the rule of its owner's kind; nil when the delete passes whatever the
// rule.
func (v *podValidator) deleteVerdict(ctx context.Context, r client.Reader, pod *corev1.Pod) (*verdict, error) {
	if hasCondition(pod, corev1.DisruptionTarget) || v.nodes.Lost(ctx, pod.Spec.NodeName) {
		return nil, nil // evicted, preempted, or on a node that cannot act
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return nil, nil
	}
	switch schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind) {
	case statefulSetGVK:
		return v.statefulSet(ctx, r, pod, ref)
	case daemonSetGVK:
		return v.daemonSet(ctx, r, pod, ref)
	case replicaSetKind:
		return v.deploymentDelete(ctx, r, pod, ref)
	}
	return nil, nil
}

// createVerdict is the verdict on the ReplicaSet controller's create of a
// pod of a Deployment's new ReplicaSet; nil for any other create.
func (v *podValidator) createVerdict(ctx context.Context, r client.Reader, pod *corev1.Pod) (*verdict, error) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind) != replicaSetKind {
		return nil, nil
	}
	view, vd, err := v.deployment(ctx, r, pod, ref)
	if vd == nil || err != nil {
		return nil, err
	}
	moving := v.moving(ctx, view)
	vd.refuse = inplace.RefuseDeploymentCreate(view, pod, moving)
	vd.settled = !moving && view.Settled(pod)
	return vd, nil
}

// statefulSet is the StatefulSet's rule (inplace.RefuseStatefulSetDelete).
func (v *podValidator) statefulSet(ctx context.Context, r client.Reader, pod *corev1.Pod, ref *metav1.OwnerReference) (*verdict, error) {
	sts := &appsv1.StatefulSet{}
	if ok, err := v.owner(ctx, r, pod.Namespace, ref, sts); !ok || err != nil {
		return nil, err
	}
	if sts.DeletionTimestamp != nil || !v.manages(ctx, sts) {
		return nil, nil
	}
	templateOf := v.revisionTemplates(ctx, sts.Namespace, func(name string) (*appsv1.ControllerRevision, error) {
		return v.controllerRevision(ctx, sts.Namespace, name)
	})
	refuse, fallback := inplace.RefuseStatefulSetDelete(sts, pod, templateOf, v.nodes.KubeletVersion(ctx, pod.Spec.NodeName))
	selector, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return nil, nil
	}
	target, to := sts.Status.UpdateRevision, ""
	if sts.Status.ObservedGeneration < sts.Generation {
		// The status names the revision before this template's.
		to = fmt.Sprintf("the template of generation %d", sts.Generation)
	}
	return &verdict{kind: "StatefulSet", workload: sts, refuse: refuse, fallback: fallback, target: target, to: to,
		selector: selector, owners: map[types.UID]bool{sts.UID: true}, minReady: seconds(sts.Spec.MinReadySeconds),
		atTarget: func(p *corev1.Pod) bool { return p.Labels[appsv1.StatefulSetRevisionLabel] == target },
		settled:  !refuse && inplace.ScaledDown(sts, pod)}, nil
}

// daemonSet is the DaemonSet's rule (inplace.RefuseDaemonSetDelete).
func (v *podValidator) daemonSet(ctx context.Context, r client.Reader, pod *corev1.Pod, ref *metav1.OwnerReference) (*verdict, error) {
	ds := &appsv1.DaemonSet{}
	if ok, err := v.owner(ctx, r, pod.Namespace, ref, ds); !ok || err != nil {
		return nil, err
	}
	if ds.DeletionTimestamp != nil || !v.manages(ctx, ds) {
		return nil, nil
	}
	revisions, err := ownedRevisions(ctx, r, ds.Namespace, ds.UID)
	if err != nil {
		return nil, err
	}
	var hash string
	if cur := inplace.CurrentDaemonSetRevision(ds, revisions); cur != nil {
		hash = cur.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]
	}
	byHash := map[string]*appsv1.ControllerRevision{}
	for _, rev := range revisions {
		byHash[rev.Labels[appsv1.DefaultDaemonSetUniqueLabelKey]] = rev
	}
	templateOf := v.revisionTemplates(ctx, ds.Namespace, func(hash string) (*appsv1.ControllerRevision, error) { return byHash[hash], nil })
	recent := recentlyUpdated(pod, v.clock.Now())
	refuse, fallback := inplace.RefuseDaemonSetDelete(ds, pod, hash, templateOf, v.nodes.KubeletVersion(ctx, pod.Spec.NodeName), recent)
	selector, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil {
		return nil, nil
	}
	generation := inplace.DaemonSetTemplateGeneration(ds)
	return &verdict{kind: "DaemonSet", workload: ds, refuse: refuse, fallback: fallback, target: hash,
		selector: selector, owners: map[types.UID]bool{ds.UID: true}, minReady: seconds(ds.Spec.MinReadySeconds),
		atTarget: func(p *corev1.Pod) bool { return inplace.DaemonPodUpdated(p, hash, generation) }}, nil
}

// deploymentDelete is the Deployment's rule for a delete
// (inplace.RefuseDeploymentDelete).
func (v *podValidator) deploymentDelete(ctx context.Context, r client.Reader, pod *corev1.Pod, ref *metav1.OwnerReference) (*verdict, error) {
	view, vd, err := v.deployment(ctx, r, pod, ref)
	if vd == nil || err != nil {
		return nil, err
	}
	now := v.clock.Now()
	vd.refuse, vd.fallback = inplace.RefuseDeploymentDelete(view, pod, v.nodes.KubeletVersion(ctx, pod.Spec.NodeName), recentlyUpdated(pod, now))
	// An old pod the new ReplicaSet has had no room for since NoRoomWindow
	// is an excess: let it go (DeploymentView.NoRoom).
	d := vd.workload.GetUID()
	switch {
	case !view.NoRoom():
		v.rooms.forget(d)
	case vd.refuse && view.Owner(pod) != view.New && !inplace.Updating(pod) && v.rooms.lasting(d, now):
		vd.refuse = false
		logf.FromContext(ctx).Info("Letting an old pod go: the new ReplicaSet has had no room for it", "pod", klog.KObj(pod),
			"for", NoRoomWindow, "view", view.String())
	}
	if log := logf.FromContext(ctx).V(1); log.Enabled() {
		log.Info("A Deployment's pod delete decided", "pod", klog.KObj(pod), "refuse", vd.refuse, "fallback", vd.fallback, "view", view.String())
	}
	return vd, nil
}

// NoRoomWindow is how long a Deployment's new ReplicaSet must be seen with
// no room for an old pod before the old ReplicaSet's delete of it passes:
// the views NoRoom counts on lag the controllers' by a moment, a stall
// lasts (a pod created without the gate took the room; nothing moves until
// the pod goes).
const NoRoomWindow = 5 * time.Second

// rooms keeps, by Deployment, since when its new ReplicaSet has been seen
// with no room, and when last.
type rooms struct {
	mu    sync.Mutex
	since map[types.UID]noRoom
}

type noRoom struct{ first, last time.Time }

// lasting reports whether the Deployment's new ReplicaSet has had no room
// since NoRoomWindow, seen again at least every WakeInterval (the Waker
// decides a refused delete again that often): a sighting older than that
// is a moment of an earlier rollout, and the clock starts again.
func (r *rooms) lasting(d types.UID, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.since == nil {
		r.since = map[types.UID]noRoom{}
	}
	seen, ok := r.since[d]
	if !ok || now.Sub(seen.last) > 2*WakeInterval {
		if len(r.since) > 1024 { // Deployments long settled: forget them
			clear(r.since)
		}
		seen.first = now
	}
	seen.last = now
	r.since[d] = seen
	return now.Sub(seen.first) >= NoRoomWindow
}

func (r *rooms) forget(d types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.since, d)
}

// deployment reads the Deployment that controls the ReplicaSet ref names
// (the pod's controller), and its ReplicaSets; nil when it is gone, being
// deleted or not managed.
func (v *podValidator) deployment(ctx context.Context, r client.Reader, pod *corev1.Pod, ref *metav1.OwnerReference) (inplace.DeploymentView, *verdict, error) {
	namespace := pod.Namespace
	// Two reads, not three: the Deployment controller names a ReplicaSet
	// <deployment>-<pod-template-hash>, so the pod's hash names the
	// Deployment, and its ReplicaSets' list holds the one ref names. Where
	// that does not hold, the ReplicaSet is read for its owner.
	if hash := pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; hash != "" && strings.HasSuffix(ref.Name, "-"+hash) {
		d := &appsv1.Deployment{}
		err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: strings.TrimSuffix(ref.Name, "-"+hash)}, d)
		if err != nil && !apierrors.IsNotFound(err) {
			return inplace.DeploymentView{}, nil, err
		}
		if err == nil {
			view, vd, found, err := v.deploymentView(ctx, r, d, ref)
			if found || err != nil {
				return view, vd, err
			}
		}
	}
	rs := &appsv1.ReplicaSet{}
	if ok, err := v.owner(ctx, r, namespace, ref, rs); !ok || err != nil || rs.DeletionTimestamp != nil {
		return inplace.DeploymentView{}, nil, err
	}
	dref := metav1.GetControllerOfNoCopy(rs)
	if dref == nil || schema.FromAPIVersionAndKind(dref.APIVersion, dref.Kind) != deploymentGVK {
		return inplace.DeploymentView{}, nil, nil
	}
	d := &appsv1.Deployment{}
	if ok, err := v.owner(ctx, r, namespace, dref, d); !ok || err != nil {
		return inplace.DeploymentView{}, nil, err
	}
	view, vd, _, err := v.deploymentView(ctx, r, d, nil)
	return view, vd, err
}

// deploymentView reads the Deployment's ReplicaSets and builds its view and
// verdict. With want, found says whether the ReplicaSet of that reference is
// one of them, controlled by the Deployment and not being deleted: when it
// is not, the view is not built (nil verdict, found false).
func (v *podValidator) deploymentView(ctx context.Context, r client.Reader, d *appsv1.Deployment, want *metav1.OwnerReference) (view inplace.DeploymentView, vd *verdict, found bool, err error) {
	namespace := d.Namespace
	if d.DeletionTimestamp != nil || !v.manages(ctx, d) {
		return inplace.DeploymentView{}, nil, want == nil, nil
	}
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return inplace.DeploymentView{}, nil, want == nil, nil
	}
	list := &appsv1.ReplicaSetList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return inplace.DeploymentView{}, nil, false, err
	}
	rss := make([]*appsv1.ReplicaSet, len(list.Items))
	for i := range list.Items {
		rss[i] = &list.Items[i]
		if want != nil && rss[i].UID == want.UID && rss[i].DeletionTimestamp == nil && metav1.IsControlledBy(rss[i], d) {
			found = true
		}
	}
	if want != nil && !found {
		return inplace.DeploymentView{}, nil, false, nil
	}
	view = inplace.NewDeploymentView(d, rss)
	if view.New == nil && d.Status.ObservedGeneration < d.Generation {
		// The template changed and the Deployment controller has not made
		// its ReplicaSet yet: the ReplicaSet controller still acts on the
		// counts of the rollout before, retrying the creates and deletes
		// refused until then, which that ReplicaSet changes a moment
		// later. Decided against the template as if its ReplicaSet were
		// there without pods, they stay refused instead of passing in the
		// moment between (a pod recreated, seen when a halted rollout's
		// image was fixed).
		view.New = pendingReplicaSet(d)
	}
	// The pods the cache holds check the ReplicaSets' status counts.
	pods := &corev1.PodList{}
	if err := v.reader.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: selector}, readOnly); err != nil {
		return inplace.DeploymentView{}, nil, false, err
	}
	view.Pods = make([]*corev1.Pod, len(pods.Items))
	for i := range pods.Items {
		view.Pods[i] = &pods.Items[i]
	}
	vd = &verdict{kind: "Deployment", workload: d, selector: selector, owners: map[types.UID]bool{}, minReady: seconds(d.Spec.MinReadySeconds)}
	for _, rs := range view.ReplicaSets {
		vd.owners[rs.UID] = true
	}
	vd.atTarget = func(*corev1.Pod) bool { return false }
	if view.New != nil {
		vd.target = view.New.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		vd.atTarget = func(p *corev1.Pod) bool { return view.Owner(p) == view.New }
	}
	return view, vd, true, nil
}

// pendingReplicaSet stands for the ReplicaSet of the Deployment's template
// that its controller is about to make: no replicas, no pods, no name the
// pods carry.
func pendingReplicaSet(d *appsv1.Deployment) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace},
		Spec:       appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0), Template: *d.Spec.Template.DeepCopy()},
	}
}

// moving reports whether the engine moves pods of the Deployment in place
// (of the cache's: only gated pods can): a pod of an old ReplicaSet is
// movable, or one of the new ReplicaSet is mid-move or was moved less than
// inplace.StaleViewWindow ago. The last covers the ReplicaSet controller
// that creates on a view from before the last move, when no old pod is
// left to be movable.
func (v *podValidator) moving(ctx context.Context, view inplace.DeploymentView) bool {
	if !view.InPlace() {
		return false
	}
	now := v.clock.Now()
	for _, pod := range view.Pods {
		if view.Owner(pod) == view.New {
			if inplace.Alive(pod) && (inplace.Updating(pod) || recentlyUpdated(pod, now)) {
				return true
			}
			continue
		}
		if ok, _ := view.Movable(pod, v.nodes.KubeletVersion(ctx, pod.Spec.NodeName)); ok {
			return true
		}
	}
	return false
}

// owner reads the object ref names into obj; false when it is gone or was
// replaced (another UID).
func (v *podValidator) owner(ctx context.Context, r client.Reader, namespace string, ref *metav1.OwnerReference, obj client.Object) (bool, error) {
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, obj); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return obj.GetUID() == ref.UID, nil
}

// manages reports whether the workload's rollouts are done in place: its
// namespace is managed and its policy is not Recreate.
func (v *podValidator) manages(ctx context.Context, obj client.Object) bool {
	managed, err := v.namespaces.managed(ctx, obj.GetNamespace())
	if err != nil || !managed {
		return false
	}
	p, err := inplace.UpdatePolicyOf(obj.GetAnnotations())
	return err == nil && p != inplace.Recreate
}

// revisionTemplates returns a memoised templateOf over a revision lookup.
func (v *podValidator) revisionTemplates(ctx context.Context, namespace string, get func(string) (*appsv1.ControllerRevision, error)) func(string) *corev1.PodTemplateSpec {
	templates := map[string]*corev1.PodTemplateSpec{}
	return func(name string) *corev1.PodTemplateSpec {
		if t, ok := templates[name]; ok {
			return t
		}
		var t *corev1.PodTemplateSpec
		rev, err := get(name)
		if err == nil && rev != nil {
			t, err = inplace.RevisionTemplate(rev)
		}
		if err != nil {
			logf.FromContext(ctx).Error(err, "Reading a revision", "namespace", namespace, "revision", name)
		}
		templates[name] = t
		return t
	}
}

// controllerRevision reads a ControllerRevision by name, from the cache and
// live when the cache has not seen it; nil when it is gone.
func (v *podValidator) controllerRevision(ctx context.Context, namespace, name string) (*appsv1.ControllerRevision, error) {
	if name == "" {
		return nil, nil
	}
	rev := &appsv1.ControllerRevision{}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := v.reader.Get(ctx, key, rev)
	if apierrors.IsNotFound(err) && v.live != nil {
		err = v.live.Get(ctx, key, rev)
	}
	if err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return rev, nil
}

// ownedRevisions lists the ControllerRevisions of namespace that owner
// controls.
func ownedRevisions(ctx context.Context, r client.Reader, namespace string, owner types.UID) ([]*appsv1.ControllerRevision, error) {
	list := &appsv1.ControllerRevisionList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), readOnly); err != nil {
		return nil, err
	}
	var out []*appsv1.ControllerRevision
	for i := range list.Items {
		if ref := metav1.GetControllerOfNoCopy(&list.Items[i]); ref != nil && ref.UID == owner {
			out = append(out, &list.Items[i])
		}
	}
	return out, nil
}

// keepsPromise reports whether the refusal of a replacement of pod may
// stand: the engine is updating the pod, or its workload's rollout shows
// progress (a pod being updated, or one updated within PromiseTimeout and
// the workload's minReadySeconds), or the first refusal for the rollout's
// target was less than that long ago; more pods at the target than that
// refusal saw (an update that restarted nothing shows no other sign)
// restarts the clock. A broken promise is told: the
// replacement passes, with a Warning event on the workload and one on the
// pod.
func (v *podValidator) keepsPromise(ctx context.Context, pod *corev1.Pod, vd *verdict) bool {
	holds, key, first, window := v.promise(ctx, pod, vd)
	if holds {
		return true
	}
	fallbacks := inplace.FallbackPromiseBroken
	v.onFallback(vd.kind, fallbacks)
	logf.FromContext(ctx).Info("Letting a replacement through: the in-place rollout shows no progress", "pod", klog.KObj(pod),
		"workload", klog.KObj(vd.workload), "kind", vd.kind, "since", first)
	if v.recorder != nil {
		if v.promises.tell(key) {
			v.recorder.Eventf(vd.workload, nil, corev1.EventTypeWarning, ReasonInPlaceRolloutHalted, "Rollout",
				"No in-place progress for %v since the %s controller's first replacement was refused: its replacements pass from now on", window, vd.kind)
		}
		v.recorder.Eventf(pod, vd.workload, corev1.EventTypeWarning, ReasonRecreatedNotInPlace, "Recreate",
			"The %s controller recreates the pod, not in place: %s", vd.kind, inplace.FallbackWords[fallbacks])
	}
	return false
}

// promise judges, as keepsPromise does but telling nothing, whether a
// refusal of the pod's replacement would keep its promise now; the first
// refusal without progress starts the rollout's clock. key, first and
// window say which clock, since when, and for how long.
func (v *podValidator) promise(ctx context.Context, pod *corev1.Pod, vd *verdict) (holds bool, key promiseKey, first time.Time, window time.Duration) {
	key = promiseKey{workload: vd.workload.GetUID(), target: vd.target}
	window = PromiseTimeout + vd.minReady
	if inplace.Updating(pod) {
		return true, key, first, window // the engine bounds an update by its deadlines
	}
	now := v.clock.Now()
	if record, _ := inplace.RolloutOf(vd.workload.GetAnnotations()); record.HoldsForPull(vd.target, now) {
		// The engine waits for the pod's node, or another, to pull the
		// new images ahead, or halted the rollout before any pod is taken
		// down because one cannot.
		v.promises.forget(key)
		return true, key, first, window
	}
	updating, last, atTarget, err := v.progress(ctx, pod.Namespace, vd)
	if err != nil {
		logf.FromContext(ctx).Error(err, "Reading the rollout's progress; refusing as if it showed some", "pod", klog.KObj(pod))
		return true, key, first, window
	}
	if updating || now.Sub(last) < window {
		v.promises.forget(key)
		return true, key, first, window
	}
	first = v.promises.first(key, now, atTarget)
	return now.Sub(first) < window, key, first, window
}

// progress reads, from the cache, whether a pod of the workload is being
// updated in place (an update not failed), when one last completed an
// in-place update, and how many run the target.
func (v *podValidator) progress(ctx context.Context, namespace string, vd *verdict) (updating bool, last time.Time, atTarget int, err error) {
	pods := &corev1.PodList{}
	if err := v.reader.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: vd.selector}, readOnly); err != nil {
		return false, time.Time{}, 0, err
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if ref := metav1.GetControllerOfNoCopy(pod); ref == nil || !vd.owners[ref.UID] || pod.DeletionTimestamp != nil {
			continue
		}
		if vd.atTarget != nil && vd.atTarget(pod) {
			atTarget++
		}
		if inplace.Updating(pod) {
			if state, err := inplace.StateOf(pod); err == nil && (state == nil || state.Failure == "") {
				updating = true
			}
			continue
		}
		if c := inplace.GateCondition(pod); c != nil && c.Status == corev1.ConditionTrue && pod.Generation > 1 && c.LastTransitionTime.After(last) {
			last = c.LastTransitionTime.Time
		}
	}
	return updating, last, atTarget, nil
}

// countFallback counts, and tells in an event, a pod of a rollout that its
// controller recreates because it cannot go in place.
func (v *podValidator) countFallback(ctx context.Context, pod *corev1.Pod, vd *verdict, op admissionv1.Operation) {
	if vd.fallback == "" || op != admissionv1.Delete {
		return
	}
	logf.FromContext(ctx).Info("Letting a workload controller recreate a pod of its rollout", "pod", klog.KObj(pod),
		"kind", vd.kind, "reason", vd.fallback)
	v.onFallback(vd.kind, vd.fallback)
	if v.recorder != nil {
		v.recorder.Eventf(pod, vd.workload, corev1.EventTypeNormal, ReasonRecreatedNotInPlace, "Recreate",
			"The %s controller recreates the pod, not in place: %s", vd.kind, inplace.FallbackWords[vd.fallback])
	}
}

// recentlyUpdated reports whether the pod completed an in-place update
// less than inplace.StaleViewWindow ago: its gate opened then, and its spec
// was patched since its creation (its generation is past 1).
func recentlyUpdated(pod *corev1.Pod, now time.Time) bool {
	return pod.Generation > 1 && inplace.RecentlyUpdated(pod, now)
}

func hasCondition(pod *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func seconds(n int32) time.Duration { return time.Duration(n) * time.Second }

// readOnly lists the cache's objects without a deep copy of each (a live
// read ignores it). The decisions only read what they list, and a
// Deployment's pods are listed on every create and delete of one of them:
// copied, a pod of a 300-pod Deployment cost 7 us and 9 kB each time,
// about a millisecond of CPU a create at the end of a scale-up.
// Nothing that is listed so may be changed: the informer shares its maps
// and slices with the cache.
var readOnly = client.UnsafeDisableDeepCopy

// promiseKey names a rollout: a workload and the revision it goes to.
type promiseKey struct {
	workload types.UID
	target   string
}

// promises remembers, per rollout, when a replacement was first refused
// with no progress to show, on this replica.
type promises struct {
	mu    sync.Mutex
	since map[promiseKey]promiseStart
}

type promiseStart struct {
	at time.Time
	// atTarget is how many pods ran the target then.
	atTarget int
	told     bool
}

// first returns when the rollout's replacements were first refused with no
// progress to show: now, if this is the first, or if more pods run the
// target (atTarget) than then.
func (p *promises) first(key promiseKey, now time.Time, atTarget int) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.since == nil {
		p.since = map[promiseKey]promiseStart{}
	}
	if s, ok := p.since[key]; ok && atTarget <= s.atTarget {
		return s.at
	}
	if len(p.since) > 1024 { // rollouts long gone: forget them
		for k, old := range p.since {
			if now.Sub(old.at) > time.Hour {
				delete(p.since, k)
			}
		}
	}
	p.since[key] = promiseStart{at: now, atTarget: atTarget}
	return now
}

// tell reports, once per rollout, that its promise is broken: true the
// first time only.
func (p *promises) tell(key promiseKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.since[key]
	if !ok || s.told {
		return false
	}
	s.told = true
	p.since[key] = s
	return true
}

// forget drops the rollout's first refusal: it shows progress.
func (p *promises) forget(key promiseKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.since, key)
}
