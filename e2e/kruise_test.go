//go:build e2e && kruise

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// OpenKruise for real: kruise-manager, built from the pinned source snapshot
// and installed by e2e/cluster/kruise.sh, runs beside inplace-manager. The
// user writes Kruise's kinds as the seed document does, minus what inplace
// injects (the InPlaceUpdateReady gate, Kruise's InPlaceIfPossible switch),
// applies them with kubectl, changes the image, and reads back the pods:
// Kruise updates them in place, and inplace never touches them.
//
// These tests need Kruise: they are behind the build tag kruise as well, and
// make e2e-kruise runs them (TestKruise*).

// What kruise.sh installs.
const (
	kruiseNamespace  = "kruise-system"
	kruiseDeployment = "kruise-controller-manager"
	// kruiseSkipLabel is the namespace label Kruise's fail-closed pod
	// webhooks skip; manifests/base puts it on inplace-system.
	kruiseSkipLabel = "control-plane"
)

// managerFieldManager is the name inplace-manager's writes carry in
// managedFields (its client's user agent).
const managerFieldManager = "inplace-manager"

// kruiseOnce checks, once for the run, that Kruise is installed and its
// controller available.
var kruiseOnce = sync.OnceValue(func() error {
	ctx, cancel := context.WithTimeout(context.Background(), managerTimeout)
	defer cancel()
	return poll(ctx, managerTimeout, kruiseServing)
})

// requireKruise fails the test, naming the fix, when Kruise is not installed.
func requireKruise(t *testing.T) {
	t.Helper()
	if err := kruiseOnce(); err != nil {
		t.Fatalf("OpenKruise is not installed (make kruise, or make e2e-kruise does it all): %v", err)
	}
}

// kruiseServing succeeds when kruise-manager's Deployment is Available and
// its webhooks answer: a v1alpha1 CloneSet created as a dry run (converted
// by Kruise's conversion webhook to the stored v1beta1 and back) comes back
// with Kruise's default revisionHistoryLimit, which only its mutating
// webhook writes. A Ready pod is not enough: its Service may not route to
// it yet.
func kruiseServing(ctx context.Context) error {
	d := &appsv1.Deployment{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: kruiseNamespace, Name: kruiseDeployment}, d); apierrors.IsNotFound(err) {
		return permanent(fmt.Errorf("no Deployment %s/%s", kruiseNamespace, kruiseDeployment))
	} else if err != nil {
		return err
	}
	want := ptr.Deref(d.Spec.Replicas, 1)
	if st := d.Status; want == 0 || st.ObservedGeneration < d.Generation || st.AvailableReplicas != want || st.UpdatedReplicas != want {
		return fmt.Errorf("Deployment %s: %d of %d replicas updated, %d available", d.Name, d.Status.UpdatedReplicas, want, d.Status.AvailableReplicas)
	}
	probe := &unstructured.Unstructured{}
	if err := probe.UnmarshalJSON([]byte(fmt.Sprintf(`{"apiVersion":"apps.kruise.io/v1alpha1","kind":"CloneSet",
		"metadata":{"name":"kruise-probe","namespace":%q},
		"spec":{"replicas":0,"selector":{"matchLabels":{"app":"kruise-probe"}},
		"template":{"metadata":{"labels":{"app":"kruise-probe"}},"spec":{"containers":[{"name":"probe","image":%q}]}}}}`,
		probeNamespace, images.V1))); err != nil {
		return permanent(err)
	}
	if err := k8s.Create(ctx, probe, client.DryRunAll); err != nil {
		return fmt.Errorf("dry-run create of a CloneSet: %w", err)
	}
	if got := num(probe, "spec", "revisionHistoryLimit"); got != 10 {
		return fmt.Errorf("a CloneSet created (dry run) came back with revisionHistoryLimit %d: Kruise's webhook did not default it", got)
	}
	return nil
}

