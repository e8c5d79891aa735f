package inplace

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/inplace-dev/inplace/internal/builder"
)

var templatePath = field.NewPath("spec", "template")

func TestDiffTemplates(t *testing.T) {
	base := func() *builder.Template {
		return builder.PodTemplate("web", "nginx:alpine").Image("sidecar", "busybox:1.36")
	}
	cases := map[string]struct {
		from, to           *corev1.PodTemplateSpec
		wantImages         []ImageChange
		wantLabels         bool
		wantAnnotations    bool
		wantNotInPlaceable []string
		wantResized        []string
	}{
		"identical templates": {
			from: base().Obj(), to: base().Obj(),
		},
		"one image": {
			from: base().Obj(), to: base().Image("app", "nginx:latest").Obj(),
			wantImages: []ImageChange{{Container: "app", From: "nginx:alpine", To: "nginx:latest"}},
		},
		"two images": {
			from: base().Obj(), to: base().Image("app", "nginx:1").Image("sidecar", "busybox:1.37").Obj(),
			wantImages: []ImageChange{
				{Container: "app", From: "nginx:alpine", To: "nginx:1"},
				{Container: "sidecar", From: "busybox:1.36", To: "busybox:1.37"},
			},
		},
		"an init container image: it never runs again on a live pod": {
			from: base().InitImage("setup", "busybox:1").Obj(), to: base().InitImage("setup", "busybox:2").Obj(),
			wantImages:         []ImageChange{{Container: "setup", Init: true, From: "busybox:1", To: "busybox:2"}},
			wantNotInPlaceable: []string{"spec.template.spec.initContainers[0].image"},
		},
		"a native sidecar image": {
			from: withSidecar(base().Obj(), "proxy:1"), to: withSidecar(base().Obj(), "proxy:2"),
			wantImages: []ImageChange{{Container: "proxy", Init: true, Sidecar: true, From: "proxy:1", To: "proxy:2"}},
		},
		"a reference rewritten to the same image": {
			from: base().Obj(), to: base().Image("app", "docker.io/library/nginx:alpine").Obj(),
			wantImages: []ImageChange{{Container: "app", From: "nginx:alpine", To: "docker.io/library/nginx:alpine", Same: true}},
		},
		"labels and annotations, no image: the annotation would restart the containers": {
			from: base().Obj(), to: base().Label("tier", "front").Annotation("checksum/config", "abc").Obj(),
			wantLabels: true, wantAnnotations: true,
			wantNotInPlaceable: []string{"spec.template.metadata.annotations[checksum/config]"},
		},
		"kubectl rollout restart": {
			from: base().Obj(), to: base().Annotation("kubectl.kubernetes.io/restartedAt", "2026-11-30T10:00:00Z").Obj(),
			wantAnnotations:    true,
			wantNotInPlaceable: []string{"spec.template.metadata.annotations[kubectl.kubernetes.io/restartedAt]"},
		},
		"an annotation with one image of two: the other container would not restart": {
			from: base().Obj(), to: base().Image("app", "nginx:2").Annotation("checksum/config", "abc").Obj(),
			wantImages:         []ImageChange{{Container: "app", From: "nginx:alpine", To: "nginx:2"}},
			wantAnnotations:    true,
			wantNotInPlaceable: []string{"spec.template.metadata.annotations[checksum/config]"},
		},
		"an annotation with every image: every container restarts anyway": {
			from: base().Obj(), to: base().Image("app", "nginx:2").Image("sidecar", "busybox:2").Annotation("checksum/config", "abc").Obj(),
			wantImages: []ImageChange{
				{Container: "app", From: "nginx:alpine", To: "nginx:2"},
				{Container: "sidecar", From: "busybox:1.36", To: "busybox:2"},
			},
			wantAnnotations: true,
		},
		"labels only: nothing reads them, nothing restarts": {
			from: base().Obj(), to: base().Label("version", "2").Obj(),
			wantLabels: true,
		},
		"a label a container reads in its environment": {
			from: withLabelEnv(base().Label("version", "1").Obj(), "version"), to: withLabelEnv(base().Label("version", "2").Obj(), "version"),
			wantLabels:         true,
			wantNotInPlaceable: []string{"spec.template.metadata.labels[version]"},
		},
		"a label read in the environment of a container that restarts anyway": {
			from: withLabelEnv(base().Label("version", "1").Obj(), "version"),
			to:   withLabelEnv(base().Label("version", "2").Image("app", "nginx:2").Image("sidecar", "busybox:2").Obj(), "version"),
			wantImages: []ImageChange{
				{Container: "app", From: "nginx:alpine", To: "nginx:2"},
				{Container: "sidecar", From: "busybox:1.36", To: "busybox:2"},
			},
			wantLabels: true,
		},
		"an env variable": {
			from: base().Obj(), to: base().Env("MODE", "fast").Obj(),
			wantNotInPlaceable: []string{"spec.template.spec.containers[0].env"},
		},
		"an env value": {
			from: base().Env("MODE", "slow").Obj(), to: base().Env("MODE", "fast").Obj(),
			wantNotInPlaceable: []string{"spec.template.spec.containers[0].env[0].value"},
		},
		"an image and an env variable": {
			from: base().Obj(), to: base().Image("app", "nginx:2").Env("MODE", "fast").Obj(),
			wantImages:         []ImageChange{{Container: "app", From: "nginx:alpine", To: "nginx:2"}},
			wantNotInPlaceable: []string{"spec.template.spec.containers[0].env"},
		},
		"a container added": {
			from: base().Obj(), to: base().Image("extra", "busybox").Obj(),
			wantNotInPlaceable: []string{"spec.template.spec.containers"},
		},
		"containers reordered": {
			from:               base().Obj(),
			to:                 builder.PodTemplate("web", "busybox:1.36").Obj(),
			wantNotInPlaceable: []string{"spec.template.spec.containers"},
		},
		"a container renamed": {
			from: builder.PodTemplate("web", "nginx").Obj(),
			to: func() *corev1.PodTemplateSpec {
				t := builder.PodTemplate("web", "nginx:2").Obj()
				t.Spec.Containers[0].Name = "main"
				return t
			}(),
			wantNotInPlaceable: []string{"spec.template.spec.containers[0].name", "spec.template.spec.containers[0].image"},
		},
		"a readiness gate added": {
			from: base().Obj(), to: base().ReadinessGate(ConditionInPlaceUpdateReady).Obj(),
			wantNotInPlaceable: []string{"spec.template.spec.readinessGates"},
		},
		"a node selector key": {
			from: base().Obj(),
			to: func() *corev1.PodTemplateSpec {
				t := base().Obj()
				t.Spec.NodeSelector = map[string]string{"disk": "ssd"}
				return t
			}(),
			wantNotInPlaceable: []string{"spec.template.spec.nodeSelector[disk]"},
		},
		"a node selector value": {
			from: func() *corev1.PodTemplateSpec {
				t := base().Obj()
				t.Spec.NodeSelector = map[string]string{"disk": "hdd", "zone": "a"}
				return t
			}(),
			to: func() *corev1.PodTemplateSpec {
				t := base().Obj()
				t.Spec.NodeSelector = map[string]string{"disk": "ssd", "zone": "a"}
				return t
			}(),
			wantNotInPlaceable: []string{"spec.template.spec.nodeSelector[disk]"},
		},
		"resources written differently but equal": {
			from: withCPU(base().Obj(), "1"), to: withCPU(base().Obj(), "1000m"),
		},
		"a cpu limit changed: resized in place": {
			from: withCPU(base().Obj(), "1"), to: withCPU(base().Obj(), "2"),
			wantResized: []string{"app"},
		},
		"memory too, the QoS class the same (Burstable)": {
			from: withResources(base().Obj(), "100m", "1", "64Mi", "128Mi"), to: withResources(base().Obj(), "200m", "2", "64Mi", "256Mi"),
			wantResized: []string{"app"},
		},
		"requests up to the limits of its one container: Burstable becomes Guaranteed, which a live pod cannot": {
			from:               withResources(builder.PodTemplate("web", "nginx").Obj(), "100m", "1", "64Mi", "128Mi"),
			to:                 withResources(builder.PodTemplate("web", "nginx").Obj(), "1", "1", "128Mi", "128Mi"),
			wantResized:        []string{"app"},
			wantNotInPlaceable: []string{"spec.template.spec"},
		},
		"a first request on a BestEffort pod: it becomes Burstable": {
			from: base().Obj(), to: withResources(base().Obj(), "100m", "", "", ""),
			wantResized:        []string{"app"},
			wantNotInPlaceable: []string{"spec.template.spec"},
		},
		"a limit removed: the API refuses it on a live pod": {
			from: withResources(base().Obj(), "100m", "1", "64Mi", "128Mi"), to: withResources(base().Obj(), "100m", "", "64Mi", "128Mi"),
			wantNotInPlaceable: []string{"spec.template.spec.containers[0].resources"},
		},
		"another resource than cpu and memory: not in place": {
			from: withResources(base().Obj(), "100m", "1", "64Mi", "128Mi"),
			to: func() *corev1.PodTemplateSpec {
				t := withResources(base().Obj(), "100m", "1", "64Mi", "128Mi")
				t.Spec.Containers[0].Resources.Limits[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
				return t
			}(),
			wantNotInPlaceable: []string{"spec.template.spec.containers[0].resources.limits[ephemeral-storage]"},
		},
		"a regular init container's resources: not in place": {
			from: withInitCPU(base().InitImage("setup", "busybox:1").Obj(), "1"), to: withInitCPU(base().InitImage("setup", "busybox:1").Obj(), "2"),
			wantNotInPlaceable: []string{"spec.template.spec.initContainers[0].resources"},
		},
		"a native sidecar's resources: resized in place": {
			from: withInitCPU(withSidecar(base().Obj(), "proxy:1"), "1"), to: withInitCPU(withSidecar(base().Obj(), "proxy:1"), "2"),
			wantResized: []string{"proxy"},
		},
		"an image and a resource in one change": {
			from: withCPU(base().Obj(), "1"), to: withCPU(base().Image("app", "nginx:latest").Obj(), "2"),
			wantImages:  []ImageChange{{Container: "app", From: "nginx:alpine", To: "nginx:latest"}},
			wantResized: []string{"app"},
		},
		"an inlined field keeps its parent's path": {
			from: withProbe(base().Obj(), 8080), to: withProbe(base().Obj(), 9090),
			wantNotInPlaceable: []string{"spec.template.spec.containers[0].readinessProbe.httpGet.port"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := DiffTemplates(templatePath, tc.from, tc.to)
			if diff := cmp.Diff(tc.wantImages, got.Images); diff != "" {
				t.Errorf("images (-want,+got):\n%s", diff)
			}
			if got.Labels != tc.wantLabels || got.Annotations != tc.wantAnnotations {
				t.Errorf("labels, annotations = %v, %v; want %v, %v", got.Labels, got.Annotations, tc.wantLabels, tc.wantAnnotations)
			}
			if diff := cmp.Diff(tc.wantNotInPlaceable, got.NotInPlaceablePaths(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("not in-place-able (-want,+got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantResized, got.Resized(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("resized (-want,+got):\n%s", diff)
			}
			if got.InPlaceable() != (len(tc.wantNotInPlaceable) == 0) {
				t.Errorf("InPlaceable() = %v", got.InPlaceable())
			}
		})
	}
}

func TestNotInPlaceableErrors(t *testing.T) {
	d := DiffTemplates(templatePath, builder.PodTemplate("web", "nginx").Obj(), builder.PodTemplate("web", "nginx").Env("A", "b").Obj())
	want := []string{`spec.template.spec.containers[0].env: Forbidden: cannot change in place: only container images, their cpu and memory, pod labels and pod annotations can (update policy InPlaceOnly)`}
	if diff := cmp.Diff(want, errorStrings(d.NotInPlaceableErrors())); diff != "" {
		t.Errorf("errors (-want,+got):\n%s", diff)
	}
}

func TestDiffTemplatesDoesNotModifyItsInput(t *testing.T) {
	from := builder.PodTemplate("web", "nginx:1").Label("a", "b").Obj()
	to := builder.PodTemplate("web", "nginx:2").Label("a", "c").Obj()
	fromCopy, toCopy := from.DeepCopy(), to.DeepCopy()
	DiffTemplates(templatePath, from, to)
	if diff := cmp.Diff(fromCopy, from); diff != "" {
		t.Errorf("from changed (-want,+got):\n%s", diff)
	}
	if diff := cmp.Diff(toCopy, to); diff != "" {
		t.Errorf("to changed (-want,+got):\n%s", diff)
	}
}

// FuzzDiffTemplates checks, on any pair of templates, that the diff never
// panics, that a template never differs from itself, that in-place-ability
// is symmetric, and that an in-place-able diff is complete: copying the
// images, labels and annotations of the target onto the source gives the
// target.
func FuzzDiffTemplates(f *testing.F) {
	seed := func(a, b *corev1.PodTemplateSpec) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		f.Add(ja, jb)
	}
	seed(builder.PodTemplate("web", "nginx:1").Obj(), builder.PodTemplate("web", "nginx:2").Obj())
	seed(builder.PodTemplate("web", "nginx:1").Obj(), builder.PodTemplate("web", "nginx:1").Env("A", "B").Obj())
	seed(builder.PodTemplate("web", "nginx:1").InitImage("i", "x").Obj(), builder.PodTemplate("web", "nginx:1").Label("x", "y").Obj())
	seed(withCPU(builder.PodTemplate("a", "b").Obj(), "1"), withCPU(builder.PodTemplate("a", "b").Obj(), "1000m"))
	seed(withResources(builder.PodTemplate("a", "b").Obj(), "1", "2", "", "1Gi"), withResources(builder.PodTemplate("a", "b").Obj(), "1", "", "", "1Gi"))

	f.Fuzz(func(t *testing.T, ja, jb []byte) {
		var a, b corev1.PodTemplateSpec
		if json.Unmarshal(ja, &a) != nil || json.Unmarshal(jb, &b) != nil {
			return
		}
		if d := DiffTemplates(templatePath, &a, &a); !d.Empty() {
			t.Fatalf("a template differs from itself: %+v", d)
		}
		ab, ba := DiffTemplates(templatePath, &a, &b), DiffTemplates(templatePath, &b, &a)
		// Symmetric but for resources: a limit added can be resized in, not
		// removed.
		if ab.InPlaceable() != ba.InPlaceable() && len(ab.Resizes)+len(ba.Resizes) == 0 {
			t.Fatalf("in-place-able one way (%v) but not the other (%v)", ab.NotInPlaceable, ba.NotInPlaceable)
		}
		if ab.Empty() && !apiequality.Semantic.DeepEqual(&a, &b) {
			t.Fatalf("an empty diff between different templates")
		}
		if !ab.InPlaceable() {
			return
		}
		got := a.DeepCopy()
		got.Labels, got.Annotations = b.Labels, b.Annotations
		for i := range got.Spec.Containers {
			got.Spec.Containers[i].Image = b.Spec.Containers[i].Image
			got.Spec.Containers[i].Resources = b.Spec.Containers[i].Resources
		}
		for i := range got.Spec.InitContainers {
			got.Spec.InitContainers[i].Image = b.Spec.InitContainers[i].Image
			got.Spec.InitContainers[i].Resources = b.Spec.InitContainers[i].Resources
		}
		if !apiequality.Semantic.DeepEqual(got, &b) {
			t.Fatalf("an in-place-able diff missed a field: %s", cmp.Diff(&b, got))
		}
	})
}

func withCPU(t *corev1.PodTemplateSpec, cpu string) *corev1.PodTemplateSpec {
	t.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	return t
}

// withResources sets the app container's cpu and memory requests and
// limits ("" leaves one unset).
func withResources(t *corev1.PodTemplateSpec, cpuRequest, cpuLimit, memRequest, memLimit string) *corev1.PodTemplateSpec {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, q := range []struct {
		list  corev1.ResourceList
		name  corev1.ResourceName
		value string
	}{{r.Requests, corev1.ResourceCPU, cpuRequest}, {r.Limits, corev1.ResourceCPU, cpuLimit}, {r.Requests, corev1.ResourceMemory, memRequest}, {r.Limits, corev1.ResourceMemory, memLimit}} {
		if q.value != "" {
			q.list[q.name] = resource.MustParse(q.value)
		}
	}
	t.Spec.Containers[0].Resources = r
	return t
}

func withInitCPU(t *corev1.PodTemplateSpec, cpu string) *corev1.PodTemplateSpec {
	t.Spec.InitContainers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	return t
}

func withProbe(t *corev1.PodTemplateSpec, port int) *corev1.PodTemplateSpec {
	t.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intOrString(port)},
	}}
	return t
}

