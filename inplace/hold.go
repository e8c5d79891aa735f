package inplace

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReasonInPlaceRollout is why a workload is held: an in-place rollout runs.
const ReasonInPlaceRollout = "InPlaceRollout"

// Hold is what the manager records on a workload (AnnotationHold) while it
// holds the native controller back: since when and why, so that a person
// can see a rollout waiting for the manager, and what the user had asked
// for, so that it can be restored.
type Hold struct {
	// Since is when the hold began.
	Since metav1.Time `json:"since"`
	// Reason is why the native controller is held back.
	Reason string `json:"reason"`
	// Partition is the StatefulSet's rollingUpdate.partition as the user
	// asked for it; the hold raises the real one.
	Partition *int32 `json:"partition,omitempty"`
	// Failure says why the rollout halted, when it did: a pod whose update
	// cannot complete.
	Failure string `json:"failure,omitempty"`
}

// HoldOf returns the hold recorded in a workload's annotations, or nil.
func HoldOf(annotations map[string]string) (*Hold, error) {
	raw, ok := annotations[AnnotationHold]
	if !ok {
		return nil, nil
	}
	h := &Hold{}
	if err := json.Unmarshal([]byte(raw), h); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationHold, err)
	}
	return h, nil
}

// Encode returns the annotation value of the hold.
func (h *Hold) Encode() string {
	b, err := json.Marshal(h)
	if err != nil {
		panic(err) // only plain fields: cannot fail
	}
	return string(b)
}

// UserPartition returns the partition the user asked for: 0 when unset,
// and when negative (the API server refuses a negative partition, so no
// user asked for one: a hand-edited hold that would never be released).
func (h *Hold) UserPartition() int32 {
	if h.Partition == nil || *h.Partition < 0 {
		return 0
	}
	return *h.Partition
}
