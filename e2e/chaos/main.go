// Command chaos runs in-place rollouts on the e2e cluster and SIGKILLs
// inplace-manager replicas in the middle of each, then checks that every
// rollout finished as it would have without the kill: all pods Ready on the
// new image and revision, none left with its gate False, no update applied
// twice, and none of the manager's records left behind.
//
// Four workloads in one opted-in namespace take turns: a StatefulSet with
// Parallel pods (maxUnavailable 2), one with OrderedReady pods, a Deployment
// (maxSurge 0, maxUnavailable 1) and a DaemonSet (one pod a node). Each
// rollout changes one workload's image to the next of -images (references
// that the workload has not run: the kubelet's restart back-off is kept per
// image reference) and kills at a point chosen by the rollout's number, in
// turn:
//
//   - gate-closed: the elected replica, as soon as a pod's gate is seen
//     False while the pod still has the old image (between the gate's close
//     and the image patch);
//   - image-patched: the elected replica, as soon as a pod is seen with the
//     new image and its update state (after the patch, before the update
//     is finished and the gate opened; the images, the revision label, or
//     a Deployment's pod's move to the new ReplicaSet, and the update state
//     are one write, so there is no point between the patch and the
//     relabel);
//   - refused: the elected replica, as soon as the replicas' count of
//     refused replacements (inplace_deletes_refused_total: a workload
//     controller's delete, or a Deployment's create, refused while a pod is
//     updated in place) is seen to rise, read every 50 ms (the controllers'
//     FailedDelete events would not do: their recorder lets 25 through per
//     object, then one every five minutes);
//   - random: a replica, elected or not, at a random time within the time
//     a rollout of the workload takes without a kill (measured first);
//   - both: every replica at once, at a random time.
//
// A kill is a SIGKILL to the manager's process, found by its container's
// ID in /proc (no graceful shutdown runs: nothing is released, as when a
// node or the OOM killer takes it), followed by the pod's deletion, so that
// its Deployment replaces it at once instead of the kubelet restarting it
// behind a crash-loop back-off that dozens of kills would grow to minutes.
// Each rollout starts with every manager replica Ready and one elected.
//
// It prints a line per rollout: the workload, the trigger and what it saw,
// whether the rollout completed and how long it took, then pods recreated
// (not updated in place), pods not Ready or with their gate False once it
// settled, pods at a mixed revision, pods restarted other than once, and
// records left (rollout and update-state annotations, prepull pods). It
// exits 1 unless every rollout completed with nothing left. make chaos runs
// it on the e2e cluster; it must run as root, beside the cluster's
// containerd, to find and kill the manager's process.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
)

// The names of DESIGN.md and of the manager as e2e/manifests installs it,
// spelt out as the e2e tests spell them.
const (
	labelPrepullFor       = "inplace.dev/prepull-for"
	annotationRollout     = "inplace.dev/rollout"
	annotationUpdateState = "inplace.dev/update-state"
	refusedMetric         = "inplace_deletes_refused_total{"
	gate                  = corev1.PodConditionType("InPlaceUpdateReady")

	managerNamespace  = "inplace-system"
	managerDeployment = "inplace-manager"
	managerContainer  = "manager"
	managerLease      = "inplace-manager.inplace.dev"
)

const appContainer = "app"

// The triggers, in the order the rollouts take them.
var triggers = []string{"gate-closed", "image-patched", "refused", "random", "both"}

// The workloads' names (workloads builds them), and the order the rollouts
// take them in.
const (
	stsParallelName = "sts-parallel"
	stsOrderedName  = "sts-ordered"
	deploymentName  = "deploy"
	daemonSetName   = "daemon"
)

var workloadNames = []string{stsParallelName, stsOrderedName, deploymentName, daemonSetName}

