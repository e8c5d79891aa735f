//go:build e2e

package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
)

// The names of DESIGN.md that the tests check, spelt out rather than imported
// from the product: a rename in the code that breaks the user-facing contract
// fails here.
const (
	domain                 = "inplace.dev/"
	labelEnabled           = domain + "enabled"
	labelManaged           = domain + "managed"
	annotationUpdatePolicy = domain + "update-policy"
	annotationHold         = domain + "hold"         // manager-owned, of an earlier version: a StatefulSet held by its partition
	annotationRollout      = domain + "rollout"      // manager-owned: a StatefulSet whose pods are updated in place
	annotationUpdateState  = domain + "update-state" // manager-owned: a pod in the middle of its in-place update
	gateCondition          = corev1.PodConditionType("InPlaceUpdateReady")
)

// The manager as e2e/manifests installs it.
const (
	managerNamespace  = "inplace-system"
	managerDeployment = "inplace-manager"
	// managerLease is the leader-election lease (cmd/inplace-manager/app.LeaderElectionID).
	managerLease = "inplace-manager.inplace.dev"
	// managerUser is the user the manager's ServiceAccount authenticates as.
	managerUser = "system:serviceaccount:" + managerNamespace + ":" + managerDeployment
)

// The test application's container, as newStatefulSet builds it.
const (
	appContainer = "app"
	appPort      = 8080
)

// How long the waits wait. Generous: a pod is Ready 2-3 s after its creation
// on this cluster, the manager within 10 s of a scale-up.
const (
	pollInterval    = 250 * time.Millisecond
	podTimeout      = 2 * time.Minute
	managerTimeout  = 3 * time.Minute
	cleanupTimeout  = 3 * time.Minute
	answerTimeout   = 15 * time.Second
	httpGetDeadline = 2 * time.Second
)

// testLabel marks every namespace the tests create.
const testLabel = "e2e.inplace.dev/test"

var (
	// k8s is the client every test uses: the admin kubeconfig's identity.
	k8s client.WithWatch
	// restConfig is k8s's configuration, for clients that impersonate.
	restConfig *rest.Config
	// images are the test application's images.
	images testImages
	// probeNamespace is an opted-in namespace that exists for the whole run,
	// where managerServing dry-runs a StatefulSet to see the webhook answer.
	probeNamespace string
)

// TestMain connects to the cluster and checks that the manager serves before
// any test runs, so that a missing install fails once, with the fix named,
// rather than in every test.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The kubeconfig flag of controller-runtime's config package, and -test.*.
	flag.Parse()
	// controller-runtime's client logs the API server's warnings (the
	// webhooks' among them): a line each, not its complaint of no logger.
	logf.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	ctx, cancel := context.WithTimeout(context.Background(), managerTimeout+time.Minute)
	defer cancel()
	cleanup, err := setUp(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	if dir := os.Getenv("E2E_MANAGER_LOGS"); dir != "" {
		logs, stop := context.WithCancel(context.Background())
		defer stop()
		go func() {
			if err := keepManagerLogs(logs, dir); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: not keeping the manager's logs: %v\n", err)
			}
		}()
	}
	code := m.Run()
	if err := managersStayedUp(); err != nil && code == 0 {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		code = 1
	}
	if err := cleanup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cleaning up: %v\n", err)
	}
	return code
}

// managersStayedUp fails the run when a manager container exited by
// itself during the tests (the tests delete manager pods, they never make
// one exit): a replica that stops on an error and restarts, again and
// again, still serves most requests, and the tests would not see it.
func managersStayedUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods, err := managerPods(ctx, &appsv1.Deployment{})
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pods {
		for _, c := range p.Status.ContainerStatuses {
			if last := c.LastTerminationState.Terminated; c.RestartCount > 0 && last != nil && last.ExitCode != 137 && last.ExitCode != 143 {
				errs = append(errs, fmt.Errorf("manager pod %s: container %s restarted %d times, last exited %d (%s) at %s: %s",
					p.Name, c.Name, c.RestartCount, last.ExitCode, last.Reason, last.FinishedAt.Format(time.TimeOnly), last.Message))
			}
		}
	}
	return errors.Join(errs...)
}

func setUp(ctx context.Context) (cleanup func() error, err error) {
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("no kubeconfig (set KUBECONFIG to $(make -s kubeconfig)): %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.Wrap(trackRequests)
	restConfig = cfg
	k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return nil, fmt.Errorf("building a client for %s: %w", cfg.Host, err)
	}
	nodes := &corev1.NodeList{}
	if err := k8s.List(ctx, nodes); err != nil {
		return nil, fmt.Errorf("cannot reach the cluster at %s (run inside its network namespace: make e2e, or nsenter --net=/var/run/netns/inplace-e2e): %w", cfg.Host, err)
	}
	if err := nodesReady(nodes.Items); err != nil {
		return nil, err
	}
	if images, err = loadTestImages(); err != nil {
		return nil, err
	}

	probe := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   "e2e-webhook-probe-" + randomSuffix(),
		Labels: map[string]string{testLabel: "true", labelEnabled: "true"},
	}}
	if err := k8s.Create(ctx, probe); err != nil {
		return nil, fmt.Errorf("creating the namespace %s: %w", probe.Name, err)
	}
	probeNamespace = probe.Name
	cleanup = func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		return client.IgnoreNotFound(k8s.Delete(ctx, probe))
	}
	if err := poll(ctx, managerTimeout, managerServing); err != nil {
		_ = cleanup()
		return nil, fmt.Errorf("inplace-manager is not serving (install it with make deploy-e2e): %w", err)
	}
	fmt.Printf("e2e: cluster %s, node(s) Ready, inplace-manager serving; test images %s\n", cfg.Host, images)
	return cleanup, nil
}

