package manifests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/inplace-dev/inplace/certs"
	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testenv"
)

// The policies of manager-guard.yaml, installed with the manager's RBAC (the
// base's and the built-in certificate's) in a real kube-apiserver, and each
// identity's writes made as that identity: the manager's ServiceAccount, a
// user allowed by RBAC to patch pods, the break-glass group, the uninstall
// Job and an administrator. Each case says what must be allowed, or refused
// and why: a policy that refuses too much breaks rollouts as surely as one
// that refuses too little lets a token through.

const (
	ns           = "apps"
	managerUser  = "system:serviceaccount:inplace-system:inplace-manager"
	releaserUser = "system:serviceaccount:inplace-system:inplace-release-holds"
)

// clients, one per identity.
type clients struct {
	admin, manager, mallory, breakGlass, releaser client.Client
	// podMover may patch and delete pods, as the manager may, and no more.
	podMover client.Client
	// managerConfig is the manager's, for a controller-runtime manager.
	managerConfig *rest.Config
}

func TestManagerGuard(t *testing.T) {
	cs := startGuarded(t, nil)
	t.Run("manager", func(t *testing.T) { managerCases(t, cs) })
	t.Run("others", func(t *testing.T) { othersCases(t, cs) })
	t.Run("pods created", func(t *testing.T) { createCases(t, cs) })
	t.Run("prepull pods", func(t *testing.T) { prepullCases(t, cs) })
	t.Run("webhook configurations", func(t *testing.T) { webhookCases(t, cs) })
}

// TestManagerGuardOwnerReferencesPermissionEnforcement: with the admission
// plugin on, as OpenShift runs it, setting an owner reference needs the
// right to delete the object, and one that blocks its owner's deletion the
// right to update the owner's finalizers. The manager's ClusterRole has
// both for the move of a Deployment's pod to its new ReplicaSet; a user with
// the manager's rights on pods but not replicasets/finalizers is refused.
// (The plugin runs before the policies: TestManagerGuard proves them
// without it, as most clusters run.)
func TestManagerGuardOwnerReferencesPermissionEnforcement(t *testing.T) {
	cs := startGuarded(t, func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	})
	t.Run("the manager moves a pod", func(t *testing.T) {
		pod := deploymentPod(t, cs.admin, "mv-enforced")
		err := cs.manager.Patch(t.Context(), move(pod, "7f9c8b6d5", newReplicaSet), client.StrategicMergeFrom(pod, client.MergeFromWithOptimisticLock{}))
		expect(t, err, scope, "")
	})
	t.Run("a pod moved without the right to the ReplicaSet's finalizers", func(t *testing.T) {
		pod := deploymentPod(t, cs.admin, "mv-no-finalizers")
		err := cs.podMover.Patch(t.Context(), move(pod, "7f9c8b6d5", newReplicaSet), client.StrategicMergeFrom(pod))
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "can't set finalizers on") {
			t.Fatalf("got %v, want OwnerReferencesPermissionEnforcement's refusal for want of replicasets/finalizers", err)
		}
	})
}

// startGuarded starts an API server as configure leaves it, installs the
// manager's namespace, RBAC and manager-guard.yaml, makes the namespace of
// the cases, managed, and returns a client per identity once the policies
// are in force.
func startGuarded(t *testing.T, configure func(*envtest.Environment)) clients {
	t.Helper()
	env, admin := testenv.Start(t, app.Scheme(), configure)
	ctx := t.Context()
	cs := clients{admin: admin}
	for _, file := range []string{"base/namespace.yaml", "base/rbac.yaml", "components/builtin-certs/rbac.yaml", "base/manager-guard.yaml"} {
		apply(t, cs.admin, file)
	}
	if err := cs.admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{inplace.LabelEnabled: "true"}}}); err != nil {
		t.Fatal(err)
	}
	// mallory and the uninstall Job may create and patch pods and their
	// status, by RBAC.
	podWriter := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-writer"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "pods/status"}, Verbs: []string{"get", "create", "patch", "update"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-writer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "pod-writer"},
		Subjects: []rbacv1.Subject{
			{APIGroup: rbacv1.GroupName, Kind: "User", Name: "mallory"},
			{APIGroup: rbacv1.GroupName, Kind: "User", Name: releaserUser},
		},
	}
	podMover := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-mover"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch", "delete"}},
		},
	}
	podMoverBinding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-mover"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "pod-mover"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "pod-mover"}},
	}
	for _, obj := range []client.Object{podWriter, binding, podMover, podMoverBinding} {
		if err := cs.admin.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	serviceAccounts := []string{"system:serviceaccounts", "system:serviceaccounts:inplace-system", "system:authenticated"}
	for _, u := range []struct {
		into *client.Client
		user envtest.User
	}{
		{&cs.manager, envtest.User{Name: managerUser, Groups: serviceAccounts}},
		{&cs.mallory, envtest.User{Name: "mallory", Groups: []string{"system:authenticated"}}},
		{&cs.breakGlass, envtest.User{Name: "root", Groups: []string{"system:masters"}}},
		{&cs.releaser, envtest.User{Name: releaserUser, Groups: serviceAccounts}},
		{&cs.podMover, envtest.User{Name: "pod-mover", Groups: []string{"system:authenticated"}}},
	} {
		user, err := env.AddUser(u.user, nil)
		if err != nil {
			t.Fatal(err)
		}
		if *u.into, err = client.New(user.Config(), client.Options{Scheme: app.Scheme()}); err != nil {
			t.Fatal(err)
		}
		if u.user.Name == managerUser {
			cs.managerConfig = user.Config()
		}
	}
	waitForPolicies(t, cs)
	return cs
}

