package certs_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/inplace-dev/inplace/certs"
	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
	"github.com/inplace-dev/inplace/internal/testenv"
	"github.com/inplace-dev/inplace/internal/testpki"
)

// The manager as it runs in a cluster, against a real kube-apiserver and
// etcd: each replica a process of its own (this test binary run again in
// manager mode, app.Run), authenticated as the service account of
// manifests/base with exactly the RBAC of manifests/base and of the
// certificate's component. The tests look where a user would: the Secret,
// the webhook configurations, the certificate a TLS client is served and
// whether it trusts it, /readyz, /metrics, the manager's log, events.

const (
	namespace      = "inplace-system"
	certName       = "inplace-webhook-cert" // the Secret, and cert-manager's Certificate
	dnsName        = "inplace-webhook.inplace-system.svc"
	serviceAccount = "system:serviceaccount:inplace-system:inplace-manager"
	// managerEnv, set, makes the test binary a manager replica: its value
	// is a managerSpec.
	managerEnv = "INPLACE_CERTS_TEST_MANAGER"
)

var (
	env *envtest.Environment
	// c is an administrator's client.
	c client.Client
	// kubeconfig is the manager's: its service account's.
	kubeconfig string

	baseRBAC         = filepath.Join(testenv.Root, "manifests", "base", "rbac.yaml")
	builtinRBAC      = filepath.Join(testenv.Root, "manifests", "components", "builtin-certs", "rbac.yaml")
	certManagerRBAC  = filepath.Join(testenv.Root, "manifests", "components", "cert-manager", "rbac.yaml")
	certManagerCerts = filepath.Join(testenv.Root, "manifests", "components", "cert-manager", "certificate.yaml")
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(managerEnv); spec != "" {
		os.Exit(runManager(spec))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	crds, err := os.MkdirTemp("", "cert-manager-crds-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(crds)
	if err := testenv.ExtractCertManagerCRDs(crds); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env, err = testenv.New(true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, crds)
	// The API server calls the webhook at localhost, a name the built-in
	// certificate can hold (cert-controller writes DNS names only).
	env.WebhookInstallOptions.LocalServingHostExternalName = "localhost"
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the API server:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the API server:", err)
		}
	}()
	scheme := app.Scheme()
	if err := cmapi.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if c, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{inplace.LabelEnabled: "true"}}},
	} {
		if err := c.Create(context.Background(), ns); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	manager, err := env.AddUser(envtest.User{Name: serviceAccount}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	b, err := manager.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := os.CreateTemp("", "manager-kubeconfig-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f.Close()
	kubeconfig = f.Name()
	return m.Run()
}

// managerSpec is what a replica runs.
type managerSpec struct {
	Kubeconfig string
	Options    app.Options
}

// runManager is a replica's main: app.Run until SIGTERM, logging JSON to
// stderr.
func runManager(spec string) int {
	var s managerSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := app.Run(ctrl.SetupSignalHandler(), cfg, s.Options); err != nil {
		fmt.Fprintln(os.Stderr, "the manager stopped:", err)
		return 1
	}
	return 0
}

// replica is a manager process.
type replica struct {
	name    string
	webhook string // host:port
	health  string // base URL of /readyz
	metrics string // base URL of /metrics
	cmd     *exec.Cmd
	log     *logBuffer
}

// startReplica runs a manager with o, as the service account, until the
// test ends. It fills in the policy, the namespace and the probe addresses.
func startReplica(t *testing.T, name string, o app.Options) *replica {
	t.Helper()
	o.Policy = inplace.PolicyNamespace
	o.Namespace = namespace
	o.LeaderElect = true
	o.GracefulShutdownPeriod = 5 * time.Second
	o.HealthAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	o.MetricsAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	spec, err := json.Marshal(managerSpec{Kubeconfig: kubeconfig, Options: o})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{
		name:    name,
		webhook: net.JoinHostPort(o.WebhookHost, strconv.Itoa(o.WebhookPort)),
		health:  "http://" + o.HealthAddress,
		metrics: "http://" + o.MetricsAddress,
		log:     &logBuffer{},
	}
	r.cmd = exec.Command(os.Args[0], "-test.run=^$")
	r.cmd.Env = append(os.Environ(), managerEnv+"="+string(spec))
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- r.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("replica %s stopped with %v", name, err)
			}
		case <-time.After(30 * time.Second):
			_ = r.cmd.Process.Kill()
			<-done
			t.Errorf("replica %s did not stop within 30 s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("replica %s's log:\n%s", name, r.log.String())
		}
	})
	return r
}

