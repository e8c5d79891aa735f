package webhook

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
)

// ReasonRecreatedNotInPlace is the reason of the event on a pod of a
// rollout that its controller recreates because it cannot go in place (the
// controller package tells the same reason for the pods it deletes itself).
const ReasonRecreatedNotInPlace = "RecreatedNotInPlace"

// DefaultWorkloadControllerUsers are the users the kube-controller-manager's
// workload controllers delete pods as, when it runs with
// --use-service-account-credentials (kubeadm and the managed offerings do).
var DefaultWorkloadControllerUsers = []string{
	"system:serviceaccount:kube-system:statefulset-controller",
	"system:serviceaccount:kube-system:daemon-set-controller",
}

// podDeleteValidator refuses a workload controller's delete of a pod that
// the manager updates in place instead. It is how an in-place rollout runs
// without holding the native controller back: the StatefulSet controller
// rolls out as the user wrote it, its delete of a pod the manager takes
// over is refused, and it goes on once the manager has relabelled the pod
// to the new revision. Its status, and every tool that reads it, stays true.
//
// Every other delete passes: another user's (kubectl delete pod), scale-down,
// a failed pod's replacement, a pod that must be recreated (no readiness
// gate, a change live pods cannot take), and any delete at all while the
// manager's rollout engine is not running (no elected replica renewing its
// lease): then the native controller recreates the pods as it always has.
// With the manager down the webhook fails open and the same holds.
type podDeleteValidator struct {
	namespaces *namespaces
	// reader reads StatefulSets and ControllerRevisions from the cache; live
	// reads a revision the cache has not seen yet, and nodes.
	reader, live client.Reader
	// controllers are the users whose deletes may be refused.
	controllers map[string]bool
	// engineRunning reports whether an elected replica runs the rollout
	// controllers now.
	engineRunning func() bool
	// onFallback counts a rollout's pod let through to be recreated.
	onFallback func(kind, reason string)
	// recorder tells, in an event on the pod, why it is recreated.
	recorder events.EventRecorder
	// onRefusal counts a refused delete.
	onRefusal func(kind string)
}

var _ admission.Validator[*corev1.Pod] = &podDeleteValidator{}

// ValidateCreate implements admission.Validator; pods are not validated on
// create.
func (v *podDeleteValidator) ValidateCreate(context.Context, *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

// ValidateUpdate implements admission.Validator; pods are not validated on
// update.
func (v *podDeleteValidator) ValidateUpdate(context.Context, *corev1.Pod, *corev1.Pod) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete implements admission.Validator.
func (v *podDeleteValidator) ValidateDelete(ctx context.Context, pod *corev1.Pod) (admission.Warnings, error) {
	req, err := request(ctx)
	if err != nil {
		return nil, nil // fail open
	}
	if !v.controllers[req.UserInfo.Username] {
		return nil, nil
	}
	owner := metav1.GetControllerOfNoCopy(pod)
	if owner == nil || schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind) != statefulSetGVK {
		return nil, nil
	}
	log := logf.FromContext(ctx).WithValues("pod", klog.KObj(pod))
	sts, err := v.statefulSet(ctx, pod.Namespace, owner)
	if err != nil || sts == nil {
		if err != nil {
			log.Error(err, "Letting the delete through")
		}
		return nil, nil
	}
	if !v.manages(ctx, sts) {
		return nil, nil
	}
	templates := map[string]*corev1.PodTemplateSpec{}
	templateOf := func(revision string) *corev1.PodTemplateSpec {
		if t, ok := templates[revision]; ok {
			return t
		}
		t, err := v.revisionTemplate(ctx, sts.Namespace, revision)
		if err != nil {
			log.Error(err, "Reading a revision", "revision", revision)
		}
		templates[revision] = t
		return t
	}
	refuse := inplace.RefuseRolloutDelete(sts, pod, templateOf, v.kubeletVersion(ctx, sts, pod, templateOf))
	if !refuse && v.live != nil {
		// The controller deletes on a view of the StatefulSet at least as
		// new as the one that made it decide (a partition just lowered, a
		// new revision), and the cache may lag it: decide again on a live
		// read before letting the pod go. Only this path pays for it; the
		// refusals a rollout draws do not.
		if fresh, err := v.liveStatefulSet(ctx, pod.Namespace, owner); err != nil {
			log.Error(err, "Reading the StatefulSet live; deciding on the cached one")
		} else if fresh != nil && fresh.ResourceVersion != sts.ResourceVersion {
			sts = fresh
			refuse = v.manages(ctx, sts) && inplace.RefuseRolloutDelete(sts, pod, templateOf, v.kubeletVersion(ctx, sts, pod, templateOf))
		}
	}
	if !refuse {
		v.countFallback(ctx, sts, pod, templateOf)
		return nil, nil
	}
	if !v.engineRunning() {
		log.Info("Letting the StatefulSet controller recreate a pod: no manager replica runs the rollout now")
		return nil, nil
	}
	v.onRefusal("StatefulSet")
	return nil, fmt.Errorf("inplace: pod %s is updated in place to the StatefulSet's template instead of recreated; "+
		"the StatefulSet controller goes on once the pod is relabelled to its update revision", pod.Name)
}

