package docscheck

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	makeTarget   = regexp.MustCompile(`^([a-zA-Z0-9][a-zA-Z0-9_-]*):`)
	makeHelp     = regexp.MustCompile(`^([a-zA-Z0-9][a-zA-Z0-9_-]*):.*##`)
	makeVariable = regexp.MustCompile(`^(?:export\s+)?([A-Z][A-Z0-9_]*)\s*\?=`)
)

// Makefiles is what the Makefiles define: every target, the targets make
// help lists (those with a ## description), and the variables a user may
// set on the command line (those assigned with ?=).
type Makefiles struct {
	Targets   map[string]bool
	Help      map[string]bool
	Variables map[string]bool
}

// ReadMakefiles reads the named Makefiles of fsys.
func ReadMakefiles(fsys fs.FS, files ...string) (Makefiles, error) {
	m := Makefiles{Targets: map[string]bool{}, Help: map[string]bool{}, Variables: map[string]bool{}}
	for _, f := range files {
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return m, err
		}
		s := bufio.NewScanner(bytes.NewReader(b))
		for s.Scan() {
			l := s.Text()
			if r := makeTarget.FindStringSubmatch(l); r != nil && !strings.HasPrefix(l, r[1]+":=") {
				m.Targets[r[1]] = true
			}
			if r := makeHelp.FindStringSubmatch(l); r != nil {
				m.Help[r[1]] = true
			}
			if r := makeVariable.FindStringSubmatch(l); r != nil {
				m.Variables[r[1]] = true
			}
		}
	}
	return m, nil
}

// HasValue reports whether a dotted path (image.repository) names a value of
// a Helm chart's values, as decoded from values.yaml.
func HasValue(values map[string]any, dotted string) bool {
	var v any = values
	for _, key := range strings.Split(dotted, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = m[key]; !ok {
			return false
		}
	}
	return true
}

// Const is a string constant of the code, or a metric's name.
type Const struct {
	Name  string // the Go identifier, package-qualified; for metrics, the variable
	Value string
	Pos   string // file:line
}

// goFiles parses the Go files of the directories of fsys, not tests, each
// directory with its subdirectories when recursive.
func goFiles(fsys fs.FS, dirs []string, recursive bool) (*token.FileSet, map[string][]*ast.File, error) {
	fset := token.NewFileSet()
	pkgs := map[string][]*ast.File{} // by directory
	for _, dir := range dirs {
		err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != dir && (!recursive || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
					return fs.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			src, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			f, err := parser.ParseFile(fset, p, src, 0)
			if err != nil {
				return err
			}
			pkgs[path.Dir(p)] = append(pkgs[path.Dir(p)], f)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return fset, pkgs, nil
}

// StringConsts returns the package-level string constants of the Go
// packages in dirs whose names begin with one of the prefixes. A value
// may be a literal, another constant of the package, or a sum of those
// (Prefix + "enabled").
func StringConsts(fsys fs.FS, dirs []string, recursive bool, prefixes ...string) ([]Const, error) {
	fset, pkgs, err := goFiles(fsys, dirs, recursive)
	if err != nil {
		return nil, err
	}
	var out []Const
	for dir, files := range pkgs {
		exprs := map[string]ast.Expr{}
		pos := map[string]token.Pos{}
		for _, f := range files {
			for _, decl := range f.Decls {
				g, ok := decl.(*ast.GenDecl)
				if !ok || g.Tok != token.CONST {
					continue
				}
				for _, spec := range g.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i < len(vs.Values) {
							exprs[name.Name], pos[name.Name] = vs.Values[i], name.Pos()
						}
					}
				}
			}
		}
		for name, expr := range exprs {
			if !hasPrefix(name, prefixes) {
				continue
			}
			v, ok := evalString(expr, exprs, 0)
			if !ok {
				continue
			}
			p := fset.Position(pos[name])
			out = append(out, Const{Name: path.Base(dir) + "." + name, Value: v, Pos: fmt.Sprintf("%s:%d", p.Filename, p.Line)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pos < out[j].Pos })
	return out, nil
}

func hasPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// evalString evaluates a constant string expression of a package.
func evalString(e ast.Expr, consts map[string]ast.Expr, depth int) (string, bool) {
	if depth > 10 {
		return "", false
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		if c, ok := consts[e.Name]; ok {
			return evalString(c, consts, depth+1)
		}
	case *ast.ParenExpr:
		return evalString(e.X, consts, depth+1)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		x, ok := evalString(e.X, consts, depth+1)
		if !ok {
			return "", false
		}
		y, ok := evalString(e.Y, consts, depth+1)
		return x + y, ok
	}
	return "", false
}

// MetricNames returns the names of the Prometheus metrics the Go packages in
// dirs (and their subdirectories) define: the Name of a prometheus ...Opts
// literal, joined to its Namespace and Subsystem as prometheus.BuildFQName
// joins them, and the first argument of prometheus.NewDesc, where these are
// string literals.
func MetricNames(fsys fs.FS, dirs []string) ([]Const, error) {
	fset, pkgs, err := goFiles(fsys, dirs, true)
	if err != nil {
		return nil, err
	}
	var out []Const
	add := func(name string, at token.Pos) {
		p := fset.Position(at)
		out = append(out, Const{Value: name, Pos: fmt.Sprintf("%s:%d", p.Filename, p.Line)})
	}
	for _, files := range pkgs {
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CompositeLit:
					if !isPrometheus(n.Type, "Opts") {
						return true
					}
					parts := map[string]string{}
					for _, elt := range n.Elts {
						kv, ok := elt.(*ast.KeyValueExpr)
						if !ok {
							continue
						}
						key, _ := kv.Key.(*ast.Ident)
						if key == nil {
							continue
						}
						if v, ok := evalString(kv.Value, nil, 0); ok {
							parts[key.Name] = v
						}
					}
					if parts["Name"] != "" {
						add(fqName(parts["Namespace"], parts["Subsystem"], parts["Name"]), n.Pos())
					}
				case *ast.CallExpr:
					if isPrometheus(n.Fun, "NewDesc") && len(n.Args) > 0 {
						if v, ok := evalString(n.Args[0], nil, 0); ok {
							add(v, n.Pos())
						}
					}
				}
				return true
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Value < out[j].Value })
	return out, nil
}

// isPrometheus reports whether e is prometheus.<name>, or a type
// prometheus.<anything>Opts when name is "Opts".
func isPrometheus(e ast.Expr, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	if !ok || pkg.Name != "prometheus" {
		return false
	}
	if name == "Opts" {
		return strings.HasSuffix(sel.Sel.Name, "Opts")
	}
	return sel.Sel.Name == name
}

func fqName(namespace, subsystem, name string) string {
	var parts []string
	for _, p := range []string{namespace, subsystem, name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "_")
}
