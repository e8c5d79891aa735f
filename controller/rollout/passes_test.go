package rollout

import (
	"context"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/inplace-dev/inplace/internal/testclock"
)

// TestPassesCheck: the liveness check fails while a pass has run for more
// than twice its bound, and passes again once it ends.
func TestPassesCheck(t *testing.T) { testclock.Run(t, testPassesCheck) }

func testPassesCheck(t *testing.T, now time.Time) {
	clock := clocktesting.NewFakePassiveClock(now)
	p := NewPasses(clock)
	end, ok := p.Begin()
	if !ok {
		t.Fatal("Begin() refused on a running replica")
	}
	clock.SetTime(now.Add(2 * ReconcileTimeout))
	if err := p.Check(nil); err != nil {
		t.Errorf("Check() at twice the bound = %v, want nil", err)
	}
	clock.SetTime(now.Add(2*ReconcileTimeout + time.Second))
	if err := p.Check(nil); err == nil {
		t.Error("Check() past twice the bound = nil, want an error")
	}
	end()
	if err := p.Check(nil); err != nil {
		t.Errorf("Check() after the pass ended = %v, want nil", err)
	}
}

// TestPassesQuiesce: once quiescing no pass begins; Quiesce returns when
// the running ones end, or with an error naming how many still run when
// its context is done first.
func TestPassesQuiesce(t *testing.T) {
	p := NewPasses(nil)
	end, _ := p.Begin()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := p.Quiesce(ctx); err == nil {
		t.Error("Quiesce() with a pass running = nil, want an error when its context ends")
	}
	if _, ok := p.Begin(); ok {
		t.Error("Begin() after Quiesce = ok, want refused")
	}
	go end()
	if err := p.Quiesce(t.Context()); err != nil {
		t.Errorf("Quiesce() once the pass ends = %v, want nil", err)
	}
	var nilPasses *Passes
	if end, ok := nilPasses.Begin(); !ok || nilPasses.Quiesce(t.Context()) != nil || nilPasses.Check(nil) != nil {
		t.Error("a nil *Passes must track nothing and never quiesce")
	} else {
		end()
	}
}
