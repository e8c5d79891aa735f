package inplace

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// A Deployment's rollout in place moves each pod, in one write, from an old
// ReplicaSet to the newest: its images, its pod-template-hash and its
// controller reference. The Deployment controller runs its own rollout
// unchanged; the ReplicaSet controller's deletes of the old pods it takes
// down and its creates of the new ones are refused while the manager moves
// old pods instead (docs/design has the record of why).

// DeploymentHandedBack says why a Deployment's rollouts are its
// controller's alone, "" when inplace may make them in place. The Recreate
// strategy takes every old pod down before it makes a new ReplicaSet, and a
// rolling update whose maxUnavailable comes to 0 takes no old pod down
// before a new one is available: both need new pods.
func DeploymentHandedBack(d *appsv1.Deployment) string {
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return "its strategy is Recreate"
	}
	if replicas := ptr.Deref(d.Spec.Replicas, 1); replicas > 0 && DeploymentMaxUnavailable(d) < 1 {
		return "its maxUnavailable comes to 0 at " + strconv.Itoa(int(replicas)) +
			" replicas: each pod it replaces gets a new one beside it first (set maxUnavailable: 1 for in place)"
	}
	return ""
}

// DeploymentMaxUnavailable is the Deployment's maxUnavailable as its
// controller resolves it (pkg/controller/deployment/util.ResolveFenceposts):
// a percentage of replicas rounded down, maxSurge rounded up, 1 when both
// come to 0, never more than replicas. Unset values are the API server's
// defaults, 25%.
func DeploymentMaxUnavailable(d *appsv1.Deployment) int {
	_, unavailable := fenceposts(d)
	return unavailable
}

// fenceposts are the Deployment's maxSurge and maxUnavailable as its
// controller resolves them (DeploymentMaxUnavailable); 0 and 0 for a
// Recreate Deployment or one scaled to zero.
func fenceposts(d *appsv1.Deployment) (surge, unavailable int) {
	replicas := int(ptr.Deref(d.Spec.Replicas, 1))
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType || replicas == 0 {
		return 0, 0
	}
	maxSurge, maxUnavailable := intstr.FromString("25%"), intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		maxSurge, maxUnavailable = ptr.Deref(ru.MaxSurge, maxSurge), ptr.Deref(ru.MaxUnavailable, maxUnavailable)
	}
	s, err1 := intstr.GetScaledValueFromIntOrPercent(&maxSurge, replicas, true)
	u, err2 := intstr.GetScaledValueFromIntOrPercent(&maxUnavailable, replicas, false)
	if err1 != nil || err2 != nil {
		return 0, 0
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return s, min(u, replicas)
}

// EqualIgnoreHash reports whether two pod templates are the same but for
// their pod-template-hash label: how the Deployment controller finds the
// ReplicaSet of its template.
func EqualIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	a, b = a.DeepCopy(), b.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	delete(b.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	return apiequality.Semantic.DeepEqual(a, b)
}

// DeploymentView is a Deployment with the ReplicaSets it controls: what the
// rules of its rollout read.
type DeploymentView struct {
	Deployment *appsv1.Deployment
	// ReplicaSets are those the Deployment controls, oldest first.
	ReplicaSets []*appsv1.ReplicaSet
	// New is the ReplicaSet of the Deployment's template, the one its
	// controller scales up; nil until it has made it.
	New *appsv1.ReplicaSet
	// Pods, when not nil, are the Deployment's pods the caller sees (the
	// manager's cache: the pods it gated). Their count checks the
	// ReplicaSets' status, which lags a move by the milliseconds between
	// the two ReplicaSet controllers' syncs.
	Pods []*corev1.Pod
}

// NewDeploymentView sorts the ReplicaSets the Deployment controls (others
// are ignored) and finds the newest, as the Deployment controller does
// (the oldest whose template is the Deployment's).
func NewDeploymentView(d *appsv1.Deployment, replicaSets []*appsv1.ReplicaSet) DeploymentView {
	v := DeploymentView{Deployment: d}
	for _, rs := range replicaSets {
		if ref := metav1.GetControllerOfNoCopy(rs); ref != nil && ref.UID == d.UID {
			v.ReplicaSets = append(v.ReplicaSets, rs)
		}
	}
	slices.SortFunc(v.ReplicaSets, func(a, b *appsv1.ReplicaSet) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	for _, rs := range v.ReplicaSets {
		if EqualIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
			v.New = rs
			break
		}
	}
	return v
}

// ReplicaSet returns the ReplicaSet of the Deployment whose pods carry
// that pod-template-hash, nil when there is none.
func (v DeploymentView) ReplicaSet(hash string) *appsv1.ReplicaSet {
	for _, rs := range v.ReplicaSets {
		if hash != "" && rs.Labels[appsv1.DefaultDeploymentUniqueLabelKey] == hash {
			return rs
		}
	}
	return nil
}

