package podcache

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/inplace-dev/inplace/inplace"
)

// The gates' metrics: how many managed pods have their InPlaceUpdateReady
// condition False, and for how long the longest has, by workload kind. Read
// from the pod cache at each scrape, on every replica (each caches the
// managed pods): no replica's rollout needs to be running for them to tell
// a pod kept out of its Service.
var (
	gatesClosedDesc = prometheus.NewDesc("inplace_pods_gate_closed",
		"Managed pods whose InPlaceUpdateReady condition is False (out of their Services for an update, or kept out), by workload kind.",
		[]string{"kind"}, nil)
	gateClosedLongestDesc = prometheus.NewDesc("inplace_pods_gate_closed_longest_seconds",
		"How long the longest-closed of those pods has had its InPlaceUpdateReady condition False, by workload kind; 0 when none.",
		[]string{"kind"}, nil)

	gates = &gateCollector{now: time.Now}
)

func init() { metrics.Registry.MustRegister(gates) }

// Lister is what the gates' metrics read: the pod informer's store.
type Lister interface{ List() []any }

// CountGates has the gates' metrics read the pods of store.
func CountGates(store Lister) { gates.set(store) }

// gateCollector reads the gates of the pods of a store at each collection.
type gateCollector struct {
	mu    sync.Mutex
	store Lister
	now   func() time.Time
}

func (g *gateCollector) set(store Lister) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.store = store
}

func (g *gateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- gatesClosedDesc
	ch <- gateClosedLongestDesc
}

func (g *gateCollector) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	store := g.store
	g.mu.Unlock()
	if store == nil {
		return // not yet told where the pods are: no figure rather than a false 0
	}
	now := g.now()
	closed := map[string]int{}
	longest := map[string]time.Duration{}
	for _, kind := range []string{"StatefulSet", "Deployment", "DaemonSet"} {
		closed[kind], longest[kind] = 0, 0
	}
	for _, obj := range store.List() {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			continue
		}
		kind := workloadKind(pod)
		if kind == "" {
			continue
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == inplace.ConditionInPlaceUpdateReady && c.Status == corev1.ConditionFalse {
				closed[kind]++
				longest[kind] = max(longest[kind], now.Sub(c.LastTransitionTime.Time))
			}
		}
	}
	for kind, n := range closed {
		ch <- prometheus.MustNewConstMetric(gatesClosedDesc, prometheus.GaugeValue, float64(n), kind)
		ch <- prometheus.MustNewConstMetric(gateClosedLongestDesc, prometheus.GaugeValue, longest[kind].Seconds(), kind)
	}
}

// workloadKind is the kind of the workload whose pod it is, as the other
// metrics name it: a ReplicaSet's pod is its Deployment's.
func workloadKind(pod *corev1.Pod) string {
	owner := metav1.GetControllerOf(pod)
	if owner == nil {
		return ""
	}
	switch owner.Kind {
	case "ReplicaSet":
		return "Deployment"
	case "StatefulSet", "DaemonSet":
		return owner.Kind
	}
	return ""
}
