//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Helpers for Deployments and DaemonSets, beside the StatefulSet ones of
// framework_test.go: their pods are known by UID and name, not ordinal.

type deployOption func(*appsv1.Deployment)

// newDeployment builds (does not create) a Deployment of the test
// application as a user would write it: RollingUpdate with the API's
// defaults unless an option says otherwise.
func newDeployment(name, namespace string, replicas int32, image string, opts ...deployOption) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: appTemplate(name, image),
		},
	}
	for _, o := range opts {
		o(d)
	}
	return d
}

// withRollingUpdate sets the Deployment's maxSurge and maxUnavailable.
func withRollingUpdate(maxSurge, maxUnavailable string) deployOption {
	return func(d *appsv1.Deployment) {
		s, u := intstr.Parse(maxSurge), intstr.Parse(maxUnavailable)
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &s, MaxUnavailable: &u}}
	}
}

// withProgressDeadline sets the Deployment's progressDeadlineSeconds.
func withProgressDeadline(seconds int32) deployOption {
	return func(d *appsv1.Deployment) { d.Spec.ProgressDeadlineSeconds = ptr.To(seconds) }
}

// withoutPrepull turns pulling ahead off for the Deployment
// (inplace.dev/prepull: "false"): each pod pulls its new images as it
// updates.
func withoutPrepull() deployOption {
	return func(d *appsv1.Deployment) {
		metav1.SetMetaDataAnnotation(&d.ObjectMeta, "inplace.dev/prepull", "false")
	}
}

type dsOption func(*appsv1.DaemonSet)

// newDaemonSet builds (does not create) a DaemonSet of the test application
// as a user would write it: RollingUpdate, maxUnavailable 1 unless an
// option says otherwise. It runs on every node.
func newDaemonSet(name, namespace, image string, opts ...dsOption) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: appTemplate(name, image),
		},
	}
	for _, o := range opts {
		o(ds)
	}
	return ds
}

// withDaemonSetRollingUpdate sets the DaemonSet's maxSurge and
// maxUnavailable.
func withDaemonSetRollingUpdate(maxSurge, maxUnavailable string) dsOption {
	return func(ds *appsv1.DaemonSet) {
		s, u := intstr.Parse(maxSurge), intstr.Parse(maxUnavailable)
		ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxSurge: &s, MaxUnavailable: &u}}
	}
}

// workloadPods lists the pods of a Deployment (those its ReplicaSets
// control), a DaemonSet or a StatefulSet, by name, terminating ones too.
func workloadPods(ctx context.Context, obj client.Object) ([]corev1.Pod, error) {
	owners := map[types.UID]bool{obj.GetUID(): true}
	var selector *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.Deployment:
		selector = o.Spec.Selector
		rss := &appsv1.ReplicaSetList{}
		if err := k8s.List(ctx, rss, client.InNamespace(o.Namespace), client.MatchingLabels(o.Spec.Selector.MatchLabels)); err != nil {
			return nil, err
		}
		for _, rs := range rss.Items {
			if ref := metav1.GetControllerOf(&rs); ref != nil && ref.UID == o.UID {
				owners[rs.UID] = true
			}
		}
	case *appsv1.DaemonSet:
		selector = o.Spec.Selector
	case *appsv1.StatefulSet:
		selector = o.Spec.Selector
	}
	list := &corev1.PodList{}
	if err := k8s.List(ctx, list, client.InNamespace(obj.GetNamespace()), client.MatchingLabels(selector.MatchLabels)); err != nil {
		return nil, fmt.Errorf("listing the pods of %s: %w", describeObject(obj), err)
	}
	pods := list.Items[:0]
	for _, p := range list.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && owners[ref.UID] {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}

// observeWorkload reads back the pods of a workload, by name.
func observeWorkload(t testing.TB, obj client.Object) []podView {
	t.Helper()
	pods, err := workloadPods(t.Context(), obj)
	if err != nil {
		t.Fatal(err)
	}
	return viewPods(t, pods)
}

// waitForDeploymentComplete waits until a Deployment's rollout is over as
// kubectl rollout status judges it, and more: the controller has seen the
// latest spec, every replica is updated and available, no old replica is
// left, its Progressing condition says NewReplicaSetAvailable, and every
// pod runs the template's image, Ready, not terminating. It returns the
// pods by name.
func waitForDeploymentComplete(t testing.TB, d *appsv1.Deployment) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, podTimeout, fmt.Sprintf("the rollout of Deployment %s/%s to complete", d.Namespace, d.Name), func(ctx context.Context) error {
		cur := &appsv1.Deployment{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(d), cur); err != nil {
			return err
		}
		st, want := cur.Status, ptr.Deref(cur.Spec.Replicas, 1)
		switch {
		case st.ObservedGeneration < cur.Generation:
			return fmt.Errorf("the controller has seen generation %d of %d", st.ObservedGeneration, cur.Generation)
		case st.UpdatedReplicas != want || st.Replicas != want || st.AvailableReplicas != want:
			return fmt.Errorf("%d of %d replicas updated, %d in all, %d available", st.UpdatedReplicas, want, st.Replicas, st.AvailableReplicas)
		}
		if c := deploymentCondition(cur, appsv1.DeploymentProgressing); c == nil || c.Reason != "NewReplicaSetAvailable" {
			return fmt.Errorf("Progressing is %+v, not NewReplicaSetAvailable", c)
		}
		ps, err := templatePodsReady(ctx, cur, &cur.Spec.Template, int(want))
		pods = ps
		return err
	})
	return pods
}

