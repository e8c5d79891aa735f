package controller

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
		Help: "Pods handed to the native controller to be recreated, by workload kind and reason (NoReadinessGate, NotInPlaceable, NoRevision).",
	}, []string{"kind", "reason"})

	rolloutsInProgress = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "inplace_rollouts_in_progress",
		Help: "Workloads whose native controller inplace holds back for an in-place rollout, by kind.",
	}, []string{"kind"})
)

func init() {
	metrics.Registry.MustRegister(updatesTotal, updateDuration, fallbacksTotal, rolloutsInProgress)
}

// heldSet tracks the workloads of a kind under a hold, for the gauge.
type heldSet struct {
	kind string
	mu   sync.Mutex
	keys map[string]bool
}

func newHeldSet(kind string) *heldSet { return &heldSet{kind: kind, keys: map[string]bool{}} }

// set records whether the workload is held.
func (h *heldSet) set(key string, held bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if held {
		h.keys[key] = true
	} else {
		delete(h.keys, key)
	}
	rolloutsInProgress.WithLabelValues(h.kind).Set(float64(len(h.keys)))
}
