package app

import (
	"context"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// ReadinessGuardName names the ValidatingAdmissionPolicy and its binding in
// manifests/base/readiness-guard.yaml.
const ReadinessGuardName = "inplace-readiness-guard"

// guardCheckPeriod is how often the manager looks for the readiness guard.
const guardCheckPeriod = 30 * time.Second

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
// guardCheckPeriod, and logs each change.
func (g *guardWatch) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithName("readiness-guard")
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		guarded := g.check(ctx)
		if g.known.Swap(true) && g.guarded.Load() == guarded {
			return
		}
		g.guarded.Store(guarded)
		if guarded {
			log.Info("The readiness guard is in force: pods are updated in the fast order", "policy", ReadinessGuardName)
		} else {
			log.Info("The readiness guard is not installed: pods are updated in the slower order that needs none (about a second more each); install manifests/base/readiness-guard.yaml", "policy", ReadinessGuardName)
		}
	}, guardCheckPeriod)
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (g *guardWatch) NeedLeaderElection() bool { return false }

func (g *guardWatch) check(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	if err := g.reader.Get(ctx, client.ObjectKey{Name: ReadinessGuardName}, policy); err != nil {
		return false
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	if err := g.reader.Get(ctx, client.ObjectKey{Name: ReadinessGuardName}, binding); err != nil {
		return false
	}
	return binding.Spec.PolicyName == ReadinessGuardName && policy.DeletionTimestamp == nil && binding.DeletionTimestamp == nil
}
