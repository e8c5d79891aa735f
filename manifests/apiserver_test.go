// Package manifests holds no code: only the tests of what users install:
// accepted by a real API server, bad chart values refused by name.
package manifests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/internal/testenv"
)

// TestAPIServerAcceptsEveryRendering renders the kustomize compositions and
// the chart with its main settings, and creates every object they hold in a
// real kube-apiserver as a server-side dry run: a field the API does not
// know (strict field validation), a value it refuses, or a kind it does not
// serve fails here rather than on a user's cluster. cert-manager's CRDs are
// installed; prometheus-operator's are not, so the ServiceMonitor is not
// rendered. It needs .cache/bin/kustomize and .cache/bin/helm (make test
// builds them).
func TestAPIServerAcceptsEveryRendering(t *testing.T) {
	kustomize := tool(t, "KUSTOMIZE", "kustomize")
	helm := tool(t, "HELM", "helm")
	crds := t.TempDir()
	if err := testenv.ExtractCertManagerCRDs(crds); err != nil {
		t.Fatal(err)
	}
	_, c := testenv.Start(t, app.Scheme(), func(env *envtest.Environment) {
		env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, crds)
	})
	// Namespaced objects are dry-run into it: it must exist.
	if err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "inplace-system"}}); err != nil {
		t.Fatal(err)
	}

	chart := filepath.Join(testenv.Root, "manifests", "charts", "inplace")
	renderings := map[string][]string{
		"manifests/base":                      {kustomize, "build", kustomization(t, "")},
		"base + builtin-certs":                {kustomize, "build", kustomization(t, "builtin-certs")},
		"base + cert-manager":                 {kustomize, "build", kustomization(t, "cert-manager")},
		"base + cluster-policy":               {kustomize, "build", kustomization(t, "cluster-policy")},
		"base + builtin-certs, release-holds": {kustomize, "build", kustomization(t, "builtin-certs", "release-holds")},
		"e2e/manifests":                       {kustomize, "build", filepath.Join(testenv.Root, "e2e", "manifests")},
		"chart defaults":                      {helm, "template", "inplace", chart, "-n", "inplace-system"},
		"chart, cert-manager, cluster policy, excluded namespaces, NetworkPolicy, Fail": {helm, "template", "inplace", chart, "-n", "inplace-system",
			"--set", "certMode=cert-manager,policy=cluster,excludeNamespaces={shop,db},networkPolicy.enabled=true,webhook.failurePolicy=Fail,logLevel=debug"},
		"chart, secret, one replica, no metrics": {helm, "template", "inplace", chart, "-n", "inplace-system",
			"--set", "certMode=secret,replicas=1,metrics.enabled=false,priorityClassName=,createNamespace=true"},
	}
	for name, cmd := range renderings {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			run := exec.Command(cmd[0], cmd[1:]...)
			run.Stdout, run.Stderr = &stdout, &stderr
			if err := run.Run(); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, stderr.String())
			}
			objs, err := testenv.Objects(&stdout)
			if err != nil {
				t.Fatal(err)
			}
			n := len(objs)
			for _, obj := range objs {
				err := c.Create(t.Context(), obj, client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict))
				if obj.GetKind() == "Namespace" && apierrors.IsAlreadyExists(err) {
					continue
				}
				if err != nil {
					t.Errorf("%s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
				}
			}
			if n == 0 {
				t.Error("no object rendered")
			}
		})
	}
}

// TestChartRefusesBadValues: values the manager would refuse at start, or
// that contradict each other, fail helm install with a message that names
// the value, rather than leave a manager crash-looping.
func TestChartRefusesBadValues(t *testing.T) {
	helm := tool(t, "HELM", "helm")
	chart := filepath.Join(testenv.Root, "manifests", "charts", "inplace")
	cases := map[string]struct{ set, wantErr string }{
		"an unknown certificate mode":          {"certMode=acme", "certMode"},
		"a lifetime that is not a Go duration": {"builtinCert.validity=30d,builtinCert.renewBefore=10d,builtinCert.checkInterval=1h", "/builtinCert/validity"},
		"a lifetime for cert-manager's":        {"certMode=cert-manager,builtinCert.validity=1h,builtinCert.renewBefore=10m,builtinCert.checkInterval=1m", "builtinCert: only with certMode builtin"},
		"a lifetime half set":                  {"builtinCert.validity=1h", "builtinCert: set validity, renewBefore and checkInterval together"},
		"an unknown failure policy":            {"webhook.failurePolicy=Never", "/webhook/failurePolicy"},
		"a namespace that is not a name":       {"excludeNamespaces={Not_OK}", "/excludeNamespaces/0"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command(helm, "template", "inplace", chart, "-n", "inplace-system", "--set", tc.set).CombinedOutput()
			if err == nil {
				t.Fatalf("helm template --set %s succeeded, want an error naming %q", tc.set, tc.wantErr)
			}
			if !strings.Contains(string(out), tc.wantErr) {
				t.Errorf("helm template --set %s:\n%s\nwant an error naming %q", tc.set, out, tc.wantErr)
			}
		})
	}
	// The three together render the manager's flags.
	out, err := exec.Command(helm, "template", "inplace", chart, "-n", "inplace-system",
		"--set", "builtinCert.validity=1h,builtinCert.renewBefore=20m,builtinCert.checkInterval=1m").CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	for _, flag := range []string{"--cert-validity=1h", "--cert-renew-before=20m", "--cert-check-interval=1m"} {
		if !bytes.Contains(out, []byte("- "+flag+"\n")) {
			t.Errorf("the manager's args have no %s", flag)
		}
	}
}

// tool returns the path of a pinned tool: $ENV, else .cache/bin/name.
func tool(t *testing.T, env, name string) string {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		path = filepath.Join(testenv.Root, ".cache", "bin", name)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s not found (make test builds it into .cache/bin): %v", name, err)
	}
	return path
}

// kustomization writes a kustomization of the base with components, and
// returns its directory.
func kustomization(t *testing.T, components ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp(filepath.Join(testenv.Root, ".cache"), "render-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rel := func(p string) string {
		r, err := filepath.Rel(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	k := "resources: [" + rel(filepath.Join(testenv.Root, "manifests", "base")) + "]\n"
	var paths []string
	for _, comp := range components {
		if comp != "" {
			paths = append(paths, rel(filepath.Join(testenv.Root, "manifests", "components", comp)))
		}
	}
	if len(paths) > 0 {
		k += "components: [" + strings.Join(paths, ", ") + "]\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
