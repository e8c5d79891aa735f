package inplace

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// UpdateState is what the manager records on a pod (AnnotationUpdateState)
// before it touches it: enough to judge, from the pod alone, whether the
// update has completed, and for a restarted manager to resume.
type UpdateState struct {
	// Revision is the revision the pod is being updated to.
	Revision string `json:"revision"`
	// From is the revision the pod ran when the update began.
	From string `json:"from,omitempty"`
	// Since is when the pod was marked not ready for the update.
	Since metav1.Time `json:"since"`
	// PatchedAt is when the images were patched; nil until then.
	PatchedAt *metav1.Time `json:"patchedAt,omitempty"`
	// Containers are the containers the patch changes, as they were just
	// before it, by name.
	Containers map[string]ContainerSnapshot `json:"containers"`
	// Failure, once reported, says why the update cannot complete.
	Failure string `json:"failure,omitempty"`
}

// ContainerSnapshot is a container's status just before its image is
// patched.
type ContainerSnapshot struct {
	ContainerID  string       `json:"containerID,omitempty"`
	ImageID      string       `json:"imageID,omitempty"`
	RestartCount int32        `json:"restartCount"`
	StartedAt    *metav1.Time `json:"startedAt,omitempty"`
}

// StateOf returns the pod's update state, or nil when no update is in
// progress.
func StateOf(pod *corev1.Pod) (*UpdateState, error) {
	raw, ok := pod.Annotations[AnnotationUpdateState]
	if !ok {
		return nil, nil
	}
	s := &UpdateState{}
	if err := json.Unmarshal([]byte(raw), s); err != nil {
		return nil, fmt.Errorf("annotation %s of pod %s/%s: %w", AnnotationUpdateState, pod.Namespace, pod.Name, err)
	}
	return s, nil
}

// Encode returns the annotation value of the state.
func (s *UpdateState) Encode() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // only plain fields: cannot fail
	}
	return string(b)
}

// Snapshot records the current status of the named containers, as the
// state's Containers.
func Snapshot(pod *corev1.Pod, containers []string) map[string]ContainerSnapshot {
	out := make(map[string]ContainerSnapshot, len(containers))
	for _, name := range containers {
		snap := ContainerSnapshot{}
		if cs := containerStatus(pod, name); cs != nil {
			snap = ContainerSnapshot{ContainerID: cs.ContainerID, ImageID: cs.ImageID, RestartCount: cs.RestartCount}
			if cs.State.Running != nil {
				t := cs.State.Running.StartedAt
				snap.StartedAt = &t
			}
		}
		out[name] = snap
	}
	return out
}

// Progress is how far a patched pod's update has come.
type Progress struct {
	// Done is true when every changed container runs the new image.
	Done bool
	// Failure says why the update cannot complete without a new change (an
	// image that cannot be pulled, a container that crash-loops); "" when
	// it may still.
	Failure string
}

// failingReasons are the kubelet's waiting reasons of a container that will
// not start without a change: backoffs and refusals, not a first failed
// attempt, which the kubelet retries.
var failingReasons = map[string]bool{
	"ImagePullBackOff":           true,
	"CrashLoopBackOff":           true,
	"InvalidImageName":           true,
	"ErrImageNeverPull":          true,
	"CreateContainerConfigError": true,
}

// CheckProgress judges a patched pod against its state. The update is done
// when the kubelet has seen the patched spec (the pod's observedGeneration,
// where the kubelet reports it, has reached its generation) and every changed
// container:
//   - is a new container (a container ID other than the recorded one),
//   - started no earlier than the container it replaces (both times are the
//     node's clock; the manager's may be skewed from it, so the patch time is
//     not compared with them),
//   - is running and ready.
//
// The image the kubelet reports is not required to match the spec: on a
// retag to the same digest, containerd 1.x reports the image's first tag
// (the old one) and the same image ID, and behind a registry mirror it
// reports the mirror's name; a check on either hangs there (OpenKruise
// #1493, #2297). A container that started after the patch was seen runs
// the patched spec.
//
// A regular init container has already run and the kubelet does not run it
// again on a live pod: its new image takes effect when the pod is next
// created, so it has nothing to wait for. A sidecar (an init container that
// restarts always) is waited for like a container.
func CheckProgress(pod *corev1.Pod, s *UpdateState) Progress {
	if s == nil || s.PatchedAt == nil {
		return Progress{}
	}
	done := pod.Status.ObservedGeneration == 0 || pod.Status.ObservedGeneration >= pod.Generation
	for name, before := range s.Containers {
		spec, init := containerSpec(pod, name)
		if spec == nil {
			return Progress{Failure: fmt.Sprintf("container %s is not in the pod", name)}
		}
		if init && !isSidecar(spec) {
			continue
		}
		cs := containerStatus(pod, name)
		if cs == nil {
			done = false
			continue
		}
		if w := cs.State.Waiting; w != nil && failingReasons[w.Reason] {
			msg := fmt.Sprintf("container %s: %s", name, w.Reason)
			if w.Message != "" {
				msg += ": " + w.Message
			}
			return Progress{Failure: msg}
		}
		running := cs.State.Running
		if cs.ContainerID == "" || cs.ContainerID == before.ContainerID || running == nil || !cs.Ready ||
			(before.StartedAt != nil && running.StartedAt.Before(before.StartedAt)) {
			done = false
		}
	}
	return Progress{Done: done}
}

// Replaced reports whether the kubelet has replaced every changed container
// of a patched pod: each reports another container ID than the recorded one
// (a new container, running or not). The containers the update drains are
// then gone, and readiness hangs on the new ones alone.
func Replaced(pod *corev1.Pod, s *UpdateState) bool {
	if s == nil || s.PatchedAt == nil {
		return false
	}
	for name, before := range s.Containers {
		spec, init := containerSpec(pod, name)
		if spec == nil || init && !isSidecar(spec) {
			continue
		}
		if cs := containerStatus(pod, name); cs == nil || cs.ContainerID == before.ContainerID {
			return false
		}
	}
	return true
}

func containerSpec(pod *corev1.Pod, name string) (c *corev1.Container, init bool) {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i], false
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i], true
		}
	}
	return nil, false
}

func containerStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}
