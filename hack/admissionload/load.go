package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// sample is one request's outcome.
type sample struct {
	scenario int
	// latency runs from the request's scheduled send time to the end of
	// its response: time spent waiting for a slow server counts.
	latency time.Duration
	err     string // "" when the answer was the expected one
}

// segment is what one server did under load for one stretch of time.
type segment struct {
	samples []sample
	// lag is how late the load sent its latest request: its own delay,
	// counted in the latencies like the server's.
	lag time.Duration
	// cpu is the CPU time the server used; apiserverCPU that of the API
	// server meanwhile, loadCPU the load's own; apiRequests the requests the
	// manager made to the API server.
	cpu, apiserverCPU, loadCPU time.Duration
	apiRequests                float64
	elapsed                    time.Duration
}

// mix returns n scenario indices drawn by weight, the same for the same seed.
func mix(scens []scenario, n int, seed uint64) []int {
	total := 0
	for _, s := range scens {
		total += s.weight
	}
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	out := make([]int, n)
	for i := range out {
		r := rng.IntN(total)
		for j, s := range scens {
			if r < s.weight {
				out[i] = j
				break
			}
			r -= s.weight
		}
	}
	return out
}

// bufs are the response buffers the load reuses.
var bufs = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 4096)) }}

// drive sends the requests of seq to srv at a fixed rate, open loop: each
// is sent at its scheduled time whatever the answers to the earlier ones,
// and timed from that scheduled time, so that a server that falls behind
// is charged for the queue it makes (no coordinated omission).
func drive(ctx context.Context, srv *server, scens []scenario, want func(scenario) answer, seq []int, rate int) segment {
	interval := time.Second / time.Duration(rate)
	seg := segment{samples: make([]sample, len(seq))}
	var wg sync.WaitGroup
	begin := time.Now().Add(time.Millisecond)
	for i, sc := range seq {
		at := begin.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		} else if -d > seg.lag {
			seg.lag = -d
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			seg.samples[i] = send(ctx, srv, scens[sc], want(scens[sc]), at)
			seg.samples[i].scenario = sc
		}()
	}
	wg.Wait()
	seg.elapsed = time.Since(begin)
	return seg
}

// send posts one review and checks the answer cheaply: the response's
// "allowed" and whether it carries a patch.
func send(ctx context.Context, srv *server, sc scenario, want answer, at time.Time) sample {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.url+sc.path, bytes.NewReader(sc.body))
	if err != nil {
		return sample{latency: time.Since(at), err: err.Error()}
	}
	req.Header["Content-Type"] = []string{"application/json"}
	resp, err := srv.client.Do(req)
	if err != nil {
		return sample{latency: time.Since(at), err: "transport: " + shortError(err)}
	}
	buf := bufs.Get().(*bytes.Buffer)
	defer bufs.Put(buf)
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	s := sample{latency: time.Since(at)}
	switch {
	case err != nil:
		s.err = "reading: " + shortError(err)
	case resp.StatusCode != http.StatusOK:
		s.err = fmt.Sprintf("HTTP %d", resp.StatusCode)
	default:
		if got := answerOf(buf.Bytes()); got != want {
			s.err = fmt.Sprintf("%v: %s, want %s", errWrongAnswer, got, want)
		}
	}
	return s
}

var (
	allowedTrue = []byte(`"allowed":true`)
	patchKey    = []byte(`"patch":`)
)

// answerOf reads an AdmissionReview response's verdict (encoding/json's
// compact output, as controller-runtime writes it).
func answerOf(body []byte) answer {
	return answer{allowed: bytes.Contains(body, allowedTrue), patched: bytes.Contains(body, patchKey)}
}

// once sends one request of the scenario and returns the answer and the
// body, to check the servers before the load.
func once(ctx context.Context, srv *server, sc scenario) (answer, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.url+sc.path, bytes.NewReader(sc.body))
	if err != nil {
		return answer{}, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.client.Do(req)
	if err != nil {
		return answer{}, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return answer{}, body, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return answerOf(body), body, nil
}

func shortError(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// stats are the figures of a set of samples.
type stats struct {
	n, errors           int
	p50, p99, p999, max time.Duration
}

func statsOf(samples []sample, keep func(sample) bool) stats {
	lat := make([]time.Duration, 0, len(samples))
	var st stats
	for _, s := range samples {
		if keep != nil && !keep(s) {
			continue
		}
		lat = append(lat, s.latency)
		if s.err != "" {
			st.errors++
		}
	}
	st.n = len(lat)
	if st.n == 0 {
		return st
	}
	slices.Sort(lat)
	st.p50, st.p99, st.p999, st.max = quantile(lat, 0.50), quantile(lat, 0.99), quantile(lat, 0.999), lat[len(lat)-1]
	return st
}

// quantile is the nearest-rank quantile q of sorted: the smallest value
// that at least q of the values do not exceed.
func quantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q*float64(len(sorted)) - 1e-9))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}