// waitForDaemonSetComplete waits until a DaemonSet's rollout is over as
// kubectl rollout status judges it, and more: every node that should run a
// pod runs one of the template, Ready and available, and no old one is
// left. It returns the pods by name.
func waitForDaemonSetComplete(t testing.TB, ds *appsv1.DaemonSet) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, podTimeout, fmt.Sprintf("the rollout of DaemonSet %s/%s to complete", ds.Namespace, ds.Name), func(ctx context.Context) error {
		cur := &appsv1.DaemonSet{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(ds), cur); err != nil {
			return err
		}
		st := cur.Status
		switch {
		case st.ObservedGeneration < cur.Generation:
			return fmt.Errorf("the controller has seen generation %d of %d", st.ObservedGeneration, cur.Generation)
		case st.DesiredNumberScheduled == 0:
			return fmt.Errorf("no node to run on yet")
		case st.UpdatedNumberScheduled != st.DesiredNumberScheduled || st.NumberAvailable != st.DesiredNumberScheduled:
			return fmt.Errorf("%d of %d nodes updated, %d available", st.UpdatedNumberScheduled, st.DesiredNumberScheduled, st.NumberAvailable)
		}
		ps, err := templatePodsReady(ctx, cur, &cur.Spec.Template, int(st.DesiredNumberScheduled))
		pods = ps
		return err
	})
	return pods
}

// templatePodsReady checks that a workload has exactly want pods, each
// running the template's image, Ready, not terminating.
func templatePodsReady(ctx context.Context, obj client.Object, tpl *corev1.PodTemplateSpec, want int) ([]corev1.Pod, error) {
	ps, err := workloadPods(ctx, obj)
	if err != nil {
		return nil, err
	}
	if len(ps) != want {
		return nil, fmt.Errorf("%d pods of %d: %s", len(ps), want, podNames(ps))
	}
	for i := range ps {
		p := &ps[i]
		switch {
		case p.DeletionTimestamp != nil:
			return nil, fmt.Errorf("pod %s is terminating", p.Name)
		case p.Spec.Containers[0].Image != tpl.Spec.Containers[0].Image:
			return nil, fmt.Errorf("pod %s runs %s, not %s", p.Name, p.Spec.Containers[0].Image, tpl.Spec.Containers[0].Image)
		case !podReady(p):
			return nil, fmt.Errorf("pod %s is not Ready: %s", p.Name, whyNotReady(p))
		}
	}
	return ps, nil
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// churn records the pods created and deleted in a namespace from when it
// starts: an in-place rollout creates and deletes none.
type churn struct {
	stop func() (created, deleted []string)
}

// watchChurn starts recording, after listing what is there.
func watchChurn(t *testing.T, ns string) *churn {
	t.Helper()
	list := &corev1.PodList{}
	if err := k8s.List(t.Context(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	known := map[types.UID]bool{}
	for _, p := range list.Items {
		known[p.UID] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := k8s.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: list.ResourceVersion}})
	if err != nil {
		cancel()
		t.Fatalf("watching pods: %v", err)
	}
	var mu sync.Mutex
	var created, deleted []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || isPrepull(pod) {
				continue // a prepull pod is none of the workload's
			}
			mu.Lock()
			switch {
			case ev.Type == watch.Added && !known[pod.UID]:
				known[pod.UID] = true
				created = append(created, pod.Name)
			case ev.Type == watch.Deleted:
				deleted = append(deleted, pod.Name)
			}
			mu.Unlock()
		}
	}()
	return &churn{stop: func() ([]string, []string) {
		cancel()
		w.Stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(created), slices.Clone(deleted)
	}}
}

// isPrepull reports whether the pod is one of the manager's prepull pods,
// which pull a rollout's images on a node and run nothing.
func isPrepull(pod *corev1.Pod) bool {
	_, ok := pod.Labels["inplace.dev/prepull-for"]
	return ok
}

// wantNoChurn fails the test when the churn watch saw a pod created or
// deleted.
func wantNoChurn(t *testing.T, c *churn) {
	t.Helper()
	created, deleted := c.stop()
	if len(created) > 0 || len(deleted) > 0 {
		t.Errorf("pods created %v, deleted %v: an in-place rollout creates and deletes none", created, deleted)
	}
}

// wantInPlaceByName is wantInPlace for pods known by name (a Deployment's,
// a DaemonSet's): the same pods, by name and UID, each restarted.
func wantInPlaceByName(t *testing.T, before, after []podView, image string, restarts int32) {
	t.Helper()
	names := func(vs []podView) string {
		var n []string
		for _, v := range vs {
			n = append(n, v.Name)
		}
		return strings.Join(n, " ")
	}
	if names(before) != names(after) {
		t.Fatalf("pods before [%s], after [%s]: want the same pods", names(before), names(after))
	}
	wantInPlace(t, before, after, image, restarts)
}

// readyNodes counts the Ready nodes of the cluster.
func readyNodes(t testing.TB) int {
	t.Helper()
	nodes := &corev1.NodeList{}
	if err := k8s.List(t.Context(), nodes); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, node := range nodes.Items {
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !node.Spec.Unschedulable {
				n++
			}
		}
	}
	return n
}
