package inplace

import (
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"
)

// Partition returns a StatefulSet's rollingUpdate.partition: 0 when unset.
// The StatefulSet controller recreates no pod below it, which is how the
// webhook holds it back and the rollout hands pods to it one by one.
func Partition(sts *appsv1.StatefulSet) int32 {
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		return ptr.Deref(ru.Partition, 0)
	}
	return 0
}

// SetPartition sets a StatefulSet's rollingUpdate.partition.
func SetPartition(sts *appsv1.StatefulSet, p int32) {
	if sts.Spec.UpdateStrategy.RollingUpdate == nil {
		sts.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
	}
	sts.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To(p)
}
