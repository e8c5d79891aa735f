package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
)

// Mode says where the webhook's serving certificate comes from.
type Mode string

const (
	// ModeBuiltin: the manager makes a CA and a serving certificate, keeps
	// them in the Secret, renews them and injects the CA (the flag's default).
	ModeBuiltin Mode = "builtin"
	// ModeCertManager: cert-manager issues the certificate into the Secret,
	// and its CA injector fills in the webhook configurations.
	ModeCertManager Mode = "cert-manager"
	// ModeSecret: the Secret and the caBundles are provided by someone else.
	ModeSecret Mode = "secret"
)

// Modes are the valid modes, in the order help texts list them.
var Modes = []Mode{ModeBuiltin, ModeCertManager, ModeSecret}

// ParseMode returns the mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown certificate mode %q: want one of %q, %q, %q", s, ModeBuiltin, ModeCertManager, ModeSecret)
}

// Rotation tunes the built-in certificate's lifetime. Its zero value is
// cert-controller's defaults: a CA valid 10 years and a serving certificate
// valid 1 year, both renewed 90 days before they expire, checked every 12
// hours (and whenever the Secret changes). inplace-manager's --cert-validity,
// --cert-renew-before and --cert-check-interval set it.
type Rotation struct {
	// Validity is how long a serving certificate is valid.
	Validity time.Duration
	// RenewBefore is how long before its expiry a certificate (the CA's
	// too) is renewed; less than Validity.
	RenewBefore time.Duration
	// CheckInterval is how often the expiry is checked.
	CheckInterval time.Duration
	// ExtraDNSNames are names the serving certificate holds beside the
	// Service's (a test's API server reaches the webhook at localhost).
	ExtraDNSNames []string
}

// Config says where the certificate comes from and what it is for.
type Config struct {
	// Mode chooses the source.
	Mode Mode
	// Namespace is the manager's own: home of the Secret, the Certificate
	// and the Service.
	Namespace string
	// CertDir holds tls.crt and tls.key, as the webhook server serves them.
	CertDir string
	// ServiceName is the webhook's Service: the certificate is for
	// ServiceName.Namespace.svc.
	ServiceName string
	// SecretName names the Secret that holds the certificate (every mode)
	// and, in ModeBuiltin, its CA.
	SecretName string
	// CertificateName names the cert-manager Certificate (ModeCertManager).
	CertificateName string
	// MutatingWebhook and ValidatingWebhook name the webhook configurations
	// whose caBundles ModeBuiltin fills in.
	MutatingWebhook, ValidatingWebhook string
	// Rotation tunes ModeBuiltin; its zero value is the defaults.
	Rotation Rotation
}

// DNSName is the name the serving certificate must be valid for.
func (c Config) DNSName() string { return c.ServiceName + "." + c.Namespace + ".svc" }

func (c Config) validate() error {
	var errs []error
	if _, err := ParseMode(string(c.Mode)); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []struct{ what, value string }{
		{"namespace", c.Namespace}, {"certificate directory", c.CertDir}, {"service name", c.ServiceName}, {"secret name", c.SecretName},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("no %s", f.what))
		}
	}
	switch c.Mode {
	case ModeBuiltin:
		if c.MutatingWebhook == "" || c.ValidatingWebhook == "" {
			errs = append(errs, errors.New("no webhook configuration names for the CA"))
		}
		r := c.Rotation
		if r.Validity < 0 || r.RenewBefore < 0 || r.CheckInterval < 0 {
			errs = append(errs, errors.New("negative rotation durations"))
		}
		if validity, renew := orDefault(r.Validity, defaultValidity), orDefault(r.RenewBefore, defaultRenewBefore); renew >= validity {
			errs = append(errs, fmt.Errorf("renewing %v before expiry a certificate valid %v would renew it forever", renew, validity))
		}
	case ModeCertManager:
		if c.CertificateName == "" {
			errs = append(errs, errors.New("no Certificate name"))
		}
	}
	return errors.Join(errs...)
}

