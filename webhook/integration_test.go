package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testenv"
)

// The webhook registered in a real kube-apiserver from manifests/base, and
// the manager run as in production (app.Run), against etcd and the API
// server that envtest starts. Each case writes through the API server as a
// user would and reads back what was stored.

var (
	env *envtest.Environment
	cfg *rest.Config
	c   client.Client
)

func TestMain(m *testing.M) {
	// Errors only: the manager logs each step at info.
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if env, err = testenv.New(true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if cfg, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the API server:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the API server:", err)
		}
	}()
	// The test writes as alice, an administrator who is not the manager.
	alice, err := env.AddUser(envtest.User{Name: "alice", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if c, err = client.New(alice.Config(), client.Options{Scheme: app.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// startManager runs the manager until the returned function stops it, and
// waits until its webhook serves.
func startManager(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	o := app.Options{
		Policy:                 inplace.PolicyNamespace,
		Namespace:              "inplace-system",
		CertDir:                env.WebhookInstallOptions.LocalServingCertDir,
		WebhookHost:            env.WebhookInstallOptions.LocalServingHost,
		WebhookPort:            env.WebhookInstallOptions.LocalServingPort,
		MetricsAddress:         "0",
		HealthAddress:          "0",
		LeaderElect:            true,
		GracefulShutdownPeriod: 5 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, o) }()
	waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
	defer waitCancel()
	if err := testenv.WaitForWebhookServer(waitCtx, env); err != nil {
		cancel()
		t.Fatalf("manager: %v (run: %v)", err, <-done)
	}
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("the manager stopped with %v", err)
		}
	}
}

func createNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	err := c.Create(t.Context(), ns)
	if apierrors.IsAlreadyExists(err) { // kube-system
		if err = c.Get(t.Context(), client.ObjectKeyFromObject(ns), ns); err == nil {
			ns.Labels = labels
			err = c.Update(t.Context(), ns)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

var enabled = map[string]string{inplace.LabelEnabled: "true"}

func TestWebhookInAPIServer(t *testing.T) {
	createNamespace(t, "inplace-system", nil)
	createNamespace(t, "apps", enabled)
	createNamespace(t, "plain", nil)
	createNamespace(t, "kube-system", enabled)
	stop := startManager(t)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()

	t.Run("a StatefulSet in a labelled namespace gets the policy and no template change; its pods get the gate", func(t *testing.T) {
		in := builder.StatefulSet("web", "apps").Obj()
		sts := in.DeepCopy()
		create(t, sts)
		if got := sts.Annotations[inplace.AnnotationUpdatePolicy]; got != "InPlaceIfPossible" {
			t.Errorf("update policy = %q, want InPlaceIfPossible", got)
		}
		if len(sts.Spec.Template.Spec.ReadinessGates) != 0 {
			t.Errorf("the template got readiness gates: %v", sts.Spec.Template.Spec.ReadinessGates)
		}
		if sts.Spec.Template.Spec.Containers[0].Image != in.Spec.Template.Spec.Containers[0].Image || len(sts.Spec.Template.Labels) != 1 {
			t.Errorf("the template changed: %+v", sts.Spec.Template)
		}

		pod := builder.Pod("web-0", "apps").OwnedBy("apps/v1", "StatefulSet", "web", sts.UID).Label("app", "web").Obj()
		create(t, pod)
		if !inplace.HasGate(pod) {
			t.Errorf("the pod has no InPlaceUpdateReady gate: %v", pod.Spec.ReadinessGates)
		}
		if pod.Labels[inplace.LabelManaged] != "true" {
			t.Errorf("the pod lacks the %s label: %v", inplace.LabelManaged, pod.Labels)
		}
	})

	t.Run("the readiness-gate keeper sets the condition on a pod created through the API server", func(t *testing.T) {
		sts := builder.StatefulSet("keeper", "apps").Obj()
		create(t, sts)
		pod := builder.Pod("keeper-0", "apps").OwnedBy("apps/v1", "StatefulSet", "keeper", sts.UID).Obj()
		create(t, pod)
		err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
				return false, err
			}
			cond := inplace.GateCondition(pod)
			return cond != nil && cond.Status == corev1.ConditionTrue, nil
		})
		if err != nil {
			t.Fatalf("InPlaceUpdateReady never became True: %v; conditions %+v", err, pod.Status.Conditions)
		}
	})

	t.Run("a Deployment's pod gets the gate through its ReplicaSet", func(t *testing.T) {
		d := builder.Deployment("api", "apps").Obj()
		create(t, d)
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "api-1", Namespace: "apps", OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: ptrTo(true),
			}}},
			Spec: appsv1.ReplicaSetSpec{Selector: d.Spec.Selector, Template: d.Spec.Template},
		}
		create(t, rs)
		// At once: the cache may not have seen the ReplicaSet yet, as when
		// the ReplicaSet controller creates pods an instant after it.
		pod := builder.Pod("api-1-x", "apps").OwnedBy("apps/v1", "ReplicaSet", rs.Name, rs.UID).Label("app", "api").Obj()
		create(t, pod)
		if !inplace.HasGate(pod) {
			t.Errorf("the pod has no InPlaceUpdateReady gate")
		}
	})

	t.Run("an unlabelled namespace is untouched", func(t *testing.T) {
		sts := builder.StatefulSet("web", "plain").Obj()
		create(t, sts)
		if len(sts.Annotations) != 0 {
			t.Errorf("annotations = %v, want none", sts.Annotations)
		}
		pod := builder.Pod("web-0", "plain").OwnedBy("apps/v1", "StatefulSet", "web", sts.UID).Obj()
		create(t, pod)
		if len(pod.Spec.ReadinessGates) != 0 || len(pod.Labels) != 0 {
			t.Errorf("the pod was changed: gates %v, labels %v", pod.Spec.ReadinessGates, pod.Labels)
		}
	})

	t.Run("kube-system is never touched, even labelled", func(t *testing.T) {
		sts := builder.StatefulSet("web", "kube-system").Obj()
		create(t, sts)
		if len(sts.Annotations) != 0 {
			t.Errorf("annotations = %v, want none", sts.Annotations)
		}
		pod := builder.Pod("web-0", "kube-system").OwnedBy("apps/v1", "StatefulSet", "web", sts.UID).Obj()
		create(t, pod)
		if len(pod.Spec.ReadinessGates) != 0 {
			t.Errorf("the pod got gates: %v", pod.Spec.ReadinessGates)
		}
	})

	t.Run("InPlaceOnly refuses an env change with the field named, and accepts an image change", func(t *testing.T) {
		sts := builder.StatefulSet("strict", "apps").Annotation(inplace.AnnotationUpdatePolicy, "InPlaceOnly").Obj()
		create(t, sts)

		env := sts.DeepCopy()
		env.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "fast"}}
		err := c.Update(t.Context(), env)
		wantInvalid(t, err, "spec.template.spec.containers[0].env: Forbidden: cannot change in place")

		image := sts.DeepCopy()
		image.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
		if err := c.Update(t.Context(), image); err != nil {
			t.Errorf("the image change was refused: %v", err)
		}
	})

	t.Run("an image-only update holds the StatefulSet back: partition raised, the user's recorded", func(t *testing.T) {
		sts := steadyStatefulSet(t, "hold-image", 1)
		sts.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
		if err := c.Update(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		if p := *sts.Spec.UpdateStrategy.RollingUpdate.Partition; p != 3 {
			t.Errorf("partition = %d, want 3 (replicas)", p)
		}
		hold, err := inplace.HoldOf(sts.Annotations)
		if err != nil || hold == nil {
			t.Fatalf("hold = %v, %v", hold, err)
		}
		if hold.UserPartition() != 1 || hold.Reason != inplace.ReasonInPlaceRollout || hold.Since.IsZero() {
			t.Errorf("hold = %+v, want the user's partition 1, the reason and the time", hold)
		}

		// A re-apply of the user's manifest (partition 1, no hold) keeps it.
		reapply := sts.DeepCopy()
		delete(reapply.Annotations, inplace.AnnotationHold)
		reapply.Spec.UpdateStrategy.RollingUpdate.Partition = ptrTo[int32](1)
		if err := c.Update(t.Context(), reapply); err != nil {
			t.Fatal(err)
		}
		if p := *reapply.Spec.UpdateStrategy.RollingUpdate.Partition; p != 3 {
			t.Errorf("after a re-apply, partition = %d, want 3", p)
		}
		if again, _ := inplace.HoldOf(reapply.Annotations); again == nil || again.UserPartition() != 1 || !again.Since.Equal(&hold.Since) {
			t.Errorf("after a re-apply, hold = %+v, want %+v", again, hold)
		}
	})

	t.Run("an env update is left to the native controller", func(t *testing.T) {
		sts := steadyStatefulSet(t, "hold-env", 0)
		sts.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "fast"}}
		if err := c.Update(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		if p := *sts.Spec.UpdateStrategy.RollingUpdate.Partition; p != 0 {
			t.Errorf("partition = %d, want 0", p)
		}
		if _, held := sts.Annotations[inplace.AnnotationHold]; held {
			t.Errorf("the StatefulSet was held: %v", sts.Annotations)
		}
	})

	t.Run("a malformed annotation is refused with a 422 naming it", func(t *testing.T) {
		sts := builder.StatefulSet("typo", "apps").Annotation(inplace.AnnotationUpdatePolicy, "InPlace").Obj()
		err := c.Create(t.Context(), sts)
		wantInvalid(t, err, `metadata.annotations[inplace.dev/update-policy]: Unsupported value: "InPlace"`)
	})

	t.Run("a manager-owned annotation is refused from a user", func(t *testing.T) {
		sts := builder.StatefulSet("sneaky", "apps").Annotation(inplace.AnnotationHold, "{}").Obj()
		err := c.Create(t.Context(), sts)
		wantInvalid(t, err, "metadata.annotations[inplace.dev/hold]: Forbidden: written by the inplace manager only")
	})

	t.Run("the manager may write its own annotations", func(t *testing.T) {
		asManager, err := client.New(cfg, client.Options{Scheme: app.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		sts := builder.StatefulSet("held", "apps").Annotation(inplace.AnnotationHold, "{}").Obj()
		if err := asManager.Create(t.Context(), sts); err != nil {
			t.Errorf("the manager's write was refused: %v", err)
		}
	})

	t.Run("a Kruise CloneSet gets the gate in its template and InPlaceIfPossible", func(t *testing.T) {
		cs := &unstructured.Unstructured{}
		cs.SetAPIVersion("apps.kruise.io/v1alpha1")
		cs.SetKind("CloneSet")
		cs.SetName("clones")
		cs.SetNamespace("apps")
		tpl, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(builder.PodTemplate("clones", "nginx:alpine").Obj())
		cs.Object["spec"] = map[string]any{
			"replicas": int64(3),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "clones"}},
			"template": tpl,
		}
		create(t, cs)
		gates, _, _ := unstructured.NestedSlice(cs.Object, "spec", "template", "spec", "readinessGates")
		if len(gates) != 1 || gates[0].(map[string]any)["conditionType"] != inplace.ConditionInPlaceUpdateReady {
			t.Errorf("template readiness gates = %v", gates)
		}
		if v, _, _ := unstructured.NestedString(cs.Object, "spec", "updateStrategy", "type"); v != "InPlaceIfPossible" {
			t.Errorf("updateStrategy.type = %q, want InPlaceIfPossible", v)
		}
	})

	t.Run("with the webhook server stopped, every write succeeds and pods are created without the gate", func(t *testing.T) {
		stop()
		stopped = true
		sts := builder.StatefulSet("down", "apps").Annotation(inplace.AnnotationUpdatePolicy, "NotAPolicy").Obj()
		create(t, sts)
		sts.Spec.Template.Spec.Containers[0].Image = "nginx:1.29"
		if err := c.Update(t.Context(), sts); err != nil {
			t.Errorf("update: %v", err)
		}
		pod := builder.Pod("down-0", "apps").OwnedBy("apps/v1", "StatefulSet", "down", sts.UID).Obj()
		create(t, pod)
		if len(pod.Spec.ReadinessGates) != 0 {
			t.Errorf("the pod got gates with the manager down: %v", pod.Spec.ReadinessGates)
		}
	})
}

