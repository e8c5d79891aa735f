package docscheck

import (
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Install on a cluster":                        "install-on-a-cluster",
		"The manager's power, bounded":                "the-managers-power-bounded",
		"`--cert-mode`":                               "--cert-mode",
		"Kubernetes 1.30 or later":                    "kubernetes-130-or-later",
		"What `make e2e-kruise` checks":               "what-make-e2e-kruise-checks",
		"inplace_updates_total":                       "inplace_updates_total",
		"Uninstall & emergencies":                     "uninstall--emergencies",
		"**Bold** and [a link](other.md#x)":           "bold-and-a-link",
		"Rollouts: in place, native, and the floor":   "rollouts-in-place-native-and-the-floor",
		"Délai de grâce":                              "délai-de-grâce",
		"2026-11-30: refuse the controller's deletes": "2026-11-30-refuse-the-controllers-deletes",
	} {
		if got := Slug(heading); got != want {
			t.Errorf("Slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

func TestHeadingsRepeatedAnchors(t *testing.T) {
	src := "# Title\n## Example\n```\n## not a heading\n```\n## Example\n## Example 1\n### Example ###\n"
	var got []string
	for _, h := range Headings(src) {
		got = append(got, h.Anchor)
	}
	// As GitHub: the second "Example" is example-1, so the heading
	// "Example 1" takes example-1-1, and the fourth example-2.
	want := []string{"title", "example", "example-1", "example-1-1", "example-2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("anchors (-want,+got):\n%s", diff)
	}
}

func TestCheckLinks(t *testing.T) {
	fsys := fstest.MapFS{
		"README.md":          {Data: []byte("# inplace\n## Status\n## Status\n")},
		"docs/install.md":    {Data: []byte("# Install\n## With Helm\n<a id=\"legacy\"></a>\n")},
		"docs/design/one.md": {Data: []byte("# One\n")},
		"Makefile":           {Data: []byte("all:\n")},
	}
	for _, tc := range []struct {
		name string
		page string // docs/page.md
		want []string
	}{
		{name: "a file beside", page: "[i](install.md)"},
		{name: "a file up and across", page: "[r](../README.md) [m](../Makefile)"},
		{name: "a directory", page: "[d](design/) [d](design)"},
		{name: "an anchor", page: "[h](install.md#with-helm)"},
		{name: "a repeated heading's anchor", page: "[s](../README.md#status-1)"},
		{name: "an explicit anchor", page: "[l](install.md#legacy)"},
		{name: "an anchor in the same file", page: "# Page\n## Here\n[h](#here)"},
		{name: "a title and angle brackets", page: `[h](install.md "Install") [a](<install.md#with-helm>)`},
		{name: "a reference definition", page: "[i][ref]\n\n[ref]: install.md#with-helm"},
		{name: "an image", page: "![x](install.md)"},
		{name: "external links are not followed", page: "[e](https://example.com/x.md#y) [m](mailto:a@b.c)"},
		{name: "links in code are not read", page: "`[x](nowhere.md)`\n```\n[x](nowhere.md)\n```\n~~~sh\n[x](nowhere.md)\n~~~"},
		{name: "a link after a code span", page: "`a](b` [x](nowhere.md)",
			want: []string{`docs/page.md:1: link "nowhere.md": no file or directory docs/nowhere.md`}},
		{name: "a missing file", page: "text\n[x](instal.md)",
			want: []string{`docs/page.md:2: link "instal.md": no file or directory docs/instal.md`}},
		{name: "a missing anchor", page: "[x](install.md#with-kustomize)",
			want: []string{`docs/page.md:1: link "install.md#with-kustomize": no heading in docs/install.md has the anchor #with-kustomize`}},
		{name: "a missing anchor in the same file", page: "# Page\n[x](#nowhere)",
			want: []string{`docs/page.md:2: link "#nowhere": no heading in docs/page.md has the anchor #nowhere`}},
		{name: "an anchor of a heading in code", page: "```\n# Fake\n```\n[x](#fake)",
			want: []string{`docs/page.md:4: link "#fake": no heading in docs/page.md has the anchor #fake`}},
		{name: "leaving the repository", page: "[x](../../shared/DESIGN.md)",
			want: []string{`docs/page.md:1: link "../../shared/DESIGN.md": leads outside the repository (to ../shared/DESIGN.md)`}},
		{name: "an absolute path", page: "[x](/docs/install.md)",
			want: []string{`docs/page.md:1: link "/docs/install.md": an absolute path: GitHub resolves it outside the repository; write it relative to docs`}},
		{name: "an anchor into a file that is not Markdown", page: "[x](../Makefile#L1)",
			want: []string{`docs/page.md:1: link "../Makefile#L1": an anchor into Makefile, which is not Markdown: it cannot be checked`}},
		{name: "an anchor on a directory", page: "[x](design/#one)",
			want: []string{`docs/page.md:1: link "design/#one": an anchor on a directory (docs/design)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := maps(fsys, "docs/page.md", tc.page)
			var got []string
			for _, p := range CheckLinks(fsys, []string{"docs/page.md"}) {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want,+got):\n%s", diff)
			}
		})
	}
}

// maps returns fsys with one more file.
func maps(fsys fstest.MapFS, name, data string) fstest.MapFS {
	out := fstest.MapFS{name: {Data: []byte(data)}}
	for k, v := range fsys {
		out[k] = v
	}
	return out
}

func TestSectionTables(t *testing.T) {
	src := "# Reference\n" +
		"## Flags\n" +
		"Text.\n\n" +
		"| flag | default |\n|---|---|\n| `--policy` | `namespace` |\n| `--a`, `--b` | `x \\| y` and `c|d` |\n\n" +
		"### Sub-section\n" +
		"| flag | |\n| :-- | --: |\n| `--sub` | |\n" +
		"```\n| not | a table |\n|---|---|\n```\n" +
		"## Metrics\n" +
		"| metric |\n|---|\n| `inplace_x` |\n"
	tables, err := SectionTables(src, "flags")
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for _, tb := range tables {
		got = append(got, tb.Header)
		for _, r := range tb.Rows {
			got = append(got, r.Cells)
		}
	}
	want := [][]string{
		{"flag", "default"},
		{"`--policy`", "`namespace`"},
		{"`--a`, `--b`", "`x \\| y` and `c|d`"},
		{"flag", ""},
		{"`--sub`", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tables (-want,+got):\n%s", diff)
	}
	if got := CodeSpans(tables[0].Rows[1].Cells[0]); !cmp.Equal(got, []string{"--a", "--b"}) {
		t.Errorf("CodeSpans = %q, want --a, --b", got)
	}
	if _, err := SectionTables(src, "events"); err == nil {
		t.Error("SectionTables of a missing section: no error")
	}
}

func TestReadMakefiles(t *testing.T) {
	fsys := fstest.MapFS{
		"Makefile": {Data: []byte("ROOT := x\nFOO ?= 1\nexport BAR ?= 2\n.PHONY: build\nbuild: ## Build.\n\tgo build\n$(BIN)/%: x\n\tcp\nhidden: build\n")},
		"more.mk":  {Data: []byte("e2e: ## Test.\n")},
	}
	m, err := ReadMakefiles(fsys, "Makefile", "more.mk")
	if err != nil {
		t.Fatal(err)
	}
	want := Makefiles{
		Targets:   map[string]bool{"build": true, "hidden": true, "e2e": true},
		Help:      map[string]bool{"build": true, "e2e": true},
		Variables: map[string]bool{"FOO": true, "BAR": true},
	}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("Makefiles (-want,+got):\n%s", diff)
	}
}

func TestStringConstsAndMetricNames(t *testing.T) {
	fsys := fstest.MapFS{
		"inplace/names.go": {Data: []byte(`package inplace
const Prefix = "inplace.dev/"
const (
	LabelEnabled = Prefix + "enabled"
	AnnotationRollout = (Prefix + "roll") + "out"
	ReasonX = "X"
	count = 3
)
`)},
		"inplace/names_test.go": {Data: []byte("package inplace\nconst LabelTest = \"t\"\n")},
		"controller/metrics.go": {Data: []byte(`package controller
import "github.com/prometheus/client_golang/prometheus"
var a = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "inplace_updates_total", Help: "h"}, nil)
var b = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "inplace", Subsystem: "webhook", Name: "calls"})
var c = prometheus.NewDesc("inplace_expiry_seconds", "h", nil, nil)
`)},
	}
	consts, err := StringConsts(fsys, []string{"inplace"}, false, "Label", "Annotation")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range consts {
		got = append(got, c.Name+"="+c.Value)
	}
	if diff := cmp.Diff([]string{"inplace.LabelEnabled=inplace.dev/enabled", "inplace.AnnotationRollout=inplace.dev/rollout"}, got); diff != "" {
		t.Errorf("StringConsts (-want,+got):\n%s", diff)
	}
	metrics, err := MetricNames(fsys, []string{"."})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, m := range metrics {
		got = append(got, m.Value)
	}
	if diff := cmp.Diff([]string{"inplace_expiry_seconds", "inplace_updates_total", "inplace_webhook_calls"}, got); diff != "" {
		t.Errorf("MetricNames (-want,+got):\n%s", diff)
	}
}

func TestCodeSpansOverLines(t *testing.T) {
	src := "A `kubectl\nget pod` and [a link](x.md) in a paragraph;\n`unclosed [y](y.md)\n\n`new\nparagraph`\n```\nfenced `z`\n```\n"
	var got []string
	for _, s := range ProseCodeSpans(src) {
		got = append(got, fmt.Sprintf("%d:%s", s.Line, s.Text))
	}
	if diff := cmp.Diff([]string{"1:kubectl get pod", "5:new paragraph"}, got); diff != "" {
		t.Errorf("ProseCodeSpans (-want,+got):\n%s", diff)
	}
	var links []string
	for _, l := range Links(src) {
		links = append(links, fmt.Sprintf("%d:%s", l.Line, l.Target))
	}
	if diff := cmp.Diff([]string{"2:x.md", "3:y.md"}, links); diff != "" {
		t.Errorf("Links (-want,+got):\n%s", diff)
	}
}
