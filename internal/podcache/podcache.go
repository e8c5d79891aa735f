// Package podcache trims the managed pods the manager caches to what it
// reads of them.
package podcache

import (
	"slices"
	"strings"
	"sync"
	"unique"

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
// spec, and they read pods only for images, resources and status. The
// strings that pods repeat (label keys and values, images, condition
// types, node names) are kept once for all of them (internStrings).
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
	trim(pod)
	internStrings(pod)
	return pod, nil
}

// trim drops what the manager does not read of a pod, and shares its
// resource lists.
func trim(pod *corev1.Pod) {
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

// internStrings has the pod's strings that other pods repeat share one
// copy: the decoder gives each field its own, and a workload's pods carry
// the same namespace, label keys and values, owner, images, node and
// condition types, as many bytes again as the trimmed pod's own fields.
// The copies are the runtime's canonical ones (package unique), freed
// once no pod holds them. Strings are immutable: sharing is invisible.
// Values unlikely to repeat (its name, UID, IPs, container IDs) and long
// annotation values (an update state) keep their own.
func internStrings(pod *corev1.Pod) {
	m := &pod.ObjectMeta
	m.Namespace, m.GenerateName = in(m.Namespace), in(m.GenerateName)
	m.Labels = internMap(m.Labels)
	m.Annotations = internMap(m.Annotations)
	for i := range m.OwnerReferences {
		o := &m.OwnerReferences[i]
		o.APIVersion, o.Kind, o.Name = in(o.APIVersion), in(o.Kind), in(o.Name)
	}
	s := &pod.Spec
	s.NodeName, s.ServiceAccountName, s.DeprecatedServiceAccount = in(s.NodeName), in(s.ServiceAccountName), in(s.DeprecatedServiceAccount)
	s.SchedulerName, s.PriorityClassName = in(s.SchedulerName), in(s.PriorityClassName)
	s.RestartPolicy, s.DNSPolicy = in(s.RestartPolicy), in(s.DNSPolicy)
	for i := range s.ImagePullSecrets {
		s.ImagePullSecrets[i].Name = in(s.ImagePullSecrets[i].Name)
	}
	for i := range s.ReadinessGates {
		s.ReadinessGates[i].ConditionType = in(s.ReadinessGates[i].ConditionType)
	}
	for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range cs {
			c := &cs[i]
			c.Name, c.Image, c.ImagePullPolicy = in(c.Name), in(c.Image), in(c.ImagePullPolicy)
		}
	}
	st := &pod.Status
	st.Phase, st.QOSClass, st.HostIP = in(st.Phase), in(st.QOSClass), in(st.HostIP)
	for i := range st.HostIPs {
		st.HostIPs[i].IP = in(st.HostIPs[i].IP)
	}
	for i := range st.Conditions {
		c := &st.Conditions[i]
		c.Type, c.Status, c.Reason = in(c.Type), in(c.Status), in(c.Reason)
	}
	for _, list := range [][]corev1.ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses} {
		for i := range list {
			c := &list[i]
			c.Name, c.Image, c.ImageID = in(c.Name), in(c.Image), in(c.ImageID)
			internState(&c.State)
			internState(&c.LastTerminationState)
		}
	}
}

func internState(s *corev1.ContainerState) {
	if s.Waiting != nil {
		s.Waiting.Reason = in(s.Waiting.Reason)
	}
	if s.Terminated != nil {
		s.Terminated.Reason = in(s.Terminated.Reason)
	}
}

// maxInternedValue bounds the map values kept once: longer ones (an
// update state, a checksum) are a pod's own.
const maxInternedValue = 64

// internMap returns m with its keys, and its values up to
// maxInternedValue bytes, kept once; a new map (the decoded one is let go).
func internMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if len(v) <= maxInternedValue {
			v = in(v)
		}
		out[in(k)] = v
	}
	return out
}

// in returns the canonical copy of s.
func in[S ~string](s S) S {
	if s == "" {
		return s
	}
	return S(unique.Make(string(s)).Value())
}
