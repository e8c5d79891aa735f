// Command benchgate measures what the InPlaceUpdateReady readiness gate
// costs a new pod: the time from its containers being ready to the pod
// being Ready, for the pods of a Deployment in a namespace inplace manages
// (each pod gets the gate at creation, and the manager opens it) beside the
// same Deployment in an unmanaged namespace (no gate), in the same run,
// alternating. A kubelet that finds the gate already open reports both in
// the same status write: no cost; one that finds it closed reports the pod
// Ready only on its next status write after the manager opened it.
//
// Times are when this program's pod watch saw each status: containers ready
// (every container status ready, the ContainersReady condition True) and the
// pod Ready. It reports, per mode, the p50, p99 and maximum of that gap and
// of the time from creation to Ready, over every pod of every run.
//
// It runs where the cluster's API server is reachable (make bench-gate
// enters the e2e cluster's network namespace).
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
)

func main() {
	pods := flag.Int("pods", 30, "pods of each Deployment")
	runs := flag.Int("runs", 3, "runs of each mode")
	image := flag.String("image", "example.local/inplace-testapp:v1", "the pods' image (present on every node)")
	timeout := flag.Duration("timeout", 5*time.Minute, "how long the pods of one run may take to be Ready")
	flag.Parse()
	if *pods < 1 || *runs < 1 {
		fmt.Fprintln(os.Stderr, "benchgate: -pods and -runs: want 1 or more")
		os.Exit(2)
	}
	c, err := e2ekit.Client()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchgate: %v\n", err)
		os.Exit(1)
	}
	b := &bench{client: c, image: *image, pods: *pods, timeout: *timeout}
	samples := map[string][]sample{}
	modes := []string{"managed", "unmanaged"}
	for run := 1; run <= *runs; run++ {
		for _, mode := range modes {
			s, err := b.run(context.Background(), mode, run)
			if err != nil {
				fmt.Fprintf(os.Stderr, "benchgate: %s, run %d: %v\n", mode, run, err)
				os.Exit(1)
			}
			gaps, ready := column(s, gapOf), column(s, readyOf)
			fmt.Printf("%-9s run %d  %d pods  containers ready -> Ready: p50 %v, max %v, %d pods delayed  created -> Ready: p50 %v\n",
				mode, run, len(s), percentile(gaps, 50), percentile(gaps, 100), delayed(gaps), percentile(ready, 50))
			samples[mode] = append(samples[mode], s...)
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nmode\tpods\tcontainers ready -> Ready p50\tp99\tmax\tpods it delayed\tcreated -> Ready p50\tp99\tcreated -> gate open p50\tp99")
	for _, mode := range modes {
		s := samples[mode]
		gaps, ready := column(s, gapOf), column(s, readyOf)
		gateP50, gateP99 := "-", "-"
		if gates := slices.DeleteFunc(column(s, gateOf), func(d time.Duration) bool { return d < 0 }); len(gates) > 0 {
			gateP50, gateP99 = percentile(gates, 50).String(), percentile(gates, 99).String()
		}
		fmt.Fprintf(w, "%s\t%d\t%v\t%v\t%v\t%d\t%v\t%v\t%s\t%s\n", mode, len(s),
			percentile(gaps, 50), percentile(gaps, 99), percentile(gaps, 100), delayed(gaps), percentile(ready, 50), percentile(ready, 99), gateP50, gateP99)
	}
	w.Flush()
}

type bench struct {
	client  client.WithWatch
	image   string
	pods    int
	timeout time.Duration
}

// sample is one pod: from the containers ready to the pod Ready (gap),
// from its creation, as the watch saw it added, to Ready (ready), and, for
// a gated pod, to its gate open (gate; -1 without a gate).
type sample struct {
	gap, ready, gate time.Duration
}

func gapOf(s sample) time.Duration   { return s.gap }
func gateOf(s sample) time.Duration  { return s.gate }
func readyOf(s sample) time.Duration { return s.ready }

func column(s []sample, f func(sample) time.Duration) []time.Duration {
	out := make([]time.Duration, len(s))
	for i := range s {
		out[i] = f(s[i])
	}
	return out
}

// delayed counts the pods whose Ready came after their containers'.
func delayed(gaps []time.Duration) int {
	n := 0
	for _, g := range gaps {
		if g > 0 {
			n++
		}
	}
	return n
}

// percentile is the p-th percentile of ds (nearest rank), to the
// millisecond; 100 is the maximum.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)].Round(time.Millisecond)
}

func (b *bench) run(ctx context.Context, mode string, run int) ([]sample, error) {
	ns := fmt.Sprintf("benchgate-%s-%d-%d", mode, run, time.Now().Unix()%100000)
	labels := map[string]string{"e2e.inplace.dev/bench": "true"}
	if mode == "managed" {
		labels["inplace.dev/enabled"] = "true"
	}
	if err := b.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}); err != nil {
		return nil, err
	}
	defer e2ekit.DeleteNamespace(b.client, ns)

	w, err := b.client.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns))
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	rec := &recorder{pods: map[string]*seen{}}
	go rec.consume(w)

	if err := b.client.Create(ctx, b.deployment(ns)); err != nil {
		return nil, err
	}
	var out []sample
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, b.timeout, true, func(context.Context) (bool, error) {
		out = rec.samples()
		return len(out) >= b.pods, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%d of %d pods Ready: %w", len(out), b.pods, err)
	}
	if mode == "managed" && !rec.gated() {
		return nil, fmt.Errorf("no pod of the managed namespace %s has the InPlaceUpdateReady gate: is inplace-manager installed?", ns)
	}
	return out, nil
}

func (b *bench) deployment(ns string) *appsv1.Deployment {
	labels := map[string]string{"app": "gate"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "gate", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(b.pods)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To(int64(1)),
					Containers: []corev1.Container{{
						Name:            "app",
						Image:           b.image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
}

// recorder keeps, by pod UID, when the watch first saw the pod, its
// containers ready and the pod Ready.
type recorder struct {
	mu        sync.Mutex
	pods      map[string]*seen
	withGates int
}

type seen struct {
	added, containersReady, ready, gateOpen time.Time
}

func (r *recorder) consume(w watch.Interface) {
	for ev := range w.ResultChan() {
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok || ev.Type == watch.Deleted {
			continue
		}
		now := time.Now()
		r.mu.Lock()
		s := r.pods[string(pod.UID)]
		if s == nil {
			s = &seen{added: now}
			r.pods[string(pod.UID)] = s
			if len(pod.Spec.ReadinessGates) > 0 {
				r.withGates++
			}
		}
		if s.containersReady.IsZero() && conditionTrue(pod, corev1.ContainersReady) {
			s.containersReady = now
		}
		if s.ready.IsZero() && conditionTrue(pod, corev1.PodReady) {
			s.ready = now
		}
		if s.gateOpen.IsZero() && conditionTrue(pod, gate) {
			s.gateOpen = now
		}
		r.mu.Unlock()
	}
}

func (r *recorder) samples() []sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sample
	for _, s := range r.pods {
		if s.ready.IsZero() || s.containersReady.IsZero() {
			continue
		}
		g := time.Duration(-1)
		if !s.gateOpen.IsZero() {
			g = s.gateOpen.Sub(s.added)
		}
		out = append(out, sample{gap: s.ready.Sub(s.containersReady), ready: s.ready.Sub(s.added), gate: g})
	}
	return out
}

func (r *recorder) gated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.withGates > 0
}

// gate is inplace's readiness gate, spelt out: the bench measures the
// product from outside.
const gate = corev1.PodConditionType("InPlaceUpdateReady")

func conditionTrue(pod *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
