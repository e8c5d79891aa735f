// Command flipstress rolls a StatefulSet's image back and forth in place
// until a number of pod updates is reached, with the machine loaded, and
// counts what must never happen to a pod updated in place:
//
//   - a readiness flip: a pod that leaves Ready more than once for one
//     update (it came back Ready before its update was done, and left
//     again);
//   - Ready on the replaced container: the pod reported Ready once the
//     kubelet had taken in the new image (its observedGeneration) while it
//     still reported the container it replaces (in a preStop hook, say),
//     which sends traffic to a container about to stop;
//   - a recreated pod (another UID) or a restart count that is not one per
//     update.
//
// The pods have a preStop hook that sleeps (-prestop), so that the replaced
// container runs on for seconds after the kubelet has taken in the patch,
// as production pods that drain do. -hog spins that many goroutines beside
// the rollout (a CPU hog on the same machine), and the StatefulSet rolls
// -max-unavailable pods at a time (Parallel).
//
// The kubelet keeps its restart back-off per pod, container and image
// reference (pkg/kubelet/kuberuntime, doBackOff): a container restarted
// again on a reference it ran within ten minutes waits 10 s, then 20 s, ...
// before it starts, whatever the cause of the restart. Flipping between two
// references would measure that; -images names the references to go
// through in turn (make stress-flips passes twenty tags of v1 and v2).
//
// It exits 1 when anything of the above was seen, and prints the counts
// and the timings either way. make stress-flips runs it on the e2e cluster.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
)

const container = "app"

var verbose *bool

// stallAfter is how long a pod may be not Ready for one update before it
// counts as stalled: the preStop sleep and a few seconds more are normal.
var stallAfter = 30 * time.Second

// traceLine is one version of a pod, as the trace of -v prints it.
func traceLine(now time.Time, pod *corev1.Pod) string {
	gate, readyCond := "-", "-"
	for _, c := range pod.Status.Conditions {
		switch c.Type {
		case "InPlaceUpdateReady":
			gate = string(c.Status) + "/" + c.Reason
		case corev1.PodReady:
			readyCond = string(c.Status) + "/" + c.Reason
		}
	}
	id, state := "-", "-"
	if cs := status(pod); cs != nil {
		id = cs.ContainerID
		if len(id) > 20 {
			id = id[len(id)-8:]
		}
		switch {
		case cs.State.Running != nil:
			state = fmt.Sprintf("running ready=%t", cs.Ready)
		case cs.State.Waiting != nil:
			state = "waiting " + cs.State.Waiting.Reason
		case cs.State.Terminated != nil:
			state = "terminated " + cs.State.Terminated.Reason
		}
	}
	_, updating := pod.Annotations["inplace.dev/update-state"]
	return fmt.Sprintf("%s rv=%s gen=%d obs=%d image=%s rev=%s updating=%t gate=%s Ready=%s container=%s %s",
		now.Format("15:04:05.000"), pod.ResourceVersion, pod.Generation, pod.Status.ObservedGeneration,
		pod.Spec.Containers[0].Image[len(pod.Spec.Containers[0].Image)-2:], pod.Labels["controller-revision-hash"],
		updating, gate, readyCond, id, state)
}

func main() {
	pods := flag.Int("pods", 10, "replicas of the StatefulSet")
	updates := flag.Int("updates", 200, "pod updates to run, in whole rollouts of every pod")
	prestop := flag.Int("prestop", 3, "seconds the pods' preStop hook sleeps")
	maxUnavailable := flag.Int("max-unavailable", 2, "the StatefulSet's maxUnavailable (Parallel)")
	hog := flag.Int("hog", runtime.NumCPU(), "goroutines spinning beside the rollouts: a CPU hog (0: none)")
	imageList := flag.String("images", "example.local/inplace-testapp:v1,example.local/inplace-testapp:v2",
		"comma-separated images the StatefulSet starts on and goes through in turn")
	timeout := flag.Duration("timeout", 5*time.Minute, "how long one rollout may take")
	keep := flag.Bool("keep", false, "keep the namespace at the end")
	verbose = flag.Bool("v", false, "print every version seen of a pod that flipped")
	flag.Parse()
	if *pods < 1 || *updates < 1 || *prestop < 0 || *maxUnavailable < 1 || *hog < 0 {
		fmt.Fprintln(os.Stderr, "flipstress: -pods, -updates and -max-unavailable must be positive; -prestop and -hog not negative")
		os.Exit(2)
	}
	cfg, err := config.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "flipstress: %v\n", err)
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = 50, 100
	// The API server's warnings (inplace keeping its rollout record against a
	// stale copy in an update) are expected here; not worth a log.
	cfg.WarningHandler = rest.NoWarnings{}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "flipstress: %v\n", err)
		os.Exit(1)
	}
	images := strings.Split(*imageList, ",")
	if len(images) < 2 {
		fmt.Fprintln(os.Stderr, "flipstress: -images: want at least two images")
		os.Exit(2)
	}
	s := &stress{client: c, pods: *pods, prestop: *prestop, maxUnavailable: *maxUnavailable, images: images, timeout: *timeout}
	ctx := context.Background()
	stopHog := spin(*hog)
	res, err := s.run(ctx, *updates, *keep)
	stopHog()
	if err != nil {
		fmt.Fprintf(os.Stderr, "flipstress: %v\n", err)
		os.Exit(1)
	}
	res.print(os.Stdout)
	if res.bad() {
		os.Exit(1)
	}
}

