package app

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/inplace-dev/inplace/certs"
	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
	inplacewebhook "github.com/inplace-dev/inplace/webhook"
)

// Options are the manager's flags.
type Options struct {
	// Policy chooses which namespaces are managed (--policy).
	Policy inplace.Policy
	// ExcludeNamespaces are never managed, on top of inplace.AlwaysExcluded
	// and Namespace (--exclude-namespaces).
	ExcludeNamespaces []string
	// Namespace is the manager's own namespace (--namespace, or the
	// POD_NAMESPACE environment variable): excluded, and home of the leader
	// election lease.
	Namespace string

	// MemoryLimit is the container's memory limit in bytes, 0 for none
	// (--memory-limit, or $MEMORY_LIMIT): the Go runtime's soft limit is
	// set below it (GoMemoryLimit).
	MemoryLimit int64

	// WorkloadControllers are the users whose pod deletes may be refused
	// when the manager updates the pod in place instead
	// (--workload-controller-users).
	WorkloadControllers []string

	// CertMode says where the webhook's serving certificate comes from
	// (--cert-mode). The zero value is certs.ModeSecret, a certificate
	// provided by someone else: a manager built in code writes no Secret
	// and no webhook configuration unless asked. The flag's default is
	// certs.ModeBuiltin.
	CertMode certs.Mode
	// CertRotation tunes the built-in certificate's lifetime
	// (--cert-validity, --cert-renew-before, --cert-check-interval); its
	// zero value is the defaults.
	CertRotation certs.Rotation
	// certRotationFlags are the rotation flags given, refused with another
	// --cert-mode than builtin.
	certRotationFlags []string

	CertDir        string
	WebhookHost    string
	WebhookPort    int
	MetricsAddress string
	// MetricsSecure serves the metrics over HTTPS, to callers whose token
	// the API server authenticates and authorises for GET /metrics.
	MetricsSecure          bool
	HealthAddress          string
	LeaderElect            bool
	GracefulShutdownPeriod time.Duration
	// UpdateDeadline bounds one pod's in-place update, from its image
	// patch to its new containers Ready (--update-deadline).
	UpdateDeadline time.Duration
	// Prepull has nodes pull a rollout's new images before its pods there
	// restart for them, for workloads without inplace.dev/prepull
	// (--prepull).
	Prepull bool
	// PrepullParallelism bounds how many nodes pull one workload's images
	// at once (--prepull-parallelism).
	PrepullParallelism int
}

