// Command benchrollout times the same image change on the same workload,
// rolled out several ways on one cluster, side by side. For a StatefulSet
// (-kinds statefulset):
//
//   - inplace: in a namespace inplace manages, the manager updates the pods
//     in place, each node pulling the new image ahead (the default);
//   - noprepull: the same, the workload turning pulling ahead off
//     (inplace.dev/prepull: "false"): each pod pulls as it updates;
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
// For a Deployment (-kinds deployment), maxSurge 1 and maxUnavailable 1:
// inplace and native as above, and kruise as OpenKruise's CloneSet of the
// same pods (InPlaceIfPossible, maxUnavailable 1). For a DaemonSet (-kinds
// daemonset), maxUnavailable 1, one pod per node whatever -replicas: inplace
// and native. Every run also counts the pods created and deleted.
//
// With -change resources, the change is the container's CPU (request 50m
// to 100m, limit 200m to 300m, resizePolicy NotRequired) instead of its
// image: inplace resizes each pod through pods/resize, without a restart,
// and natively each pod is recreated; no floor and no Kruise then. A pod
// has rolled out once the kubelet reports the new limit in the container's
// status. Every run counts the pods that left Ready.
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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
)

const gate = corev1.PodConditionType("InPlaceUpdateReady")

func main() {
	replicas := flag.String("replicas", "3,30", "comma-separated workload sizes (a DaemonSet has one pod per node whatever it says)")
	kinds := flag.String("kinds", "statefulset", "comma-separated workload kinds: statefulset, deployment, daemonset")
	runs := flag.Int("runs", 3, "runs of each mode and size; the medians are reported")
	modes := flag.String("modes", "inplace,native,floor", "comma-separated modes: inplace, native, floor, kruise")
	from := flag.String("from", "example.local/inplace-testapp:v1", "the image the StatefulSet starts on")
	to := flag.String("to", "example.local/inplace-testapp:v2", "the image it is changed to")
	timeout := flag.Duration("timeout", 10*time.Minute, "how long one rollout may take")
	change := flag.String("change", "image", "what changes in the template: image, or resources (the container's CPU)")
	push := flag.String("push", "", "e2e/cluster/registry.sh: each run pushes the test application's v1 and v2 to the cluster's registry under tags of its own and rolls from one to the other, so that every node pulls the new image for real (-from and -to are then ignored)")
	flag.Parse()

	sizes, err := parseSizes(*replicas)
	if err == nil {
		err = checkModes(*modes)
	}
	if err == nil {
		err = checkKinds(*kinds)
	}
	if err == nil && *change != "image" && *change != "resources" {
		err = fmt.Errorf("-change: unknown change %q (want image or resources)", *change)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchrollout: %v\n", err)
		os.Exit(2)
	}
	c, err := e2ekit.Client()
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchrollout: %v\n", err)
		os.Exit(1)
	}
	b := &bench{client: c, from: *from, to: *to, timeout: *timeout, resources: *change == "resources", push: *push}
	for _, kind := range strings.Split(*kinds, ",") {
		kindSizes := sizes
		if kind == "daemonset" {
			kindSizes = []int{0} // one pod per node
		}
		results := map[string][]result{}
		var ran []string
		for _, n := range kindSizes {
			for run := 1; run <= *runs; run++ {
				for _, mode := range strings.Split(*modes, ",") {
					if !supported(kind, mode) || b.resources && mode != "inplace" && mode != "noprepull" && mode != "native" {
						continue
					}
					r, err := b.run(context.Background(), kind, mode, n, run)
					if err != nil {
						fmt.Fprintf(os.Stderr, "benchrollout: %s %s, %d pods, run %d: %v\n", kind, mode, n, run, err)
						os.Exit(1)
					}
					flips, left := 0, 0
					for _, p := range r.pods {
						flips += max(p.leftReady-1, 0)
						left += min(p.leftReady, 1)
					}
					fmt.Printf("%-11s %-8s %3d pods  run %d  %7.2fs  (%.2fs a pod)  left Ready: %d  readiness flips: %d  short of Ready: %.1f pod-s  pods created %d, deleted %d  prepull pods %d\n",
						kind, mode, r.size, run, r.total.Seconds(), r.total.Seconds()/float64(r.size), left, flips, r.short.Seconds(), r.created, r.deleted, r.prepulls)
					key := fmt.Sprintf("%s/%d", mode, n)
					results[key] = append(results[key], r)
					if !slices.Contains(ran, mode) {
						ran = append(ran, mode)
					}
				}
			}
		}
		fmt.Printf("\n%s:", kind)
		report(os.Stdout, results, kindSizes, ran)
	}
}