// apply creates every object of a manifest file.
func apply(t *testing.T, c client.Client, file string) {
	t.Helper()
	objs, err := testenv.ObjectsOf(filepath.Join(testenv.Root, "manifests", file))
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if err := c.Create(t.Context(), obj); err != nil {
			t.Fatalf("%s: creating %s %s: %v", file, obj.GetKind(), obj.GetName(), err)
		}
	}
}

// waitForPolicies waits until both policies are in force: the API server
// loads them a moment after they are created.
func waitForPolicies(t *testing.T, cs clients) {
	t.Helper()
	probe := plainPod(t, cs.admin, "probe")
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		// Each try writes something new: a no-op would prove nothing.
		errManager := patchMeta(t.Context(), cs.manager, probe, false, fmt.Sprintf(`{"metadata":{"labels":{"probe":"%d"}}}`, i))
		errMallory := patchMeta(t.Context(), cs.mallory, probe, false, fmt.Sprintf(`{"metadata":{"annotations":{"inplace.dev/update-state":"%d"}}}`, i))
		if errManager != nil && errMallory != nil && strings.Contains(errManager.Error(), scope) &&
			strings.Contains(errMallory.Error(), marks) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policies were not in force after 60s: manager: %v; mallory: %v", errManager, errMallory)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// markedPod creates a pod as the webhook would have made it, with an
// in-place update under way, owned by a StatefulSet.
func markedPod(t *testing.T, admin client.Client, name string) *corev1.Pod {
	t.Helper()
	pod := builder.Pod(name, ns).
		OwnedBy("apps/v1", "StatefulSet", "web", types.UID("4c1d2a6e-0000-4000-8000-000000000001")).
		Label(inplace.LabelManaged, "true").
		Label(appsv1.StatefulSetRevisionLabel, "web-1").
		Annotation(inplace.AnnotationUpdateState, `{"revision":"web-2"}`).
		ReadinessGate(inplace.ConditionInPlaceUpdateReady).
		Obj()
	createPod(t, admin, pod)
	return pod
}

// plainPod creates a pod the webhook never gated.
func plainPod(t *testing.T, admin client.Client, name string) *corev1.Pod {
	t.Helper()
	pod := builder.Pod(name, ns).Obj()
	createPod(t, admin, pod)
	return pod
}

func createPod(t *testing.T, admin client.Client, pod *corev1.Pod) {
	t.Helper()
	if err := admin.Create(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	// The status a kubelet would have written: running and Ready.
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "nginx:1.27", Ready: true, ContainerID: "containerd://1"}},
	}
	if err := admin.Status().Update(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
}

// patchMeta writes a JSON merge patch to the object, or to its status.
func patchMeta(ctx context.Context, c client.Client, obj client.Object, status bool, patch string) error {
	p := client.RawPatch(types.MergePatchType, []byte(patch))
	if status {
		return c.Status().Patch(ctx, obj, p)
	}
	return c.Patch(ctx, obj, p)
}

// conditionsPatch is a strategic merge patch of the pod's conditions.
func conditionsPatch(conds ...corev1.PodCondition) client.Patch {
	b, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": conds}})
	return client.RawPatch(types.StrategicMergePatchType, b)
}

// expect checks a write's outcome: allowed when refusal is empty, else
// refused by the named policy with a message containing refusal.
func expect(t *testing.T, err error, policy, refusal string) {
	t.Helper()
	switch {
	case refusal == "" && err != nil:
		t.Fatalf("refused, want allowed: %v", err)
	case refusal == "":
	case err == nil:
		t.Fatalf("allowed, want refused by %s (%q)", policy, refusal)
	case !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err):
		t.Fatalf("want a refusal by %s, got %v", policy, err)
	case !strings.Contains(err.Error(), policy) || !strings.Contains(err.Error(), refusal):
		t.Fatalf("refused with %q, want %s saying %q", err, policy, refusal)
	}
}

const (
	scope          = "inplace-manager-scope"
	marks          = "inplace-manager-marks"
	onlyGated      = "only the pods its webhook gated"
	onlyImages     = "only the images of a pod's spec"
	noFinalizers   = "may not change a pod's finalizers"
	onlyMove       = "owners only to move it to another ReplicaSet of its Deployment"
	onlyGate       = "only a pod's InPlaceUpdateReady condition"
	onlyStsAnnots  = "only the inplace.dev annotations of a StatefulSet"
	onlyDepAnnots  = "only the inplace.dev annotations of a Deployment"
	onlyDsAnnots   = "only the inplace.dev annotations of a DaemonSet"
	onlyRsAnnots   = "only the inplace.dev annotations of a ReplicaSet"
	onlyHold       = "only to release the partition hold"
	onlyManagerSet = "only inplace-manager may set or change"
	noMarkedCreate = "may not be created with"
	onlyRemove     = "the break-glass group may remove"
	onlyPrepull    = "may create only prepull pods"
)

