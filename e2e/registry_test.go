//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	return pushTo(t, e2ekit.Repository, tag, version)
}

// pushTo is pushImage to a repository of the registry.
func pushTo(t *testing.T, repository, tag, version string) string {
	t.Helper()
	ref, digest, err := e2ekit.PushImage(t.Context(), registrySh(t), repository, tag, version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pushed %s (%s)", ref, digest)
	return ref
}

// registrySh is the path of e2e/cluster/registry.sh.
func registrySh(t *testing.T) string {
	t.Helper()
	root, err := repositoryRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "e2e/cluster/registry.sh")
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
// registry to a version no node has, without pulling ahead: each pod is
// updated in place (the same pod, its container restarted once, serving the
// new version) after its kubelet pulled the new image, and the rollout
// reports complete only then.
func TestRealPullInPlace(t *testing.T) {
	t.Parallel()
	ns, v2, after := realPullRollout(t, "pulled", withoutPrepull())
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
		t.Logf("pulls of %s: %v", v2, got)
		return nil
	})
}

// TestRealPullAhead: pulling ahead (the default), the same rollout has each
// node pull the new image with a prepull pod before its pods restart: the
// pods themselves pull nothing, every node that runs one pulled once, and
// no prepull pod is left when the rollout completes.
func TestRealPullAhead(t *testing.T) {
	t.Parallel()
	ns, v2, after := realPullRollout(t, "ahead")
	eventually(t, answerTimeout, "the prepull pods gone", func(ctx context.Context) error {
		left, err := prepullPods(ctx, ns)
		if err != nil || len(left) == 0 {
			return err
		}
		return fmt.Errorf("prepull pods left: %v", left)
	})
	nodes := map[string]bool{}
	for _, a := range after {
		nodes[a.Node] = true
	}
	eventually(t, answerTimeout, "a Pulled event of the new image on every node, from prepull pods only", func(ctx context.Context) error {
		got, err := pulls(ctx, ns, v2)
		if err != nil {
			return err
		}
		prepulled := 0
		for name := range got {
			if !strings.Contains(name, "-prepull-") {
				return permanent(fmt.Errorf("pod %s pulled %s itself (pulls: %v)", name, v2, got))
			}
			prepulled++
		}
		if prepulled < len(nodes) {
			return fmt.Errorf("%d prepull pods pulled, want one per node of %v (pulls: %v)", prepulled, nodes, got)
		}
		t.Logf("pulls of %s: %v", v2, got)
		return nil
	})
}

// realPullRollout creates a Deployment of 3 pods, maxUnavailable 1, whose
// v1 comes from the registry, rolls it to a v2 no node has, and checks that
// every pod was updated in place and serves v2. It returns the namespace,
// v2's reference and the pods after.
func realPullRollout(t *testing.T, name string, opts ...deployOption) (string, string, []podView) {
	t.Helper()
	ns := newNamespace(t, optedIn)
	v1 := pushImage(t, ns+"-v1", "v1")
	v2 := pushImage(t, ns+"-v2", "v2")
	d := newDeployment(name, ns, 3, v1, append([]deployOption{withRollingUpdate("0", "1")}, opts...)...)
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
	t.Logf("out of Ready: %v", r.stop())
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
	return ns, v2, after
}

// TestMisspeltTagHaltsBeforeAnyPod: a tag the registry does not have halts
// the rollout before any pod is taken down: every pod stays Ready on v1
// throughout, the rollout record and a Warning event say which node cannot
// pull what, the prepull pod shows the kubelet's error; the tag fixed, the
// rollout completes in place and the prepull pods are gone.
func TestMisspeltTagHaltsBeforeAnyPod(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	v1 := pushImage(t, ns+"-v1", "v1")
	d := newDeployment("typo", ns, 3, v1, withRollingUpdate("0", "1"))
	d.Spec.Template.Spec.Containers[0].ImagePullPolicy = ""
	create(t, d)
	waitForDeploymentComplete(t, d)
	before := observeWorkload(t, d)

	c := watchChurn(t, ns)
	r := watchReadiness(t, ns)
	typo := v1[:strings.LastIndex(v1, ":")] + ":" + ns + "-v2-typo"
	editTemplate(t, d, func(tpl *corev1.PodTemplateSpec) { tpl.Spec.Containers[0].Image = typo })
	waitForRecordedFailure(t, d, "cannot pull the new images", "not found")
	wantEvents(t, ns, "InPlaceRolloutHalted", 1)
	// Past the bound of a refusal without progress (30 s): the halt holds
	// on, every pod still serving.
	time.Sleep(40 * time.Second)
	left, err := prepullPods(t.Context(), ns)
	if err != nil || len(left) == 0 {
		t.Errorf("prepull pods %v, %v: want the one that cannot pull, for users to see", left, err)
	}
	halted := observeWorkload(t, d)
	logPods(t, "halted", halted)
	for i, p := range halted {
		if !p.Ready || p.UID != before[i].UID || p.Version != "v1" {
			t.Errorf("pod %s: Ready %t, UID %s -> %s, serves %q; want it untouched on v1", p.Name, p.Ready, before[i].UID, p.UID, p.Version)
		}
	}
	if spans := r.stop(); len(spans) > 0 {
		t.Errorf("pods out of Ready while the rollout was halted: %v", spans)
	}

	v2 := pushImage(t, ns+"-v2", "v2")
	editTemplate(t, d, func(tpl *corev1.PodTemplateSpec) { tpl.Spec.Containers[0].Image = v2 })
	waitForDeploymentComplete(t, d)
	after := observeWorkload(t, d)
	logPods(t, "after", after)
	for i, a := range after {
		if a.UID != before[i].UID || !a.Ready || a.Version != "v2" {
			t.Errorf("pod %s: UID %s -> %s, Ready %t, serves %q; want the same pod serving v2", a.Name, before[i].UID, a.UID, a.Ready, a.Version)
		}
	}
	wantNoChurn(t, c)
	eventually(t, answerTimeout, "the prepull pods gone", func(ctx context.Context) error {
		left, err := prepullPods(ctx, ns)
		if err != nil || len(left) == 0 {
			return err
		}
		return fmt.Errorf("prepull pods left: %v", left)
	})
}

