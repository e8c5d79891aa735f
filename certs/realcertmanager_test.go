package certs_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/inplace-dev/inplace/certs"
	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testenv"
)

// The cert-manager mode with cert-manager itself: its controller and CA
// injector, built from the source snapshot in the shared folder
// (../shared/thirdparty/build.sh, run by make test-assets), run against the
// same API server as the manager. Nothing plays cert-manager's part: its
// controller issues the component's CA and serving Certificates, its
// injector writes the CA into both webhook configurations, and the API
// server's calls then reach the manager's webhook over TLS it verifies.

// certManagerBinaries are the two cert-manager programs the test runs.
var certManagerBinaries = []string{"cert-manager-controller", "cert-manager-cainjector"}

func TestWithCertManagerRunning(t *testing.T) {
	dir, err := testenv.Assets()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range certManagerBinaries {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("%s not found in %s: run `make test-assets` to build it from ../shared/thirdparty", name, dir)
		}
	}
	ctx := t.Context()
	apply(t, baseRBAC, certManagerRBAC)
	injectFrom(t, namespace+"/"+certName)
	apply(t, withLocalhost(t, certManagerCerts))

	admin, err := env.AddUser(envtest.User{Name: "cert-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	adminConfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	adminKubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(adminKubeconfig, adminConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	runProgram(t, adminKubeconfig, filepath.Join(dir, "cert-manager-controller"), "--leader-elect=false",
		"--cluster-resource-namespace="+namespace,
		"--metrics-listen-address="+localAddress(t), "--internal-healthz-listen-address="+localAddress(t))
	runProgram(t, adminKubeconfig, filepath.Join(dir, "cert-manager-cainjector"), "--leader-elect=false",
		"--enable-customresourcedefinitions-injectable=false", "--enable-apiservices-injectable=false",
		"--metrics-listen-address="+localAddress(t))

	wi := env.WebhookInstallOptions
	certDir := t.TempDir()
	r := startReplica(t, "with-cert-manager", app.Options{CertMode: certs.ModeCertManager, CertDir: certDir, WebhookHost: wi.LocalServingHost, WebhookPort: wi.LocalServingPort})

	key := client.ObjectKey{Namespace: namespace, Name: certName}
	secret := &corev1.Secret{}
	t.Run("cert-manager issues the Certificate", func(t *testing.T) {
		eventually(t, 90*time.Second, "the Certificate Ready", func() error {
			cert := &cmapi.Certificate{}
			if err := c.Get(ctx, key, cert); err != nil {
				return err
			}
			for _, cond := range cert.Status.Conditions {
				if cond.Type == cmapi.CertificateConditionReady && cond.Status == cmmeta.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", cert.Status.Conditions)
		})
		if err := c.Get(ctx, key, secret); err != nil {
			t.Fatal(err)
		}
		leaf, err := parsePEM(secret.Data["tls.crt"])
		if err != nil {
			t.Fatal(err)
		}
		roots, err := pool(secret.Data["ca.crt"])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: dnsName, Roots: roots}); err != nil {
			t.Errorf("the issued certificate is not valid for %s under its CA: %v", dnsName, err)
		}
	})
	if t.Failed() {
		return
	}
	t.Run("its CA injector writes the CA into every webhook", func(t *testing.T) {
		// cert-manager's injector merges: it adds the CA to a bundle's
		// unexpired certificates, so that a new CA is trusted before the
		// old one goes (the bundles were emptied: only its CA is there).
		ca, err := parsePEM(secret.Data["ca.crt"])
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "the CA injected", func() error { return bundlesHold(ctx, ca) })
	})
	t.Run("the manager: not ready until the Secret is mounted, then ready and serving it", func(t *testing.T) {
		eventually(t, 30*time.Second, "the log", func() error {
			_, err := r.logged("The webhook's Certificate is Ready", nil)
			return err
		})
		if code, err := r.probe("/readyz"); err != nil || code == 200 {
			t.Errorf("/readyz = %d, %v before the Secret is mounted; want not ready", code, err)
		}
		mount(t, certDir, secret)
		eventually(t, 30*time.Second, "ready", func() error { return r.ready("/readyz") })
		roots, _ := pool(secret.Data["ca.crt"])
		served, err := r.served(roots)
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := parsePEM(secret.Data["tls.crt"]); !served.Equal(want) {
			t.Error("the manager serves another certificate than cert-manager's")
		}
	})
	t.Run("the API server trusts it: its calls reach the webhook", func(t *testing.T) {
		sts := builder.StatefulSet("web-cm", "shop").Obj()
		if err := c.Create(ctx, sts); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), sts) })
		if got := sts.Annotations[inplace.AnnotationUpdatePolicy]; got != "InPlaceIfPossible" {
			t.Errorf("update policy = %q, want InPlaceIfPossible: the API server did not call the webhook", got)
		}
	})
	t.Run("a certificate cert-manager renews is served without a restart", func(t *testing.T) {
		old := secret.DeepCopy()
		// What `cmctl renew` does: ask for issuance through the Issuing
		// condition.
		cert := &cmapi.Certificate{}
		if err := c.Get(ctx, key, cert); err != nil {
			t.Fatal(err)
		}
		cert.Status.Conditions = append(cert.Status.Conditions, cmapi.CertificateCondition{
			Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue, Reason: "ManuallyTriggered", Message: "renewed by the test",
		})
		if err := c.Status().Update(ctx, cert); err != nil {
			t.Fatal(err)
		}
		eventually(t, 90*time.Second, "a new certificate in the Secret", func() error {
			if err := c.Get(ctx, key, secret); err != nil {
				return err
			}
			if bytes.Equal(secret.Data["tls.crt"], old.Data["tls.crt"]) {
				return errors.New("still the first certificate")
			}
			return nil
		})
		mount(t, certDir, secret)
		want, err := parsePEM(secret.Data["tls.crt"])
		if err != nil {
			t.Fatal(err)
		}
		roots, _ := pool(secret.Data["ca.crt"])
		eventually(t, 30*time.Second, "the renewed certificate served", func() error {
			served, err := r.served(roots)
			if err != nil {
				return err
			}
			if !served.Equal(want) {
				return errors.New("still serving the first certificate")
			}
			return nil
		})
		if !r.running() {
			t.Error("the manager restarted")
		}
		if err := r.ready("/readyz"); err != nil {
			t.Error(err)
		}
	})
}