// steadyStatefulSet creates a StatefulSet of 3 replicas with the user's
// partition, and writes the status the StatefulSet controller would once its
// rollout is done (envtest runs no controllers).
func steadyStatefulSet(t *testing.T, name string, partition int32) *appsv1.StatefulSet {
	t.Helper()
	sts := builder.StatefulSet(name, "apps").Replicas(3).Obj()
	sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
		Type:          appsv1.RollingUpdateStatefulSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptrTo(partition)},
	}
	create(t, sts)
	sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: sts.Generation, Replicas: 3, UpdatedReplicas: 3 - partition,
		ReadyReplicas: 3, CurrentRevision: name + "-1", UpdateRevision: name + "-1"}
	if err := c.Status().Update(t.Context(), sts); err != nil {
		t.Fatal(err)
	}
	return sts
}

// TestReleaseHolds runs the uninstall subcommand's work against the API
// server: every hold released with the user's partition, every gate opened.
// It deletes the webhook configurations, so it runs after the other tests.
func TestReleaseHolds(t *testing.T) {
	createNamespace(t, "release", enabled)
	user := int32(1)
	hold := &inplace.Hold{Since: metav1.Now(), Reason: inplace.ReasonInPlaceRollout, Partition: &user}
	sts := builder.StatefulSet("held", "release").Replicas(3).Annotation(inplace.AnnotationHold, hold.Encode()).Obj()
	sts.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptrTo[int32](3)}}
	pod := builder.Pod("held-2", "release").Label(inplace.LabelManaged, "true").
		ReadinessGate(inplace.ConditionInPlaceUpdateReady).Annotation(inplace.AnnotationUpdateState, `{"revision":"held-2"}`).Obj()
	// Written as the manager would (cfg): no webhook refuses its annotations.
	asManager, err := client.New(cfg, client.Options{Scheme: app.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{sts, pod} {
		if err := asManager.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
	}
	pod.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse, Reason: inplace.ReasonInPlaceUpdate}}
	if err := asManager.Status().Update(t.Context(), pod); err != nil {
		t.Fatal(err)
	}

	var out strings.Builder
	if err := app.ReleaseHolds(t.Context(), asManager, true, &out); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(sts), sts); err != nil {
		t.Fatal(err)
	}
	if _, held := sts.Annotations[inplace.AnnotationHold]; held || *sts.Spec.UpdateStrategy.RollingUpdate.Partition != 1 {
		t.Errorf("StatefulSet not released: partition %d, annotations %v", *sts.Spec.UpdateStrategy.RollingUpdate.Partition, sts.Annotations)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), pod); err != nil {
		t.Fatal(err)
	}
	if cond := inplace.GateCondition(pod); inplace.Updating(pod) || cond == nil || cond.Status != corev1.ConditionTrue {
		t.Errorf("pod not released: annotations %v, gate %+v", pod.Annotations, cond)
	}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: "inplace-mutating"}, mutating); !apierrors.IsNotFound(err) {
		t.Errorf("the mutating webhook configuration is still there: %v", err)
	}
	for _, want := range []string{"deleted webhook configuration inplace-mutating", "released StatefulSet release/held", "opened the readiness gate of pod release/held-2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q does not say %q", out.String(), want)
		}
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := c.Create(t.Context(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// wantInvalid checks that err is the API server's 422 carrying the webhook's
// message.
func wantInvalid(t *testing.T, err error, wantInMessage string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the write was accepted, want a 422 saying %q", wantInMessage)
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Code != http.StatusUnprocessableEntity {
		t.Fatalf("error %v, want a 422", err)
	}
	if !strings.Contains(err.Error(), wantInMessage) {
		t.Errorf("error %q does not say %q", err.Error(), wantInMessage)
	}
}

func ptrTo[T any](v T) *T { return &v }