// running says whether the replica's process is the one started, alive.
func (r *replica) running() bool { return r.cmd.ProcessState == nil }

// probe returns the status code of GET path on the probe port.
func (r *replica) probe(path string) (int, error) {
	resp, err := http.Get(r.health + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// ready fails unless GET path answers 200.
func (r *replica) ready(path string) error {
	code, err := r.probe(path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s %s: %d", r.name, path, code)
	}
	return nil
}

// expiryMetric returns inplace_webhook_certificate_expiry_seconds.
func (r *replica) expiryMetric() (float64, error) {
	resp, err := http.Get(r.metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "inplace_webhook_certificate_expiry_seconds "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("no inplace_webhook_certificate_expiry_seconds in /metrics")
}

// served dials the replica's webhook as the API server would, trusting
// roots only, and returns the certificate it serves.
func (r *replica) served(roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", r.webhook, &tls.Config{RootCAs: roots, ServerName: dnsName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.name, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// logged returns the first log line whose message is msg and whose other
// fields include want.
func (r *replica) logged(msg string, want map[string]string) (map[string]any, error) {
	for _, line := range r.log.lines() {
		if line["msg"] != msg {
			continue
		}
		match := true
		for k, v := range want {
			if fmt.Sprint(line[k]) != v {
				match = false
			}
		}
		if match {
			return line, nil
		}
	}
	return nil, fmt.Errorf("%s logged no %q with %v", r.name, msg, want)
}

// logBuffer keeps a replica's output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON log lines.
func (b *logBuffer) lines() []map[string]any {
	var lines []map[string]any
	for _, l := range strings.Split(b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// eventually retries f every 100 ms until it succeeds, and fails the test
// with its last error after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apply creates or updates the objects of the manifests, as an
// administrator, and deletes them when the test ends.
func apply(t *testing.T, paths ...string) {
	t.Helper()
	for _, path := range paths {
		objs, err := testenv.ObjectsOf(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			err := c.Create(t.Context(), obj)
			if apierrors.IsAlreadyExists(err) {
				old := &unstructured.Unstructured{}
				old.SetGroupVersionKind(obj.GroupVersionKind())
				if err = c.Get(t.Context(), client.ObjectKeyFromObject(obj), old); err == nil {
					obj.SetResourceVersion(old.GetResourceVersion())
					err = c.Update(t.Context(), obj)
				}
			}
			if err != nil {
				t.Fatalf("%s: %s %s: %v", path, obj.GetKind(), obj.GetName(), err)
			}
			t.Cleanup(func() {
				if err := c.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
					t.Errorf("deleting %s %s: %v", obj.GetKind(), obj.GetName(), err)
				}
			})
		}
	}
}

func pool(caPEM []byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate")
	}
	return p, nil
}

func parsePEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM")
	}
	return x509.ParseCertificate(block.Bytes)
}

// caBundles returns the caBundle of every webhook of both configurations.
func caBundles(ctx context.Context) (map[string]string, error) {
	got := map[string]string{}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: "inplace-mutating"}, mutating); err != nil {
		return nil, err
	}
	for _, w := range mutating.Webhooks {
		got[w.Name] = string(w.ClientConfig.CABundle)
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: "inplace-validating"}, validating); err != nil {
		return nil, err
	}
	for _, w := range validating.Webhooks {
		got[w.Name] = string(w.ClientConfig.CABundle)
	}
	return got, nil
}

// baseWebhooks is how many webhooks the two configurations of
// manifests/base hold.
const baseWebhooks = 16

// injected fails unless every caBundle of both configurations is caPEM.
func injected(ctx context.Context, caPEM []byte) error {
	got, err := caBundles(ctx)
	if err != nil {
		return err
	}
	want := map[string]string{}
	for name := range got {
		want[name] = string(caPEM)
	}
	if len(got) != baseWebhooks {
		return fmt.Errorf("%d webhooks, want the %d of manifests/base", len(got), baseWebhooks)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		return fmt.Errorf("caBundles (-want,+got):\n%s", diff)
	}
	return nil
}