func nodesReady(nodes []corev1.Node) error {
	if len(nodes) == 0 {
		return errors.New("the cluster has no node")
	}
	for _, n := range nodes {
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue
		}
		if !ready {
			return fmt.Errorf("node %s is not Ready", n.Name)
		}
	}
	return nil
}

// testImages are the test application's images (e2e/testapp), in the order
// `make -s test-images` prints them. Each version serves its tag on GET /.
type testImages struct {
	V1, V2, V3 string // versions, oldest first
	V2Retag    string // the very image of V2 (same digest) under another tag
	Bad        string // exits 1 at once: a crash loop
	Unready    string // serves "unready" and never passes its readiness probe
}

// loadTestImages reads the references from E2E_TEST_IMAGES (set by make
// e2e), or else asks `make -s test-images` in the repository.
func loadTestImages() (testImages, error) {
	refs := strings.Fields(os.Getenv("E2E_TEST_IMAGES"))
	if len(refs) == 0 {
		root, err := repositoryRoot()
		if err != nil {
			return testImages{}, fmt.Errorf("E2E_TEST_IMAGES is not set and %w", err)
		}
		out, err := exec.Command("make", "-s", "-C", root, "test-images").Output()
		if err != nil {
			return testImages{}, fmt.Errorf("E2E_TEST_IMAGES is not set and make -s test-images failed: %w", err)
		}
		refs = strings.Fields(string(out))
	}
	if len(refs) != 6 {
		return testImages{}, fmt.Errorf("want 6 test image references (v1 v2 v3 v2-retag bad unready, as make -s test-images prints them), got %q", refs)
	}
	return testImages{V1: refs[0], V2: refs[1], V3: refs[2], V2Retag: refs[3], Bad: refs[4], Unready: refs[5]}, nil
}

func (i testImages) String() string {
	return strings.Join([]string{i.V1, i.V2, i.V3, i.V2Retag, i.Bad, i.Unready}, " ")
}

// Serves is what a container of image answers on GET /: the tag of a version,
// v2's for its retag, "" for the bad image and any other.
func (i testImages) Serves(image string) string {
	switch image {
	case i.V1, i.V2, i.V3:
		return image[strings.LastIndex(image, ":")+1:]
	case i.V2Retag:
		return i.Serves(i.V2)
	}
	return ""
}

// repositoryRoot is the nearest folder up from the working directory holding
// the project's go.mod.
func repositoryRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(mod), "module github.com/inplace-dev/inplace\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the repository is not above the working directory")
		}
		dir = parent
	}
}

// permanentError is a condition that waiting cannot fix: poll stops at once.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// permanent wraps err so that poll and eventually stop waiting and fail with
// it: for a check that sees something that must never happen (a pod that
// should keep its UID replaced, a gate where none may be).
func permanent(err error) error { return permanentError{err} }

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// poll calls check every pollInterval until it returns nil, and returns
// check's last error when timeout passes first (or a permanent one at once).
// A wait that times out after seeing more than one answer lists them in
// turn, with when each was seen: a state that came and went between two
// checks, or a check that failed for a while, shows there.
func poll(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	var last error
	var seen pollTrail
	err := wait.PollUntilContextTimeout(ctx, pollInterval, timeout, true, func(ctx context.Context) (bool, error) {
		last = check(ctx)
		seen.add(last)
		if isPermanent(last) {
			return false, last
		}
		return last == nil, nil
	})
	switch {
	case err == nil:
		return nil
	case isPermanent(last):
		return last
	case last != nil && ctx.Err() == nil:
		return fmt.Errorf("still not so after %v: %w%s", timeout, last, seen)
	case last != nil:
		return fmt.Errorf("%w; last seen: %w%s", err, last, seen)
	}
	return err
}

// pollTrail is what a wait's checks answered, one entry for each run of
// the same answer, the newest maxPollTrail kept.
type pollTrail struct {
	entries []pollAnswer
	dropped int
}

type pollAnswer struct {
	answer      string
	first, last time.Time
	times       int
}

const maxPollTrail = 20

func (p *pollTrail) add(err error) {
	answer, now := "ok", time.Now()
	if err != nil {
		answer = err.Error()
	}
	if n := len(p.entries); n > 0 && p.entries[n-1].answer == answer {
		p.entries[n-1].last = now
		p.entries[n-1].times++
		return
	}
	if len(p.entries) == maxPollTrail {
		p.entries = p.entries[1:]
		p.dropped++
	}
	p.entries = append(p.entries, pollAnswer{answer: answer, first: now, last: now, times: 1})
}

