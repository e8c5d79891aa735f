package inplace

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

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
	// Containers are the containers the patch restarts, as they were just
	// before it, by name.
	Containers map[string]ContainerSnapshot `json:"containers"`
	// Resize are the containers the update resizes, by name, with the
	// resources they are resized to: done when the kubelet reports them.
	Resize map[string]corev1.ResourceRequirements `json:"resize,omitempty"`
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
	// Observed is true once the kubelet has taken in the patched spec (the
	// pod's observedGeneration has reached its generation): the sync that
	// took it in computed the pod's status with its gate closed, and is
	// replacing the containers.
	Observed bool
	// Replaced is true once the kubelet has taken down every container the
	// update replaces: it has seen the patch, and each changed container is
	// a new one or is not running. Until then a replaced container may still
	// run (a preStop hook, a long grace period) and be reported ready, so the
	// pod's gate stays closed: opened now, it would let the kubelet count the
	// old container ready and send it traffic it then drops.
	Replaced bool
	// Started is true when every changed container is a new container,
	// running and ready.
	Started bool
	// Done is true when the update is Started and its resize, if it has
	// one, is applied.
	Done bool
	// Failure says why the update cannot complete without a new change (an
	// image that cannot be pulled, a container that crash-loops), as a
	// stable text (container and reason) that changes only when the cause
	// does; "" when it may still complete.
	Failure string
	// Detail is Failure with the kubelet's message, for events.
	Detail string
	// Resize is where the kubelet stands with the update's resize:
	// ResizeDone, or the reason of its PodResizePending condition
	// (Deferred, Infeasible) or of its PodResizeInProgress one (InProgress,
	// Error); ResizeMessage is the kubelet's message.
	Resize, ResizeMessage string
}

// Where the kubelet stands with a resize (Progress.Resize), beside the
// reasons of the kubelet's PodResizePending condition (Deferred,
// Infeasible).
const (
	ResizeDone       = "Done"
	ResizeInProgress = "InProgress"
	ResizeError      = "Error"
)

// GateMayOpen reports whether the pod's gate may open: its containers are
// taken in (TakenIn), and its resize, if the update has one, is applied or
// the update has failed. A container restarted for its image starts under
// the resources allocated when it is created; the kubelet applies a resize
// that it admits after that to the running container, up to a second later.
// Until then the pod does not run its revision, and its workload must not
// count it Ready: kubectl rollout status would report the rollout complete
// with a container still under its old limits.
func (p Progress) GateMayOpen(guarded bool) bool {
	if p.Failure == "" && p.Resize != "" && p.Resize != ResizeDone {
		return false
	}
	return p.TakenIn(guarded)
}

// TakenIn reports whether the kubelet has taken in the update's containers
// as far as the gate needs. Guarded, the API server refuses any status that
// makes the pod Ready while a replaced container still runs (the readiness
// guard policy of manifests/base): that is as soon as the kubelet has taken
// in the patch, so that every later sync of the kubelet has the gate open
// and the kubelet turns the pod Ready the moment its new containers are.
// Unguarded, it is once the kubelet reports every replaced container gone,
// which costs the pod up to a second more of not being Ready (the
// kubelet's next container relist).
func (p Progress) TakenIn(guarded bool) bool {
	if guarded {
		return p.Observed
	}
	return p.Replaced
}

// Settled reports whether the kubelet has acted on the patch as far as it
// will without a new change: the replaced containers are gone, or the update
// failed. A new patch is then unambiguous (the next new container is the
// next patch's), so a pod whose target changed may be patched again.
func (p Progress) Settled() bool { return p.Replaced || p.Failure != "" }

// failingReasons are the kubelet's waiting reasons of a container that will
// not run without a change to the pod: back-offs and refusals. Pull and
// create errors concern the spec's image and configuration; a crash loop
// or a failed start concerns the container the kubelet last ran.
var failingReasons = map[string]bool{
	"ImagePullBackOff":           true,
	"ErrImagePull":               true,
	"InvalidImageName":           true,
	"ErrImageNeverPull":          true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
	"CrashLoopBackOff":           true,
	"RunContainerError":          true,
	"PreStartHookError":          true,
	"PostStartHookError":         true,
}

// runReasons are the failing reasons that concern a container the kubelet
// started: they count only for a new container, not for the old one still
// reported from before the patch.
var runReasons = map[string]bool{
	"CrashLoopBackOff":   true,
	"RunContainerError":  true,
	"PostStartHookError": true,
}

