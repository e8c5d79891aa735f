package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
)

// auditedCreates returns how long each pod create of namespace took, from
// its receipt to its response's end as the API server recorded them in the
// audit log at path (and its one rotated file): only the creates that
// succeeded, not dry runs.
func auditedCreates(path, namespace string) ([]time.Duration, error) {
	var took []time.Duration
	err := e2ekit.ReadAudit(path, []byte(namespace), func(ev *e2ekit.AuditEvent) {
		if ev.Stage != "ResponseComplete" || ev.Verb != "create" || ev.ObjectRef == nil ||
			ev.ObjectRef.Resource != "pods" || ev.ObjectRef.Subresource != "" || ev.ObjectRef.Namespace != namespace ||
			ev.Code() != 201 || strings.Contains(ev.RequestURI, "dryRun=") {
			return
		}
		took = append(took, ev.At.Sub(ev.Received.Time))
	})
	return took, err
}

// durations are exact samples, where the histograms have buckets.
type durations []time.Duration

func (d durations) quantile(q float64) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)].Seconds()
}

func (d durations) mean() float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return (sum / time.Duration(len(d))).Seconds()
}

func (d durations) within(le time.Duration) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	n := 0
	for _, x := range d {
		if x <= le {
			n++
		}
	}
	return float64(n) / float64(len(d))
}

func (d durations) row() string {
	return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%s", len(d), ms(d.quantile(0.5)), ms(d.quantile(0.9)), ms(d.quantile(0.99)),
		ms(d.quantile(1)), ms(d.mean()), pct(d.within(5*time.Millisecond)))
}