// String is "" for a wait that saw one answer throughout.
func (p pollTrail) String() string {
	if len(p.entries) < 2 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nwhat the checks answered, in turn")
	if p.dropped > 0 {
		fmt.Fprintf(&b, " (the %d before left out)", p.dropped)
	}
	b.WriteString(":")
	for _, e := range p.entries {
		fmt.Fprintf(&b, "\n  %s..%s %d time(s): %s", e.first.Format("15:04:05.000"), e.last.Format("15:04:05.000"), e.times, e.answer)
	}
	return b.String()
}

// eventually waits until check returns nil, and fails the test, naming what
// it waited for and what it saw last, when timeout passes first.
func eventually(t testing.TB, timeout time.Duration, what string, check func(context.Context) error) {
	t.Helper()
	if err := poll(t.Context(), timeout, check); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// nsPolicy is how a test namespace is labelled.
type nsPolicy int

const (
	unlabelled nsPolicy = iota // no inplace.dev/enabled label
	optedIn                    // inplace.dev/enabled=true
	optedOut                   // inplace.dev/enabled=false
)

// newNamespace creates a namespace for the test, named after it, and deletes
// it when the test ends. When the test failed, the namespace's pods and
// events are logged first; E2E_KEEP_NAMESPACES=1 keeps it for a look.
func newNamespace(t *testing.T, policy nsPolicy) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   namespaceName(t),
		Labels: map[string]string{testLabel: "true"},
	}}
	switch policy {
	case optedIn:
		ns.Labels[labelEnabled] = "true"
	case optedOut:
		ns.Labels[labelEnabled] = "false"
	}
	create(t, ns)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if t.Failed() {
			dumpNamespace(ctx, t, ns.Name)
		}
		if os.Getenv("E2E_KEEP_NAMESPACES") == "1" {
			t.Logf("keeping namespace %s (E2E_KEEP_NAMESPACES=1)", ns.Name)
			return
		}
		if err := k8s.Delete(ctx, ns); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

var notDNSLabel = regexp.MustCompile(`[^a-z0-9]+`)

// namespaceName is "e2e-" and the test's name as a DNS label (its end, the
// subtest's, when too long), with a random suffix so that a rerun on a kept
// cluster never meets the last one's.
func namespaceName(t *testing.T) string {
	name := strings.Trim(notDNSLabel.ReplaceAllString(strings.ToLower(strings.TrimPrefix(t.Name(), "Test")), "-"), "-")
	if len(name) > 45 {
		name = strings.Trim(name[len(name)-45:], "-")
	}
	return "e2e-" + name + "-" + randomSuffix()
}

func randomSuffix() string {
	const letters = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return string(b)
}

// create creates obj, as kubectl create would, and fails the test if it cannot.
func create(t testing.TB, obj client.Object) {
	t.Helper()
	if err := k8s.Create(t.Context(), obj); err != nil {
		t.Fatalf("creating %s: %v", describeObject(obj), err)
	}
}

// get reads obj back by its name, live.
func get(t testing.TB, obj client.Object) {
	t.Helper()
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatalf("reading %s: %v", describeObject(obj), err)
	}
}

func describeObject(obj client.Object) string {
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if kind == "" {
		kind = strings.TrimPrefix(fmt.Sprintf("%T", obj), "*v1.")
	}
	if obj.GetNamespace() == "" {
		return kind + " " + obj.GetName()
	}
	return kind + " " + obj.GetNamespace() + "/" + obj.GetName()
}

// stsOption changes a StatefulSet that newStatefulSet builds.
type stsOption func(*appsv1.StatefulSet)

// newStatefulSet builds (does not create) a StatefulSet of the test
// application, as a user would write it, with nothing in-place-specific: one
// container "app" serving on :8080, a readiness probe on /healthz every
// second, imagePullPolicy Never (the images are imported, there is no
// registry), the label app=name on its pods, OrderedReady and RollingUpdate
// unless an option says otherwise.
func newStatefulSet(name, namespace string, replicas int32, image string, opts ...stsOption) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(replicas),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template:    appTemplate(name, image),
		},
	}
	for _, o := range opts {
		o(sts)
	}
	return sts
}

// appTemplate is the pod template of the test application as a user would
// write it, with nothing in-place-specific: one container "app" serving on
// :8080, a readiness probe on /healthz every second, imagePullPolicy Never
// (the images are imported, there is no registry), the label app=name.
func appTemplate(name, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			// The test application stops at once on SIGTERM.
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name:            appContainer,
				Image:           image,
				ImagePullPolicy: corev1.PullNever,
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: appPort}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
						Path: "/healthz", Port: intstr.FromInt32(appPort),
					}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// withParallelPods sets podManagementPolicy Parallel.
func withParallelPods() stsOption {
	return func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }
}

