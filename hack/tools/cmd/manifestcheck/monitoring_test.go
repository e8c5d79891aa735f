package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// The chart's monitoring: its PrometheusRule and its Grafana dashboard, off
// by default (TestShippedManifests renders the defaults, without them).
const (
	dashboardFile = "manifests/charts/inplace/dashboards/inplace.json"
	runbookFile   = "docs/runbook.md"
	alertTests    = "testdata/alerts.test.yaml"
)

// prometheusOwn are the series Prometheus makes itself for every target,
// which the manager does not export.
var prometheusOwn = []string{"up"}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// renderMonitoring renders the chart with the PrometheusRule and the
// dashboard on, and returns the rule's groups and the dashboard ConfigMap.
func renderMonitoring(t *testing.T, root string) (groups []any, dashboard Object) {
	t.Helper()
	c := &Checker{Root: root, Helm: os.Getenv("HELM")}
	if c.Helm == "" {
		c.Helm = filepath.Join(root, ".cache", "bin", "helm")
	}
	objs, err := c.helm([]string{"metrics.prometheusRule.enabled=true", "metrics.grafanaDashboard.enabled=true"})
	if err != nil {
		t.Fatalf("rendering the chart: %v (make test-manifests builds helm into .cache/bin)", err)
	}
	for _, o := range objs {
		switch o["kind"] {
		case "PrometheusRule":
			spec, _ := o["spec"].(map[string]any)
			groups, _ = spec["groups"].([]any)
		case "ConfigMap":
			if md, _ := o["metadata"].(map[string]any); md["name"] == "inplace-grafana-dashboard" {
				dashboard = o
			}
		}
	}
	if len(groups) == 0 || dashboard == nil {
		t.Fatalf("the chart rendered no PrometheusRule groups (%d) or no dashboard ConfigMap (%v)", len(groups), dashboard != nil)
	}
	return groups, dashboard
}

// alertRule is one rule of the rendered groups.
type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alertRules(t *testing.T, groups []any) []alertRule {
	t.Helper()
	b, err := json.Marshal(groups)
	if err != nil {
		t.Fatal(err)
	}
	var gs []struct {
		Rules []alertRule `json:"rules"`
	}
	if err := json.Unmarshal(b, &gs); err != nil {
		t.Fatal(err)
	}
	var rules []alertRule
	for _, g := range gs {
		rules = append(rules, g.Rules...)
	}
	return rules
}

// TestAlerts checks the chart's alerts with promtool (check rules, then
// the unit tests of testdata/alerts.test.yaml on them), and that each alert
// says what a reader needs: a severity, a summary, a description, a
// runbook_url whose anchor is a heading of docs/runbook.md; and that each
// has a test case that fires it and one that does not. It needs
// .cache/bin/promtool (make test-manifests builds it).
func TestAlerts(t *testing.T) {
	root := repoRoot(t)
	groups, _ := renderMonitoring(t, root)
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		promtool = filepath.Join(root, ".cache", "bin", "promtool")
	}

	dir := t.TempDir()
	rules, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "inplace.rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"check", "rules", "inplace.rules.yaml"}, {"test", "rules", "alerts.test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v (make test-manifests builds promtool into .cache/bin)\n%s", strings.Join(args, " "), err, out)
		}
	}

	runbook, err := os.ReadFile(filepath.Join(root, runbookFile))
	if err != nil {
		t.Fatal(err)
	}
	anchors := headingAnchors(runbook)
	fires, quiet := testedAlerts(t, tests)
	for _, r := range alertRules(t, groups) {
		if r.Alert == "" {
			continue
		}
		if r.Labels["severity"] == "" {
			t.Errorf("%s: no severity label", r.Alert)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		_, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
		if anchor != strings.ToLower(r.Alert) || !anchors[anchor] {
			t.Errorf("%s: runbook_url %q: want #%s, a heading of %s", r.Alert, r.Annotations["runbook_url"], strings.ToLower(r.Alert), runbookFile)
		}
		if !fires[r.Alert] {
			t.Errorf("%s: no case of %s fires it", r.Alert, alertTests)
		}
		if !quiet[r.Alert] {
			t.Errorf("%s: no case of %s expects it silent", r.Alert, alertTests)
		}
	}
}

// testedAlerts returns the alerts some case of a promtool test file
// expects firing, and those some case expects silent.
func testedAlerts(t *testing.T, file []byte) (fires, quiet map[string]bool) {
	t.Helper()
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(file, &f); err != nil {
		t.Fatalf("%s: %v", alertTests, err)
	}
	fires, quiet = map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	return fires, quiet
}

var headingLine = regexp.MustCompile(`(?m)^#{1,6} +(.+?) *$`)