// prepullPods names the namespace's prepull pods, with their first
// container's waiting reason.
func prepullPods(ctx context.Context, ns string) ([]string, error) {
	list := &corev1.PodList{}
	if err := k8s.List(ctx, list, client.InNamespace(ns), client.HasLabels{"inplace.dev/prepull-for"}); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range list.Items {
		reason := string(p.Status.Phase)
		if len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Waiting != nil {
			reason = p.Status.ContainerStatuses[0].State.Waiting.Reason
		}
		out = append(out, p.Name+" "+reason)
	}
	return out, nil
}

// TestPrivateImagePulledAhead: images of a private repository (basic auth)
// are pulled ahead with the workload's own imagePullSecret, the pods then
// updated in place; the same rollout without the secret's credentials (a
// wrong password) halts on the pull before any pod is taken down.
func TestPrivateImagePulledAhead(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	out, err := exec.CommandContext(t.Context(), registrySh(t), "auth").Output()
	if err != nil {
		t.Fatalf("registry.sh auth: %v", err)
	}
	user, password, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
	v1 := pushTo(t, e2ekit.PrivateRepository, ns+"-v1", "v1")
	v2 := pushTo(t, e2ekit.PrivateRepository, ns+"-v2", "v2")
	host := v1[:strings.Index(v1, "/")]
	pullSecret := func(name, password string) {
		auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
		config := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
		create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(config)}})
	}
	pullSecret("registry", password)
	d := newDeployment("private", ns, 3, v1, withRollingUpdate("0", "1"))
	d.Spec.Template.Spec.Containers[0].ImagePullPolicy = ""
	d.Spec.Template.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
	create(t, d)
	waitForDeploymentComplete(t, d)
	before := observeWorkload(t, d)

	// The secret's password changed under the workload: the pull ahead is
	// refused, and nothing is taken down.
	r := watchReadiness(t, ns)
	c := watchChurn(t, ns)
	if err := k8s.Delete(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	pullSecret("registry", "not-the-password")
	editTemplate(t, d, func(tpl *corev1.PodTemplateSpec) { tpl.Spec.Containers[0].Image = v2 })
	waitForRecordedFailure(t, d, "cannot pull the new images")
	if spans := r.stop(); len(spans) > 0 {
		t.Errorf("pods out of Ready while the pull was refused: %v", spans)
	}

	// The password right again: the kubelet's next pull ahead succeeds, the
	// rollout goes on by itself, in place.
	if err := k8s.Delete(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	pullSecret("registry", password)
	waitForDeploymentComplete(t, d)
	after := observeWorkload(t, d)
	logPods(t, "after", after)
	wantNoChurn(t, c)
	for i, a := range after {
		if a.UID != before[i].UID || !a.Ready || a.Version != "v2" || a.Restarts != before[i].Restarts+1 {
			t.Errorf("pod %s: UID %s -> %s, Ready %t, serves %q, %d restarts; want the same pod serving v2, restarted once", a.Name, before[i].UID, a.UID, a.Ready, a.Version, a.Restarts)
		}
	}
	got, err := pulls(t.Context(), ns, v2)
	if err != nil {
		t.Fatal(err)
	}
	for name := range got {
		if !strings.Contains(name, "-prepull-") {
			t.Errorf("pod %s pulled %s itself (pulls: %v)", name, v2, got)
		}
	}
	if len(got) == 0 {
		t.Errorf("no pull of %s seen", v2)
	}
}
