package docscheck

import (
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Problem is one thing wrong in a Markdown file, at a line.
type Problem struct {
	File string
	Line int
	Msg  string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg) }

// line is one line of a Markdown file outside fenced code blocks, its code
// spans blanked out (so that what they show is never read as a link).
type line struct {
	n    int    // 1-based
	text string // code spans blanked
	raw  string
}

// Span is a code span of a Markdown file, its line breaks made spaces.
type Span struct {
	Line int // where it begins
	Text string
}

// parsed is a Markdown file split into what the checks read.
type parsed struct {
	prose []line         // the lines outside fenced code blocks
	spans []Span         // the code spans of those lines
	code  map[int]string // the lines inside fenced code blocks, by number
}

// fence matches the opening or closing line of a fenced code block.
var fence = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")

// parse splits src into fenced code and prose, and finds the prose's code
// spans, which may run over the lines of a paragraph.
func parse(src string) parsed {
	p := parsed{code: map[int]string{}}
	var para []line
	flush := func() {
		if len(para) == 0 {
			return
		}
		texts := make([]string, len(para))
		for i, l := range para {
			texts[i] = l.raw
		}
		joined := strings.Join(texts, "\n")
		blanked := []byte(joined)
		for _, sp := range codeSpans(joined) {
			text := strings.ReplaceAll(strings.Trim(joined[sp[0]:sp[1]], "`"), "\n", " ")
			p.spans = append(p.spans, Span{Line: para[0].n + strings.Count(joined[:sp[0]], "\n"), Text: strings.TrimSpace(text)})
			for i := sp[0]; i < sp[1]; i++ {
				if blanked[i] != '\n' {
					blanked[i] = ' '
				}
			}
		}
		for i, text := range strings.Split(string(blanked), "\n") {
			para[i].text = text
		}
		p.prose = append(p.prose, para...)
		para = nil
	}
	open := ""
	for i, raw := range strings.Split(src, "\n") {
		if m := fence.FindStringSubmatch(raw); m != nil {
			switch {
			case open == "":
				flush()
				open = m[1]
				continue
			case m[1][0] == open[0] && len(m[1]) >= len(open) && strings.TrimSpace(raw[len(m[0]):]) == "":
				open = ""
				continue
			}
		}
		switch {
		case open != "":
			p.code[i+1] = raw
		case strings.TrimSpace(raw) == "":
			flush()
			p.prose = append(p.prose, line{n: i + 1, raw: raw, text: raw})
		default:
			para = append(para, line{n: i + 1, raw: raw})
		}
	}
	flush()
	return p
}

func proseLines(src string) []line { return parse(src).prose }

// CodeLines returns the lines inside fenced code blocks, by line number: the
// commands a page shows.
func CodeLines(src string) map[int]string { return parse(src).code }

// ProseCodeSpans returns the code spans outside fenced code blocks.
func ProseCodeSpans(src string) []Span { return parse(src).spans }

// codeSpans finds the code spans of a line: a run of backticks up to the
// next run of the same length.
func codeSpans(s string) [][2]int {
	var spans [][2]int
	for i := 0; i < len(s); {
		if s[i] != '`' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] == '`' {
			j++
		}
		run := s[i:j]
		k := j
		closed := -1
		for k < len(s) {
			if s[k] != '`' {
				k++
				continue
			}
			e := k
			for e < len(s) && s[e] == '`' {
				e++
			}
			if e-k == len(run) {
				closed = e
				break
			}
			k = e
		}
		if closed < 0 {
			i = j // an unmatched run is literal text
			continue
		}
		spans = append(spans, [2]int{i, closed})
		i = closed
	}
	return spans
}

// CodeSpans returns the contents of the code spans of s, trimmed: the names
// a table cell gives.
func CodeSpans(s string) []string {
	var out []string
	for _, sp := range codeSpans(s) {
		inner := strings.Trim(s[sp[0]:sp[1]], "`")
		out = append(out, strings.TrimSpace(inner))
	}
	return out
}

// Heading is an ATX heading (# to ######) of a Markdown file.
type Heading struct {
	Line   int
	Level  int
	Text   string // as written, without the #s
	Anchor string // GitHub's, made unique within the file
}

