// Package testenv starts a real kube-apiserver and etcd for integration
// tests (controller-runtime's envtest), from the binaries hack/build-kube.sh
// builds into .cache/bin. It is for tests only.
package testenv

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Root is the repository's root directory.
var Root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

// KruiseCRDs is the directory of OpenKruise's CRDs.
var KruiseCRDs = filepath.Join(Root, "internal", "testenv", "kruise-crds")

// Webhooks is the manifest of the webhook configurations users install.
var Webhooks = filepath.Join(Root, "manifests", "base", "webhooks.yaml")

// CertManagerSnapshot is cert-manager's source snapshot, in the shared
// folder beside the repository (read-only, there in CI too).
var CertManagerSnapshot = filepath.Join(Root, "..", "shared", "thirdparty", "cert-manager-2d0d7f7f7.tar.gz")

// ExtractCertManagerCRDs writes cert-manager's CRDs (deploy/crds/*.yaml of
// CertManagerSnapshot) into dir, for CRDDirectoryPaths. No cert-manager code
// runs: a test plays its part by writing the status it would write.
func ExtractCertManagerCRDs(dir string) error {
	f, err := os.Open(CertManagerSnapshot)
	if err != nil {
		return fmt.Errorf("cert-manager's CRDs: %w", err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", CertManagerSnapshot, err)
	}
	tr := tar.NewReader(gz)
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", CertManagerSnapshot, err)
		}
		// cert-manager-<commit>/deploy/crds/<name>.yaml
		parts := strings.Split(h.Name, "/")
		if len(parts) != 4 || parts[1] != "deploy" || parts[2] != "crds" || !strings.HasSuffix(parts[3], ".yaml") || h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, parts[3]), b, 0o644); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no deploy/crds/*.yaml in %s", CertManagerSnapshot)
	}
	return nil
}

// Assets returns the directory holding etcd and kube-apiserver:
// $KUBEBUILDER_ASSETS, else .cache/bin. It fails with what to run when they
// are missing: the tests need a real API server and never skip.
func Assets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(Root, ".cache", "bin")
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("%s not found in %s: run `make test` (or hack/build-kube.sh etcd kube-apiserver) to build it", name, dir)
		}
	}
	return dir, nil
}

// New returns an environment with Kruise's CRDs and, when withWebhooks, the
// webhook configurations of manifests/base, pointed at a local port.
func New(withWebhooks bool) (*envtest.Environment, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{KruiseCRDs},
		ErrorIfCRDPathMissing: true,
	}
	if withWebhooks {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{Paths: []string{Webhooks}}
	}
	return env, nil
}

// Start starts envtest's kube-apiserver and etcd, with Kruise's CRDs and
// as configure (when set) leaves the environment, stops them when the test
// ends, and returns the environment and an admin client with scheme.
func Start(t testing.TB, scheme *k8sruntime.Scheme, configure func(*envtest.Environment)) (*envtest.Environment, client.Client) {
	t.Helper()
	env, err := New(false)
	if err != nil {
		t.Fatal(err)
	}
	if configure != nil {
		configure(env)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error("stopping the API server:", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return env, c
}

// WaitForWebhookServer dials the environment's webhook port over TLS until it
// answers, so that no case runs before the webhook serves.
func WaitForWebhookServer(ctx context.Context, env *envtest.Environment) error {
	o := env.WebhookInstallOptions
	addr := net.JoinHostPort(o.LocalServingHost, strconv.Itoa(o.LocalServingPort))
	dialer := &net.Dialer{Timeout: time.Second}
	for {
		conn, err := tls.DialWithDialer(dialer, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only a liveness dial
		if err == nil {
			return conn.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the webhook server at %s never answered: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Objects decodes a stream of YAML (or JSON) documents, as kubectl reads a
// manifest, into objects; empty documents are skipped.
func Objects(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(r, 4096)
	var objs []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		if len(obj.Object) != 0 {
			objs = append(objs, obj)
		}
	}
}

// ObjectsOf is Objects of a file.
func ObjectsOf(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	objs, err := Objects(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return objs, nil
}
