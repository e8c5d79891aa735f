package webhook_test

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// badInput writes each bad input of docs/bad-input.md through the API
// server, the webhook registered in it, as a user would, and checks what the
// user gets: a 422 that names the field, or the write stored as sent (the
// policy default aside) with a warning. A refused write leaves the stored
// object as it was: nothing half applied. TestWebhookInAPIServer runs it
// while its manager runs.
func badInput(t *testing.T) {
	createNamespace(t, "bad", enabled)
	t.Run("annotations", badAnnotations)
	t.Run("workloads", badWorkloads)
	t.Run("images", badImages)
}

// workloadKinds builds one workload of each native kind in the namespace
// "bad".
var workloadKinds = map[string]func(name string) client.Object{
	"StatefulSet": func(name string) client.Object { return builder.StatefulSet(name, "bad").Obj() },
	"Deployment":  func(name string) client.Object { return builder.Deployment(name, "bad").Obj() },
	"DaemonSet":   func(name string) client.Object { return builder.DaemonSet(name, "bad").Obj() },
}

func badAnnotations(t *testing.T) {
	const (
		policies = `supported values: "InPlaceIfPossible", "InPlaceOnly", "Recreate"`
		seconds  = "must be a whole number of seconds from 0 to 3600"
	)
	huge := strings.Repeat("x", 100_000)
	cases := []struct {
		name, key, value string
		// want is in the 422's message.
		want string
	}{
		{"update policy unknown", inplace.AnnotationUpdatePolicy, "InPlace",
			`metadata.annotations[inplace.dev/update-policy]: Unsupported value: "InPlace": ` + policies},
		{"update policy empty", inplace.AnnotationUpdatePolicy, "",
			`metadata.annotations[inplace.dev/update-policy]: Unsupported value: "": ` + policies},
		{"update policy in the wrong case", inplace.AnnotationUpdatePolicy, "inplaceonly",
			`metadata.annotations[inplace.dev/update-policy]: Unsupported value: "inplaceonly": ` + policies},
		{"update policy of 100 kB", inplace.AnnotationUpdatePolicy, huge,
			`metadata.annotations[inplace.dev/update-policy]: Unsupported value: "` + huge[:inplace.ShownValueBytes] + `... (100000 bytes)": ` + policies},
		{"grace period not a number", inplace.AnnotationGracePeriod, "ten",
			`metadata.annotations[inplace.dev/grace-period-seconds]: Invalid value: "ten": ` + seconds},
		{"grace period with a unit", inplace.AnnotationGracePeriod, "10s",
			`metadata.annotations[inplace.dev/grace-period-seconds]: Invalid value: "10s": ` + seconds},
		{"grace period negative", inplace.AnnotationGracePeriod, "-1",
			`metadata.annotations[inplace.dev/grace-period-seconds]: Invalid value: "-1": ` + seconds},
		{"grace period over an hour", inplace.AnnotationGracePeriod, "3601",
			`metadata.annotations[inplace.dev/grace-period-seconds]: Invalid value: "3601": ` + seconds},
		{"grace period a fraction", inplace.AnnotationGracePeriod, "1.5",
			`metadata.annotations[inplace.dev/grace-period-seconds]: Invalid value: "1.5": ` + seconds},
		{"grace period empty", inplace.AnnotationGracePeriod, "",
			`metadata.annotations[inplace.dev/grace-period-seconds]: Invalid value: "": ` + seconds},
		{"grace period past int64", inplace.AnnotationGracePeriod, "99999999999999999999",
			`metadata.annotations[inplace.dev/grace-period-seconds]: Invalid value: "99999999999999999999": ` + seconds},
		{"prepull not a boolean", inplace.AnnotationPrepull, "yes",
			`metadata.annotations[inplace.dev/prepull]: Unsupported value: "yes": supported values: "true", "false"`},
		{"prepull capitalised", inplace.AnnotationPrepull, "True",
			`metadata.annotations[inplace.dev/prepull]: Unsupported value: "True": supported values: "true", "false"`},
	}
	n := 0
	for _, tc := range cases {
		for kind, build := range workloadKinds {
			n++
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				obj := build(fmt.Sprintf("annotation-%d", n))
				bad := obj.DeepCopyObject().(client.Object)
				setAnnotation(bad, tc.key, tc.value)
				err := c.Create(t.Context(), bad)
				wantInvalid(t, err, tc.want)
				if len(err.Error()) > 1000 {
					t.Errorf("the 422 is %d bytes long; a bad value is quoted back shortened", len(err.Error()))
				}
				if err := c.Get(t.Context(), client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object)); !apierrors.IsNotFound(err) {
					t.Errorf("the refused create stored an object: %v", err)
				}

				create(t, obj)
				before := obj.DeepCopyObject().(client.Object)
				setAnnotation(obj, tc.key, tc.value)
				wantInvalid(t, c.Update(t.Context(), obj), tc.want)
				wantUnchanged(t, before)
			})
		}
	}

	t.Run("annotations over the API server's 256 KiB", func(t *testing.T) {
		sts := builder.StatefulSet("annotation-huge", "bad").Annotation(inplace.AnnotationUpdatePolicy, strings.Repeat("x", 300_000)).Obj()
		wantInvalid(t, c.Create(t.Context(), sts), "metadata.annotations: Too long: may not be more than 262144 bytes")
	})

	t.Run("an unknown inplace.dev annotation is removed, with a warning", func(t *testing.T) {
		warned := &warnings{}
		sts := builder.StatefulSet("annotation-typo", "bad").Annotation("inplace.dev/update-polcy", "InPlaceOnly").Obj()
		sent := sts.DeepCopy()
		if err := clientWarnedTo(t, warned).Create(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		warned.want(t, "removed the annotation inplace.dev/update-polcy: inplace has no such annotation; users write inplace.dev/update-policy, inplace.dev/grace-period-seconds and inplace.dev/prepull")
		delete(sent.Annotations, "inplace.dev/update-polcy")
		sent.Annotations[inplace.AnnotationUpdatePolicy] = string(inplace.InPlaceIfPossible)
		wantStoredAsSent(t, sent, sts)

		warned = &warnings{}
		metav1.SetMetaDataAnnotation(&sts.ObjectMeta, "inplace.dev/grace-period", "30")
		if err := clientWarnedTo(t, warned).Update(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		warned.want(t, "removed the annotation inplace.dev/grace-period: inplace has no such annotation")
		if _, ok := sts.Annotations["inplace.dev/grace-period"]; ok {
			t.Errorf("the unknown annotation was stored: %v", sts.Annotations)
		}
	})

	for _, key := range []string{inplace.AnnotationWokenAt, inplace.AnnotationHold} {
		t.Run("the manager's "+strings.TrimPrefix(key, inplace.Prefix)+" written by a user is removed, with a warning", func(t *testing.T) {
			warned := &warnings{}
			sts := builder.StatefulSet("forged-"+strings.TrimPrefix(key, inplace.Prefix), "bad").Annotation(key, "{}").Obj()
			if err := clientWarnedTo(t, warned).Create(t.Context(), sts); err != nil {
				t.Fatal(err)
			}
			warned.want(t, "removed the annotation "+key+": it is the inplace manager's record and is written by the manager only")
			if _, ok := sts.Annotations[key]; ok {
				t.Errorf("the forged annotation was stored: %v", sts.Annotations)
			}
		})
	}
}

func badWorkloads(t *testing.T) {
	only := func(name string) *builder.StatefulSetWrapper {
		return builder.StatefulSet(name, "bad").Annotation(inplace.AnnotationUpdatePolicy, string(inplace.InPlaceOnly))
	}

	t.Run("300 containers", func(t *testing.T) {
		sts := only("many").Obj()
		containers := make([]corev1.Container, 300)
		for i := range containers {
			containers[i] = corev1.Container{Name: fmt.Sprintf("c%d", i), Image: fmt.Sprintf("registry.local/c%d:1", i)}
		}
		sts.Spec.Template.Spec.Containers = containers
		sent := sts.DeepCopy()
		create(t, sts)
		wantStoredAsSent(t, sent, sts)

		for i := range sts.Spec.Template.Spec.Containers {
			sts.Spec.Template.Spec.Containers[i].Image = fmt.Sprintf("registry.local/c%d:2", i)
		}
		if err := c.Update(t.Context(), sts); err != nil {
			t.Fatalf("InPlaceOnly refused an image change of 300 containers: %v", err)
		}
		before := sts.DeepCopy()
		for i := range sts.Spec.Template.Spec.Containers {
			sts.Spec.Template.Spec.Containers[i].Image = fmt.Sprintf("registry.local/c%d:3", i)
		}
		sts.Spec.Template.Spec.Containers[299].Env = []corev1.EnvVar{{Name: "MODE", Value: "fast"}}
		err := c.Update(t.Context(), sts)
		wantInvalid(t, err, "spec.template.spec.containers[299].env: Forbidden: cannot change in place")
		if strings.Contains(err.Error(), "].image") {
			t.Errorf("the 422 names an image, which can change in place: %v", err)
		}
		wantUnchanged(t, before)

		pod := builder.Pod("many-0", "bad").OwnedBy("apps/v1", "StatefulSet", "many", sts.UID).Label("app", "many").Obj()
		pod.Spec.Containers = before.Spec.Template.Spec.Containers
		create(t, pod)
		if !inplace.HasGate(pod) || len(pod.Spec.Containers) != 300 || pod.Spec.Containers[299].Image != "registry.local/c299:2" {
			t.Errorf("the pod of 300 containers: gate %v, %d containers", inplace.HasGate(pod), len(pod.Spec.Containers))
		}
	})

	t.Run("an init container's image under InPlaceOnly", func(t *testing.T) {
		sts := only("init").Template(func(t *builder.Template) { t.InitImage("setup", "busybox:1.36") }).Obj()
		create(t, sts)
		before := sts.DeepCopy()
		sts.Spec.Template.Spec.InitContainers[0].Image = "busybox:1.37"
		wantInvalid(t, c.Update(t.Context(), sts),
			"spec.template.spec.initContainers[0].image: Forbidden: cannot change in place: the kubelet does not run an init container again on a live pod")
		wantUnchanged(t, before)
	})

	t.Run("a native sidecar's image under InPlaceOnly", func(t *testing.T) {
		sts := only("sidecar").Template(func(t *builder.Template) { t.InitImage("proxy", "envoy:1") }).Obj()
		sts.Spec.Template.Spec.InitContainers[0].RestartPolicy = ptrTo(corev1.ContainerRestartPolicyAlways)
		create(t, sts)
		sts.Spec.Template.Spec.InitContainers[0].Image = "envoy:2"
		sent := sts.DeepCopy()
		if err := c.Update(t.Context(), sts); err != nil {
			t.Fatalf("a native sidecar's image change was refused: %v", err)
		}
		wantStoredAsSent(t, sent, sts)
	})

	t.Run("ephemeral containers in a template", func(t *testing.T) {
		sts := builder.StatefulSet("ephemeral", "bad").Obj()
		sts.Spec.Template.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
		wantInvalid(t, c.Create(t.Context(), sts), "spec.template.spec.ephemeralContainers: Forbidden")
	})

	t.Run("a container named as an init container", func(t *testing.T) {
		sts := builder.StatefulSet("namesake", "bad").Template(func(t *builder.Template) { t.InitImage("app", "busybox") }).Obj()
		wantInvalid(t, c.Create(t.Context(), sts), `spec.template.spec.initContainers[0].name: Duplicate value: "app"`)
	})

	t.Run("an image and an env change, InPlaceIfPossible", func(t *testing.T) {
		sts := builder.StatefulSet("mixed", "bad").Obj()
		create(t, sts)
		sts.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
		sts.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "fast"}}
		sent := sts.DeepCopy()
		if err := c.Update(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		wantStoredAsSent(t, sent, sts)
	})

	t.Run("an image and an env change, InPlaceOnly", func(t *testing.T) {
		sts := only("mixed-only").Obj()
		create(t, sts)
		before := sts.DeepCopy()
		sts.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
		sts.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MODE", Value: "fast"}}
		err := c.Update(t.Context(), sts)
		wantInvalid(t, err, "spec.template.spec.containers[0].env: Forbidden: cannot change in place")
		if strings.Contains(err.Error(), "containers[0].image") {
			t.Errorf("the 422 names the image, which can change in place: %v", err)
		}
		wantUnchanged(t, before)
	})

	t.Run("a StatefulSet's pod created with a forged update state", func(t *testing.T) {
		sts := builder.StatefulSet("forged-state", "bad").Obj()
		create(t, sts)
		pod := builder.Pod("forged-state-0", "bad").OwnedBy("apps/v1", "StatefulSet", sts.Name, sts.UID).Label("app", sts.Name).
			Annotation(inplace.AnnotationUpdateState, `{"revision":"forged"}`).Label(inplace.LabelManaged, "false").Obj()
		create(t, pod)
		if _, ok := pod.Annotations[inplace.AnnotationUpdateState]; ok || !inplace.HasGate(pod) || pod.Labels[inplace.LabelManaged] != "true" {
			t.Errorf("the pod was stored with the forged marks: annotations %v, labels %v", pod.Annotations, pod.Labels)
		}
	})
}

