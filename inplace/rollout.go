package inplace

import (
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Rollout is what the manager records on a workload (AnnotationRollout)
// while it updates the workload's pods in place: which revision, since
// when, and why it halted, if it did. It holds nothing back: the native
// controller runs the rollout as the user wrote it, and the manager updates
// in place the pods that controller would recreate. The record is for
// people (kubectl get -o yaml shows a rollout under way and why it waits)
// and for the completion event.
type Rollout struct {
	// Revision is the revision the pods are updated to.
	Revision string `json:"revision"`
	// Since is when the first pod's update began.
	Since metav1.Time `json:"since"`
	// Failure says why the rollout halted, when it did: the pods whose
	// update cannot complete, or the node that cannot pull the new images.
	Failure string `json:"failure,omitempty"`
	// Pulling is set while a pod's update waits for its node to pull the
	// new images ahead (PrepullPod): since when.
	Pulling *metav1.Time `json:"pulling,omitempty"`
	// PullFailed: a node cannot pull them; the rollout halts before any
	// pod is taken down.
	PullFailed bool `json:"pullFailed,omitempty"`
}

// PullHold bounds how long a refused replacement waits for a pull ahead
// that neither completes nor fails: the prepull pod's deadline, and the
// time the engine takes to see it pass.
const PullHold = time.Duration(PrepullDeadline)*time.Second + 30*time.Second

// HoldsForPull reports whether the rollout to target waits for its nodes to
// pull the new images ahead, so that a refused replacement keeps its promise
// without a pod being updated: while the pull runs (within PullHold), and
// for as long as a node cannot pull (the rollout halted on purpose, before
// any pod is taken down).
func (r *Rollout) HoldsForPull(target string, now time.Time) bool {
	return r != nil && r.Revision == target && r.Pulling != nil && (r.PullFailed || now.Sub(r.Pulling.Time) < PullHold)
}

// RolloutOf returns the rollout recorded in a workload's annotations, or nil.
func RolloutOf(annotations map[string]string) (*Rollout, error) {
	raw, ok := annotations[AnnotationRollout]
	if !ok {
		return nil, nil
	}
	r := &Rollout{}
	if err := json.Unmarshal([]byte(raw), r); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationRollout, err)
	}
	return r, nil
}

// Encode returns the annotation value of the rollout.
func (r *Rollout) Encode() string {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // only plain fields: cannot fail
	}
	return string(b)
}

// RevisionTemplate decodes the pod template that a StatefulSet's or a
// DaemonSet's ControllerRevision records: its controller stores the patch
// {"spec":{"template":{...}}} (pkg/controller/history).
func RevisionTemplate(rev *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	var data struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(rev.Data.Raw, &data); err != nil {
		return nil, fmt.Errorf("ControllerRevision %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	return &data.Spec.Template, nil
}