// manages reports whether the StatefulSet's rollouts are done in place: its
// namespace is managed and its policy is not Recreate.
func (v *podDeleteValidator) manages(ctx context.Context, sts *appsv1.StatefulSet) bool {
	managed, err := v.namespaces.managed(ctx, sts.Namespace)
	if err != nil || !managed {
		return false
	}
	p, err := inplace.UpdatePolicyOf(sts.Annotations)
	return err == nil && p != inplace.Recreate
}

// kubeletVersion returns the version of the pod's node's kubelet when the
// change needs it (a native sidecar's image), read live; "" otherwise.
func (v *podDeleteValidator) kubeletVersion(ctx context.Context, sts *appsv1.StatefulSet, pod *corev1.Pod, templateOf func(string) *corev1.PodTemplateSpec) string {
	from := templateOf(pod.Labels[appsv1.StatefulSetRevisionLabel])
	if from == nil || !inplace.DiffTemplates(templatePath, from, &sts.Spec.Template).Sidecars() || pod.Spec.NodeName == "" {
		return ""
	}
	node := &corev1.Node{}
	if err := v.live.Get(ctx, types.NamespacedName{Name: pod.Spec.NodeName}, node); err != nil {
		return ""
	}
	return node.Status.NodeInfo.KubeletVersion
}

// countFallback counts a pod of the rollout that the StatefulSet controller
// recreates because it cannot be updated in place.
func (v *podDeleteValidator) countFallback(ctx context.Context, sts *appsv1.StatefulSet, pod *corev1.Pod, templateOf func(string) *corev1.PodTemplateSpec) {
	if !inplace.RollsOut(sts) || pod.DeletionTimestamp != nil {
		return
	}
	ord, ok := inplace.Ordinal(sts, pod)
	if !ok || !inplace.InRolloutRange(sts, ord) {
		return
	}
	if _, fallback := inplace.Eligibility(pod, templateOf(pod.Labels[appsv1.StatefulSetRevisionLabel]), &sts.Spec.Template, ""); fallback != "" {
		logf.FromContext(ctx).Info("Letting the StatefulSet controller recreate a pod of its rollout", "pod", klog.KObj(pod),
			"reason", fallback, "revision", pod.Labels[appsv1.StatefulSetRevisionLabel])
		v.onFallback("StatefulSet", fallback)
		if v.recorder != nil {
			v.recorder.Eventf(pod, sts, corev1.EventTypeNormal, ReasonRecreatedNotInPlace, "Recreate",
				"The StatefulSet controller recreates the pod, not in place: %s", inplace.FallbackWords[fallback])
		}
	}
}

// statefulSet returns the StatefulSet the owner reference names, from the
// cache, nil when it is gone or was replaced.
func (v *podDeleteValidator) statefulSet(ctx context.Context, namespace string, owner *metav1.OwnerReference) (*appsv1.StatefulSet, error) {
	sts := &appsv1.StatefulSet{}
	if err := v.reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: owner.Name}, sts); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if sts.UID != owner.UID {
		return nil, nil
	}
	return sts, nil
}

// liveStatefulSet is statefulSet, read from the API server.
func (v *podDeleteValidator) liveStatefulSet(ctx context.Context, namespace string, owner *metav1.OwnerReference) (*appsv1.StatefulSet, error) {
	sts := &appsv1.StatefulSet{}
	if err := v.live.Get(ctx, types.NamespacedName{Namespace: namespace, Name: owner.Name}, sts); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if sts.UID != owner.UID {
		return nil, nil
	}
	return sts, nil
}

// revisionTemplate returns the template a ControllerRevision records, nil
// when it is gone.
func (v *podDeleteValidator) revisionTemplate(ctx context.Context, namespace, name string) (*corev1.PodTemplateSpec, error) {
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
	return inplace.RevisionTemplate(rev)
}
