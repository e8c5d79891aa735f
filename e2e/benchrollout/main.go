// Command benchrollout times the same image change on the same StatefulSet,
// rolled out three ways on one cluster, side by side:
//
//   - inplace: in a namespace inplace manages, the manager updates the pods
//     in place;
//   - native:  in an unmanaged namespace, the StatefulSet controller's
//     RollingUpdate deletes and recreates each pod;
//   - floor:   in an unmanaged namespace, on OnDelete, this program patches
//     each pod's image itself and waits for it to be Ready again: no readiness
//     gate, no controller; the least an in-place update can cost;
//   - kruise:  the same StatefulSet as OpenKruise's Advanced StatefulSet
//     (apps.kruise.io/v1beta1), in a namespace inplace manages, so that
//     inplace's webhook gives it the readiness gate and Kruise's
//     InPlaceIfPossible: kruise-manager updates the pods in place (make
//     bench-rollout installs Kruise first).
//
// Each StatefulSet is OrderedReady with maxUnavailable 1 and a readiness
// probe every second, so the three go one pod at a time. The clock runs
// from the image change to every pod Ready on the new image (and, for the
// two controllers, the StatefulSet reporting its rollout complete). Pod
// transitions are timed from a watch, for a per-pod breakdown.
//
// It runs where the cluster's API server is reachable (make bench-rollout
// enters the e2e cluster's network namespace).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
)

const gate = corev1.PodConditionType("InPlaceUpdateReady")

func main() {
	replicas := flag.String("replicas", "3,30", "comma-separated StatefulSet sizes")
	runs := flag.Int("runs", 3, "runs of each mode and size; the medians are reported")
	modes := flag.String("modes", "inplace,native,floor", "comma-separated modes: inplace, native, floor, kruise")
	from := flag.String("from", "example.local/inplace-testapp:v1", "the image the StatefulSet starts on")
	to := flag.String("to", "example.local/inplace-testapp:v2", "the image it is changed to")
	timeout := flag.Duration("timeout", 10*time.Minute, "how long one rollout may take")
	flag.Parse()

	sizes, err := parseSizes(*replicas)
	if err == nil {
		err = checkModes(*modes)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchrollout: %v\n", err)
		os.Exit(2)
	}
	cfg, err := config.GetConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchrollout: %v\n", err)
		os.Exit(1)
	}
	cfg.QPS, cfg.Burst = 100, 200
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchrollout: %v\n", err)
		os.Exit(1)
	}
	b := &bench{client: c, from: *from, to: *to, timeout: *timeout}
	results := map[string][]result{}
	for _, n := range sizes {
		for run := 1; run <= *runs; run++ {
			for _, mode := range strings.Split(*modes, ",") {
				r, err := b.run(context.Background(), mode, n, run)
				if err != nil {
					fmt.Fprintf(os.Stderr, "benchrollout: %s, %d pods, run %d: %v\n", mode, n, run, err)
					os.Exit(1)
				}
				flips := 0
				for _, p := range r.pods {
					flips += max(p.leftReady-1, 0)
				}
				fmt.Printf("%-8s %3d pods  run %d  %7.2fs  (%.2fs a pod)  readiness flips: %d\n", mode, n, run, r.total.Seconds(), r.total.Seconds()/float64(n), flips)
				key := fmt.Sprintf("%s/%d", mode, n)
				results[key] = append(results[key], r)
			}
		}
	}
	report(os.Stdout, results, sizes, strings.Split(*modes, ","))
}

func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-replicas: %q is not a positive number", f)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

func checkModes(s string) error {
	for _, m := range strings.Split(s, ",") {
		if m != "inplace" && m != "native" && m != "floor" && m != "kruise" {
			return fmt.Errorf("-modes: unknown mode %q (want inplace, native, floor or kruise)", m)
		}
	}
	return nil
}

type bench struct {
	client   client.WithWatch
	from, to string
	timeout  time.Duration
}

