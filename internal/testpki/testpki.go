// Package testpki makes CAs and serving certificates for tests:
// testpki.NewCA(t, now).Cert("svc.ns.svc").Valid(from, to).PEM().
//
// Every certificate is valid around a time the test gives, never around the
// real clock on its own: a test that verifies at an injected clock makes its
// CA at that clock, and one that talks to a real server passes time.Now().
//
// It is for tests only; the product never imports it.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// CA is a self-signed certificate authority.
type CA struct {
	t testing.TB
	// now is the time the CA and its certificates are valid around.
	now time.Time
	// Root is the CA's own certificate.
	Root *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA's certificate, as a caBundle holds it.
	PEM []byte
}

// NewCA returns a CA valid from a day before now to a year after it.
func NewCA(t testing.TB, now time.Time) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{t: t, now: now, Root: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool returns a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// Certificate is a serving certificate being built.
type Certificate struct {
	ca   *CA
	tmpl x509.Certificate
}

// Cert starts a serving certificate for dnsNames, valid from an hour before
// the CA's now for a day.
func (ca *CA) Cert(dnsNames ...string) *Certificate {
	return &Certificate{ca: ca, tmpl: x509.Certificate{
		SerialNumber: serial(ca.t),
		Subject:      pkix.Name{CommonName: first(dnsNames)},
		DNSNames:     dnsNames,
		NotBefore:    ca.now.Add(-time.Hour),
		NotAfter:     ca.now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}}
}

// Valid sets the validity period.
func (c *Certificate) Valid(notBefore, notAfter time.Time) *Certificate {
	c.tmpl.NotBefore, c.tmpl.NotAfter = notBefore, notAfter
	return c
}

// PEM signs the certificate and returns it and its key, PEM-encoded as
// tls.crt and tls.key hold them.
func (c *Certificate) PEM() (cert, key []byte) {
	t := c.ca.t
	t.Helper()
	k := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, &c.tmpl, c.ca.Root, &k.PublicKey, c.ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// Leaf signs the certificate and returns it parsed.
func (c *Certificate) Leaf() *x509.Certificate {
	t := c.ca.t
	t.Helper()
	cert, _ := c.PEM()
	b, _ := pem.Decode(cert)
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func first(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return names[0]
}