// seedStatefulSet is the seed document's sts.yaml as a user writes it once
// inplace is installed: the hand-added readiness gate and podUpdatePolicy
// left out. The image is the test application's, with imagePullPolicy
// IfNotPresent (there is no registry here, and Kruise's defaulting makes
// this reference's policy Always); the rest is verbatim.
const seedStatefulSet = `apiVersion: apps.kruise.io/v1beta1
kind: StatefulSet
metadata:
  name: sample
spec:
  replicas: 3
  serviceName: fake-service
  selector:
    matchLabels:
      app: sample
  template:
    metadata:
      labels:
        app: sample
    spec:
      containers:
      - name: main
        image: {{IMAGE}}
        imagePullPolicy: IfNotPresent
  podManagementPolicy: Parallel # allow parallel updates, works together with maxUnavailable
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      # Allow parallel updates with max number of unavailable instances equals to 2
      maxUnavailable: 2
`

// cloneSetYAML is a CloneSet of Kruise's apps.kruise.io/version as a user
// writes it, with strategy (indented YAML under spec, or "") added.
func cloneSetYAML(version, name, image, strategy string) string {
	return fmt.Sprintf(`apiVersion: apps.kruise.io/%[4]s
kind: CloneSet
metadata:
  name: %[1]s
spec:
  replicas: 3
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      containers:
      - name: main
        image: %[2]s
        imagePullPolicy: IfNotPresent
%[3]s`, name, image, strategy, version)
}

// daemonSetYAML is an Advanced DaemonSet as a user writes it.
func daemonSetYAML(name, image string) string {
	return fmt.Sprintf(`apiVersion: apps.kruise.io/v1alpha1
kind: DaemonSet
metadata:
  name: %[1]s
spec:
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      containers:
      - name: main
        image: %[2]s
        imagePullPolicy: IfNotPresent
`, name, image)
}

// apply runs kubectl apply -f - with manifest in namespace ns, as the seed
// document does, and returns the applied object as the API server has it.
func apply(t *testing.T, ns, manifest string) *unstructured.Unstructured {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), tool(t, "E2E_KUBECTL", "kubectl"), "apply", "-n", ns, "-o", "json", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		t.Fatalf("kubectl apply -n %s -f -: %v\n%s", ns, err, manifest)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(out); err != nil {
		t.Fatalf("reading what kubectl apply printed: %v", err)
	}
	return obj
}

// getObject reads obj back, live.
func getObject(t *testing.T, obj *unstructured.Unstructured) {
	t.Helper()
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatalf("reading %s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
	}
}

// str is a string field of obj, "" when absent.
func str(obj *unstructured.Unstructured, path ...string) string {
	s, _, _ := unstructured.NestedString(obj.Object, path...)
	return s
}

// num is an integer field of obj, -1 when absent.
func num(obj *unstructured.Unstructured, path ...string) int64 {
	n, found, _ := unstructured.NestedInt64(obj.Object, path...)
	if !found {
		return -1
	}
	return n
}

// templateGated reports whether obj's pod template has the InPlaceUpdateReady
// readiness gate.
func templateGated(obj *unstructured.Unstructured) bool {
	gates, _, _ := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "readinessGates")
	for _, g := range gates {
		if m, ok := g.(map[string]any); ok && m["conditionType"] == string(gateCondition) {
			return true
		}
	}
	return false
}

// ownedPods lists the pods obj controls, StatefulSet pods by ordinal,
// others by name.
func ownedPods(ctx context.Context, obj client.Object) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := k8s.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil, err
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if owner := metav1.GetControllerOf(&p); owner != nil && owner.UID == obj.GetUID() {
			pods = append(pods, p)
		}
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int {
		if oa, ob := ordinal(a.Name), ordinal(b.Name); oa >= 0 && ob >= 0 && oa != ob {
			return oa - ob
		}
		return strings.Compare(a.Name, b.Name)
	})
	return pods, nil
}

// kruiseDone says whether a Kruise workload's controller reports every pod
// updated and ready, in the status fields of its kind.
func kruiseDone(obj *unstructured.Unstructured, want int) error {
	if g, o := obj.GetGeneration(), num(obj, "status", "observedGeneration"); o < g {
		return fmt.Errorf("%s: the controller has seen generation %d of %d", obj.GetKind(), o, g)
	}
	w := int64(want)
	switch obj.GroupVersionKind().Kind {
	case "DaemonSet":
		if d, u, r := num(obj, "status", "desiredNumberScheduled"), num(obj, "status", "updatedNumberScheduled"), num(obj, "status", "numberReady"); d != w || u != w || r != w {
			return fmt.Errorf("DaemonSet: %d desired, %d updated, %d ready; want %d", d, u, r, w)
		}
	default:
		if u, r, ur := num(obj, "status", "updatedReplicas"), num(obj, "status", "readyReplicas"), num(obj, "status", "updatedReadyReplicas"); u != w || r != w || ur != w {
			return fmt.Errorf("%s: %d updated, %d ready, %d updated and ready; want %d", obj.GetKind(), u, r, ur, w)
		}
	}
	return nil
}

