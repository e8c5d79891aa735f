package inplace

import (
	"k8s.io/apimachinery/pkg/util/version"
)

// sidecarRestartVersion is the first kubelet that restarts a native sidecar
// (an init container that restarts always) when its image changes on a
// live pod. Older kubelets keep the running sidecar: such a change is not in
// place there.
var sidecarRestartVersion = version.MajorMinor(1, 32)

// SidecarRestartsOnImageChange reports whether a kubelet of that version
// (a node's status.nodeInfo.kubeletVersion, e.g. "v1.37.2") restarts a
// native sidecar whose image changes. A version that does not parse is
// taken as too old: the update then recreates the pod, which is always
// safe.
func SidecarRestartsOnImageChange(kubeletVersion string) bool {
	v, err := version.ParseGeneric(kubeletVersion)
	if err != nil {
		return false
	}
	return v.AtLeast(sidecarRestartVersion)
}

// resizeVersion is the first kubelet that resizes a running pod's
// containers by default (in-place pod resize, beta and on from 1.33, GA in
// 1.35).
var resizeVersion = version.MajorMinor(1, 33)

// KubeletResizes reports whether a kubelet of that version resizes a
// running container through the pod's resize subresource. A version that
// does not parse is taken as too old: the pod is then recreated.
func KubeletResizes(kubeletVersion string) bool {
	v, err := version.ParseGeneric(kubeletVersion)
	return err == nil && v.AtLeast(resizeVersion)
}
