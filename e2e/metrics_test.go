//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestMetricsNeedAuthorisation reads a manager replica's metrics as
// Prometheus would: over HTTPS on :8443, with a service account token. No
// token is refused (401), a token of a service account not bound to
// inplace-metrics-reader too (403), and one bound to it reads the inplace_
// metrics.
func TestMetricsNeedAuthorisation(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, unlabelled)
	reader := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: ns}}
	stranger := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "stranger", Namespace: ns}}
	create(t, reader)
	create(t, stranger)
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "inplace-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: reader.Name, Namespace: ns}},
	}
	create(t, binding)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), binding) })

	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: managerDeployment}}
	get(t, d)
	pods, err := managerPods(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	var ip string
	for _, p := range pods {
		if p.DeletionTimestamp == nil && podReady(&p) && p.Status.PodIP != "" {
			ip = p.Status.PodIP
		}
	}
	if ip == "" {
		t.Fatalf("no Ready manager pod with an IP among %s", podNames(pods))
	}
	url := "https://" + net.JoinHostPort(ip, "8443") + "/metrics"

	if code, _, err := getMetrics(t.Context(), url, ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("GET %s without a token = %d, %v; want 401", url, code, err)
	}
	if code, _, err := getMetrics(t.Context(), url, token(t, stranger)); err != nil || code != http.StatusForbidden {
		t.Errorf("GET %s as a service account not bound to inplace-metrics-reader = %d, %v; want 403", url, code, err)
	}
	readerToken := token(t, reader)
	eventually(t, managerTimeout, "the bound service account to read the metrics", func(ctx context.Context) error {
		code, body, err := getMetrics(ctx, url, readerToken)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET %s as the bound service account: %d", url, code)
		}
		if !strings.Contains(body, "inplace_") {
			return fmt.Errorf("GET %s: no inplace_ metric in %d bytes", url, len(body))
		}
		return nil
	})
}

// token requests a short-lived token of sa.
func token(t *testing.T, sa *corev1.ServiceAccount) string {
	t.Helper()
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(600))}}
	if err := k8s.SubResource("token").Create(t.Context(), sa, tr); err != nil {
		t.Fatalf("requesting a token for %s: %v", client.ObjectKeyFromObject(sa), err)
	}
	return tr.Status.Token
}

// getMetrics GETs url with token as a bearer (none when empty), not
// verifying the manager's self-signed certificate.
func getMetrics(ctx context.Context, url, token string) (int, string, error) {
	hc := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // the metrics certificate is self-signed
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}
