package rollout

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Watchdog notices a reconciler that hangs. Every pass is bounded by
// ReconcileTimeout (its context is cancelled then); a pass still running
// at twice that ignores its context and holds its worker: the replica is
// wedged. Its Check, a liveness check, then fails, the kubelet restarts the
// replica, and another is elected: an elected replica cannot hold a
// rollout, or the webhook's refusals, forever.
var Watchdog = &watchdog{clock: clock.RealClock{}, running: map[int]time.Time{}}

type watchdog struct {
	clock   clock.PassiveClock
	mu      sync.Mutex
	next    int
	running map[int]time.Time
}

// Track records a pass beginning; the returned function records its end.
func (w *watchdog) Track() func() {
	w.mu.Lock()
	id := w.next
	w.next++
	w.running[id] = w.clock.Now()
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.running, id)
		w.mu.Unlock()
	}
}

// Check fails when a pass has run for more than twice ReconcileTimeout.
func (w *watchdog) Check(*http.Request) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, started := range w.running {
		if d := w.clock.Since(started); d > 2*ReconcileTimeout {
			return fmt.Errorf("a reconciler pass has run for %v, past its %v bound", d.Round(time.Second), ReconcileTimeout)
		}
	}
	return nil
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