// withMaxUnavailable sets the RollingUpdate strategy's maxUnavailable.
func withMaxUnavailable(n int32) stsOption {
	return func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		if s.Spec.UpdateStrategy.RollingUpdate == nil {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
		s.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(n))
	}
}

// withAnnotation sets an annotation on the StatefulSet itself.
func withAnnotation(key, value string) stsOption {
	return func(s *appsv1.StatefulSet) { metav1.SetMetaDataAnnotation(&s.ObjectMeta, key, value) }
}

// scale sets the replicas of a StatefulSet or Deployment through its scale
// subresource, as kubectl scale does.
func scale(t testing.TB, obj client.Object, replicas int32) {
	t.Helper()
	if err := scaleTo(t.Context(), obj, replicas); err != nil {
		t.Fatal(err)
	}
}

func scaleTo(ctx context.Context, obj client.Object, replicas int32) error {
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas))
	if err := k8s.SubResource("scale").Patch(ctx, obj, patch, client.WithSubResourceBody(&autoscalingv1.Scale{})); err != nil {
		return fmt.Errorf("scaling %s to %d: %w", describeObject(obj), replicas, err)
	}
	return nil
}

// deletePod deletes a pod, as kubectl delete pod does (gracefully, without
// waiting for it to be gone).
func deletePod(t testing.TB, namespace, name string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := k8s.Delete(t.Context(), pod); err != nil {
		t.Fatalf("deleting pod %s/%s: %v", namespace, name, err)
	}
}

// statefulSetPods lists the pods a StatefulSet controls, by ordinal.
func statefulSetPods(ctx context.Context, sts *appsv1.StatefulSet) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := k8s.List(ctx, list, client.InNamespace(sts.Namespace), client.MatchingLabels(sts.Spec.Selector.MatchLabels)); err != nil {
		return nil, fmt.Errorf("listing the pods of StatefulSet %s/%s: %w", sts.Namespace, sts.Name, err)
	}
	pods := list.Items[:0]
	for _, p := range list.Items {
		if owner := metav1.GetControllerOf(&p); owner != nil && owner.UID == sts.UID {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return ordinal(pods[i].Name) < ordinal(pods[j].Name) })
	return pods, nil
}

// describeUpdates is, for a wait's trail, each pod with the image of its
// first container, its gate, whether it is Ready and whether it carries an
// update state.
func describeUpdates(pods []corev1.Pod) string {
	parts := make([]string, 0, len(pods))
	for i := range pods {
		p := &pods[i]
		image, gate, ready := "", "-", "not Ready"
		if len(p.Spec.Containers) > 0 {
			image = p.Spec.Containers[0].Image[strings.LastIndex(p.Spec.Containers[0].Image, "/")+1:]
		}
		if c := podCondition(p, gateCondition); c != nil {
			gate = string(c.Status)
		}
		if podReady(p) {
			ready = "Ready"
		}
		state := ""
		if _, ok := p.Annotations[annotationUpdateState]; ok {
			state = " updating"
		}
		parts = append(parts, fmt.Sprintf("%s %s gate %s %s%s", p.Name, image, gate, ready, state))
	}
	if len(parts) == 0 {
		return "no pods"
	}
	return strings.Join(parts, ", ")
}

// ordinal is a StatefulSet pod's ordinal, from its name; -1 if it has none.
func ordinal(podName string) int {
	n, err := strconv.Atoi(podName[strings.LastIndex(podName, "-")+1:])
	if err != nil {
		return -1
	}
	return n
}

// waitForStatefulSetReady waits until the StatefulSet's controller has seen
// its latest spec and it has exactly spec.replicas pods, none terminating,
// every one Ready, and returns them by ordinal.
func waitForStatefulSetReady(t testing.TB, sts *appsv1.StatefulSet) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, podTimeout, fmt.Sprintf("every pod of StatefulSet %s/%s to be Ready", sts.Namespace, sts.Name), func(ctx context.Context) error {
		cur := &appsv1.StatefulSet{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(sts), cur); err != nil {
			return err
		}
		if cur.Status.ObservedGeneration < cur.Generation {
			return fmt.Errorf("the controller has seen generation %d of %d", cur.Status.ObservedGeneration, cur.Generation)
		}
		ps, err := statefulSetPods(ctx, cur)
		if err != nil {
			return err
		}
		want := int(ptr.Deref(cur.Spec.Replicas, 1))
		if len(ps) != want {
			return fmt.Errorf("%d pods of %d: %s", len(ps), want, podNames(ps))
		}
		for i := range ps {
			if ps[i].DeletionTimestamp != nil {
				return fmt.Errorf("pod %s is terminating", ps[i].Name)
			}
			if !podReady(&ps[i]) {
				return fmt.Errorf("pod %s is not Ready: %s", ps[i].Name, whyNotReady(&ps[i]))
			}
		}
		if int(cur.Status.ReadyReplicas) != want {
			return fmt.Errorf("status.readyReplicas is %d of %d", cur.Status.ReadyReplicas, want)
		}
		pods = ps
		return nil
	})
	return pods
}

