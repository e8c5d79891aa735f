package app

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/inplace-dev/inplace/internal/testclock"
)

func TestEngineWatch(t *testing.T) { testclock.Run(t, testEngineWatch) }

func testEngineWatch(t *testing.T, now time.Time) {
	start := now
	clock := clocktesting.NewFakePassiveClock(start)
	e := &engineWatch{clock: clock, started: start, elected: true}
	lease := func(renewed time.Time) *coordinationv1.Lease {
		return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}}}
	}
	if !e.running() {
		t.Errorf("a replica that has just started counts the engine as running (it is a candidate itself)")
	}
	clock.SetTime(start.Add(engineLapse + time.Second))
	if e.running() {
		t.Errorf("running with no lease renewal seen for %v", engineLapse)
	}
	e.OnAdd(lease(start), true)
	if !e.running() {
		t.Errorf("not running just after a renewal was seen")
	}
	clock.SetTime(start.Add(2*engineLapse + 2*time.Second))
	e.OnUpdate(nil, lease(start)) // the same renewal again: not a new one
	if e.running() {
		t.Errorf("running on a lease not renewed for %v", engineLapse)
	}
	e.OnUpdate(nil, lease(start.Add(time.Minute)))
	if !e.running() {
		t.Errorf("not running just after a new renewal was seen, whatever the leader's clock says")
	}

	single := &engineWatch{clock: clock, started: start}
	if !single.running() {
		t.Errorf("without leader election this replica is the engine")
	}
}
