package e2ekit

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestReadAudit: the rotated file is read before the current one, only the
// lines that match are decoded, and a write's body is kept.
func TestReadAudit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	if err := ReadAudit(path, nil, func(*AuditEvent) {}); err == nil {
		t.Error("no audit log: no error")
	}
	old := `{"stage":"ResponseComplete","verb":"patch","objectRef":{"resource":"pods","subresource":"status","namespace":"a","name":"p-0"},"responseStatus":{"code":409},"requestObject":{"status":{"conditions":[{"type":"Ready","status":"True"}]}}}`
	cur := `{"stage":"ResponseComplete","verb":"create","objectRef":{"resource":"pods","namespace":"a","name":"p-1"},"responseStatus":{"code":201}}` + "\n" +
		`{"stage":"ResponseComplete","verb":"create","objectRef":{"resource":"pods","namespace":"b","name":"p-2"},"responseStatus":{"code":201}}` + "\n" +
		"not json, and not matched\n"
	if err := os.WriteFile(filepath.Join(dir, "audit-2026-01-01T00-00-00.000.log"), []byte(old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(cur), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	var body string
	err := ReadAudit(path, []byte(`"namespace":"a"`), func(e *AuditEvent) {
		got = append(got, e.Verb+" "+e.ObjectRef.Name)
		if e.Code() == 409 {
			body = string(e.RequestObject)
			if w, ok := e.StatusWrite(); !ok || len(w.Status.Conditions) != 1 || w.Status.Conditions[0].Type != "Ready" || w.Status.Conditions[0].Status != "True" {
				t.Errorf("StatusWrite() = %+v, %v; want the Ready=True it carried", w, ok)
			}
		} else if _, ok := e.StatusWrite(); ok {
			t.Errorf("StatusWrite() of %s %s, with no body: ok", e.Verb, e.ObjectRef.Name)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"patch p-0", "create p-1"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if want := `{"status":{"conditions":[{"type":"Ready","status":"True"}]}}`; body != want {
		t.Errorf("request body %s, want %s", body, want)
	}
}