// setImage changes the image of a container in a StatefulSet's pod
// template, as kubectl set image does (a strategic merge patch), and updates
// sts to what the API server returned.
func setImage(t testing.TB, sts *appsv1.StatefulSet, container, image string) {
	t.Helper()
	setTemplateImage(t, sts, container, image)
}

// setTemplateImage changes the image of a container in the pod template of
// a StatefulSet, Deployment or DaemonSet, as kubectl set image does (a
// strategic merge patch), and updates obj to what the API server returned.
func setTemplateImage(t testing.TB, obj client.Object, container, image string) {
	t.Helper()
	editTemplate(t, obj, func(tpl *corev1.PodTemplateSpec) {
		found := false
		for i := range tpl.Spec.Containers {
			if c := &tpl.Spec.Containers[i]; c.Name == container {
				c.Image, found = image, true
			}
		}
		if !found {
			t.Fatalf("%s has no container %s", describeObject(obj), container)
		}
	})
}

// editTemplate changes the pod template of a StatefulSet, Deployment or
// DaemonSet with a strategic merge patch, as kubectl does, and updates obj
// to what the API server returned.
func editTemplate(t testing.TB, obj client.Object, edit func(*corev1.PodTemplateSpec)) {
	t.Helper()
	cur := obj.DeepCopyObject().(client.Object)
	if err := k8s.Get(t.Context(), client.ObjectKeyFromObject(obj), cur); err != nil {
		t.Fatalf("reading %s: %v", describeObject(obj), err)
	}
	base := cur.DeepCopyObject().(client.Object)
	edit(podTemplate(t, cur))
	if err := k8s.Patch(t.Context(), cur, client.StrategicMergeFrom(base)); err != nil {
		t.Fatalf("changing the pod template of %s: %v", describeObject(obj), err)
	}
	reflectCopy(obj, cur)
}

// podTemplate is the pod template of a StatefulSet, Deployment or DaemonSet.
func podTemplate(t testing.TB, obj client.Object) *corev1.PodTemplateSpec {
	t.Helper()
	tpl := e2ekit.PodTemplate(obj)
	if tpl == nil {
		t.Fatalf("%T has no pod template", obj)
	}
	return tpl
}

// reflectCopy sets *dst to *src, both pointers to the same kind.
func reflectCopy(dst, src client.Object) {
	switch d := dst.(type) {
	case *appsv1.StatefulSet:
		*d = *src.(*appsv1.StatefulSet)
	case *appsv1.Deployment:
		*d = *src.(*appsv1.Deployment)
	case *appsv1.DaemonSet:
		*d = *src.(*appsv1.DaemonSet)
	}
}

// waitForRolloutComplete waits until a StatefulSet's rollout is over, as a
// user would judge it, whoever rolled it out: the controller has seen the
// latest spec, every replica is updated and Ready, the current revision is
// the update revision, every pod is labelled with it, Ready and not
// terminating. It returns
// the pods by ordinal.
func waitForRolloutComplete(t testing.TB, sts *appsv1.StatefulSet) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, podTimeout, fmt.Sprintf("the rollout of StatefulSet %s/%s to complete", sts.Namespace, sts.Name), func(ctx context.Context) error {
		cur := &appsv1.StatefulSet{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(sts), cur); err != nil {
			return err
		}
		st, want := cur.Status, ptr.Deref(cur.Spec.Replicas, 1)
		switch {
		case st.ObservedGeneration < cur.Generation:
			return fmt.Errorf("the controller has seen generation %d of %d", st.ObservedGeneration, cur.Generation)
		case st.UpdatedReplicas != want || st.ReadyReplicas != want:
			return fmt.Errorf("%d of %d replicas updated, %d Ready", st.UpdatedReplicas, want, st.ReadyReplicas)
		case st.CurrentRevision != st.UpdateRevision:
			return fmt.Errorf("current revision %s, update revision %s", st.CurrentRevision, st.UpdateRevision)
		}

		ps, err := statefulSetPods(ctx, cur)
		if err != nil {
			return err
		}
		if len(ps) != int(want) {
			return fmt.Errorf("%d pods of %d: %s", len(ps), want, podNames(ps))
		}
		for i := range ps {
			p := &ps[i]
			switch {
			case p.DeletionTimestamp != nil:
				return fmt.Errorf("pod %s is terminating", p.Name)
			case p.Labels[appsv1.ControllerRevisionHashLabelKey] != st.UpdateRevision:
				return fmt.Errorf("pod %s is at revision %s, not %s", p.Name, p.Labels[appsv1.ControllerRevisionHashLabelKey], st.UpdateRevision)
			case !podReady(p):
				return fmt.Errorf("pod %s is not Ready: %s", p.Name, whyNotReady(p))
			}
		}
		pods = ps
		return nil
	})
	return pods
}

// waitForPodReplaced waits until the pod namespace/name exists again with
// another UID than old: recreated after a deletion.
func waitForPodReplaced(t testing.TB, namespace, name string, old types.UID) {
	t.Helper()
	eventually(t, podTimeout, fmt.Sprintf("pod %s/%s to be recreated", namespace, name), func(ctx context.Context) error {
		pod := &corev1.Pod{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, pod); err != nil {
			return err
		}
		if pod.UID == old {
			return fmt.Errorf("still the pod of UID %s", old)
		}
		return nil
	})
}

