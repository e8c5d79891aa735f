package controller

import (
	"context"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/inplace"
)

// revisionTemplate returns the pod template a StatefulSet's or DaemonSet's
// ControllerRevision records, or nil when the revision is gone (history
// trimmed). It reads the cache, and live when the cache has not seen the
// revision (one the controller created an instant ago): a revision wrongly
// taken for gone would recreate the pod, or leave its labels stale. The
// controllers store {"spec":{"template":{...}}}.
func revisionTemplate(ctx context.Context, cache, live client.Reader, namespace, name string) (*corev1.PodTemplateSpec, error) {
	rev := &appsv1.ControllerRevision{}
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := cache.Get(ctx, key, rev)
	if apierrors.IsNotFound(err) && live != nil {
		err = live.Get(ctx, key, rev)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return inplace.RevisionTemplate(rev)
}

// kubeletVersions reads the kubelet version of nodes, live and only when a
// change needs it (a native sidecar's image), and remembers it.
type kubeletVersions struct {
	reader client.Reader
	mu     sync.Mutex
	known  map[string]string
}

// version returns the kubelet version of the node, "" when unknown.
func (k *kubeletVersions) version(ctx context.Context, node string) string {
	if node == "" {
		return ""
	}
	k.mu.Lock()
	v, ok := k.known[node]
	k.mu.Unlock()
	if ok {
		return v
	}
	n := &corev1.Node{}
	if err := k.reader.Get(ctx, types.NamespacedName{Name: node}, n); err != nil {
		return ""
	}
	v = n.Status.NodeInfo.KubeletVersion
	k.mu.Lock()
	if k.known == nil {
		k.known = map[string]string{}
	}
	k.known[node] = v
	k.mu.Unlock()
	return v
}
