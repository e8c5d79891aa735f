package rollout

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/inplace-dev/inplace/inplace"
)

// The rollout record (inplace.dev/rollout on the workload) is for people:
// kubectl get -o yaml shows an in-place rollout under way, since when, and
// why it halted if it did; the completion event is told from it. It holds
// nothing back, and no decision rests on it: when another admission control
// refuses the manager's write of it (a policy that lets only a GitOps
// account change workloads), the rollout goes on without it, and what it
// would say is told in events only.

// writeRecord sets the workload's rollout record, or removes it (nil), in a
// write conditional on the resourceVersion obj was read at. obj is left as
// it was when the write fails.
func (r *Reconciler) writeRecord(ctx context.Context, obj client.Object, rollout *inplace.Rollout) error {
	base := obj.DeepCopyObject().(client.Object)
	annotations := maps.Clone(obj.GetAnnotations())
	if rollout == nil {
		delete(annotations, inplace.AnnotationRollout)
	} else {
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[inplace.AnnotationRollout] = rollout.Encode()
	}
	obj.SetAnnotations(annotations)
	err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	if err != nil {
		obj.SetAnnotations(base.GetAnnotations())
	}
	return err
}

// recordStart records the rollout on the workload when its first pod's
// update begins, or when the target changed, and tells it in an event. It
// returns the rollout as it stands: a record that could not be written
// (refused by another admission control) is told once in a Warning event,
// and the rollout goes on without it. stale says the write lost to a newer
// version of the workload: no pod begins on a pass that read an older one
// (the newer one brings the workload back), or the rollout would go on
// unrecorded, its completion untold.
func (r *Reconciler) recordStart(ctx context.Context, obj client.Object, rollout *inplace.Rollout, revision string) (_ *inplace.Rollout, stale bool) {
	if rollout != nil && rollout.Revision == revision {
		return rollout, false
	}
	key := client.ObjectKeyFromObject(obj).String()
	next := &inplace.Rollout{Revision: revision, Since: metav1.NewTime(r.Clock.Now())}
	if err := r.writeRecord(ctx, obj, next); err != nil {
		if ignoreConflict(err) == nil {
			return rollout, true
		}
		if r.told.first(key, "unrecorded", revision) {
			logf.FromContext(ctx).Error(err, "Cannot write the rollout record; rolling out without it", "workload", klog.KObj(obj))
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, ReasonInPlaceRolloutHalted, "Rollout",
				"Rolling out revision %s in place without its record: the write of %s was refused: %v", revision, inplace.AnnotationRollout, err)
		}
		return rollout, false
	}
	r.active.set(key, true)
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonInPlaceRolloutStarted, "Rollout",
		"Rolling out revision %s in place", revision)
	return next, false
}

// recordPulling records on the rollout whether a pod's update waits for its
// node to pull ahead, and whether a node cannot: the pod webhook keeps its
// refusals of the workload controller's replacements while it does
// (inplace.Rollout.HoldsForPull). A record that cannot be written leaves the
// refusals to their usual bound.
func (r *Reconciler) recordPulling(ctx context.Context, obj client.Object, rollout *inplace.Rollout, held, failed bool) *inplace.Rollout {
	if rollout == nil || (rollout.Pulling != nil) == held && rollout.PullFailed == failed {
		return rollout
	}
	next := *rollout
	next.Pulling, next.PullFailed = nil, false
	if held {
		next.Pulling, next.PullFailed = ptr.To(metav1.NewTime(r.Clock.Now())), failed
		if rollout.Pulling != nil {
			next.Pulling = rollout.Pulling
		}
	}
	if err := r.writeRecord(ctx, obj, &next); err != nil {
		if ignoreConflict(err) != nil {
			logf.FromContext(ctx).Error(err, "Cannot record the pull ahead on the rollout", "workload", klog.KObj(obj))
		}
		return rollout
	}
	return &next
}

// complete ends the record of a rollout whose every pod is updated. The
// event is told once: only the pass whose conditional write removed the
// record tells it.
func (r *Reconciler) complete(ctx context.Context, obj client.Object, rollout *inplace.Rollout, revision string) {
	if err := r.writeRecord(ctx, obj, nil); err != nil {
		if ignoreConflict(err) != nil {
			logf.FromContext(ctx).Error(err, "Cannot remove the rollout record", "workload", klog.KObj(obj))
		}
		return
	}
	r.tellCompleted(obj, rollout, revision)
}

