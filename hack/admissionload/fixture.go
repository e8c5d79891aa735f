package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/hack/internal/bench"
	"github.com/inplace-dev/inplace/inplace"
	inplacewebhook "github.com/inplace-dev/inplace/webhook"
)

// The cluster the requests refer to, in the API server the manager reads:
//
//   - apps, a managed namespace: the StatefulSet web (3 replicas) in the
//     middle of an in-place rollout from revision web-rev1 to web-rev2
//     (web-2 being updated, web-0 and web-1 still on web-rev1, web-3 left
//     over from a scale-down); the StatefulSet db, which opted out
//     (Recreate); the Deployment api and its ReplicaSet; the DaemonSet
//     agent;
//   - plain, a namespace the manager does not manage, with its own web.
//
// Every pod is what the API server stores (status written, gate open but on
// web-2), so that the manager's readiness-gate keeper finds nothing to do
// while the load runs: the fixture does not change under the measure.
const (
	managedNS      = "apps"
	unmanagedNS    = "plain"
	managerNS      = "inplace-system"
	rev1, rev2     = "web-5d8c7b9f6", "web-7f6b94c5d"
	rsName         = "api-7c9f86d5b"
	rsHash         = "7c9f86d5b"
	otherLeader    = "inplace-manager-elsewhere"
	nodeName       = "node-a"
	imageV1        = "registry.example.com/shop/web:1.41.0"
	imageV2        = "registry.example.com/shop/web:1.42.0"
	statefulSetSA  = "system:serviceaccount:kube-system:statefulset-controller"
	replicaSetSA   = "system:serviceaccount:kube-system:replicaset-controller"
	daemonSetSA    = "system:serviceaccount:kube-system:daemon-set-controller"
	applyingUser   = "alice@example.com"
	leaseRenewEach = 5 * time.Second
)

// fixture is what the requests refer to, as stored.
type fixture struct {
	web, plainWeb, db *appsv1.StatefulSet
	api               *appsv1.Deployment
	rs                *appsv1.ReplicaSet
	agent             *appsv1.DaemonSet
	pods              map[string]*corev1.Pod // by namespace/name
}

// populate writes the fixture through the API server.
func populate(ctx context.Context, c client.Client) (*fixture, error) {
	f := &fixture{pods: map[string]*corev1.Pod{}}
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: managerNS}},
		{ObjectMeta: metav1.ObjectMeta{Name: managedNS, Labels: map[string]string{inplace.LabelEnabled: "true", "team": "shop"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: unmanagedNS, Labels: map[string]string{"team": "shop"}}},
	} {
		if err := c.Create(ctx, ns); err != nil {
			return nil, err
		}
	}

	// The leader elsewhere: this manager serves the webhook as a replica
	// that is not elected, so that no controller of its acts on the
	// fixture; the lease is renewed while the load runs (renewLease), so
	// the pod-delete webhook counts the rollout engine as running.
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: app.LeaderElectionID, Namespace: managerNS},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(otherLeader),
			LeaseDurationSeconds: ptr.To[int32](3600),
			AcquireTime:          &metav1.MicroTime{Time: time.Now()},
			RenewTime:            &metav1.MicroTime{Time: time.Now()},
		},
	}
	if err := c.Create(ctx, lease); err != nil {
		return nil, err
	}

	// The node the pods run on, Ready.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"topology.kubernetes.io/zone": "zone-a"}}}
	if err := c.Create(ctx, node); err != nil {
		return nil, err
	}
	node.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.33.2", ContainerRuntimeVersion: "containerd://2.1.3"},
	}
	if err := c.Status().Update(ctx, node); err != nil {
		return nil, err
	}

	var err error
	policy := map[string]string{inplace.AnnotationUpdatePolicy: string(inplace.InPlaceIfPossible)}
	if f.web, err = createStatefulSet(ctx, c, managedNS, "web", policy); err != nil {
		return nil, err
	}
	if f.plainWeb, err = createStatefulSet(ctx, c, unmanagedNS, "web", nil); err != nil {
		return nil, err
	}
	if f.db, err = createStatefulSet(ctx, c, managedNS, "db", map[string]string{inplace.AnnotationUpdatePolicy: string(inplace.Recreate)}); err != nil {
		return nil, err
	}
	// web's revisions (its template as stored, defaulted, on each image),
	// and its status: the rollout to rev2 under way.
	for i, r := range []struct {
		name, image string
	}{{rev1, imageV1}, {rev2, imageV2}} {
		t := f.web.Spec.Template.DeepCopy()
		t.Spec.Containers[0].Image = r.image
		if err := createRevision(ctx, c, f.web, r.name, int64(i+1), *t); err != nil {
			return nil, err
		}
	}
	f.web.Status = appsv1.StatefulSetStatus{
		ObservedGeneration: f.web.Generation, Replicas: 3, ReadyReplicas: 2, CurrentReplicas: 2, AvailableReplicas: 2,
		CurrentRevision: rev1, UpdateRevision: rev2, CollisionCount: ptr.To[int32](0),
	}
	if err := c.Status().Update(ctx, f.web); err != nil {
		return nil, err
	}

	api := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: managedNS, Annotations: policy},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
			Template: bench.Template("api", imageV1),
		},
	}
	if err := c.Create(ctx, api); err != nil {
		return nil, err
	}
	f.api = api
	rsTemplate := bench.Template("api", imageV1)
	rsTemplate.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = rsHash
	f.rs = &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: rsName, Namespace: managedNS, Labels: rsTemplate.Labels,
			Annotations:     map[string]string{"deployment.kubernetes.io/revision": "1", "deployment.kubernetes.io/desired-replicas": "3", "deployment.kubernetes.io/max-replicas": "4"},
			OwnerReferences: []metav1.OwnerReference{controllerRef("Deployment", api.Name, api.UID)},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api", appsv1.DefaultDeploymentUniqueLabelKey: rsHash}},
			Template: rsTemplate,
		},
	}
	if err := c.Create(ctx, f.rs); err != nil {
		return nil, err
	}
	f.agent = &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: managedNS, Annotations: policy},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: bench.Template("agent", imageV1),
		},
	}
	if err := c.Create(ctx, f.agent); err != nil {
		return nil, err
	}

	// web's pods: web-0 and web-1 on rev1, web-2 being updated to rev2,
	// web-3 above the replicas (the StatefulSet was scaled down).
	for i := range 4 {
		pod := statefulSetPod(f.web, i, rev1, true)
		if i == 2 {
			if err := beingUpdated(pod); err != nil {
				return nil, err
			}
		}
		if err := createPod(ctx, c, pod, i != 2); err != nil {
			return nil, err
		}
		f.pods[managedNS+"/"+pod.Name] = pod
	}
	return f, nil
}