func managerCases(t *testing.T, cs clients) {
	podCases := []struct {
		name    string
		pod     func(*testing.T, client.Client, string) *corev1.Pod
		status  bool
		patch   string
		policy  string
		refusal string
	}{
		// What an in-place update writes, in one patch: the images, the
		// revision label, the update state.
		{"image, labels and annotations", markedPod, false,
			`{"metadata":{"labels":{"controller-revision-hash":"web-2","tier":"new"},"annotations":{"inplace.dev/update-state":"{}"}},"spec":{"containers":[{"name":"app","image":"nginx:1.28"}]}}`, "", ""},
		{"an unmanaged pod's image", plainPod, false,
			`{"spec":{"containers":[{"name":"app","image":"evil:1"}]}}`, scope, onlyGated},
		{"an unmanaged pod's labels", plainPod, false,
			`{"metadata":{"labels":{"inplace.dev/managed":"true"}}}`, scope, onlyGated},
		{"the managed label removed", markedPod, false,
			`{"metadata":{"labels":{"inplace.dev/managed":null}}}`, scope, onlyGated},
		{"activeDeadlineSeconds", markedPod, false,
			`{"spec":{"activeDeadlineSeconds":1}}`, scope, onlyImages},
		{"a toleration added", markedPod, false,
			`{"spec":{"tolerations":[{"key":"k","operator":"Exists"}]}}`, scope, onlyImages},
		{"the owner removed", markedPod, false,
			`{"metadata":{"ownerReferences":null}}`, scope, onlyMove},
		{"a finalizer added", markedPod, false,
			`{"metadata":{"finalizers":["example.com/keep"]}}`, scope, noFinalizers},
		{"the phase", markedPod, true,
			`{"status":{"phase":"Failed"}}`, scope, onlyGate},
		{"an unmanaged pod's status", plainPod, true,
			`{"status":{"message":"x"}}`, scope, onlyGated},
	}
	for _, tc := range podCases {
		t.Run(tc.name, func(t *testing.T) {
			pod := tc.pod(t, cs.admin, podName("m", tc.name))
			pod = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: ns}}
			expect(t, patchMeta(t.Context(), cs.manager, pod, tc.status, tc.patch), tc.policy, tc.refusal)
		})
	}

	now := metav1.Now()
	condCases := []struct {
		name    string
		conds   []corev1.PodCondition
		refusal string
	}{
		{"gate closed with Ready False", []corev1.PodCondition{
			{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse, Reason: "InPlaceUpdate", LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ReadinessGatesNotReady", LastTransitionTime: now},
		}, ""},
		{"gate opened", []corev1.PodCondition{
			{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionTrue, Reason: "Reopened", LastTransitionTime: now},
		}, ""},
		{"another condition", []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, LastTransitionTime: now},
		}, onlyGate},
	}
	for _, tc := range condCases {
		t.Run(tc.name, func(t *testing.T) {
			pod := markedPod(t, cs.admin, podName("c", tc.name))
			expect(t, cs.manager.Status().Patch(t.Context(), pod, conditionsPatch(tc.conds...)), scope, tc.refusal)
		})
	}
	t.Run("Ready made True", func(t *testing.T) {
		pod := markedPod(t, cs.admin, "c-ready-true")
		// Not Ready first (as the admin: the manager may do that too).
		if err := cs.admin.Status().Patch(t.Context(), pod, conditionsPatch(corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: now})); err != nil {
			t.Fatal(err)
		}
		err := cs.manager.Status().Patch(t.Context(), pod, conditionsPatch(corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}))
		expect(t, err, scope, onlyGate)
	})

	// A resize, as the engine asks for one: the pod's resize subresource.
	for _, tc := range []struct {
		name    string
		managed bool
		policy  string
		refusal string
	}{
		{"resize a managed pod", true, "", ""},
		{"resize an unmanaged pod", false, scope, onlyGated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := builder.Pod(podName("r", tc.name), ns).Obj()
			pod.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
			}
			if tc.managed {
				pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web",
					UID: types.UID("4c1d2a6e-0000-4000-8000-000000000001"), Controller: ptr.To(true)}}
				pod.Labels = map[string]string{inplace.LabelManaged: "true"}
				pod.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: inplace.ConditionInPlaceUpdateReady}}
			}
			createPod(t, cs.admin, pod)
			patch := client.RawPatch(types.StrategicMergePatchType,
				[]byte(`{"spec":{"containers":[{"name":"app","resources":{"limits":{"cpu":"2"}}}]}}`))
			expect(t, cs.manager.SubResource("resize").Patch(t.Context(), pod, patch), tc.policy, tc.refusal)
		})
	}

	t.Run("delete a managed pod", func(t *testing.T) {
		expect(t, cs.manager.Delete(t.Context(), markedPod(t, cs.admin, "d-managed")), "", "")
	})
	t.Run("delete an unmanaged pod", func(t *testing.T) {
		expect(t, cs.manager.Delete(t.Context(), plainPod(t, cs.admin, "d-plain")), scope, onlyGated)
	})

	stsCases := []struct {
		name    string
		held    bool
		patch   string
		refusal string
	}{
		{"the rollout record", false, `{"metadata":{"annotations":{"inplace.dev/rollout":"{}"}}}`, ""},
		{"a hold released", true, `{"metadata":{"annotations":{"inplace.dev/hold":null}},"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}`, ""},
		{"the partition without a hold", false, `{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}`, onlyHold},
		{"the strategy type", true, `{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}`, onlyHold},
		{"replicas", false, `{"spec":{"replicas":5}}`, onlyStsAnnots},
		{"the template's image", false, `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"evil:1"}]}}}}`, onlyStsAnnots},
		{"a label", false, `{"metadata":{"labels":{"team":"x"}}}`, onlyStsAnnots},
		{"another annotation", false, `{"metadata":{"annotations":{"example.com/note":"x"}}}`, onlyStsAnnots},
	}
	for i, tc := range stsCases {
		t.Run("StatefulSet "+tc.name, func(t *testing.T) {
			sts := builder.StatefulSet(fmt.Sprintf("web-%d", i), ns).Replicas(3).Obj()
			sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
				Type:          appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](3)},
			}
			if tc.held {
				metav1.SetMetaDataAnnotation(&sts.ObjectMeta, inplace.AnnotationHold, `{"partition":0}`)
			}
			if err := cs.admin.Create(t.Context(), sts); err != nil {
				t.Fatal(err)
			}
			expect(t, patchMeta(t.Context(), cs.manager, sts, false, tc.patch), scope, tc.refusal)
		})
	}

	deployment := func(name string) client.Object { return builder.Deployment(name, ns).Obj() }
	daemonSet := func(name string) client.Object { return builder.DaemonSet(name, ns).Obj() }
	replicaSet := func(name string) client.Object {
		rs := builder.ReplicaSet(builder.Deployment(name, ns).Obj(), "h1").Obj()
		rs.OwnerReferences, rs.Status = nil, appsv1.ReplicaSetStatus{}
		return rs
	}
	workloadCases := []struct {
		name    string
		obj     func(name string) client.Object
		patch   string
		refusal string
	}{
		{"Deployment the rollout record", deployment, `{"metadata":{"annotations":{"inplace.dev/rollout":"{}"}}}`, ""},
		{"Deployment replicas", deployment, `{"spec":{"replicas":5}}`, onlyDepAnnots},
		{"Deployment paused", deployment, `{"spec":{"paused":true}}`, onlyDepAnnots},
		{"Deployment the strategy", deployment, `{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":"100%"}}}}`, onlyDepAnnots},
		{"Deployment the template's image", deployment, `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"evil:1"}]}}}}`, onlyDepAnnots},
		{"Deployment a label", deployment, `{"metadata":{"labels":{"team":"x"}}}`, onlyDepAnnots},
		{"Deployment another annotation", deployment, `{"metadata":{"annotations":{"example.com/note":"x"}}}`, onlyDepAnnots},
		{"Deployment a finalizer", deployment, `{"metadata":{"finalizers":["example.com/keep"]}}`, onlyDepAnnots},
		{"DaemonSet the rollout record", daemonSet, `{"metadata":{"annotations":{"inplace.dev/rollout":"{}"}}}`, ""},
		{"DaemonSet the update strategy", daemonSet, `{"spec":{"updateStrategy":{"rollingUpdate":{"maxUnavailable":"100%"}}}}`, onlyDsAnnots},
		{"DaemonSet the template's image", daemonSet, `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"evil:1"}]}}}}`, onlyDsAnnots},
		{"DaemonSet an owner", daemonSet, `{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Namespace","name":"apps","uid":"4c1d2a6e-0000-4000-8000-000000000003"}]}}`, onlyDsAnnots},
		{"ReplicaSet woken", replicaSet, `{"metadata":{"annotations":{"inplace.dev/woken-at":"2026-12-02T04:30:00Z"}}}`, ""},
		{"ReplicaSet replicas", replicaSet, `{"spec":{"replicas":0}}`, onlyRsAnnots},
		{"ReplicaSet the template's image", replicaSet, `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"evil:1"}]}}}}`, onlyRsAnnots},
		{"ReplicaSet a label", replicaSet, `{"metadata":{"labels":{"team":"x"}}}`, onlyRsAnnots},
		{"ReplicaSet another annotation", replicaSet, `{"metadata":{"annotations":{"deployment.kubernetes.io/revision":"99"}}}`, onlyRsAnnots},
		{"ReplicaSet an owner", replicaSet, `{"metadata":{"ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"evil","uid":"4c1d2a6e-0000-4000-8000-000000000004"}]}}`, onlyRsAnnots},
	}
	for i, tc := range workloadCases {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.obj(fmt.Sprintf("w-%d", i))
			if err := cs.admin.Create(t.Context(), obj); err != nil {
				t.Fatal(err)
			}
			expect(t, patchMeta(t.Context(), cs.manager, obj, false, tc.patch), scope, tc.refusal)
		})
	}

	moveCases(t, cs)
}