// supported reports whether a mode applies to a kind: the floor patches a
// StatefulSet's pods by ordinal; Kruise's in-place kind for a DaemonSet
// is not measured here.
func supported(kind, mode string) bool {
	switch mode {
	case "floor":
		return kind == "statefulset"
	case "kruise":
		return kind != "daemonset"
	}
	return true
}

func checkKinds(s string) error {
	for _, k := range strings.Split(s, ",") {
		if k != "statefulset" && k != "deployment" && k != "daemonset" {
			return fmt.Errorf("-kinds: unknown kind %q (want statefulset, deployment or daemonset)", k)
		}
	}
	return nil
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
		if m != "inplace" && m != "noprepull" && m != "native" && m != "floor" && m != "kruise" {
			return fmt.Errorf("-modes: unknown mode %q (want inplace, noprepull, native, floor or kruise)", m)
		}
	}
	return nil
}

type bench struct {
	client   client.WithWatch
	from, to string
	timeout  time.Duration
	// resources: the change is the container's CPU, not its image.
	resources bool
	// push is registry.sh, when each run pushes images of its own.
	push string
}

// pushImages pushes the test application's v1 and v2 under tags named
// after the run and makes them the run's from and to: no node has them.
func (b *bench) pushImages(ctx context.Context, ns string) error {
	var err error
	if b.from, _, err = e2ekit.PushImage(ctx, b.push, e2ekit.Repository, ns+"-v1", "v1"); err != nil {
		return err
	}
	b.to, _, err = e2ekit.PushImage(ctx, b.push, e2ekit.Repository, ns+"-v2", "v2")
	return err
}