func podNames(pods []corev1.Pod) string {
	names := make([]string, len(pods))
	for i := range pods {
		names[i] = pods[i].Name
	}
	return "[" + strings.Join(names, " ") + "]"
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func podReady(pod *corev1.Pod) bool {
	c := podCondition(pod, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

// whyNotReady says, in a line, what holds a pod back: its phase, its
// conditions that are not True, and its containers' waiting or terminated
// states.
func whyNotReady(pod *corev1.Pod) string {
	parts := []string{"phase " + string(pod.Status.Phase)}
	for _, c := range pod.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			parts = append(parts, fmt.Sprintf("%s=%s %s %s", c.Type, c.Status, c.Reason, c.Message))
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("container %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("container %s terminated: %s (exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		case !cs.Ready:
			parts = append(parts, fmt.Sprintf("container %s running, not ready", cs.Name))
		}
	}
	return strings.Join(parts, "; ")
}

// podView is what a user reads back about a pod: the columns of kubectl get
// pod, the readiness gate, the app container's status, and the version that
// container actually serves.
type podView struct {
	Name     string
	UID      types.UID
	IP       string
	Node     string // spec.nodeName: one of several with make e2e NODES=3
	Ready    bool
	Gated    bool                   // spec.readinessGates holds InPlaceUpdateReady
	Gate     corev1.ConditionStatus // the InPlaceUpdateReady condition; "" when absent
	Managed  bool                   // labelled inplace.dev/managed=true
	Revision string                 // the controller-revision-hash label

	// The app container: its spec image, and its status.
	Image       string
	ImageID     string
	ContainerID string
	Restarts    int32

	// Version is what GET / on the app container answers; "" for a pod that
	// is not Ready.
	Version string
}

// viewPod reads a pod as a user would, asking its app container for its
// version over HTTP when the pod is Ready. A Ready pod that does not answer
// fails the test.
func viewPod(t testing.TB, pod *corev1.Pod) podView {
	t.Helper()
	v := podView{
		Name:     pod.Name,
		UID:      pod.UID,
		IP:       pod.Status.PodIP,
		Node:     pod.Spec.NodeName,
		Ready:    podReady(pod),
		Managed:  pod.Labels[labelManaged] == "true",
		Revision: pod.Labels[appsv1.ControllerRevisionHashLabelKey],
	}
	for _, g := range pod.Spec.ReadinessGates {
		v.Gated = v.Gated || g.ConditionType == gateCondition
	}
	if c := podCondition(pod, gateCondition); c != nil {
		v.Gate = c.Status
	}
	// The app container, or the only one (a workload written as a user
	// writes it may name it otherwise).
	app := appContainer
	if len(pod.Spec.Containers) == 1 {
		app = pod.Spec.Containers[0].Name
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == app {
			v.Image = c.Image
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == app {
			v.ImageID, v.ContainerID, v.Restarts = cs.ImageID, cs.ContainerID, cs.RestartCount
		}
	}
	if v.Ready {
		var err error
		if v.Version, err = servedVersion(t.Context(), v.IP); err != nil {
			t.Fatalf("pod %s is Ready but its app container does not answer: %v", pod.Name, err)
		}
	}
	return v
}

// observe reads back the pods of a StatefulSet, by ordinal.
func observe(t testing.TB, sts *appsv1.StatefulSet) []podView {
	t.Helper()
	pods, err := statefulSetPods(t.Context(), sts)
	if err != nil {
		t.Fatal(err)
	}
	return viewPods(t, pods)
}

// viewPods is viewPod of each pod, in order.
func viewPods(t testing.TB, pods []corev1.Pod) []podView {
	t.Helper()
	views := make([]podView, len(pods))
	for i := range pods {
		views[i] = viewPod(t, &pods[i])
	}
	return views
}

// onPodEvents calls seen, one call at a time, with every version of every
// pod of ns that a watch delivers (deletions aside), until the returned stop
// is called. stop returns once the last call has returned, so what seen
// wrote may be read then without a lock.
func onPodEvents(t *testing.T, ns string, seen func(pod *corev1.Pod)) (stop func()) {
	t.Helper()
	w, err := k8s.Watch(t.Context(), &corev1.PodList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatalf("watching pods: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted {
				seen(pod)
			}
		}
	}()
	return func() {
		w.Stop()
		<-done
	}
}

// servedVersion asks the test application at ip for its version, as a user
// would with curl from inside the cluster's network, retrying for a few
// seconds (a pod that just turned Ready may be a moment from its first
// answer through the bridge).
func servedVersion(ctx context.Context, ip string) (string, error) {
	return served(ctx, ip, "/")
}

// served GETs path from the test application at ip, as servedVersion.
func served(ctx context.Context, ip, path string) (string, error) {
	return servedAt(ctx, ip, appPort, path)
}

// servedAt GETs path from the test application serving on port at ip.
func servedAt(ctx context.Context, ip string, port int32, path string) (string, error) {
	if ip == "" {
		return "", errors.New("the pod has no IP")
	}
	url := fmt.Sprintf("http://%s:%d%s", ip, port, path)
	hc := &http.Client{Timeout: httpGetDeadline}
	var answer string
	err := poll(ctx, answerTimeout, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return permanent(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		answer = strings.TrimSpace(string(body))
		return nil
	})
	return answer, err
}

// logPods logs pod views as a table, under a title.
func logPods(t testing.TB, title string, views []podView) {
	t.Helper()
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tREADY\tGATE\tMANAGED\tRESTARTS\tVERSION\tUID\tIP\tNODE")
	for _, v := range views {
		gate := "-"
		if v.Gated {
			gate = string(v.Gate)
			if gate == "" {
				gate = "unset"
			}
		}
		fmt.Fprintf(w, "%s\t%t\t%s\t%t\t%d\t%s\t%s\t%s\t%s\n", v.Name, v.Ready, gate, v.Managed, v.Restarts, v.Version, v.UID, v.IP, v.Node)
	}
	_ = w.Flush()
	t.Logf("%s:\n%s", title, b.String())
}

// inplaceKeys returns the inplace.dev/ keys of a label or annotation map.
func inplaceKeys(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if strings.HasPrefix(k, domain) {
			out[k] = v
		}
	}
	return out
}

// stopManager scales the manager Deployment to zero and waits until none of
// its pods is left. It returns a function that scales it back to the
// replicas it had and waits until it serves again (managerServing), and
// registers that function as a cleanup too, so that the tests that follow
// find the manager as they expect; calling it twice restores once.
//
// A test that stops the manager must not call t.Parallel: every other test
// needs the manager, and sequential tests run while parallel ones wait.
func stopManager(t *testing.T) (restore func()) {
	t.Helper()
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: managerDeployment}}
	get(t, d)
	replicas := ptr.Deref(d.Spec.Replicas, 1)
	var once sync.Once
	restore = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), managerTimeout)
			defer cancel()
			if err := scaleTo(ctx, d, replicas); err != nil {
				t.Errorf("restoring the manager: %v", err)
				return
			}
			if err := poll(ctx, managerTimeout, managerServing); err != nil {
				t.Errorf("restoring the manager to %d replicas: it does not serve: %v", replicas, err)
				return
			}
			t.Logf("inplace-manager restored to %d replicas and serving", replicas)
		})
	}
	t.Cleanup(restore)

	scale(t, d, 0)
	eventually(t, managerTimeout, "every inplace-manager pod to be gone", func(ctx context.Context) error {
		pods, err := managerPods(ctx, d)
		if err != nil {
			return err
		}
		if len(pods) > 0 {
			return fmt.Errorf("still there: %s", podNames(pods))
		}
		return nil
	})
	t.Logf("inplace-manager scaled from %d replicas to 0, no pod left", replicas)
	return restore
}

