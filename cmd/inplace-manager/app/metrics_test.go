package app_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/testenv"
)

// TestMetricsNeedAuthorisation runs the manager against a real API server
// with the metrics served as shipped (HTTPS, --metrics-secure) and reads them
// as Prometheus would, with a service account's token: no token is refused
// (401), a service account not bound to the ClusterRole
// inplace-metrics-reader too (403), and one bound to it reads the metrics.
func TestMetricsNeedAuthorisation(t *testing.T) {
	env, c := testenv.Start(t, app.Scheme(), nil)
	cfg := env.Config

	// The roles of manifests/base/rbac.yaml that matter here.
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "inplace-system"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: "inplace-system"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "stranger", Namespace: "inplace-system"}},
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "inplace-metrics-reader"},
			Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "inplace-metrics-reader"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "reader", Namespace: "inplace-system"}},
		},
	} {
		if err := c.Create(t.Context(), obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}

	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, app.Options{
			Policy:                 inplace.PolicyNamespace,
			Namespace:              "inplace-system",
			CertDir:                t.TempDir(),
			WebhookHost:            "127.0.0.1",
			WebhookPort:            freePort(t),
			MetricsAddress:         net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			MetricsSecure:          true,
			HealthAddress:          "0",
			GracefulShutdownPeriod: time.Second,
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	url := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/metrics"

	// The server comes up with the manager: wait for it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := get(t.Context(), url, "")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the metrics server never answered at %s: %v", url, err)
		}
		select {
		case err := <-done:
			done <- err // for the cleanup's receive
			t.Fatalf("the manager stopped: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}

	for _, tc := range []struct {
		who  string
		sa   string
		want int
	}{
		{who: "no token", want: http.StatusUnauthorized},
		{who: "a service account not bound to inplace-metrics-reader", sa: "stranger", want: http.StatusForbidden},
		{who: "a service account bound to inplace-metrics-reader", sa: "reader", want: http.StatusOK},
	} {
		var token string
		if tc.sa != "" {
			token = requestToken(t, c, tc.sa)
		}
		code, body, err := get(t.Context(), url, token)
		if err != nil || code != tc.want {
			t.Errorf("GET /metrics with %s = %d, %v; want %d", tc.who, code, err, tc.want)
			continue
		}
		if tc.want == http.StatusOK && !strings.Contains(body, "controller_runtime_") {
			t.Errorf("GET /metrics with %s: no metrics in %q", tc.who, body)
		}
	}
}

func requestToken(t *testing.T, c client.Client, name string) string {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "inplace-system"}}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(600))}}
	if err := c.SubResource("token").Create(t.Context(), sa, tr); err != nil {
		t.Fatalf("requesting a token for %s: %v", name, err)
	}
	return tr.Status.Token
}

func get(ctx context.Context, url, token string) (int, string, error) {
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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
