package controller

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/inplace"
)

// drainTimeout bounds the drain, after the last gate; the manager's
// graceful shutdown timeout must be longer than both together.
const drainTimeout = 10 * time.Second

// GateSettle is how long the drain lets a pod gated by this replica's last
// answers take to be stored before it reads the pods: the API server stores
// a pod after its validating webhooks, moments after the mutating answer.
const GateSettle = time.Second

// drainPoll is how often the drain reads the pods again while a gate it
// must open cannot be opened yet: its write conflicted with the kubelet's,
// or the pod's replaced container still runs and no guard keeps the pod
// from being counted Ready meanwhile.
const drainPoll = 250 * time.Millisecond

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
//
// The manager stops this runnable before its reconcilers, and releases the
// lease after both: the drain first waits for the engine's passes to end
// (Passes.Quiesce), so that none closes a gate after the drain has read the
// pods, and no other replica is elected while it drains. Its webhook still
// serves meanwhile, on the API server's open connections (webhook.Closing):
// the drain then waits for the pod webhook's last gate (LastGate), and for a
// pod so gated to be stored, before it reads the pods. It reads them again
// until every gate it must open is open, or its time is up.
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
	// Passes are the reconcilers' passes, ended before the drain reads
	// the pods; nil waits for none.
	Passes *rollout.Passes
	// LastGate is closed once this replica's pod webhook gates no more
	// pods (webhook.Closing's Retired); nil waits for none.
	LastGate <-chan struct{}
	// Settle is how long after LastGate the drain first reads the pods;
	// GateSettle when 0.
	Settle time.Duration
}

// Start implements manager.Runnable: it waits for the manager to stop, then
// for the reconcilers' passes to end (half its time at most) and for the
// pod webhook's last gate to settle, then drains.
func (d *ShutdownDrain) Start(ctx context.Context) error {
	<-ctx.Done()
	quiesceCtx, cancelQuiesce := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout/2)
	if err := d.Passes.Quiesce(quiesceCtx); err != nil {
		logf.FromContext(ctx).WithName("shutdown-drain").Info("Draining while reconciler passes still run", "error", err.Error())
	}
	cancelQuiesce()
	if d.LastGate != nil {
		<-d.LastGate
		settle := d.Settle
		if settle <= 0 {
			settle = GateSettle
		}
		time.Sleep(settle)
	}
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	d.Drain(drainCtx)
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica drains the gates of new pods; only the elected one has updates in
// progress (Elected).
func (d *ShutdownDrain) NeedLeaderElection() bool { return false }

func (d *ShutdownDrain) elected() bool { return isElected(d.Elected) }

// Drain opens the gates in-progress updates hold closed, as far as it is
// safe, reading the pods again every drainPoll while one is left, until ctx
// is done.
func (d *ShutdownDrain) Drain(ctx context.Context) {
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	log := logf.FromContext(ctx).WithName("shutdown-drain")
	elected := d.elected()
	opened, left := 0, []string(nil)
	err := wait.PollUntilContextCancel(ctx, drainPoll, true, func(ctx context.Context) (bool, error) {
		n, l := d.drainOnce(ctx, elected)
		opened, left = opened+n, l
		return len(left) == 0, nil
	})
	if err != nil {
		log.Info("Stopping with gates still closed: the next replica, if any, opens them", "opened", opened, "left", left, "elected", elected)
		return
	}
	log.Info("Opened the gates of new pods and updates in progress before stopping", "opened", opened, "elected", elected)
}

// drainOnce reads the managed pods live and opens the gates it may; it
// returns how many it opened and why each gate it must open is not open yet.
func (d *ShutdownDrain) drainOnce(ctx context.Context, elected bool) (opened int, left []string) {
	pods := &corev1.PodList{}
	if err := d.Reader.List(ctx, pods, client.MatchingLabels{inplace.LabelManaged: "true"}); err != nil {
		return 0, []string{"listing the managed pods: " + err.Error()}
	}
	guarded := rollout.IsGuarded(d.Guard)
	for i := range pods.Items {
		pod := &pods.Items[i]
		if d.Scope.Excluded[pod.Namespace] || inplace.ControlledByOther(pod) || rollout.GateOpen(pod) || pod.DeletionTimestamp != nil {
			continue
		}
		if !inplace.Updating(pod) {
			// Only a new pod whose gate no keeper opened yet, opened as
			// the keeper opens it.
			if !inplace.HasGate(pod) || inplace.GateCondition(pod) != nil {
				continue
			}
		} else {
			if !elected {
				continue // the elected replica's updates
			}
			state, err := inplace.StateOf(pod)
			if err != nil {
				continue
			}
			if state != nil && state.PatchedAt != nil && !guarded && !inplace.CheckProgress(pod, state).Replaced {
				left = append(left, klog.KObj(pod).String()+": its old container may still run")
				continue
			}
		}
		switch err := rollout.OpenGate(ctx, d.Client, pod, metav1.NewTime(d.Clock.Now())); {
		case err == nil:
			opened++
		case !apierrors.IsNotFound(err):
			left = append(left, klog.KObj(pod).String()+": "+err.Error())
		}
	}
	return opened, left
}