// spin keeps n goroutines busy until the returned function is called.
func spin(n int) (stop func()) {
	var done atomic.Bool
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 0
			for !done.Load() {
				for i := range 1 << 16 {
					x += i
				}
			}
			_ = x
		}()
	}
	return func() { done.Store(true); wg.Wait() }
}

type stress struct {
	client         client.WithWatch
	pods           int
	prestop        int
	maxUnavailable int
	images         []string
	timeout        time.Duration
	namespace      string
	metrics        *e2ekit.MetricsScraper
}

func (s *stress) run(ctx context.Context, updates int, keep bool) (*result, error) {
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	s.namespace = "flipstress-" + hex.EncodeToString(suffix)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.namespace, Labels: map[string]string{"inplace.dev/enabled": "true"}}}
	if err := s.client.Create(ctx, ns); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", s.namespace, err)
	}
	if !keep {
		defer func() { _ = s.client.Delete(context.Background(), ns) }()
	}
	metrics, cleanup, err := e2ekit.NewMetricsScraper(ctx, s.client, s.namespace)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	s.metrics = metrics
	sts := s.statefulSet()
	if err := s.client.Create(ctx, sts); err != nil {
		return nil, fmt.Errorf("creating the StatefulSet: %w", err)
	}
	if err := s.waitRolledOut(ctx, sts); err != nil {
		return nil, fmt.Errorf("waiting for the first rollout: %w", err)
	}
	before, err := s.podUIDs(ctx)
	if err != nil {
		return nil, err
	}

	w, err := s.watch(ctx)
	if err != nil {
		return nil, err
	}
	res := &result{pods: s.pods, prestop: s.prestop, maxUnavailable: s.maxUnavailable}
	refusedBefore := s.refusedDeletes(ctx)
	image := 1
	for res.updates < updates {
		started := time.Now()
		to := s.images[image]
		if err := s.setImage(ctx, sts, to); err != nil {
			return nil, err
		}
		if err := s.waitRolledOut(ctx, sts); err != nil {
			w.stop()
			return nil, fmt.Errorf("rollout %d: %w", res.rollouts+1, err)
		}
		res.rolloutTimes = append(res.rolloutTimes, time.Since(started))
		res.rollouts++
		res.updates += s.pods
		image = (image + 1) % len(s.images)
		fmt.Printf("rollout %3d: %d pods to %s in %.2fs\n", res.rollouts, s.pods, to, time.Since(started).Seconds())
	}
	time.Sleep(time.Second) // the last events
	tracks := w.stop()

	after, err := s.podUIDs(ctx)
	if err != nil {
		return nil, err
	}
	for name, uid := range before {
		if after[name] != uid {
			res.recreated = append(res.recreated, name)
		}
	}
	restarts, err := s.restarts(ctx)
	if err != nil {
		return nil, err
	}
	for name, n := range restarts {
		if int(n) != res.rollouts {
			res.badRestarts = append(res.badRestarts, fmt.Sprintf("%s restarted %d times in %d rollouts", name, n, res.rollouts))
		}
	}
	for name, t := range tracks {
		res.flips += max(t.notReadySpans-t.updates, 0)
		stalled := slices.ContainsFunc(t.durations, func(d time.Duration) bool { return d > stallAfter })
		if stalled {
			res.stalls++
		}
		if t.notReadySpans > t.updates || t.readyOnOld > 0 || stalled {
			res.flipped = append(res.flipped, fmt.Sprintf("%s: %d not-Ready spans for %d updates, Ready %d times on a replaced container", name, t.notReadySpans, t.updates, t.readyOnOld))
			if *verbose {
				for _, l := range t.trace {
					fmt.Printf("    %s %s\n", name, l)
				}
			}
		}
		res.readyOnOld += t.readyOnOld
		res.updateTimes = append(res.updateTimes, t.durations...)
	}
	res.failedDeletes, err = s.failedDeletes(ctx)
	if err != nil {
		return nil, err
	}
	res.refused = s.refusedDeletes(ctx) - refusedBefore
	return res, nil
}

