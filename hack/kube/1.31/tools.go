//go:build tools

// Package kube pins the Kubernetes components that the tests run: it is a
// scratch module, never imported by the product, so that k8s.io/kubernetes and
// its staging modules stay out of the product's go.mod.
package kube // k8s.io/kubernetes v1.31.0

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
