package app

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestVersionFlag: --version prints the release and exits 0, before
// anything else is checked (no namespace, no cluster needed).
func TestVersionFlag(t *testing.T) {
	old := Version
	Version = "v9.8.7"
	t.Cleanup(func() { Version = old })
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	code := Main([]string{"--version"})
	os.Stdout = stdout
	w.Close()
	out, _ := io.ReadAll(r)
	if code != 0 || strings.TrimSpace(string(out)) != "inplace-manager v9.8.7" {
		t.Errorf("Main(--version) = %d, printed %q; want 0 and %q", code, out, "inplace-manager v9.8.7")
	}
}
