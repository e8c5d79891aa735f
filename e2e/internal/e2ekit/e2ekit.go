// Package e2ekit holds what the programs and tests run against the e2e
// cluster share: the benches' client of the cluster and the namespace each
// run makes and deletes, the push of an image of its own to the cluster's
// registry, and the reader of its API server's audit log.
package e2ekit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
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

// CreateNamespace creates a run's namespace, named prefix and a random
// suffix, labelled as a bench's; managed: opted in to inplace.
func CreateNamespace(ctx context.Context, c client.Client, prefix string, managed bool) (string, error) {
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   prefix + "-" + hex.EncodeToString(suffix),
		Labels: map[string]string{"e2e.inplace.dev/bench": "true"},
	}}
	if managed {
		ns.Labels["inplace.dev/enabled"] = "true"
	}
	if err := c.Create(ctx, ns); err != nil {
		return "", fmt.Errorf("creating namespace %s: %w", ns.Name, err)
	}
	return ns.Name, nil
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

// Repositories of the cluster's registry: the test application's, and the
// same under private/, which needs basic auth (registry.sh auth).
const (
	Repository        = "inplace-testapp"
	PrivateRepository = "private/inplace-testapp"
)

// PushImage pushes the test application's version (v1, v2, v3) to the
// cluster's registry as repository:tag with registry.sh, the script's path,
// and returns the reference and the manifest digest it printed. The image's
// version layer is drawn from the tag: under a fresh tag, no node has it.
func PushImage(ctx context.Context, registrySh, repository, tag, version string) (ref, digest string, err error) {
	out, err := exec.CommandContext(ctx, registrySh, "push", repository+":"+tag, version).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("pushing %s as %s: %v: %s", version, tag, err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	if len(fields) != 2 {
		return "", "", fmt.Errorf("%s push printed %q, want the reference and its digest", registrySh, out)
	}
	return fields[0], fields[1], nil
}

// PodTemplate is the pod template of a StatefulSet, Deployment or
// DaemonSet; nil for any other object.
func PodTemplate(obj client.Object) *corev1.PodTemplateSpec {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		return &o.Spec.Template
	case *appsv1.Deployment:
		return &o.Spec.Template
	case *appsv1.DaemonSet:
		return &o.Spec.Template
	}
	return nil
}