func controllerRef(kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}

func createStatefulSet(ctx context.Context, c client.Client, ns, name string, annotations map[string]string) (*appsv1.StatefulSet, error) {
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](3),
			ServiceName: name,
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template:    bench.Template(name, imageV2),
		},
	}
	return sts, c.Create(ctx, sts)
}

// createRevision records a template as the StatefulSet controller does: the
// patch {"spec":{"template":{..., "$patch":"replace"}}}.
func createRevision(ctx context.Context, c client.Client, sts *appsv1.StatefulSet, name string, revision int64, t corev1.PodTemplateSpec) error {
	tb, err := json.Marshal(t)
	if err != nil {
		return err
	}
	var tm map[string]any
	if err := json.Unmarshal(tb, &tm); err != nil {
		return err
	}
	tm["$patch"] = "replace"
	data, err := json.Marshal(map[string]any{"spec": map[string]any{"template": tm}})
	if err != nil {
		return err
	}
	rev := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: sts.Namespace,
			Labels:          map[string]string{"app": sts.Name, "controller.kubernetes.io/hash": name[len(sts.Name)+1:]},
			OwnerReferences: []metav1.OwnerReference{controllerRef("StatefulSet", sts.Name, sts.UID)},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: revision,
	}
	return c.Create(ctx, rev)
}

// statefulSetPod is the pod the StatefulSet controller creates at ordinal i
// of revision rev; gated, it has the readiness gate and the label the
// webhook gives it.
func statefulSetPod(sts *appsv1.StatefulSet, i int, rev string, gated bool) *corev1.Pod {
	t := sts.Spec.Template.DeepCopy()
	if rev == rev1 {
		t.Spec.Containers[0].Image = imageV1
	}
	name := fmt.Sprintf("%s-%d", sts.Name, i)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: sts.Namespace, Labels: t.Labels, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{controllerRef("StatefulSet", sts.Name, sts.UID)},
		},
		Spec: t.Spec,
	}
	pod.Labels[appsv1.StatefulSetRevisionLabel] = rev
	pod.Labels[appsv1.StatefulSetPodNameLabel] = name
	pod.Labels[appsv1.PodIndexLabel] = fmt.Sprint(i)
	pod.Spec.Hostname, pod.Spec.Subdomain = name, sts.Spec.ServiceName
	if gated {
		pod.Labels[inplace.LabelManaged] = "true"
		pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: inplace.ConditionInPlaceUpdateReady}}
	}
	return pod
}

