//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
)

// Real pulls: the images of these tests come from the cluster's registry
// (e2e/cluster/registry.sh), over HTTPS at a shaped rate, as production
// images do, not imported into the nodes in advance.

// pushImage pushes the test application's version (v1, v2, v3) to the
// cluster's registry under a tag of its own, with a version layer drawn
// from that tag: no node has it, so the kubelet pulls it for real. It
// returns the image's reference.
func pushImage(t *testing.T, tag, version string) string {
	t.Helper()
	root, err := repositoryRoot()
	if err != nil {
		t.Fatal(err)
	}
	ref, digest, err := e2ekit.PushImage(t.Context(), filepath.Join(root, "e2e/cluster/registry.sh"), tag, version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed %s (%s)", ref, digest)
	return ref
}

// pulledRE is the kubelet's event of an image it pulled (not one it found
// present): `Successfully pulled image "REF" in 2.1s (2.1s including
// waiting). Image size: 12345 bytes.`
var pulledRE = regexp.MustCompile(`^Successfully pulled image "([^"]+)" in ([^ ]+) `)

// pulls returns, by pod name, how long the kubelet took to pull image for
// each pod of ns that pulled it.
func pulls(ctx context.Context, ns, image string) (map[string]string, error) {
	list := &corev1.EventList{}
	if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range list.Items {
		if m := pulledRE.FindStringSubmatch(e.Message); e.Reason == "Pulled" && m != nil && m[1] == image {
			out[e.InvolvedObject.Name] = m[2]
		}
	}
	return out, nil
}

// TestRealPullInPlace rolls a Deployment whose images come from the
// registry to a version no node has: each pod is updated in place (the same
// pod, its container restarted once, serving the new version) after its
// kubelet pulled the new image, and the rollout reports complete only then.
func TestRealPullInPlace(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	v1 := pushImage(t, ns+"-v1", "v1")
	v2 := pushImage(t, ns+"-v2", "v2")
	d := newDeployment("pulled", ns, 3, v1, withRollingUpdate("0", "1"))
	// As users write it: a tag, so IfNotPresent.
	d.Spec.Template.Spec.Containers[0].ImagePullPolicy = ""
	create(t, d)
	waitForDeploymentComplete(t, d)
	before := observeWorkload(t, d)
	for _, p := range before {
		if p.Version != "v1" {
			t.Fatalf("pod %s serves %q before the update, want v1", p.Name, p.Version)
		}
	}

	c := watchChurn(t, ns)
	r := watchReadiness(t, ns)
	editTemplate(t, d, func(tpl *corev1.PodTemplateSpec) { tpl.Spec.Containers[0].Image = v2 })
	waitForDeploymentComplete(t, d)
	after := observeWorkload(t, d)
	logPods(t, "after", after)
	spans := r.stop()
	wantNoChurn(t, c)
	if len(after) != len(before) {
		t.Fatalf("%d pods after, %d before", len(after), len(before))
	}
	for i, a := range after {
		b := before[i]
		if a.Name != b.Name || a.UID != b.UID || a.IP != b.IP {
			t.Errorf("pod %s (%s, %s) is now %s (%s, %s): want the same pod", b.Name, b.UID, b.IP, a.Name, a.UID, a.IP)
		}
		if !a.Ready || a.Restarts != b.Restarts+1 || a.Image != v2 || a.Version != "v2" {
			t.Errorf("pod %s: Ready %t, %d restarts, image %s, serves %q; want Ready, %d restarts, %s, v2", a.Name, a.Ready, a.Restarts, a.Image, a.Version, b.Restarts+1, v2)
		}
	}
	eventually(t, answerTimeout, "a Pulled event of the new image for every pod", func(ctx context.Context) error {
		got, err := pulls(ctx, ns, v2)
		if err != nil {
			return err
		}
		for _, a := range after {
			if _, ok := got[a.Name]; !ok {
				return fmt.Errorf("pod %s has none (pulls seen: %v)", a.Name, got)
			}
		}
		t.Logf("pulls of %s: %v; out of Ready: %v", v2, got, spans)
		return nil
	})
}
