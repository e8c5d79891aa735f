package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the load's servers: the load runs
// this program again (os.Executable) to serve.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve-manager":
			os.Exit(serveManager(os.Args[2:]))
		case "serve-floor":
			os.Exit(serveFloor(os.Args[2:]))
		}
	}
	os.Exit(m.Run())
}

func TestQuantile(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i))
	}
	for q, want := range map[float64]time.Duration{0.5: 500, 0.99: 990, 0.999: 999, 1: 1000, 0: 1} {
		if got := quantile(lat, q); got != want {
			t.Errorf("quantile(1..1000, %v) = %v, want %v", q, got, want)
		}
	}
	if got := quantile([]time.Duration{7}, 0.999); got != 7 {
		t.Errorf("quantile of one = %v, want 7", got)
	}
}

func TestMixFollowsWeightsAndSeed(t *testing.T) {
	scens := []scenario{{weight: 75}, {weight: 25}}
	a, b := mix(scens, 10000, 1), mix(scens, 10000, 1)
	counts := [2]int{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("the same seed gave another sequence at %d", i)
		}
		counts[a[i]]++
	}
	if counts[0] < 7300 || counts[0] > 7700 {
		t.Errorf("weight 75 of 100 drawn %d times of 10000", counts[0])
	}
}

func TestAnswerOf(t *testing.T) {
	for body, want := range map[string]answer{
		`{"response":{"uid":"u","allowed":true,"patch":"W10=","patchType":"JSONPatch"}}`: {allowed: true, patched: true},
		`{"response":{"uid":"u","allowed":true,"status":{"metadata":{},"code":200}}}`:    {allowed: true},
		`{"response":{"uid":"u","allowed":false,"status":{"code":403}}}`:                 {},
	} {
		if got := answerOf([]byte(body)); got != want {
			t.Errorf("answerOf(%s) = %+v, want %+v", body, got, want)
		}
	}
}

// TestLoad runs the whole load briefly: the API server, the fixture, both
// servers, every request answered as expected.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server and two webhook servers")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "report.txt")
	o := options{rates: []int{50}, duration: time.Second, rounds: 1, timeout: 2 * time.Second, out: out, workDir: dir}
	if err := measure(o); err != nil {
		t.Fatal(err)
	}
	report, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(report), "manager/floor") || strings.Contains(string(report), "error:") {
		t.Errorf("report:\n%s", report)
	}
}