// beingUpdated records on pod an in-place update to rev2 whose images are
// patched and whose containers the kubelet has not replaced yet: the
// manager's readiness-gate keeper leaves its gate closed.
func beingUpdated(pod *corev1.Pod) error {
	now := metav1.Now()
	state := inplace.UpdateState{
		Revision: rev2, From: rev1, Since: now, PatchedAt: &now,
		Containers: map[string]inplace.ContainerSnapshot{"app": {ContainerID: containerID(pod.Name, "app"), RestartCount: 0, StartedAt: &now}},
	}
	pod.Annotations[inplace.AnnotationUpdateState] = state.Encode()
	pod.Spec.Containers[0].Image = imageV2
	return nil
}

func containerID(pod, container string) string {
	return fmt.Sprintf("containerd://%x", []byte(pod+"/"+container+"/0123456789abcdef"))
}

// createPod stores a pod with the status a kubelet would have written:
// running, ready, gate open (or closed for an update).
func createPod(ctx context.Context, c client.Client, pod *corev1.Pod, gateOpen bool) error {
	pod.Spec.NodeName = nodeName
	if err := c.Create(ctx, pod); err != nil {
		return err
	}
	started := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	cond := func(t corev1.PodConditionType, s corev1.ConditionStatus) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: started}
	}
	gate := cond(inplace.ConditionInPlaceUpdateReady, corev1.ConditionTrue)
	ready := cond(corev1.PodReady, corev1.ConditionTrue)
	if !gateOpen {
		gate = corev1.PodCondition{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse, Reason: inplace.ReasonInPlaceUpdate,
			LastTransitionTime: metav1.Now()}
		ready = corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: inplace.ReasonReadinessGatesNotReady,
			LastTransitionTime: metav1.Now()}
	}
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		Conditions: []corev1.PodCondition{cond(corev1.PodScheduled, corev1.ConditionTrue), cond(corev1.PodInitialized, corev1.ConditionTrue), cond(corev1.ContainersReady, corev1.ConditionTrue), ready},
		HostIP:     "10.0.1.17", PodIP: "10.244.1.23", StartTime: &started, QOSClass: corev1.PodQOSBurstable,
	}
	if inplace.HasGate(pod) {
		pod.Status.Conditions = append(pod.Status.Conditions, gate)
	}
	for _, ctr := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, ImageID: "registry.example.com/shop/web@sha256:4f1e0c3b2a", ContainerID: containerID(pod.Name, ctr.Name),
			Ready: true, Started: ptr.To(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		})
	}
	return c.Status().Update(ctx, pod)
}

// scenario is one kind of admission request of the mix.
type scenario struct {
	name   string
	path   string
	weight int
	body   []byte
	// want is the manager's answer; the floor allows everything unpatched.
	want answer
}

// answer is what a response says, as far as the load checks it.
type answer struct{ allowed, patched bool }

func (a answer) String() string {
	switch {
	case !a.allowed:
		return "refused"
	case a.patched:
		return "patched"
	}
	return "allowed"
}

