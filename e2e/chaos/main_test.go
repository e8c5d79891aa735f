package main

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// pod is a pod as compare reads it: UID, revision label, the app
// container's image and restart count.
func pod(uid, revision, image string, restarts int32) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Labels: map[string]string{"rev": revision}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: appContainer, Image: image}}},
		Status:     corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: appContainer, RestartCount: restarts}}},
	}
}

func TestCompare(t *testing.T) {
	before := []corev1.Pod{pod("a", "r1", "v1", 0), pod("b", "r1", "v1", 2), pod("c", "r1", "v1", 0)}
	for _, tc := range []struct {
		name                       string
		after                      []corev1.Pod
		recreated, mixed, restarts int
	}{
		{name: "every pod in place, once",
			after: []corev1.Pod{pod("a", "r2", "v2", 1), pod("b", "r2", "v2", 3), pod("c", "r2", "v2", 1)}},
		{name: "one recreated",
			after:     []corev1.Pod{pod("a", "r2", "v2", 1), pod("x", "r2", "v2", 0), pod("c", "r2", "v2", 1)},
			recreated: 1},
		{name: "one restarted twice, one not at all",
			after:    []corev1.Pod{pod("a", "r2", "v2", 2), pod("b", "r2", "v2", 2), pod("c", "r2", "v2", 1)},
			restarts: 2},
		{name: "one on the old revision and image",
			after: []corev1.Pod{pod("a", "r2", "v2", 1), pod("b", "r1", "v1", 2), pod("c", "r2", "v2", 1)},
			mixed: 1, restarts: 1},
		{name: "the new image under the old revision label",
			after: []corev1.Pod{pod("a", "r2", "v2", 1), pod("b", "r2", "v2", 3), pod("c", "r1", "v2", 1)},
			mixed: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recreated, mixed, restarts := compare(before, tc.after, "v2", "rev")
			if recreated != tc.recreated || mixed != tc.mixed || restarts != tc.restarts {
				t.Errorf("compare = recreated %d, mixed %d, restarts %d; want %d, %d, %d",
					recreated, mixed, restarts, tc.recreated, tc.mixed, tc.restarts)
			}
		})
	}
}
