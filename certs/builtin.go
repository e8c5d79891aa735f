package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// The built-in CA and certificate: cert-controller's defaults for the
// lifetimes (Rotation's zero value), our names for the rest.
const (
	defaultValidity    = 365 * 24 * time.Hour
	defaultRenewBefore = 90 * 24 * time.Hour
	caCommonName       = "inplace-webhook-ca"
	caOrganization     = "inplace"
	// fieldOwner is the field manager of the caBundles written.
	fieldOwner = "inplace-manager"
)

// builtin runs cert-controller's rotator on every replica, against the one
// Secret (ca.crt, ca.key, tls.crt, tls.key), and writes the Secret's
// certificate into the certificate directory (secretFiles), where the
// webhook server serves it without a restart. Every write, to the Secret and
// to the caBundles of both webhook configurations, is conditional on what was
// read, so replicas agree without an election. Why the manager writes the
// files and needs no election: docs/design/2026-11-30-built-in-certificate.md.
type builtin struct {
	cfg Config
	key types.NamespacedName
	// injected is closed by cert-controller once it has written the CA into
	// the webhook configurations.
	injected chan struct{}
	// ca is the Secret's CA, as last written with the certificate.
	ca atomic.Pointer[x509.CertPool]
}

func newBuiltin(cfg Config, key types.NamespacedName) *builtin {
	return &builtin{cfg: cfg, key: key, injected: make(chan struct{})}
}

// byObject narrows the manager's Secret informer to the one Secret.
func (b *builtin) byObject() cache.ByObject {
	return cache.ByObject{
		Namespaces: map[string]cache.Config{b.key.Namespace: {}},
		Field:      fields.OneTermEqualSelector("metadata.name", b.key.Name),
	}
}

func (b *builtin) setup(ctx context.Context, mgr manager.Manager) error {
	// cert-controller updates the Secret and never creates it; its first
	// check gives up within seconds if there is none.
	if err := ensureSecret(ctx, mgr.GetAPIReader(), mgr.GetClient(), b.key); err != nil {
		return err
	}
	r := b.cfg.Rotation
	if err := retireLongerCertificate(ctx, mgr.GetAPIReader(), mgr.GetClient(), b.key, orDefault(r.Validity, defaultValidity), time.Now()); err != nil {
		return err
	}
	if err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      b.key,
		CertDir:        b.cfg.CertDir,
		CAName:         caCommonName,
		CAOrganization: caOrganization,
		DNSName:        b.cfg.DNSName(),
		ExtraDNSNames:  r.ExtraDNSNames,
		IsReady:        b.injected,
		Webhooks: []rotator.WebhookInfo{
			{Name: b.cfg.MutatingWebhook, Type: rotator.Mutating},
			{Name: b.cfg.ValidatingWebhook, Type: rotator.Validating},
		},
		FieldOwner:             fieldOwner,
		RequireLeaderElection:  false, // every replica: see builtin
		ServerCertDuration:     r.Validity,
		LookaheadInterval:      r.RenewBefore,
		RotationCheckFrequency: r.CheckInterval,
	}); err != nil {
		return fmt.Errorf("setting up the certificate rotator: %w", err)
	}
	files := &secretFiles{reader: mgr.GetCache(), writer: mgr.GetClient(), key: b.key, dir: b.cfg.CertDir, ca: &b.ca}
	return ctrl.NewControllerManagedBy(mgr).
		Named("webhook-certificate-files").
		For(&corev1.Secret{}).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		Complete(files)
}

// ready holds once the CA is in the webhook configurations and the served
// certificate chains to the Secret's CA: an API server given that CA trusts
// it. A new serving certificate keeps the CA, so this holds through a
// renewal; a new CA fails it until both have been taken in.
func (b *builtin) ready(leaf *x509.Certificate, now time.Time) error {
	select {
	case <-b.injected:
	default:
		return fmt.Errorf("the CA is not in the webhook configurations %s and %s yet", b.cfg.MutatingWebhook, b.cfg.ValidatingWebhook)
	}
	pool := b.ca.Load()
	if pool == nil {
		return fmt.Errorf("the Secret %s has not been read yet", b.key)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("the served certificate does not chain to the CA in the Secret %s: %w", b.key, err)
	}
	return nil
}

