//go:build e2e

package e2e

import (
	"fmt"
	"strings"

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
)

// statusWrites returns, a line each in the order received, the writes of
// the status of the pods of namespace that the audit log at path holds:
// the readiness a failed test saw is traced to its writer there. Only what
// each write carried is shown (a patch carries what it changes).
func statusWrites(path, namespace string) ([]string, error) {
	var lines []string
	err := e2ekit.ReadAudit(path, []byte(`"namespace":"`+namespace+`"`), func(e *e2ekit.AuditEvent) {
		if e.Stage != "ResponseComplete" || e.ObjectRef == nil || e.ObjectRef.Subresource != "status" || e.ObjectRef.Namespace != namespace {
			return
		}
		lines = append(lines, describeStatusWrite(e))
	})
	return lines, err
}

// describeStatusWrite is a line of statusWrites: when, what, by whom, the
// answer, then the conditions and container readiness the write carried.
func describeStatusWrite(e *e2ekit.AuditEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s by %s: %d", e.Received.Format("15:04:05.000000"), e.Verb, e.ObjectRef.Name, e.User.Username, e.Code())
	w, ok := e.StatusWrite()
	if !ok {
		return b.String()
	}
	for _, c := range w.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s", c.Type, c.Status)
	}
	for _, cs := range w.Status.ContainerStatuses {
		id := cs.ContainerID
		if i := strings.LastIndexByte(id, '/'); i >= 0 && len(id) > i+13 {
			id = id[i+1 : i+13]
		}
		ready := "?"
		if cs.Ready != nil {
			ready = fmt.Sprint(*cs.Ready)
		}
		fmt.Fprintf(&b, " container %s %s ready %s", cs.Name, id, ready)
	}
	return b.String()
}