// The container's resources of -change resources: before and after.
var (
	cpuFrom = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	cpuTo = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("300m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
)

// result is one timed rollout.
type result struct {
	total time.Duration
	// size is the number of pods; created and deleted count the pods the
	// rollout created and deleted.
	size, created, deleted int
	// prepulls counts the prepull pods the manager created (apart).
	prepulls int
	// pods are the pods' timelines, from the image change.
	pods []timeline
	// short is how far the workload fell short of its size in pods that
	// are Ready and not being deleted (those its Service's endpoints count
	// ready), integrated over the rollout: pod-seconds out of service.
	short time.Duration
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

func (b *bench) run(ctx context.Context, kind, mode string, replicas, run int) (result, error) {
	ns := fmt.Sprintf("bench-%s-%s-%d-%d-%d", kind[:3], mode, replicas, run, time.Now().Unix()%100000)
	labels := map[string]string{"e2e.inplace.dev/bench": "true"}
	if mode == "inplace" || mode == "noprepull" || mode == "kruise" {
		labels["inplace.dev/enabled"] = "true"
	}
	if err := b.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}); err != nil {
		return result{}, err
	}
	defer e2ekit.DeleteNamespace(b.client, ns)
	if b.push != "" {
		if err := b.pushImages(ctx, ns); err != nil {
			return result{}, err
		}
	}

	w, err := b.workload(kind, mode, ns, int32(replicas))
	if err != nil {
		return result{}, err
	}
	if mode == "noprepull" {
		// In place, each pod pulling its new image as it updates.
		w.obj.SetAnnotations(map[string]string{"inplace.dev/prepull": "false"})
	}
	if err := b.client.Create(ctx, w.obj); err != nil {
		return result{}, err
	}
	size, err := b.waitReady(ctx, w, b.from)
	if err != nil {
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
	if err := b.change(ctx, w.obj); err != nil {
		return result{}, err
	}
	if mode == "floor" {
		if err := b.patchPodsOneByOne(ctx, w.obj.(*appsv1.StatefulSet)); err != nil {
			return result{}, err
		}
	}
	if err := b.waitRolledOut(ctx, w, size, mode != "floor"); err != nil {
		return result{}, err
	}
	end := time.Now()
	total := end.Sub(start)
	stopWatch()
	created, deleted, prepulls := rec.churn()
	return result{total: total, size: size, created: created, deleted: deleted, prepulls: prepulls, pods: rec.timelines(start), short: rec.shortfall(start, end, size)}, nil
}

// workload is what one run rolls out: the object created, and how its
// rollout is judged complete.
type workload struct {
	obj client.Object
	// done reports, from a fresh read of obj, whether its controller says
	// the rollout is complete for size pods.
	done func(ctx context.Context, size int) (bool, error)
	// size is the number of pods it runs, once it runs them (a DaemonSet's
	// is its desiredNumberScheduled).
	size func(ctx context.Context) (int, error)
}

func (b *bench) workload(kind, mode, ns string, replicas int32) (*workload, error) {
	template := b.template()
	fixed := func(context.Context) (int, error) { return int(replicas), nil }
	switch kind {
	case "statefulset":
		sts := b.statefulSet(ns, replicas, mode == "floor")
		if mode == "kruise" {
			u, err := toKruise(sts, "StatefulSet", "apps.kruise.io/v1beta1")
			if err != nil {
				return nil, err
			}
			return &workload{obj: u, size: fixed, done: b.kruiseDone(u, false)}, nil
		}
		return &workload{obj: sts, size: fixed, done: func(ctx context.Context, size int) (bool, error) {
			if err := b.client.Get(ctx, client.ObjectKeyFromObject(sts), sts); err != nil {
				return false, err
			}
			s := sts.Status
			_, held := sts.Annotations["inplace.dev/hold"]
			return !held && s.ObservedGeneration >= sts.Generation && s.UpdatedReplicas == replicas &&
				s.CurrentRevision == s.UpdateRevision && s.ReadyReplicas == replicas, nil
		}}, nil
	case "deployment":
		one := intstr.FromInt32(1)
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: template.Labels}, Template: template,
				Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &one, MaxUnavailable: &one}},
			},
		}
		if mode == "kruise" {
			u, err := toKruise(d, "CloneSet", "apps.kruise.io/v1alpha1")
			if err != nil {
				return nil, err
			}
			_ = unstructured.SetNestedField(u.Object, map[string]any{"type": "InPlaceIfPossible", "maxUnavailable": int64(1)}, "spec", "updateStrategy")
			unstructured.RemoveNestedField(u.Object, "spec", "strategy")
			return &workload{obj: u, size: fixed, done: b.kruiseDone(u, true)}, nil
		}
		return &workload{obj: d, size: fixed, done: func(ctx context.Context, size int) (bool, error) {
			if err := b.client.Get(ctx, client.ObjectKeyFromObject(d), d); err != nil {
				return false, err
			}
			s := d.Status
			return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == replicas && s.Replicas == replicas && s.AvailableReplicas == replicas, nil
		}}, nil
	case "daemonset":
		one := intstr.FromInt32(1)
		ds := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: template.Labels}, Template: template,
				UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &one}},
			},
		}
		return &workload{obj: ds,
			size: func(ctx context.Context) (int, error) {
				if err := b.client.Get(ctx, client.ObjectKeyFromObject(ds), ds); err != nil {
					return 0, err
				}
				return int(ds.Status.DesiredNumberScheduled), nil
			},
			done: func(ctx context.Context, size int) (bool, error) {
				if err := b.client.Get(ctx, client.ObjectKeyFromObject(ds), ds); err != nil {
					return false, err
				}
				s := ds.Status
				return s.ObservedGeneration >= ds.Generation && s.UpdatedNumberScheduled == s.DesiredNumberScheduled &&
					s.NumberAvailable == s.DesiredNumberScheduled, nil
			}}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

// template is the pod template every workload runs: the test application,
// a readiness probe every second.
func (b *bench) template() corev1.PodTemplateSpec {
	labels := map[string]string{"app": "bench"}
	t := corev1.PodTemplateSpec{
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
	}
	if b.resources {
		c := &t.Spec.Containers[0]
		c.Resources = *cpuFrom.DeepCopy()
		c.ResizePolicy = []corev1.ContainerResizePolicy{{ResourceName: corev1.ResourceCPU, RestartPolicy: corev1.NotRequired}}
	}
	return t
}

func (b *bench) statefulSet(ns string, replicas int32, onDelete bool) *appsv1.StatefulSet {
	template := b.template()
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: ns},
		Spec: appsv1.StatefulSetSpec{
			Replicas:       ptr.To(replicas),
			ServiceName:    "bench",
			Selector:       &metav1.LabelSelector{MatchLabels: template.Labels},
			Template:       template,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
		},
	}
	if onDelete {
		sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	}
	return sts
}

// toKruise is a native workload as one of OpenKruise's kinds with the same
// spec, which Kruise's kinds take as they are.
func toKruise(obj client.Object, kind, apiVersion string) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}