// waitForKruise waits until the Kruise workload has want pods, none
// terminating, every one Ready and running image (its spec and its
// container status), and its controller reports them all updated and ready.
// It returns the pods as a user reads them.
func waitForKruise(t *testing.T, obj *unstructured.Unstructured, want int, image string) []podView {
	t.Helper()
	eventually(t, podTimeout, fmt.Sprintf("%s %s/%s to run %d Ready pods of %s", obj.GetKind(), obj.GetNamespace(), obj.GetName(), want, image), func(ctx context.Context) error {
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(obj.GroupVersionKind())
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return err
		}
		pods, err := ownedPods(ctx, cur)
		if err != nil {
			return err
		}
		if len(pods) != want {
			return fmt.Errorf("%d pods of %d: %s", len(pods), want, podNames(pods))
		}
		for i := range pods {
			p := &pods[i]
			switch {
			case p.DeletionTimestamp != nil:
				return fmt.Errorf("pod %s is terminating", p.Name)
			case p.Spec.Containers[0].Image != image:
				return fmt.Errorf("pod %s has image %s in its spec", p.Name, p.Spec.Containers[0].Image)
			case len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].Image != image:
				return fmt.Errorf("pod %s: its container does not run %s yet", p.Name, image)
			case !podReady(p):
				return fmt.Errorf("pod %s is not Ready: %s", p.Name, whyNotReady(p))
			}
		}
		return kruiseDone(cur, want)
	})
	getObject(t, obj)
	pods, err := ownedPods(t.Context(), obj)
	if err != nil {
		t.Fatal(err)
	}
	return viewPods(t, pods)
}

// setKruiseImage changes the image of the workload's first container as
// the seed document does: the manifest edited, then kubectl apply.
func setKruiseImage(t *testing.T, manifest, from, to string, obj *unstructured.Unstructured) {
	t.Helper()
	*obj = *apply(t, obj.GetNamespace(), strings.Replace(manifest, from, to, 1))
}

// wantRecreated checks every pod was recreated (another UID), runs image
// and serves its version, with no restart.
func wantRecreated(t *testing.T, before, after []podView, image string) {
	t.Helper()
	if len(after) != len(before) {
		t.Fatalf("%d pods after, %d before", len(after), len(before))
	}
	old := map[types.UID]bool{}
	for _, b := range before {
		old[b.UID] = true
	}
	for _, a := range after {
		if old[a.UID] {
			t.Errorf("pod %s kept its UID %s: updated in place, want recreated", a.Name, a.UID)
		}
		if want := images.Serves(image); !a.Ready || a.Version != want || a.Image != image || a.Restarts != 0 {
			t.Errorf("pod %s: Ready %t, image %s, serves %q, %d restarts; want Ready, %s, %q, 0", a.Name, a.Ready, a.Image, a.Version, a.Restarts, image, want)
		}
	}
}

// wantUntouched checks inplace left the workload's pods alone: no label or
// annotation of its own on them, read afresh.
func wantUntouched(t *testing.T, obj client.Object, views []podView) {
	t.Helper()
	pods, err := ownedPods(t.Context(), obj)
	if err != nil {
		t.Fatalf("reading the pods of %s: %v", obj.GetName(), err)
	}
	if len(pods) == 0 {
		t.Fatalf("%s has no pods to check", obj.GetName())
	}
	for _, v := range views {
		if v.Managed {
			t.Errorf("pod %s of a Kruise workload got the label %s", v.Name, labelManaged)
		}
	}
	for _, p := range pods {
		if keys := inplaceKeys(p.Labels); len(keys) != 0 {
			t.Errorf("pod %s of a Kruise workload got labels %v", p.Name, keys)
		}
		if keys := inplaceKeys(p.Annotations); len(keys) != 0 {
			t.Errorf("pod %s of a Kruise workload got annotations %v", p.Name, keys)
		}
	}
}

