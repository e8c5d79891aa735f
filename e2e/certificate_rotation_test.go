//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The built-in certificate as e2e/manifests shortens it: renewed about a
// minute after it is issued.
const (
	webhookCertSecret = "inplace-webhook-cert"
	mutatingWebhook   = "inplace-mutating"
	webhookPort       = "9443"
	webhookServerName = "inplace-webhook." + managerNamespace + ".svc"
	wantRenewals      = 2
	rotationTimeout   = 6 * time.Minute
	churnInterval     = 1500 * time.Millisecond
	minPodsThroughIt  = 20
	// A renewal is met by pod creations when pods were created this close
	// to the moment the test saw the new certificate in the Secret.
	renewalWindow      = 5 * time.Second
	servedCertDeadline = 2 * time.Second
	// How long a replica may take to serve the Secret's new certificate:
	// the manager writes it to its files on the Secret's watch event and
	// controller-runtime's certificate watcher reloads them.
	servedTimeout = 20 * time.Second
)

// TestCertificateRenewedUnderLoad: the built-in certificate is renewed while
// pods of a managed StatefulSet are created continuously (one deleted every
// 1.5 s, the StatefulSet controller making it again), until the Secret has
// held three certificates. Every pod created through it carries the gate (a
// webhook call that failed, the webhook failing open, would leave one
// without), every manager replica serves each new certificate within seconds
// without a restart, and every certificate served chains to the CA in the
// webhook configurations. e2e/manifests sets the short lifetime
// (--cert-validity and its two friends), so every test of the suite runs
// through renewals too.
func TestCertificateRenewedUnderLoad(t *testing.T) {
	t.Parallel()
	d := &appsv1.Deployment{}
	if err := k8s.Get(t.Context(), types.NamespacedName{Namespace: managerNamespace, Name: managerDeployment}, d); err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--cert-validity=") {
		t.Fatalf("the manager runs with the default certificate lifetime (args %s): install it with e2e/manifests, which shortens it", args)
	}
	managers := managerReplicas(t, d)

	ns := newNamespace(t, optedIn)
	sts := newStatefulSet("churn", ns, 4, images.V1, withParallelPods())
	create(t, sts)
	waitForStatefulSetReady(t, sts)

	ctx, cancel := context.WithTimeout(t.Context(), rotationTimeout)
	defer cancel()
	certs := &servedCerts{served: map[string][]servedCert{}}
	var wg sync.WaitGroup
	wg.Go(func() { certs.watch(ctx, managers) })
	seen, deleted := churnPods(ctx, t, sts, func() bool { return certs.renewals() >= wantRenewals })
	// Time for the replicas to serve the last certificate.
	_ = poll(ctx, servedTimeout, func(context.Context) error { return certs.allServed(managers) })
	cancel()
	wg.Wait()
	certs.reportErrors(t)

	// Every pod the StatefulSet made through it, gated.
	var ungated []string
	for uid, p := range seen {
		if !slices.ContainsFunc(p.Spec.ReadinessGates, func(g corev1.PodReadinessGate) bool { return g.ConditionType == gateCondition }) {
			ungated = append(ungated, fmt.Sprintf("%s (uid %s, created %s)", p.Name, uid, p.CreationTimestamp.Format(time.TimeOnly)))
		}
	}
	t.Logf("%d pods created and %d deleted while the Secret went through %d certificates", len(seen), deleted, len(certs.secret))
	if len(ungated) > 0 {
		t.Errorf("%d pods created without the gate %s: %s", len(ungated), gateCondition, strings.Join(ungated, ", "))
	}
	if len(seen) < minPodsThroughIt {
		t.Errorf("only %d pods created through the renewals, want %d at least for the test to mean something", len(seen), minPodsThroughIt)
	}
	for i, renewed := range certs.secret[1:] {
		near := 0
		for _, p := range seen {
			if d := p.CreationTimestamp.Sub(renewed.at); d > -renewalWindow && d < renewalWindow {
				near++
			}
		}
		if near == 0 {
			t.Errorf("no pod created within %v of renewal %d (%s, seen at %s): the renewal was not met by pod creations", renewalWindow, i+1, renewed, renewed.at.Format(time.TimeOnly))
		} else {
			t.Logf("renewal %d: %d pods created within %v of it", i+1, near, renewalWindow)
		}
	}
	if got := certs.renewals(); got < wantRenewals {
		t.Fatalf("the Secret %s was renewed %d times in %v, want %d (is the rotator running? the certificates: %s)", webhookCertSecret, got, rotationTimeout, wantRenewals, seenAt(certs.secret))
	}
	certs.check(t, managers)

	// No replica restarted or was replaced.
	after := managerReplicas(t, d)
	for name, before := range managers {
		now, ok := after[name]
		switch {
		case !ok:
			t.Errorf("manager pod %s (uid %s) is gone: %v", name, before.UID, slices.Collect(maps.Keys(after)))
		case now.UID != before.UID || now.Restarts != before.Restarts:
			t.Errorf("manager pod %s: uid %s, %d restarts; before the renewals uid %s, %d restarts", name, now.UID, now.Restarts, before.UID, before.Restarts)
		}
	}
}