func badImages(t *testing.T) {
	for i, image := range []string{"UPPER:tag", "a@sha256:short", ":tag", "nginx:", "nginx::1", "nginx :1", "nginx:1 ", "registry.local/app@sha256:" + strings.Repeat("0", 63)} {
		t.Run(image, func(t *testing.T) {
			warned := &warnings{}
			sts := builder.StatefulSet(fmt.Sprintf("image-%d", i), "bad").Template(func(t *builder.Template) { t.Image("app", image) }).Obj()
			sent := sts.DeepCopy()
			if err := clientWarnedTo(t, warned).Create(t.Context(), sts); err != nil {
				t.Fatalf("refused: %v", err)
			}
			warned.want(t, `inplace: its pods will not start (InvalidImageName): spec.template.spec.containers[0].image: Invalid value: "`+inplace.Shorten(image)+`": not an image reference the kubelet can pull`)
			metav1.SetMetaDataAnnotation(&sent.ObjectMeta, inplace.AnnotationUpdatePolicy, string(inplace.InPlaceIfPossible))
			wantStoredAsSent(t, sent, sts)
		})
	}

	t.Run("an image changed to one that does not parse", func(t *testing.T) {
		sts := builder.StatefulSet("image-change", "bad").Obj()
		create(t, sts)
		warned := &warnings{}
		sts.Spec.Template.Spec.Containers[0].Image = "Nginx:1.28"
		if err := clientWarnedTo(t, warned).Update(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		warned.want(t, `spec.template.spec.containers[0].image: Invalid value: "Nginx:1.28"`)
	})

	t.Run("300 images that do not parse give one warning", func(t *testing.T) {
		warned := &warnings{}
		sts := builder.StatefulSet("image-many", "bad").Obj()
		sts.Spec.Template.Spec.Containers = make([]corev1.Container, 300)
		for i := range sts.Spec.Template.Spec.Containers {
			sts.Spec.Template.Spec.Containers[i] = corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "UPPER"}
		}
		if err := clientWarnedTo(t, warned).Create(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		warned.want(t, "containers[2].image", "; and 297 more")
		if len(warned.got) != 1 {
			t.Errorf("%d warnings, want one: %q", len(warned.got), warned.got)
		}
	})

	t.Run("an empty image", func(t *testing.T) {
		sts := builder.StatefulSet("image-empty", "bad").Template(func(t *builder.Template) { t.Image("app", "") }).Obj()
		wantInvalid(t, c.Create(t.Context(), sts), "spec.template.spec.containers[0].image: Required value")
	})
}

func setAnnotation(obj client.Object, k, v string) {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[k] = v
	obj.SetAnnotations(a)
}

// wantUnchanged checks that the stored object is still before: a refused
// write changed nothing.
func wantUnchanged(t *testing.T, before client.Object) {
	t.Helper()
	now := before.DeepCopyObject().(client.Object)
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(before), now); err != nil {
		t.Fatal(err)
	}
	if now.GetResourceVersion() != before.GetResourceVersion() {
		t.Errorf("the refused write changed the stored object (resourceVersion %s -> %s)", before.GetResourceVersion(), now.GetResourceVersion())
	}
}