// wantInjected checks a managed Kruise workload at rest: the policy
// annotation, the gate in its template, and Kruise's own in-place switch at
// path set to want.
func wantInjected(t *testing.T, obj *unstructured.Unstructured, want string, path ...string) {
	t.Helper()
	if got := obj.GetAnnotations()[annotationUpdatePolicy]; got != "InPlaceIfPossible" {
		t.Errorf("%s annotation %s = %q, want InPlaceIfPossible", obj.GetKind(), annotationUpdatePolicy, got)
	}
	if !templateGated(obj) {
		t.Errorf("%s template has no %s readiness gate", obj.GetKind(), gateCondition)
	}
	if got := str(obj, path...); got != want {
		t.Errorf("%s %s = %q, want %q", obj.GetKind(), strings.Join(path, "."), got, want)
	}
}

// TestKruiseSeedScenario is the seed document's scenario with Kruise
// running and without the lines the document had to write by hand: inplace
// injects them, and Kruise updates every pod in place.
func TestKruiseSeedScenario(t *testing.T) {
	t.Parallel()
	requireKruise(t)
	ns := newNamespace(t, optedIn)
	manifest := strings.Replace(seedStatefulSet, "{{IMAGE}}", images.V1, 1)
	sts := apply(t, ns, manifest)
	wantInjected(t, sts, "InPlaceIfPossible", "spec", "updateStrategy", "rollingUpdate", "podUpdatePolicy")
	if got := str(sts, "spec", "podManagementPolicy"); got != "Parallel" {
		t.Errorf("podManagementPolicy = %q, the user wrote Parallel", got)
	}
	if got := num(sts, "spec", "updateStrategy", "rollingUpdate", "maxUnavailable"); got != 2 {
		t.Errorf("maxUnavailable = %d, the user wrote 2", got)
	}
	before := waitForKruise(t, sts, 3, images.V1)
	logPods(t, "kubectl apply -f sts.yaml", before)

	setKruiseImage(t, manifest, images.V1, images.V2, sts)
	after := waitForKruise(t, sts, 3, images.V2)
	logPods(t, "image changed, kubectl apply -f sts.yaml again", after)
	wantInPlace(t, before, after, images.V2, 1)
	wantUntouched(t, sts, after)
}

// TestKruiseCloneSetInPlace: a CloneSet with no update strategy written
// gets Kruise's InPlaceIfPossible and is updated in place, in either of the
// versions Kruise serves (v1beta1 keeps the switch under rollingUpdate).
func TestKruiseCloneSetInPlace(t *testing.T) {
	t.Parallel()
	requireKruise(t)
	for version, path := range map[string][]string{
		"v1alpha1": {"spec", "updateStrategy", "type"},
		"v1beta1":  {"spec", "updateStrategy", "rollingUpdate", "podUpdatePolicy"},
	} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t, optedIn)
			manifest := cloneSetYAML(version, "web", images.V1, "")
			cs := apply(t, ns, manifest)
			wantInjected(t, cs, "InPlaceIfPossible", path...)
			before := waitForKruise(t, cs, 3, images.V1)
			logPods(t, "CloneSet "+version+" created", before)

			setKruiseImage(t, manifest, images.V1, images.V2, cs)
			after := waitForKruise(t, cs, 3, images.V2)
			logPods(t, "image changed", after)
			wantInPlace(t, before, after, images.V2, 1)
			wantUntouched(t, cs, after)
		})
	}
}

// TestKruiseDaemonSetInPlace: an Advanced DaemonSet with no update strategy
// written gets rollingUpdateType InPlaceIfPossible, and its pods (one a
// node) are updated in place.
func TestKruiseDaemonSetInPlace(t *testing.T) {
	t.Parallel()
	requireKruise(t)
	nodes := &corev1.NodeList{}
	if err := k8s.List(t.Context(), nodes); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, optedIn)
	manifest := daemonSetYAML("agent", images.V1)
	ds := apply(t, ns, manifest)
	wantInjected(t, ds, "InPlaceIfPossible", "spec", "updateStrategy", "rollingUpdate", "rollingUpdateType")
	before := waitForKruise(t, ds, len(nodes.Items), images.V1)
	logPods(t, "Advanced DaemonSet created", before)

	setKruiseImage(t, manifest, images.V1, images.V2, ds)
	after := waitForKruise(t, ds, len(nodes.Items), images.V2)
	logPods(t, "image changed", after)
	wantInPlace(t, before, after, images.V2, 1)
	wantUntouched(t, ds, after)
}

