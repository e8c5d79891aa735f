package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestShippedManifests renders the kustomize compositions of the Makefile's
// MANIFEST_COMPONENTS and the chart, as
// make verify does, and wants no problem: no wildcard and no cluster-wide
// Secrets in any role, the released image, and the chart equal to kustomize
// for the same settings. It needs .cache/bin/kustomize and .cache/bin/helm
// (make test builds them).
func TestShippedManifests(t *testing.T) {
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var compositions []string
	for line := range strings.Lines(string(makefile)) {
		if v, ok := strings.CutPrefix(line, "MANIFEST_COMPONENTS := "); ok {
			compositions = strings.Fields(v)
		}
	}
	if len(compositions) == 0 {
		t.Fatal("no MANIFEST_COMPONENTS in the Makefile")
	}
	c := &Checker{Root: root, Kustomize: os.Getenv("KUSTOMIZE"), Helm: os.Getenv("HELM"), Compositions: compositions}
	problems, err := c.Check()
	if err != nil {
		t.Fatalf("rendering: %v (make test builds kustomize and helm into .cache/bin)", err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func TestPermissions(t *testing.T) {
	for name, tc := range map[string]struct {
		manifest string
		want     []string // substrings, one per problem
	}{
		"a ClusterRole naming what it needs passes": {
			manifest: `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ok}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- nonResourceURLs: [/metrics]
  verbs: [get]
`,
		},
		"a wildcard verb fails": {
			manifest: `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: wild}
rules:
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: ["*"]
`,
			want: []string{`wildcard "*" in verbs`},
		},
		"a wildcard resource in a Role fails": {
			manifest: `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: wild, namespace: inplace-system}
rules:
- apiGroups: [""]
  resources: ["*"]
  verbs: [get]
`,
			want: []string{`wildcard "*" in resources`},
		},
		"Secrets in a ClusterRole fail, even by name": {
			manifest: `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: secrets}
rules:
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [inplace-webhook-cert]
  verbs: [get]
`,
			want: []string{"Secrets in a ClusterRole"},
		},
		"Secrets in a Role of the manager's namespace pass": {
			manifest: `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: certs, namespace: inplace-system}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [list, watch, create]
`,
		},
		"Secrets in a Role of another namespace fail": {
			manifest: `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: certs, namespace: shop}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
`,
			want: []string{"Secrets outside the manager's namespace"},
		},
		"an aggregated ClusterRole fails": {
			manifest: `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: agg}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {a: b}}]
`,
			want: []string{"aggregates other roles"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			objs, err := Decode([]byte(tc.manifest))
			if err != nil {
				t.Fatal(err)
			}
			got := Permissions(objs)
			if len(got) != len(tc.want) {
				t.Fatalf("Permissions = %q, want %d problem(s) %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("problem %d = %q, want it to say %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCompare(t *testing.T) {
	kust := `
apiVersion: v1
kind: Service
metadata:
  name: inplace-webhook
  namespace: inplace-system
  labels: {app.kubernetes.io/part-of: inplace}
spec:
  ports: [{name: webhook, port: 443}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: inplace-validating}
webhooks:
- name: a
  matchConditions:
  - name: c
    expression: >-
      a ||

        b
`
	for name, tc := range map[string]struct {
		chart string
		want  []string
	}{
		"Helm's labels, hook annotations and CEL whitespace aside, equal": {
			chart: `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: inplace-validating
  labels: {helm.sh/chart: inplace-0.1.0, app.kubernetes.io/managed-by: Helm}
webhooks:
- name: a
  matchConditions:
  - {name: c, expression: "a || b"}
---
apiVersion: v1
kind: Service
metadata:
  name: inplace-webhook
  namespace: inplace-system
  labels: {app.kubernetes.io/part-of: inplace, app.kubernetes.io/instance: x}
  annotations: {helm.sh/hook: pre-delete}
spec:
  ports: [{name: webhook, port: 443}]
`,
		},
		"a changed field, a missing and an extra object": {
			chart: `
apiVersion: v1
kind: Service
metadata:
  name: inplace-webhook
  namespace: inplace-system
  labels: {app.kubernetes.io/part-of: inplace}
spec:
  ports: [{name: webhook, port: 8443}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: extra, namespace: inplace-system}
`,
			want: []string{
				"only in the chart's output: v1 ConfigMap inplace-system/extra",
				"only in kustomize's output: admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration /inplace-validating",
				"v1 Service inplace-system/inplace-webhook: .spec.ports[0].port: kustomize 443, chart 8443",
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			k, err := Decode([]byte(kust))
			if err != nil {
				t.Fatal(err)
			}
			c, err := Decode([]byte(tc.chart))
			if err != nil {
				t.Fatal(err)
			}
			got := Compare(k, Normalise(c))
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("Compare =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestImages(t *testing.T) {
	objs, err := Decode([]byte(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: inplace-manager, namespace: inplace-system}
spec:
  template:
    spec:
      containers:
      - {name: manager, image: "ghcr.io/inplace-dev/inplace-manager:latest"}
      - {name: other, image: "registry.example/other:latest"}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := Images(objs, "ghcr.io/inplace-dev/inplace-manager:v0.1.0")
	if len(got) != 1 || !strings.Contains(got[0], "image ghcr.io/inplace-dev/inplace-manager:latest, want ghcr.io/inplace-dev/inplace-manager:v0.1.0") {
		t.Errorf("Images = %q, want the manager's :latest reported, and only it", got)
	}
}
