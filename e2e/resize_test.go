//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Resources in place: a template's cpu and memory change reaches the pods
// through their resize subresource, read back as a user would: the same
// pods, the restart count as the resize policy says, the limits the
// container actually runs under (its cgroup, from inside), and no pod out of
// Ready when nothing restarts.

// appResources sets the app container's cpu and memory requests and limits
// on a pod template (Burstable: requests below limits).
func appResources(cpuLimit, memLimit string) func(*corev1.PodTemplateSpec) {
	return func(t *corev1.PodTemplateSpec) {
		t.Spec.Containers[0].Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpuLimit), corev1.ResourceMemory: resource.MustParse(memLimit)},
		}
	}
}

// memoryRestarts sets the app container's resize policy: memory by a
// restart, cpu without.
func memoryRestarts(t *corev1.PodTemplateSpec) {
	t.Spec.Containers[0].ResizePolicy = []corev1.ContainerResizePolicy{
		{ResourceName: corev1.ResourceCPU, RestartPolicy: corev1.NotRequired},
		{ResourceName: corev1.ResourceMemory, RestartPolicy: corev1.RestartContainer},
	}
}

// cgroupLimits asks each pod's app container for the limits its cgroup says.
func cgroupLimits(t *testing.T, views []podView) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range views {
		l, err := served(t.Context(), v.IP, "/limits")
		if err != nil {
			t.Fatalf("pod %s: GET /limits: %v", v.Name, err)
		}
		out[v.Name] = l
	}
	return out
}

// resizeWorkloads are a StatefulSet, a Deployment and a DaemonSet of the
// test application, each with the resources and resize policy given.
func resizeWorkloads(ns string, edit ...func(*corev1.PodTemplateSpec)) []client.Object {
	sts := newStatefulSet("db", ns, 2, images.V1, withParallelPods(), withMaxUnavailable(1))
	d := newDeployment("web", ns, 2, images.V1, withRollingUpdate("0", "1"))
	ds := newDaemonSet("agent", ns, images.V1)
	for _, e := range edit {
		e(&sts.Spec.Template)
		e(&d.Spec.Template)
		e(&ds.Spec.Template)
	}
	return []client.Object{sts, d, ds}
}

func waitForComplete(t *testing.T, obj client.Object) {
	t.Helper()
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		waitForRolloutComplete(t, o)
	case *appsv1.Deployment:
		waitForDeploymentComplete(t, o)
	case *appsv1.DaemonSet:
		waitForDaemonSetComplete(t, o)
	}
}

