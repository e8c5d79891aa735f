package webhook

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// ClosingGrace is how long a stopping replica goes on answering, with every
// answer closing its connection, before its webhook server shuts down.
const ClosingGrace = 3 * time.Second

// Closing retires the API server's keep-alive connections to a replica that
// stops, so that none is closed under a request.
//
// The API server sends its webhook calls over connections it keeps open,
// pooled by the Service's address, whichever replica each reaches. A
// terminating replica leaves the Service's endpoints, so no new connection
// reaches it, but the open ones still do, up to the moment its webhook
// server shuts down and closes those that are idle. A call written on one
// as it closes fails ("broken pipe", "connection reset") and, the webhooks
// failing open, passes: a replacement the replica would have refused goes
// through, and the pod is recreated instead of updated in place (seen in an
// in-place rollout right after a helm upgrade replaced the replicas). The
// API server does not retry a POST on another connection.
//
// Once the manager stops, every answer says "Connection: close": the
// server closes that connection after it, and the API server opens a new
// one, to another replica. Closing holds the shutdown for its grace
// meanwhile (the manager stops the webhook server after every runnable that
// needs no election, as this one); a connection that carries no call in
// that time is closed idle, as before, by then the least recently used of
// the pool.
//
// Once the grace is over (Retired), the replica's pod webhook gives no
// readiness gate: its shutdown drain opens the gates of the pods it gated,
// and reads them only then, so that no pod it gates is made after that
// read. A pod created in the last instants before the webhook server shuts
// down is made as with no manager at all.
type Closing struct {
	grace    time.Duration
	stopping atomic.Bool
	retired  chan struct{}
}

var (
	_ manager.Runnable               = &Closing{}
	_ manager.LeaderElectionRunnable = &Closing{}
)

// NewClosing returns a Closing whose grace lasts grace.
func NewClosing(grace time.Duration) *Closing {
	return &Closing{grace: max(grace, 0), retired: make(chan struct{})}
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: every
// replica serves the webhooks.
func (*Closing) NeedLeaderElection() bool { return false }

// Start implements manager.Runnable: it waits for the manager to stop, then
// for the grace with every answer closing its connection.
func (c *Closing) Start(ctx context.Context) error {
	<-ctx.Done()
	c.stopping.Store(true)
	time.Sleep(c.grace)
	close(c.retired)
	return nil
}

// Retired is closed once the grace is over; never with a nil Closing.
func (c *Closing) Retired() <-chan struct{} {
	if c == nil {
		return nil
	}
	return c.retired
}

// isRetired reports whether the grace is over.
func (c *Closing) isRetired() bool {
	if c == nil {
		return false
	}
	select {
	case <-c.retired:
		return true
	default:
		return false
	}
}

// wrap has h's answers close their connection once the manager stops; h
// itself with a nil Closing.
func (c *Closing) wrap(h http.Handler) http.Handler {
	if c == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.stopping.Load() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}
