//go:build tools

// Package tools pins the versions of the developer tools the Makefile runs.
// Nothing here is imported by the product.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
	_ "golang.org/x/perf/cmd/benchstat"
	_ "helm.sh/helm/v4/cmd/helm"
	_ "honnef.co/go/tools/cmd/staticcheck"
	_ "sigs.k8s.io/kustomize/kustomize/v5"
)