// CheckProgress judges a patched pod against its state. The kubelet must
// first have seen the patched spec (the pod's observedGeneration, where the
// kubelet reports it, has reached its generation): a status older than
// that says nothing of the update. Then each changed container:
//   - is replaced when it is a new container (a container ID other than the
//     recorded one) or no longer runs;
//   - is done when it is a new container, running and ready, started no
//     earlier than the container it replaces (both times are the node's
//     clock; the manager's may be skewed from it);
//   - has failed when the kubelet keeps it from running: a pull or create
//     error for the spec's image, a crash loop of a new container.
//
// The image the kubelet reports is not required to match the spec: on a
// retag to the same digest, containerd 1.x reports the image's first tag
// (the old one) and the same image ID, and behind a registry mirror it
// reports the mirror's name; a check on either hangs there (OpenKruise
// #1493, #2297). A container that started after the patch was seen runs
// the patched spec.
//
// A regular init container is not part of an in-place update (the kubelet
// does not run it again on a live pod); a sidecar (an init container that
// restarts always) is judged like a container.
func CheckProgress(pod *corev1.Pod, s *UpdateState) Progress {
	if s == nil || s.PatchedAt == nil {
		return Progress{}
	}
	if pod.Status.ObservedGeneration != 0 && pod.Status.ObservedGeneration < pod.Generation {
		return Progress{}
	}
	p := Progress{Observed: true, Replaced: true, Done: true}
	// A status the kubelet wrote for the patched spec: its pull and create
	// errors are the new image's and configuration's.
	current := pod.Status.ObservedGeneration != 0 && pod.Status.ObservedGeneration >= pod.Generation
	for _, name := range sortedKeys(s.Containers) {
		before := s.Containers[name]
		spec, init := containerSpec(pod, name)
		if spec == nil {
			msg := fmt.Sprintf("container %s is not in the pod", name)
			return Progress{Observed: true, Failure: msg, Detail: msg}
		}
		if init && !isSidecar(spec) {
			continue
		}
		cs := containerStatus(pod, name)
		if cs == nil {
			p.Replaced, p.Done = false, false
			continue
		}
		fresh := cs.ContainerID != "" && cs.ContainerID != before.ContainerID
		running := cs.State.Running
		if !fresh && running != nil {
			p.Replaced = false
		}
		if !fresh || running == nil || !cs.Ready || (before.StartedAt != nil && running.StartedAt.Before(before.StartedAt)) {
			p.Done = false
		}
		if w := cs.State.Waiting; w != nil && p.Failure == "" && failingReasons[w.Reason] &&
			(fresh || !runReasons[w.Reason]) && (runReasons[w.Reason] || current || aboutImage(cs, w, spec.Image)) {
			p.Failure = fmt.Sprintf("container %s: %s", name, w.Reason)
			p.Detail = p.Failure
			if w.Message != "" {
				p.Detail += ": " + w.Message
			}
		}
	}
	p.Started = p.Done
	if len(s.Resize) > 0 {
		p.Resize, p.ResizeMessage = resizeProgress(pod, s.Resize)
		if p.Resize != ResizeDone {
			p.Done = false
		}
	}
	if p.Failure != "" {
		p.Started, p.Done = false, false
	}
	return p
}

// aboutImage reports whether a container's pull or create error concerns
// image, where the kubelet does not say which spec its status is of (no
// observedGeneration): the status names that image (for a container not
// created yet), or so does the error's message. The kubelet reports a
// container that failed to start under the image of the container it last
// ran, and names the image it could not pull in the message.
func aboutImage(cs *corev1.ContainerStatus, w *corev1.ContainerStateWaiting, image string) bool {
	return cs.Image == "" || SameImage(cs.Image, image) || strings.Contains(w.Message, `"`+image) || strings.Contains(w.Message, "/"+image+`"`)
}

// resizeProgress judges a resize from the pod's status: the kubelet's
// PodResizePending and PodResizeInProgress conditions first, then each
// container's resources as the kubelet reports them applied.
func resizeProgress(pod *corev1.Pod, want map[string]corev1.ResourceRequirements) (string, string) {
	if c := condition(pod, corev1.PodResizePending); c != nil && c.Status == corev1.ConditionTrue {
		return c.Reason, c.Message
	}
	if c := condition(pod, corev1.PodResizeInProgress); c != nil && c.Status == corev1.ConditionTrue {
		if c.Reason == corev1.PodReasonError {
			return ResizeError, c.Message
		}
		return ResizeInProgress, c.Message
	}
	for _, name := range sortedKeys(want) {
		cs := containerStatus(pod, name)
		if cs == nil || cs.Resources == nil || !ResourcesApplied(*cs.Resources, want[name]) {
			return ResizeInProgress, "container " + name + ": the kubelet does not report the new resources yet"
		}
	}
	return ResizeDone, ""
}

// ResourcesApplied reports whether resources, as the kubelet reports them
// for a container, are want in cpu and memory requests and limits.
func ResourcesApplied(got, want corev1.ResourceRequirements) bool {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		for _, pair := range [][2]corev1.ResourceList{{got.Requests, want.Requests}, {got.Limits, want.Limits}} {
			g, gok := pair[0][name]
			w, wok := pair[1][name]
			if wok != gok && !(wok && w.IsZero()) || wok && gok && g.Cmp(w) != 0 {
				return false
			}
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
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
