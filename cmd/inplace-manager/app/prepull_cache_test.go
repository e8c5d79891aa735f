package app

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/inplace-dev/inplace/internal/testenv"
)

// TestPrepullCacheRunsOnAStandby: on a replica that another holds the
// leader election lease against, the prepull pods' cache runs and syncs.
// The rollout engine's controllers warm their sources up there before they
// are elected; a cache left for the leader alone never syncs, and the
// replica stopped after the sync timeout, again and again.
func TestPrepullCacheRunsOnAStandby(t *testing.T) {
	env := startStandbyCluster(t)
	cfg := env.Config

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		LeaderElection:          true,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: "inplace-system",
	})
	if err != nil {
		t.Fatal(err)
	}
	prepulls, err := prepullCache(mgr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := runStandby(t, mgr)

	wait, stop := context.WithTimeout(ctx, 30*time.Second)
	defer stop()
	if !prepulls.WaitForCacheSync(wait) {
		t.Fatal("the prepull pods' cache did not sync on a replica not elected")
	}
}

// startStandbyCluster starts an API server whose leader election lease, in
// inplace-system, another replica holds for an hour: a manager started
// against it is a standby.
func startStandbyCluster(t *testing.T) *envtest.Environment {
	env, c := testenv.Start(t, Scheme(), nil)
	now := metav1.NewMicroTime(time.Now())
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "inplace-system"}},
		&coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: LeaderElectionID, Namespace: "inplace-system"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("another-replica"), LeaseDurationSeconds: ptr.To(int32(3600)),
				AcquireTime: &now, RenewTime: &now},
		},
	} {
		if err := c.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// runStandby runs mgr, started against startStandbyCluster's API server,
// until the test ends, and returns a context that ends with it. At the end
// the test fails if mgr was elected after all: it proved nothing of a
// standby.
func runStandby(t *testing.T, mgr manager.Manager) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		select {
		case <-mgr.Elected():
			t.Error("elected, with the lease held by another replica: the test proves nothing")
		default:
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the manager stopped with %v", err)
		}
	})
	return ctx
}