// TestKruiseUserChoiceHonoured: a value the user wrote in Kruise's switch
// stays as written, and Kruise does what it says.
func TestKruiseUserChoiceHonoured(t *testing.T) {
	t.Parallel()
	requireKruise(t)
	t.Run("CloneSet ReCreate", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, optedIn)
		manifest := cloneSetYAML("v1alpha1", "web", images.V1, "  updateStrategy:\n    type: ReCreate\n")
		cs := apply(t, ns, manifest)
		wantInjected(t, cs, "ReCreate", "spec", "updateStrategy", "type")
		before := waitForKruise(t, cs, 3, images.V1)
		setKruiseImage(t, manifest, images.V1, images.V2, cs)
		after := waitForKruise(t, cs, 3, images.V2)
		logPods(t, "image changed", after)
		wantRecreated(t, before, after, images.V2)
		if got := str(cs, "spec", "updateStrategy", "type"); got != "ReCreate" {
			t.Errorf("updateStrategy.type = %q after the update, the user wrote ReCreate", got)
		}
	})
	t.Run("Advanced StatefulSet InPlaceOnly", func(t *testing.T) {
		t.Parallel()
		ns := newNamespace(t, optedIn)
		manifest := strings.Replace(strings.Replace(seedStatefulSet, "{{IMAGE}}", images.V1, 1),
			"      maxUnavailable: 2\n", "      maxUnavailable: 2\n      podUpdatePolicy: InPlaceOnly\n", 1)
		sts := apply(t, ns, manifest)
		wantInjected(t, sts, "InPlaceOnly", "spec", "updateStrategy", "rollingUpdate", "podUpdatePolicy")
		before := waitForKruise(t, sts, 3, images.V1)
		setKruiseImage(t, manifest, images.V1, images.V2, sts)
		after := waitForKruise(t, sts, 3, images.V2)
		logPods(t, "image changed", after)
		wantInPlace(t, before, after, images.V2, 1)
		if got := str(sts, "spec", "updateStrategy", "rollingUpdate", "podUpdatePolicy"); got != "InPlaceOnly" {
			t.Errorf("podUpdatePolicy = %q after the update, the user wrote InPlaceOnly", got)
		}
	})
}

// TestKruiseUnlabelledNamespace: in a namespace that did not opt in,
// inplace injects nothing, and Kruise does what it does by default: the
// seed's Advanced StatefulSet without the hand-written lines is recreated.
func TestKruiseUnlabelledNamespace(t *testing.T) {
	t.Parallel()
	requireKruise(t)
	ns := newNamespace(t, unlabelled)
	manifest := strings.Replace(seedStatefulSet, "{{IMAGE}}", images.V1, 1)
	sts := apply(t, ns, manifest)
	if keys := inplaceKeys(sts.GetAnnotations()); len(keys) != 0 {
		t.Errorf("annotations %v on an Advanced StatefulSet of an unlabelled namespace", keys)
	}
	if templateGated(sts) {
		t.Errorf("the template got the %s gate in an unlabelled namespace", gateCondition)
	}
	if got := str(sts, "spec", "updateStrategy", "rollingUpdate", "podUpdatePolicy"); got != "ReCreate" {
		t.Errorf("podUpdatePolicy = %q, want Kruise's default ReCreate", got)
	}
	before := waitForKruise(t, sts, 3, images.V1)
	setKruiseImage(t, manifest, images.V1, images.V2, sts)
	after := waitForKruise(t, sts, 3, images.V2)
	logPods(t, "image changed", after)
	wantRecreated(t, before, after, images.V2)
}