// The ReplicaSets of the Deployment web a pod moves between, and another
// Deployment's.
var (
	oldReplicaSet   = metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-6d4b5c7f8", UID: "4c1d2a6e-0000-4000-8000-00000000a001"}
	newReplicaSet   = metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7f9c8b6d5", UID: "4c1d2a6e-0000-4000-8000-00000000a002"}
	otherReplicaSet = metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "shop-7f9c8b6d5", UID: "4c1d2a6e-0000-4000-8000-00000000a003"}
)

// deploymentPod creates a gated pod of the ReplicaSet web-6d4b5c7f8.
func deploymentPod(t *testing.T, admin client.Client, name string) *corev1.Pod {
	t.Helper()
	pod := builder.Pod(name, ns).
		OwnedBy(oldReplicaSet.APIVersion, oldReplicaSet.Kind, oldReplicaSet.Name, oldReplicaSet.UID).
		Label(inplace.LabelManaged, "true").
		Label(appsv1.DefaultDeploymentUniqueLabelKey, "6d4b5c7f8").
		ReadinessGate(inplace.ConditionInPlaceUpdateReady).
		Obj()
	createPod(t, admin, pod)
	return pod
}

// move returns the pod with its pod-template-hash label set to hash and its
// controller reference replaced by to (as the ReplicaSet controller writes
// one: controller, blocking its owner's deletion), and every other owner
// and extra, as the Deployment rollout moves a pod.
func move(pod *corev1.Pod, hash string, to metav1.OwnerReference, extra ...metav1.OwnerReference) *corev1.Pod {
	pod = pod.DeepCopy()
	pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	var refs []metav1.OwnerReference
	for _, r := range pod.OwnerReferences {
		if !ptr.Deref(r.Controller, false) {
			refs = append(refs, r)
		}
	}
	to.Controller, to.BlockOwnerDeletion = ptr.To(true), ptr.To(true)
	pod.OwnerReferences = append(append(refs, extra...), to)
	return pod
}