func main() {
	rollouts := flag.Int("rollouts", 50, "rollouts to run, the workloads and the triggers in turn (after one of each workload without a kill)")
	pods := flag.Int("pods", 3, "replicas of the StatefulSets and the Deployment")
	imageList := flag.String("images", "", "comma-separated images the workloads start on and go through in turn (at least -rollouts/4+2)")
	timeout := flag.Duration("timeout", 4*time.Minute, "how long one rollout may take")
	settle := flag.Duration("settle", 30*time.Second, "how long after a rollout completes its records may take to go")
	seed := flag.Uint64("seed", 0, "the seed of the random kill times (0: drawn, and printed)")
	keep := flag.Bool("keep", false, "keep the namespace at the end")
	only := flag.String("workloads", "", "comma-separated workloads the rollouts take turns on, of "+strings.Join(workloadNames, ",")+" (default all)")
	logs := flag.String("logs", "", "a directory to keep each killed replica's log in, as <rollout>-<pod>.log (read between the SIGKILL and the pod's deletion), and every replica's at the end")
	onlyTriggers := flag.String("triggers", "", "comma-separated triggers the rollouts take in turn, of "+strings.Join(triggers, ",")+" (default all)")
	flag.Parse()
	images := strings.Split(*imageList, ",")
	turns, err := subset("-workloads", *only, workloadNames)
	if err != nil {
		usage(err.Error())
	}
	kills, err := subset("-triggers", *onlyTriggers, triggers)
	if err != nil {
		usage(err.Error())
	}
	perWorkload := (*rollouts + len(turns) - 1) / len(turns)
	switch {
	case *rollouts < 1 || *pods < 1:
		usage("-rollouts and -pods must be positive")
	case *imageList == "" || len(images) < perWorkload+2:
		usage(fmt.Sprintf("-images: %d given, want at least %d (two more than the rollouts of one workload)", len(images), perWorkload+2))
	}
	if *seed == 0 {
		*seed = mathrand.Uint64()
	}
	cfg, err := config.GetConfig()
	if err != nil {
		fail(err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.WarningHandler = rest.NoWarnings{}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		fail(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fail(err)
	}
	if *logs != "" {
		if err := os.MkdirAll(*logs, 0o755); err != nil {
			fail(err)
		}
	}
	ch := &chaos{client: c, clientset: cs, logs: *logs, pods: int32(*pods), images: images, timeout: *timeout, settle: *settle,
		turns: turns, triggers: kills, rand: mathrand.New(mathrand.NewPCG(*seed, 0)), out: os.Stdout}
	fmt.Printf("chaos: %d rollouts, seed %d\n", *rollouts, *seed)
	ok, err := ch.run(context.Background(), *rollouts, *keep)
	if err != nil {
		fail(err)
	}
	if !ok {
		os.Exit(1)
	}
}

// subset returns the names of list, comma-separated, checked against all;
// all when list is empty.
func subset(flagName, list string, all []string) ([]string, error) {
	if list == "" {
		return all, nil
	}
	names := strings.Split(list, ",")
	for _, n := range names {
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("%s: %q is none of %s", flagName, n, strings.Join(all, ", "))
		}
	}
	return names, nil
}

func usage(msg string) {
	fmt.Fprintf(os.Stderr, "chaos: %s\n", msg)
	os.Exit(2)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
	os.Exit(1)
}

type chaos struct {
	client    client.WithWatch
	clientset kubernetes.Interface
	// logs is where the replicas' logs are kept ("": nowhere); current is
	// the number of the rollout under way, which names them.
	logs    string
	current int
	pods    int32
	images  []string
	timeout time.Duration
	settle  time.Duration
	// turns and triggers are the workloads and the triggers the rollouts
	// take in turn, by name.
	turns, triggers []string
	rand            *mathrand.Rand
	out             io.Writer
	namespace       string
	metrics         *e2ekit.MetricsScraper
}

// workload is one of the four the rollouts take turns on.
type workload struct {
	name string
	obj  client.Object
	// revisionLabel is the pod label that names the pod's revision.
	revisionLabel string
	// next is the index in images of the image of its next rollout.
	next int
	// unkilled is how long a rollout without a kill took: the span random
	// kills fall in.
	unkilled time.Duration
}

// outcome is what one rollout came to.
type outcome struct {
	workload, trigger string
	seen              string        // what the trigger saw, or "missed"
	killedAt          time.Duration // since the image change
	killed            []string
	completed         bool
	took              time.Duration
	recreated         int // pods of the end not there at the start
	notReady          int // pods not Ready, or with their gate False, once settled
	mixed             int // pods not on the new image and the revision most pods have
	restarts          int // pods kept whose container restarted other than once
	records           int // rollout and update-state annotations, prepull pods, once settled
}

func (o outcome) clean() bool {
	return o.completed && o.notReady == 0 && o.mixed == 0 && o.restarts == 0 && o.records == 0
}

func (ch *chaos) run(ctx context.Context, rollouts int, keep bool) (bool, error) {
	ns, err := e2ekit.CreateNamespace(ctx, ch.client, "chaos", true)
	if err != nil {
		return false, err
	}
	ch.namespace = ns
	if !keep {
		defer e2ekit.DeleteNamespace(ch.client, ns)
	}
	metrics, cleanup, err := e2ekit.NewMetricsScraper(ctx, ch.client, ch.namespace)
	if err != nil {
		return false, err
	}
	defer cleanup()
	ch.metrics = metrics
	workloads := ch.workloads()
	for _, w := range workloads {
		if err := ch.client.Create(ctx, w.obj); err != nil {
			return false, fmt.Errorf("creating %s: %w", w.name, err)
		}
	}
	for _, w := range workloads {
		if err := ch.waitDone(ctx, w, ch.images[0]); err != nil {
			return false, fmt.Errorf("%s: the first revision: %w", w.name, err)
		}
	}
	// One rollout of each without a kill: the time a kill adds to, and the
	// span random kills fall in.
	fmt.Fprintf(ch.out, "namespace %s; a rollout of each without a kill:", ch.namespace)
	for _, w := range workloads {
		refused, err := ch.metrics.Sum(ctx, ch.client, refusedMetric)
		if err != nil {
			return false, err
		}
		o, err := ch.rollout(ctx, w, "")
		if err != nil {
			return false, fmt.Errorf("%s: a rollout without a kill: %w", w.name, err)
		}
		n, err := ch.metrics.Sum(ctx, ch.client, refusedMetric)
		if err != nil {
			return false, err
		}
		if !o.clean() {
			return false, fmt.Errorf("%s: a rollout without a kill did not complete clean: %+v", w.name, o)
		}
		w.unkilled = o.took
		fmt.Fprintf(ch.out, "\n  %-12s %.1fs, %.0f replacements refused", w.name, o.took.Seconds(), n-refused)
	}
	fmt.Fprint(ch.out, "\n\n")
	fmt.Fprintf(ch.out, "%3s  %-12s %-13s %-22s %-8s %-9s %7s %9s %8s %5s %8s %7s\n",
		"#", "workload", "trigger", "killed after seeing", "at", "completed", "took", "recreated", "notReady", "mixed", "restarts", "records")
	var all []outcome
	var turns []*workload
	for _, w := range workloads {
		if slices.Contains(ch.turns, w.name) {
			turns = append(turns, w)
		}
	}
	if ch.logs != "" {
		defer ch.keepLogs(context.WithoutCancel(ctx), "end")
	}
	for i := range rollouts {
		ch.current = i + 1
		w := turns[i%len(turns)]
		trigger := ch.triggers[i%len(ch.triggers)]
		if err := ch.waitManager(ctx); err != nil {
			return false, err
		}
		o, err := ch.rollout(ctx, w, trigger)
		if err != nil {
			return false, fmt.Errorf("rollout %d (%s, %s): %w", i+1, w.name, trigger, err)
		}
		all = append(all, o)
		at := "-"
		if len(o.killed) > 0 {
			at = fmt.Sprintf("%.1fs", o.killedAt.Seconds())
		}
		fmt.Fprintf(ch.out, "%3d  %-12s %-13s %-22s %-8s %-9t %6.1fs %9d %8d %5d %8d %7d\n",
			i+1, o.workload, o.trigger, o.seen, at, o.completed, o.took.Seconds(), o.recreated, o.notReady, o.mixed, o.restarts, o.records)
	}
	return ch.summary(all), nil
}

// summary prints the totals and the goal; it reports whether it is met.
func (ch *chaos) summary(all []outcome) bool {
	completed, clean, kills, missed, recreated := 0, 0, 0, 0, 0
	took := map[string][]float64{}
	var bad []string
	for i, o := range all {
		if o.completed {
			completed++
			took[o.workload] = append(took[o.workload], o.took.Seconds())
		}
		if o.clean() {
			clean++
		} else {
			bad = append(bad, strconv.Itoa(i+1))
		}
		kills += len(o.killed)
		if len(o.killed) == 0 {
			missed++
		}
		recreated += o.recreated
	}
	fmt.Fprintf(ch.out, "\n%d rollouts: %d completed, %d with nothing left (not Ready, mixed, restarted twice, recorded)\n", len(all), completed, clean)
	fmt.Fprintf(ch.out, "%d replicas killed; %d rollouts whose trigger was not seen (no kill); %d pods recreated\n", kills, missed, recreated)
	var ws []string
	for w := range took {
		ws = append(ws, w)
	}
	slices.Sort(ws)
	for _, w := range ws {
		fmt.Fprintf(ch.out, "  %-12s median %.1fs, longest %.1fs over %d rollouts\n", w, median(took[w]), slices.Max(took[w]), len(took[w]))
	}
	if len(bad) > 0 {
		fmt.Fprintf(ch.out, "goal NOT met: rollouts %s\n", strings.Join(bad, ", "))
		return false
	}
	fmt.Fprintln(ch.out, "goal met: every rollout completed, nothing left")
	return true
}

func median(s []float64) float64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}

