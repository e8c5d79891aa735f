// Command metricnames reads metric names, one a line, on its standard input
// and prints those inplace-manager does not export: neither its own metrics
// nor controller-runtime's (reconciles, work queues, webhooks, the API
// client, the Go runtime and the process), all in controller-runtime's
// metrics.Registry. A histogram's or a summary's series (_bucket, _sum,
// _count) count as its name. It exits 1 when it printed any.
//
// hack/tools/cmd/manifestcheck runs it on the names the chart's alerts and
// Grafana dashboard query, so that a metric renamed in the code fails
// make test-manifests. It lives in the main module because it imports the
// manager, as internal/docscheck's metric check does.
package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	// The manager, with every package that registers a metric.
	_ "github.com/inplace-dev/inplace/cmd/inplace-manager/app"
)

func main() {
	unknown := 0
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		name := strings.TrimSpace(in.Text())
		if name == "" || Exported(name) {
			continue
		}
		fmt.Println(name)
		unknown++
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "metricnames:", err)
		os.Exit(2)
	}
	if unknown > 0 {
		os.Exit(1)
	}
}

var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// Exported reports whether the manager's registry holds the metric of a
// series name.
func Exported(name string) bool {
	if !metricName.MatchString(name) {
		return false // the registry refuses it whether it holds it or not
	}
	if registered(name) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && registered(base) {
			return true
		}
	}
	return false
}

// probe is a collector of one descriptor, to ask the registry about a name.
type probe struct{ desc *prometheus.Desc }

func (p probe) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }
func (p probe) Collect(chan<- prometheus.Metric)    {}

// registered reports whether the registry holds a metric of that name: it
// refuses a second descriptor of a name it holds (other help, other
// labels).
func registered(name string) bool {
	p := probe{prometheus.NewDesc(name, "metricnames probe", nil, nil)}
	if err := metrics.Registry.Register(p); err != nil {
		return true
	}
	metrics.Registry.Unregister(p)
	return false
}