var atx = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$`)

// Headings returns the headings of src outside code blocks, with the
// anchors GitHub gives them: a repeated anchor gets -1, -2, ...
func Headings(src string) []Heading {
	var out []Heading
	seen := map[string]int{}
	for _, l := range proseLines(src) {
		m := atx.FindStringSubmatch(l.raw)
		if m == nil {
			continue
		}
		text := strings.TrimSpace(m[2])
		// As GitHub's slugger: a taken anchor gets the next free -N,
		// counting per base anchor.
		slug := Slug(text)
		anchor := slug
		if _, taken := seen[slug]; taken {
			for {
				seen[slug]++
				anchor = slug + "-" + strconv.Itoa(seen[slug])
				if _, taken := seen[anchor]; !taken {
					break
				}
			}
		}
		seen[anchor] = 0
		out = append(out, Heading{Line: l.n, Level: len(m[1]), Text: text, Anchor: anchor})
	}
	return out
}

var (
	inlineLink = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	htmlTag    = regexp.MustCompile(`<[^>]*>`)
	explicitID = regexp.MustCompile(`<a\s+(?:id|name)="([^"]+)"`)
)

// Slug is GitHub's anchor for a heading's text: the text as rendered,
// lowercased, with everything but letters, marks, digits, connector
// punctuation (_), hyphens and spaces removed, and each space a hyphen.
// Emphasis with * is removed; emphasis with _ is not recognised (the
// project's headings do not use it).
func Slug(heading string) string {
	text := inlineLink.ReplaceAllString(heading, "$1")
	text = htmlTag.ReplaceAllString(text, "")
	text = strings.NewReplacer("`", "", "*", "", `\`, "").Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || unicode.Is(unicode.Pc, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Anchors returns every anchor a link into src may name: its headings' and
// those of explicit <a id="..."> or <a name="..."> tags.
func Anchors(src string) map[string]bool {
	out := map[string]bool{}
	for _, h := range Headings(src) {
		out[h.Anchor] = true
	}
	for _, l := range proseLines(src) {
		for _, m := range explicitID.FindAllStringSubmatch(l.text, -1) {
			out[m[1]] = true
		}
	}
	return out
}

// Link is the target of a link or image in a Markdown file.
type Link struct {
	Line   int
	Target string
}

var refDefinition = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(\S+)`)

// Links returns the targets of the inline links and images of src, and of
// its reference definitions ([name]: target), outside code.
func Links(src string) []Link {
	var out []Link
	for _, l := range proseLines(src) {
		if m := refDefinition.FindStringSubmatch(l.text); m != nil {
			out = append(out, Link{Line: l.n, Target: strings.Trim(m[1], "<>")})
			continue
		}
		s := l.text
		for i := strings.Index(s, "]("); i >= 0; i = strings.Index(s, "](") {
			target, rest := linkTarget(s[i+2:])
			if target != "" {
				out = append(out, Link{Line: l.n, Target: target})
			}
			s = rest
		}
	}
	return out
}

// linkTarget reads a link's destination from what follows "](": in angle
// brackets, or up to whitespace or the parenthesis that closes the link
// (parentheses inside it balanced).
func linkTarget(s string) (target, rest string) {
	s = strings.TrimLeft(s, " ")
	if strings.HasPrefix(s, "<") {
		if end := strings.IndexByte(s, '>'); end > 0 {
			return s[1:end], s[end+1:]
		}
	}
	depth := 0
	for i, r := range s {
		switch {
		case r == '(':
			depth++
		case r == ')' && depth == 0, r == ' ', r == '\t':
			return s[:i], s[i:]
		case r == ')':
			depth--
		}
	}
	return s, ""
}

var scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

// CheckLinks checks every relative link of the Markdown files (paths in
// fsys, slash-separated, from its root): its file or directory must exist
// in fsys, without leaving it, and its #anchor, if any, must be one of that
// file's (a Markdown file's headings). Links with a scheme (https:,
// mailto:) are not followed.
func CheckLinks(fsys fs.FS, files []string) []Problem {
	var problems []Problem
	anchors := map[string]map[string]bool{}
	anchorsOf := func(file string) (map[string]bool, error) {
		if a, ok := anchors[file]; ok {
			return a, nil
		}
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, err
		}
		anchors[file] = Anchors(string(b))
		return anchors[file], nil
	}
	for _, file := range files {
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			problems = append(problems, Problem{File: file, Msg: err.Error()})
			continue
		}
		for _, l := range Links(string(b)) {
			bad := func(format string, args ...any) {
				problems = append(problems, Problem{File: file, Line: l.Line,
					Msg: fmt.Sprintf("link %q: ", l.Target) + fmt.Sprintf(format, args...)})
			}
			if scheme.MatchString(l.Target) || strings.HasPrefix(l.Target, "//") {
				continue
			}
			p, fragment, _ := strings.Cut(l.Target, "#")
			p, err := url.PathUnescape(p)
			if err != nil {
				bad("not a valid path: %v", err)
				continue
			}
			target := file
			if p != "" {
				if strings.HasPrefix(p, "/") {
					bad("an absolute path: GitHub resolves it outside the repository; write it relative to %s", path.Dir(file))
					continue
				}
				target = path.Join(path.Dir(file), p)
				if target == ".." || strings.HasPrefix(target, "../") {
					bad("leads outside the repository (to %s)", target)
					continue
				}
				info, err := fs.Stat(fsys, target)
				if err != nil {
					bad("no file or directory %s", target)
					continue
				}
				if info.IsDir() && fragment != "" {
					bad("an anchor on a directory (%s)", target)
					continue
				}
			}
			if fragment == "" {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				bad("an anchor into %s, which is not Markdown: it cannot be checked", target)
				continue
			}
			a, err := anchorsOf(target)
			if err != nil {
				bad("%v", err)
				continue
			}
			if !a[fragment] {
				bad("no heading in %s has the anchor #%s", target, fragment)
			}
		}
	}
	return problems
}

