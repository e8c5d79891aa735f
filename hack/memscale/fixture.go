package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/hack/internal/bench"
	"github.com/inplace-dev/inplace/inplace"
)

// The cluster the manager reads, as its API server stores it:
//
//   - namespaces managed (labelled inplace.dev/enabled=true) and not, ten of
//     each, the workloads spread over them;
//   - workloads of podsPerWorkload pods each (the unmanaged ones of
//     -unmanaged-workload-pods), StatefulSets, Deployments and DaemonSets in
//     turn, every one as its controller leaves it after rollouts: a
//     StatefulSet or a DaemonSet with its ControllerRevision and
//     -old-revisions older ones, a Deployment with its ReplicaSet and
//     -old-replicasets old ones scaled to zero;
//   - their pods bound to nodes no kubelet serves, the managed ones as the
//     pod webhook leaves them (labelled inplace.dev/managed=true, the
//     readiness gate) with the status a kubelet writes (Running, Ready, the
//     gate's condition True, two containers running); the unmanaged ones
//     as created, without status (the manager never lists them: they cost
//     the API server, not it);
//   - nodes with the status a kubelet writes, images included.
const (
	namespaces      = 10
	podsPerWorkload = 50
	nodeCount       = 200
	imagesPerNode   = 30
	managerNS       = "inplace-system"
	imageOld        = "registry.example.com/shop/web:1.41.0"
	imageNew        = "registry.example.com/shop/web:1.42.0"
)

// fixture writes workloads and their pods, managed or not, through c.
type fixture struct {
	c client.Client
	// managed and unmanaged count the workloads written of each.
	managed, unmanaged int
	// unmanagedPods is the pods of an unmanaged workload; oldReplicaSets
	// and oldRevisions the history every workload keeps.
	unmanagedPods, oldReplicaSets, oldRevisions int
	// lastApplied: a workload carries its manifest in the annotation
	// kubectl apply writes.
	lastApplied bool
	// writes counts the API writes, for the progress line.
	writes atomic.Int64
}

// base writes the namespaces and the nodes.
func (f *fixture) base(ctx context.Context) error {
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNS}}}
	for i := range namespaces {
		objs = append(objs,
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace(true, i), Labels: map[string]string{inplace.LabelEnabled: "true"}}},
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace(false, i)}})
	}
	for _, o := range objs {
		if err := f.c.Create(ctx, o); err != nil {
			return err
		}
	}
	return f.parallel(ctx, nodeCount, func(i int) error { return f.node(ctx, i) })
}

// grow writes workloads until there are pods pods of the managed kind
// (managed) or of the other.
func (f *fixture) grow(ctx context.Context, managed bool, pods int) error {
	have := &f.unmanaged
	if managed {
		have = &f.managed
	}
	from, to := *have, pods/f.podsOf(managed)
	if to <= from {
		return nil
	}
	err := f.parallel(ctx, to-from, func(i int) error { return f.workload(ctx, managed, from+i) })
	*have = to
	return err
}

