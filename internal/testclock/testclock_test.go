package testclock

import (
	"testing"
	"time"
)

func TestInstantsAreAYearApart(t *testing.T) {
	before := time.Now().Add(-time.Second)
	got := Instants()
	if len(got) != 3 {
		t.Fatalf("%d instants, want 3", len(got))
	}
	today := got[0].Time
	if today.Before(before.Truncate(time.Second)) || today.After(time.Now()) {
		t.Errorf("today = %v, want the real time to the second", today)
	}
	for _, at := range got {
		if at.Time.Location() != time.UTC || at.Time.Nanosecond() != 0 {
			t.Errorf("%s = %v, want UTC to the whole second", at.Name, at.Time)
		}
	}
	if d := got[1].Time.Sub(today); d < 365*24*time.Hour {
		t.Errorf("a year ahead is %v ahead", d)
	}
	if d := today.Sub(got[2].Time); d < 365*24*time.Hour {
		t.Errorf("a year back is %v back", d)
	}
}

func TestRunRunsEachInstant(t *testing.T) {
	var seen []time.Time
	Run(t, func(t *testing.T, now time.Time) { seen = append(seen, now) })
	if len(seen) != 3 || seen[1].Sub(seen[0]) < 365*24*time.Hour || seen[0].Sub(seen[2]) < 365*24*time.Hour {
		t.Errorf("ran at %v, want today, a year ahead and a year back", seen)
	}
}
