package e2ekit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AuditEvent is what the e2e tools read of an audit.k8s.io/v1 Event that
// the e2e cluster's API server records (e2e/cluster/up.sh: pod creates at
// Metadata level; writes of a pod's status at Request level, with their
// body).
type AuditEvent struct {
	Stage      string `json:"stage"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int32 `json:"code"`
	} `json:"responseStatus"`
	// RequestObject is the body of the request, where the policy keeps it.
	RequestObject json.RawMessage  `json:"requestObject"`
	Received      metav1.MicroTime `json:"requestReceivedTimestamp"`
	At            metav1.MicroTime `json:"stageTimestamp"`
}

// Code is the API server's answer, 0 if the event has none.
func (e *AuditEvent) Code() int32 {
	if e.ResponseStatus == nil {
		return 0
	}
	return e.ResponseStatus.Code
}

// StatusWrite is what this reads of the body of a write of a pod's status
// (the policy keeps it): the conditions and container readiness it carried.
type StatusWrite struct {
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
}

// StatusWrite decodes the event's body as a write of a pod's status; false
// if it has none or it does not decode.
func (e *AuditEvent) StatusWrite() (StatusWrite, bool) {
	var w StatusWrite
	if len(e.RequestObject) == 0 || json.Unmarshal(e.RequestObject, &w) != nil {
		return w, false
	}
	return w, true
}

// ReadAudit calls fn, in the order recorded, with each event of the audit
// log at path whose line contains match (a cheap filter before a line is
// decoded): the file the API server rotated out first
// (--audit-log-maxbackup=1), then path itself. It is an error if neither
// exists.
func ReadAudit(path string, match []byte, fn func(*AuditEvent)) error {
	found := false
	for _, p := range []string{rotated(path), path} {
		if p == "" {
			continue
		}
		f, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		found = true
		err = scanAudit(f, match, fn)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	if !found {
		return fmt.Errorf("no audit log at %s: start the cluster with this version of e2e/cluster/up.sh", path)
	}
	return nil
}

func scanAudit(f *os.File, match []byte, fn func(*AuditEvent)) error {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		if !bytes.Contains(sc.Bytes(), match) {
			continue
		}
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return err
		}
		fn(&e)
	}
	return sc.Err()
}

// rotated is the name of the log the API server rotated out
// (audit-<time>.log beside audit.log), or "".
func rotated(path string) string {
	ext := filepath.Ext(path)
	matches, _ := filepath.Glob(strings.TrimSuffix(path, ext) + "-*" + ext)
	if len(matches) == 0 {
		return ""
	}
	slices.Sort(matches)
	return matches[len(matches)-1]
}
