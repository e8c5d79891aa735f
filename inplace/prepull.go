package inplace

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Pulling ahead: before the first pod of a workload on a node has its
// containers restarted for new images, the node pulls them, so that the
// pull is not spent out of service. A prepull pod does it: bound to the
// node, with the workload's pull credentials (its pods' imagePullSecrets
// and service account), one container per new image whose command is a
// path that cannot exist in any container and an environment read from a
// ConfigMap that does not exist, so that the kubelet pulls the image and
// then fails to configure the container: nothing of the image runs, nor is
// the container even created. The manager
// creates it, reads it, and deletes it; the workload owns it, so that its
// deletion takes the pod along whatever the manager does.

// PrepullCommand is the command of a prepull pod's containers: a path in
// the proc filesystem the runtime mounts over /proc in every container,
// where no file can be created, whatever the image holds at /proc. The
// exec fails, so nothing of the image runs. The manager's admission policy
// (inplace-manager-scope) lets it create pods with this command only.
const PrepullCommand = "/proc/inplace-prepull"

// PrepullConfigMap names a ConfigMap that a prepull pod's containers read a
// key of: none is expected to exist, so that the kubelet, once it has the
// image, fails to make the container's configuration
// (CreateContainerConfigError) and never asks the runtime to create it,
// which is quick; were it to exist, the command still runs nothing.
const PrepullConfigMap = "inplace-prepull-runs-nothing"

// PrepullDeadline bounds a prepull pod's life on its node
// (activeDeadlineSeconds): one the manager lost track of ends there.
const PrepullDeadline int64 = 600

// PrepullName is the name of the prepull pod of a workload's revision on a
// node: the workload's name, cut to leave room, and a hash of what makes
// it unique.
func PrepullName(workload, revision, node string) string {
	sum := sha256.Sum256([]byte(workload + "\x00" + revision + "\x00" + node))
	base := workload
	if len(base) > 40 {
		base = base[:40]
	}
	return strings.TrimRight(base, "-.") + "-prepull-" + hex.EncodeToString(sum[:5])
}

// PrepullPod is the pod that has node pull containers' images for owner's
// revision, with the credentials of from, a pod of the workload. Only the
// containers' names, images and pull policies are taken.
func PrepullPod(owner metav1.OwnerReference, revision, node string, from *corev1.PodSpec, containers []corev1.Container) *corev1.Pod {
	tiny := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("8Mi")}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: PrepullName(owner.Name, revision, node),
			// A mesh's sidecar would need a volume, and run: the
			// pod asks Istio and Linkerd for none.
			Labels:          map[string]string{LabelPrepullFor: string(owner.UID), "sidecar.istio.io/inject": "false"},
			Annotations:     map[string]string{AnnotationPrepullRevision: revision, "linkerd.io/inject": "disabled"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name, UID: owner.UID}},
		},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			RestartPolicy:                 corev1.RestartPolicyNever,
			ActiveDeadlineSeconds:         ptr.To(PrepullDeadline),
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			ServiceAccountName:            from.ServiceAccountName,
			AutomountServiceAccountToken:  ptr.To(false),
			ImagePullSecrets:              slices.Clone(from.ImagePullSecrets),
			EnableServiceLinks:            ptr.To(false),
			// The node's taints are the workload's pods' to tolerate; a
			// pod bound by name passes the scheduler, and NoExecute ones
			// would evict it before it pulls.
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To(int64(65534)),
				RunAsGroup:     ptr.To(int64(65534)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		},
	}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name:            c.Name,
			Image:           c.Image,
			ImagePullPolicy: c.ImagePullPolicy,
			Command:         []string{PrepullCommand},
			Env: []corev1.EnvVar{{Name: "INPLACE_PREPULL", ValueFrom: &corev1.EnvVarSource{
				ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: PrepullConfigMap}, Key: "none"},
			}}},
			Resources: corev1.ResourceRequirements{Requests: tiny, Limits: tiny},
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		})
	}
	return pod
}

// Where a prepull pod stands.
const (
	// PrepullPulling: some image is not on the node yet.
	PrepullPulling = "Pulling"
	// PrepullPulled: every image is on the node.
	PrepullPulled = "Pulled"
	// PrepullFailed: an image cannot be pulled (a tag that does not exist,
	// credentials refused, a reference that does not parse).
	PrepullFailed = "Failed"
)

// pullFailures are the kubelet's waiting reasons of a container whose image
// it could not pull.
var pullFailures = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
}

// PrepullState reads a prepull pod's containers: Failed with the first
// pull failure (container, reason and the kubelet's message), Pulled once
// every container is past its pull (created, started, or refused for its
// command: the image is on the node either way), Pulling otherwise.
func PrepullState(pod *corev1.Pod) (state, detail string) {
	past := 0
	for _, cs := range pod.Status.ContainerStatuses {
		switch w := cs.State.Waiting; {
		case w != nil && pullFailures[w.Reason]:
			// In back-off the kubelet's message wraps the last pull's
			// error: the same failure reads the same in both.
			msg := w.Message
			if _, last, ok := strings.Cut(msg, ": ErrImagePull: "); ok && w.Reason == "ImagePullBackOff" {
				msg = last
			}
			detail = fmt.Sprintf("container %s: %s", cs.Name, cmp.Or(msg, w.Reason))
			return PrepullFailed, detail
		case w != nil && (w.Reason == "" || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing"):
			// Not pulled yet, or pulled and not created yet: wait.
		default:
			// Created, running, terminated, or waiting for another reason
			// (a failed start, a back-off): the kubelet had the image.
			past++
		}
	}
	if len(pod.Spec.Containers) > 0 && past == len(pod.Spec.Containers) && len(pod.Status.ContainerStatuses) == len(pod.Spec.Containers) {
		return PrepullPulled, ""
	}
	return PrepullPulling, ""
}

// OnNode reports whether the node has every container's image already, by
// what its kubelet reports (status.images: the largest images, up to 50 by
// default): those whose pull policy lets the kubelet use an image it has
// (IfNotPresent; Never), not Always, which asks the registry every time.
// An image the report leaves out counts as missing: pulling ahead then costs
// a pull that finds the image present.
func OnNode(node *corev1.Node, containers []corev1.Container) bool {
	have := map[string]bool{}
	for _, img := range node.Status.Images {
		for _, name := range img.Names {
			if n, err := NormalizeImage(name); err == nil {
				have[n] = true
			}
		}
	}
	for _, c := range containers {
		if c.ImagePullPolicy == corev1.PullNever {
			continue
		}
		n, err := NormalizeImage(c.Image)
		if c.ImagePullPolicy != corev1.PullIfNotPresent || err != nil || !have[n] {
			return false
		}
	}
	return true
}