// workloads builds the four workloads, on the first image.
func (ch *chaos) workloads() []*workload {
	stsParallel := ch.statefulSet(stsParallelName, appsv1.ParallelPodManagement, 2)
	stsOrdered := ch.statefulSet(stsOrderedName, appsv1.OrderedReadyPodManagement, 1)
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: deploymentName, Namespace: ch.namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(ch.pods), Selector: selector(deploymentName), Template: ch.template(deploymentName),
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &zero, MaxUnavailable: &one}},
		},
	}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: daemonSetName, Namespace: ch.namespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: selector(daemonSetName), Template: ch.template(daemonSetName),
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &one, MaxSurge: &zero}},
		},
	}
	return []*workload{
		{name: stsParallel.Name, obj: stsParallel, revisionLabel: appsv1.ControllerRevisionHashLabelKey, next: 1},
		{name: stsOrdered.Name, obj: stsOrdered, revisionLabel: appsv1.ControllerRevisionHashLabelKey, next: 1},
		{name: d.Name, obj: d, revisionLabel: appsv1.DefaultDeploymentUniqueLabelKey, next: 1},
		{name: ds.Name, obj: ds, revisionLabel: appsv1.ControllerRevisionHashLabelKey, next: 1},
	}
}

func selector(name string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
}

