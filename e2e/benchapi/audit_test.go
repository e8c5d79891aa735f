package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAuditedCreates(t *testing.T) {
	dir := t.TempDir()
	lines := []string{
		// Counted: 1.5 ms and 12.25 ms.
		`{"stage":"ResponseComplete","verb":"create","objectRef":{"resource":"pods","namespace":"a"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.001500Z"}`,
		`{"stage":"ResponseComplete","verb":"create","objectRef":{"resource":"pods","namespace":"a"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-01-01T00:00:01.000000Z","stageTimestamp":"2026-01-01T00:00:01.012250Z"}`,
		// Not counted: refused, another namespace, a subresource, another verb, a dry run.
		`{"stage":"ResponseComplete","verb":"create","objectRef":{"resource":"pods","namespace":"a"},"responseStatus":{"code":403},"requestReceivedTimestamp":"2026-01-01T00:00:02.000000Z","stageTimestamp":"2026-01-01T00:00:02.001000Z"}`,
		`{"stage":"ResponseComplete","verb":"create","objectRef":{"resource":"pods","namespace":"ab"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-01-01T00:00:02.000000Z","stageTimestamp":"2026-01-01T00:00:02.001000Z"}`,
		`{"stage":"ResponseComplete","verb":"create","objectRef":{"resource":"pods","subresource":"binding","namespace":"a"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-01-01T00:00:02.000000Z","stageTimestamp":"2026-01-01T00:00:02.001000Z"}`,
		`{"stage":"ResponseComplete","verb":"delete","objectRef":{"resource":"pods","namespace":"a"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-01T00:00:02.000000Z","stageTimestamp":"2026-01-01T00:00:02.001000Z"}`,
		`{"stage":"ResponseComplete","verb":"create","requestURI":"/api/v1/namespaces/a/pods?dryRun=All","objectRef":{"resource":"pods","namespace":"a"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-01-01T00:00:02.000000Z","stageTimestamp":"2026-01-01T00:00:02.001000Z"}`,
	}
	path := filepath.Join(dir, "audit.log")
	if _, err := auditedCreates(path, "a"); err == nil {
		t.Error("no audit log: no error")
	}
	// The first line in the file rotated out, the rest in the current one.
	if err := os.WriteFile(filepath.Join(dir, "audit-2026-01-01T00-00-00.000.log"), []byte(lines[0]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines[1:], "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := auditedCreates(path, "a")
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{1500 * time.Microsecond, 12250 * time.Microsecond}
	if !slices.Equal(got, want) {
		t.Errorf("auditedCreates = %v, want %v", got, want)
	}
}

func TestDurations(t *testing.T) {
	var d durations
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := d.quantile(q); got != want.Seconds() {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want.Seconds())
		}
	}
	if got := d.within(5 * time.Millisecond); got != 0.05 {
		t.Errorf("within(5ms) = %v, want 0.05", got)
	}
	if got, want := d.mean(), 50500*time.Microsecond; got != want.Seconds() {
		t.Errorf("mean = %v, want %v", got, want.Seconds())
	}
}