// scenarios builds the mix: each request's body as the API server sends it
// (the object defaulted and with its managedFields, from a dry run), the
// path of the webhook the API server calls, and the manager's answer.
func scenarios(ctx context.Context, c client.Client, f *fixture) ([]scenario, error) {
	var out []scenario
	add := func(name, path string, weight int, want answer, req *admissionv1.AdmissionRequest) error {
		req.UID = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", len(out)))
		body, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request:  req,
		})
		if err != nil {
			return err
		}
		out = append(out, scenario{name: name, path: path, weight: weight, body: body, want: want})
		return nil
	}

	// Pod creates, as the workload controllers send them, to the mutating
	// webhook only: it gates the pod, and answers the ReplicaSet
	// controller's create of a Deployment's pod too (it refuses a surge
	// create of a Deployment rolled out in place).
	podCreates := []struct {
		name   string
		weight int
		user   string
		want   answer
		pod    func() *corev1.Pod
	}{
		{"pod create, StatefulSet's (managed)", 20, statefulSetSA, answer{true, true}, func() *corev1.Pod {
			return statefulSetPod(f.web, 4, rev2, false)
		}},
		{"pod create, Deployment's (managed)", 10, replicaSetSA, answer{true, true}, func() *corev1.Pod {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
				Name: rsName + "-x7k2p", GenerateName: rsName + "-", Namespace: managedNS,
				Labels: f.rs.Spec.Template.Labels, Annotations: f.rs.Spec.Template.Annotations,
				OwnerReferences: []metav1.OwnerReference{controllerRef("ReplicaSet", rsName, f.rs.UID)},
			}, Spec: f.rs.Spec.Template.Spec}
			return p
		}},
		{"pod create, DaemonSet's (managed)", 5, daemonSetSA, answer{true, true}, func() *corev1.Pod {
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
				Name: "agent-q8v4n", GenerateName: "agent-", Namespace: managedNS,
				Labels: f.agent.Spec.Template.Labels, Annotations: f.agent.Spec.Template.Annotations,
				OwnerReferences: []metav1.OwnerReference{controllerRef("DaemonSet", "agent", f.agent.UID)},
			}, Spec: f.agent.Spec.Template.Spec}
		}},
		{"pod create, opted-out workload (Recreate)", 5, statefulSetSA, answer{true, false}, func() *corev1.Pod {
			return statefulSetPod(f.db, 1, rev2, false)
		}},
		{"pod create, unmanaged namespace", 5, statefulSetSA, answer{true, false}, func() *corev1.Pod {
			return statefulSetPod(f.plainWeb, 1, rev2, false)
		}},
	}
	for _, pc := range podCreates {
		pod := pc.pod()
		obj, err := dryRunCreate(ctx, c, pod)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pc.name, err)
		}
		req := request(pod.Namespace, pod.Name, "", "v1", "Pod", "pods", admissionv1.Create, pc.user, &metav1.CreateOptions{})
		req.Object = obj
		if err := add(pc.name, inplacewebhook.PathMutatePod, pc.weight, pc.want, req); err != nil {
			return nil, err
		}
	}

	// Workload updates by a user: each goes to the mutating webhook, then
	// to the validating one.
	webImage := f.web.DeepCopy()
	webImage.Spec.Template.Spec.Containers[0].Image = "registry.example.com/shop/web:1.43.0"
	apiEnv := f.api.DeepCopy()
	apiEnv.Spec.Template.Spec.Containers[0].Env = append(apiEnv.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "FEATURE_CHECKOUT_V2", Value: "true"})
	for _, u := range []struct {
		name     string
		kind     string
		resource string
		mutate   string
		validate string
		old, obj client.Object
	}{
		{"StatefulSet update, image only", "StatefulSet", "statefulsets", inplacewebhook.PathMutateStatefulSet, inplacewebhook.PathValidateStatefulSet, f.web, webImage},
		{"Deployment update, not image only", "Deployment", "deployments", inplacewebhook.PathMutateDeployment, inplacewebhook.PathValidateDeployment, f.api, apiEnv},
	} {
		oldRaw, err := stored(ctx, c, u.old)
		if err != nil {
			return nil, err
		}
		newRaw, err := dryRunUpdate(ctx, c, u.obj)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u.name, err)
		}
		for _, path := range []string{u.mutate, u.validate} {
			req := request(u.obj.GetNamespace(), u.obj.GetName(), "apps", "v1", u.kind, u.resource, admissionv1.Update, applyingUser, &metav1.UpdateOptions{})
			req.Object, req.OldObject = newRaw, oldRaw
			what := "mutate"
			if path == u.validate {
				what = "validate"
			}
			weight := 7
			if u.kind == "Deployment" {
				weight = 6
			}
			if err := add(fmt.Sprintf("%s (%s)", u.name, what), path, weight, answer{true, false}, req); err != nil {
				return nil, err
			}
		}
	}

	// The StatefulSet controller's deletes: of the pod being updated and of
	// the next one (refused: the manager updates them in place), and of the
	// pod above the replicas (a scale-down: passes).
	for _, d := range []struct {
		name   string
		pod    string
		weight int
		want   answer
	}{
		{"pod delete, pod being updated (refused)", "web-2", 9, answer{false, false}},
		{"pod delete, pod of the rollout (refused)", "web-1", 5, answer{false, false}},
		{"pod delete, scale-down (passes)", "web-3", 5, answer{true, false}},
	} {
		oldRaw, err := stored(ctx, c, f.pods[managedNS+"/"+d.pod])
		if err != nil {
			return nil, err
		}
		req := request(managedNS, d.pod, "", "v1", "Pod", "pods", admissionv1.Delete, statefulSetSA, &metav1.DeleteOptions{})
		req.OldObject = oldRaw
		if err := add(d.name, inplacewebhook.PathValidatePod, d.weight, d.want, req); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// request is an AdmissionRequest's envelope as the API server fills it.
func request(ns, name, group, version, kind, resource string, op admissionv1.Operation, user string, options runtime.Object) *admissionv1.AdmissionRequest {
	gvk := metav1.GroupVersionKind{Group: group, Version: version, Kind: kind}
	gvr := metav1.GroupVersionResource{Group: group, Version: version, Resource: resource}
	ui := authenticationv1.UserInfo{Username: user, UID: "7d3c1a52-3f0e-4b7e-9a57-2b1c0e6f9d41", Groups: []string{"system:authenticated"}}
	if strings.HasPrefix(user, "system:serviceaccount:") {
		ui.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}
	}
	var optionsKind string
	switch options.(type) {
	case *metav1.CreateOptions:
		optionsKind = "CreateOptions"
	case *metav1.UpdateOptions:
		optionsKind = "UpdateOptions"
	case *metav1.DeleteOptions:
		optionsKind = "DeleteOptions"
	}
	options.GetObjectKind().SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind(optionsKind))
	opts, _ := json.Marshal(options)
	return &admissionv1.AdmissionRequest{
		Kind: gvk, Resource: gvr, RequestKind: &gvk, RequestResource: &gvr,
		Name: name, Namespace: ns, Operation: op, UserInfo: ui,
		DryRun:  ptr.To(false),
		Options: runtime.RawExtension{Raw: opts},
	}
}