// result is one timed rollout.
type result struct {
	total time.Duration
	// pods are the pods' timelines, from the image change.
	pods []timeline
}

// timeline is when, after the image change, a pod went through each step.
type timeline struct {
	name string
	// notReady: the pod stopped being Ready; gateFalse: its gate closed;
	// patched: its spec changed (generation); started: a new container
	// runs; containerReady: that container is ready; gateTrue: its gate
	// opened; ready: the pod is Ready again on the new container.
	notReady, gateFalse, patched, started, containerReady, gateTrue, ready time.Duration
	// leftReady counts the times the pod went from Ready to not Ready: once
	// for an update, more when readiness flipped back.
	leftReady int
}

func (b *bench) run(ctx context.Context, mode string, replicas, run int) (result, error) {
	ns := fmt.Sprintf("bench-%s-%d-%d-%d", mode, replicas, run, time.Now().Unix()%100000)
	labels := map[string]string{"e2e.inplace.dev/bench": "true"}
	if mode == "inplace" || mode == "kruise" {
		labels["inplace.dev/enabled"] = "true"
	}
	if err := b.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}); err != nil {
		return result{}, err
	}
	defer b.deleteNamespace(ns)

	sts := b.statefulSet(ns, int32(replicas), mode == "floor")
	var workload client.Object = sts
	if mode == "kruise" {
		u, err := advancedStatefulSet(sts)
		if err != nil {
			return result{}, err
		}
		workload = u
	}
	if err := b.client.Create(ctx, workload); err != nil {
		return result{}, err
	}
	if err := b.waitReady(ctx, sts, b.from); err != nil {
		return result{}, fmt.Errorf("before the change: %w", err)
	}
	// Let the pods settle: the kubelet is slower to act on a pod it synced a
	// moment ago, and every mode should start from the same quiet cluster.
	time.Sleep(3 * time.Second)

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	rec, err := b.record(watchCtx, ns)
	if err != nil {
		return result{}, err
	}

	start := time.Now()
	if err := b.changeImage(ctx, workload); err != nil {
		return result{}, err
	}
	if mode == "floor" {
		if err := b.patchPodsOneByOne(ctx, sts); err != nil {
			return result{}, err
		}
	}
	if err := b.waitRolledOut(ctx, sts, workload, mode != "floor"); err != nil {
		return result{}, err
	}
	total := time.Since(start)
	stopWatch()
	return result{total: total, pods: rec.timelines(start)}, nil
}

func (b *bench) statefulSet(ns string, replicas int32, onDelete bool) *appsv1.StatefulSet {
	labels := map[string]string{"app": "bench"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(replicas),
			ServiceName: "bench",
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](5),
					Containers: []corev1.Container{{
						Name:            "app",
						Image:           b.from,
						ImagePullPolicy: corev1.PullIfNotPresent,
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
		},
	}
	if onDelete {
		sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	}
	return sts
}

// advancedStatefulSet is sts as OpenKruise's Advanced StatefulSet: the
// same spec, which Kruise's kind takes as it is.
func advancedStatefulSet(sts *appsv1.StatefulSet) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(sts)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion("apps.kruise.io/v1beta1")
	u.SetKind("StatefulSet")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}

func (b *bench) changeImage(ctx context.Context, workload client.Object) error {
	return b.retryOnConflict(ctx, workload, func() {
		switch w := workload.(type) {
		case *appsv1.StatefulSet:
			w.Spec.Template.Spec.Containers[0].Image = b.to
		case *unstructured.Unstructured:
			containers, _, _ := unstructured.NestedSlice(w.Object, "spec", "template", "spec", "containers")
			containers[0].(map[string]any)["image"] = b.to
			_ = unstructured.SetNestedSlice(w.Object, containers, "spec", "template", "spec", "containers")
		}
	})
}

