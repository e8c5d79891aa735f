package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
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
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testenv"
	"github.com/inplace-dev/inplace/webhook"
)

// The webhook registered in a real kube-apiserver from manifests/base, and
// the manager run as in production (app.Run), against etcd and the API
// server that envtest starts. Each case writes through the API server as a
// user would and reads back what was stored.

var (
	env *envtest.Environment
	cfg *rest.Config
	c   client.Client
	// aliceConfig is c's: an administrator who is not the manager.
	aliceConfig *rest.Config
)

func TestMain(m *testing.M) {
	// Errors only: the manager logs each step at info.
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// A fuzz worker runs only the fuzz function, which needs no API
	// server; and the fuzz coordinator gives a worker a second to exit
	// before it kills it, which would orphan an API server and an etcd
	// that hold the worker's output open: the coordinator would wait on
	// them for ever. Listing (make fuzz finds its targets so) runs nothing.
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		return m.Run()
	}
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return m.Run()
	}
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
	aliceConfig = alice.Config()
	if c, err = client.New(aliceConfig, client.Options{Scheme: app.Scheme()}); err != nil {
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

	t.Run("an image update leaves the StatefulSet as the user wrote it: no partition raised, nothing held", func(t *testing.T) {
		sts := steadyStatefulSet(t, "as-written", 1)
		sts.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
		if err := c.Update(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		if p := *sts.Spec.UpdateStrategy.RollingUpdate.Partition; p != 1 {
			t.Errorf("partition = %d, want the user's 1", p)
		}
		if got := inplaceKeys(sts.Annotations); len(got) != 1 || got[inplace.AnnotationUpdatePolicy] != "InPlaceIfPossible" {
			t.Errorf("inplace.dev annotations = %v, want the update policy only", got)
		}
	})

	t.Run("a malformed annotation is refused with a 422 naming it", func(t *testing.T) {
		sts := builder.StatefulSet("typo", "apps").Annotation(inplace.AnnotationUpdatePolicy, "InPlace").Obj()
		err := c.Create(t.Context(), sts)
		wantInvalid(t, err, `metadata.annotations[inplace.dev/update-policy]: Unsupported value: "InPlace"`)
	})

	t.Run("a manager-owned annotation a user writes is dropped on create and kept on update, with a warning", func(t *testing.T) {
		warned := &warnings{}
		restored := builder.StatefulSet("restored", "apps").Annotation(inplace.AnnotationRollout, `{"revision":"x"}`).Obj()
		restored.Spec.Template.Annotations = map[string]string{inplace.AnnotationUpdateState: "{}"}
		if err := clientWarnedTo(t, warned).Create(t.Context(), restored); err != nil {
			t.Fatalf("a restored StatefulSet carrying the manager's record was refused: %v", err)
		}
		if _, ok := restored.Annotations[inplace.AnnotationRollout]; ok {
			t.Errorf("the manager's record was kept on create: %v", restored.Annotations)
		}
		if _, ok := restored.Spec.Template.Annotations[inplace.AnnotationUpdateState]; ok {
			t.Errorf("the pod template kept %s", inplace.AnnotationUpdateState)
		}
		warned.want(t, "removed the annotation inplace.dev/rollout", "removed the annotation inplace.dev/update-state from the pod template")

		asManager, err := client.New(cfg, client.Options{Scheme: app.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		record := `{"revision":"recorded","since":null}`
		metav1.SetMetaDataAnnotation(&restored.ObjectMeta, inplace.AnnotationRollout, record)
		if err := asManager.Update(t.Context(), restored); err != nil {
			t.Fatalf("the manager's own write was refused: %v", err)
		}
		warned = &warnings{}
		forged := restored.DeepCopy()
		forged.Annotations[inplace.AnnotationRollout] = `{"revision":"forged"}`
		if err := clientWarnedTo(t, warned).Update(t.Context(), forged); err != nil {
			t.Fatalf("an update carrying a changed record was refused: %v", err)
		}
		if got := forged.Annotations[inplace.AnnotationRollout]; got != record {
			t.Errorf("record = %s after a user's update, want the stored %s", got, record)
		}
		warned.want(t, "kept the stored value of the annotation inplace.dev/rollout")

		reapplied := forged.DeepCopy()
		delete(reapplied.Annotations, inplace.AnnotationRollout)
		if err := c.Update(t.Context(), reapplied); err != nil {
			t.Fatal(err)
		}
		if got := reapplied.Annotations[inplace.AnnotationRollout]; got != record {
			t.Errorf("record = %q after a re-apply of the user's manifest, want it kept", got)
		}
	})

	t.Run("the manager may write its own annotations", func(t *testing.T) {
		asManager, err := client.New(cfg, client.Options{Scheme: app.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		sts := builder.StatefulSet("held", "apps").Annotation(inplace.AnnotationRollout, "{}").Obj()
		if err := asManager.Create(t.Context(), sts); err != nil {
			t.Errorf("the manager's write was refused: %v", err)
		}
	})

	t.Run("the StatefulSet controller's delete of a pod updated in place is refused; every other delete passes", func(t *testing.T) {
		controllerUser, err := env.AddUser(envtest.User{Name: "system:serviceaccount:kube-system:statefulset-controller", Groups: []string{"system:masters"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		asController, err := client.New(controllerUser.Config(), client.Options{Scheme: app.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		sts := builder.StatefulSet("roll", "apps").Replicas(3).Obj()
		create(t, sts)
		create(t, controllerRevision("roll-1", sts))
		pod := func(name string) *corev1.Pod {
			p := builder.Pod(name, "apps").OwnedBy("apps/v1", "StatefulSet", "roll", sts.UID).
				Label("app", "roll").Label(appsv1.StatefulSetRevisionLabel, "roll-1").Obj()
			create(t, p) // through the pod webhook: gated
			return p
		}
		updated, scaledDown, byUser := pod("roll-2"), pod("roll-5"), pod("roll-1")
		sts.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
		if err := c.Update(t.Context(), sts); err != nil {
			t.Fatal(err)
		}

		// The webhook reads the StatefulSet from its cache: it sees the new
		// template a moment later.
		var refused error
		err = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			refused = asController.Delete(ctx, updated, client.DryRunAll)
			return refused != nil, nil
		})
		if err != nil {
			t.Fatalf("the StatefulSet controller's delete of %s, updated in place, was never refused", updated.Name)
		}
		if !apierrors.IsForbidden(refused) || !strings.Contains(refused.Error(), "updated in place") {
			t.Errorf("refusal = %v, want a 403 saying the pod is updated in place", refused)
		}
		if err := asController.Delete(t.Context(), scaledDown); err != nil {
			t.Errorf("a scale-down delete (ordinal 5 of 3 replicas) was refused: %v", err)
		}
		if err := c.Delete(t.Context(), byUser); err != nil {
			t.Errorf("a user's delete was refused: %v", err)
		}

		// An env change cannot go in place: the delete passes.
		sts.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "fast"}}
		if err := c.Update(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			return asController.Delete(ctx, updated, client.DryRunAll) == nil, nil
		})
		if err != nil {
			t.Errorf("the delete of a pod whose change cannot go in place is still refused")
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

	t.Run("a v1beta1 Kruise CloneSet gets the gate and podUpdatePolicy InPlaceIfPossible", func(t *testing.T) {
		// Kruise's own conversion of such a CloneSet to v1alpha1 says type
		// ReCreate; the v1beta1 webhook sees it as written.
		cs := &unstructured.Unstructured{}
		cs.SetAPIVersion("apps.kruise.io/v1beta1")
		cs.SetKind("CloneSet")
		cs.SetName("clones-v1beta1")
		cs.SetNamespace("apps")
		tpl, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(builder.PodTemplate("clones-v1beta1", "nginx:alpine").Obj())
		cs.Object["spec"] = map[string]any{
			"replicas": int64(3),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "clones-v1beta1"}},
			"template": tpl,
		}
		create(t, cs)
		gates, _, _ := unstructured.NestedSlice(cs.Object, "spec", "template", "spec", "readinessGates")
		if len(gates) != 1 || gates[0].(map[string]any)["conditionType"] != inplace.ConditionInPlaceUpdateReady {
			t.Errorf("template readiness gates = %v", gates)
		}
		if v, _, _ := unstructured.NestedString(cs.Object, "spec", "updateStrategy", "rollingUpdate", "podUpdatePolicy"); v != "InPlaceIfPossible" {
			t.Errorf("updateStrategy.rollingUpdate.podUpdatePolicy = %q, want InPlaceIfPossible", v)
		}
	})

	t.Run("bad input", badInput)

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
// server: every rollout record removed, a partition hold of an earlier
// version released with the user's partition, every gate opened, and the
// result verified. It deletes the webhook configurations, so it runs after
// the other tests.
func TestReleaseHolds(t *testing.T) {
	createNamespace(t, "release", enabled)
	user := int32(1)
	hold := &inplace.Hold{Since: metav1.Now(), Reason: inplace.ReasonInPlaceRollout, Partition: &user}
	held := builder.StatefulSet("held", "release").Replicas(3).Annotation(inplace.AnnotationHold, hold.Encode()).Obj()
	held.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptrTo[int32](3)}}
	rolling := builder.StatefulSet("rolling", "release").Annotation(inplace.AnnotationRollout, `{"revision":"rolling-2"}`).Obj()
	pod := builder.Pod("held-2", "release").Label(inplace.LabelManaged, "true").
		ReadinessGate(inplace.ConditionInPlaceUpdateReady).Annotation(inplace.AnnotationUpdateState, `{"revision":"held-2"}`).Obj()
	// Written as the manager would (cfg): no webhook changes its annotations.
	asManager, err := client.NewWithWatch(cfg, client.Options{Scheme: app.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{held, rolling, pod} {
		if err := asManager.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
	}
	pod.Status.Conditions = []corev1.PodCondition{{Type: inplace.ConditionInPlaceUpdateReady, Status: corev1.ConditionFalse, Reason: inplace.ReasonInPlaceUpdate}}
	if err := asManager.Status().Update(t.Context(), pod); err != nil {
		t.Fatal(err)
	}

	var out strings.Builder
	left, err := app.ReleaseHolds(t.Context(), asManager, true, &out)
	if err != nil || left != 0 {
		t.Fatalf("ReleaseHolds = %d left, %v; output:\n%s", left, err, out.String())
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(held), held); err != nil {
		t.Fatal(err)
	}
	if _, ok := held.Annotations[inplace.AnnotationHold]; ok || *held.Spec.UpdateStrategy.RollingUpdate.Partition != 1 {
		t.Errorf("StatefulSet not released: partition %d, annotations %v", *held.Spec.UpdateStrategy.RollingUpdate.Partition, held.Annotations)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(rolling), rolling); err != nil {
		t.Fatal(err)
	}
	if _, ok := rolling.Annotations[inplace.AnnotationRollout]; ok {
		t.Errorf("the rollout record is still there: %v", rolling.Annotations)
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
	for _, want := range []string{
		"deleted webhook configuration inplace-mutating", "released StatefulSet release/held", "released StatefulSet release/rolling",
		"opened the readiness gate of pod release/held-2",
		"workload(s) released, 1 pod(s) released, 0 error(s), 0 object(s) still held or gated",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q does not say %q", out.String(), want)
		}
	}

	// A gate closed again behind its back (a manager still running) is
	// found by the verification and counted.
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(pod), pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Conditions[0].Status = corev1.ConditionFalse
	if err := asManager.Status().Update(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	interfering := interceptor.NewClient(asManager, interceptor.Funcs{
		SubResourcePatch: func(context.Context, client.Client, string, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
			return nil // a write that another writer undoes at once
		},
	})
	if left, err := app.ReleaseHolds(t.Context(), interfering, false, &out); err != nil || left != 1 {
		t.Errorf("ReleaseHolds with the gate closed again = %d left, %v; want 1; output:\n%s", left, err, out.String())
	}
	if !strings.Contains(out.String(), "still gated: pod release/held-2") {
		t.Errorf("output %q does not name the pod still gated", out.String())
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

// controllerRevision is the revision name of sts's current template, as the
// StatefulSet controller records it.
func controllerRevision(name string, sts *appsv1.StatefulSet) *appsv1.ControllerRevision {
	raw, err := json.Marshal(map[string]any{"spec": map[string]any{"template": sts.Spec.Template}})
	if err != nil {
		panic(err)
	}
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sts.Namespace, Labels: sts.Spec.Template.Labels},
		Data:       runtime.RawExtension{Raw: raw}, Revision: 1,
	}
}

// inplaceKeys returns the inplace.dev annotations.
func inplaceKeys(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if strings.HasPrefix(k, inplace.Prefix) {
			out[k] = v
		}
	}
	return out
}

// warnings collects the warnings the API server returns.
type warnings struct {
	mu  sync.Mutex
	got []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, text)
}

func (w *warnings) want(t *testing.T, substrings ...string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, want := range substrings {
		found := false
		for _, g := range w.got {
			found = found || strings.Contains(g, want)
		}
		if !found {
			t.Errorf("warnings %q: none says %q", w.got, want)
		}
	}
}

// clientWarnedTo is alice's client, its warnings collected by w.
func clientWarnedTo(t *testing.T, w *warnings) client.Client {
	t.Helper()
	alice := rest.CopyConfig(aliceConfig)
	alice.WarningHandler = w
	wc, err := client.New(alice, client.Options{Scheme: app.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return wc
}

// TestWakeInAPIServer: the Waker's write wakes the object of the UID it
// names, and no other made since under its name: the API server refuses to
// change an object's UID.
func TestWakeInAPIServer(t *testing.T) {
	createNamespace(t, "wake", enabled)
	sts := builder.StatefulSet("web", "wake").Obj()
	create(t, sts)
	ref := metav1.NewControllerRef(sts, appsv1.SchemeGroupVersion.WithKind("StatefulSet"))
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := webhook.Wake(t.Context(), c, "wake", ref, now); err != nil {
		t.Fatalf("waking the StatefulSet: %v", err)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(sts), sts); err != nil {
		t.Fatal(err)
	}
	if got, want := sts.Annotations[inplace.AnnotationWokenAt], "2031-03-04T05:06:07Z"; got != want {
		t.Errorf("%s = %q, want %q", inplace.AnnotationWokenAt, got, want)
	}
	if sts.Generation != 1 {
		t.Errorf("generation %d: the annotation changed the spec", sts.Generation)
	}

	// The StatefulSet made again under its name: another UID.
	if err := c.Delete(t.Context(), sts); err != nil {
		t.Fatal(err)
	}
	again := builder.StatefulSet("web", "wake").Obj()
	create(t, again)
	err := webhook.Wake(t.Context(), c, "wake", ref, now.Add(time.Minute))
	if !apierrors.IsInvalid(err) {
		t.Fatalf("waking the StatefulSet of another UID: %v, want Invalid", err)
	}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(again), again); err != nil {
		t.Fatal(err)
	}
	if got, ok := again.Annotations[inplace.AnnotationWokenAt]; ok {
		t.Errorf("the new StatefulSet woken (%s = %q)", inplace.AnnotationWokenAt, got)
	}
}