// wantStoredAsSent checks that a StatefulSet was stored with the spec and
// annotations sent: the webhook changed nothing else.
func wantStoredAsSent(t *testing.T, sent, stored *appsv1.StatefulSet) {
	t.Helper()
	if !apiequality.Semantic.DeepEqual(sent.Annotations, stored.Annotations) {
		t.Errorf("annotations stored %v, sent %v", stored.Annotations, sent.Annotations)
	}
	// What the API server defaults (the pull policy, the strategy) is not
	// the webhook's: compare what the user wrote of each container.
	for i, s := range sent.Spec.Template.Spec.Containers {
		got := stored.Spec.Template.Spec.Containers[i]
		if got.Name != s.Name || got.Image != s.Image || !apiequality.Semantic.DeepEqual(got.Env, s.Env) {
			t.Errorf("container %d stored %s %s %v, sent %s %s %v", i, got.Name, got.Image, got.Env, s.Name, s.Image, s.Env)
		}
	}
	for i, s := range sent.Spec.Template.Spec.InitContainers {
		if got := stored.Spec.Template.Spec.InitContainers[i]; got.Image != s.Image {
			t.Errorf("init container %d stored %s, sent %s", i, got.Image, s.Image)
		}
	}
	if len(stored.Spec.Template.Spec.Containers) != len(sent.Spec.Template.Spec.Containers) ||
		!apiequality.Semantic.DeepEqual(stored.Spec.Template.Annotations, sent.Spec.Template.Annotations) ||
		len(stored.Spec.Template.Spec.ReadinessGates) != len(sent.Spec.Template.Spec.ReadinessGates) {
		t.Errorf("the template was changed: %+v", stored.Spec.Template.ObjectMeta)
	}
}