// tellCompleted forgets a workload's ended rollout and tells its completion,
// when the rollout was to the revision its pods run now.
func (r *Reconciler) tellCompleted(obj client.Object, rollout *inplace.Rollout, revision string) {
	key := client.ObjectKeyFromObject(obj).String()
	r.active.set(key, false)
	r.told.forget(key)
	if rollout.Revision == revision {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, ReasonInPlaceRolloutCompleted, "Rollout",
			"Rolled out revision %s in place in %v", rollout.Revision, r.Clock.Since(rollout.Since.Time).Round(time.Millisecond))
	}
}

// endRecord removes the record of a rollout whose last pods have begun,
// ahead of its completion (Plan.Unstarted), and keeps it in memory for the
// completion event (completeEnded) and for a failure of those pods, which
// writes it again (reportFailures). It returns the record as it stands.
func (r *Reconciler) endRecord(ctx context.Context, obj client.Object, rollout *inplace.Rollout) *inplace.Rollout {
	if err := r.writeRecord(ctx, obj, nil); err != nil {
		if ignoreConflict(err) != nil {
			logf.FromContext(ctx).Error(err, "Cannot remove the rollout record", "workload", klog.KObj(obj))
		}
		return rollout
	}
	r.told.first(client.ObjectKeyFromObject(obj).String(), topicEnded, rollout.Encode())
	return nil
}

// topicEnded is the memo's topic of a record ended ahead of its rollout's
// completion: its encoding.
const topicEnded = "ended"

// ended returns the record endRecord removed from the workload while its
// last pods update, or nil.
func (r *Reconciler) ended(key string) *inplace.Rollout {
	v, ok := r.told.value(key, topicEnded)
	if !ok {
		return nil
	}
	rollout, err := inplace.RolloutOf(map[string]string{inplace.AnnotationRollout: v})
	if err != nil {
		return nil
	}
	return rollout
}

// completeEnded tells the completion of a rollout whose record ended ahead
// of it, once: a manager restarted meanwhile has forgotten it, and tells
// nothing.
func (r *Reconciler) completeEnded(obj client.Object, revision string) {
	if rollout := r.ended(client.ObjectKeyFromObject(obj).String()); rollout != nil {
		r.tellCompleted(obj, rollout, revision)
	}
}

// reportFailures makes a halted rollout visible on the workload: the reason
// in the rollout record, and a Warning event when it changes. Where the
// record cannot be written, the event still tells it, once per reason.
func (r *Reconciler) reportFailures(ctx context.Context, obj client.Object, rollout *inplace.Rollout, failures []string) {
	slices.Sort(failures)
	failure := strings.Join(failures, "; ")
	key := client.ObjectKeyFromObject(obj).String()
	if failure == rollout.Failure {
		return
	}
	next := *rollout
	next.Failure = failure
	err := r.writeRecord(ctx, obj, &next)
	if ignoreConflict(err) == nil && err != nil {
		return // changed since read: the next pass looks again
	}
	if err != nil && !r.told.first(key, "failure", failure) {
		return
	}
	if failure != "" {
		where := "before any pod is taken down"
		for _, f := range failures {
			if !strings.HasPrefix(f, pullAheadFailure) {
				where = "at maxUnavailable"
			}
		}
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, ReasonInPlaceRolloutHalted, "Rollout",
			"The in-place rollout is halted %s: %s", where, failure)
	}
}

// memo remembers what was told about a workload where no record could say
// it, so that a pass does not tell it again.
type memo struct {
	mu   sync.Mutex
	told map[string]map[string]string
}

// first reports whether value is new for the workload's topic, and
// remembers it.
func (m *memo) first(key, topic, value string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.told == nil {
		m.told = map[string]map[string]string{}
	}
	if m.told[key] == nil {
		m.told[key] = map[string]string{}
	}
	if v, ok := m.told[key][topic]; ok && v == value {
		return false
	}
	m.told[key][topic] = value
	return true
}

// value returns what is remembered of the workload's topic.
func (m *memo) value(key, topic string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.told[key][topic]
	return v, ok
}

// forget drops what was remembered of a workload.
func (m *memo) forget(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.told, key)
}
