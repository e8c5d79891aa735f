package controller

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// revisionTemplate returns the pod template a StatefulSet's or DaemonSet's
// ControllerRevision records, or nil when the revision is gone (history
// trimmed). The controllers store {"spec":{"template":{...}}}.
func revisionTemplate(ctx context.Context, c client.Reader, namespace, name string) (*corev1.PodTemplateSpec, error) {
	rev := &appsv1.ControllerRevision{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, rev); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	var data struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(rev.Data.Raw, &data); err != nil {
		return nil, fmt.Errorf("ControllerRevision %s/%s: %w", namespace, name, err)
	}
	return &data.Spec.Template, nil
}
