package e2ekit

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// metricsReaderRole is the ClusterRole of manifests/base/rbac.yaml that
// allows GET /metrics of the manager's authenticated metrics endpoint.
const metricsReaderRole = "inplace-metrics-reader"

// metricsPort is the manager's HTTPS metrics port (--metrics-bind-address).
const metricsPort = "8443"

// MetricsScraper reads the manager replicas' metrics as Prometheus would: a
// service account bound to inplace-metrics-reader, its token as a bearer,
// over HTTPS (the manager's certificate is self-signed: not verified). It
// reaches the replicas by pod IP: the program must run in the cluster's
// network.
type MetricsScraper struct {
	token string
	http  *http.Client
}

// NewMetricsScraper makes a service account in namespace, binds it to
// inplace-metrics-reader and asks for a token. cleanup deletes the binding
// (the service account goes with the namespace).
func NewMetricsScraper(ctx context.Context, c client.Client, namespace string) (m *MetricsScraper, cleanup func(), err error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "metrics-scraper", Namespace: namespace}}
	if err := c.Create(ctx, sa); err != nil {
		return nil, nil, fmt.Errorf("creating the metrics scraper's service account: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: namespace + "-metrics-scraper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: metricsReaderRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: namespace}},
	}
	if err := c.Create(ctx, binding); err != nil {
		return nil, nil, fmt.Errorf("binding the metrics scraper to %s: %w", metricsReaderRole, err)
	}
	cleanup = func() { _ = c.Delete(context.Background(), binding) }
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(6 * 3600))}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("requesting the metrics scraper's token: %w", err)
	}
	return &MetricsScraper{
		token: tr.Status.Token,
		http: &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // the manager's metrics certificate is self-signed
		},
	}, cleanup, nil
}

// get reads the metrics of the replica at podIP. The caller closes the body.
func (m *MetricsScraper) get(ctx context.Context, podIP string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+net.JoinHostPort(podIP, metricsPort)+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+m.token)
	resp, err := m.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET /metrics of %s: %s", podIP, resp.Status)
	}
	return resp, nil
}

// Sum adds up, over the manager's replicas that have an IP, the samples
// whose line starts with prefix (a metric's name, or its name and labels)
// and holds each of with (a label and its value, as `method="GET"`). A
// replica that cannot be read is an error: the sum would be short.
func (m *MetricsScraper) Sum(ctx context.Context, c client.Client, prefix string, with ...string) (float64, error) {
	pods, err := ManagerPods(ctx, c)
	if err != nil {
		return 0, err
	}
	total := 0.0
	for _, p := range pods {
		if p.Status.PodIP == "" {
			continue
		}
		resp, err := m.get(ctx, p.Status.PodIP)
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, prefix) || slices.ContainsFunc(with, func(w string) bool { return !strings.Contains(line, w) }) {
				continue
			}
			fields := strings.Fields(line)
			if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
				total += v
			}
		}
		resp.Body.Close()
		if err := sc.Err(); err != nil {
			return 0, err
		}
	}
	return total, nil
}

// ManagerPods lists the manager's pods as e2e/manifests installs it, those
// being deleted left out.
func ManagerPods(ctx context.Context, c client.Client) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := c.List(ctx, list, client.InNamespace("inplace-system"), client.MatchingLabels{"app.kubernetes.io/name": "inplace-manager"}); err != nil {
		return nil, err
	}
	var pods []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods, nil
}