// TestResizeInPlace raises the cpu limit of a StatefulSet, a Deployment and
// a DaemonSet (resize policy NotRequired): the same pods, not restarted,
// none out of Ready at any moment, the new quota in their cgroups; then the
// memory limit, whose policy is RestartContainer: each container restarted
// once, the new limit in its cgroup; then both back with kubectl rollout
// undo (the Deployment) and a template edit (the others), in place again.
//
// On kubelets older than 1.33, which resize no running pod, the same cpu
// change recreates every pod instead, as documented: see
// resizeRecreatedOnOldKubelets.
func TestResizeInPlace(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	workloads := resizeWorkloads(ns, appResources("200m", "64Mi"), memoryRestarts)
	for _, obj := range workloads {
		create(t, obj)
	}
	for _, obj := range workloads {
		waitForComplete(t, obj)
	}
	before := map[string][]podView{}
	for _, obj := range workloads {
		before[obj.GetName()] = observeWorkload(t, obj)
	}
	if oldest := oldestKubelet(t); !oldest.AtLeast(resizeVersion) {
		resizeRecreatedOnOldKubelets(t, oldest, ns, workloads, before)
		return
	}

	// cpu 200m -> 400m: NotRequired, nothing restarts.
	c := watchChurn(t, ns)
	r := watchReadiness(t, ns)
	for _, obj := range workloads {
		editTemplate(t, obj, appResources("400m", "64Mi"))
	}
	for _, obj := range workloads {
		waitForComplete(t, obj)
	}
	for _, obj := range workloads {
		after := observeWorkload(t, obj)
		logPods(t, obj.GetName()+" after the cpu resize", after)
		wantSamePods(t, before[obj.GetName()], after, 0)
		for name, l := range cgroupLimits(t, after) {
			if !strings.HasPrefix(l, "cpu 40000/100000 ") {
				t.Errorf("pod %s runs under %q, want the cpu quota of 400m (40000/100000)", name, l)
			}
		}
		before[obj.GetName()] = after
	}
	if spans := r.stop(); len(spans) > 0 {
		t.Errorf("pods left Ready during a resize that restarts nothing: %v", spans)
	}
	wantNoChurn(t, c)

	// memory 64Mi -> 96Mi: RestartContainer, each container restarts once.
	c = watchChurn(t, ns)
	for _, obj := range workloads {
		editTemplate(t, obj, appResources("400m", "96Mi"))
	}
	for _, obj := range workloads {
		waitForComplete(t, obj)
	}
	for _, obj := range workloads {
		after := observeWorkload(t, obj)
		logPods(t, obj.GetName()+" after the memory resize", after)
		wantSamePods(t, before[obj.GetName()], after, 1)
		for name, l := range cgroupLimits(t, after) {
			if !strings.HasSuffix(l, fmt.Sprintf(" memory %d", 96<<20)) {
				t.Errorf("pod %s runs under %q, want the memory limit of 96Mi (%d)", name, l, 96<<20)
			}
		}
		before[obj.GetName()] = after
	}
	wantNoChurn(t, c)

	// An image and the cpu in one change; then the Deployment undone.
	c = watchChurn(t, ns)
	for _, obj := range workloads {
		editTemplate(t, obj, func(tpl *corev1.PodTemplateSpec) {
			appResources("300m", "96Mi")(tpl)
			tpl.Spec.Containers[0].Image = images.V2
		})
	}
	for _, obj := range workloads {
		waitForComplete(t, obj)
		after := observeWorkload(t, obj)
		wantInPlaceByName(t, before[obj.GetName()], after, images.V2, 1)
		for name, l := range cgroupLimits(t, after) {
			if !strings.HasPrefix(l, "cpu 30000/100000 ") {
				t.Errorf("pod %s runs under %q, want the cpu quota of 300m", name, l)
			}
		}
		before[obj.GetName()] = after
	}
	d := workloads[1].(*appsv1.Deployment)
	kubectl(t, "rollout", "undo", "deployment/"+d.Name, "-n", ns)
	get(t, d)
	waitForDeploymentComplete(t, d)
	undone := observeWorkload(t, d)
	wantInPlaceByName(t, before[d.Name], undone, images.V1, 1)
	for name, l := range cgroupLimits(t, undone) {
		if !strings.HasPrefix(l, "cpu 40000/100000 ") {
			t.Errorf("pod %s runs under %q after the undo, want the cpu quota of 400m back", name, l)
		}
	}
	wantNoChurn(t, c)
	wantEvents(t, ns, "InPlaceUpdated", 6)
}