func (b *bench) retryOnConflict(ctx context.Context, obj client.Object, mutate func()) error {
	for {
		if err := b.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate()
		err := b.client.Update(ctx, obj)
		if !apierrors.IsConflict(err) {
			return err
		}
	}
}

// patchPodsOneByOne is the floor: each pod's image patched, highest ordinal
// first, the next once it is Ready on the new container.
func (b *bench) patchPodsOneByOne(ctx context.Context, sts *appsv1.StatefulSet) error {
	for i := int(*sts.Spec.Replicas) - 1; i >= 0; i-- {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: sts.Namespace, Name: fmt.Sprintf("%s-%d", sts.Name, i)}}
		var restarts int32
		if err := b.retryOnConflict(ctx, pod, func() {
			restarts = pod.Status.ContainerStatuses[0].RestartCount
			pod.Spec.Containers[0].Image = b.to
		}); err != nil {
			return err
		}
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, b.timeout, true, func(ctx context.Context) (bool, error) {
			if err := b.client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return false, err
			}
			cs := pod.Status.ContainerStatuses
			return len(cs) == 1 && cs[0].RestartCount > restarts && cs[0].Ready && podReady(pod), nil
		})
		if err != nil {
			return fmt.Errorf("pod %s: %w", pod.Name, err)
		}
	}
	return nil
}

func (b *bench) waitReady(ctx context.Context, sts *appsv1.StatefulSet, image string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, b.timeout, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := b.client.List(ctx, pods, client.InNamespace(sts.Namespace)); err != nil {
			return false, err
		}
		ready := 0
		for i := range pods.Items {
			if podReady(&pods.Items[i]) && pods.Items[i].Spec.Containers[0].Image == image {
				ready++
			}
		}
		return ready == int(*sts.Spec.Replicas), nil
	})
}

// waitRolledOut waits for every pod Ready on the new image (with a
// restarted or new container) and, for the controllers, the workload to
// report the rollout complete with no hold left.
func (b *bench) waitRolledOut(ctx context.Context, sts *appsv1.StatefulSet, workload client.Object, byController bool) error {
	return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, b.timeout, true, func(ctx context.Context) (bool, error) {
		if err := b.waitReadyOnce(ctx, sts); err != nil {
			return false, nil //nolint:nilerr // not yet
		}
		if !byController {
			return true, nil
		}
		if u, ok := workload.(*unstructured.Unstructured); ok {
			return b.kruiseRolledOut(ctx, u, *sts.Spec.Replicas)
		}
		if err := b.client.Get(ctx, client.ObjectKeyFromObject(sts), sts); err != nil {
			return false, err
		}
		s := sts.Status
		_, held := sts.Annotations["inplace.dev/hold"]
		return !held && s.ObservedGeneration >= sts.Generation && s.UpdatedReplicas == *sts.Spec.Replicas &&
			s.CurrentRevision == s.UpdateRevision && s.ReadyReplicas == *sts.Spec.Replicas, nil
	})
}

// kruiseRolledOut reports whether an Advanced StatefulSet's status says
// its rollout is complete, in the fields of the native kind.
func (b *bench) kruiseRolledOut(ctx context.Context, u *unstructured.Unstructured, replicas int32) (bool, error) {
	if err := b.client.Get(ctx, client.ObjectKeyFromObject(u), u); err != nil {
		return false, err
	}
	n := func(f string) int64 { v, _, _ := unstructured.NestedInt64(u.Object, "status", f); return v }
	s := func(f string) string { v, _, _ := unstructured.NestedString(u.Object, "status", f); return v }
	r := int64(replicas)
	return n("observedGeneration") >= u.GetGeneration() && n("updatedReplicas") == r && n("readyReplicas") == r &&
		s("currentRevision") == s("updateRevision"), nil
}