// moveCases: the manager moves a Deployment's pod to the Deployment's new
// ReplicaSet, in place: its one permitted change of owners.
func moveCases(t *testing.T, cs clients) {
	sameUID := newReplicaSet
	sameUID.UID = oldReplicaSet.UID
	asStatefulSet := newReplicaSet
	asStatefulSet.Kind = "StatefulSet"
	cases := []struct {
		name    string
		edit    func(*corev1.Pod) *corev1.Pod
		refusal string
	}{
		{"moved to the new ReplicaSet, with its images", func(p *corev1.Pod) *corev1.Pod {
			p = move(p, "7f9c8b6d5", newReplicaSet)
			p.Spec.Containers[0].Image = "nginx:1.28"
			return p
		}, ""},
		{"moved to another Deployment's ReplicaSet", func(p *corev1.Pod) *corev1.Pod {
			return move(p, "7f9c8b6d5", otherReplicaSet)
		}, onlyMove},
		// web-x-7f9c8b6d5 is the Deployment web-x's.
		{"moved through a dash in the hash", func(p *corev1.Pod) *corev1.Pod {
			to := newReplicaSet
			to.Name = "web-x-7f9c8b6d5"
			return move(p, "x-7f9c8b6d5", to)
		}, onlyMove},
		{"moved without its hash", func(p *corev1.Pod) *corev1.Pod {
			return move(p, "6d4b5c7f8", newReplicaSet)
		}, onlyMove},
		{"moved to a namesake of its ReplicaSet", func(p *corev1.Pod) *corev1.Pod {
			to := newReplicaSet
			to.Name = oldReplicaSet.Name
			return move(p, "6d4b5c7f8", to)
		}, onlyMove},
		{"moved with another hash than the ReplicaSet's", func(p *corev1.Pod) *corev1.Pod {
			return move(p, "8b5d6c7f9", newReplicaSet)
		}, onlyMove},
		{"moved under the old ReplicaSet's UID", func(p *corev1.Pod) *corev1.Pod {
			return move(p, "7f9c8b6d5", sameUID)
		}, onlyMove},
		{"moved to a StatefulSet", func(p *corev1.Pod) *corev1.Pod {
			return move(p, "7f9c8b6d5", asStatefulSet)
		}, onlyMove},
		{"moved, with an owner added", func(p *corev1.Pod) *corev1.Pod {
			return move(p, "7f9c8b6d5", newReplicaSet, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: "4c1d2a6e-0000-4000-8000-00000000a004"})
		}, onlyMove},
		{"an owner added, not a controller", func(p *corev1.Pod) *corev1.Pod {
			p = p.DeepCopy()
			p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "4c1d2a6e-0000-4000-8000-00000000a005"})
			return p
		}, onlyMove},
		{"the controller removed", func(p *corev1.Pod) *corev1.Pod {
			p = p.DeepCopy()
			p.OwnerReferences = nil
			p.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = "7f9c8b6d5"
			return p
		}, onlyMove},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := deploymentPod(t, cs.admin, podName("mv", tc.name))
			// The patch the rollout writes: a strategic merge patch from
			// the pod it read.
			patch := client.StrategicMergeFrom(pod, client.MergeFromWithOptimisticLock{})
			expect(t, cs.manager.Patch(t.Context(), tc.edit(pod), patch), scope, tc.refusal)
		})
	}
}

