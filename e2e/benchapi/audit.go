package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// auditEvent is what this reads of an audit.k8s.io/v1 Event: the e2e
// cluster's API server records each pod create (e2e/cluster/up.sh).
type auditEvent struct {
	Stage     string           `json:"stage"`
	Verb      string           `json:"verb"`
	Received  metav1.MicroTime `json:"requestReceivedTimestamp"`
	At        metav1.MicroTime `json:"stageTimestamp"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int32 `json:"code"`
	} `json:"responseStatus"`
}

// auditedCreates returns how long each pod create of namespace took, from
// its receipt to its response's end as the API server recorded them in the
// audit log at path (and its one rotated file): only the creates that
// succeeded.
func auditedCreates(path, namespace string) ([]time.Duration, error) {
	var took []time.Duration
	found := false
	for _, p := range []string{rotated(path), path} {
		if p == "" {
			continue
		}
		data, err := os.ReadFile(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		found = true
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
		for sc.Scan() {
			line := sc.Bytes()
			if !bytes.Contains(line, []byte(namespace)) {
				continue
			}
			var ev auditEvent
			if err := json.Unmarshal(line, &ev); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if ev.Stage != "ResponseComplete" || ev.Verb != "create" || ev.ObjectRef == nil ||
				ev.ObjectRef.Resource != "pods" || ev.ObjectRef.Subresource != "" || ev.ObjectRef.Namespace != namespace ||
				ev.ResponseStatus == nil || ev.ResponseStatus.Code != 201 {
				continue
			}
			took = append(took, ev.At.Sub(ev.Received.Time))
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	if !found {
		return nil, fmt.Errorf("no audit log at %s: start the cluster with this version of e2e/cluster/up.sh", path)
	}
	return took, nil
}

// rotated is the name of the log the API server rotated out
// (--audit-log-maxbackup=1: audit-<time>.log beside audit.log), or "".
func rotated(path string) string {
	ext := filepath.Ext(path)
	matches, _ := filepath.Glob(strings.TrimSuffix(path, ext) + "-*" + ext)
	if len(matches) == 0 {
		return ""
	}
	slices.Sort(matches)
	return matches[len(matches)-1]
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
