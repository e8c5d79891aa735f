package certs

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/inplace-dev/inplace/internal/testclock"
	"github.com/inplace-dev/inplace/internal/testpki"
)

// A certificate issued for a longer lifetime than --cert-validity now says
// is taken out of the Secret (the CA stays), so that cert-controller issues
// one with the configured lifetime; one within it, or none, is left alone.
func TestRetireLongerCertificate(t *testing.T) { testclock.Run(t, testRetireLongerCertificate) }

func testRetireLongerCertificate(t *testing.T, now time.Time) {
	ca := testpki.NewCA(t, now)
	key := types.NamespacedName{Namespace: "inplace-system", Name: "inplace-webhook-cert"}
	const validity = 10 * time.Minute
	for name, tc := range map[string]struct {
		notAfter   time.Time // zero: no certificate in the Secret
		wantRetire bool
	}{
		"issued for a year, now valid 10 minutes":  {notAfter: now.Add(365 * 24 * time.Hour), wantRetire: true},
		"just issued for 10 minutes":               {notAfter: now.Add(validity)},
		"issued by a replica whose clock is ahead": {notAfter: now.Add(validity + 2*time.Minute)},
		"about to be renewed":                      {notAfter: now.Add(time.Minute)},
		"no certificate yet":                       {},
	} {
		t.Run(name, func(t *testing.T) {
			secret := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
				Data:       map[string][]byte{"ca.crt": []byte("the CA"), "ca.key": []byte("its key")},
			}
			if !tc.notAfter.IsZero() {
				cert, k := ca.Cert(dnsName).Valid(now.Add(-time.Hour), tc.notAfter).PEM()
				secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey] = cert, k
			}
			c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(secret).Build()
			if err := retireLongerCertificate(t.Context(), c, c, key, validity, now); err != nil {
				t.Fatal(err)
			}
			got := &corev1.Secret{}
			if err := c.Get(t.Context(), key, got); err != nil {
				t.Fatal(err)
			}
			_, hasCert := got.Data[corev1.TLSCertKey]
			_, hasKey := got.Data[corev1.TLSPrivateKeyKey]
			if retired := !hasCert && !hasKey; retired != (tc.wantRetire || tc.notAfter.IsZero()) || hasCert != hasKey {
				t.Errorf("tls.crt kept %t, tls.key kept %t; want the pair retired: %t", hasCert, hasKey, tc.wantRetire)
			}
			if string(got.Data["ca.crt"]) != "the CA" || string(got.Data["ca.key"]) != "its key" {
				t.Errorf("the CA was touched: %q", got.Data)
			}
		})
	}
}