// TestResizeInfeasibleRecreates asks for more cpu than any node has. The
// API server refuses the resize against the node's allocatable (on 1.37;
// a kubelet that admits it answers Infeasible), and the pod is recreated,
// with an event that says why (the new pod then waits, unschedulable, as it
// would natively). Kubelets older than 1.33 are never asked to resize:
// TestResizeInPlace proves what they get.
func TestResizeInfeasibleRecreates(t *testing.T) {
	t.Parallel()
	if oldest := oldestKubelet(t); !oldest.AtLeast(resizeVersion) {
		t.Logf("the nodes' kubelets (oldest %s) resize no running pod: nothing is asked of them to refuse", oldest)
		return
	}
	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("big", ns, 1, images.V1)
	appResources("200m", "64Mi")(&sts.Spec.Template)
	create(t, sts)
	waitForStatefulSetReady(t, sts)
	before := observe(t, sts)

	editTemplate(t, sts, func(tpl *corev1.PodTemplateSpec) {
		tpl.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU] = resource.MustParse("500")
		tpl.Spec.Containers[0].Resources.Limits[corev1.ResourceCPU] = resource.MustParse("500")
	})
	waitForPodReplaced(t, ns, before[0].Name, before[0].UID)
	eventually(t, podTimeout, "a RecreatedNotInPlace event naming the refused resize", func(ctx context.Context) error {
		list := &corev1.EventList{}
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason == "RecreatedNotInPlace" && (strings.Contains(e.Message, "Infeasible") ||
				strings.Contains(e.Message, "resize was refused") && strings.Contains(e.Message, "allocatable")) {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
}

// wantSamePods checks that after is before's pods, by name and UID, Ready,
// each container restarted restarts more times.
func wantSamePods(t *testing.T, before, after []podView, restarts int32) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("%d pods after, %d before", len(after), len(before))
	}
	for i := range after {
		b, a := before[i], after[i]
		if a.Name != b.Name || a.UID != b.UID {
			t.Errorf("pod %s (%s) is now %s (%s): recreated", b.Name, b.UID, a.Name, a.UID)
		}
		if a.Restarts != b.Restarts+restarts || !a.Ready {
			t.Errorf("pod %s: %d restarts (want %d), Ready %t", a.Name, a.Restarts, b.Restarts+restarts, a.Ready)
		}
	}
}

// resizeVersion is the first kubelet that resizes a running pod (in-place
// pod resize on by default).
var resizeVersion = version.MajorMinor(1, 33)

// oldestKubelet is the lowest kubelet version among the cluster's nodes.
func oldestKubelet(t *testing.T) *version.Version {
	t.Helper()
	nodes := &corev1.NodeList{}
	if err := k8s.List(t.Context(), nodes); err != nil {
		t.Fatal(err)
	}
	var oldest *version.Version
	for _, n := range nodes.Items {
		v, err := version.ParseGeneric(n.Status.NodeInfo.KubeletVersion)
		if err != nil {
			t.Fatalf("node %s: kubelet version %q: %v", n.Name, n.Status.NodeInfo.KubeletVersion, err)
		}
		if oldest == nil || v.LessThan(oldest) {
			oldest = v
		}
	}
	if oldest == nil {
		t.Fatal("the cluster has no node")
	}
	return oldest
}

// resizeRecreatedOnOldKubelets raises the cpu limit of each workload on
// kubelets that resize no running pod: every pod is recreated by its
// workload's controller, each recreation explained by a RecreatedNotInPlace
// event that names the kubelet, and the new pods run under the new quota.
func resizeRecreatedOnOldKubelets(t *testing.T, oldest *version.Version, ns string, workloads []client.Object, before map[string][]podView) {
	t.Helper()
	t.Logf("the nodes' kubelets (oldest %s) resize no running pod: the change must recreate the pods", oldest)
	pods := 0
	for _, obj := range workloads {
		editTemplate(t, obj, appResources("400m", "64Mi"))
		pods += len(before[obj.GetName()])
	}
	for _, obj := range workloads {
		waitForComplete(t, obj)
	}
	for _, obj := range workloads {
		after := observeWorkload(t, obj)
		logPods(t, obj.GetName()+" after the cpu change", after)
		old := map[types.UID]bool{}
		for _, b := range before[obj.GetName()] {
			old[b.UID] = true
		}
		for _, a := range after {
			if old[a.UID] || !a.Ready {
				t.Errorf("pod %s (%s): Ready %t, one of the pods before the change %t; want a new pod, Ready", a.Name, a.UID, a.Ready, old[a.UID])
			}
		}
		for name, l := range cgroupLimits(t, after) {
			if !strings.HasPrefix(l, "cpu 40000/100000 ") {
				t.Errorf("pod %s runs under %q, want the cpu quota of 400m (40000/100000)", name, l)
			}
		}
	}
	const why = "does not resize a running pod"
	wantEventsSaying(t, ns, "RecreatedNotInPlace", why, pods)
}
