// Command gatewrites counts the manager's writes that open a pod's
// InPlaceUpdateReady gate, as the e2e cluster's API server recorded them in
// its audit log (e2e/cluster/up.sh keeps every write of a pod's status with
// its body), and how many it refused as conflicts (409: the pod changed
// since the writer read it). Writes within -creation of the pod's first
// status write are counted as its creation's, the rest as an update's.
//
// Run it after make e2e (E2E_KEEP_CLUSTER=1) or any test on the cluster:
// make gate-writes, with GATE_WRITES_SINCE to count one run's writes only.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
	"github.com/inplace-dev/inplace/inplace"
)

func main() {
	path := flag.String("audit-log", ".cache/cluster/logs/audit.log", "the API server's audit log (the one it rotated out is read first)")
	since := flag.String("since", "", "count only the writes received at or after this time (RFC 3339); the first status write of a pod is looked for before it too")
	until := flag.String("until", "", "count only the writes received before this time (RFC 3339)")
	creation := flag.Duration("creation", 3*time.Second, "how long after a pod's first status write a gate write is counted as its creation's")
	manager := flag.String("manager", ":inplace-manager", "the suffix of the manager's user name (its service account)")
	flag.Parse()
	from, to := parseTime("since", *since), parseTime("until", *until)
	c, err := count(*path, from, to, *creation, *manager)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gatewrites: %v\n", err)
		os.Exit(1)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "\tpods\tgate-open writes\tper pod\tanswered 409\tanswered 200\tother")
	for _, p := range []*phase{&c.creation, &c.update} {
		fmt.Fprintf(w, "%s\t%d\t%d\t%.2f\t%d (%.0f%%)\t%d\t%d\n", p.name, len(p.pods), p.writes, ratio(p.writes, len(p.pods)),
			p.conflicts, 100*ratio(p.conflicts, p.writes), p.ok, p.writes-p.conflicts-p.ok)
	}
	w.Flush()
}

// parseTime parses the flag's RFC 3339 time; "" is the zero time.
func parseTime(name, value string) time.Time {
	if value == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gatewrites: -%s: %v\n", name, err)
		os.Exit(2)
	}
	return t
}

type phase struct {
	name                  string
	pods                  map[string]bool
	writes, conflicts, ok int
}

type counts struct{ creation, update phase }

func count(path string, since, until time.Time, creation time.Duration, manager string) (*counts, error) {
	c := &counts{creation: phase{name: "at creation", pods: map[string]bool{}}, update: phase{name: "later (updates)", pods: map[string]bool{}}}
	first := map[string]time.Time{}
	err := e2ekit.ReadAudit(path, []byte(`"subresource":"status"`), func(e *e2ekit.AuditEvent) {
		if e.Stage != "ResponseComplete" || e.ObjectRef == nil || e.ObjectRef.Resource != "pods" || e.ObjectRef.Subresource != "status" ||
			(e.Verb != "patch" && e.Verb != "update") {
			return
		}
		key := e.ObjectRef.Namespace + "/" + e.ObjectRef.Name
		at := e.Received.Time
		if _, ok := first[key]; !ok {
			first[key] = at
		}
		if at.Before(since) || !until.IsZero() && !at.Before(until) || !strings.HasSuffix(e.User.Username, manager) || !opensGate(e) {
			return
		}
		p := &c.update
		if at.Sub(first[key]) <= creation {
			p = &c.creation
		}
		p.pods[key] = true
		p.writes++
		switch e.Code() {
		case 409:
			p.conflicts++
		case 200:
			p.ok++
		}
	})
	return c, err
}

// opensGate reports whether a write of a pod's status sets
// InPlaceUpdateReady True.
func opensGate(e *e2ekit.AuditEvent) bool {
	w, ok := e.StatusWrite()
	if !ok {
		return false
	}
	for _, cond := range w.Status.Conditions {
		if cond.Type == inplace.ConditionInPlaceUpdateReady && cond.Status == "True" {
			return true
		}
	}
	return false
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