// refusedDeletes sums the manager replicas' inplace_deletes_refused_total
// for StatefulSets. The FailedDelete events undercount: the controller's
// event recorder lets 25 through per object, then one every five minutes.
// -1 when it cannot be read.
func (s *stress) refusedDeletes(ctx context.Context) int {
	n, err := s.metrics.Sum(ctx, s.client, `inplace_deletes_refused_total{kind="StatefulSet"} `)
	if err != nil {
		return -1
	}
	return int(n)
}

func (s *stress) statefulSet() *appsv1.StatefulSet {
	labels := map[string]string{"app": "stress"}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "stress", Namespace: s.namespace},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            ptr.To(int32(s.pods)),
			ServiceName:         "stress",
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{
					MaxUnavailable: ptr.To(intstr.FromInt(s.maxUnavailable)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To(int64(s.prestop + 10)),
					Containers: []corev1.Container{{
						Name:            container,
						Image:           s.images[0],
						ImagePullPolicy: corev1.PullNever,
						Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
						Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
							Sleep: &corev1.SleepAction{Seconds: int64(s.prestop)},
						}},
					}},
				},
			},
		},
	}
}

func (s *stress) setImage(ctx context.Context, sts *appsv1.StatefulSet, image string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cur := &appsv1.StatefulSet{}
		if err := s.client.Get(ctx, client.ObjectKeyFromObject(sts), cur); err != nil {
			return false, nil
		}
		cur.Spec.Template.Spec.Containers[0].Image = image
		return s.client.Update(ctx, cur) == nil, nil
	})
}

// waitRolledOut waits for the StatefulSet to report every pod updated and
// Ready, and for every pod to be Ready with no in-place update recorded.
func (s *stress) waitRolledOut(ctx context.Context, sts *appsv1.StatefulSet) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, s.timeout, true, func(ctx context.Context) (bool, error) {
		cur := &appsv1.StatefulSet{}
		if err := s.client.Get(ctx, client.ObjectKeyFromObject(sts), cur); err != nil {
			last = err.Error()
			return false, nil
		}
		st := cur.Status
		if st.ObservedGeneration < cur.Generation || st.UpdatedReplicas != int32(s.pods) || st.ReadyReplicas != int32(s.pods) ||
			st.CurrentRevision != st.UpdateRevision {
			last = fmt.Sprintf("status: generation %d/%d, %d updated, %d ready", st.ObservedGeneration, cur.Generation, st.UpdatedReplicas, st.ReadyReplicas)
			return false, nil
		}
		list := &corev1.PodList{}
		if err := s.client.List(ctx, list, client.InNamespace(s.namespace)); err != nil {
			last = err.Error()
			return false, nil
		}
		for _, p := range list.Items {
			if _, updating := p.Annotations["inplace.dev/update-state"]; updating || !ready(&p) {
				last = fmt.Sprintf("pod %s updating or not Ready", p.Name)
				return false, nil
			}
		}
		return len(list.Items) == s.pods, nil
	})
	if err != nil {
		return fmt.Errorf("%w (%s)", err, last)
	}
	return nil
}

func (s *stress) podUIDs(ctx context.Context) (map[string]types.UID, error) {
	list := &corev1.PodList{}
	if err := s.client.List(ctx, list, client.InNamespace(s.namespace)); err != nil {
		return nil, err
	}
	uids := map[string]types.UID{}
	for _, p := range list.Items {
		uids[p.Name] = p.UID
	}
	return uids, nil
}

func (s *stress) restarts(ctx context.Context) (map[string]int32, error) {
	list := &corev1.PodList{}
	if err := s.client.List(ctx, list, client.InNamespace(s.namespace)); err != nil {
		return nil, err
	}
	out := map[string]int32{}
	for _, p := range list.Items {
		if cs := status(&p); cs != nil {
			out[p.Name] = cs.RestartCount
		}
	}
	return out, nil
}

func (s *stress) failedDeletes(ctx context.Context) (int, error) {
	list := &corev1.EventList{}
	if err := s.client.List(ctx, list, client.InNamespace(s.namespace)); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range list.Items {
		if e.Reason == "FailedDelete" {
			n += int(max(e.Count, 1))
		}
	}
	return n, nil
}

