// Command manifestcheck renders what users install, the kustomize
// compositions of manifests/ and the Helm chart manifests/charts/inplace,
// and fails when they disagree or when their permissions or image are not
// what the project ships:
//
//   - parity: for each composition of the base with components, the chart
//     rendered with the values of the same settings gives the same objects
//     (compared decoded, per kind, namespace and name; the whitespace of
//     CEL expressions, which CEL ignores, collapsed). Helm's own labels
//     (helm.sh/chart, app.kubernetes.io/managed-by, .../instance,
//     .../version) and hook annotations (helm.sh/hook*) are removed from
//     the chart's objects first: they say who installed an object, not what
//     it does.
//   - permissions: no wildcard in any Role or ClusterRole, Secrets in no
//     ClusterRole, and in Roles of the manager's namespace only.
//   - image: the manager's image is the release of VERSION, not :latest.
//
// make verify runs it; make test runs its tests, which run the same checks,
// and check the chart's alerts and Grafana dashboard, off by default
// (monitoring_test.go: promtool check and test rules, every query PromQL,
// every metric one the manager exports).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	var c Checker
	flag.StringVar(&c.Root, "root", "../..", "the repository's root")
	flag.StringVar(&c.Kustomize, "kustomize", "", "the kustomize binary (default: <root>/.cache/bin/kustomize)")
	flag.StringVar(&c.Helm, "helm", "", "the helm binary (default: <root>/.cache/bin/helm)")
	compositions := flag.String("compositions", strings.Join(DefaultCompositions, " "),
		"space-separated compositions, each a comma-separated list of components of manifests/components (\"\" for the base alone)")
	flag.Parse()
	c.Compositions = strings.Fields(*compositions)
	problems, err := c.Check()
	if err != nil {
		fmt.Fprintln(os.Stderr, "manifestcheck:", err)
		os.Exit(1)
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "manifestcheck: %d problem(s)\n", len(problems))
		os.Exit(1)
	}
	fmt.Printf("manifestcheck: the chart and %d kustomize composition(s) agree; permissions and image checked\n", len(c.Compositions)+1)
}