// change makes the template change: the image, or the CPU.
func (b *bench) change(ctx context.Context, workload client.Object) error {
	return b.retryOnConflict(ctx, workload, func() {
		var t *corev1.PodTemplateSpec
		switch w := workload.(type) {
		case *appsv1.StatefulSet:
			t = &w.Spec.Template
		case *appsv1.Deployment:
			t = &w.Spec.Template
		case *appsv1.DaemonSet:
			t = &w.Spec.Template
		case *unstructured.Unstructured: // Kruise's kinds: an image change only
			containers, _, _ := unstructured.NestedSlice(w.Object, "spec", "template", "spec", "containers")
			containers[0].(map[string]any)["image"] = b.to
			_ = unstructured.SetNestedSlice(w.Object, containers, "spec", "template", "spec", "containers")
			return
		}
		if b.resources {
			t.Spec.Containers[0].Resources = *cpuTo.DeepCopy()
		} else {
			t.Spec.Containers[0].Image = b.to
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

// waitReady waits until the workload runs its pods Ready on image, and
// returns how many.
func (b *bench) waitReady(ctx context.Context, w *workload, image string) (int, error) {
	size := 0
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, b.timeout, true, func(ctx context.Context) (bool, error) {
		n, err := w.size(ctx)
		if err != nil || n == 0 {
			return false, err
		}
		pods := &corev1.PodList{}
		if err := b.client.List(ctx, pods, client.InNamespace(w.obj.GetNamespace())); err != nil {
			return false, err
		}
		ready := 0
		for i := range pods.Items {
			if podReady(&pods.Items[i]) && pods.Items[i].Spec.Containers[0].Image == image {
				ready++
			}
		}
		size = n
		return ready == n, nil
	})
	return size, err
}

// waitRolledOut waits for every pod Ready on the new image (with a
// restarted or new container) and, for the controllers, the workload to
// report the rollout complete.
func (b *bench) waitRolledOut(ctx context.Context, w *workload, size int, byController bool) error {
	return wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, b.timeout, true, func(ctx context.Context) (bool, error) {
		if err := b.waitReadyOnce(ctx, w.obj.GetNamespace(), size); err != nil {
			return false, nil //nolint:nilerr // not yet
		}
		if !byController {
			return true, nil
		}
		return w.done(ctx, size)
	})
}

// kruiseDone reports whether a Kruise workload's status says its rollout
// is complete: an Advanced StatefulSet's in the fields of the native kind,
// a CloneSet's in its own.
func (b *bench) kruiseDone(u *unstructured.Unstructured, cloneSet bool) func(context.Context, int) (bool, error) {
	return func(ctx context.Context, size int) (bool, error) {
		if err := b.client.Get(ctx, client.ObjectKeyFromObject(u), u); err != nil {
			return false, err
		}
		n := func(f string) int64 { v, _, _ := unstructured.NestedInt64(u.Object, "status", f); return v }
		s := func(f string) string { v, _, _ := unstructured.NestedString(u.Object, "status", f); return v }
		r := int64(size)
		if cloneSet {
			return n("observedGeneration") >= u.GetGeneration() && n("updatedReplicas") == r && n("updatedReadyReplicas") == r &&
				s("currentRevision") == s("updateRevision"), nil
		}
		return n("observedGeneration") >= u.GetGeneration() && n("updatedReplicas") == r && n("readyReplicas") == r &&
			s("currentRevision") == s("updateRevision"), nil
	}
}

func (b *bench) waitReadyOnce(ctx context.Context, ns string, size int) error {
	pods := &corev1.PodList{}
	if err := b.client.List(ctx, pods, client.InNamespace(ns)); err != nil {
		return err
	}
	n := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			return errors.New("not yet: a pod is terminating")
		}
		if podReady(p) && b.changed(p) && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready {
			n++
		}
	}
	if n != size {
		return errors.New("not yet")
	}
	return nil
}

// changed reports whether the pod runs the changed template: its new image,
// or the new CPU limit as the kubelet reports it applied.
func (b *bench) changed(pod *corev1.Pod) bool {
	if !b.resources {
		return pod.Spec.Containers[0].Image == b.to
	}
	if len(pod.Status.ContainerStatuses) != 1 || pod.Status.ContainerStatuses[0].Resources == nil {
		return false
	}
	got := pod.Status.ContainerStatuses[0].Resources.Limits[corev1.ResourceCPU]
	return got.Cmp(cpuTo.Limits[corev1.ResourceCPU]) == 0
}

// recorder keeps, per pod name, when the watch saw each transition, and
// counts the pods created and deleted after it started.
type recorder struct {
	mu     sync.Mutex
	events map[string]*podEvents
	// known are the pods seen; created and deleted count the changes.
	known            map[string]bool
	created, deleted int
	// prepulls counts the prepull pods the manager created.
	prepulls int
	// serving says, by UID, whether a pod is Ready and not being deleted,
	// and nServing how many are; levels is that count from each time it
	// changed.
	serving  map[string]bool
	nServing int
	levels   []level
}