// Owner returns the ReplicaSet of the Deployment that controls the pod,
// nil when none does.
func (v DeploymentView) Owner(pod *corev1.Pod) *appsv1.ReplicaSet {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return nil
	}
	for _, rs := range v.ReplicaSets {
		if rs.UID == ref.UID {
			return rs
		}
	}
	return nil
}

// TemplateOf returns the template of the ReplicaSet whose pods carry that
// pod-template-hash, nil when it is gone.
func (v DeploymentView) TemplateOf(hash string) *corev1.PodTemplateSpec {
	if rs := v.ReplicaSet(hash); rs != nil {
		return &rs.Spec.Template
	}
	return nil
}

// Active is the number of live pods the Deployment's ReplicaSets report.
func (v DeploymentView) Active() int {
	n := 0
	for _, rs := range v.ReplicaSets {
		n += int(rs.Status.Replicas)
	}
	return n
}

// counted is the number of live pods of Pods a ReplicaSet of the
// Deployment controls; ok is false when Pods is nil.
func (v DeploymentView) counted() (n int, ok bool) {
	if v.Pods == nil {
		return 0, false
	}
	for _, p := range v.Pods {
		if Alive(p) && v.Owner(p) != nil {
			n++
		}
	}
	return n, true
}

// scaledDown reports whether the Deployment has more live pods than its
// replicas: a delete is then a scale-down's. Where the ReplicaSets' status
// and the pods seen disagree (a move in flight, pods not gated), the lower
// count decides: a rollout's delete taken for a scale-down's would recreate
// a pod, one of a scale-down refused only waits.
func (v DeploymentView) scaledDown() bool {
	n := v.Active()
	if c, ok := v.counted(); ok {
		n = min(n, c)
	}
	return n > int(ptr.Deref(v.Deployment.Spec.Replicas, 1))
}

// full reports whether the Deployment has its replicas live: a create is
// then a surge's. The higher count decides: a surge's create taken for
// capacity would create a pod, capacity refused only waits.
func (v DeploymentView) full() bool {
	n := v.Active()
	if c, ok := v.counted(); ok {
		n = max(n, c)
	}
	return n >= int(ptr.Deref(v.Deployment.Spec.Replicas, 1))
}

// Settled reports whether the view shows the Deployment at rest with pod's
// ReplicaSet as its newest: no other ReplicaSet of it has replicas, asked
// for or live, and no live pod is controlled by one. A create of a pod of
// that ReplicaSet is then a scale-up's. A view that lags a rollout's start
// cannot show this: the Deployment's new template and its new ReplicaSet
// come with the old ReplicaSet still holding its pods.
func (v DeploymentView) Settled(pod *corev1.Pod) bool {
	if v.New == nil || v.Owner(pod) != v.New {
		return false
	}
	for _, rs := range v.ReplicaSets {
		if rs != v.New && (ptr.Deref(rs.Spec.Replicas, 1) > 0 || rs.Status.Replicas > 0) {
			return false
		}
	}
	for _, p := range v.Pods {
		if o := v.Owner(p); o != nil && o != v.New && Alive(p) {
			return false
		}
	}
	return true
}

// NoRoom reports whether the new ReplicaSet has no room for another pod,
// by a move or its controller's create: the replicas the Deployment
// controller scales it to once the old ReplicaSets are at theirs (the
// Deployment's replicas and maxSurge less what the old ones keep, at most
// its replicas; its replicas now if more), and the room earlier targets'
// ReplicaSets short of their pods hold (the manager moves into it ahead of
// the scale-up), less the pods it has: the higher of its status and the
// pods seen (a pod created while no manager replica answered has no gate,
// and the manager does not cache it; a move its status has not counted yet
// is seen).
//
// An old ReplicaSet's pod with no room can be moved nowhere, and the
// Deployment controller will neither scale the new ReplicaSet up nor the
// old one down while that has more available pods than it wants (it
// refuses to "scale down" to more: cleanupUnhealthyReplicas, whose error
// its rolling update drops). The views this counts on lag the ReplicaSet
// controllers' by a moment, in either direction: no room now is no reason
// to let a pod go, no room that lasts is (the pod webhook's NoRoomWindow).
func (v DeploymentView) NoRoom() bool {
	n := v.New
	if n == nil {
		return false
	}
	d := v.Deployment
	replicas := int(ptr.Deref(d.Spec.Replicas, 1))
	surge, _ := fenceposts(d)
	live := map[types.UID]int{}
	for _, p := range v.Pods {
		if owner := v.Owner(p); owner != nil && Alive(p) {
			live[owner.UID]++
		}
	}
	old, stale := 0, 0
	for _, rs := range v.ReplicaSets {
		if rs == n {
			continue
		}
		spec := int(ptr.Deref(rs.Spec.Replicas, 1))
		old += spec
		stale += max(spec-max(int(rs.Status.Replicas), live[rs.UID]), 0)
	}
	target := max(min(replicas+surge-old, replicas), int(ptr.Deref(n.Spec.Replicas, 1)))
	return target+stale <= max(int(n.Status.Replicas), live[n.UID])
}

