package inplace

import (
	"encoding/json"
	"fmt"

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
	// update cannot complete.
	Failure string `json:"failure,omitempty"`
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
