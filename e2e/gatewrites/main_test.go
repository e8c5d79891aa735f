package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCount(t *testing.T) {
	const (
		manager = `"user":{"username":"system:serviceaccount:inplace-system:inplace-manager"}`
		kubelet = `"user":{"username":"system:node:node-1"}`
		open    = `"requestObject":{"status":{"conditions":[{"type":"InPlaceUpdateReady","status":"True"}]}}`
		closed  = `"requestObject":{"status":{"conditions":[{"type":"InPlaceUpdateReady","status":"False"}]}}`
	)
	write := func(at, pod, user string, code int, body string) string {
		return `{"stage":"ResponseComplete","verb":"patch",` + user + `,"objectRef":{"resource":"pods","subresource":"status","namespace":"a","name":"` + pod +
			`"},"responseStatus":{"code":` + map[int]string{200: "200", 409: "409"}[code] + `},` + body + `,"requestReceivedTimestamp":"2026-01-01T00:00:` + at + `Z"}`
	}
	lines := []string{
		write("00.000000", "p-0", kubelet, 200, `"requestObject":{}`), // p-0's first status write
		write("00.100000", "p-0", manager, 409, open),                 // at creation: refused
		write("00.200000", "p-0", manager, 200, open),                 // at creation: opened
		write("10.000000", "p-0", manager, 200, closed),               // an update closes it: not counted
		write("12.000000", "p-0", manager, 200, open),                 // and opens it again: later
		write("01.000000", "p-1", manager, 200, open),                 // p-1's first status write is this one
		write("30.000000", "p-2", manager, 200, open),                 // after -until
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	until := time.Date(2026, 1, 1, 0, 0, 20, 0, time.UTC)
	c, err := count(path, time.Time{}, until, 3*time.Second, ":inplace-manager")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.creation; len(got.pods) != 2 || got.writes != 3 || got.conflicts != 1 || got.ok != 2 {
		t.Errorf("at creation: %d pods, %d writes, %d refused, %d ok; want 2, 3, 1, 2", len(got.pods), got.writes, got.conflicts, got.ok)
	}
	if got := c.update; len(got.pods) != 1 || got.writes != 1 || got.conflicts != 0 || got.ok != 1 {
		t.Errorf("later: %d pods, %d writes, %d refused, %d ok; want 1, 1, 0, 1", len(got.pods), got.writes, got.conflicts, got.ok)
	}
}