// ensureSecret creates the Secret, empty, if it does not exist. Replicas
// may race: whichever creates it, it is the one.
func ensureSecret(ctx context.Context, reader client.Reader, writer client.Writer, key types.NamespacedName) error {
	err := reader.Get(ctx, key, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		if err != nil {
			return fmt.Errorf("reading the Secret %s: %w", key, err)
		}
		return nil
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{
			"app.kubernetes.io/part-of":    "inplace",
			"app.kubernetes.io/managed-by": "inplace-manager",
		}},
		// Opaque, as cert-controller's own users ship it: a
		// kubernetes.io/tls Secret cannot be empty without the API server
		// warning that its tls.crt is no certificate.
		Type: corev1.SecretTypeOpaque,
	}
	err = writer.Create(ctx, secret)
	if apierrors.IsAlreadyExists(err) {
		return nil // another replica's
	}
	if err != nil {
		return fmt.Errorf("creating the Secret %s for the webhook certificate: %w", key, err)
	}
	logf.FromContext(ctx).WithName("certs").Info("Created the Secret for the webhook certificate", "secret", klog.KRef(key.Namespace, key.Name))
	return nil
}

// validityTolerance is how much longer than the configured validity a
// certificate may still run before it counts as issued for a longer one:
// clocks of replicas on different nodes differ a little.
const validityTolerance = 5 * time.Minute

// retireLongerCertificate removes the serving certificate and key from the
// Secret when the certificate runs longer than validity from now: it was
// issued for a longer lifetime (before --cert-validity was lowered), and
// cert-controller, which renews only what expires within RenewBefore, would
// otherwise keep it until then. Without it, cert-controller issues a new
// one with the lifetime configured; the files served stay as they are until
// then (secretFiles skips a Secret without a certificate). The CA is kept.
// A conflict means another replica changed the Secret first: nothing to do.
func retireLongerCertificate(ctx context.Context, reader client.Reader, writer client.Writer, key types.NamespacedName, validity time.Duration, now time.Time) error {
	secret := &corev1.Secret{}
	if err := reader.Get(ctx, key, secret); err != nil {
		return fmt.Errorf("reading the Secret %s: %w", key, err)
	}
	block, _ := pem.Decode(secret.Data[corev1.TLSCertKey])
	if block == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.NotAfter.After(now.Add(validity+validityTolerance)) {
		return nil // cert-controller replaces what does not parse
	}
	delete(secret.Data, corev1.TLSCertKey)
	delete(secret.Data, corev1.TLSPrivateKeyKey)
	err = writer.Update(ctx, secret)
	if apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("removing from the Secret %s a certificate valid longer than %v: %w", key, validity, err)
	}
	logf.FromContext(ctx).WithName("certs").Info("Renewing the webhook certificate: it is valid longer than the configured validity",
		"secret", klog.KRef(key.Namespace, key.Name), "notAfter", cert.NotAfter, "validity", validity)
	return nil
}

// secretFiles writes the Secret's certificate and key into the certificate
// directory whenever they change, and keeps the Secret's CA for the
// readiness check. A deleted Secret is created again, empty: cert-controller
// then makes a new CA and certificate and injects the CA.
type secretFiles struct {
	reader client.Reader
	writer client.Writer
	key    types.NamespacedName
	dir    string
	ca     *atomic.Pointer[x509.CertPool]
}

// Reconcile implements reconcile.Reconciler.
func (f *secretFiles) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if req.NamespacedName != f.key {
		return reconcile.Result{}, nil
	}
	secret := &corev1.Secret{}
	if err := f.reader.Get(ctx, f.key, secret); apierrors.IsNotFound(err) {
		return reconcile.Result{}, ensureSecret(ctx, f.reader, f.writer, f.key)
	} else if err != nil {
		return reconcile.Result{}, err
	}
	cert, key := secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]
	if len(cert) == 0 || len(key) == 0 {
		return reconcile.Result{}, nil // cert-controller has not filled it in yet
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		// cert-controller replaces what does not verify; nothing to serve.
		logf.FromContext(ctx).Info("The Secret holds no usable certificate yet", "secret", klog.KObj(secret), "reason", err.Error())
		return reconcile.Result{}, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(secret.Data[caFile]) {
		return reconcile.Result{}, errors.New("the Secret's ca.crt holds no certificate")
	}
	changed, err := writeFiles(f.dir, cert, key)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("writing the webhook certificate into %s (with --cert-mode=builtin the directory must be writable, an emptyDir, not the Secret's volume): %w", f.dir, err)
	}
	f.ca.Store(pool)
	if changed {
		logf.FromContext(ctx).Info("Wrote the webhook certificate from its Secret", "secret", klog.KObj(secret), "dir", f.dir)
	}
	return reconcile.Result{}, nil
}