// parallel runs do(0..n-1) on 16 workers and returns the first error.
func (f *fixture) parallel(ctx context.Context, n int, do func(int) error) error {
	next := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range next {
				if err := do(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	report := time.NewTicker(10 * time.Second)
	defer report.Stop()
	var err error
send:
	for i := range n {
		for {
			select {
			case next <- i:
				continue send
			case err = <-errs:
				break send
			case <-report.C:
				progress(fmt.Sprintf("  %d writes so far", f.writes.Load()))
			case <-ctx.Done():
				err = ctx.Err()
				break send
			}
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// podsOf returns the pods of a managed or an unmanaged workload.
func (f *fixture) podsOf(managed bool) int {
	if managed {
		return podsPerWorkload
	}
	return f.unmanagedPods
}

func namespace(managed bool, i int) string {
	if managed {
		return fmt.Sprintf("managed-%d", i%namespaces)
	}
	return fmt.Sprintf("plain-%d", i%namespaces)
}

func (f *fixture) create(ctx context.Context, o client.Object) error {
	f.writes.Add(1)
	return f.c.Create(ctx, o)
}

func (f *fixture) writeStatus(ctx context.Context, o client.Object) error {
	f.writes.Add(1)
	return f.c.Status().Update(ctx, o)
}

// workload writes the i-th workload of its sort and its pods: a
// StatefulSet, a Deployment or a DaemonSet by i.
func (f *fixture) workload(ctx context.Context, managed bool, i int) error {
	ns, name := namespace(managed, i), fmt.Sprintf("app-%d", i)
	replicas := int32(f.podsOf(managed))
	labels := map[string]string{"app": name}
	tmpl := bench.Template(name, imageNew)
	tmpl.Labels = labels
	selector := &metav1.LabelSelector{MatchLabels: labels}
	meta := metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "shop"}}
	var owner client.Object
	var kind, hash string
	// applied gives a workload the annotation kubectl apply writes: the
	// manifest it was created from.
	applied := func(o client.Object, kind string) error {
		if !f.lastApplied {
			return nil
		}
		manifest := o.DeepCopyObject().(client.Object)
		manifest.GetObjectKind().SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind(kind))
		b, err := json.Marshal(manifest)
		if err != nil {
			return err
		}
		o.SetAnnotations(map[string]string{corev1.LastAppliedConfigAnnotation: string(b) + "\n"})
		return nil
	}
	var podLabels func(n int) map[string]string
	switch i % 3 {
	case 0:
		sts := &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(replicas), Selector: selector, Template: tmpl, ServiceName: name,
		}}
		if err := applied(sts, "StatefulSet"); err != nil {
			return err
		}
		if err := f.create(ctx, sts); err != nil {
			return err
		}
		hash = name + "-7f6b94c5d"
		if err := f.revisions(ctx, sts, sts.Spec.Template, hash); err != nil {
			return err
		}
		sts.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: sts.Generation, Replicas: replicas, ReadyReplicas: replicas,
			CurrentReplicas: replicas, UpdatedReplicas: replicas, AvailableReplicas: replicas,
			CurrentRevision: hash, UpdateRevision: hash, CollisionCount: ptr.To[int32](0),
		}
		if err := f.writeStatus(ctx, sts); err != nil {
			return err
		}
		owner, kind = sts, "StatefulSet"
		podLabels = func(n int) map[string]string {
			return map[string]string{appsv1.ControllerRevisionHashLabelKey: hash,
				appsv1.StatefulSetPodNameLabel: fmt.Sprintf("%s-%d", name, n), appsv1.PodIndexLabel: fmt.Sprint(n)}
		}
	case 1:
		d := &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas), Selector: selector, Template: tmpl,
		}}
		if err := applied(d, "Deployment"); err != nil {
			return err
		}
		if err := f.create(ctx, d); err != nil {
			return err
		}
		var current *appsv1.ReplicaSet
		for r := range f.oldReplicaSets + 1 {
			h := fmt.Sprintf("6c9d8f%03d", r)
			rs := &appsv1.ReplicaSet{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-" + h,
					Labels:          map[string]string{"app": name, appsv1.DefaultDeploymentUniqueLabelKey: h},
					Annotations:     map[string]string{"deployment.kubernetes.io/revision": fmt.Sprint(r + 1), "deployment.kubernetes.io/desired-replicas": fmt.Sprint(replicas)},
					OwnerReferences: []metav1.OwnerReference{ownerRef(d, "Deployment")}},
				Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](0), Template: *tmpl.DeepCopy(),
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name, appsv1.DefaultDeploymentUniqueLabelKey: h}}},
			}
			rs.Spec.Template.Labels = rs.Spec.Selector.MatchLabels
			if r < f.oldReplicaSets {
				rs.Spec.Template.Spec.Containers[0].Image = fmt.Sprintf("registry.example.com/shop/web:1.3%d.0", r)
			} else {
				rs.Spec.Replicas = ptr.To(replicas)
				current, hash = rs, h
			}
			if err := f.create(ctx, rs); err != nil {
				return err
			}
		}
		current.Status = appsv1.ReplicaSetStatus{Replicas: replicas, FullyLabeledReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas, ObservedGeneration: current.Generation}
		if err := f.writeStatus(ctx, current); err != nil {
			return err
		}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas}
		if err := f.writeStatus(ctx, d); err != nil {
			return err
		}
		owner, kind = current, "ReplicaSet"
		podLabels = func(int) map[string]string {
			return map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: hash}
		}
	default:
		ds := &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Selector: selector, Template: tmpl}}
		if err := applied(ds, "DaemonSet"); err != nil {
			return err
		}
		if err := f.create(ctx, ds); err != nil {
			return err
		}
		hash = "7f6b94c5d"
		if err := f.revisions(ctx, ds, ds.Spec.Template, name+"-"+hash); err != nil {
			return err
		}
		ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, CurrentNumberScheduled: replicas,
			DesiredNumberScheduled: replicas, NumberReady: replicas, UpdatedNumberScheduled: replicas,
			NumberAvailable: replicas}
		if err := f.writeStatus(ctx, ds); err != nil {
			return err
		}
		owner, kind = ds, "DaemonSet"
		podLabels = func(int) map[string]string {
			return map[string]string{appsv1.DefaultDaemonSetUniqueLabelKey: hash, inplace.LabelPodTemplateGeneration: "2"}
		}
	}
	for n := range int(replicas) {
		if err := f.pod(ctx, managed, owner, kind, tmpl, podLabels(n), n, i); err != nil {
			return err
		}
	}
	return nil
}