// managerPods lists the manager Deployment's pods, terminating ones included.
func managerPods(ctx context.Context, d *appsv1.Deployment) ([]corev1.Pod, error) {
	sel := map[string]string{"app.kubernetes.io/name": managerDeployment}
	if d.Spec.Selector != nil && len(d.Spec.Selector.MatchLabels) > 0 {
		sel = d.Spec.Selector.MatchLabels
	}
	list := &corev1.PodList{}
	if err := k8s.List(ctx, list, client.InNamespace(managerNamespace), client.MatchingLabels(sel)); err != nil {
		return nil, fmt.Errorf("listing the manager's pods: %w", err)
	}
	return list.Items, nil
}

// managerServing succeeds when the manager is as a user expects it after an
// install: its Deployment Available with every replica updated and Ready, a
// leader elected among its running pods (the readiness-gate keeper runs on
// the leader), and its mutating webhook answering through the API server (a
// server-side dry run of a StatefulSet in an opted-in namespace comes back
// with the update-policy annotation).
func managerServing(ctx context.Context) error {
	d := &appsv1.Deployment{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: managerNamespace, Name: managerDeployment}, d); apierrors.IsNotFound(err) {
		return permanent(fmt.Errorf("no Deployment %s/%s", managerNamespace, managerDeployment))
	} else if err != nil {
		return fmt.Errorf("reading Deployment %s/%s: %w", managerNamespace, managerDeployment, err)
	}
	want := ptr.Deref(d.Spec.Replicas, 1)
	if want == 0 {
		return permanent(errors.New("the manager Deployment is scaled to zero"))
	}
	if st := d.Status; st.ObservedGeneration < d.Generation || st.UpdatedReplicas != want || st.AvailableReplicas != want {
		return fmt.Errorf("Deployment %s: %d of %d replicas updated, %d available", d.Name, st.UpdatedReplicas, want, st.AvailableReplicas)
	}
	pods, err := managerPods(ctx, d)
	if err != nil {
		return err
	}
	ready := map[string]bool{}
	for i := range pods {
		if pods[i].DeletionTimestamp == nil && podReady(&pods[i]) {
			ready[pods[i].Name] = true
		}
	}
	if int32(len(ready)) != want {
		return fmt.Errorf("%d of %d manager pods Ready: %s", len(ready), want, podNames(pods))
	}

	lease := &coordinationv1.Lease{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: managerNamespace, Name: managerLease}, lease); err != nil {
		return fmt.Errorf("reading the leader-election Lease %s: %w", managerLease, err)
	}
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	if pod, _, _ := strings.Cut(holder, "_"); !ready[pod] {
		return fmt.Errorf("the leader-election Lease is held by %q, not by a running manager pod", holder)
	}

	probe := newStatefulSet("webhook-probe", probeNamespace, 1, images.V1)
	if err := k8s.Create(ctx, probe, client.DryRunAll); err != nil {
		return fmt.Errorf("dry-run create of a StatefulSet in %s: %w", probeNamespace, err)
	}
	if _, ok := probe.Annotations[annotationUpdatePolicy]; !ok {
		return fmt.Errorf("the webhook did not answer: a StatefulSet created (dry run) in the opted-in namespace %s came back without %s", probeNamespace, annotationUpdatePolicy)
	}
	return nil
}

