//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// auditedStatusWrite is what the e2e cluster's audit log keeps of a write
// of a pod's status (e2e/cluster/up.sh): who sent it, when, what the API
// server answered, and the conditions and container readiness it carried.
type auditedStatusWrite struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	RequestObject *struct {
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
			ContainerStatuses []struct {
				Name        string `json:"name"`
				ContainerID string `json:"containerID"`
				Ready       *bool  `json:"ready"`
			} `json:"containerStatuses"`
		} `json:"status"`
	} `json:"requestObject"`
	Received time.Time `json:"requestReceivedTimestamp"`
}

// statusWrites returns, a line each in the order received, the writes of
// the status of the pods of namespace that the audit log at path holds:
// the readiness a failed test saw is traced to its writer there. Only what
// each write carried is shown (a patch carries what it changes).
func statusWrites(path, namespace string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	quoted := []byte(`"namespace":"` + namespace + `"`)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), quoted) {
			continue
		}
		var w auditedStatusWrite
		if err := json.Unmarshal(sc.Bytes(), &w); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if w.Stage != "ResponseComplete" || w.ObjectRef == nil || w.ObjectRef.Subresource != "status" || w.ObjectRef.Namespace != namespace {
			continue
		}
		lines = append(lines, w.String())
	}
	return lines, sc.Err()
}

func (w *auditedStatusWrite) String() string {
	var b strings.Builder
	code := 0
	if w.ResponseStatus != nil {
		code = w.ResponseStatus.Code
	}
	fmt.Fprintf(&b, "%s %s %s by %s: %d", w.Received.Format("15:04:05.000000"), w.Verb, w.ObjectRef.Name, w.User.Username, code)
	if w.RequestObject == nil {
		return b.String()
	}
	for _, c := range w.RequestObject.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s", c.Type, c.Status)
	}
	for _, cs := range w.RequestObject.Status.ContainerStatuses {
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