// managerReplica is what the test keeps of a manager pod.
type managerReplica struct {
	UID      types.UID
	IP       string
	Restarts int32
}

// managerReplicas returns the manager's running pods by name; every one must
// be Ready.
func managerReplicas(t *testing.T, d *appsv1.Deployment) map[string]managerReplica {
	t.Helper()
	pods, err := managerPods(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	replicas := map[string]managerReplica{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if !podReady(&p) || p.Status.PodIP == "" {
			t.Fatalf("manager pod %s is not Ready: %s", p.Name, whyNotReady(&p))
		}
		var restarts int32
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
		replicas[p.Name] = managerReplica{UID: p.UID, IP: p.Status.PodIP, Restarts: restarts}
	}
	if len(replicas) == 0 {
		t.Fatal("no manager pod running")
	}
	return replicas
}

// churnPods deletes the oldest pod of sts every churnInterval until done
// says so, and returns every pod it saw, by UID, and how many it deleted.
// Every pod deleted was seen first, and a last list sees those made after;
// a pod's readiness gates cannot change after its creation.
func churnPods(ctx context.Context, t *testing.T, sts *appsv1.StatefulSet, done func() bool) (seen map[types.UID]corev1.Pod, deleted int) {
	t.Helper()
	seen = map[types.UID]corev1.Pod{}
	list := func() []corev1.Pod {
		pods, err := statefulSetPods(context.WithoutCancel(ctx), sts)
		if err != nil {
			t.Errorf("listing the pods: %v", err)
			return nil
		}
		for _, p := range pods {
			seen[p.UID] = p
		}
		return pods
	}
	tick := time.NewTicker(churnInterval)
	defer tick.Stop()
	for !done() {
		pods := list()
		var oldest *corev1.Pod
		for i := range pods {
			if p := &pods[i]; p.DeletionTimestamp == nil && (oldest == nil || p.CreationTimestamp.Before(&oldest.CreationTimestamp)) {
				oldest = p
			}
		}
		if oldest != nil {
			err := k8s.Delete(ctx, oldest, client.GracePeriodSeconds(0), client.Preconditions{UID: &oldest.UID})
			// Gone, or already replaced (the UID precondition): next one.
			if client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) && ctx.Err() == nil {
				t.Errorf("deleting pod %s: %v", oldest.Name, err)
			} else if err == nil {
				deleted++
			}
		}
		select {
		case <-ctx.Done():
			list()
			return seen, deleted
		case <-tick.C:
		}
	}
	// Those the StatefulSet controller is making now.
	time.Sleep(2 * churnInterval)
	list()
	return seen, deleted
}

// servedCert is a certificate seen: in the Secret, or served by a replica.
// It is known by its fingerprint: cert-controller gives every serving
// certificate the serial number 1.
type servedCert struct {
	fingerprint [sha256.Size]byte
	cert        *x509.Certificate
	at          time.Time
}

func (c servedCert) String() string {
	return fmt.Sprintf("%x (until %s)", c.fingerprint[:6], c.cert.NotAfter.Format(time.TimeOnly))
}

// servedCerts follows the Secret's certificate and what each replica serves.
type servedCerts struct {
	mu     sync.Mutex
	secret []servedCert            // the Secret's certificates, in the order seen
	served map[string][]servedCert // by replica: the certificates it served, in order
	ca     *x509.CertPool          // the CA in the webhook configuration's caBundle
	errs   []string
}

func (s *servedCerts) renewals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(len(s.secret)-1, 0)
}

// watch polls the Secret and each replica's webhook port until ctx ends.
func (s *servedCerts) watch(ctx context.Context, managers map[string]managerReplica) {
	for ctx.Err() == nil {
		if pool, err := webhookCA(ctx); err == nil {
			s.mu.Lock()
			s.ca = pool
			s.mu.Unlock()
		} else if ctx.Err() == nil {
			s.fail("reading the CA of %s: %v", mutatingWebhook, err)
		}
		if cert, err := secretCert(ctx); err == nil {
			s.record(&s.secret, cert)
		} else if ctx.Err() == nil {
			s.fail("reading the Secret %s: %v", webhookCertSecret, err)
		}
		for name, m := range managers {
			cert, err := dialWebhook(ctx, m.IP)
			if err != nil {
				if ctx.Err() == nil {
					s.fail("%s: the webhook port: %v", name, err)
				}
				continue
			}
			s.mu.Lock()
			list := s.served[name]
			s.mu.Unlock()
			s.record(&list, cert)
			s.mu.Lock()
			s.served[name] = list
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollInterval):
		}
	}
}