// revisions writes a StatefulSet's or DaemonSet's ControllerRevisions: the
// templates of f.oldRevisions images before, and the current one.
func (f *fixture) revisions(ctx context.Context, owner client.Object, tmpl corev1.PodTemplateSpec, current string) error {
	kind := "StatefulSet"
	if _, ok := owner.(*appsv1.DaemonSet); ok {
		kind = "DaemonSet"
	}
	for r := range f.oldRevisions + 1 {
		t, name := tmpl.DeepCopy(), current
		if r < f.oldRevisions {
			t.Spec.Containers[0].Image = fmt.Sprintf("%s-%d", imageOld, r)
			name = fmt.Sprintf("%s-5d8c7b%03d", owner.GetName(), r)
		}
		data, err := json.Marshal(map[string]any{"spec": map[string]any{"template": t, "$patch": "replace"}})
		if err != nil {
			return err
		}
		cr := &appsv1.ControllerRevision{
			ObjectMeta: metav1.ObjectMeta{Namespace: owner.GetNamespace(), Name: name, Labels: t.Labels,
				OwnerReferences: []metav1.OwnerReference{ownerRef(owner, kind)}},
			Data:     runtime.RawExtension{Raw: data},
			Revision: int64(r + 1),
		}
		if err := f.create(ctx, cr); err != nil {
			return err
		}
	}
	return nil
}

// pod writes the n-th pod of owner, and the status its kubelet would write
// when managed.
func (f *fixture) pod(ctx context.Context, managed bool, owner client.Object, kind string, tmpl corev1.PodTemplateSpec, labels map[string]string, n, workload int) error {
	name := fmt.Sprintf("%s-%d", owner.GetName(), n)
	if kind == "ReplicaSet" || kind == "DaemonSet" {
		name = fmt.Sprintf("%s-%05x", owner.GetName(), n*7919%0xfffff)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: owner.GetNamespace(), Name: name, Labels: map[string]string{},
			Annotations:     tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{ownerRef(owner, kind)}},
		Spec: *tmpl.Spec.DeepCopy(),
	}
	for k, v := range tmpl.Labels {
		pod.Labels[k] = v
	}
	for k, v := range labels {
		pod.Labels[k] = v
	}
	node := fmt.Sprintf("node-%03d", (workload*7+n)%nodeCount)
	pod.Spec.NodeName = node
	pod.Spec.ServiceAccountName = "default"
	pod.Spec.Tolerations = []corev1.Toleration{
		{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
	}
	// The service account token the ServiceAccount admission plugin mounts.
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o644), Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		}}}})
	for c := range pod.Spec.Containers {
		pod.Spec.Containers[c].VolumeMounts = append(pod.Spec.Containers[c].VolumeMounts,
			corev1.VolumeMount{Name: "kube-api-access-x7k2p", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"})
	}
	if managed {
		pod.Labels[inplace.LabelManaged] = "true"
		pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: inplace.ConditionInPlaceUpdateReady}}
	}
	if err := f.create(ctx, pod); err != nil {
		return err
	}
	if !managed {
		return nil
	}
	started := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	conditions := []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled, inplace.ConditionInPlaceUpdateReady}
	for _, t := range conditions {
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: started})
	}
	ip := fmt.Sprintf("10.%d.%d.%d", 64+workload/256%64, workload%256, n+2)
	pod.Status.Phase = corev1.PodRunning
	pod.Status.HostIP, pod.Status.PodIP = "192.168.0.10", ip
	pod.Status.HostIPs, pod.Status.PodIPs = []corev1.HostIP{{IP: "192.168.0.10"}}, []corev1.PodIP{{IP: ip}}
	pod.Status.StartTime = &started
	pod.Status.QOSClass = corev1.PodQOSBurstable
	for c, ctr := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, ImageID: ctr.Image + "@sha256:" + fmt.Sprintf("%064x", c+1),
			ContainerID: fmt.Sprintf("containerd://%064x", workload*1000+n*2+c), Ready: true, Started: ptr.To(true),
			State:     corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
			Resources: &ctr.Resources,
			VolumeMounts: []corev1.VolumeMountStatus{{Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount",
				ReadOnly: true, RecursiveReadOnly: ptr.To(corev1.RecursiveReadOnlyDisabled)}},
		})
	}
	return f.writeStatus(ctx, pod)
}

// node writes the i-th node and the status its kubelet would write.
func (f *fixture) node(ctx context.Context, i int) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%03d", i), Labels: map[string]string{
		"kubernetes.io/hostname": fmt.Sprintf("node-%03d", i), "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		"topology.kubernetes.io/zone": fmt.Sprintf("zone-%c", 'a'+i%3), "node.kubernetes.io/instance-type": "m6i.2xlarge",
	}}}
	if err := f.create(ctx, node); err != nil {
		return err
	}
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("110")}
	node.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "kubelet is posting ready status", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.168.%d.%d", i/250, i%250+1)}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", ContainerRuntimeVersion: "containerd://2.1.4",
			OperatingSystem: "linux", Architecture: "amd64", OSImage: "Debian GNU/Linux 13 (trixie)", KernelVersion: "6.12.48"},
	}
	for m := range imagesPerNode {
		node.Status.Images = append(node.Status.Images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("registry.example.com/team-%d/service-%d@sha256:%064x", m%7, m, m), fmt.Sprintf("registry.example.com/team-%d/service-%d:1.%d.0", m%7, m, m)},
			SizeBytes: int64(50+m*7) << 20,
		})
	}
	return f.writeStatus(ctx, node)
}

func ownerRef(o client.Object, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: o.GetName(), UID: o.GetUID(),
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}