// Table is a pipe table of a Markdown file.
type Table struct {
	Line   int // of its header
	Header []string
	Rows   []Row
}

// Row is a table row, its cells trimmed.
type Row struct {
	Line  int
	Cells []string
}

var delimiterRow = regexp.MustCompile(`^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$`)

// SectionTables returns the tables under the heading with this anchor, up
// to the next heading of the same or a higher level; an error when no
// heading has it.
func SectionTables(src, anchor string) ([]Table, error) {
	headings := Headings(src)
	start, end, level := -1, -1, 0
	for _, h := range headings {
		switch {
		case start < 0 && h.Anchor == anchor:
			start, level = h.Line, h.Level
		case start >= 0 && end < 0 && h.Level <= level:
			end = h.Line
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no heading with the anchor #%s", anchor)
	}
	var tables []Table
	lines := proseLines(src)
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l.n <= start || end >= 0 && l.n >= end {
			continue
		}
		if !strings.HasPrefix(strings.TrimSpace(l.raw), "|") || i+1 >= len(lines) ||
			lines[i+1].n != l.n+1 || !delimiterRow.MatchString(lines[i+1].raw) {
			continue
		}
		t := Table{Line: l.n, Header: splitRow(l.raw)}
		i += 2
		for ; i < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i].raw), "|"); i++ {
			t.Rows = append(t.Rows, Row{Line: lines[i].n, Cells: splitRow(lines[i].raw)})
		}
		tables = append(tables, t)
	}
	return tables, nil
}

// splitRow splits a table row on the pipes outside code spans and not
// escaped.
func splitRow(s string) []string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "|")
	if strings.HasSuffix(s, "|") && !strings.HasSuffix(s, `\|`) {
		s = s[:len(s)-1]
	}
	spans := codeSpans(s)
	inSpan := func(i int) bool {
		for _, sp := range spans {
			if i >= sp[0] && i < sp[1] {
				return true
			}
		}
		return false
	}
	var cells []string
	last := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '|' && (i == 0 || s[i-1] != '\\') && !inSpan(i) {
			cells = append(cells, strings.TrimSpace(s[last:i]))
			last = i + 1
		}
	}
	return append(cells, strings.TrimSpace(s[last:]))
}