// allServed fails while a replica has not served the Secret's last
// certificate.
func (s *servedCerts) allServed(managers map[string]managerReplica) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.secret) == 0 {
		return errors.New("no certificate seen in the Secret")
	}
	last := s.secret[len(s.secret)-1]
	for name := range managers {
		if served := s.served[name]; len(served) == 0 || served[len(served)-1].fingerprint != last.fingerprint {
			return fmt.Errorf("%s does not serve %s yet", name, last)
		}
	}
	return nil
}

// record appends cert to list when it differs from the last one there.
func (s *servedCerts) record(list *[]servedCert, cert *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := servedCert{fingerprint: sha256.Sum256(cert.Raw), cert: cert, at: time.Now()}
	if n := len(*list); n > 0 && (*list)[n-1].fingerprint == seen.fingerprint {
		return
	}
	*list = append(*list, seen)
	if s.ca != nil {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: s.ca, DNSName: webhookServerName, CurrentTime: time.Now()}); err != nil {
			s.errs = append(s.errs, fmt.Sprintf("certificate %s does not verify against the webhook configuration's CA for %s: %v", seen, webhookServerName, err))
		}
	}
}

func (s *servedCerts) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// reportErrors fails the test with what went wrong while watching.
func (s *servedCerts) reportErrors(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.errs {
		if i == 10 {
			t.Errorf("... and %d more", len(s.errs)-i)
			break
		}
		t.Error(e)
	}
}

// check: every replica served every certificate the Secret held after the
// first, within seconds of the Secret's change, and nothing failed.
func (s *servedCerts) check(t *testing.T, managers map[string]managerReplica) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var slowest time.Duration
	for i, want := range s.secret[1:] {
		for name := range managers {
			idx := slices.IndexFunc(s.served[name], func(c servedCert) bool { return c.fingerprint == want.fingerprint })
			if idx < 0 {
				t.Errorf("%s never served the Secret's certificate %d, %s, in the Secret at %s; it served %s", name, i+2, want, want.at.Format(time.TimeOnly), seenAt(s.served[name]))
				continue
			}
			lag := s.served[name][idx].at.Sub(want.at)
			slowest = max(slowest, lag)
			t.Logf("%s served the Secret's certificate %d, %s, %v after it was seen in the Secret", name, i+2, want, lag.Round(10*time.Millisecond))
		}
	}
	t.Logf("every replica served each renewed certificate within %v of the test seeing it in the Secret (both polled every %v)", slowest.Round(10*time.Millisecond), pollInterval)
}

func seenAt(certs []servedCert) string {
	var b []string
	for _, c := range certs {
		b = append(b, fmt.Sprintf("%s at %s", c, c.at.Format(time.TimeOnly)))
	}
	return strings.Join(b, ", ")
}

// secretCert reads the serving certificate in the built-in Secret.
func secretCert(ctx context.Context) (*x509.Certificate, error) {
	secret := &corev1.Secret{}
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: managerNamespace, Name: webhookCertSecret}, secret); err != nil {
		return nil, err
	}
	block, _ := pem.Decode(secret.Data[corev1.TLSCertKey])
	if block == nil {
		return nil, errors.New("no PEM certificate in tls.crt")
	}
	return x509.ParseCertificate(block.Bytes)
}

// webhookCA is the CA the API server trusts the webhook with.
func webhookCA(ctx context.Context) (*x509.CertPool, error) {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := k8s.Get(ctx, types.NamespacedName{Name: mutatingWebhook}, cfg); err != nil {
		return nil, err
	}
	if len(cfg.Webhooks) == 0 {
		return nil, errors.New("no webhook")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.Webhooks[0].ClientConfig.CABundle) {
		return nil, errors.New("no CA in the caBundle")
	}
	return pool, nil
}

// dialWebhook returns the certificate a replica serves on its webhook port,
// as the API server would ask for it (SNI the Service's name).
func dialWebhook(ctx context.Context, ip string) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, servedCertDeadline)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		ServerName: webhookServerName,
		MinVersion: tls.VersionTLS12,
		// Verified against the webhook configuration's CA in record.
		InsecureSkipVerify: true, //nolint:gosec
	}}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, webhookPort))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("no certificate served")
	}
	return certs[0], nil
}
