package app

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/inplace-dev/inplace/inplace"
)

// ReadinessGuardName names the ValidatingAdmissionPolicy and its binding in
// manifests/base/readiness-guard.yaml.
const ReadinessGuardName = inplace.ReadinessGuardName

// guardCheckPeriod is how often the manager looks for the readiness guard;
// guardRetryPeriod how soon it looks again when it could not tell.
const (
	guardCheckPeriod = 30 * time.Second
	guardRetryPeriod = 2 * time.Second
)

// guardWatch tells the controllers whether the readiness guard is in force:
// its policy and its binding both exist. It runs on every replica. What the
// guard allows: docs/design/2026-11-30-per-pod-update-order.md.
type guardWatch struct {
	reader  client.Reader
	guarded atomic.Bool
	known   atomic.Bool
}

// Guarded implements controller.Guard.
func (g *guardWatch) Guarded() bool { return g.guarded.Load() }

// Start implements manager.Runnable: it checks at once, then every
// guardCheckPeriod (guardRetryPeriod after a failed read), and logs each
// change.
func (g *guardWatch) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("readiness-guard")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(g.refresh(ctx, log)):
		}
	}
}

// refresh checks once and returns how long to wait before the next check.
// A read that fails says nothing about the guard: the order of writes stays
// what it was. Taken for "not installed", an API server away for a second
// switched every replica to the slower order for 30 s while the guard was
// still in force, and the guard then refused each gate that order closed.
func (g *guardWatch) refresh(ctx context.Context, log logr.Logger) time.Duration {
	guarded, err := g.check(ctx)
	if err != nil {
		log.V(1).Info("Could not tell whether the readiness guard is in force; the order of writes stays as it was", "error", err.Error())
		return guardRetryPeriod
	}
	if g.known.Swap(true) && g.guarded.Load() == guarded {
		return guardCheckPeriod
	}
	g.guarded.Store(guarded)
	if guarded {
		log.Info("The readiness guard is in force: pods are updated in the fast order", "policy", ReadinessGuardName)
	} else {
		log.Info("The readiness guard is not installed: pods are updated in the slower order that needs none (about a second more each); install manifests/base/readiness-guard.yaml", "policy", ReadinessGuardName)
	}
	return guardCheckPeriod
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (g *guardWatch) NeedLeaderElection() bool { return false }

// check reads the guard's policy and binding: false when either is gone
// or being deleted, an error when either cannot be read.
func (g *guardWatch) check(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	for _, obj := range []client.Object{policy, binding} {
		if err := g.reader.Get(ctx, client.ObjectKey{Name: ReadinessGuardName}, obj); apierrors.IsNotFound(err) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("reading %T %s: %w", obj, ReadinessGuardName, err)
		}
	}
	return binding.Spec.PolicyName == ReadinessGuardName && policy.DeletionTimestamp == nil && binding.DeletionTimestamp == nil, nil
}