// String says what the view counts, for debug logs.
func (v DeploymentView) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "replicas %d, no room %t", ptr.Deref(v.Deployment.Spec.Replicas, 1), v.NoRoom())
	for _, rs := range v.ReplicaSets {
		mark := ""
		if rs == v.New {
			mark = " (new)"
		}
		fmt.Fprintf(&b, "; %s%s spec %d status %d", rs.Name, mark, ptr.Deref(rs.Spec.Replicas, 1), rs.Status.Replicas)
	}
	if c, ok := v.counted(); ok {
		fmt.Fprintf(&b, "; %d pods seen", c)
	}
	return b.String()
}

// InPlace reports whether the Deployment's rollouts are made in place now:
// it is not handed back and its controller has made the new ReplicaSet.
func (v DeploymentView) InPlace() bool {
	return v.New != nil && DeploymentHandedBack(v.Deployment) == ""
}

// Movable reports whether the manager moves the pod in place to the new
// ReplicaSet when the Deployment controller takes its old ReplicaSet down:
// it is alive, controlled by an old ReplicaSet of the Deployment, and can
// go in place from that ReplicaSet's template to the new one's. fallback
// says why a pod of an old ReplicaSet cannot ("" when it can, or when the
// pod is not one of the rollout's).
func (v DeploymentView) Movable(pod *corev1.Pod, kubeletVersion string) (movable bool, fallback string) {
	owner := v.Owner(pod)
	if !v.InPlace() || owner == nil || owner == v.New || !Alive(pod) {
		return false, ""
	}
	refuse, fallback := Replacement(pod, pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey], v.TemplateOf, &v.New.Spec.Template, kubeletVersion)
	return refuse && fallback == "", fallback
}

// RefuseDeploymentDelete decides, for the ReplicaSet controller's delete of
// a pod of the Deployment, whether inplace refuses it: the manager moves
// the pod in place instead, or is updating it. fallback says why a pod the
// rollout replaces is recreated instead. recent is true when the pod's gate
// opened less than StaleViewWindow ago.
//
//   - A pod of an old ReplicaSet that the rollout replaces (the Deployment's
//     live pods no more than its replicas: not a scale-down) and that can go
//     in place: refused, the manager moves it.
//   - A pod mid-update, or one of the new ReplicaSet just moved (recent,
//     a delete decided by the old ReplicaSet's controller on a view from
//     before the move): refused; also where the new ReplicaSet has more
//     pods than its replicas but the Deployment does not (a pod moved
//     ahead of its scale-up).
//
// Every other delete passes: a scale-down (the Deployment's live pods above
// its replicas, or the new ReplicaSet's above its own), failed pods, a
// Deployment rolled out natively.
func RefuseDeploymentDelete(v DeploymentView, pod *corev1.Pod, kubeletVersion string, recent bool) (refuse bool, fallback string) {
	if !v.InPlace() || !Alive(pod) {
		return false, ""
	}
	owner := v.Owner(pod)
	if owner == nil {
		return false, ""
	}
	if owner == v.New {
		moving := Updating(pod) || recent
		if v.New.Status.Replicas > ptr.Deref(v.New.Spec.Replicas, 1) && (v.scaledDown() || !moving) {
			// Scaled down. Above its replicas while the Deployment is not,
			// a pod moving is one moved ahead of the new ReplicaSet's
			// scale-up (an earlier target's ReplicaSet held the room):
			// refused until the Deployment controller scales it up.
			return false, ""
		}
		return moving, ""
	}
	if v.scaledDown() {
		return false, "" // scaled down
	}
	if Updating(pod) {
		return true, ""
	}
	return v.Movable(pod, kubeletVersion)
}

// RefuseDeploymentCreate decides, for the ReplicaSet controller's create of
// a pod of the Deployment, whether inplace refuses it: the create would
// take the Deployment above its replicas (a surge), and the manager moves
// old pods in place (moving is true when an old pod is movable, or one was
// just moved or is being moved), which stand in for the new pods as the
// Deployment controller takes the old ReplicaSets down. An old
// ReplicaSet's create is refused on the same terms: it is an earlier
// target's, scaled up while the manager held its moves (pulling ahead, an
// image that could not be pulled) and not yet scaled down by the
// Deployment controller, which does so once it sees the new template. A
// create that adds capacity (a scale-up, a lost pod replaced) passes.
func RefuseDeploymentCreate(v DeploymentView, pod *corev1.Pod, moving bool) bool {
	if !v.InPlace() || !moving {
		return false
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || v.Owner(pod) == nil {
		return false
	}
	return v.full()
}
