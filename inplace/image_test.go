package inplace

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestNormalizeImage(t *testing.T) {
	const digest = "sha256:0123456789012345678901234567890123456789012345678901234567890123"
	cases := map[string]struct {
		in, want string
		wantErr  bool
	}{
		"a short name gets the registry, library/ and latest": {in: "nginx", want: "docker.io/library/nginx:latest"},
		"a tag is kept":                        {in: "nginx:alpine", want: "docker.io/library/nginx:alpine"},
		"a user image gets the registry only":  {in: "bitnami/redis:7", want: "docker.io/bitnami/redis:7"},
		"a registry with a port is kept":       {in: "localhost:5000/app", want: "localhost:5000/app:latest"},
		"a registry with a port and a tag":     {in: "registry.local:5000/team/app:v2", want: "registry.local:5000/team/app:v2"},
		"a digest needs no tag":                {in: "nginx@" + digest, want: "docker.io/library/nginx@" + digest},
		"a digest wins over the tag beside it": {in: "nginx:1.27@" + digest, want: "docker.io/library/nginx@" + digest},
		"an already normal name is unchanged":  {in: "docker.io/library/nginx:latest", want: "docker.io/library/nginx:latest"},
		"upper case is not a valid repository": {in: "NGINX", wantErr: true},
		"an empty reference is an error":       {in: "", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := NormalizeImage(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NormalizeImage(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("NormalizeImage(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSameImage(t *testing.T) {
	const digest = "sha256:0123456789012345678901234567890123456789012345678901234567890123"
	cases := map[string]struct {
		a, b string
		want bool
	}{
		"short and long Docker Hub names":         {"nginx:alpine", "docker.io/library/nginx:alpine", true},
		"no tag means latest":                     {"nginx", "docker.io/library/nginx:latest", true},
		"index.docker.io is docker.io":            {"index.docker.io/library/nginx:1", "nginx:1", true},
		"different tags":                          {"nginx:alpine", "nginx:latest", false},
		"different registries":                    {"quay.io/nginx:1", "nginx:1", false},
		"tag and digest against the digest alone": {"nginx:1.27@" + digest, "nginx@" + digest, true},
		"a tag against a digest":                  {"nginx:1.27", "nginx@" + digest, false},
		"unparsable but verbatim equal":           {"Not Valid", "Not Valid", true},
		"unparsable and different":                {"Not Valid", "nginx", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := SameImage(tc.a, tc.b); got != tc.want {
				t.Errorf("SameImage(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
			if got := SameImage(tc.b, tc.a); got != tc.want {
				t.Errorf("SameImage(%q, %q) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
			}
		})
	}
}

func TestValidateImages(t *testing.T) {
	template := func(init []string, containers ...string) *corev1.PodTemplateSpec {
		t := &corev1.PodTemplateSpec{}
		for i, image := range init {
			t.Spec.InitContainers = append(t.Spec.InitContainers, corev1.Container{Name: fmt.Sprintf("init%d", i), Image: image})
		}
		for i, image := range containers {
			t.Spec.Containers = append(t.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: image})
		}
		return t
	}
	cases := map[string]struct {
		template *corev1.PodTemplateSpec
		want     []string
	}{
		"valid references": {template: template([]string{"busybox"}, "nginx:1.27", "localhost:5000/a/b@sha256:0123456789012345678901234567890123456789012345678901234567890123")},
		"no template":      {},
		"upper case, a short digest, no name, an empty image": {
			template: template([]string{":tag"}, "UPPER:tag", "a@sha256:short", ""),
			want: []string{
				`spec.template.spec.initContainers[0].image: Invalid value: ":tag": not an image reference the kubelet can pull (invalid reference format)`,
				`spec.template.spec.containers[0].image: Invalid value: "UPPER:tag": not an image reference the kubelet can pull (invalid reference format: repository name (library/UPPER) must be lowercase)`,
				`spec.template.spec.containers[1].image: Invalid value: "a@sha256:short": not an image reference the kubelet can pull (invalid reference format)`,
				`spec.template.spec.containers[2].image: Invalid value: "": not an image reference the kubelet can pull (invalid reference format)`,
			},
		},
		"a huge reference is quoted back shortened": {
			template: template(nil, strings.Repeat("A", 1000)),
			want: []string{`spec.template.spec.containers[0].image: Invalid value: "` + strings.Repeat("A", ShownValueBytes) +
				`... (1000 bytes)": not an image reference the kubelet can pull (invalid reference format: repository name (library/` +
				strings.Repeat("A", 2*ShownValueBytes-len("invalid reference format: repository name (library/")) + `... (1070 bytes))`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, e := range ValidateImages(field.NewPath("spec", "template"), tc.template) {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ValidateImages (-want,+got):\n%s", diff)
			}
		})
	}
}
