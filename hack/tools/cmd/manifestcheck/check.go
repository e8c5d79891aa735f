package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// ManagerNamespace is the namespace manifests/base installs into, and the
// chart is rendered for.
const ManagerNamespace = "inplace-system"

// DefaultCompositions are the compositions checked when none are given
// (make passes its MANIFEST_COMPONENTS).
var DefaultCompositions = []string{"cluster-policy", "builtin-certs", "cert-manager", "cluster-policy,builtin-certs", "cluster-policy,cert-manager", "builtin-certs,release-holds"}

// chartValues are the chart's values that give each component's setting.
var chartValues = map[string][]string{
	"cluster-policy": {"policy=cluster"},
	"builtin-certs":  {"certMode=builtin"},
	"cert-manager":   {"certMode=cert-manager"},
	"release-holds":  {"releaseHolds.enabled=true"},
}

// helmLabels and helmAnnotations say who installed an object, not what it
// does: removed from the chart's objects before they are compared.
var (
	helmLabels      = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version"}
	helmAnnotations = []string{"helm.sh/hook", "helm.sh/hook-weight", "helm.sh/hook-delete-policy"}
)

// Checker renders and checks the manifests.
type Checker struct {
	Root, Kustomize, Helm string
	// Compositions are comma-separated components; the base alone is
	// always checked too.
	Compositions []string
}

// Object is a decoded manifest.
type Object = map[string]any