// dryRunCreate returns the object as the API server admits its create:
// defaulted, with its managedFields, before it has a uid.
func dryRunCreate(ctx context.Context, c client.Client, obj client.Object) (runtime.RawExtension, error) {
	obj = obj.DeepCopyObject().(client.Object)
	if err := c.Create(ctx, obj, client.DryRunAll, client.FieldOwner("kube-controller-manager")); err != nil {
		return runtime.RawExtension{}, err
	}
	obj.SetUID("")
	obj.SetResourceVersion("")
	obj.SetCreationTimestamp(metav1.Time{})
	return raw(c, obj)
}

// dryRunUpdate returns the object as the API server admits its update.
func dryRunUpdate(ctx context.Context, c client.Client, obj client.Object) (runtime.RawExtension, error) {
	obj = obj.DeepCopyObject().(client.Object)
	if err := c.Update(ctx, obj, client.DryRunAll, client.FieldOwner("kubectl-set")); err != nil {
		return runtime.RawExtension{}, err
	}
	return raw(c, obj)
}

// stored returns the object as the API server stores it (an update's or a
// delete's oldObject).
func stored(ctx context.Context, c client.Client, obj client.Object) (runtime.RawExtension, error) {
	obj = obj.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return runtime.RawExtension{}, err
	}
	return raw(c, obj)
}

// raw encodes an object with its apiVersion and kind, as in an AdmissionReview.
func raw(c client.Client, obj client.Object) (runtime.RawExtension, error) {
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return runtime.RawExtension{}, err
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	b, err := json.Marshal(obj)
	return runtime.RawExtension{Raw: b}, err
}

// renewLease renews the other leader's lease until ctx ends.
func renewLease(ctx context.Context, c client.Client) {
	t := time.NewTicker(leaseRenewEach)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lease := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: managerNS, Name: app.LeaderElectionID}, lease); err != nil {
			continue
		}
		lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		_ = c.Update(ctx, lease)
	}
}

// dump writes each scenario's AdmissionReview into dir as
// NN-<name>.<path>.json, and the objects the manager reads as objects.json,
// for a look or an in-process benchmark.
func dump(ctx context.Context, c client.Client, dir string, scens []scenario) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for i, s := range scens {
		name := fmt.Sprintf("%02d-%s%s.json", i, slug(s.name), strings.ReplaceAll(s.path, "/", "."))
		if err := os.WriteFile(filepath.Join(dir, name), s.body, 0o644); err != nil {
			return err
		}
	}
	var objs []runtime.RawExtension
	for _, list := range []client.ObjectList{&corev1.NamespaceList{}, &corev1.NodeList{}, &appsv1.StatefulSetList{}, &appsv1.DeploymentList{},
		&appsv1.ReplicaSetList{}, &appsv1.DaemonSetList{}, &appsv1.ControllerRevisionList{}, &corev1.PodList{}} {
		if err := c.List(ctx, list); err != nil {
			return err
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return err
		}
		for _, item := range items {
			r, err := raw(c, item.(client.Object))
			if err != nil {
				return err
			}
			objs = append(objs, r)
		}
	}
	b, err := json.Marshal(objs)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "objects.json"), b, 0o644)
}

func slug(s string) string {
	return strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r - 'A' + 'a'
		}
		return '-'
	}, s), "-")
}