func (ch *chaos) statefulSet(name string, policy appsv1.PodManagementPolicyType, maxUnavailable int32) *appsv1.StatefulSet {
	mu := intstr.FromInt32(maxUnavailable)
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ch.namespace},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(ch.pods), ServiceName: name, Selector: selector(name), Template: ch.template(name),
			PodManagementPolicy: policy,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: &mu}},
		},
	}
}

// template is the test application with a readiness probe every second.
func (ch *chaos) template(name string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name: appContainer, Image: ch.images[0], ImagePullPolicy: corev1.PullIfNotPresent,
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// rollout changes the workload's image, kills as the trigger says (no
// trigger: no kill), and waits for the rollout to complete and settle.
func (ch *chaos) rollout(ctx context.Context, w *workload, trigger string) (outcome, error) {
	o := outcome{workload: w.name, trigger: trigger, seen: "missed"}
	image := ch.images[w.next]
	w.next++
	before, err := ch.workloadPods(ctx, w)
	if err != nil {
		return o, err
	}

	// The watches start before the change, so that they see every version
	// of every pod and every event from it on.
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	podWatch, err := ch.client.Watch(watchCtx, &corev1.PodList{}, client.InNamespace(ch.namespace), client.MatchingLabels{"app": w.name})
	if err != nil {
		return o, err
	}
	defer podWatch.Stop()
	// The refusals so far, read before the change: a refusal is a rise.
	refusedBefore := 0.0
	if trigger == "refused" {
		if refusedBefore, err = ch.metrics.Sum(ctx, ch.client, refusedMetric); err != nil {
			return o, err
		}
	}

	var (
		mu       sync.Mutex
		start    time.Time
		fired    bool // a kill has been made
		finished bool // the rollout is over: too late to kill
	)
	kill := func(seen string, every bool) {
		mu.Lock()
		defer mu.Unlock()
		if fired || finished {
			return
		}
		fired = true
		o.seen, o.killedAt = seen, time.Since(start)
		victims, err := ch.victims(ctx, every, trigger == "random")
		if err == nil {
			for _, pod := range victims {
				if err = ch.kill(ctx, pod); err != nil {
					break
				}
				o.killed = append(o.killed, pod.Name)
			}
		}
		if err != nil {
			o.seen = "kill failed: " + err.Error()
		}
	}
	started := make(chan struct{})
	go func() {
		<-started
		switch trigger {
		case "":
			return
		case "gate-closed", "image-patched":
			for ev := range podWatch.ResultChan() {
				pod, ok := ev.Object.(*corev1.Pod)
				if !ok || ev.Type == watch.Deleted {
					continue
				}
				img := containerImage(pod)
				gateFalse := conditionStatus(pod, gate) == corev1.ConditionFalse
				switch {
				case trigger == "gate-closed" && gateFalse && img != image:
					kill("gate False, old image", false)
					return
				case trigger == "image-patched" && img == image && pod.Annotations[annotationUpdateState] != "":
					kill("new image, updating", false)
					return
				}
			}
		case "refused":
			for {
				select {
				case <-watchCtx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
				if n, err := ch.metrics.Sum(watchCtx, ch.client, refusedMetric); err == nil && n > refusedBefore {
					kill(fmt.Sprintf("%.0f refused", n-refusedBefore), false)
					return
				}
			}
		case "random", "both":
			d := time.Duration(ch.rand.Int64N(int64(max(w.unkilled, 100*time.Millisecond))))
			select {
			case <-time.After(d):
				kill(fmt.Sprintf("random %.1fs", d.Seconds()), trigger == "both")
			case <-watchCtx.Done():
			}
		}
	}()

	mu.Lock()
	start = time.Now()
	mu.Unlock()
	if err := ch.setImage(ctx, w, image); err != nil {
		return o, err
	}
	close(started)
	err = ch.waitDone(ctx, w, image)
	o.took = time.Since(start)
	o.completed = err == nil
	stopWatching()
	mu.Lock()
	finished = true
	mu.Unlock()

	// Settled: the records gone and every pod Ready, or -settle over.
	var after []corev1.Pod
	_ = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, ch.settle, true, func(ctx context.Context) (bool, error) {
		after, err = ch.workloadPods(ctx, w)
		if err != nil {
			return false, nil //nolint:nilerr // try again
		}
		r, err := ch.records(ctx, w, after)
		if err != nil {
			return false, nil //nolint:nilerr // try again
		}
		o.records = r
		o.notReady = 0
		for i := range after {
			if !podReady(&after[i]) || conditionStatus(&after[i], gate) == corev1.ConditionFalse {
				o.notReady++
			}
		}
		return o.records == 0 && o.notReady == 0, nil
	})
	o.recreated, o.mixed, o.restarts = compare(before, after, image, w.revisionLabel)
	return o, nil
}

// compare counts, between the pods before a rollout and after it, the pods
// recreated, the pods not on the image and the revision most pods have,
// and the pods kept whose container did not restart exactly once.
func compare(before, after []corev1.Pod, image, revisionLabel string) (recreated, mixed, restarts int) {
	was := map[types.UID]*corev1.Pod{}
	for i := range before {
		was[before[i].UID] = &before[i]
	}
	revisions := map[string]int{}
	for i := range after {
		revisions[after[i].Labels[revisionLabel]]++
	}
	common, most := "", 0
	for r, n := range revisions {
		if n > most || n == most && r < common {
			common, most = r, n
		}
	}
	for i := range after {
		p := &after[i]
		if containerImage(p) != image || p.Labels[revisionLabel] != common {
			mixed++
		}
		old, kept := was[p.UID]
		if !kept {
			recreated++
			continue
		}
		if restartCount(p)-restartCount(old) != 1 {
			restarts++
		}
	}
	return recreated, mixed, restarts
}

// records counts what the manager should have cleared once a rollout is
// over: the workload's rollout record, the pods' update states, and the
// prepull pods of the namespace.
func (ch *chaos) records(ctx context.Context, w *workload, pods []corev1.Pod) (int, error) {
	n := 0
	if err := ch.client.Get(ctx, client.ObjectKeyFromObject(w.obj), w.obj); err != nil {
		return 0, err
	}
	if _, ok := w.obj.GetAnnotations()[annotationRollout]; ok {
		n++
	}
	for i := range pods {
		if _, ok := pods[i].Annotations[annotationUpdateState]; ok {
			n++
		}
	}
	prepulls := &corev1.PodList{}
	if err := ch.client.List(ctx, prepulls, client.InNamespace(ch.namespace), client.HasLabels{labelPrepullFor}); err != nil {
		return 0, err
	}
	return n + len(prepulls.Items), nil
}

func (ch *chaos) workloadPods(ctx context.Context, w *workload) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := ch.client.List(ctx, list, client.InNamespace(ch.namespace), client.MatchingLabels{"app": w.name}); err != nil {
		return nil, err
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
	return pods, nil
}

func (ch *chaos) setImage(ctx context.Context, w *workload, image string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := ch.client.Get(ctx, client.ObjectKeyFromObject(w.obj), w.obj); err != nil {
			return err
		}
		e2ekit.PodTemplate(w.obj).Spec.Containers[0].Image = image
		return ch.client.Update(ctx, w.obj)
	})
}