// Check returns every problem found; an error is for what could not be
// rendered at all.
func (c *Checker) Check() ([]string, error) {
	if c.Kustomize == "" {
		c.Kustomize = filepath.Join(c.Root, ".cache", "bin", "kustomize")
	}
	if c.Helm == "" {
		c.Helm = filepath.Join(c.Root, ".cache", "bin", "helm")
	}
	version, err := os.ReadFile(filepath.Join(c.Root, "VERSION"))
	if err != nil {
		return nil, err
	}
	image := "ghcr.io/inplace-dev/inplace-manager:" + strings.TrimSpace(string(version))
	var problems []string
	for _, comp := range append([]string{""}, c.Compositions...) {
		name := "manifests/base"
		if comp != "" {
			name += " + " + comp
		}
		kust, err := c.kustomize(comp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		values := valuesFor(comp)
		chart, err := c.helm(values)
		if err != nil {
			return nil, fmt.Errorf("chart with %s: %w", strings.Join(values, ","), err)
		}
		for _, p := range Permissions(kust) {
			problems = append(problems, name+": "+p)
		}
		for _, p := range Permissions(chart) {
			problems = append(problems, "chart ("+strings.Join(values, ",")+"): "+p)
		}
		for _, p := range Images(kust, image) {
			problems = append(problems, name+": "+p)
		}
		for _, p := range Images(chart, image) {
			problems = append(problems, "chart ("+strings.Join(values, ",")+"): "+p)
		}
		for _, p := range Compare(kust, Normalise(chart)) {
			problems = append(problems, fmt.Sprintf("%s and the chart with %s disagree: %s", name, strings.Join(values, ","), p))
		}
	}
	return problems, nil
}

// valuesFor returns the chart values of a composition: every component's,
// and the base's own settings the chart's defaults do not have.
func valuesFor(comp string) []string {
	values := []string{"createNamespace=true", "releaseHolds.enabled=false", "certMode=secret"}
	for _, component := range strings.Split(comp, ",") {
		values = append(values, chartValues[component]...)
	}
	return values
}

func (c *Checker) kustomize(comp string) ([]Object, error) {
	// Under bin/, a real folder of this checkout: .cache may be a link to
	// another worktree's, and relative paths from inside it would resolve
	// there.
	scratch := filepath.Join(c.Root, "bin")
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(scratch, "manifestcheck-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// kustomize resolves the relative paths below from where the folder
	// really is: in a git worktree whose .cache is a symlink to another
	// checkout's, the lexical ../../manifests led to that checkout's
	// manifests, checked against this one's chart. Both ends resolved.
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return nil, err
	}
	root, err := filepath.EvalSymlinks(c.Root)
	if err != nil {
		return nil, err
	}
	var k bytes.Buffer
	base, err := filepath.Rel(dir, filepath.Join(root, "manifests", "base"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(&k, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\n", base)
	if comp != "" {
		var paths []string
		for _, component := range strings.Split(comp, ",") {
			p, err := filepath.Rel(dir, filepath.Join(root, "manifests", "components", component))
			if err != nil {
				return nil, err
			}
			paths = append(paths, p)
		}
		fmt.Fprintf(&k, "components: [%s]\n", strings.Join(paths, ", "))
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), k.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return run(c.Kustomize, "build", dir)
}

func (c *Checker) helm(values []string) ([]Object, error) {
	args := []string{"template", "inplace", filepath.Join(c.Root, "manifests", "charts", "inplace"), "--namespace", ManagerNamespace}
	for _, v := range values {
		args = append(args, "--set", v)
	}
	return run(c.Helm, args...)
}

func run(name string, args ...string) ([]Object, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return Decode(stdout.Bytes())
}

// Decode splits a multi-document YAML stream into objects, skipping empty
// documents.
func Decode(stream []byte) ([]Object, error) {
	var objs []Object
	for _, doc := range splitDocuments(stream) {
		var obj Object
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("decoding %q: %w", firstLine(doc), err)
		}
		if len(obj) > 0 {
			objs = append(objs, obj)
		}
	}
	return objs, nil
}

func splitDocuments(stream []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	for _, line := range bytes.SplitAfter(stream, []byte("\n")) {
		if bytes.Equal(bytes.TrimRight(line, " \r\n"), []byte("---")) {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(line)
	}
	return append(docs, cur.Bytes())
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(line)
}

// Key names an object: its kind's group, its kind, namespace and name.
func Key(obj Object) string {
	md, _ := obj["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	name, _ := md["name"].(string)
	return fmt.Sprintf("%v %v %s/%s", obj["apiVersion"], obj["kind"], ns, name)
}

// Normalise removes Helm's labels and hook annotations from objs.
func Normalise(objs []Object) []Object {
	for _, obj := range objs {
		md, _ := obj["metadata"].(map[string]any)
		for field, keys := range map[string][]string{"labels": helmLabels, "annotations": helmAnnotations} {
			m, _ := md[field].(map[string]any)
			for _, k := range keys {
				delete(m, k)
			}
			if m != nil && len(m) == 0 {
				delete(md, field)
			}
		}
	}
	return objs
}

// Compare reports how want and got differ, object by object.
func Compare(want, got []Object) []string {
	index := func(objs []Object) (map[string]Object, []string) {
		m := map[string]Object{}
		var dup []string
		for _, o := range objs {
			k := Key(o)
			if _, ok := m[k]; ok {
				dup = append(dup, k)
			}
			m[k] = o
		}
		return m, dup
	}
	for _, objs := range [][]Object{want, got} {
		for _, o := range objs {
			normaliseExpressions(o)
		}
	}
	w, wdup := index(want)
	g, gdup := index(got)
	var diffs []string
	for _, k := range wdup {
		diffs = append(diffs, "twice in kustomize's output: "+k)
	}
	for _, k := range gdup {
		diffs = append(diffs, "twice in the chart's output: "+k)
	}
	keys := make([]string, 0, len(w)+len(g))
	for k := range w {
		keys = append(keys, k)
	}
	for k := range g {
		if _, ok := w[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		wo, inW := w[k]
		gogot, inG := g[k]
		switch {
		case !inG:
			diffs = append(diffs, "only in kustomize's output: "+k)
		case !inW:
			diffs = append(diffs, "only in the chart's output: "+k)
		default:
			for _, d := range diffValues("", wo, gogot) {
				diffs = append(diffs, k+": "+d)
			}
		}
	}
	return diffs
}

// normaliseExpressions collapses the whitespace of every CEL expression in
// v, which CEL ignores: kustomize re-encodes a folded (>-) scalar with an
// extra line break before each more-indented line, Helm passes it through.
func normaliseExpressions(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && k == "expression" {
				v[k] = strings.Join(strings.Fields(s), " ")
				continue
			}
			normaliseExpressions(e)
		}
	case []any:
		for _, e := range v {
			normaliseExpressions(e)
		}
	}
}

// diffValues lists the paths where a and b differ, with both values.
func diffValues(path string, a, b any) []string {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		var out []string
		keys := make([]string, 0, len(av)+len(bv))
		for k := range av {
			keys = append(keys, k)
		}
		for k := range bv {
			if _, ok := av[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, diffValues(path+"."+k, av[k], bv[k])...)
		}
		return out
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			break
		}
		var out []string
		for i := range av {
			out = append(out, diffValues(fmt.Sprintf("%s[%d]", path, i), av[i], bv[i])...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	return []string{fmt.Sprintf("%s: kustomize %s, chart %s", path, show(a), show(b))}
}

func show(v any) string {
	if v == nil {
		return "(absent)"
	}
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := strings.TrimSpace(string(b))
	if strings.Contains(s, "\n") {
		return "\n" + indent(s) + "\n"
	}
	return s
}

func indent(s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(s, "\n") {
		b.WriteString("      " + line + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// Permissions reports any Role or ClusterRole rule with a wildcard, any
// ClusterRole that reaches Secrets, and any Role on Secrets outside the
// manager's namespace.
func Permissions(objs []Object) []string {
	var problems []string
	for _, obj := range objs {
		kind, _ := obj["kind"].(string)
		if kind != "Role" && kind != "ClusterRole" {
			continue
		}
		if _, ok := obj["aggregationRule"]; ok {
			problems = append(problems, Key(obj)+": aggregates other roles (their rules are not checked)")
		}
		md, _ := obj["metadata"].(map[string]any)
		ns, _ := md["namespace"].(string)
		rules, _ := obj["rules"].([]any)
		for i, r := range rules {
			rule, _ := r.(map[string]any)
			for _, field := range []string{"apiGroups", "resources", "verbs", "nonResourceURLs", "resourceNames"} {
				for _, v := range stringList(rule[field]) {
					if strings.Contains(v, "*") {
						problems = append(problems, fmt.Sprintf("%s: rule %d: wildcard %q in %s", Key(obj), i, v, field))
					}
				}
			}
			if !slices.Contains(stringList(rule["apiGroups"]), "") || !slices.Contains(stringList(rule["resources"]), "secrets") {
				continue
			}
			switch {
			case kind == "ClusterRole":
				problems = append(problems, fmt.Sprintf("%s: rule %d: Secrets in a ClusterRole (cluster-wide when bound by a ClusterRoleBinding)", Key(obj), i))
			case ns != ManagerNamespace:
				problems = append(problems, fmt.Sprintf("%s: rule %d: Secrets outside the manager's namespace %s", Key(obj), i, ManagerNamespace))
			}
		}
	}
	return problems
}

// stringList returns a YAML list of strings.
func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Images reports every container image of inplace-manager that is not
// want (the released version).
func Images(objs []Object, want string) []string {
	var problems []string
	repo := repository(want)
	for _, obj := range objs {
		for _, img := range containerImages(obj) {
			if repository(img) == repo && img != want {
				problems = append(problems, fmt.Sprintf("%s: image %s, want %s (VERSION)", Key(obj), img, want))
			}
		}
	}
	return problems
}

func containerImages(obj Object) []string {
	spec, _ := obj["spec"].(map[string]any)
	tmpl, _ := spec["template"].(map[string]any)
	if kind, _ := obj["kind"].(string); kind == "CronJob" {
		jt, _ := spec["jobTemplate"].(map[string]any)
		js, _ := jt["spec"].(map[string]any)
		tmpl, _ = js["template"].(map[string]any)
	}
	podSpec, _ := tmpl["spec"].(map[string]any)
	var images []string
	for _, field := range []string{"initContainers", "containers"} {
		cs, _ := podSpec[field].([]any)
		for _, c := range cs {
			cm, _ := c.(map[string]any)
			if img, ok := cm["image"].(string); ok {
				images = append(images, img)
			}
		}
	}
	return images
}

// repository returns an image reference without its tag.
func repository(ref string) string {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref
	}
	return ref[:i]
}