// Source is the webhook's serving certificate: where it comes from, what is
// served, and whether that is ready.
type Source struct {
	cfg    Config
	clock  clock.PassiveClock
	served *Served
	// ready is the mode's own condition on top of a valid served
	// certificate: the CA injected (builtin), the Certificate Ready
	// (cert-manager). Nil in ModeSecret.
	ready func(leaf *x509.Certificate, now time.Time) error

	builtin     *builtin
	certificate *certificateWatch
}

// New returns the source cfg describes, not yet running.
func New(cfg Config) (*Source, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	s := &Source{cfg: cfg, clock: clock.RealClock{}, served: NewServed(cfg.CertDir)}
	key := types.NamespacedName{Namespace: cfg.Namespace, Name: cfg.SecretName}
	switch cfg.Mode {
	case ModeBuiltin:
		s.builtin = newBuiltin(cfg, key)
		s.ready = s.builtin.ready
	case ModeCertManager:
		s.certificate = newCertificateWatch(types.NamespacedName{Namespace: cfg.Namespace, Name: cfg.CertificateName})
		s.ready = s.certificate.ready
	}
	return s, nil
}

// Preflight checks, before a manager is built on cfg, that the API server
// serves what the mode reads: cert-manager's Certificate in ModeCertManager.
func (s *Source) Preflight(cfg *rest.Config) error {
	if s.cfg.Mode == ModeCertManager {
		return certificateKindServed(cfg)
	}
	return nil
}

// TLSOpt makes the webhook server serve the certificate of the certificate
// directory as Served loads it (webhook.Options.TLSOpts). The server then
// starts without one, and fails handshakes until there is one.
func (s *Source) TLSOpt(c *tls.Config) { c.GetCertificate = s.served.GetCertificate }

// AddToScheme registers the kinds the mode reads: cert-manager's in
// ModeCertManager.
func (s *Source) AddToScheme(scheme *runtime.Scheme) error {
	if s.cfg.Mode == ModeCertManager {
		return cmapi.AddToScheme(scheme)
	}
	return nil
}

// CacheByObject narrows the manager's cache to the one Secret or
// Certificate the mode reads: the manager may read no other.
func (s *Source) CacheByObject() map[client.Object]cache.ByObject {
	switch s.cfg.Mode {
	case ModeBuiltin:
		return map[client.Object]cache.ByObject{&corev1.Secret{}: s.builtin.byObject()}
	case ModeCertManager:
		return map[client.Object]cache.ByObject{&cmapi.Certificate{}: s.certificate.byObject()}
	}
	return nil
}

// SetupWithManager adds to mgr what keeps the certificate and watches it,
// and the readiness check "certificate". In ModeBuiltin it creates the
// Secret if it is missing, which needs the API server: ctx bounds that.
func (s *Source) SetupWithManager(ctx context.Context, mgr manager.Manager) error {
	// A certificate already there (ModeSecret, a restart) is served from
	// the first handshake on; otherwise Served waits for one.
	s.served.tryLoad()
	if err := mgr.Add(s.served); err != nil {
		return err
	}
	current.Store(s.served)
	switch s.cfg.Mode {
	case ModeBuiltin:
		if err := s.builtin.setup(ctx, mgr); err != nil {
			return err
		}
	case ModeCertManager:
		if err := s.certificate.setup(mgr); err != nil {
			return err
		}
	}
	return mgr.AddReadyzCheck("certificate", s.Check)
}

// Check is the readiness check "certificate": a certificate is served,
// valid now and for the Service's DNS name, and the mode's own condition
// holds. It implements healthz.Checker.
func (s *Source) Check(*http.Request) error {
	leaf, now := s.served.leaf(), s.clock.Now()
	if err := checkServed(leaf, s.cfg.DNSName(), now); err != nil {
		return err
	}
	if s.ready != nil {
		return s.ready(leaf, now)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
