package app

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/inplace-dev/inplace/certs"
)

// TestStandbyReadsPodsFromASyncedCache: a replica that is not elected has,
// once its cache synced, the managed pods' informer running and synced
// before any request: the pod webhook lists a Deployment's pods from it. An
// informer started by that first request would hold the request until it
// synced. A read with a context already ended answers only from an
// informer already synced. The gates' metrics count that informer's pods.
func TestStandbyReadsPodsFromASyncedCache(t *testing.T) {
	env := startStandbyCluster(t)

	fs, cl := newCommandLine()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	if err := fs.Parse([]string{"--namespace=inplace-system", "--cert-mode=secret", "--cert-dir=" + t.TempDir(),
		"--webhook-host=127.0.0.1", "--webhook-port=" + strconv.Itoa(port), "--metrics-bind-address=0",
		"--health-probe-bind-address=0", "--graceful-shutdown-timeout=1s"}); err != nil {
		t.Fatal(err)
	}
	o := cl.options
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	certificate, err := certs.New(o.Certs())
	if err != nil {
		t.Fatal(err)
	}
	// Another test of the package runs the manager's controllers, whose
	// names controller-runtime keeps unique in a process.
	mgr, err := newManager(env.Config, o, Scheme(), certificate, func(mo *ctrl.Options) {
		mo.Controller.SkipNameValidation = ptr.To(true)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(t.Context(), mgr, o, "system:serviceaccount:inplace-system:inplace-manager"); err != nil {
		t.Fatal(err)
	}
	ctx := runStandby(t, mgr)

	wait, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	if !mgr.GetCache().WaitForCacheSync(wait) {
		t.Fatal("the cache did not sync")
	}
	ended, end := context.WithCancel(ctx)
	end()
	if err := mgr.GetCache().List(ended, &corev1.PodList{}); err != nil {
		t.Errorf("listing pods from a standby's synced cache: %v; want the informer running and synced before any request", err)
	}
	// The gates' metrics read that informer's pods, on every replica.
	if n, err := testutil.GatherAndCount(metrics.Registry, "inplace_pods_gate_closed"); err != nil || n != 3 {
		t.Errorf("inplace_pods_gate_closed: %d series (%v), want one for each of the 3 kinds", n, err)
	}
}