// withSidecar adds a native sidecar "proxy" (an init container that restarts
// always) running image.
func withSidecar(t *corev1.PodTemplateSpec, image string) *corev1.PodTemplateSpec {
	t.Spec.InitContainers = append(t.Spec.InitContainers, corev1.Container{
		Name: "proxy", Image: image, RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
	})
	return t
}

// withLabelEnv makes every container read the pod label key in its
// environment, through the downward API.
func withLabelEnv(t *corev1.PodTemplateSpec, key string) *corev1.PodTemplateSpec {
	for i := range t.Spec.Containers {
		t.Spec.Containers[i].Env = append(t.Spec.Containers[i].Env, corev1.EnvVar{Name: "LABEL",
			ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['" + key + "']"}}})
	}
	return t
}

func intOrString(port int) intstr.IntOrString { return intstr.FromInt(port) }

func TestNotInPlaceableErrorsSayWhy(t *testing.T) {
	cases := map[string]struct {
		from, to *corev1.PodTemplateSpec
		want     []string
	}{
		"an init container image": {
			from: builder.PodTemplate("web", "nginx").InitImage("setup", "busybox:1").Obj(),
			to:   builder.PodTemplate("web", "nginx").InitImage("setup", "busybox:2").Obj(),
			want: []string{`spec.template.spec.initContainers[0].image: Forbidden: cannot change in place: the kubelet does not run an init container again on a live pod (update policy InPlaceOnly)`},
		},
		"kubectl rollout restart": {
			from: builder.PodTemplate("web", "nginx").Obj(),
			to:   builder.PodTemplate("web", "nginx").Annotation("kubectl.kubernetes.io/restartedAt", "now").Obj(),
			want: []string{`spec.template.metadata.annotations[kubectl.kubernetes.io/restartedAt]: Forbidden: cannot change in place: a changed pod annotation restarts every container, as the native rollout does, and the image of container "app" does not change (update policy InPlaceOnly)`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := errorStrings(DiffTemplates(templatePath, tc.from, tc.to).NotInPlaceableErrors())
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("errors (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestSidecarRestartsOnImageChange(t *testing.T) {
	for version, want := range map[string]bool{
		"v1.37.2":          true,
		"v1.32.0":          true,
		"v1.32.0-eks-1234": true,
		"v1.31.9":          false,
		"v1.29.0+k3s1":     false,
		"":                 false,
		"not a version":    false,
	} {
		if got := SidecarRestartsOnImageChange(version); got != want {
			t.Errorf("SidecarRestartsOnImageChange(%q) = %v, want %v", version, got, want)
		}
	}
}

// DiffTemplates compares shallow copies of its templates: it must leave the
// templates themselves as they were.
func TestDiffTemplatesLeavesItsTemplates(t *testing.T) {
	from := withSidecar(withCPU(builder.PodTemplate("web", "nginx:1").Label("a", "1").Annotation("b", "2").Obj(), "1"), "envoy:1")
	to := withSidecar(withCPU(builder.PodTemplate("web", "nginx:2").Label("a", "2").Env("A", "B").Obj(), "2"), "envoy:2")
	wantFrom, wantTo := from.DeepCopy(), to.DeepCopy()
	DiffTemplates(templatePath, from, to)
	DiffTemplates(templatePath, from, withSidecar(withCPU(builder.PodTemplate("web", "nginx:3").Obj(), "3"), "envoy:3")) // images and cpu only
	if diff := cmp.Diff(wantFrom, from); diff != "" {
		t.Errorf("from changed (-want,+got):\n%s", diff)
	}
	if diff := cmp.Diff(wantTo, to); diff != "" {
		t.Errorf("to changed (-want,+got):\n%s", diff)
	}
}