// bundlesHold fails unless every caBundle of both configurations holds ca.
func bundlesHold(ctx context.Context, ca *x509.Certificate) error {
	bundles, err := caBundles(ctx)
	if err != nil {
		return err
	}
	if len(bundles) != baseWebhooks {
		return fmt.Errorf("%d webhooks, want the %d of manifests/base", len(bundles), baseWebhooks)
	}
	for name, bundle := range bundles {
		found := false
		for rest := []byte(bundle); ; {
			var block *pem.Block
			if block, rest = pem.Decode(rest); block == nil {
				break
			}
			if bytes.Equal(block.Bytes, ca.Raw) {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("the caBundle of %s lacks cert-manager's CA", name)
		}
	}
	return nil
}

// injectFrom annotates both webhook configurations as the cert-manager
// component does, and empties their caBundles so that only what the
// injector writes can be trusted; the test's end restores both.
func injectFrom(t *testing.T, certificate string) {
	t.Helper()
	ctx := context.Background()
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: "inplace-mutating"}, mutating); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "inplace-validating"}, validating); err != nil {
		t.Fatal(err)
	}
	originals := []client.Object{mutating.DeepCopy(), validating.DeepCopy()}
	for i := range mutating.Webhooks {
		mutating.Webhooks[i].ClientConfig.CABundle = nil
	}
	for i := range validating.Webhooks {
		validating.Webhooks[i].ClientConfig.CABundle = nil
	}
	for _, obj := range []client.Object{mutating, validating} {
		obj.SetAnnotations(map[string]string{"cert-manager.io/inject-ca-from": certificate})
		if err := c.Update(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, obj := range originals {
			current := obj.DeepCopyObject().(client.Object)
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), current); err != nil {
				t.Error(err)
				continue
			}
			obj.SetResourceVersion(current.GetResourceVersion())
			if err := c.Update(ctx, obj); err != nil {
				t.Error(err)
			}
		}
	})
}

// withLocalhost writes a copy of the component's certificates whose serving
// Certificate also names localhost: the API server of this test calls the
// webhook there, not at its Service.
func withLocalhost(t *testing.T, path string) string {
	t.Helper()
	objs, err := testenv.ObjectsOf(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, obj := range objs {
		if obj.GetKind() == cmapi.CertificateKind && obj.GetName() == certName {
			names, _, _ := unstructured.NestedStringSlice(obj.Object, "spec", "dnsNames")
			if len(names) == 0 {
				t.Fatalf("%s: the Certificate %s names no DNS name", path, certName)
			}
			if err := unstructured.SetNestedStringSlice(obj.Object, append(names, "localhost"), "spec", "dnsNames"); err != nil {
				t.Fatal(err)
			}
		}
		b, err := sigsyaml.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	copyPath := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(copyPath, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return copyPath
}

// mount writes the Secret's key and certificate into dir, as the kubelet
// updates a mounted Secret: the key first, the certificate last.
func mount(t *testing.T, dir string, secret *corev1.Secret) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), secret.Data["tls.key"], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), secret.Data["tls.crt"], 0o644); err != nil {
		t.Fatal(err)
	}
}

// runProgram runs a program with the kubeconfig until the test ends; its
// output is logged when the test fails. The kubeconfig goes in the flag
// and in $KUBECONFIG: the CA injector's flag does not reach the
// controller-runtime loader it uses (cert-manager registers two flags of
// that name), the variable does.
func runProgram(t *testing.T, kubeconfig, path string, args ...string) {
	t.Helper()
	var out logBuffer
	cmd := exec.Command(path, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s's output:\n%s", filepath.Base(path), tail(out.String(), 8000))
		}
	})
}

// localAddress is a free loopback address for a program's listener.
func localAddress(t *testing.T) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
