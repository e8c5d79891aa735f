package main

import (
	"testing"
	"time"
)

// TestShortfall integrates the pods short of serving over a rollout: before
// the change counts nothing, after the end nothing, and an unchanged level
// counts to the end.
func TestShortfall(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for name, tc := range map[string]struct {
		levels []level
		want   time.Duration
	}{
		"always serving":                 {levels: []level{{at(-1), 3}}, want: 0},
		"one pod out for 2s":             {levels: []level{{at(-1), 3}, {at(1), 2}, {at(3), 3}}, want: 2 * time.Second},
		"two out together for 1s":        {levels: []level{{at(-1), 3}, {at(2), 1}, {at(3), 3}}, want: 2 * time.Second},
		"out from before the change":     {levels: []level{{at(-1), 2}, {at(4), 3}}, want: 4 * time.Second},
		"still out at the end":           {levels: []level{{at(-1), 3}, {at(8), 2}}, want: 2 * time.Second},
		"a change after the end ignored": {levels: []level{{at(-1), 3}, {at(9), 2}, {at(12), 0}}, want: time.Second},
		"surge: more than the size":      {levels: []level{{at(-1), 3}, {at(1), 4}, {at(2), 3}}, want: 0},
	} {
		r := &recorder{levels: tc.levels}
		if got := r.shortfall(t0, at(10), 3); got != tc.want {
			t.Errorf("%s: shortfall %v, want %v", name, got, tc.want)
		}
	}
}
