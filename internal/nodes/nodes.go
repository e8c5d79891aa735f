// Package nodes answers what inplace asks about nodes (a kubelet's version,
// whether a node is lost) from the manager's cache, for the webhook and the
// controllers alike: one source, following every Node update (a node whose
// kubelet is upgraded in place keeps its name).
//
// It must not read nodes live: the cache's Node informer, trimmed by
// Transform to the fields read here, is the only source.
package nodes

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Nodes reads nodes from a cache.
type Nodes struct {
	Reader client.Reader
}

// KubeletVersion returns the version of the node's kubelet
// (status.nodeInfo.kubeletVersion), "" when unknown.
func (n Nodes) KubeletVersion(ctx context.Context, name string) string {
	node, err := n.get(ctx, name)
	if node == nil || err != nil {
		return ""
	}
	return node.Status.NodeInfo.KubeletVersion
}

// Lost reports whether the node cannot act on a pod: it is gone, or not
// Ready. A pod scheduled nowhere yet is not on a lost node. A node that
// cannot be read is not taken for lost.
func (n Nodes) Lost(ctx context.Context, name string) bool {
	if name == "" {
		return false
	}
	node, err := n.get(ctx, name)
	if err != nil {
		return false
	}
	if node == nil {
		return true
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status != corev1.ConditionTrue
		}
	}
	return true
}

func (n Nodes) get(ctx context.Context, name string) (*corev1.Node, error) {
	if name == "" || n.Reader == nil {
		return nil, nil
	}
	node := &corev1.Node{}
	err := n.Reader.Get(ctx, types.NamespacedName{Name: name}, node)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return node, err
}

// Transform keeps, of a Node the cache receives, only what Nodes reads:
// its metadata's identity, its kubelet version and its Ready condition. A
// node's images, addresses and other conditions would otherwise fill the
// manager's memory on a large cluster.
func Transform(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	kept := &corev1.Node{}
	kept.Name, kept.UID, kept.ResourceVersion, kept.Generation = node.Name, node.UID, node.ResourceVersion, node.Generation
	kept.DeletionTimestamp = node.DeletionTimestamp
	kept.Status.NodeInfo.KubeletVersion = node.Status.NodeInfo.KubeletVersion
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			kept.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return kept, nil
}
