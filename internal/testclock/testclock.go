// Package testclock runs a test that takes an injected clock at several
// instants: today, a year ahead and a year back.
//
// A test written against a fixed date passes until the real clock moves past
// it, and then fails for someone else, months later; one that mixes an
// injected clock with something made at the real time (a certificate, a
// lease renewal, a condition's transition time) passes only while the two
// agree. Run at clocks a year away from today, either mistake fails on the
// day the test is written.
//
// It is for tests only; the product never imports it.
package testclock

import (
	"testing"
	"time"
)

// Instant is a time a test runs at, with the name of its subtest.
type Instant struct {
	Name string
	Time time.Time
}

// Instants returns the times a time-dependent test runs at: the real time,
// a year ahead and a year back, each to the whole second (the resolution at
// which the API keeps times) in UTC.
func Instants() []Instant {
	today := time.Now().UTC().Truncate(time.Second)
	return []Instant{
		{Name: "today", Time: today},
		{Name: "a year ahead", Time: today.AddDate(1, 0, 0)},
		{Name: "a year back", Time: today.AddDate(-1, 0, 0)},
	}
}

// Run runs test once per instant, as a subtest named after it.
func Run(t *testing.T, test func(t *testing.T, now time.Time)) {
	t.Helper()
	for _, at := range Instants() {
		t.Run(at.Name, func(t *testing.T) { test(t, at.Time) })
	}
}