// serviceAccountNamespaceFile is where a pod finds its own namespace.
const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Bind registers the flags on fs, with their defaults.
func (o *Options) Bind(fs *flag.FlagSet) {
	o.Policy = inplace.PolicyNamespace
	fs.Func("policy", fmt.Sprintf("which namespaces are managed: %q (those labelled %s=true) or %q (all but the excluded and those labelled false)",
		inplace.PolicyNamespace, inplace.LabelEnabled, inplace.PolicyCluster), func(s string) error {
		p, err := inplace.ParsePolicy(s)
		o.Policy = p
		return err
	})
	fs.Func("exclude-namespaces", "comma-separated namespaces never managed, on top of "+strings.Join(inplace.AlwaysExcluded, ", ")+" and the manager's own",
		func(s string) error {
			names, err := parseNamespaces(s)
			o.ExcludeNamespaces = append(o.ExcludeNamespaces, names...)
			return err
		})
	o.WorkloadControllers = inplacewebhook.DefaultWorkloadControllerUsers
	fs.Func("workload-controller-users", "comma-separated users the ReplicaSet, StatefulSet and DaemonSet controllers create and delete pods as (default "+
		strings.Join(inplacewebhook.DefaultWorkloadControllerUsers, ",")+"); the pod-delete webhook's matchConditions must name the same",
		func(s string) error {
			var users []string
			for _, u := range strings.Split(s, ",") {
				if u = strings.TrimSpace(u); u != "" {
					users = append(users, u)
				}
			}
			if len(users) == 0 {
				return errors.New("want at least one user name")
			}
			o.WorkloadControllers = users
			return nil
		})
	fs.Func("memory-limit", "the container's memory limit, a quantity (default: $MEMORY_LIMIT, which the manifests set from the pod's limits.memory); the Go runtime collects harder from 80% of it, unless $GOMEMLIMIT is set", func(s string) error {
		n, err := parseMemoryLimit(s)
		o.MemoryLimit = n
		return err
	})
	fs.StringVar(&o.Namespace, "namespace", "", "the manager's own namespace (default: $POD_NAMESPACE, or the service account's namespace)")
	o.CertMode = certs.ModeBuiltin
	fs.Func("cert-mode", fmt.Sprintf("where the webhook's serving certificate comes from: %q (default: the manager makes a CA and a certificate in the Secret %s, renews them and injects the CA into its webhook configurations), %q (cert-manager's Certificate %s, mounted at --cert-dir) or %q (a Secret you provide, mounted at --cert-dir)",
		certs.ModeBuiltin, webhookCertName, certs.ModeCertManager, webhookCertName, certs.ModeSecret), func(s string) error {
		m, err := certs.ParseMode(s)
		o.CertMode = m
		return err
	})
	o.bindRotation(fs)
	fs.StringVar(&o.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory of the webhook's tls.crt and tls.key, reloaded when they change: the manager writes them there with --cert-mode=builtin (it must be writable)")
	fs.StringVar(&o.WebhookHost, "webhook-host", "", "address the webhook server listens on (default: all)")
	fs.IntVar(&o.WebhookPort, "webhook-port", 9443, "port the webhook server listens on")
	fs.StringVar(&o.MetricsAddress, "metrics-bind-address", ":8443", `address of the Prometheus metrics endpoint; "0" disables it`)
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", true, "serve the metrics over HTTPS, only to callers the API server authenticates (TokenReview) and authorises to GET /metrics (SubjectAccessReview); false serves plain HTTP to anyone")
	fs.StringVar(&o.HealthAddress, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz probes")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "elect a leader among replicas for the controllers (the webhook is served by every replica)")
	fs.DurationVar(&o.GracefulShutdownPeriod, "graceful-shutdown-timeout", 30*time.Second, "how long to wait for in-flight work on shutdown")
	fs.DurationVar(&o.UpdateDeadline, "update-deadline", rollout.DefaultUpdateDeadline, "how long a pod's in-place update may take from its image patch to its new containers Ready (a pull, a start, the readiness probe) before it is reported failed and its rollout halts")
	fs.BoolVar(&o.Prepull, "prepull", true, "have each node pull a rollout's new images (with a short-lived pod that runs nothing) before its pods there restart for them, and halt the rollout before any pod is taken down when a node cannot pull them; a workload's annotation "+inplace.AnnotationPrepull+" (\"true\" or \"false\") overrides it")
	fs.IntVar(&o.PrepullParallelism, "prepull-parallelism", rollout.DefaultPrepullParallelism, "how many nodes pull one workload's new images at once")
}

// Complete fills in what the flags left to the environment, and checks the
// result. Its errors name the flag.
func (o *Options) Complete() error {
	if o.Namespace == "" {
		o.Namespace = os.Getenv("POD_NAMESPACE")
	}
	if o.Namespace == "" {
		if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil {
			o.Namespace = strings.TrimSpace(string(b))
		}
	}
	var errs []error
	if v := os.Getenv("MEMORY_LIMIT"); o.MemoryLimit == 0 && v != "" {
		n, err := parseMemoryLimit(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("--memory-limit: $MEMORY_LIMIT: %w", err))
		}
		o.MemoryLimit = n
	}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace: required outside a pod: the manager's own namespace is always excluded, and holds its leader election lease"))
	} else if msgs := validateNamespaceName(o.Namespace); msgs != "" {
		errs = append(errs, fmt.Errorf("--namespace: %q %s", o.Namespace, msgs))
	}
	if o.WebhookPort < 1 || o.WebhookPort > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port: %d is not a port number (1-65535)", o.WebhookPort))
	}
	if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir: required"))
	}
	errs = append(errs, o.completeRotation()...)
	if min := rollout.ObserveDeadline; o.UpdateDeadline <= min {
		errs = append(errs, fmt.Errorf("--update-deadline: %v is not longer than the %v the kubelet is given to take an image patch in", o.UpdateDeadline, min))
	}
	if o.PrepullParallelism < 1 {
		errs = append(errs, fmt.Errorf("--prepull-parallelism: %d is not a positive number of nodes", o.PrepullParallelism))
	}
	if o.GracefulShutdownPeriod < 0 {
		errs = append(errs, fmt.Errorf("--graceful-shutdown-timeout: %v is negative", o.GracefulShutdownPeriod))
	}
	return errors.Join(errs...)
}

