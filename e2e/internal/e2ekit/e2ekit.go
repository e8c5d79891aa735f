// Package benchkit holds what the cluster benches (e2e/benchrollout,
// e2e/benchgate) share: their client of the cluster, and the namespace each
// run makes and deletes.
package benchkit

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
)

// Client is a client of the cluster of $KUBECONFIG with watches, allowed
// 100 requests a second (bursts of 200): a bench's own writes and reads
// should not be what it measures.
func Client() (client.WithWatch, error) {
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 100, 200
	return client.NewWithWatch(cfg, client.Options{Scheme: clientgoscheme.Scheme})
}

// DeleteNamespace deletes a run's namespace and waits, up to three minutes,
// until it is gone, so that the next run starts on quiet nodes.
func DeleteNamespace(c client.Client, ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := c.Delete(ctx, obj); err != nil {
		return
	}
	_ = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(obj), obj)), nil
	})
}
