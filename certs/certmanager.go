package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Reasons of the events on the Certificate.
const (
	ReasonCertificateReady    = "CertificateReady"
	ReasonCertificateNotReady = "CertificateNotReady"
)

// certificateState is whether the Certificate is Ready and, if not, why.
type certificateState struct {
	Ready           bool
	Reason, Message string
}

// certificateStateOf reads the Ready condition of c, nil when there is no
// such Certificate.
func certificateStateOf(c *cmapi.Certificate) certificateState {
	if c == nil {
		return certificateState{Reason: "NotFound", Message: "the Certificate does not exist (manifests/components/cert-manager creates it)"}
	}
	for _, cond := range c.Status.Conditions {
		if cond.Type == cmapi.CertificateConditionReady {
			return certificateState{Ready: cond.Status == cmmeta.ConditionTrue, Reason: cond.Reason, Message: cond.Message}
		}
	}
	return certificateState{Reason: "NoReadyCondition", Message: "cert-manager has not reported on the Certificate yet (is it running?)"}
}

// certificateWatch follows the cert-manager Certificate of the webhook on
// every replica: the replica is not ready while the Certificate is not
// Ready, and each change is logged and told in an event on the Certificate.
type certificateWatch struct {
	key      types.NamespacedName
	cache    cache.Cache
	recorder events.EventRecorder

	mu    sync.Mutex
	known bool
	state certificateState
}

func newCertificateWatch(key types.NamespacedName) *certificateWatch {
	return &certificateWatch{key: key}
}

// byObject narrows the manager's Certificate informer to the one Certificate.
func (w *certificateWatch) byObject() cache.ByObject {
	return cache.ByObject{
		Namespaces: map[string]cache.Config{w.key.Namespace: {}},
		Field:      fields.OneTermEqualSelector("metadata.name", w.key.Name),
	}
}

// certificateKindServed fails unless the API server serves cert-manager's
// Certificate kind: without it, no manager can even be built with the
// Certificate's informer, and its error would not say why.
func certificateKindServed(cfg *rest.Config) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	gv := cmapi.SchemeGroupVersion.String()
	resources, err := dc.ServerResourcesForGroupVersion(gv)
	if err == nil {
		for _, r := range resources.APIResources {
			if r.Kind == cmapi.CertificateKind {
				return nil
			}
		}
		err = errors.New("no such kind")
	}
	return fmt.Errorf("certificate mode %s needs the kind %s %s, which the API server does not serve: is cert-manager installed? (%w)",
		ModeCertManager, gv, cmapi.CertificateKind, err)
}

func (w *certificateWatch) setup(mgr manager.Manager) error {
	w.cache = mgr.GetCache()
	w.recorder = mgr.GetEventRecorder("inplace-manager")
	return mgr.Add(w)
}

// Start implements manager.Runnable: it reads the Certificate once its
// informer has synced, and again on every change, until ctx ends.
func (w *certificateWatch) Start(ctx context.Context) error {
	informer, err := w.cache.GetInformer(ctx, &cmapi.Certificate{})
	if err != nil {
		return fmt.Errorf("informer for the Certificate %s: %w", w.key, err)
	}
	observe := func(any) { w.observe(ctx) }
	if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, obj any) { observe(obj) },
		DeleteFunc: observe,
	}); err != nil {
		return err
	}
	if !w.cache.WaitForCacheSync(ctx) {
		return nil // ctx ended
	}
	w.observe(ctx) // the Certificate may not exist: no event then
	<-ctx.Done()
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica reports its own readiness.
func (w *certificateWatch) NeedLeaderElection() bool { return false }

// observe reads the Certificate and, when its state changed, logs it and
// tells it in an event.
func (w *certificateWatch) observe(ctx context.Context) {
	log := logf.FromContext(ctx).WithName("certs").WithValues("certificate", klog.KRef(w.key.Namespace, w.key.Name))
	cert := &cmapi.Certificate{}
	if err := w.cache.Get(ctx, w.key, cert); apierrors.IsNotFound(err) {
		cert = nil
	} else if err != nil {
		log.Error(err, "Cannot read the webhook's Certificate")
		return
	}
	state := certificateStateOf(cert)
	w.mu.Lock()
	changed := !w.known || w.state != state
	w.known, w.state = true, state
	w.mu.Unlock()
	if !changed {
		return
	}
	if state.Ready {
		log.Info("The webhook's Certificate is Ready")
		if cert != nil {
			w.recorder.Eventf(cert, nil, corev1.EventTypeNormal, ReasonCertificateReady, "ServeWebhook",
				"inplace-manager serves the webhook with this Certificate and reports ready")
		}
		return
	}
	log.Info("The webhook's Certificate is not Ready: the manager reports not ready until it is",
		"reason", state.Reason, "message", state.Message)
	if cert != nil {
		w.recorder.Eventf(cert, nil, corev1.EventTypeWarning, ReasonCertificateNotReady, "WaitForCertificate",
			"inplace-manager reports not ready until this Certificate is Ready (%s: %s)", state.Reason, state.Message)
	}
}

// ready holds while the Certificate is Ready.
func (w *certificateWatch) ready(*x509.Certificate, time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !w.known:
		return fmt.Errorf("the Certificate %s has not been read yet", w.key)
	case !w.state.Ready:
		return fmt.Errorf("the Certificate %s is not Ready (%s: %s)", w.key, w.state.Reason, w.state.Message)
	}
	return nil
}
