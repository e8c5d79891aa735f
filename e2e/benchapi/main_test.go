package main

import (
	"math"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parse(t *testing.T, text string) metrics {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	f, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const before = `# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{verb="POST",resource="pods",subresource="",le="0.005"} 10
apiserver_request_duration_seconds_bucket{verb="POST",resource="pods",subresource="",le="0.025"} 20
apiserver_request_duration_seconds_bucket{verb="POST",resource="pods",subresource="",le="0.1"} 20
apiserver_request_duration_seconds_bucket{verb="POST",resource="pods",subresource="",le="+Inf"} 20
apiserver_request_duration_seconds_sum{verb="POST",resource="pods",subresource=""} 0.2
apiserver_request_duration_seconds_count{verb="POST",resource="pods",subresource=""} 20
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",subresource="",le="0.005"} 5
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",subresource="",le="0.025"} 5
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",subresource="",le="0.1"} 5
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",subresource="",le="+Inf"} 5
apiserver_request_duration_seconds_sum{verb="GET",resource="pods",subresource=""} 0.01
apiserver_request_duration_seconds_count{verb="GET",resource="pods",subresource=""} 5
# TYPE apiserver_request_total counter
apiserver_request_total{verb="DELETE",resource="pods",subresource="",code="403"} 4
apiserver_request_total{verb="PUT",resource="leases",subresource="",code="200"} 100
apiserver_request_total{verb="GET",resource="pods",subresource="",code="200"} 7
`

// after: 100 more pod creates, 50 within 5 ms, 40 more within 25 ms, 10
// within 100 ms; 6 more refused deletes; leases and reads move too.
const after = `# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{verb="POST",resource="pods",subresource="",le="0.005"} 60
apiserver_request_duration_seconds_bucket{verb="POST",resource="pods",subresource="",le="0.025"} 110
apiserver_request_duration_seconds_bucket{verb="POST",resource="pods",subresource="",le="0.1"} 120
apiserver_request_duration_seconds_bucket{verb="POST",resource="pods",subresource="",le="+Inf"} 120
apiserver_request_duration_seconds_sum{verb="POST",resource="pods",subresource=""} 1.2
apiserver_request_duration_seconds_count{verb="POST",resource="pods",subresource=""} 120
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",subresource="",le="0.005"} 500
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",subresource="",le="0.025"} 500
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",subresource="",le="0.1"} 500
apiserver_request_duration_seconds_bucket{verb="GET",resource="pods",subresource="",le="+Inf"} 500
apiserver_request_duration_seconds_sum{verb="GET",resource="pods",subresource=""} 1
apiserver_request_duration_seconds_count{verb="GET",resource="pods",subresource=""} 500
# TYPE apiserver_request_total counter
apiserver_request_total{verb="DELETE",resource="pods",subresource="",code="403"} 10
apiserver_request_total{verb="POST",resource="events",subresource="",code="201"} 3
apiserver_request_total{verb="PUT",resource="leases",subresource="",code="200"} 200
apiserver_request_total{verb="GET",resource="pods",subresource="",code="200"} 70
`

func TestHistogramDelta(t *testing.T) {
	b, a := parse(t, before), parse(t, after)
	h := a.histogram(requestDuration, podCreate).minus(b.histogram(requestDuration, podCreate))
	if h.count != 100 {
		t.Fatalf("count %v, want the 100 creates between the scrapes (not the reads)", h.count)
	}
	for _, tc := range []struct{ q, want float64 }{
		{0.5, 0.005},   // the 50th of 100 is the last of the first bucket
		{0.7, 0.015},   // 20 of the 40 in (5 ms, 25 ms]: half way
		{0.99, 0.0925}, // 9 of the 10 in (25 ms, 100 ms]: 25 + 0.9 x 75 ms
	} {
		if got := h.quantile(tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := h.mean(); math.Abs(got-0.01) > 1e-9 {
		t.Errorf("mean = %v, want 1 s / 100", got)
	}
	if got := h.within(0.025); got != 0.9 {
		t.Errorf("within 25 ms = %v, want 0.9", got)
	}
	if q := (histogram{}).quantile(0.5); !math.IsNaN(q) {
		t.Errorf("an empty histogram's quantile = %v, want NaN", q)
	}
}

func TestWrites(t *testing.T) {
	got := parse(t, after).writes(parse(t, before))
	want := map[string]float64{"DELETE pods 403": 6, "POST events 201": 3}
	if len(got) != len(want) {
		t.Fatalf("writes = %v, want %v (no reads, no leases)", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("writes[%q] = %v, want %v", k, got[k], v)
		}
	}
}