func othersCases(t *testing.T, cs clients) {
	cases := []struct {
		name    string
		as      func(clients) client.Client
		pod     func(*testing.T, client.Client, string) *corev1.Pod
		status  bool
		patch   string
		refusal string
	}{
		{"forged update state", mallory, plainPod, false,
			`{"metadata":{"annotations":{"inplace.dev/update-state":"{\"revision\":\"x\"}"}}}`, onlyManagerSet},
		{"update state changed", mallory, markedPod, false,
			`{"metadata":{"annotations":{"inplace.dev/update-state":"{\"revision\":\"x\"}"}}}`, onlyManagerSet},
		{"update state changed through status", mallory, markedPod, true,
			`{"metadata":{"annotations":{"inplace.dev/update-state":"{\"revision\":\"x\"}"}}}`, onlyManagerSet},
		{"update state removed", mallory, markedPod, false,
			`{"metadata":{"annotations":{"inplace.dev/update-state":null}}}`, onlyRemove},
		{"managed label removed", mallory, markedPod, false,
			`{"metadata":{"labels":{"inplace.dev/managed":null}}}`, onlyRemove},
		{"managed label added", mallory, plainPod, false,
			`{"metadata":{"labels":{"inplace.dev/managed":"true"}}}`, onlyManagerSet},
		// What users and controllers do to marked pods goes through.
		{"a user's label on a marked pod", mallory, markedPod, false,
			`{"metadata":{"labels":{"team":"x"},"annotations":{"inplace.dev/update-policy":"Recreate"}}}`, ""},
		{"a kubelet-like status write", mallory, markedPod, true,
			`{"status":{"message":"still here"}}`, ""},
		{"break glass removes the marks", breakGlass, markedPod, false,
			`{"metadata":{"labels":{"inplace.dev/managed":null},"annotations":{"inplace.dev/update-state":null}}}`, ""},
		{"break glass forges no mark", breakGlass, markedPod, false,
			`{"metadata":{"annotations":{"inplace.dev/update-state":"{}"}}}`, onlyManagerSet},
		{"the uninstall Job clears the update state", releaser, markedPod, false,
			`{"metadata":{"annotations":{"inplace.dev/update-state":null}}}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := tc.pod(t, cs.admin, podName("o", tc.name))
			pod = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: ns}}
			expect(t, patchMeta(t.Context(), tc.as(cs), pod, tc.status, tc.patch), marks, tc.refusal)
		})
	}
	// The policy never sees the control plane's namespaces.
	t.Run("kube-system", func(t *testing.T) {
		pod := builder.Pod("o-kube-system", "kube-system").Obj()
		if err := cs.admin.Create(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
		expect(t, patchMeta(t.Context(), cs.mallory, pod, false, `{"metadata":{"annotations":{"inplace.dev/update-state":"{}"}}}`), marks, "")
	})
}

// createCases: a bare pod, which the pod webhook never sees, is refused at
// creation when it carries the manager's marks; one a native workload
// controls is left to the webhook, and created even when the webhook is down
// (here it is not installed); one another controller controls is created as
// its template says, the manager never acting on it.
func createCases(t *testing.T, cs clients) {
	type owner struct {
		apiVersion, kind string
		controller       bool
	}
	var (
		bare        []owner
		statefulSet = []owner{{"apps/v1", "StatefulSet", true}}
		replicaSet  = []owner{{"apps/v1", "ReplicaSet", true}}
		daemonSet   = []owner{{"apps/v1", "DaemonSet", true}}
		job         = []owner{{"batch/v1", "Job", true}}
		cloneSet    = []owner{{"apps.kruise.io/v1alpha1", "CloneSet", true}}
		notControls = []owner{{"apps/v1", "ReplicaSet", false}}
	)
	updateState := map[string]string{inplace.AnnotationUpdateState: `{"revision":"web-2"}`}
	cases := []struct {
		name        string
		as          func(clients) client.Client
		namespace   string
		owners      []owner
		labels      map[string]string
		annotations map[string]string
		refusal     string
	}{
		{"a bare pod with an update state", mallory, ns, bare, nil, updateState, noMarkedCreate},
		{"a bare pod with the managed label", mallory, ns, bare, map[string]string{inplace.LabelManaged: "true"}, nil, noMarkedCreate},
		{"a pod a ReplicaSet owns but does not control", mallory, ns, notControls, nil, updateState, noMarkedCreate},
		{"break glass creates a marked pod", breakGlass, ns, bare, nil, updateState, noMarkedCreate},
		{"a bare pod with the users' annotations", mallory, ns, bare, nil, map[string]string{
			inplace.AnnotationUpdatePolicy: "Recreate", inplace.AnnotationGracePeriod: "5"}, ""},
		// The native controllers' pods, as the webhook would see them.
		{"a StatefulSet's pod with an update state", mallory, ns, statefulSet, nil, updateState, ""},
		{"a ReplicaSet's pod with the managed label", mallory, ns, replicaSet, map[string]string{inplace.LabelManaged: "true"}, nil, ""},
		{"a DaemonSet's pod with an update state", mallory, ns, daemonSet, nil, updateState, ""},
		// Other controllers' pods, from a template that carries the marks.
		{"a Job's pod with an update state", mallory, ns, job, nil, updateState, ""},
		{"a CloneSet's pod with the managed label", mallory, ns, cloneSet, map[string]string{inplace.LabelManaged: "true"}, nil, ""},
		// The policy never sees the control plane's namespaces.
		{"a bare pod with an update state in kube-system", mallory, "kube-system", bare, nil, updateState, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := builder.Pod(podName("n", tc.name), tc.namespace).Obj()
			pod.Labels, pod.Annotations = tc.labels, tc.annotations
			for _, o := range tc.owners {
				pod.OwnerReferences = append(pod.OwnerReferences, metav1.OwnerReference{
					APIVersion: o.apiVersion, Kind: o.kind, Name: "web", Controller: ptr.To(o.controller),
					UID: types.UID(fmt.Sprintf("4c1d2a6e-0000-4000-8000-1%011d", i)),
				})
			}
			expect(t, tc.as(cs).Create(t.Context(), pod), marks, tc.refusal)
		})
	}
}

func mallory(cs clients) client.Client    { return cs.mallory }
func breakGlass(cs clients) client.Client { return cs.breakGlass }
func releaser(cs clients) client.Client   { return cs.releaser }

// podName makes a pod name of a case's name.
func podName(prefix, name string) string {
	return prefix + "-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r - 'A' + 'a'
		}
		return '-'
	}, name)
}

const onlyCABundle = "only the caBundle (clientConfig.caBundle)"

// webhookCases: with the built-in certificate the manager may update its two
// webhook configurations (RBAC, components/builtin-certs), for the CA
// cert-controller injects; the policy keeps everything else of them as it
// was, so that a stolen token cannot send other requests to the webhook,
// send them elsewhere, or make a failing call refuse them.
func webhookCases(t *testing.T, cs clients) {
	apply(t, cs.admin, "base/webhooks.yaml")
	t.Cleanup(func() {
		for _, obj := range []client.Object{
			&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "inplace-mutating"}},
			&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "inplace-validating"}},
		} {
			if err := cs.admin.Delete(context.Background(), obj); err != nil {
				t.Error(err)
			}
		}
	})

	// The manager's own code: cert-controller's rotator, as the manager
	// runs it, makes the CA and writes it into every webhook.
	t.Run("the built-in certificate's CA injected", func(t *testing.T) {
		injectCA(t, cs)
	})

	type (
		mutating   = admissionregistrationv1.MutatingWebhookConfiguration
		validating = admissionregistrationv1.ValidatingWebhookConfiguration
	)
	// The pod webhook, the first of inplace-mutating.
	podWebhook := func(edit func(*admissionregistrationv1.MutatingWebhook)) func(*mutating) {
		return func(c *mutating) { edit(&c.Webhooks[0]) }
	}
	caBundle := []byte("-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n")
	mutatingCases := []struct {
		name    string
		edit    func(*mutating)
		refusal string
	}{
		{"another caBundle in every webhook", func(c *mutating) {
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = caBundle
			}
		}, ""},
		{"the rules widened", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.Rules[0].Operations = append(w.Rules[0].Operations, admissionregistrationv1.Update)
		}), onlyCABundle},
		{"the namespace selector dropped", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.NamespaceSelector = &metav1.LabelSelector{}
		}), onlyCABundle},
		{"an object selector", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
		}), onlyCABundle},
		{"a match condition dropped", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.MatchConditions = w.MatchConditions[1:]
		}), onlyCABundle},
		{"failurePolicy Fail", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
		}), onlyCABundle},
		{"failurePolicy Fail with another caBundle", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
			w.ClientConfig.CABundle = caBundle
		}), onlyCABundle},
		{"sideEffects", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.SideEffects = ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun)
		}), onlyCABundle},
		{"timeoutSeconds", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.TimeoutSeconds = ptr.To[int32](30)
		}), onlyCABundle},
		{"admissionReviewVersions", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.AdmissionReviewVersions = []string{"v1", "v1beta1"}
		}), onlyCABundle},
		{"matchPolicy", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.MatchPolicy = ptr.To(admissionregistrationv1.Exact)
		}), onlyCABundle},
		{"reinvocationPolicy", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.ReinvocationPolicy = ptr.To(admissionregistrationv1.NeverReinvocationPolicy)
		}), onlyCABundle},
		{"the service elsewhere", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.ClientConfig.Service.Namespace = "kube-system"
			w.ClientConfig.Service.Name = "evil"
		}), onlyCABundle},
		{"the service's path", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.ClientConfig.Service.Path = ptr.To("/mutate-apps-v1-deployment")
		}), onlyCABundle},
		{"a URL for the service", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.ClientConfig.Service = nil
			w.ClientConfig.URL = ptr.To("https://evil.example.com/mutate")
		}), onlyCABundle},
		{"a webhook renamed", podWebhook(func(w *admissionregistrationv1.MutatingWebhook) {
			w.Name = "evil.inplace.dev"
		}), onlyCABundle},
		{"a webhook added", func(c *mutating) {
			w := *c.Webhooks[0].DeepCopy()
			w.Name = "evil.inplace.dev"
			c.Webhooks = append(c.Webhooks, w)
		}, onlyCABundle},
		{"a webhook removed", func(c *mutating) { c.Webhooks = c.Webhooks[1:] }, onlyCABundle},
		{"two webhooks swapped", func(c *mutating) {
			c.Webhooks[0], c.Webhooks[1] = c.Webhooks[1], c.Webhooks[0]
		}, onlyCABundle},
		{"a label", func(c *mutating) { metav1.SetMetaDataLabel(&c.ObjectMeta, "team", "x") }, onlyCABundle},
		// cert-manager's CA injector would fill the caBundles from another Secret.
		{"an annotation", func(c *mutating) {
			metav1.SetMetaDataAnnotation(&c.ObjectMeta, "cert-manager.io/inject-ca-from-secret", "kube-system/evil")
		}, onlyCABundle},
		{"an owner", func(c *mutating) {
			c.OwnerReferences = append(c.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "Namespace", Name: ns, UID: "4c1d2a6e-0000-4000-8000-000000000002"})
		}, onlyCABundle},
		{"a finalizer", func(c *mutating) { c.Finalizers = append(c.Finalizers, "example.com/keep") }, onlyCABundle},
	}
	for _, tc := range mutatingCases {
		t.Run("inplace-mutating: "+tc.name, func(t *testing.T) {
			c := &mutating{}
			if err := cs.admin.Get(t.Context(), client.ObjectKey{Name: "inplace-mutating"}, c); err != nil {
				t.Fatal(err)
			}
			tc.edit(c)
			expect(t, cs.manager.Update(t.Context(), c), scope, tc.refusal)
		})
	}

	validatingCases := []struct {
		name    string
		edit    func(*validating)
		refusal string
	}{
		{"another caBundle in every webhook", func(c *validating) {
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = caBundle
			}
		}, ""},
		// The pod-delete webhook, failing closed, would stop every
		// StatefulSet and DaemonSet rollout while the manager is down.
		{"failurePolicy Fail", func(c *validating) {
			c.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Fail)
		}, onlyCABundle},
		{"the match conditions dropped", func(c *validating) {
			c.Webhooks[0].MatchConditions = nil
		}, onlyCABundle},
	}
	for _, tc := range validatingCases {
		t.Run("inplace-validating: "+tc.name, func(t *testing.T) {
			c := &validating{}
			if err := cs.admin.Get(t.Context(), client.ObjectKey{Name: "inplace-validating"}, c); err != nil {
				t.Fatal(err)
			}
			tc.edit(c)
			expect(t, cs.manager.Update(t.Context(), c), scope, tc.refusal)
		})
	}

	// The policy binds the manager only: an administrator changes what
	// they like.
	t.Run("an administrator's failurePolicy and rules", func(t *testing.T) {
		c := &mutating{}
		if err := cs.admin.Get(t.Context(), client.ObjectKey{Name: "inplace-mutating"}, c); err != nil {
			t.Fatal(err)
		}
		c.Webhooks[0].FailurePolicy = ptr.To(admissionregistrationv1.Fail)
		c.Webhooks[0].Rules[0].Operations = append(c.Webhooks[0].Rules[0].Operations, admissionregistrationv1.Update)
		expect(t, cs.admin.Update(t.Context(), c), "", "")
	})
}

// injectCA runs the built-in certificate source (certs, cert-controller's
// rotator) in a controller-runtime manager as the manager's ServiceAccount,
// until the CA it made is the caBundle of every webhook of both
// configurations.
func injectCA(t *testing.T, cs clients) {
	t.Helper()
	src, err := certs.New(certs.Config{
		Mode:              certs.ModeBuiltin,
		Namespace:         "inplace-system",
		CertDir:           t.TempDir(),
		ServiceName:       "inplace-webhook",
		SecretName:        "inplace-webhook-cert",
		MutatingWebhook:   "inplace-mutating",
		ValidatingWebhook: "inplace-validating",
	})
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := manager.New(cs.managerConfig, manager.Options{
		Scheme:                 app.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{ByObject: src.CacheByObject()},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := src.SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Error("the manager stopped:", err)
		}
	}()

	secret := &corev1.Secret{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var missing []string
		err := cs.admin.Get(t.Context(), client.ObjectKey{Namespace: "inplace-system", Name: "inplace-webhook-cert"}, secret)
		if err == nil && len(secret.Data["ca.crt"]) > 0 {
			missing, err = withoutCA(t.Context(), cs.admin, secret.Data["ca.crt"])
			if err == nil && len(missing) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s, the CA is not the caBundle of %v (%v)", missing, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// withoutCA returns the webhooks of both configurations whose caBundle is
// not ca.
func withoutCA(ctx context.Context, c client.Client, ca []byte) ([]string, error) {
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: "inplace-mutating"}, mutating); err != nil {
		return nil, err
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: "inplace-validating"}, validating); err != nil {
		return nil, err
	}
	var missing []string
	for _, w := range mutating.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			missing = append(missing, w.Name)
		}
	}
	for _, w := range validating.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			missing = append(missing, w.Name)
		}
	}
	return missing, nil
}

// prepullCases: the manager may create a prepull pod exactly as the engine
// makes it (inplace.PrepullPod) and delete it; any pod that could run
// something, or that is not tied to the workload it names, is refused; and
// nobody else may make one.
func prepullCases(t *testing.T, cs clients) {
	uid := types.UID("4c1d2a6e-0000-4000-8000-2000000000aa")
	owner := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: uid}
	from := &corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry"}}}
	prepull := func(name string) *corev1.Pod {
		pod := inplace.PrepullPod(owner, "web-2", "node-1", from, []corev1.Container{
			{Name: "app", Image: "registry.example/app:v2", ImagePullPolicy: corev1.PullIfNotPresent},
			{Name: "sidecar", Image: "registry.example/log:v7"},
		})
		pod.Name, pod.Namespace = name, ns
		return pod
	}
	cases := []struct {
		name    string
		as      func(clients) client.Client
		change  func(*corev1.Pod)
		policy  string
		refusal string
	}{
		{"as the engine makes it", theManager, func(*corev1.Pod) {}, scope, ""},
		{"a command that could run", theManager, func(p *corev1.Pod) { p.Spec.Containers[1].Command = []string{"/bin/sh"} }, scope, onlyPrepull},
		{"arguments", theManager, func(p *corev1.Pod) { p.Spec.Containers[0].Args = []string{"-c", "id"} }, scope, onlyPrepull},
		{"an init container", theManager, func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{*p.Spec.Containers[0].DeepCopy()}
			p.Spec.InitContainers[0].Name = "init"
		}, scope, onlyPrepull},
		{"a volume", theManager, func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		}, scope, onlyPrepull},
		{"the service account token", theManager, func(p *corev1.Pod) { p.Spec.AutomountServiceAccountToken = ptr.To(true) }, scope, onlyPrepull},
		{"the host network", theManager, func(p *corev1.Pod) { p.Spec.HostNetwork = true }, scope, onlyPrepull},
		{"privileged", theManager, func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext.Privileged = ptr.To(true)
			p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		}, scope, onlyPrepull},
		{"restarted", theManager, func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyAlways }, scope, onlyPrepull},
		{"no deadline", theManager, func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = nil }, scope, onlyPrepull},
		{"not bound to a node", theManager, func(p *corev1.Pod) { p.Spec.NodeName = "" }, scope, onlyPrepull},
		{"controlled by its workload", theManager, func(p *corev1.Pod) { p.OwnerReferences[0].Controller = ptr.To(true) }, scope, onlyPrepull},
		{"owned by another workload than it names", theManager, func(p *corev1.Pod) { p.OwnerReferences[0].UID = "someone-else" }, scope, onlyPrepull},
		{"owned by a Job", theManager, func(p *corev1.Pod) { p.OwnerReferences[0].APIVersion, p.OwnerReferences[0].Kind = "batch/v1", "Job" }, scope, onlyPrepull},
		{"no prepull label: any pod", theManager, func(p *corev1.Pod) { delete(p.Labels, inplace.LabelPrepullFor) }, scope, onlyPrepull},
		{"made by someone else", mallory, func(*corev1.Pod) {}, marks, noMarkedCreate},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := prepull(podName("p", tc.name))
			tc.change(pod)
			expect(t, tc.as(cs).Create(t.Context(), pod), tc.policy, tc.refusal)
		})
	}
	t.Run("deleted by the manager", func(t *testing.T) {
		pod := prepull(podName("p", "deleted"))
		if err := cs.manager.Create(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
		expect(t, cs.manager.Delete(t.Context(), pod, client.GracePeriodSeconds(0)), scope, "")
	})
	t.Run("the manager deletes no other pod", func(t *testing.T) {
		expect(t, cs.manager.Delete(t.Context(), plainPod(t, cs.admin, podName("p", "plain"))), scope, onlyGated)
	})
}

func theManager(cs clients) client.Client { return cs.manager }
