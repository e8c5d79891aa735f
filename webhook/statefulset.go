package webhook

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/inplace"
)

// holdStatefulSet holds the StatefulSet controller back during an in-place
// rollout: on a template change that live pods can take in place, it raises
// rollingUpdate.partition to replicas, so that the native controller
// recreates no pod, and records the user's partition in the hold. The
// rollout controller lowers the partition as pods finish and restores the
// user's at the end.
//
// During a hold, the partition the user writes is recorded as their wish and
// the held value kept; a new in-place-able template retargets the rollout
// (the partition is raised again), and one that is not hands the rollout
// back to the native controller with the user's partition.
//
// A StatefulSet on OnDelete is the user's to roll: no hold. Nor is one whose
// native rollout is under way (pods of several revisions): the native
// controller finishes what it started.
func holdStatefulSet(old, sts *appsv1.StatefulSet, now time.Time) {
	if sts.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return
	}
	hold, err := inplace.HoldOf(sts.Annotations)
	if err != nil {
		return // not ours to mend here; the controller reports and releases it
	}
	templateChanged := !apiequality.Semantic.DeepEqual(old.Spec.Template, sts.Spec.Template)
	diff := inplace.DiffTemplates(templatePath, &old.Spec.Template, &sts.Spec.Template)

	if hold == nil {
		if !templateChanged || !diff.InPlaceable() || nativeRolloutUnderWay(old) {
			return
		}
		hold = &inplace.Hold{
			Since:     metav1.NewTime(now),
			Reason:    inplace.ReasonInPlaceRollout,
			Partition: ptr.To(inplace.Partition(sts)),
		}
		inplace.SetPartition(sts, replicasOf(sts))
		setHold(sts, hold)
		return
	}

	// Held: what the user writes to the partition is their wish.
	if p := inplace.Partition(sts); p != inplace.Partition(old) {
		hold.Partition = ptr.To(p)
	}
	switch {
	case templateChanged && !diff.InPlaceable():
		// The native controller takes over, as it would have without us.
		inplace.SetPartition(sts, hold.UserPartition())
		delete(sts.Annotations, inplace.AnnotationHold)
		return
	case templateChanged:
		inplace.SetPartition(sts, replicasOf(sts))
	default:
		inplace.SetPartition(sts, inplace.Partition(old))
	}
	setHold(sts, hold)
}

// nativeRolloutUnderWay reports whether the StatefulSet controller has not
// finished its last rollout: it has not seen the latest spec, or pods it
// should have updated are still at an older revision.
func nativeRolloutUnderWay(sts *appsv1.StatefulSet) bool {
	if sts.Status.ObservedGeneration < sts.Generation {
		return true
	}
	want := replicasOf(sts) - inplace.Partition(sts)
	return want > 0 && sts.Status.UpdatedReplicas < want
}

func replicasOf(sts *appsv1.StatefulSet) int32 {
	return ptr.Deref(sts.Spec.Replicas, 1)
}

func setHold(sts *appsv1.StatefulSet, h *inplace.Hold) {
	if sts.Annotations == nil {
		sts.Annotations = map[string]string{}
	}
	sts.Annotations[inplace.AnnotationHold] = h.Encode()
}