// waitDone waits until the workload's controller reports its rollout to
// image complete, as kubectl rollout status reads it, and every pod is
// Ready on that image.
func (ch *chaos) waitDone(ctx context.Context, w *workload, image string) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, ch.timeout, true, func(ctx context.Context) (bool, error) {
		if err := ch.client.Get(ctx, client.ObjectKeyFromObject(w.obj), w.obj); err != nil {
			last = err.Error()
			return false, nil
		}
		want, done := int32(0), false
		switch o := w.obj.(type) {
		case *appsv1.StatefulSet:
			s := o.Status
			want = *o.Spec.Replicas
			done = s.ObservedGeneration >= o.Generation && s.UpdatedReplicas == want && s.ReadyReplicas == want &&
				s.CurrentRevision == s.UpdateRevision
		case *appsv1.Deployment:
			s := o.Status
			want = *o.Spec.Replicas
			done = s.ObservedGeneration >= o.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want
		case *appsv1.DaemonSet:
			s := o.Status
			want = s.DesiredNumberScheduled
			done = s.ObservedGeneration >= o.Generation && want > 0 && s.UpdatedNumberScheduled == want && s.NumberAvailable == want
		}
		if !done {
			last = fmt.Sprintf("the controller reports the rollout in progress: %+v", statusOf(w.obj))
			return false, nil
		}
		pods, err := ch.workloadPods(ctx, w)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		ready := 0
		for i := range pods {
			if podReady(&pods[i]) && containerImage(&pods[i]) == image {
				ready++
			}
		}
		last = fmt.Sprintf("%d of %d pods Ready on %s", ready, want, image)
		return ready == int(want) && len(pods) == int(want), nil
	})
	if err != nil {
		return fmt.Errorf("%w: %s", err, last)
	}
	return nil
}