// The built-in certificate's lifetime, as cert-controller's defaults: a
// serving certificate valid a year, renewed 90 days before it expires,
// checked every 12 hours and whenever the Secret changes.
const (
	defaultCertValidity      = 365 * 24 * time.Hour
	defaultCertRenewBefore   = 90 * 24 * time.Hour
	defaultCertCheckInterval = 12 * time.Hour
)

// bindRotation registers the flags of the built-in certificate's lifetime.
func (o *Options) bindRotation(fs *flag.FlagSet) {
	o.CertRotation.Validity = defaultCertValidity
	o.CertRotation.RenewBefore = defaultCertRenewBefore
	o.CertRotation.CheckInterval = defaultCertCheckInterval
	for _, f := range []struct {
		name, usage string
		to          *time.Duration
	}{
		{"cert-validity", "--cert-mode=builtin: how long a serving certificate is valid (the CA: 10 years)", &o.CertRotation.Validity},
		{"cert-renew-before", "--cert-mode=builtin: how long before it expires a certificate is renewed (the CA too); shorter than --cert-validity", &o.CertRotation.RenewBefore},
		{"cert-check-interval", "--cert-mode=builtin: how often the expiry is checked (and whenever the Secret changes); shorter than --cert-renew-before", &o.CertRotation.CheckInterval},
	} {
		fs.Func(f.name, fmt.Sprintf("%s (default %v)", f.usage, *f.to), func(s string) error {
			d, err := time.ParseDuration(s)
			if err != nil {
				return err
			}
			if d <= 0 {
				return fmt.Errorf("%v is not a positive duration", d)
			}
			*f.to = d
			o.certRotationFlags = append(o.certRotationFlags, "--"+f.name)
			return nil
		})
	}
}

// completeRotation checks the built-in certificate's lifetime: a renewal
// that is always due, or a check interval the renewal window can fall
// between, are refused.
func (o *Options) completeRotation() []error {
	if len(o.certRotationFlags) > 0 && o.CertMode != certs.ModeBuiltin {
		return []error{fmt.Errorf("%s: only with --cert-mode=%s (with %q the certificate's lifetime is set where it is issued)",
			strings.Join(o.certRotationFlags, ", "), certs.ModeBuiltin, o.CertMode)}
	}
	r := o.CertRotation
	var errs []error
	if r.RenewBefore >= r.Validity {
		errs = append(errs, fmt.Errorf("--cert-renew-before: %v is not shorter than --cert-validity %v: the certificate would be renewed on every check", r.RenewBefore, r.Validity))
	}
	if r.CheckInterval >= r.RenewBefore {
		errs = append(errs, fmt.Errorf("--cert-check-interval: %v is not shorter than --cert-renew-before %v: the certificate could expire between two checks", r.CheckInterval, r.RenewBefore))
	}
	return errs
}

// Certs returns where the webhook's certificate comes from.
func (o *Options) Certs() certs.Config {
	mode := o.CertMode
	if mode == "" {
		mode = certs.ModeSecret
	}
	return certs.Config{
		Mode:              mode,
		Namespace:         o.Namespace,
		CertDir:           o.CertDir,
		ServiceName:       webhookServiceName,
		SecretName:        webhookCertName,
		CertificateName:   webhookCertName,
		MutatingWebhook:   mutatingWebhookName,
		ValidatingWebhook: validatingWebhookName,
		Rotation:          o.CertRotation,
	}
}

// Scope returns the namespaces the manager manages.
func (o *Options) Scope() inplace.Scope {
	return inplace.NewScope(o.Policy, o.Namespace, o.ExcludeNamespaces...)
}

func parseNamespaces(s string) ([]string, error) {
	var names []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if msgs := validateNamespaceName(n); msgs != "" {
			return nil, fmt.Errorf("%q %s", n, msgs)
		}
		names = append(names, n)
	}
	return names, nil
}

// parseMemoryLimit reads a memory limit: a quantity of bytes ("256Mi", or
// the plain number a resourceFieldRef gives).
func parseMemoryLimit(s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a quantity of bytes: %w", s, err)
	}
	n, ok := q.AsInt64()
	if !ok || n < 0 {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	return n, nil
}

// GoMemoryLimit is the Go runtime's soft memory limit for a container
// limited to limit bytes: 80% of it. The runtime counts its heap, stacks
// and metadata; the container's usage also counts the binary's pages and
// what the kernel keeps for the process, tens of MiB, so a soft limit at
// the container's own would let a cold start's peak reach it and be
// killed. 0 when there is no limit.
func GoMemoryLimit(limit int64) int64 {
	return limit / 5 * 4
}
