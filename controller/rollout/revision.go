package rollout

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/inplace"
)

// ControllerRevision returns a ControllerRevision by name: from the cache,
// and live when the cache has not seen it (one the controller created an
// instant ago); nil when it is gone. A revision wrongly taken for gone would
// recreate a pod, or leave its labels stale.
func ControllerRevision(ctx context.Context, r Readers, namespace, name string) (*appsv1.ControllerRevision, error) {
	rev := &appsv1.ControllerRevision{}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := r.Cache.Get(ctx, key, rev)
	if apierrors.IsNotFound(err) && r.Live != nil {
		err = r.Live.Get(ctx, key, rev)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return rev, err
}

// RevisionTemplate returns the pod template a StatefulSet's or DaemonSet's
// ControllerRevision records (see ControllerRevision), nil when it is gone.
func RevisionTemplate(ctx context.Context, r Readers, namespace, name string) (*corev1.PodTemplateSpec, error) {
	rev, err := ControllerRevision(ctx, r, namespace, name)
	if rev == nil || err != nil {
		return nil, err
	}
	return inplace.RevisionTemplate(rev)
}

// OwnedPods returns the pods of namespace matching the selector whose
// controller is owner. The cache holds only the pods the webhook gated; when
// it holds fewer than want, the others (created before the namespace was
// managed, or while the manager was down) are read live.
func OwnedPods(ctx context.Context, r Readers, namespace string, selector client.MatchingLabelsSelector, owner types.UID, want int) ([]*corev1.Pod, error) {
	pods, err := listOwned(ctx, r.Cache, namespace, selector, owner)
	if err != nil || len(pods) >= want || r.Live == nil {
		return pods, err
	}
	return listOwned(ctx, r.Live, namespace, selector, owner)
}

func listOwned(ctx context.Context, c client.Reader, namespace string, selector client.MatchingLabelsSelector, owner types.UID) ([]*corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := c.List(ctx, list, client.InNamespace(namespace), selector); err != nil {
		return nil, err
	}
	var owned []*corev1.Pod
	for i := range list.Items {
		if ref := controllerOf(&list.Items[i]); ref != nil && ref.UID == owner {
			owned = append(owned, &list.Items[i])
		}
	}
	return owned, nil
}