// headingAnchors returns the anchors GitHub gives a Markdown file's
// headings: lower case, spaces as hyphens, other punctuation dropped.
func headingAnchors(md []byte) map[string]bool {
	anchors := map[string]bool{}
	for _, m := range headingLine.FindAllSubmatch(md, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(string(m[1])) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('0' <= r && r <= '9'):
				b.WriteRune(r)
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}

// grafanaVariable is a Grafana variable in a query: $name, ${name} or
// ${name:format}.
var grafanaVariable = regexp.MustCompile(`\$\{[a-zA-Z0-9_:]+\}|\$[a-zA-Z0-9_]+`)

// asPromQL replaces a query's Grafana variables with what PromQL parses:
// a duration for the interval ones, a word for the others (all of which
// the dashboard uses inside quoted label values).
func asPromQL(q string) string {
	return grafanaVariable.ReplaceAllStringFunc(q, func(v string) string {
		if strings.HasPrefix(strings.Trim(v, "${}"), "__") {
			return "5m"
		}
		return "x"
	})
}

// dashboardQueries returns every PromQL query of a Grafana dashboard: its
// panels' targets (rows' panels too) and its query variables'
// label_values() selectors, each with where it is.
func dashboardQueries(t *testing.T, d map[string]any) map[string]string {
	t.Helper()
	queries := map[string]string{}
	var walk func(panels []any)
	walk = func(panels []any) {
		for _, p := range panels {
			panel, _ := p.(map[string]any)
			if ds, _ := panel["datasource"].(map[string]any); panel["type"] != "row" && ds["uid"] != "${datasource}" {
				t.Errorf("panel %q: datasource %v, want the variable ${datasource}", panel["title"], panel["datasource"])
			}
			targets, _ := panel["targets"].([]any)
			for _, tg := range targets {
				target, _ := tg.(map[string]any)
				expr, _ := target["expr"].(string)
				queries[expr] = "panel " + panel["title"].(string)
			}
			if sub, ok := panel["panels"].([]any); ok {
				walk(sub)
			}
		}
	}
	panels, _ := d["panels"].([]any)
	walk(panels)
	templating, _ := d["templating"].(map[string]any)
	vars, _ := templating["list"].([]any)
	for _, v := range vars {
		variable, _ := v.(map[string]any)
		if variable["type"] != "query" {
			continue
		}
		def, _ := variable["definition"].(string)
		inner, ok := strings.CutPrefix(def, "label_values(")
		if i := strings.LastIndex(inner, ","); ok && i > 0 {
			queries[inner[:i]] = "variable " + variable["name"].(string)
		} else {
			t.Errorf("variable %v: %q is not label_values(<selector>, <label>)", variable["name"], def)
		}
	}
	return queries
}

// TestDashboard checks the Grafana dashboard: valid JSON, a Prometheus
// data source variable every panel queries through, every query PromQL,
// and the chart's ConfigMap holding the file as it is.
func TestDashboard(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	templating, _ := d["templating"].(map[string]any)
	vars, _ := templating["list"].([]any)
	if !slices.ContainsFunc(vars, func(v any) bool {
		m, _ := v.(map[string]any)
		return m["name"] == "datasource" && m["type"] == "datasource" && m["query"] == "prometheus"
	}) {
		t.Errorf("%s: no variable datasource of type datasource, query prometheus", dashboardFile)
	}
	queries := dashboardQueries(t, d)
	if len(queries) == 0 {
		t.Fatalf("%s: no query found", dashboardFile)
	}
	p := parser.NewParser(parser.Options{})
	for q, where := range queries {
		if _, err := p.ParseExpr(asPromQL(q)); err != nil {
			t.Errorf("%s: %s: %q: %v", dashboardFile, where, q, err)
		}
	}

	_, cm := renderMonitoring(t, root)
	data, _ := cm["data"].(map[string]any)
	if got, _ := data["inplace.json"].(string); strings.TrimSpace(got) != strings.TrimSpace(string(raw)) {
		t.Errorf("the ConfigMap inplace-grafana-dashboard does not hold %s as it is", dashboardFile)
	}
}

// TestMonitoringMetricsExported wants every metric the alerts and the
// dashboard query to be one inplace-manager exports (its own or
// controller-runtime's), so that renaming a metric in the code breaks the
// build here rather than an alert in production. hack/metricnames, in the
// main module, asks the manager's registry.
func TestMonitoringMetricsExported(t *testing.T) {
	root := repoRoot(t)
	groups, _ := renderMonitoring(t, root)
	p := parser.NewParser(parser.Options{})
	names := map[string][]string{} // metric name -> where
	collect := func(where, q string) {
		expr, err := p.ParseExpr(asPromQL(q))
		if err != nil {
			t.Errorf("%s: %q: %v", where, q, err)
			return
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if vs, ok := n.(*parser.VectorSelector); ok {
				if vs.Name == "" {
					t.Errorf("%s: a selector without a metric name: %s", where, vs)
				}
				names[vs.Name] = append(names[vs.Name], where)
			}
			return nil
		})
	}
	for _, r := range alertRules(t, groups) {
		collect("alert "+r.Alert, r.Expr)
	}
	raw, err := os.ReadFile(filepath.Join(root, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	for q, where := range dashboardQueries(t, d) {
		collect("dashboard "+where, q)
	}
	var ask bytes.Buffer
	for name := range names {
		if !slices.Contains(prometheusOwn, name) {
			ask.WriteString(name + "\n")
		}
	}
	cmd := exec.Command("go", "run", "./hack/metricnames")
	cmd.Dir = root
	cmd.Stdin = &ask
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	for _, name := range strings.Fields(string(out)) {
		t.Errorf("metric %s (%s): not exported by inplace-manager", name, strings.Join(slices.Compact(slices.Sorted(slices.Values(names[name]))), ", "))
	}
	if exit, ok := err.(*exec.ExitError); err != nil && (!ok || exit.ExitCode() != 1 || len(out) == 0) {
		t.Fatalf("go run ./hack/metricnames: %v\n%s", err, stderr.String())
	}
}