func (b *bench) waitReadyOnce(ctx context.Context, sts *appsv1.StatefulSet) error {
	pods := &corev1.PodList{}
	if err := b.client.List(ctx, pods, client.InNamespace(sts.Namespace)); err != nil {
		return err
	}
	n := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && podReady(p) && p.Spec.Containers[0].Image == b.to &&
			len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready {
			n++
		}
	}
	if n != int(*sts.Spec.Replicas) {
		return errors.New("not yet")
	}
	return nil
}

func (b *bench) deleteNamespace(ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := b.client.Delete(ctx, obj); err != nil {
		return
	}
	// Wait, so that the next run starts on a quiet node.
	_ = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(b.client.Get(ctx, client.ObjectKeyFromObject(obj), obj)), nil
	})
}

// recorder keeps, per pod name, when the watch saw each transition.
type recorder struct {
	mu     sync.Mutex
	events map[string]*podEvents
}

type podEvents struct {
	notReady, gateFalse, patched, started, containerReady, gateTrue, ready time.Time
	// wasReady is the last Ready seen; leftReady counts the times it went
	// from Ready to not Ready after the change.
	wasReady    bool
	leftReady   int
	generation  int64
	containerID string
	uid         string
}

func (b *bench) record(ctx context.Context, ns string) (*recorder, error) {
	w, err := b.client.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns))
	if err != nil {
		return nil, err
	}
	rec := &recorder{events: map[string]*podEvents{}}
	initial := map[string]*podEvents{}
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				if ev.Type != watch.Added && ev.Type != watch.Modified {
					continue
				}
				pod, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rec.observe(pod, initial, time.Now())
			}
		}
	}()
	return rec, nil
}

// observe records the first time after the change that a pod (by name, so
// across a recreation) reaches each step.
func (r *recorder) observe(pod *corev1.Pod, initial map[string]*podEvents, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	first, seen := initial[pod.Name]
	cid := ""
	if len(pod.Status.ContainerStatuses) == 1 {
		cid = pod.Status.ContainerStatuses[0].ContainerID
	}
	if !seen {
		initial[pod.Name] = &podEvents{generation: pod.Generation, containerID: cid, uid: string(pod.UID)}
		r.events[pod.Name] = &podEvents{wasReady: podReady(pod)}
		return
	}
	e := r.events[pod.Name]
	if now := podReady(pod); e.wasReady && !now {
		e.leftReady++
		e.wasReady = false
	} else if now {
		e.wasReady = true
	}
	set := func(t *time.Time, cond bool) {
		if cond && t.IsZero() {
			*t = now
		}
	}
	ready := podReady(pod)
	set(&e.notReady, !ready)
	if c := condition(pod, gate); c != nil {
		set(&e.gateFalse, c.Status == corev1.ConditionFalse)
		set(&e.gateTrue, !e.gateFalse.IsZero() && c.Status == corev1.ConditionTrue)
	}
	set(&e.patched, string(pod.UID) == first.uid && pod.Generation > first.generation)
	if len(pod.Status.ContainerStatuses) == 1 {
		cs := pod.Status.ContainerStatuses[0]
		fresh := cs.ContainerID != "" && cs.ContainerID != first.containerID
		set(&e.started, fresh && cs.State.Running != nil)
		set(&e.containerReady, fresh && cs.Ready)
		set(&e.ready, fresh && cs.Ready && ready)
	}
}

func (r *recorder) timelines(start time.Time) []timeline {
	r.mu.Lock()
	defer r.mu.Unlock()
	since := func(t time.Time) time.Duration {
		if t.IsZero() {
			return -1
		}
		return t.Sub(start)
	}
	var out []timeline
	for name, e := range r.events {
		out = append(out, timeline{
			name: name, notReady: since(e.notReady), gateFalse: since(e.gateFalse), patched: since(e.patched),
			started: since(e.started), containerReady: since(e.containerReady), gateTrue: since(e.gateTrue), ready: since(e.ready),
			leftReady: e.leftReady,
		})
	}
	slices.SortFunc(out, func(a, b timeline) int { return strings.Compare(a.name, b.name) })
	return out
}

