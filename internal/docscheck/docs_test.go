package docscheck_test

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	// The manager, with every package that registers a metric.
	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/internal/docscheck"
)

// The repository, and the page the code is checked against.
const (
	root      = "../.."
	reference = "docs/reference.md"
)

var repo = os.DirFS(root)

// markdownFiles returns every Markdown file of the repository but those in
// hidden directories (.cache, .git) and build output.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := fs.WalkDir(repo, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && (strings.HasPrefix(d.Name(), ".") || p == "bin") {
			return fs.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(files, "README.md") || !slices.Contains(files, reference) {
		t.Fatalf("README.md or %s not found among %v", reference, files)
	}
	return files
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(repo, name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLinksResolve(t *testing.T) {
	for _, p := range docscheck.CheckLinks(repo, markdownFiles(t)) {
		t.Error(p)
	}
}

// docsPath matches a path into docs/ as Go code names it in a comment.
var docsPath = regexp.MustCompile(`\bdocs/[A-Za-z0-9_./-]*[A-Za-z0-9_-](?:\.md)?(?:#[a-z0-9_-]+)?`)

// TestGodocLinksResolve: a doc comment that sends the reader to docs/ (a
// design record, say) names a file, and a heading, that exist.
func TestGodocLinksResolve(t *testing.T) {
	var files []string
	var sources strings.Builder
	err := fs.WalkDir(repo, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != "." && (strings.HasPrefix(d.Name(), ".") || p == "bin") {
			return fs.SkipDir
		}
		if d.IsDir() || path.Ext(p) != ".go" || strings.HasPrefix(p, "internal/docscheck/") {
			return nil
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each file's mentions become links of one Markdown page at the root.
	for _, f := range files {
		for n, l := range strings.Split(read(t, f), "\n") {
			for _, m := range docsPath.FindAllString(l, -1) {
				fmt.Fprintf(&sources, "%s:%d [x](%s)\n", f, n+1, m)
			}
		}
	}
	page := sources.String()
	lines := strings.Split(page, "\n")
	for _, p := range docscheck.CheckLinks(mapFS{repo, "godoc.md", page}, []string{"godoc.md"}) {
		where, _, _ := strings.Cut(lines[p.Line-1], " ")
		t.Errorf("%s: %s", where, p.Msg)
	}
}

// mapFS is a file system with one more file.
type mapFS struct {
	fs.FS
	name, data string
}

func (m mapFS) Open(name string) (fs.File, error) {
	if name == m.name {
		return fstest.MapFS{name: {Data: []byte(m.data)}}.Open(name)
	}
	return m.FS.Open(name)
}

// makeCommand finds a make command in code: what follows "make" up to the
// end of the command (a comment, a closing parenthesis, a pipe...).
var makeCommand = regexp.MustCompile("(?:^|[^a-zA-Z0-9_./-])make\\s+([^#);&|`]*)")

// targetName matches a make target's name.
var targetName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// shellComment is where a comment begins in a line of a shell session.
var shellComment = regexp.MustCompile(`(?:^|\s)#`)

// makeTargetsIn returns the targets of the make commands in the code spans and
// code blocks of a Markdown file, with their lines.
func makeTargetsIn(src string) map[string]int {
	out := map[string]int{}
	scan := func(line int, code string) {
		for _, m := range makeCommand.FindAllStringSubmatch(code, -1) {
			for _, word := range strings.Fields(m[1]) {
				if strings.HasPrefix(word, "-") || strings.Contains(word, "=") {
					continue
				}
				if targetName.MatchString(word) {
					if _, seen := out[word]; !seen {
						out[word] = line
					}
					continue
				}
				break
			}
		}
	}
	for _, span := range docscheck.ProseCodeSpans(src) {
		scan(span.Line, span.Text)
	}
	for n, l := range docscheck.CodeLines(src) {
		if i := shellComment.FindStringIndex(l); i != nil {
			l = l[:i[0]]
		}
		scan(n, l)
	}
	return out
}

func makefiles(t *testing.T) docscheck.Makefiles {
	t.Helper()
	m, err := docscheck.ReadMakefiles(repo, "Makefile", "hack/cluster.mk")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMakeCommandsExist(t *testing.T) {
	m := makefiles(t)
	for _, file := range markdownFiles(t) {
		targets := makeTargetsIn(read(t, file))
		for _, target := range sortedKeys(targets) {
			if !m.Targets[target] {
				t.Errorf("%s:%d: make %s: no such target in Makefile or hack/cluster.mk", file, targets[target], target)
			}
		}
	}
}

// documented is a name in the first column of a table of the reference.
type documented struct {
	name string
	line int
}

// referenceNames returns the names the first column of the tables under a
// heading of the reference gives, each code span a name, with trim applied.
func referenceNames(t *testing.T, anchor string, trim func(string) string) []documented {
	t.Helper()
	tables, err := docscheck.SectionTables(read(t, reference), anchor)
	if err != nil {
		t.Fatalf("%s: %v", reference, err)
	}
	var out []documented
	for _, tb := range tables {
		for _, r := range tb.Rows {
			spans := docscheck.CodeSpans(r.Cells[0])
			if len(spans) == 0 {
				t.Errorf("%s:%d: no name in the first cell, in backquotes: %q", reference, r.Line, r.Cells[0])
			}
			for _, s := range spans {
				out = append(out, documented{name: trim(s), line: r.Line})
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s#%s: no table rows", reference, anchor)
	}
	return out
}

func keep(s string) string { return s }

// checkFlags checks a table of flags against a flag set, both ways.
func checkFlags(t *testing.T, anchor, command string, fs *flag.FlagSet) {
	listed := map[string]bool{}
	for _, d := range referenceNames(t, anchor, keep) {
		name, ok := strings.CutPrefix(d.name, "--")
		switch {
		case !ok:
			t.Errorf("%s:%d: %q: a flag is written --name", reference, d.line, d.name)
		case fs.Lookup(name) == nil:
			t.Errorf("%s:%d: flag --%s: %s has no such flag", reference, d.line, name, command)
		}
		listed[name] = true
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !listed[f.Name] {
			t.Errorf("flag --%s of %s has no row in %s#%s", f.Name, command, reference, anchor)
		}
	})
}

func TestReferenceManagerFlags(t *testing.T) {
	checkFlags(t, "flags-of-inplace-manager", "inplace-manager", app.FlagSet())
}

func TestReferenceReleaseHoldsFlags(t *testing.T) {
	checkFlags(t, "flags-of-inplace-manager-release-holds", "inplace-manager release-holds", app.ReleaseHoldsFlagSet())
}

// leaves returns the paths of a chart's values that hold no further map, or
// an empty one.
func leaves(prefix []string, v any) [][]string {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return [][]string{prefix}
	}
	var out [][]string
	for _, k := range sortedKeys(m) {
		out = append(out, leaves(append(slices.Clone(prefix), k), m[k])...)
	}
	return out
}

func TestReferenceHelmValues(t *testing.T) {
	const valuesFile = "manifests/charts/inplace/values.yaml"
	values := map[string]any{}
	if err := yaml.Unmarshal([]byte(read(t, valuesFile)), &values); err != nil {
		t.Fatalf("%s: %v", valuesFile, err)
	}
	var paths [][]string
	for _, d := range referenceNames(t, "helm-values", keep) {
		if !docscheck.HasValue(values, d.name) {
			t.Errorf("%s:%d: value %s: not in %s", reference, d.line, d.name, valuesFile)
		}
		paths = append(paths, strings.Split(d.name, "."))
	}
	for _, leaf := range leaves(nil, values) {
		covered := slices.ContainsFunc(paths, func(p []string) bool {
			return len(p) <= len(leaf) && slices.Equal(p, leaf[:len(p)])
		})
		if !covered {
			t.Errorf("value %s of %s has no row in %s#helm-values (nor has any value it is part of)",
				strings.Join(leaf, "."), valuesFile, reference)
		}
	}
}

// probe is a collector of one descriptor, to ask the registry about a name.
type probe struct{ desc *prometheus.Desc }

func (p probe) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }
func (p probe) Collect(chan<- prometheus.Metric)    {}

var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// registered reports whether controller-runtime's registry, where the
// manager's metrics are, holds a metric of that name: it refuses a second
// descriptor of a name it holds (other help, other labels).
func registered(name string) bool {
	p := probe{prometheus.NewDesc(name, "docscheck probe", nil, nil)}
	if err := metrics.Registry.Register(p); err != nil {
		return true
	}
	metrics.Registry.Unregister(p)
	return false
}

// productDirs are the top-level directories of the product's packages: all
// but tests, tools, manifests and docs.
func productDirs(t *testing.T) []string {
	t.Helper()
	entries, err := fs.ReadDir(repo, ".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		switch n := e.Name(); {
		case !e.IsDir(), strings.HasPrefix(n, "."), n == "e2e", n == "hack", n == "internal",
			n == "manifests", n == "docs", n == "bin":
		default:
			dirs = append(dirs, n)
		}
	}
	return dirs
}

func TestReferenceMetrics(t *testing.T) {
	listed := map[string]bool{}
	for _, d := range referenceNames(t, "metrics", func(s string) string { name, _, _ := strings.Cut(s, "{"); return name }) {
		switch {
		case !metricName.MatchString(d.name):
			t.Errorf("%s:%d: %q is not a metric name", reference, d.line, d.name)
		case !registered(d.name):
			t.Errorf("%s:%d: metric %s: not registered by the manager (controller-runtime's metrics.Registry)", reference, d.line, d.name)
		}
		listed[d.name] = true
	}
	defined, err := docscheck.MetricNames(repo, productDirs(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(defined) == 0 {
		t.Fatal("no metric found in the code: the search is broken")
	}
	for _, m := range defined {
		if strings.HasPrefix(m.Value, "inplace_") && !listed[m.Value] {
			t.Errorf("%s: metric %s has no row in %s#metrics", m.Pos, m.Value, reference)
		}
	}
}

// checkConsts checks the names of a table of the reference against string
// constants of the code, both ways.
func checkConsts(t *testing.T, anchor, what string, consts []docscheck.Const, where string) {
	t.Helper()
	if len(consts) == 0 {
		t.Fatalf("no %s constants found in %s: the search is broken", what, where)
	}
	values := map[string]bool{}
	for _, c := range consts {
		values[c.Value] = true
	}
	listed := map[string]bool{}
	for _, d := range referenceNames(t, anchor, keep) {
		if !values[d.name] {
			t.Errorf("%s:%d: %s %s: no constant of %s has this value", reference, d.line, what, d.name, where)
		}
		listed[d.name] = true
	}
	for _, c := range consts {
		if !listed[c.Value] {
			t.Errorf("%s: %s = %q has no row in %s#%s", c.Pos, c.Name, c.Value, reference, anchor)
		}
	}
}

func TestReferenceEvents(t *testing.T) {
	dirs := []string{"controller", "webhook", "certs"}
	consts, err := docscheck.StringConsts(repo, dirs, true, "Reason")
	if err != nil {
		t.Fatal(err)
	}
	checkConsts(t, "events", "event reason", consts, strings.Join(dirs, "/, ")+"/ (Reason...)")
}

func TestReferenceNames(t *testing.T) {
	consts, err := docscheck.StringConsts(repo, []string{"inplace"}, false, "Label", "Annotation", "Condition")
	if err != nil {
		t.Fatal(err)
	}
	checkConsts(t, "labels-annotations-and-conditions", "name", consts, "inplace/ (Label..., Annotation..., Condition...)")
}

// objectName matches the name of a manifest's object.
var objectName = regexp.MustCompile(`(?m)^metadata:\n(?:[ ]{2}.*\n)*?[ ]{2}name: ([a-z0-9.-]+)\s*$`)

func TestReferenceObjects(t *testing.T) {
	names := map[string]string{} // name: a file that makes it
	for _, dir := range []string{"manifests/base", "manifests/components"} {
		err := fs.WalkDir(repo, dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || path.Ext(p) != ".yaml" {
				return err
			}
			for _, m := range objectName.FindAllStringSubmatch(read(t, p), -1) {
				names[m[1]] = p
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	names[app.LeaderElectionID] = "cmd/inplace-manager/app (LeaderElectionID)"
	listed := map[string]bool{}
	for _, d := range referenceNames(t, "objects", keep) {
		if _, ok := names[d.name]; !ok {
			t.Errorf("%s:%d: object %s: no object of manifests/base or manifests/components has this name", reference, d.line, d.name)
		}
		listed[d.name] = true
	}
	for _, name := range sortedKeys(names) {
		if !listed[name] {
			t.Errorf("%s: object %s has no row in %s#objects", names[name], name, reference)
		}
	}
}

func TestReferenceMakeTargets(t *testing.T) {
	m := makefiles(t)
	listed := map[string]bool{}
	for _, d := range referenceNames(t, "make-targets", keep) {
		target, ok := strings.CutPrefix(d.name, "make ")
		switch {
		case !ok:
			t.Errorf("%s:%d: %q: a target is written `make <target>`", reference, d.line, d.name)
		case !m.Targets[target]:
			t.Errorf("%s:%d: make %s: no such target in Makefile or hack/cluster.mk", reference, d.line, target)
		}
		listed[target] = true
	}
	for _, target := range sortedKeys(m.Help) {
		if !listed[target] {
			t.Errorf("make %s (in make help) has no row in %s#make-targets", target, reference)
		}
	}
}

func TestReferenceMakeVariables(t *testing.T) {
	m := makefiles(t)
	listed := map[string]bool{}
	for _, d := range referenceNames(t, "make-variables", keep) {
		if !m.Variables[d.name] {
			t.Errorf("%s:%d: make variable %s: not set with ?= in Makefile or hack/cluster.mk", reference, d.line, d.name)
		}
		listed[d.name] = true
	}
	for _, v := range sortedKeys(m.Variables) {
		if !listed[v] {
			t.Errorf("make variable %s (set with ?=) has no row in %s#make-variables", v, reference)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// The checks of this file, on themselves: a make command's targets are read
// as make reads them.
func TestMakeTargetsIn(t *testing.T) {
	src := "Run `make e2e E2E_RUN=x` or `make -s kubectl`, and `make\nverify`.\n" +
		"```sh\nmake cluster deploy-e2e   # two targets, then make it so\n$(make -s kubeconfig) and make\nmkdir -p x && cmake all\n```\n" +
		"`make image` then make it available.\n"
	got := fmt.Sprint(sortedKeys(makeTargetsIn(src)))
	if want := "[cluster deploy-e2e e2e image kubeconfig kubectl verify]"; got != want {
		t.Errorf("makeTargetsIn = %s, want %s", got, want)
	}
}
