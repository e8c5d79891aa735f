// Package docscheck keeps the documentation true to the repository: every
// relative link in README.md and docs/ leads to a file, and every #anchor to
// a heading of it (GitHub's anchor rules); and docs/reference.md names only
// the flags, Helm values, metrics, event reasons, labels, annotations, make
// targets and make variables that exist, and every one of them that does.
//
// The checks are its tests (go test ./internal/docscheck, run by make
// verify-docs); this package holds the parsing they share: headings and
// their anchors, links, the tables of a section, and what the code defines.
// It reads Markdown as GitHub renders it closely enough for the project's
// own pages (ATX headings, inline and reference links, pipe tables); it is
// not a Markdown renderer. It imports nothing of the product.
package docscheck