// podHistory is what a watch saw of each pod of a namespace: every field
// manager that wrote to it, whether any version carried an inplace.dev key,
// and how many times its InPlaceUpdateReady condition went False.
type podHistory struct {
	managers     map[string]bool
	inplaceKeys  map[string]bool
	gateClosings int
	gateFalse    bool
}

// watchPods records every version of every pod of ns until stop is called.
func watchPods(t *testing.T, ns string) (stop func() map[string]*podHistory) {
	t.Helper()
	seen := map[string]*podHistory{}
	stopWatch := onPodEvents(t, ns, func(pod *corev1.Pod) {
		h := seen[pod.Name]
		if h == nil {
			h = &podHistory{managers: map[string]bool{}, inplaceKeys: map[string]bool{}}
			seen[pod.Name] = h
		}
		for _, f := range pod.ManagedFields {
			h.managers[f.Manager] = true
		}
		for k := range inplaceKeys(pod.Labels) {
			h.inplaceKeys[k] = true
		}
		for k := range inplaceKeys(pod.Annotations) {
			h.inplaceKeys[k] = true
		}
		c := podCondition(pod, gateCondition)
		closed := c != nil && c.Status == corev1.ConditionFalse
		if closed && !h.gateFalse {
			h.gateClosings++
		}
		h.gateFalse = closed
	})
	return func() map[string]*podHistory {
		stopWatch()
		return seen
	}
}

// TestKruiseCoexistence runs a Kruise workload and a native one side by
// side in one opted-in namespace, and changes both images at once: Kruise
// updates its pods in place, closing and opening their gate itself, and
// inplace never writes to them; inplace updates the native StatefulSet's
// pods in place, as without Kruise.
func TestKruiseCoexistence(t *testing.T) {
	t.Parallel()
	requireKruise(t)
	ns := newNamespace(t, optedIn)
	stop := watchPods(t, ns)
	manifest := strings.Replace(strings.Replace(seedStatefulSet, "{{IMAGE}}", images.V1, 1), "name: sample", "name: kruise-web", 1)
	manifest = strings.ReplaceAll(manifest, "app: sample", "app: kruise-web")
	ksts := apply(t, ns, manifest)
	native := newStatefulSet("native-web", ns, 3, images.V1, withParallelPods(), withMaxUnavailable(2))
	create(t, native)
	kBefore := waitForKruise(t, ksts, 3, images.V1)
	waitForStatefulSetReady(t, native)
	nBefore := observe(t, native)

	setKruiseImage(t, manifest, images.V1, images.V2, ksts)
	setImage(t, native, appContainer, images.V2)
	kAfter := waitForKruise(t, ksts, 3, images.V2)
	waitForRolloutComplete(t, native)
	nAfter := observe(t, native)
	history := stop()
	logPods(t, "Advanced StatefulSet kruise-web after", kAfter)
	logPods(t, "StatefulSet native-web after", nAfter)

	wantInPlace(t, kBefore, kAfter, images.V2, 1)
	wantInPlace(t, nBefore, nAfter, images.V2, 1)
	wantUntouched(t, ksts, kAfter)
	for _, v := range kAfter {
		h := history[v.Name]
		if h == nil {
			t.Errorf("the watch never saw pod %s", v.Name)
			continue
		}
		if h.managers[managerFieldManager] {
			t.Errorf("inplace-manager wrote to pod %s of the Advanced StatefulSet (field managers %v)", v.Name, keysOf(h.managers))
		}
		if len(h.inplaceKeys) > 0 {
			t.Errorf("pod %s of the Advanced StatefulSet carried %v at some point", v.Name, keysOf(h.inplaceKeys))
		}
		if h.gateClosings == 0 || v.Gate != corev1.ConditionTrue {
			t.Errorf("pod %s: its gate was closed %d times, now %q; want Kruise to close it for the update, then open it", v.Name, h.gateClosings, v.Gate)
		}
	}
	for _, v := range nAfter {
		h := history[v.Name]
		if h == nil || !h.managers[managerFieldManager] || !v.Managed {
			t.Errorf("pod %s of the native StatefulSet: inplace-manager never wrote to it or it is not labelled %s; the rollout was not inplace's", v.Name, labelManaged)
		}
	}
}

