package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Names of the files in the certificate directory, as Secrets of type
// kubernetes.io/tls name their keys.
const (
	certFile = "tls.crt"
	keyFile  = "tls.key"
	caFile   = "ca.crt"
)

// servedPollInterval is how often Served looks for a certificate while it
// has none.
const servedPollInterval = time.Second

// Served is the certificate the webhook server serves: the tls.crt and
// tls.key of a directory, loaded once both are there and reloaded whenever
// they change (controller-runtime's certwatcher: file events, and a poll
// every 10 s). Until there is one, handshakes fail and Check says why.
type Served struct {
	dir     string
	loading sync.Mutex
	watcher atomic.Pointer[certwatcher.CertWatcher]
}

// NewServed returns the certificate of dir, not yet loaded.
func NewServed(dir string) *Served { return &Served{dir: dir} }

// tryLoad loads the certificate if it is not loaded yet, and says whether
// it is.
func (s *Served) tryLoad() bool {
	s.loading.Lock()
	defer s.loading.Unlock()
	if s.watcher.Load() != nil {
		return true
	}
	w, err := certwatcher.New(filepath.Join(s.dir, certFile), filepath.Join(s.dir, keyFile))
	if err != nil {
		return false // not there yet, or half written: the next try will see
	}
	w.RegisterCallback(s.loaded)
	s.watcher.Store(w)
	return true
}

// loaded logs each certificate as it begins to be served.
func (s *Served) loaded(c tls.Certificate) {
	leaf := leafOf(&c)
	if leaf == nil {
		return
	}
	logf.Log.WithName("certs").Info("Serving the webhook certificate", "dir", s.dir,
		"dnsNames", leaf.DNSNames, "notAfter", leaf.NotAfter.UTC(), "issuer", leaf.Issuer.String())
}

// Start implements manager.Runnable: it waits for a certificate, then
// watches its files until ctx ends.
func (s *Served) Start(ctx context.Context) error {
	if !s.tryLoad() {
		logf.FromContext(ctx).WithName("certs").Info("Waiting for the webhook's serving certificate: the webhook refuses TLS handshakes and the manager is not ready until it comes",
			"dir", s.dir)
		err := wait.PollUntilContextCancel(ctx, servedPollInterval, false, func(context.Context) (bool, error) {
			return s.tryLoad(), nil
		})
		if err != nil {
			return nil // ctx ended
		}
	}
	return s.watcher.Load().Start(ctx)
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica serves the webhook.
func (s *Served) NeedLeaderElection() bool { return false }

// GetCertificate is the webhook server's tls.Config.GetCertificate.
func (s *Served) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	w := s.watcher.Load()
	if w == nil {
		return nil, fmt.Errorf("no serving certificate in %s yet", s.dir)
	}
	return w.GetCertificate(hello)
}

// leaf returns the certificate served now, or nil.
func (s *Served) leaf() *x509.Certificate {
	w := s.watcher.Load()
	if w == nil {
		return nil
	}
	c, _ := w.GetCertificate(nil)
	return leafOf(c)
}

func leafOf(c *tls.Certificate) *x509.Certificate {
	if c == nil || len(c.Certificate) == 0 {
		return nil
	}
	if c.Leaf != nil {
		return c.Leaf
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}
