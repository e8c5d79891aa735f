# inplace: in-place image updates for Deployments, StatefulSets and DaemonSets.
# `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BIN := $(ROOT)/.cache/bin
export PATH := /usr/local/go/bin:$(PATH)
export GOTOOLCHAIN := local
export KUBEBUILDER_ASSETS ?= $(BIN)

# The release: the binary says it (--version), the manifests and the chart
# name its image.
VERSION := $(shell cat $(ROOT)/VERSION)
IMG ?= ghcr.io/inplace-dev/inplace-manager:$(VERSION)
LDFLAGS := -X github.com/inplace-dev/inplace/cmd/inplace-manager/app.Version=$(VERSION)
FUZZTIME ?= 30s
BENCHCOUNT ?= 10

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
		/^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: build
build: ## Build bin/inplace-manager.
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/inplace-manager ./cmd/inplace-manager

.PHONY: test
# The informers of every test's manager panic if code changes an object
# they hold (client-go's cache mutation detector): the webhook reads some
# lists of the cache in place, without a copy.
test: test-assets $(BIN)/kustomize $(BIN)/helm ## Run the unit, fuzz-seed and integration tests (a real kube-apiserver and etcd), and the manifests' checks.
	KUBE_CACHE_MUTATION_DETECTOR=true go test -count=1 ./...
	cd e2e/rolloutstatus && go test -count=1 ./...
	$(MAKE) --no-print-directory test-manifests

.PHONY: test-manifests
test-manifests: $(BIN)/kustomize $(BIN)/helm $(BIN)/promtool ## Test the manifests' checks, and run them: no wildcard or cluster-wide Secrets in any role, the chart equal to kustomize, the alerts and the dashboard (promtool check and test rules, every metric one the manager exports).
	cd hack/tools && KUSTOMIZE=$(BIN)/kustomize HELM=$(BIN)/helm PROMTOOL=$(BIN)/promtool go test -count=1 ./cmd/manifestcheck

# The source snapshots of OpenKruise and cert-manager (neither is served by
# the Go module proxy) and their build script, beside the repository.
THIRDPARTY_DIR ?= $(abspath $(ROOT)/../shared/thirdparty)

.PHONY: test-assets
test-assets: ## Build etcd, kube-apiserver and cert-manager's controller and CA injector for the integration tests (cached in .cache/bin).
	KUBE_VERSION= hack/build-kube.sh etcd kube-apiserver
	$(THIRDPARTY_DIR)/build.sh cert-manager-controller $(BIN)
	$(THIRDPARTY_DIR)/build.sh cert-manager-cainjector $(BIN)

# The packages of this module with fuzz targets (the e2e and tools modules
# have none); each package's targets are what go test -list finds in it.
FUZZ_PACKAGES = $(sort $(dir $(shell git ls-files -co --exclude-standard '*_test.go' ':!e2e' ':!hack' | xargs grep -l '^func Fuzz')))

.PHONY: fuzz
fuzz: ## Run every fuzz target (found by go test -list '^Fuzz') for FUZZTIME each (default 30s); seeds in testdata/fuzz.
	@for pkg in $(FUZZ_PACKAGES:%/=./%); do \
		targets=$$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); \
		for target in $$targets; do \
			echo "go test -run '^\$$' -fuzz '^$$target\$$' -fuzztime $(FUZZTIME) $$pkg"; \
			go test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

.PHONY: bench
bench: $(BIN)/benchstat ## Benchmark the mutating handlers against an empty handler, and a Deployment's pod create with the cache's lists copied and not; prints benchstat's tables.
	@mkdir -p .cache
	go test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./webhook | tee .cache/bench-webhook.txt
	$(BIN)/benchstat -col /handler -filter '-.name:DeploymentPodCreate' .cache/bench-webhook.txt
	$(BIN)/benchstat -col '/handler@(copying inplace)' -filter '.name:DeploymentPodCreate' .cache/bench-webhook.txt

# make bench-admission: the rates (per second) and how long each server is
# driven at each (see hack/admissionload).
ADMISSION_RATES ?= 100,500,1000
ADMISSION_DURATION ?= 30s

# make bench-memory: the counts of managed pods measured, and the manager's
# memory limit at each (see hack/memscale).
MEMORY_MANAGED ?= 10000,30000
MEMORY_LIMITS ?= 256Mi,512Mi
MEMORY_FLAGS ?=

.PHONY: bench-admission
bench-admission: ## Send AdmissionReviews over TLS at fixed rates to inplace-manager and to an empty webhook, side by side (ADMISSION_RATES=100,500,1000 ADMISSION_DURATION=30s); the report goes to .cache/bench-admission.txt.
	KUBE_VERSION= hack/build-kube.sh etcd kube-apiserver
	go build -o $(BIN)/admissionload ./hack/admissionload
	$(BIN)/admissionload -rates $(ADMISSION_RATES) -duration $(ADMISSION_DURATION) -out $(ROOT)/.cache/bench-admission.txt