func keysOf(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestKruiseWebhooksSpareInplace stops kruise-manager: its pod webhooks,
// which fail closed, then refuse pods in a namespace without the
// control-plane label, but not in inplace-system, which carries it: a
// deleted inplace-manager pod is replaced and the manager serves again.
//
// It stops kruise-manager, so it must not run in parallel with other tests.
func TestKruiseWebhooksSpareInplace(t *testing.T) {
	requireKruise(t)
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}
	get(t, nsObj)
	if _, ok := nsObj.Labels[kruiseSkipLabel]; !ok {
		t.Fatalf("namespace %s has no %s label: Kruise's pod webhooks see its pods", managerNamespace, kruiseSkipLabel)
	}
	ns := newNamespace(t, optedIn)

	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: kruiseNamespace, Name: kruiseDeployment}}
	get(t, d)
	replicas := ptr.Deref(d.Spec.Replicas, 1)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), managerTimeout)
		defer cancel()
		if err := scaleTo(ctx, d, replicas); err != nil {
			t.Errorf("restoring kruise-manager: %v", err)
			return
		}
		if err := poll(ctx, managerTimeout, kruiseServing); err != nil {
			t.Errorf("restoring kruise-manager: %v", err)
		}
	})
	scale(t, d, 0)
	eventually(t, managerTimeout, "Kruise's pod webhook to refuse a pod in "+ns, func(ctx context.Context) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "probe"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: images.V1}}},
		}
		err := k8s.Create(ctx, pod, client.DryRunAll)
		if err == nil {
			return errors.New("a pod was admitted: kruise-manager still answers")
		}
		if !strings.Contains(err.Error(), "kruise") {
			return fmt.Errorf("refused, but not by Kruise's webhook: %w", err)
		}
		t.Logf("with kruise-manager down, a pod in %s is refused: %v", ns, err)
		return nil
	})

	manager := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: managerDeployment}}
	get(t, manager)
	old, err := managerPods(t.Context(), manager)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range old {
		deletePod(t, managerNamespace, p.Name)
	}
	eventually(t, managerTimeout, "inplace-manager to be replaced and serve again with kruise-manager down", func(ctx context.Context) error {
		pods, err := managerPods(ctx, manager)
		if err != nil {
			return err
		}
		for _, p := range pods {
			for _, o := range old {
				if p.UID == o.UID {
					return fmt.Errorf("pod %s is still there", p.Name)
				}
			}
		}
		return managerServing(ctx)
	})
	t.Logf("inplace-manager replaced and serving while kruise-manager was down")
}

// TestKruiseManagedLabelCopied: a CloneSet whose template carries inplace's
// managed label (copied from a pod of a native workload) is still Kruise's
// alone: its pods reach inplace's keeper, which must not open the gate Kruise
// closes for the update. A watch of every version of the pods sees Kruise
// close and reopen it, and no write of inplace-manager.
func TestKruiseManagedLabelCopied(t *testing.T) {
	t.Parallel()
	requireKruise(t)
	ns := newNamespace(t, optedIn)
	stop := watchPods(t, ns)
	manifest := strings.Replace(cloneSetYAML("v1beta1", "web", images.V1, ""),
		"        app: web\n    spec:", "        app: web\n        "+labelManaged+": \"true\"\n    spec:", 1)
	cs := apply(t, ns, manifest)
	before := waitForKruise(t, cs, 3, images.V1)
	setKruiseImage(t, manifest, images.V1, images.V2, cs)
	after := waitForKruise(t, cs, 3, images.V2)
	history := stop()
	logPods(t, "CloneSet with the managed label in its template, after", after)
	wantInPlace(t, before, after, images.V2, 1)
	for _, v := range after {
		if !v.Managed {
			t.Fatalf("pod %s lacks the label %s its template has", v.Name, labelManaged)
		}
		h := history[v.Name]
		switch {
		case h == nil:
			t.Errorf("the watch never saw pod %s", v.Name)
		case h.managers[managerFieldManager]:
			t.Errorf("inplace-manager wrote to pod %s of the CloneSet (field managers %v)", v.Name, keysOf(h.managers))
		case h.gateClosings == 0:
			t.Errorf("pod %s: its gate was never closed; Kruise closes it for an in-place update", v.Name)
		}
	}
}
