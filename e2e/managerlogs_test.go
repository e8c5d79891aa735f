//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// keepManagerLogs follows the logs of every manager container while the
// tests run, each into a file of dir named after its pod, container and
// restart count. The tests delete, kill and scale down replicas, and a
// deleted pod's logs go with it: what a replica did as it stopped (its
// shutdown drain, its last writes) is read there after a failure. It
// returns when ctx is done.
func keepManagerLogs(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	following := map[string]bool{}
	for {
		pods := &corev1.PodList{}
		if err := k8s.List(ctx, pods, client.InNamespace(managerNamespace), client.MatchingLabels{"app.kubernetes.io/name": managerDeployment}); err == nil {
			for _, p := range pods.Items {
				for _, c := range p.Status.ContainerStatuses {
					if c.State.Running == nil && c.State.Terminated == nil {
						continue
					}
					name := fmt.Sprintf("%s_%s_%d.log", p.Name, c.Name, c.RestartCount)
					if following[name] {
						continue
					}
					following[name] = true
					go followLog(ctx, cs, p.Name, c.Name, filepath.Join(dir, name))
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// followLog copies one container's log into path until it ends.
func followLog(ctx context.Context, cs kubernetes.Interface, pod, container, path string) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	stream, err := cs.CoreV1().Pods(managerNamespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true}).Stream(ctx)
	if err != nil {
		fmt.Fprintf(f, "e2e: cannot follow the log: %v\n", err)
		return
	}
	defer stream.Close()
	_, _ = io.Copy(f, stream)
}