.PHONY: bench-memory
bench-memory: ## Measure inplace-manager's memory beside an empty manager at MEMORY_MANAGED managed pods (default 10000,30000; MEMORY_LIMITS its memory limit at each) with 20000 unmanaged ones, in a real kube-apiserver; the report goes to .cache/bench-memory.txt.
	KUBE_VERSION= hack/build-kube.sh etcd kube-apiserver
	go build -o $(BIN)/memscale ./hack/memscale
	$(BIN)/memscale -managed $(MEMORY_MANAGED) -memory-limit $(MEMORY_LIMITS) $(MEMORY_FLAGS)

.PHONY: lint
lint: $(BIN)/staticcheck ## gofmt, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go vet -tags e2e ./e2e/...
	go vet -tags e2e,kruise ./e2e/...
	$(BIN)/staticcheck ./...
	$(BIN)/staticcheck -tags e2e ./e2e/...
	$(BIN)/staticcheck -tags e2e,kruise ./e2e/...
	cd e2e/rolloutstatus && go vet ./...
	cd e2e/rolloutstatus && $(BIN)/staticcheck ./...

.PHONY: verify
verify: lint manifests verify-docs ## lint, tidy go.mod files, render every manifest and check the docs.
	go mod tidy -diff
	cd hack/tools && go mod tidy -diff
	cd e2e/rolloutstatus && go mod tidy -diff

.PHONY: verify-docs
verify-docs: ## Check the docs: every relative link and #anchor resolves; docs/reference.md names what the code has, no more, no less.
	go test -count=1 ./internal/docscheck

# The base with each component, with the policy and each certificate
# component together, and with the uninstall Job, as users compose them.
MANIFEST_COMPONENTS := cluster-policy builtin-certs cert-manager cluster-policy,builtin-certs cluster-policy,cert-manager builtin-certs,release-holds

.PHONY: manifests
manifests: $(BIN)/kustomize $(BIN)/helm ## Render every kustomization, the base with its components and the chart; fail where the chart and kustomize disagree.
	@for k in manifests/base e2e/manifests e2e/manifests-cert-manager; do \
		echo "kustomize build $$k"; $(BIN)/kustomize build $$k > /dev/null; done
	@mkdir -p bin/manifests-check && for c in $(MANIFEST_COMPONENTS); do \
		printf 'resources: [../../manifests/base]\ncomponents: [%s]\n' "$$(echo "$$c" | sed 's|[^,]*|../../manifests/components/&|g')" \
			> bin/manifests-check/kustomization.yaml; \
		echo "kustomize build manifests/base + $$c"; $(BIN)/kustomize build bin/manifests-check > /dev/null; done
	$(BIN)/helm lint --quiet manifests/charts/inplace
	cd hack/tools && go run ./cmd/manifestcheck -root $(ROOT) -kustomize $(BIN)/kustomize -helm $(BIN)/helm \
		-compositions "$(MANIFEST_COMPONENTS)"

##@ Deployment

.PHONY: image
image: ## Build the manager image, tagged $(IMG) (and :e2e), as a docker-archive tarball in .cache/images/manager.tar (no Docker needed).
	e2e/cluster/images.sh manager

.PHONY: deploy
deploy: $(BIN)/kustomize ## Install the manager on the cluster of the current kubeconfig (manifests/base; needs the inplace-webhook-cert Secret).
	$(BIN)/kustomize build manifests/base | kubectl apply -f -

##@ Tools

.PHONY: tools
tools: $(BIN)/kustomize $(BIN)/helm $(BIN)/staticcheck $(BIN)/promtool ## Build the pinned kustomize, helm, staticcheck and promtool into .cache/bin.

# Each tool at the version hack/tools/go.mod pins; rebuilt when the pin moves.
TOOL_PACKAGES := staticcheck=honnef.co/go/tools/cmd/staticcheck kustomize=sigs.k8s.io/kustomize/kustomize/v5 benchstat=golang.org/x/perf/cmd/benchstat helm=helm.sh/helm/v4/cmd/helm promtool=github.com/prometheus/prometheus/cmd/promtool
$(BIN)/%: hack/tools/go.mod hack/tools/go.sum
	@pkg=$(patsubst $*=%,%,$(filter $*=%,$(TOOL_PACKAGES))); test -n "$$pkg" || { echo "no pinned tool $*"; exit 1; }; \
		mkdir -p $(BIN) && cd hack/tools && echo "building $* ($$pkg)" && go build -o $(BIN)/$* $$pkg

include hack/cluster.mk
