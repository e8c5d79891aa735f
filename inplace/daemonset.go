package inplace

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// LabelPodTemplateGeneration is the pod label the DaemonSet controller sets
// to its template generation; with controller-revision-hash it is how that
// controller tells a pod updated (pkg/controller/daemon/util.IsPodUpdated).
const LabelPodTemplateGeneration = "pod-template-generation"

// DaemonSetHandedBack says why a DaemonSet's rollouts are its controller's
// alone, "" when inplace may make them in place: OnDelete leaves each pod's
// replacement to the user, and a surge (maxSurge > 0) asks for the new pod
// to run beside the old one on each node, which only a new pod can do.
func DaemonSetHandedBack(ds *appsv1.DaemonSet) string {
	if t := ds.Spec.UpdateStrategy.Type; t != "" && t != appsv1.RollingUpdateDaemonSetStrategyType {
		return "its update strategy is " + string(t)
	}
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxSurge != nil {
		if n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, 100, true); err != nil || n > 0 {
			return "its rolling update surges (maxSurge " + ru.MaxSurge.String() + "): each node's new pod starts beside the old one"
		}
	}
	return ""
}

// DaemonSetTemplateGeneration returns the DaemonSet's template generation,
// the value of the pod label pod-template-generation on its updated pods
// ("" when the API server has not recorded one).
func DaemonSetTemplateGeneration(ds *appsv1.DaemonSet) string {
	v := ds.Annotations[appsv1.DeprecatedTemplateGeneration]
	if _, err := strconv.ParseInt(v, 10, 64); err != nil {
		return ""
	}
	return v
}

// DaemonPodUpdated reports whether the DaemonSet controller counts the pod
// updated: its controller-revision-hash is the current revision's hash, or
// its pod-template-generation the DaemonSet's template generation.
func DaemonPodUpdated(pod *corev1.Pod, hash, generation string) bool {
	return hash != "" && pod.Labels[appsv1.DefaultDaemonSetUniqueLabelKey] == hash ||
		generation != "" && pod.Labels[LabelPodTemplateGeneration] == generation
}

// DaemonSetMaxUnavailable is how many nodes may be without an available
// pod during the DaemonSet's rolling update, as its controller counts it:
// maxUnavailable (1 by default) of the nodes that should run a pod, rounded
// up, and 1 when both it and maxSurge come to 0 on a DaemonSet that should
// run pods (pkg/controller/daemon, updatedDesiredNodeCounts). A value that
// does not parse counts as 1.
func DaemonSetMaxUnavailable(ds *appsv1.DaemonSet, desired int) int {
	unavailable, surge := intstr.FromInt32(1), intstr.FromInt32(0)
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		unavailable, surge = ptr.Deref(ru.MaxUnavailable, unavailable), ptr.Deref(ru.MaxSurge, surge)
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(&unavailable, desired, true)
	if err != nil {
		return 1
	}
	s, err := intstr.GetScaledValueFromIntOrPercent(&surge, desired, true)
	if err != nil {
		s = 0
	}
	if desired > 0 && n == 0 && s == 0 {
		return 1
	}
	return n
}

// CurrentDaemonSetRevision returns, of a DaemonSet's ControllerRevisions,
// the one that records its current template: the controller-revision-hash
// its updated pods carry. It is the newest whose template is the
// DaemonSet's; nil when the DaemonSet controller has not recorded it yet.
func CurrentDaemonSetRevision(ds *appsv1.DaemonSet, revisions []*appsv1.ControllerRevision) *appsv1.ControllerRevision {
	var current *appsv1.ControllerRevision
	for _, rev := range revisions {
		if current != nil && rev.Revision <= current.Revision {
			continue
		}
		t, err := RevisionTemplate(rev)
		if err != nil || !apiequality.Semantic.DeepEqual(t, &ds.Spec.Template) {
			continue
		}
		current = rev
	}
	return current
}

// RefuseDaemonSetDelete decides, for the DaemonSet controller's own delete
// of one of its pods, whether inplace refuses it because the manager
// updates that pod in place instead (see Replacement); fallback says why a
// pod of the rollout is recreated instead. hash is the current revision's
// controller-revision-hash, templateOf returns the template of a revision
// by its hash (nil when unknown), kubeletVersion is that of the pod's node.
//
// Only a rollout's delete is refused: the DaemonSet rolls out in place
// (DaemonSetHandedBack), the pod is alive and not updated. A pod the
// DaemonSet controller counts updated is refused only while the manager
// has just updated it (recently, its gate opened less than StaleViewWindow
// ago): a delete decided on a view from before the relabel; after that, its
// controller deletes it for another reason (its node no longer fits) and
// the delete passes.
func RefuseDaemonSetDelete(ds *appsv1.DaemonSet, pod *corev1.Pod, hash string, templateOf func(hash string) *corev1.PodTemplateSpec, kubeletVersion string, recent bool) (refuse bool, fallback string) {
	if DaemonSetHandedBack(ds) != "" || !Alive(pod) || hash == "" {
		return false, ""
	}
	if DaemonPodUpdated(pod, hash, DaemonSetTemplateGeneration(ds)) && !Updating(pod) {
		return recent, ""
	}
	return Replacement(pod, pod.Labels[appsv1.DefaultDaemonSetUniqueLabelKey], templateOf, &ds.Spec.Template, kubeletVersion)
}