func TestBuiltin(t *testing.T) {
	apply(t, baseRBAC, builtinRBAC)
	secretKey := client.ObjectKey{Namespace: namespace, Name: certName}
	// No Secret before: the manager makes it. None after the replicas stop.
	deleteSecret := func() {
		err := c.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: certName}})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	deleteSecret()
	t.Cleanup(deleteSecret)
	// Short-lived certificates, so that one is renewed while the test
	// watches: valid 12 s, renewed 6 s before that, checked every second.
	rotation := certs.Rotation{Validity: 12 * time.Second, RenewBefore: 6 * time.Second, CheckInterval: time.Second, ExtraDNSNames: []string{"localhost"}}
	options := func(host string, port int) app.Options {
		return app.Options{CertMode: certs.ModeBuiltin, CertRotation: rotation, CertDir: t.TempDir(), WebhookHost: host, WebhookPort: port}
	}
	wi := env.WebhookInstallOptions
	// a is the one the API server calls.
	a := startReplica(t, "a", options(wi.LocalServingHost, wi.LocalServingPort))
	b := startReplica(t, "b", options("127.0.0.1", freePort(t)))
	replicas := []*replica{a, b}
	for _, r := range replicas {
		eventually(t, 60*time.Second, "replica "+r.name+" ready", func() error { return r.ready("/readyz") })
	}

	secret := &corev1.Secret{}
	var roots *x509.CertPool
	if !t.Run("the manager made the Secret: a CA and a certificate for the Service", func(t *testing.T) {
		if err := c.Get(t.Context(), secretKey, secret); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k, v := range secret.Data {
			if len(v) > 0 {
				keys = append(keys, k)
			}
		}
		if diff := cmp.Diff([]string{"ca.crt", "ca.key", "tls.crt", "tls.key"}, keys, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
			t.Errorf("the Secret's keys (-want,+got):\n%s", diff)
		}
		if secret.Type != corev1.SecretTypeOpaque {
			t.Errorf("type = %s, want %s", secret.Type, corev1.SecretTypeOpaque)
		}
		var err error
		if roots, err = pool(secret.Data["ca.crt"]); err != nil {
			t.Fatal(err)
		}
		leaf, err := parsePEM(secret.Data["tls.crt"])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName}); err != nil {
			t.Errorf("the Secret's certificate is not for %s by its CA: %v", dnsName, err)
		}
	}) {
		return
	}

	t.Run("the CA is in every caBundle of both webhook configurations", func(t *testing.T) {
		eventually(t, 10*time.Second, "the CA injected", func() error { return injected(t.Context(), secret.Data["ca.crt"]) })
	})

	t.Run("both replicas serve the Secret's certificate, which a client trusting the CA accepts", func(t *testing.T) {
		// A renewal may fall in between: wait for an instant when the
		// Secret and both replicas agree.
		eventually(t, 15*time.Second, "the replicas serving the Secret's certificate", func() error {
			if err := c.Get(t.Context(), secretKey, secret); err != nil {
				return err
			}
			for _, r := range replicas {
				leaf, err := r.served(roots)
				if err != nil {
					return err
				}
				if want := string(secret.Data["tls.crt"]); string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})) != want {
					return fmt.Errorf("%s serves another certificate than the Secret's", r.name)
				}
			}
			return nil
		})
	})

	t.Run("the API server trusts it: its calls reach the webhook", func(t *testing.T) {
		sts := builder.StatefulSet("web", "shop").Obj()
		if err := c.Create(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), sts) })
		if got := sts.Annotations[inplace.AnnotationUpdatePolicy]; got != "InPlaceIfPossible" {
			t.Errorf("update policy = %q, want InPlaceIfPossible: the API server did not call the webhook", got)
		}
	})

	t.Run("a renewed certificate is served without a restart, ready throughout, no pod created ungated", func(t *testing.T) {
		// Pods created all along, as a StatefulSet's controller creates
		// them: the webhook fails open, so a renewal the API server could
		// not follow would let pods through without the readiness gate.
		sts := builder.StatefulSet("rot", "shop").Obj()
		if err := c.Create(t.Context(), sts); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), sts) })
		var created int
		var ungated []string
		createPod := func(i int) {
			pod := builder.Pod(fmt.Sprintf("rot-%d", i), "shop").OwnedBy("apps/v1", "StatefulSet", sts.Name, sts.UID).Obj()
			if err := c.Create(t.Context(), pod); err != nil {
				ungated = append(ungated, fmt.Sprintf("%s: %v", pod.Name, err))
				return
			}
			created++
			if !inplace.HasGate(pod) {
				ungated = append(ungated, time.Now().Format(time.StampMilli)+" "+pod.Name)
			}
		}
		first := map[string]*x509.Certificate{}
		for _, r := range replicas {
			leaf, err := r.served(roots)
			if err != nil {
				t.Fatal(err)
			}
			first[r.name] = leaf
		}
		stop := make(chan struct{})
		var notReady []string
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				createPod(i)
			}
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if err := a.ready("/readyz"); err != nil {
					notReady = append(notReady, time.Now().Format(time.StampMilli)+" "+err.Error())
				}
			}
		}()
		for _, r := range replicas {
			eventually(t, 30*time.Second, "replica "+r.name+" serving a renewed certificate", func() error {
				leaf, err := r.served(roots)
				if err != nil {
					return err
				}
				if !leaf.NotAfter.After(first[r.name].NotAfter) {
					return fmt.Errorf("%s still serves the certificate valid until %s", r.name, leaf.NotAfter)
				}
				t.Logf("%s: served until %s, then until %s", r.name, first[r.name].NotAfter.Format(time.TimeOnly), leaf.NotAfter.Format(time.TimeOnly))
				return nil
			})
		}
		close(stop)
		wg.Wait()
		if diff := cmp.Diff([]string(nil), notReady); diff != "" {
			t.Errorf("replica a not ready during the renewal (-want,+got):\n%s", diff)
		}
		if diff := cmp.Diff([]string(nil), ungated); diff != "" {
			t.Errorf("pods created without the readiness gate during the renewal (-want,+got):\n%s", diff)
		}
		if created < 10 {
			t.Errorf("only %d pods created during the renewal; want at least 10 to prove anything", created)
		}
		t.Logf("%d pods created during the renewal, every one gated", created)
		for _, r := range replicas {
			if !r.running() {
				t.Errorf("replica %s's process stopped", r.name)
			}
		}
	})

	t.Run("the expiry metric is the served certificate's NotAfter", func(t *testing.T) {
		eventually(t, 15*time.Second, "the metric", func() error {
			leaf, err := a.served(roots)
			if err != nil {
				return err
			}
			got, err := a.expiryMetric()
			if err != nil {
				return err
			}
			if want := float64(leaf.NotAfter.Unix()); got != want {
				return fmt.Errorf("inplace_webhook_certificate_expiry_seconds = %v, want %v", got, want)
			}
			return nil
		})
	})

	t.Run("a deleted Secret is made again, its new CA injected and served", func(t *testing.T) {
		oldCA := string(secret.Data["ca.crt"])
		if err := c.Delete(t.Context(), secret); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "a new CA, injected and served", func() error {
			s := &corev1.Secret{}
			if err := c.Get(t.Context(), secretKey, s); err != nil {
				return err
			}
			ca := s.Data["ca.crt"]
			if len(ca) == 0 || string(ca) == oldCA {
				return errors.New("no new CA in the Secret yet")
			}
			if err := injected(t.Context(), ca); err != nil {
				return err
			}
			newRoots, err := pool(ca)
			if err != nil {
				return err
			}
			for _, r := range replicas {
				if _, err := r.served(newRoots); err != nil {
					return err
				}
				if err := r.ready("/readyz"); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

func TestCertManager(t *testing.T) {
	apply(t, baseRBAC, certManagerRBAC)
	dir := t.TempDir()
	r := startReplica(t, "cert-manager", app.Options{CertMode: certs.ModeCertManager, CertDir: dir, WebhookHost: "127.0.0.1", WebhookPort: freePort(t)})
	key := client.ObjectKey{Namespace: namespace, Name: certName}
	const notReady = "The webhook's Certificate is not Ready: the manager reports not ready until it is"

	// notReadyFor waits until the manager has logged the Certificate not
	// Ready for reason, and checks that it is not ready then.
	notReadyFor := func(t *testing.T, reason string) {
		t.Helper()
		eventually(t, 20*time.Second, "the log", func() error {
			_, err := r.logged(notReady, map[string]string{"reason": reason})
			return err
		})
		for _, path := range []string{"/readyz/certificate", "/readyz"} {
			if code, err := r.probe(path); err != nil || code != http.StatusInternalServerError {
				t.Errorf("%s = %d, %v; want 500", path, code, err)
			}
		}
	}
	// event waits for an event of reason on the Certificate whose note
	// holds note.
	event := func(t *testing.T, typ, reason, note string) {
		t.Helper()
		eventually(t, 20*time.Second, "the event "+reason, func() error {
			events := &eventsv1.EventList{}
			if err := c.List(t.Context(), events, client.InNamespace(namespace)); err != nil {
				return err
			}
			var seen []string
			for _, e := range events.Items {
				if e.Regarding.Kind != cmapi.CertificateKind || e.Regarding.Name != certName {
					continue
				}
				if e.Type == typ && e.Reason == reason && strings.Contains(e.Note, note) {
					return nil
				}
				seen = append(seen, e.Type+" "+e.Reason+": "+e.Note)
			}
			return fmt.Errorf("no %s event %s with %q on the Certificate; seen %q", typ, reason, note, seen)
		})
	}
	setReady := func(t *testing.T, status cmmeta.ConditionStatus, reason, message string) {
		t.Helper()
		cert := &cmapi.Certificate{}
		if err := c.Get(t.Context(), key, cert); err != nil {
			t.Fatal(err)
		}
		now := metav1.Now()
		cert.Status.Conditions = []cmapi.CertificateCondition{{
			Type: cmapi.CertificateConditionReady, Status: status, Reason: reason, Message: message,
			LastTransitionTime: &now, ObservedGeneration: cert.Generation,
		}}
		if err := c.Status().Update(t.Context(), cert); err != nil {
			t.Fatal(err)
		}
	}

	if !t.Run("no Certificate: not ready, and the log says so", func(t *testing.T) {
		notReadyFor(t, "NotFound")
	}) {
		return
	}

	// The component's Issuers and Certificates, admitted by cert-manager's
	// CRDs; cert-manager itself does not run: the test writes the status.
	apply(t, certManagerCerts)

	t.Run("no status yet: not ready, said in an event", func(t *testing.T) {
		notReadyFor(t, "NoReadyCondition")
		event(t, corev1.EventTypeWarning, certs.ReasonCertificateNotReady, "cert-manager has not reported on the Certificate yet")
	})

	t.Run("Ready False: not ready, with cert-manager's reason and message", func(t *testing.T) {
		setReady(t, cmmeta.ConditionFalse, "DoesNotExist", "Issuing certificate as Secret does not exist")
		notReadyFor(t, "DoesNotExist")
		if _, err := r.logged(notReady, map[string]string{"message": "Issuing certificate as Secret does not exist"}); err != nil {
			t.Error(err)
		}
		event(t, corev1.EventTypeWarning, certs.ReasonCertificateNotReady, "(DoesNotExist: Issuing certificate as Secret does not exist)")
	})

	t.Run("Ready True, but its Secret not mounted yet: still not ready", func(t *testing.T) {
		setReady(t, cmmeta.ConditionTrue, "Ready", "Certificate is up to date and has not expired")
		eventually(t, 20*time.Second, "the log", func() error {
			_, err := r.logged("The webhook's Certificate is Ready", nil)
			return err
		})
		event(t, corev1.EventTypeNormal, certs.ReasonCertificateReady, "reports ready")
		if code, err := r.probe("/readyz/certificate"); err != nil || code != http.StatusInternalServerError {
			t.Errorf("/readyz/certificate = %d, %v; want 500", code, err)
		}
	})

	ca := testpki.NewCA(t, time.Now())
	leaf := ca.Cert(dnsName).Valid(time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour).Truncate(time.Second))
	t.Run("its Secret mounted: ready, serving it, the metric its NotAfter", func(t *testing.T) {
		// As the kubelet mounts the Secret cert-manager wrote.
		cert, key := leaf.PEM()
		if err := os.WriteFile(filepath.Join(dir, "tls.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tls.crt"), cert, 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "ready", func() error { return r.ready("/readyz") })
		served, err := r.served(ca.Pool())
		if err != nil {
			t.Fatal(err)
		}
		want, _ := parsePEM(cert)
		if !served.Equal(want) {
			t.Errorf("served another certificate than the mounted one")
		}
		got, err := r.expiryMetric()
		if err != nil {
			t.Fatal(err)
		}
		if want := float64(want.NotAfter.Unix()); got != want {
			t.Errorf("inplace_webhook_certificate_expiry_seconds = %v, want %v", got, want)
		}
	})

	t.Run("Ready False again (issuance failing): not ready again", func(t *testing.T) {
		setReady(t, cmmeta.ConditionFalse, "Failed", "The certificate request has failed to complete and will be retried")
		notReadyFor(t, "Failed")
		event(t, corev1.EventTypeWarning, certs.ReasonCertificateNotReady, "(Failed: The certificate request has failed to complete and will be retried)")
	})
}

// With cert-manager's CRDs installed, the cert-manager mode's preflight
// passes (TestPreflight has the API server without them).
func TestPreflightWithCertManagerCRDs(t *testing.T) {
	s, err := certs.New(certs.Config{Mode: certs.ModeCertManager, Namespace: namespace, CertDir: t.TempDir(),
		ServiceName: "inplace-webhook", SecretName: certName, CertificateName: certName})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Preflight(env.Config); err != nil {
		t.Error(err)
	}
}
