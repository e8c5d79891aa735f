package rollout

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Results of a pod's in-place update, the values of the result label.
const (
	resultSuccess = "success"
	resultFailure = "failure"
)

// Results of a pull ahead on a node.
const (
	prepullPulled  = "pulled"
	prepullFailed  = "failed"
	prepullSkipped = "skipped"
)

var (
	updatesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "inplace_updates_total",
		Help: "Pods updated in place, by workload kind and result (success, failure).",
	}, []string{"kind", "result"})

	updateDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "inplace_update_duration_seconds",
		Help:    "Time from marking a pod not ready to its update's completion, by workload kind.",
		Buckets: []float64{0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300},
	}, []string{"kind"})

	fallbacksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "inplace_fallbacks_to_recreate_total",
		Help: "Pods of an in-place rollout recreated instead, by workload kind and reason (NoReadinessGate, NoRevision, NotInPlaceable, SidecarKubelet: the native controller's delete let through; PatchRefused, BadUpdateState: deleted by the manager).",
	}, []string{"kind", "reason"})

	deletesRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "inplace_deletes_refused_total",
		Help: "Deletes of a pod by its workload's controller refused by the pod-delete webhook because the manager updates the pod in place, by workload kind.",
	}, []string{"kind"})

	controllersWoken = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "inplace_controllers_woken_total",
		Help: "Workload controllers told to retry a replacement the pod webhook refused, which would now pass, by workload kind and reason (Passes, NoEngine, PromiseBroken).",
	}, []string{"kind", "reason"})

	prepullsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "inplace_prepulls_total",
		Help: "Nodes that pulled a rollout's new images ahead, by workload kind and result (pulled; failed: a pull the kubelet reported failing, which halts the rollout; skipped: the prepull pod refused, rejected or past its deadline, the node going without).",
	}, []string{"kind", "result"})

	rolloutsInProgress = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "inplace_rollouts_in_progress",
		Help: "Workloads whose pods inplace is updating in place (a rollout recorded on the workload), by kind.",
	}, []string{"kind"})
)

func init() {
	metrics.Registry.MustRegister(updatesTotal, updateDuration, fallbacksTotal, deletesRefused, controllersWoken, prepullsTotal, rolloutsInProgress)
}

// activeSet tracks the workloads of a kind with an in-place rollout
// recorded, for the gauge.
type activeSet struct {
	kind string
	mu   sync.Mutex
	keys map[string]bool
}

func newActiveSet(kind string) *activeSet { return &activeSet{kind: kind, keys: map[string]bool{}} }

// set records whether the workload has a rollout under way.
func (h *activeSet) set(key string, held bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if held {
		h.keys[key] = true
	} else {
		delete(h.keys, key)
	}
	rolloutsInProgress.WithLabelValues(h.kind).Set(float64(len(h.keys)))
}

// CountFallback counts a pod of a rollout that is recreated because it
// cannot be updated in place, by kind and reason.
func CountFallback(kind, reason string) {
	fallbacksTotal.WithLabelValues(kind, reason).Inc()
}

// CountRefusedDelete counts a workload controller's delete that the
// pod-delete webhook refused, by kind.
func CountRefusedDelete(kind string) {
	deletesRefused.WithLabelValues(kind).Inc()
}

// CountWake counts a workload controller told to retry a replacement the
// pod webhook refused, by kind and reason.
func CountWake(kind, reason string) {
	controllersWoken.WithLabelValues(kind, reason).Inc()
}