func statusOf(obj client.Object) any {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		return o.Status
	case *appsv1.Deployment:
		return o.Status
	case *appsv1.DaemonSet:
		return o.Status
	}
	return nil
}

// waitManager waits until every replica of the manager is Ready, with no
// other pod of it left, and one of them holds the leader election lease: a
// rollout starts on a manager that has recovered from the last kill.
func (ch *chaos) waitManager(ctx context.Context) error {
	d := &appsv1.Deployment{}
	lease := &coordinationv1.Lease{}
	key := types.NamespacedName{Namespace: managerNamespace, Name: managerDeployment}
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := ch.client.Get(ctx, key, d); err != nil {
			return false, nil //nolint:nilerr // try again
		}
		if err := ch.client.Get(ctx, types.NamespacedName{Namespace: managerNamespace, Name: managerLease}, lease); err != nil {
			return false, nil //nolint:nilerr // try again
		}
		leader, _, _ := strings.Cut(ptr.Deref(lease.Spec.HolderIdentity, ""), "_")
		pods, err := e2ekit.ManagerPods(ctx, ch.client)
		if err != nil {
			return false, nil //nolint:nilerr // try again
		}
		ready, elected := 0, false
		for i := range pods {
			if podReady(&pods[i]) {
				ready++
				elected = elected || pods[i].Name == leader
			}
		}
		return ready == int(*d.Spec.Replicas) && len(pods) == ready && elected, nil
	})
	if err != nil {
		return fmt.Errorf("the manager's replicas did not come back Ready: %w", err)
	}
	return nil
}

