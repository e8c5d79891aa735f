package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
)

// drainTimeout bounds the drain; the manager's graceful shutdown timeout
// must be longer.
const drainTimeout = 10 * time.Second

// ShutdownDrain runs on every replica and, when it stops, opens the gates
// that nobody else may be there to open: with every replica gone (scaled to
// zero, uninstalled), a pod left with its gate closed would never be Ready,
// and on OrderedReady its StatefulSet controller would wait for it forever.
//
// Every replica opens the gates of new pods its webhook gated that no
// keeper opened yet (a workload controller's pod created in the seconds
// before the replicas stopped, its webhook still serving). The elected one
// also opens the gates its in-progress updates hold closed: an update not
// patched yet is abandoned (its gate opens; the next leader, if any, begins
// it again). A patched one gets its gate open when the kubelet may count
// the pod Ready again: guarded at once (the API server refuses a Ready True
// while a replaced container runs), unguarded once the replaced containers
// are gone. Its state is left for the next leader to finish. Another
// replica taking over meanwhile finds the gates open and carries on.
type ShutdownDrain struct {
	// Reader lists pods live: the cache may be stopping.
	Reader client.Reader
	Client client.Client
	Guard  rollout.Guard
	Clock  clock.PassiveClock
	// Scope's excluded namespaces are never touched.
	Scope inplace.Scope
	// Elected is closed once this replica is elected (the manager's
	// Elected); nil is elected.
	Elected <-chan struct{}
}

// Start implements manager.Runnable: it waits for the manager to stop, then
// drains.
func (d *ShutdownDrain) Start(ctx context.Context) error {
	<-ctx.Done()
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	d.Drain(drainCtx)
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica drains the gates of new pods; only the elected one has updates in
// progress (Elected).
func (d *ShutdownDrain) NeedLeaderElection() bool { return false }

func (d *ShutdownDrain) elected() bool {
	if d.Elected == nil {
		return true
	}
	select {
	case <-d.Elected:
		return true
	default:
		return false
	}
}

// Drain opens the gates in-progress updates hold closed, as far as it is
// safe.
func (d *ShutdownDrain) Drain(ctx context.Context) {
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	log := logf.FromContext(ctx).WithName("shutdown-drain")
	pods := &corev1.PodList{}
	if err := d.Reader.List(ctx, pods, client.MatchingLabels{inplace.LabelManaged: "true"}); err != nil {
		log.Error(err, "Cannot list the managed pods to open their gates")
		return
	}
	guarded, elected := rollout.IsGuarded(d.Guard), d.elected()
	opened := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if d.Scope.Excluded[pod.Namespace] || inplace.ControlledByOther(pod) || rollout.GateOpen(pod) || pod.DeletionTimestamp != nil {
			continue
		}
		if !inplace.Updating(pod) {
			// A new pod whose gate no keeper opened yet: opened as the
			// keeper opens it.
			if inplace.HasGate(pod) && inplace.GateCondition(pod) == nil {
				if err := rollout.OpenGate(ctx, d.Client, pod, metav1.NewTime(d.Clock.Now())); err != nil {
					log.Error(err, "Cannot open a gate", "pod", klog.KObj(pod))
					continue
				}
				opened++
			}
			continue
		}
		if !elected {
			continue // the elected replica's updates
		}
		state, err := inplace.StateOf(pod)
		if err != nil {
			continue
		}
		if state != nil && state.PatchedAt != nil && !guarded && !inplace.CheckProgress(pod, state).Replaced {
			continue // its old container may still run: not safe to open
		}
		if err := rollout.OpenGate(ctx, d.Client, pod, metav1.NewTime(d.Clock.Now())); err != nil {
			log.Error(err, "Cannot open a gate", "pod", klog.KObj(pod))
			continue
		}
		opened++
	}
	log.Info("Opened the gates of new pods and updates in progress before stopping", "opened", opened, "elected", elected)
}
