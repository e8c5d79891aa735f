// Package podcache trims the managed pods the manager caches to what it
// reads of them.
package podcache

import (
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Transform keeps, of a pod the cache receives, what the manager reads: its
// metadata but the managed fields; of its spec the node, the readiness
// gates, the pull credentials, the grace period and, of each container, its
// name, image, pull policy, resources, resize and restart policies; its
// status but the containers' mounts and users. Resource lists equal to one
// already cached are shared (a workload's pods ask for the same; the
// kubelet reports what the spec asks): the cache hands out deep copies, and
// nothing changes a cached object in place. A pod's volumes, its
// containers' environment, probes, mounts and security contexts, its
// scheduling constraints are most of its size and nothing the manager
// decides on: the rollouts compare revisions' templates, never a pod's
// spec, and they read pods only for images, resources and status.
//
// Every write of a cached pod is a strategic merge patch computed from its
// cached copy (client.StrategicMergeFrom): a field trimmed here is absent
// from both sides of the diff, so no patch ever removes it.
// TestTrimmedPodPatchesKeepWhatIsTrimmed proves it against an API server.
func Transform(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	pod.ManagedFields = nil
	s := &pod.Spec
	s.Volumes = nil
	s.NodeSelector, s.Affinity, s.Tolerations, s.TopologySpreadConstraints = nil, nil, nil, nil
	s.SecurityContext, s.DNSConfig, s.HostAliases, s.Overhead = nil, nil, nil, nil
	s.SchedulingGates, s.ResourceClaims = nil, nil
	s.InitContainers = trimContainers(s.InitContainers)
	s.Containers = trimContainers(s.Containers)
	s.EphemeralContainers = nil
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for i := range list {
			list[i].VolumeMounts, list[i].User, list[i].AllocatedResourcesStatus = nil, nil, nil
			list[i].AllocatedResources = shared.intern(list[i].AllocatedResources)
			if r := list[i].Resources; r != nil {
				r.Requests, r.Limits = shared.intern(r.Requests), shared.intern(r.Limits)
			}
		}
	}
	pod.Status.EphemeralContainerStatuses = nil
	return pod, nil
}

// trimContainers returns, in new memory (the decoded pod's is let go), the
// containers' fields the manager reads.
func trimContainers(cs []corev1.Container) []corev1.Container {
	if cs == nil {
		return nil
	}
	kept := make([]corev1.Container, len(cs))
	for i, c := range cs {
		kept[i] = corev1.Container{
			Name: c.Name, Image: c.Image, ImagePullPolicy: c.ImagePullPolicy,
			Resources: corev1.ResourceRequirements{
				Requests: shared.intern(c.Resources.Requests), Limits: shared.intern(c.Resources.Limits), Claims: c.Resources.Claims,
			},
			ResizePolicy: c.ResizePolicy, RestartPolicy: c.RestartPolicy,
		}
	}
	return kept
}

// maxShared bounds the resource lists kept for sharing: a cluster has a
// few per workload revision; past the bound the table starts afresh (the
// lists already shared stay shared).
const maxShared = 4096

// lists holds one copy of each distinct resource list seen.
type lists struct {
	mu   sync.Mutex
	byID map[string]corev1.ResourceList
}

var shared = &lists{byID: map[string]corev1.ResourceList{}}

// intern returns the copy of l kept, or keeps l.
func (s *lists) intern(l corev1.ResourceList) corev1.ResourceList {
	if len(l) == 0 {
		return l
	}
	names := make([]string, 0, len(l))
	for name := range l {
		names = append(names, string(name))
	}
	slices.Sort(names)
	var id strings.Builder
	for _, name := range names {
		q := l[corev1.ResourceName(name)]
		id.WriteString(name)
		id.WriteByte('=')
		id.WriteString(q.String())
		id.WriteByte(' ')
	}
	key := id.String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if kept, ok := s.byID[key]; ok {
		return kept
	}
	if len(s.byID) >= maxShared {
		clear(s.byID)
	}
	s.byID[key] = l
	return l
}