// victims is the replicas to kill: every one, or one (any, or the elected).
func (ch *chaos) victims(ctx context.Context, every, anyOne bool) ([]corev1.Pod, error) {
	pods, err := e2ekit.ManagerPods(ctx, ch.client)
	if err != nil || len(pods) == 0 {
		return nil, cmp.Or(err, errors.New("no manager pod"))
	}
	if every {
		return pods, nil
	}
	if anyOne {
		i := ch.rand.IntN(len(pods))
		return pods[i : i+1], nil
	}
	lease := &coordinationv1.Lease{}
	if err := ch.client.Get(ctx, types.NamespacedName{Namespace: managerNamespace, Name: managerLease}, lease); err != nil {
		return nil, err
	}
	leader, _, _ := strings.Cut(ptr.Deref(lease.Spec.HolderIdentity, ""), "_")
	for _, p := range pods {
		if p.Name == leader {
			return []corev1.Pod{p}, nil
		}
	}
	return nil, fmt.Errorf("the lease names %q, which is not a live replica", leader)
}

// kill SIGKILLs the manager's process in the pod, then deletes the pod at
// once, so that its Deployment replaces it.
func (ch *chaos) kill(ctx context.Context, pod corev1.Pod) error {
	id := ""
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == managerContainer {
			_, id, _ = strings.Cut(cs.ContainerID, "://")
		}
	}
	if id == "" {
		return fmt.Errorf("%s: no container ID for %s", pod.Name, managerContainer)
	}
	pids, err := processesOf(id)
	if err != nil {
		return err
	}
	if len(pids) == 0 {
		return fmt.Errorf("%s: no process in container %s", pod.Name, id)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("%s: SIGKILL %d: %w", pod.Name, pid, err)
		}
	}
	if ch.logs != "" {
		ch.keepLog(ctx, pod.Name, strconv.Itoa(ch.current))
	}
	return client.IgnoreNotFound(ch.client.Delete(ctx, &pod, client.GracePeriodSeconds(0)))
}

// keepLogs keeps the log of every replica, its name prefixed.
func (ch *chaos) keepLogs(ctx context.Context, prefix string) {
	pods, err := e2ekit.ManagerPods(ctx, ch.client)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: the replicas' logs: %v\n", err)
		return
	}
	for _, p := range pods {
		ch.keepLog(ctx, p.Name, prefix)
	}
}

// keepLog writes the manager's log in pod to the logs directory; a failure
// is reported, not fatal: the logs are for reading a slow rollout after.
func (ch *chaos) keepLog(ctx context.Context, pod, prefix string) {
	raw, err := ch.clientset.CoreV1().Pods(managerNamespace).GetLogs(pod, &corev1.PodLogOptions{Container: managerContainer}).DoRaw(ctx)
	if err == nil {
		err = os.WriteFile(filepath.Join(ch.logs, prefix+"-"+pod+".log"), raw, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: keeping the log of %s: %v\n", pod, err)
	}
}

// processesOf returns the processes whose cgroup path ends in the
// container's ID.
func processesOf(id string) ([]int, error) {
	entries, err := filepath.Glob("/proc/[0-9]*/cgroup")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		b, err := os.ReadFile(e)
		if err != nil {
			continue // gone
		}
		if strings.Contains(string(b), "/"+id+"\n") {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(e)))
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func containerImage(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		if c.Name == appContainer {
			return c.Image
		}
	}
	return ""
}

func restartCount(pod *corev1.Pod) int32 {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == appContainer {
			return cs.RestartCount
		}
	}
	return 0
}

func conditionStatus(pod *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func podReady(pod *corev1.Pod) bool {
	return conditionStatus(pod, corev1.PodReady) == corev1.ConditionTrue
}