type level struct {
	at time.Time
	n  int
}

// serve records whether a pod serves now, and the count if it changed.
func (r *recorder) serve(uid string, serving bool, now time.Time) {
	if r.serving[uid] == serving {
		return
	}
	r.serving[uid] = serving
	if serving {
		r.nServing++
	} else {
		r.nServing--
	}
	r.levels = append(r.levels, level{at: now, n: r.nServing})
}

// shortfall integrates, from start to end, how many of size pods did not
// serve.
func (r *recorder) shortfall(start, end time.Time, size int) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var short time.Duration
	cur, at := size, start
	for _, l := range r.levels {
		if !l.at.After(start) {
			cur = l.n
			continue
		}
		if !l.at.Before(end) {
			break
		}
		short += time.Duration(max(size-cur, 0)) * l.at.Sub(at)
		cur, at = l.n, l.at
	}
	short += time.Duration(max(size-cur, 0)) * end.Sub(at)
	return short
}

// churn returns how many pods were created and deleted, and how many
// prepull pods.
func (r *recorder) churn() (created, deleted, prepulls int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.created, r.deleted, r.prepulls
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
	rec := &recorder{events: map[string]*podEvents{}, known: map[string]bool{}, serving: map[string]bool{}}
	initial := map[string]*podEvents{}
	// The watch begins with the pods there now: those are not created.
	pods := &corev1.PodList{}
	if err := b.client.List(ctx, pods, client.InNamespace(ns)); err != nil {
		w.Stop()
		return nil, err
	}
	for _, p := range pods.Items {
		rec.known[string(p.UID)] = true
		rec.serve(string(p.UID), podReady(&p) && p.DeletionTimestamp == nil, time.Now())
	}
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
				pod, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				if _, prepull := pod.Labels["inplace.dev/prepull-for"]; prepull {
					// The manager's pods that pull the new image on a
					// node: counted apart, none of the workload's.
					rec.countPrepull(ev.Type, pod)
					continue
				}
				rec.count(ev.Type, pod)
				if ev.Type != watch.Added && ev.Type != watch.Modified {
					continue
				}
				rec.observe(pod, initial, time.Now())
			}
		}
	}()
	return rec, nil
}

// countPrepull counts a prepull pod created.
func (r *recorder) countPrepull(t watch.EventType, pod *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t == watch.Added && !r.known[string(pod.UID)] {
		r.known[string(pod.UID)] = true
		r.prepulls++
	}
}

// count counts a pod created or deleted.
func (r *recorder) count(t watch.EventType, pod *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serve(string(pod.UID), t != watch.Deleted && podReady(pod) && pod.DeletionTimestamp == nil, time.Now())
	switch {
	case t == watch.Added && !r.known[string(pod.UID)]:
		r.known[string(pod.UID)] = true
		r.created++
	case t == watch.Deleted:
		r.deleted++
	}
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
	fmt.Fprintln(w, "\nmode\tpods\tmedian total\tper pod\tvs inplace\tinplace vs floor\tshort of Ready (median pod-s)\tpods created/deleted\tprepull pods")
	for _, n := range sizes {
		base := medianTotal(results[fmt.Sprintf("inplace/%d", n)])
		floor := medianTotal(results[fmt.Sprintf("floor/%d", n)])
		for _, m := range modes {
			rs := results[fmt.Sprintf("%s/%d", m, n)]
			if len(rs) == 0 {
				continue
			}
			t := medianTotal(rs)
			pods := rs[0].size
			vs, floorRatio := "", ""
			if base > 0 {
				vs = fmt.Sprintf("%.2fx", t.Seconds()/base.Seconds())
			}
			if m == "inplace" && floor > 0 {
				floorRatio = fmt.Sprintf("%.2fx", t.Seconds()/floor.Seconds())
			}
			created, deleted, prepulls := 0, 0, 0
			var short []float64
			for _, r := range rs {
				created, deleted, prepulls = created+r.created, deleted+r.deleted, prepulls+r.prepulls
				short = append(short, r.short.Seconds())
			}
			fmt.Fprintf(w, "%s\t%d\t%.2fs\t%.2fs\t%s\t%s\t%.1f\t%d/%d in %d runs\t%d\n", m, pods, t.Seconds(), t.Seconds()/float64(pods), vs, floorRatio, median(short), created, deleted, len(rs), prepulls)
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
			rs := results[fmt.Sprintf("%s/%d", m, n)]
			if len(rs) == 0 {
				continue
			}
			for _, r := range rs {
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
			fmt.Fprintf(w, "%s\t%d", m, rs[0].size)
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
