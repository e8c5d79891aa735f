package rollout

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Passes tracks the reconciler passes of one manager, for two ends.
//
// A pass that hangs: every pass is bounded by ReconcileTimeout (its context
// is cancelled then); a pass still running at twice that ignores its context
// and holds its worker: the replica is wedged. Check, a liveness check, then
// fails, the kubelet restarts the replica, and another is elected: an
// elected replica cannot hold a rollout, or the webhook's refusals, forever.
//
// A replica that stops: its shutdown drain opens the gates its updates hold
// closed, and must read them after the last write of its engine. The
// manager stops the drain's runnables before the reconcilers, so the drain
// first calls Quiesce: no pass begins after it, and the running ones end.
//
// A nil *Passes tracks nothing and never quiesces.
type Passes struct {
	clock    clock.PassiveClock
	mu       sync.Mutex
	next     int
	running  map[int]time.Time
	stopping bool
	idle     chan struct{} // closed once stopping with no pass running
}

// NewPasses returns a tracker for one manager's reconcilers.
func NewPasses(c clock.PassiveClock) *Passes {
	if c == nil {
		c = clock.RealClock{}
	}
	return &Passes{clock: c, running: map[int]time.Time{}, idle: make(chan struct{})}
}

// Begin records a pass beginning and returns the function that records its
// end. ok is false once the replica stops (Quiesce): the pass must return
// without a write, and end need not be called.
func (p *Passes) Begin() (end func(), ok bool) {
	if p == nil {
		return func() {}, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return nil, false
	}
	id := p.next
	p.next++
	p.running[id] = p.clock.Now()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.running, id)
		p.closeIfIdle()
	}, true
}

// Quiesce lets no pass begin from now on and waits until the running ones
// have ended, or ctx is done (its error then).
func (p *Passes) Quiesce(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	p.stopping = true
	p.closeIfIdle()
	p.mu.Unlock()
	select {
	case <-p.idle:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		defer p.mu.Unlock()
		return fmt.Errorf("%d reconciler passes still running: %w", len(p.running), context.Cause(ctx))
	}
}

// closeIfIdle closes idle once stopping with no pass running; p.mu is held.
func (p *Passes) closeIfIdle() {
	if !p.stopping || len(p.running) > 0 {
		return
	}
	select {
	case <-p.idle:
	default:
		close(p.idle)
	}
}

// Check fails when a pass has run for more than twice ReconcileTimeout.
func (p *Passes) Check(*http.Request) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, started := range p.running {
		if d := p.clock.Since(started); d > 2*ReconcileTimeout {
			return fmt.Errorf("a reconciler pass has run for %v, past its %v bound", d.Round(time.Second), ReconcileTimeout)
		}
	}
	return nil
}
