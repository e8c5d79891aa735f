package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// checkServed says why leaf, the certificate served at now, cannot be
// trusted by an API server that calls the webhook at dnsName; nil if it
// can, as far as the certificate itself goes.
func checkServed(leaf *x509.Certificate, dnsName string, now time.Time) error {
	switch {
	case leaf == nil:
		return errors.New("no serving certificate loaded yet")
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("the serving certificate is not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return fmt.Errorf("the serving certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := leaf.VerifyHostname(dnsName); err != nil {
		return fmt.Errorf("the serving certificate is not for %s: %w", dnsName, err)
	}
	return nil
}

// expiryDesc describes inplace_webhook_certificate_expiry_seconds.
var expiryDesc = prometheus.NewDesc("inplace_webhook_certificate_expiry_seconds",
	"When the certificate the webhook serves expires (its NotAfter), in Unix seconds; absent while none is served.", nil, nil)

// expiryCollector reports the NotAfter of the certificate leaf returns, read
// at each scrape: always the one served, however it changed.
type expiryCollector struct {
	leaf func() *x509.Certificate
}

// Describe implements prometheus.Collector.
func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

// Collect implements prometheus.Collector.
func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	if leaf := c.leaf(); leaf != nil {
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()))
	}
}

// current is the certificate of the process's webhook server, for the
// metric: a process runs one (SetupWithManager sets it).
var current atomic.Pointer[Served]

func init() {
	metrics.Registry.MustRegister(expiryCollector{leaf: func() *x509.Certificate {
		if s := current.Load(); s != nil {
			return s.leaf()
		}
		return nil
	}})
}