// statusLimits is a container's limits as the kubelet reports them applied.
func statusLimits(r *corev1.ResourceRequirements) string {
	if r == nil || len(r.Limits) == 0 {
		return "none"
	}
	var parts []string
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := r.Limits[name]; ok {
			parts = append(parts, string(name)+"="+q.String())
		}
	}
	return strings.Join(parts, ",")
}

// dumpNamespace logs what a person debugging a failure would look at first:
// the namespace's StatefulSets and pods, each pod's gate and containers, the
// events, and the manager's pods.
func dumpNamespace(ctx context.Context, t testing.TB, namespace string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "namespace %s after the failure:\n", namespace)
	stss := &appsv1.StatefulSetList{}
	if err := k8s.List(ctx, stss, client.InNamespace(namespace)); err == nil {
		for _, s := range stss.Items {
			fmt.Fprintf(&b, "  statefulset %s: replicas %d, ready %d, updated %d, revisions %s -> %s, annotations %v\n",
				s.Name, ptr.Deref(s.Spec.Replicas, 1), s.Status.ReadyReplicas, s.Status.UpdatedReplicas,
				s.Status.CurrentRevision, s.Status.UpdateRevision, s.Annotations)
		}
	}
	pods := &corev1.PodList{}
	if err := k8s.List(ctx, pods, client.InNamespace(namespace)); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "  pod %s uid %s ip %s node %s generation %d (kubelet saw %d) gates %v: %s\n", p.Name, p.UID, p.Status.PodIP, p.Spec.NodeName,
				p.Generation, p.Status.ObservedGeneration, p.Spec.ReadinessGates, whyNotReady(&p))
			for _, cs := range p.Status.ContainerStatuses {
				fmt.Fprintf(&b, "    container %s image %s restarts %d ready %t limits %v\n", cs.Name, cs.Image, cs.RestartCount, cs.Ready, statusLimits(cs.Resources))
			}
		}
	}
	events := &corev1.EventList{}
	if err := k8s.List(ctx, events, client.InNamespace(namespace)); err == nil {
		// Kubelet events have whole seconds, the scheduler's microseconds:
		// order by the second, then by when the API server stored them.
		sort.SliceStable(events.Items, func(i, j int) bool {
			ti, tj := eventTime(&events.Items[i]).Truncate(time.Second), eventTime(&events.Items[j]).Truncate(time.Second)
			if !ti.Equal(tj) {
				return ti.Before(tj)
			}
			ri, _ := strconv.ParseUint(events.Items[i].ResourceVersion, 10, 64)
			rj, _ := strconv.ParseUint(events.Items[j].ResourceVersion, 10, 64)
			return ri < rj
		})
		for _, e := range events.Items {
			fmt.Fprintf(&b, "  event %s %s %s/%s: %s %s\n", eventTime(&e).Format(time.TimeOnly), e.Type, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	if mp, err := managerPods(ctx, &appsv1.Deployment{}); err == nil {
		for _, p := range mp {
			fmt.Fprintf(&b, "  manager pod %s on %s: %s\n", p.Name, p.Spec.NodeName, whyNotReady(&p))
		}
	}
	if path := os.Getenv("E2E_AUDIT_LOG"); path != "" {
		writes, err := statusWrites(path, namespace)
		if err != nil {
			fmt.Fprintf(&b, "  pod status writes: %v\n", err)
		}
		fmt.Fprintf(&b, "  pod status writes (the API server's audit log): %d\n", len(writes))
		for _, w := range writes {
			fmt.Fprintf(&b, "    %s\n", w)
		}
	}
	t.Log(b.String())
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// asManager returns a client that acts as the manager's ServiceAccount (the
// admin impersonating it), to see what the API server lets the manager do.
func asManager(t testing.TB) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(restConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: managerUser,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + managerNamespace, "system:authenticated"}}
	c, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
