package webhook_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testenv"
)

// releaseHoldsUser is the uninstall Job's service account.
const releaseHoldsUser = "system:serviceaccount:inplace-system:inplace-release-holds"

// TestReleaseHoldsWithItsOwnPermissions runs what the uninstall Job runs,
// as its service account with exactly the permissions of
// manifests/components/release-holds: it scales the manager to zero, sees
// it stop, and releases every pod, going on past a pod it cannot release and
// counting it. It runs after the integration tests (this file sorts after
// theirs): it deletes the webhook configurations.
func TestReleaseHoldsWithItsOwnPermissions(t *testing.T) {
	ensureNamespace(t, "inplace-system")
	createNamespace(t, "uninstall", enabled)
	applyRBAC(t, filepath.Join(testenv.Root, "manifests", "components", "release-holds", "release-holds.yaml"))

	manager := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "inplace-manager", Namespace: "inplace-system"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "m"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "m"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "m", Image: "m"}}},
			},
		},
	}
	create(t, manager)
	// The lease as a running leader keeps it (the integration tests' manager
	// may have left one).
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: app.LeaderElectionID, Namespace: "inplace-system"}}
	err := c.Get(t.Context(), client.ObjectKeyFromObject(lease), lease)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	lease.Spec = coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To("inplace-manager-0"),
		LeaseDurationSeconds: ptr.To(int32(15)),
		RenewTime:            &metav1.MicroTime{Time: time.Now()},
	}
	if apierrors.IsNotFound(err) {
		create(t, lease)
	} else if err := c.Update(t.Context(), lease); err != nil {
		t.Fatal(err)
	}

	job := jobClient(t)
	if running, _ := app.ManagerRunning(t.Context(), job, "inplace-system", time.Now()); !running {
		t.Fatal("ManagerRunning = false with the lease renewed just now; want true")
	}
	if err := app.StopManager(t.Context(), job, "inplace-system"); err != nil {
		t.Fatalf("StopManager as the Job: %v", err)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(manager), manager); err != nil {
		t.Fatal(err)
	}
	if *manager.Spec.Replicas != 0 {
		t.Errorf("the manager has %d replicas after StopManager, want 0", *manager.Spec.Replicas)
	}
	// The elected replica releases its lease as it stops.
	lease.Spec.HolderIdentity = ptr.To("")
	if err := c.Update(t.Context(), lease); err != nil {
		t.Fatal(err)
	}
	// A replica still stopping, after the elected one released the lease:
	// it may take the lease and resume the rollouts.
	stopping := builder.Pod("inplace-manager-1", "inplace-system").Label("app", "m").Obj()
	stopping.Finalizers = []string{"inplace.dev/test-stopping"}
	create(t, stopping)
	if err := c.Delete(t.Context(), stopping); err != nil {
		t.Fatal(err)
	}
	if running, why := app.ManagerRunning(t.Context(), job, "inplace-system", time.Now()); !running || !strings.Contains(why, "inplace-manager-1 is still stopping") {
		t.Errorf("ManagerRunning = %v (%s) with the lease released and a replica still stopping; want true, naming it", running, why)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(stopping), stopping); err != nil {
		t.Fatal(err)
	}
	stopping.Finalizers = nil
	if err := c.Update(t.Context(), stopping); err != nil {
		t.Fatal(err)
	}
	if running, why := app.ManagerRunning(t.Context(), job, "inplace-system", time.Now()); running {
		t.Errorf("ManagerRunning = true (%s) with the lease released and every replica gone; want false", why)
	}

	// A StatefulSet with a rollout record, written as the manager would.
	asManager, err := client.New(cfg, client.Options{Scheme: app.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	rolling := builder.StatefulSet("rolling", "uninstall").Annotation(inplace.AnnotationRollout, `{"revision":"rolling-2"}`).Obj()
	if err := asManager.Create(t.Context(), rolling); err != nil {
		t.Fatal(err)
	}

	// Two gated pods, one of which the Job cannot patch (another writer's
	// admission refuses it, say).
	var pods []*corev1.Pod
	for _, name := range []string{"a-0", "b-0"} {
		pod := builder.Pod(name, "uninstall").Label(inplace.LabelManaged, "true").
			ReadinessGate(inplace.ConditionInPlaceUpdateReady).Annotation(inplace.AnnotationUpdateState, `{"revision":"x"}`).Obj()
		create(t, pod)
		pod.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse}}
		if err := c.Status().Update(t.Context(), pod); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, pod)
	}
	refusing := interceptor.NewClient(job, interceptor.Funcs{
		Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if obj.GetName() == "a-0" {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, obj.GetName(), errors.New("refused by the test"))
			}
			return cl.Patch(ctx, obj, patch, opts...)
		},
	})
	var out strings.Builder
	left, err := app.ReleaseHolds(t.Context(), refusing, true, &out)
	if err != nil {
		t.Fatalf("ReleaseHolds as the Job: %v; output:\n%s", err, out.String())
	}
	// The refused pod: one error, and still gated.
	if left != 2 {
		t.Errorf("ReleaseHolds = %d left, want 2 (one error, one pod still gated); output:\n%s", left, out.String())
	}
	for _, want := range []string{
		"released StatefulSet uninstall/rolling",
		"error: releasing pod uninstall/a-0", "opened the readiness gate of pod uninstall/b-0",
		"1 error(s)", "still gated: pod uninstall/a-0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not say %q:\n%s", want, out.String())
		}
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pods[1]), pods[1]); err != nil {
		t.Fatal(err)
	}
	if cond := inplace.GateCondition(pods[1]); inplace.Updating(pods[1]) || cond == nil || cond.Status != corev1.ConditionTrue {
		t.Errorf("pod b-0 not released: annotations %v, gate %+v", pods[1].Annotations, cond)
	}

	// Without the interference, everything is released.
	out.Reset()
	if left, err := app.ReleaseHolds(t.Context(), job, true, &out); err != nil || left != 0 {
		t.Errorf("ReleaseHolds as the Job = %d left, %v; want 0; output:\n%s", left, err, out.String())
	}
}

// jobClient is a client that acts as the uninstall Job's service account.
func jobClient(t *testing.T) client.WithWatch {
	t.Helper()
	cfg := rest.CopyConfig(aliceConfig)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: releaseHoldsUser,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:inplace-system", "system:authenticated"},
	}
	cl, err := client.NewWithWatch(cfg, client.Options{Scheme: app.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// applyRBAC creates the roles and bindings of a manifest file (its other
// objects are not needed to act as its service account), and deletes them
// at the end of the test.
func applyRBAC(t *testing.T, path string) {
	t.Helper()
	objs, err := testenv.ObjectsOf(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if obj.GroupVersionKind().Group != "rbac.authorization.k8s.io" {
			continue
		}
		if err := c.Create(t.Context(), obj); err != nil {
			t.Fatalf("%s: %s %s: %v", path, obj.GetKind(), obj.GetName(), err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), obj) })
	}
}
