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

// ShutdownDrain runs on the elected replica and, when it stops, opens the
// gates that its in-progress updates hold closed and that nobody else may
// be there to open: with every replica gone (scaled to zero, uninstalled),
// a pod left with its gate closed would never be Ready, and on OrderedReady
// its StatefulSet controller would wait for it forever.
//
// An update not patched yet is abandoned (its gate opens; the next leader,
// if any, begins it again). A patched one gets its gate open when the
// kubelet may count the pod Ready again: guarded at once (the API server
// refuses a Ready True while a replaced container runs), unguarded once the
// replaced containers are gone. Its state is left for the next leader to
// finish. Another replica taking over meanwhile finds the gates open and
// carries on.
type ShutdownDrain struct {
	// Reader lists pods live: the cache may be stopping.
	Reader client.Reader
	Client client.Client
	Guard  rollout.Guard
	Clock  clock.PassiveClock
	// Scope's excluded namespaces are never touched.
	Scope inplace.Scope
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

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the
// elected replica has updates in progress.
func (d *ShutdownDrain) NeedLeaderElection() bool { return true }

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
	guarded := rollout.IsGuarded(d.Guard)
	opened := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if d.Scope.Excluded[pod.Namespace] || inplace.ControlledByOther(pod) || !inplace.Updating(pod) || rollout.GateOpen(pod) || pod.DeletionTimestamp != nil {
			continue
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
	log.Info("Opened the gates of the updates in progress before stopping", "opened", opened)
}
