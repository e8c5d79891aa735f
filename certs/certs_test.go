package certs

import (
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/inplace-dev/inplace/internal/testclock"
	"github.com/inplace-dev/inplace/internal/testpki"
)

const dnsName = "inplace-webhook.inplace-system.svc"

func TestParseMode(t *testing.T) {
	cases := map[string]struct {
		in      string
		want    Mode
		wantErr string
	}{
		"builtin":                         {in: "builtin", want: ModeBuiltin},
		"cert-manager":                    {in: "cert-manager", want: ModeCertManager},
		"secret":                          {in: "secret", want: ModeSecret},
		"an unknown mode names the valid": {in: "vault", wantErr: `unknown certificate mode "vault": want one of "builtin", "cert-manager", "secret"`},
		"the empty string is no mode":     {in: "", wantErr: `unknown certificate mode ""`},
		"modes are case-sensitive":        {in: "Builtin", wantErr: `unknown certificate mode "Builtin"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseMode(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("ParseMode(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// config builds a valid Config of a mode for tests.
type config struct{ Config }

func newConfig(mode Mode, dir string) *config {
	return &config{Config{Mode: mode, Namespace: "inplace-system", CertDir: dir, ServiceName: "inplace-webhook",
		SecretName: "inplace-webhook-cert", CertificateName: "inplace-webhook-cert",
		MutatingWebhook: "inplace-mutating", ValidatingWebhook: "inplace-validating"}}
}

func (c *config) rotation(validity, renewBefore time.Duration) *config {
	c.Rotation.Validity, c.Rotation.RenewBefore = validity, renewBefore
	return c
}

func TestNewRefusesABadConfig(t *testing.T) {
	cases := map[string]struct {
		cfg     Config
		wantErr string
	}{
		"the defaults": {cfg: newConfig(ModeBuiltin, "/certs").Config},
		"a short validity renewed before its end": {
			cfg: newConfig(ModeBuiltin, "/certs").rotation(10*time.Second, 5*time.Second).Config,
		},
		"renewed as early as it is valid: forever": {
			cfg:     newConfig(ModeBuiltin, "/certs").rotation(time.Hour, time.Hour).Config,
			wantErr: "renewing 1h0m0s before expiry a certificate valid 1h0m0s would renew it forever",
		},
		"a validity shorter than the default renewal": {
			cfg:     newConfig(ModeBuiltin, "/certs").rotation(24*time.Hour, 0).Config,
			wantErr: "renewing 2160h0m0s before expiry",
		},
		"no mode": {
			cfg:     newConfig("", "/certs").Config,
			wantErr: `unknown certificate mode ""`,
		},
		"no directory": {
			cfg:     newConfig(ModeSecret, "").Config,
			wantErr: "no certificate directory",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheckServed(t *testing.T) { testclock.Run(t, testCheckServed) }

func testCheckServed(t *testing.T, now time.Time) {
	ca := testpki.NewCA(t, now)
	cases := map[string]struct {
		leaf    *x509.Certificate
		wantErr string
	}{
		"a certificate for the service, valid now": {
			leaf: ca.Cert(dnsName, dnsName+".cluster.local").Valid(now.Add(-time.Hour), now.Add(time.Hour)).Leaf(),
		},
		"valid to the second": {
			leaf: ca.Cert(dnsName).Valid(now.Add(-time.Hour), now).Leaf(),
		},
		"none served yet": {
			wantErr: "no serving certificate loaded yet",
		},
		"expired": {
			leaf:    ca.Cert(dnsName).Valid(now.Add(-2*time.Hour), now.Add(-time.Second)).Leaf(),
			wantErr: "the serving certificate expired at " + now.Add(-time.Second).Format(time.RFC3339),
		},
		"not valid yet": {
			leaf:    ca.Cert(dnsName).Valid(now.Add(time.Minute), now.Add(time.Hour)).Leaf(),
			wantErr: "the serving certificate is not valid before " + now.Add(time.Minute).Format(time.RFC3339),
		},
		"for another name": {
			leaf:    ca.Cert("localhost").Valid(now.Add(-time.Hour), now.Add(time.Hour)).Leaf(),
			wantErr: "the serving certificate is not for inplace-webhook.inplace-system.svc: x509: certificate is valid for localhost, not inplace-webhook.inplace-system.svc",
		},
		"for the service of another namespace": {
			leaf:    ca.Cert("inplace-webhook.default.svc").Valid(now.Add(-time.Hour), now.Add(time.Hour)).Leaf(),
			wantErr: "is not for inplace-webhook.inplace-system.svc",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			err := checkServed(tc.leaf, dnsName, now)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("checkServed = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("checkServed = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// servedSource returns the source of a mode, serving cert and key from a
// directory of its own, its clock stopped at now.
func servedSource(t *testing.T, mode Mode, cert, key []byte, now time.Time) *Source {
	t.Helper()
	dir := t.TempDir()
	if cert != nil {
		if _, err := writeFiles(dir, cert, key); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(newConfig(mode, dir).Config)
	if err != nil {
		t.Fatal(err)
	}
	s.clock = clocktesting.NewFakePassiveClock(now)
	s.served.tryLoad()
	return s
}

func TestSourceCheck(t *testing.T) { testclock.Run(t, testSourceCheck) }

func testSourceCheck(t *testing.T, now time.Time) {
	ca, otherCA := testpki.NewCA(t, now), testpki.NewCA(t, now)
	cert, key := ca.Cert(dnsName).Valid(now.Add(-time.Hour), now.Add(time.Hour)).PEM()
	expiredCert, expiredKey := ca.Cert(dnsName).Valid(now.Add(-time.Hour), now.Add(-time.Minute)).PEM()
	injected := func(s *Source) { close(s.builtin.injected) }
	caInSecret := func(ca *testpki.CA) func(*Source) {
		return func(s *Source) { s.builtin.ca.Store(ca.Pool()) }
	}
	certificate := func(c *cmapi.Certificate) func(*Source) {
		return func(s *Source) { s.certificate.known, s.certificate.state = true, certificateStateOf(c) }
	}
	cases := map[string]struct {
		mode      Mode
		cert, key []byte
		set       []func(*Source)
		wantErr   string
	}{
		"secret: a valid certificate served": {mode: ModeSecret, cert: cert, key: key},
		"secret: nothing in the directory":   {mode: ModeSecret, wantErr: "no serving certificate loaded yet"},
		"secret: an expired certificate":     {mode: ModeSecret, cert: expiredCert, key: expiredKey, wantErr: "expired"},
		"builtin: served, the CA in the Secret and injected": {
			mode: ModeBuiltin, cert: cert, key: key, set: []func(*Source){injected, caInSecret(ca)},
		},
		"builtin: served, but the CA not injected yet": {
			mode: ModeBuiltin, cert: cert, key: key, set: []func(*Source){caInSecret(ca)},
			wantErr: "the CA is not in the webhook configurations inplace-mutating and inplace-validating yet",
		},
		"builtin: served, but the Secret not read yet": {
			mode: ModeBuiltin, cert: cert, key: key, set: []func(*Source){injected},
			wantErr: "the Secret inplace-system/inplace-webhook-cert has not been read yet",
		},
		"builtin: the Secret's CA is another (a new CA not taken in yet)": {
			mode: ModeBuiltin, cert: cert, key: key, set: []func(*Source){injected, caInSecret(otherCA)},
			wantErr: "the served certificate does not chain to the CA in the Secret inplace-system/inplace-webhook-cert",
		},
		"builtin: an expired certificate, whatever the CA": {
			mode: ModeBuiltin, cert: expiredCert, key: expiredKey, set: []func(*Source){injected, caInSecret(ca)},
			wantErr: "expired",
		},
		"cert-manager: served and the Certificate Ready": {
			mode: ModeCertManager, cert: cert, key: key, set: []func(*Source){certificate(certificateWith(cmmeta.ConditionTrue, "Ready", "Certificate is up to date"))},
		},
		"cert-manager: served, the Certificate not read yet": {
			mode: ModeCertManager, cert: cert, key: key,
			wantErr: "the Certificate inplace-system/inplace-webhook-cert has not been read yet",
		},
		"cert-manager: served, the Certificate not Ready says why": {
			mode: ModeCertManager, cert: cert, key: key,
			set:     []func(*Source){certificate(certificateWith(cmmeta.ConditionFalse, "DoesNotExist", "Issuing certificate as Secret does not exist"))},
			wantErr: "the Certificate inplace-system/inplace-webhook-cert is not Ready (DoesNotExist: Issuing certificate as Secret does not exist)",
		},
		"cert-manager: the Certificate Ready, but its Secret not mounted yet": {
			mode: ModeCertManager, set: []func(*Source){certificate(certificateWith(cmmeta.ConditionTrue, "Ready", ""))},
			wantErr: "no serving certificate loaded yet",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := servedSource(t, tc.mode, tc.cert, tc.key, now)
			for _, set := range tc.set {
				set(s)
			}
			err := s.Check(nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Check = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func certificateWith(status cmmeta.ConditionStatus, reason, message string) *cmapi.Certificate {
	c := &cmapi.Certificate{}
	c.Status.Conditions = []cmapi.CertificateCondition{
		{Type: cmapi.CertificateConditionIssuing, Status: cmmeta.ConditionTrue},
		{Type: cmapi.CertificateConditionReady, Status: status, Reason: reason, Message: message},
	}
	return c
}

func TestCertificateStateOf(t *testing.T) {
	cases := map[string]struct {
		cert *cmapi.Certificate
		want certificateState
	}{
		"Ready": {
			cert: certificateWith(cmmeta.ConditionTrue, "Ready", "Certificate is up to date and has not expired"),
			want: certificateState{Ready: true, Reason: "Ready", Message: "Certificate is up to date and has not expired"},
		},
		"not Ready: the condition's reason and message": {
			cert: certificateWith(cmmeta.ConditionFalse, "Failed", "The certificate request has failed to complete"),
			want: certificateState{Reason: "Failed", Message: "The certificate request has failed to complete"},
		},
		"Unknown is not Ready": {
			cert: certificateWith(cmmeta.ConditionUnknown, "Pending", "waiting"),
			want: certificateState{Reason: "Pending", Message: "waiting"},
		},
		"no Ready condition: cert-manager has not seen it": {
			cert: &cmapi.Certificate{},
			want: certificateState{Reason: "NoReadyCondition", Message: "cert-manager has not reported on the Certificate yet (is it running?)"},
		},
		"no Certificate": {
			want: certificateState{Reason: "NotFound", Message: "the Certificate does not exist (manifests/components/cert-manager creates it)"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, certificateStateOf(tc.cert)); diff != "" {
				t.Errorf("state (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestExpiryMetric(t *testing.T) {
	notAfter := time.Unix(1796126400, 0)
	leaf := testpki.NewCA(t, notAfter).Cert(dnsName).Valid(notAfter.Add(-time.Hour), notAfter).Leaf()
	cases := map[string]struct {
		leaf *x509.Certificate
		want string
	}{
		"the served certificate's NotAfter, in Unix seconds": {
			leaf: leaf,
			want: `
# HELP inplace_webhook_certificate_expiry_seconds When the certificate the webhook serves expires (its NotAfter), in Unix seconds; absent while none is served.
# TYPE inplace_webhook_certificate_expiry_seconds gauge
inplace_webhook_certificate_expiry_seconds 1.7961264e+09
`,
		},
		"absent while none is served": {},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := expiryCollector{leaf: func() *x509.Certificate { return tc.leaf }}
			if err := testutil.CollectAndCompare(c, strings.NewReader(tc.want)); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestServedFollowsTheFiles: a pair written over the served one is served
// within the certwatcher's reaction, with no restart, and never half.
func TestServedFollowsTheFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, time.Now())
	first, firstKey := ca.Cert(dnsName).PEM()
	second, secondKey := ca.Cert(dnsName).PEM()

	s := NewServed(dir)
	if _, err := s.GetCertificate(nil); err == nil || !strings.Contains(err.Error(), "no serving certificate in "+dir+" yet") {
		t.Fatalf("GetCertificate with no files = %v, want an error naming the directory", err)
	}
	ctx := t.Context()
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()

	if changed, err := writeFiles(dir, first, firstKey); err != nil || !changed {
		t.Fatalf("writeFiles = %v, %v; want true, nil", changed, err)
	}
	waitServed(t, s, first)
	if changed, err := writeFiles(dir, first, firstKey); err != nil || changed {
		t.Fatalf("writeFiles of the same pair = %v, %v; want false, nil", changed, err)
	}
	if changed, err := writeFiles(dir, second, secondKey); err != nil || !changed {
		t.Fatalf("writeFiles = %v, %v; want true, nil", changed, err)
	}
	waitServed(t, s, second)

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), pairPrefix) {
			names = append(names, pairPrefix+"*")
			continue
		}
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"..data", pairPrefix + "*", "tls.crt", "tls.key"}, names); diff != "" {
		t.Errorf("files left in the directory (-want,+got):\n%s", diff)
	}
	for name, want := range map[string][]byte{"tls.crt": second, "tls.key": secondKey} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s holds another pair (%v)", name, err)
		}
	}
}

func waitServed(t *testing.T, s *Served, certPEM []byte) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := s.GetCertificate(nil)
		if err == nil && c != nil && string(pemOf(c.Certificate[0])) == string(certPEM) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the certificate written was not served within 15 s (last: %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pemOf(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }

func TestPreflight(t *testing.T) {
	// An API server that serves no cert-manager kinds: discovery says 404.
	noCertManager := httptest.NewServer(http.NotFoundHandler())
	defer noCertManager.Close()
	cases := map[string]struct {
		mode    Mode
		wantErr string
	}{
		"cert-manager's Certificate kind not served": {
			mode:    ModeCertManager,
			wantErr: "certificate mode cert-manager needs the kind cert-manager.io/v1 Certificate, which the API server does not serve: is cert-manager installed?",
		},
		"builtin needs nothing but the core kinds": {mode: ModeBuiltin},
		"secret needs nothing":                     {mode: ModeSecret},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := New(newConfig(tc.mode, "/certs").Config)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Preflight(&rest.Config{Host: noCertManager.URL})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Preflight = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Preflight = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