func podReady(pod *corev1.Pod) bool {
	c := condition(pod, corev1.PodReady)
	return c != nil && c.Status == corev1.ConditionTrue
}

func condition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// report prints the medians and the ratios, and the median per-pod
// breakdown of each mode.
func report(out *os.File, results map[string][]result, sizes []int, modes []string) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nmode\tpods\tmedian total\tper pod\tvs inplace\tinplace vs floor")
	for _, n := range sizes {
		base := medianTotal(results[fmt.Sprintf("inplace/%d", n)])
		floor := medianTotal(results[fmt.Sprintf("floor/%d", n)])
		for _, m := range modes {
			t := medianTotal(results[fmt.Sprintf("%s/%d", m, n)])
			vs, floorRatio := "", ""
			if base > 0 {
				vs = fmt.Sprintf("%.2fx", t.Seconds()/base.Seconds())
			}
			if m == "inplace" && floor > 0 {
				floorRatio = fmt.Sprintf("%.2fx", t.Seconds()/floor.Seconds())
			}
			fmt.Fprintf(w, "%s\t%d\t%.2fs\t%.2fs\t%s\t%s\n", m, n, t.Seconds(), t.Seconds()/float64(n), vs, floorRatio)
		}
	}
	w.Flush()

	fmt.Fprintln(out, "\nPer pod, median seconds from the pod's own first step (the pod leaving Ready, or for the floor its patch):")
	w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "mode\tpods\tgate closed\tspec patched\tcontainer running\tcontainer ready\tgate open\tpod Ready\tgap to the next pod")
	for _, n := range sizes {
		for _, m := range modes {
			var steps [6][]float64
			var gaps []float64
			for _, r := range results[fmt.Sprintf("%s/%d", m, n)] {
				gaps = append(gaps, interPodGaps(r.pods)...)
				for _, p := range r.pods {
					origin := p.notReady
					if origin < 0 || (p.patched >= 0 && p.patched < origin) {
						origin = p.patched
					}
					for i, d := range []time.Duration{p.gateFalse, p.patched, p.started, p.containerReady, p.gateTrue, p.ready} {
						if d >= 0 && origin >= 0 {
							steps[i] = append(steps[i], (d - origin).Seconds())
						}
					}
				}
			}
			fmt.Fprintf(w, "%s\t%d", m, n)
			for _, s := range steps {
				if len(s) == 0 {
					fmt.Fprint(w, "\t-")
					continue
				}
				fmt.Fprintf(w, "\t%.2f", median(s))
			}
			if len(gaps) > 0 {
				fmt.Fprintf(w, "\t%.2f", median(gaps))
			} else {
				fmt.Fprint(w, "\t-")
			}
			fmt.Fprintln(w)
		}
	}
	w.Flush()
}

// interPodGaps are, pod after pod in the order they left Ready (or were
// patched), the seconds from one pod Ready again to the next one's first step:
// the rollout's own overhead between pods.
func interPodGaps(pods []timeline) []float64 {
	start := func(p timeline) time.Duration {
		if p.notReady >= 0 && (p.patched < 0 || p.notReady < p.patched) {
			return p.notReady
		}
		return p.patched
	}
	sorted := slices.Clone(pods)
	slices.SortFunc(sorted, func(a, b timeline) int { return int(start(a) - start(b)) })
	var gaps []float64
	for i := 1; i < len(sorted); i++ {
		if prev, cur := sorted[i-1].ready, start(sorted[i]); prev >= 0 && cur >= 0 {
			gaps = append(gaps, (cur - prev).Seconds())
		}
	}
	return gaps
}

func medianTotal(rs []result) time.Duration {
	var s []float64
	for _, r := range rs {
		s = append(s, r.total.Seconds())
	}
	if len(s) == 0 {
		return 0
	}
	return time.Duration(median(s) * float64(time.Second))
}

func median(s []float64) float64 {
	s = slices.Clone(s)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