// track is what the watch saw of one pod.
type track struct {
	updates       int // spec image changes
	notReadySpans int // times the pod left Ready
	readyOnOld    int // Ready seen with the new image in the spec and the replaced container reported
	durations     []time.Duration

	// trace is every version of the pod seen, for the pods that flipped.
	trace []string

	ready      bool
	image      string
	oldID      string // the container the current update replaces, "" when none
	leftReady  time.Time
	updateOpen bool
}

type podWatch struct {
	stop func() map[string]*track
}

// watch follows the namespace's pods and keeps a track of each.
func (s *stress) watch(ctx context.Context) (*podWatch, error) {
	w, err := s.client.Watch(ctx, &corev1.PodList{}, client.InNamespace(s.namespace))
	if err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	tracks := map[string]*track{}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			if _, prepull := pod.Labels["inplace.dev/prepull-for"]; prepull {
				continue // a prepull pod is none of the workload's
			}
			now := time.Now()
			mu.Lock()
			t := tracks[pod.Name]
			cs := status(pod)
			if t == nil {
				t = &track{ready: ready(pod), image: pod.Spec.Containers[0].Image}
				tracks[pod.Name] = t
				mu.Unlock()
				continue
			}
			t.trace = append(t.trace, traceLine(now, pod))
			image := pod.Spec.Containers[0].Image
			if image != t.image {
				t.updates++
				t.image = image
				t.oldID = ""
				if cs != nil {
					t.oldID = cs.ContainerID
				}
				t.updateOpen = true
			}
			r := ready(pod)
			if t.ready && !r {
				t.notReadySpans++
				t.leftReady = now
			}
			if r && t.updateOpen && cs != nil && cs.ContainerID == t.oldID && pod.Status.ObservedGeneration >= pod.Generation {
				t.readyOnOld++
			}
			if r && !t.ready && t.updateOpen && cs != nil && cs.ContainerID != t.oldID {
				t.updateOpen = false
				if !t.leftReady.IsZero() {
					t.durations = append(t.durations, now.Sub(t.leftReady))
				}
			}
			t.ready = r
			mu.Unlock()
		}
	}()
	return &podWatch{stop: func() map[string]*track {
		w.Stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return tracks
	}}, nil
}

func ready(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func status(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == container {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

type result struct {
	pods, prestop, maxUnavailable int
	rollouts, updates             int
	flips, readyOnOld             int
	stalls                        int
	flipped, recreated            []string
	badRestarts                   []string
	failedDeletes, refused        int
	rolloutTimes, updateTimes     []time.Duration
}

func (r *result) bad() bool {
	return r.flips > 0 || r.readyOnOld > 0 || r.stalls > 0 || len(r.recreated) > 0 || len(r.badRestarts) > 0
}

func (r *result) print(out *os.File) {
	fmt.Fprintf(out, "\n%d pod updates in %d rollouts of %d pods (Parallel, maxUnavailable %d, preStop sleep %ds)\n",
		r.updates, r.rollouts, r.pods, r.maxUnavailable, r.prestop)
	fmt.Fprintf(out, "  readiness flips:                 %d\n", r.flips)
	fmt.Fprintf(out, "  Ready on the replaced container: %d\n", r.readyOnOld)
	fmt.Fprintf(out, "  pods not Ready for over %v:      %d\n", stallAfter, r.stalls)
	fmt.Fprintf(out, "  pods recreated:                  %d\n", len(r.recreated))
	fmt.Fprintf(out, "  restart counts off:              %d\n", len(r.badRestarts))
	fmt.Fprintf(out, "  deletes of the StatefulSet controller refused: %d (%.1f a pod update); FailedDelete events: %d\n",
		r.refused, float64(r.refused)/float64(max(r.updates, 1)), r.failedDeletes)
	fmt.Fprintf(out, "  rollout time: median %.2fs, max %.2fs\n", median(r.rolloutTimes).Seconds(), slices.Max(append(r.rolloutTimes, 0)).Seconds())
	fmt.Fprintf(out, "  pod not Ready per update: median %.2fs, max %.2fs\n", median(r.updateTimes).Seconds(), slices.Max(append(r.updateTimes, 0)).Seconds())
	for _, l := range slices.Concat(r.flipped, r.recreated, r.badRestarts) {
		fmt.Fprintf(out, "  ! %s\n", l)
	}
	if !r.bad() {
		fmt.Fprintln(out, "OK: no flip, no Ready on a replaced container, no stall, no pod recreated")
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
