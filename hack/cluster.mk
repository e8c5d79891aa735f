# The end-to-end cluster: the control plane and node 1 in the network
# namespace inplace-e2e, nodes 2..NODES each in their own, its state under
# .cache/cluster. Included by the top-level Makefile; the work is done by the
# scripts in e2e/cluster (runnable on their own as well).

# The repository root, whatever the directory make runs in.
CLUSTER_REPO_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
CLUSTER_SCRIPTS := $(CLUSTER_REPO_ROOT)/e2e/cluster
CLUSTER_STATE_DIR := $(CLUSTER_REPO_ROOT)/.cache/cluster
CLUSTER_KUBECONFIG := $(CLUSTER_STATE_DIR)/admin.kubeconfig
CLUSTER_KUBECTL := nsenter --net=/var/run/netns/inplace-e2e $(CLUSTER_REPO_ROOT)/.cache/bin/kubectl --kubeconfig=$(CLUSTER_KUBECONFIG)

# NODES: the cluster's node count, for every target that brings it up
# (cluster, e2e, e2e-install, e2e-kruise, deploy-e2e, bench-rollout, demo,
# ...): make e2e NODES=3. Unset: as many as the running cluster has, one if
# none runs. A running cluster with another count gets the missing nodes or
# loses the extra ones (e2e/cluster/up.sh).
NODES ?=
export NODES

# KUBE_VERSION: the Kubernetes release the cluster runs, a minor pinned under
# hack/kube (make e2e KUBE_VERSION=1.34); unset, the default one
# (hack/kube/go.mod). A cluster up at another release is brought up again.
KUBE_VERSION ?=
export KUBE_VERSION

##@ End-to-end tests and demo

# E2E_KEEP_CLUSTER: unset tears down a cluster that make e2e started and keeps
# one that was already running; 1 always keeps it; 0 always tears it down.
E2E_KEEP_CLUSTER ?=
# E2E_RUN: a -test.run pattern, e.g. make e2e E2E_RUN=FailOpen
E2E_RUN ?=

.PHONY: e2e
e2e: ## Bring the cluster up, install the manager, run the e2e tests in the cluster's namespace, tear down what it started (E2E_KEEP_CLUSTER=1 keeps it).
	@E2E_KEEP_CLUSTER='$(E2E_KEEP_CLUSTER)' E2E_RUN='$(E2E_RUN)' $(CLUSTER_REPO_ROOT)/e2e/run.sh

.PHONY: e2e-install
e2e-install: deploy-e2e $(BIN)/helm $(BIN)/kustomize ## Install and uninstall on the cluster: the Helm chart (install, rollout, upgrade, uninstall mid-rollout), kustomize with the release-holds Job, then cert-manager mode with the real cert-manager (renewal included); the kustomize install is put back after.
	@$(CLUSTER_SCRIPTS)/install-e2e.sh

# THIRDPARTY_DIR: the OpenKruise and cert-manager source snapshots and their
# build script (default ../shared/thirdparty beside the repository).
export THIRDPARTY_DIR ?= $(abspath $(CLUSTER_REPO_ROOT)/../shared/thirdparty)

# KUBE_VERSIONS: the releases make e2e-versions runs the suite at, each a
# minor pinned under hack/kube (hack/pin-kube.sh pins another).
KUBE_VERSIONS ?= 1.30 1.31 1.32 1.33 1.34 1.35 1.36 1.37

.PHONY: e2e-versions
e2e-versions: ## Run the whole e2e suite once per Kubernetes release in KUBE_VERSIONS, each on a cluster brought up at that release and torn down after; a line per release (logs in .cache/e2e-versions).
	@$(CLUSTER_REPO_ROOT)/e2e/versions.sh $(KUBE_VERSIONS)

.PHONY: e2e-kruise
e2e-kruise: ## The OpenKruise suite: cluster up, manager installed, Kruise installed, TestKruise* run, Kruise uninstalled, teardown as make e2e (E2E_KEEP_CLUSTER).
	@E2E_KRUISE=1 E2E_KEEP_CLUSTER='$(E2E_KEEP_CLUSTER)' E2E_RUN='$(E2E_RUN)' $(CLUSTER_REPO_ROOT)/e2e/run.sh

# BENCH_REPLICAS, BENCH_RUNS, BENCH_MODES: the StatefulSet sizes, the runs
# of each, and the modes (e2e/benchrollout: inplace, noprepull, native,
# floor, kruise), alternated within each run.
# With kruise among the modes, OpenKruise is installed first (make kruise).
BENCH_REPLICAS ?= 3,30
BENCH_RUNS ?= 3
BENCH_MODES ?= inplace,native,floor,kruise
# BENCH_KINDS: statefulset, deployment (beside a Kruise CloneSet), daemonset
# (one pod per node).
BENCH_KINDS ?= statefulset,deployment,daemonset
# BENCH_CHANGE: image, or resources (the container's CPU: in place and
# native only).
BENCH_CHANGE ?= image
# BENCH_PULL: imported (the images are on every node already) or registry
# (each run pushes images of its own to the cluster's registry, so every
# node pulls the new one during the rollout, at the registry's shaped rate).
BENCH_PULL ?= imported

.PHONY: bench-rollout
bench-rollout: deploy-e2e ## Time one image change in place, native, the no-gate floor and with Kruise, for a StatefulSet, a Deployment and a DaemonSet; pods created and deleted counted (BENCH_KINDS=... BENCH_REPLICAS=3,30 BENCH_RUNS=3 BENCH_MODES=... BENCH_CHANGE=image|resources BENCH_PULL=imported|registry).
	@mkdir -p $(CLUSTER_REPO_ROOT)/.cache/bin
	@if [[ ,$(BENCH_MODES), == *,kruise,* ]]; then $(CLUSTER_SCRIPTS)/kruise.sh install; fi
	@cd $(CLUSTER_REPO_ROOT) && CGO_ENABLED=0 GOTOOLCHAIN=local go build -o .cache/bin/benchrollout ./e2e/benchrollout
	@KUBECONFIG=$(CLUSTER_KUBECONFIG) nsenter --net=/var/run/netns/inplace-e2e $(CLUSTER_REPO_ROOT)/.cache/bin/benchrollout \
		-kinds $(BENCH_KINDS) -replicas $(BENCH_REPLICAS) -runs $(BENCH_RUNS) -modes $(BENCH_MODES) -change $(BENCH_CHANGE) -from $$($(CLUSTER_SCRIPTS)/images.sh ref testapp-v1) -to $$($(CLUSTER_SCRIPTS)/images.sh ref testapp-v2) \
		$(if $(filter registry,$(BENCH_PULL)),-push $(CLUSTER_SCRIPTS)/registry.sh) \
		| tee $(CLUSTER_REPO_ROOT)/.cache/bench-rollout.txt

# BENCH_GATE_PODS, BENCH_GATE_RUNS: the pods of each Deployment and the runs
# of make bench-gate (e2e/benchgate).
BENCH_GATE_PODS ?= 30
BENCH_GATE_RUNS ?= 3

.PHONY: bench-gate
bench-gate: deploy-e2e ## What the readiness gate costs a new pod: containers ready -> pod Ready, a managed Deployment's pods beside an unmanaged one's, p50/p99 (BENCH_GATE_PODS=30 BENCH_GATE_RUNS=3).
	@mkdir -p $(CLUSTER_REPO_ROOT)/.cache/bin
	@cd $(CLUSTER_REPO_ROOT) && CGO_ENABLED=0 GOTOOLCHAIN=local go build -o .cache/bin/benchgate ./e2e/benchgate
	@KUBECONFIG=$(CLUSTER_KUBECONFIG) nsenter --net=/var/run/netns/inplace-e2e $(CLUSTER_REPO_ROOT)/.cache/bin/benchgate \
		-pods $(BENCH_GATE_PODS) -runs $(BENCH_GATE_RUNS) -image $$($(CLUSTER_SCRIPTS)/images.sh ref testapp-v1) \
		| tee $(CLUSTER_REPO_ROOT)/.cache/bench-gate.txt

# STRESS_UPDATES, STRESS_PODS, STRESS_PRESTOP, STRESS_HOG: see e2e/flipstress.
STRESS_UPDATES ?= 200
STRESS_PODS ?= 10
STRESS_PRESTOP ?= 3
STRESS_HOG ?= 2

.PHONY: stress-flips
stress-flips: deploy-e2e images ## Roll a StatefulSet of pods with a preStop sleep back and forth in place under a CPU hog (STRESS_UPDATES=200 pod updates) and count readiness flips: must be 0.
	@cd $(CLUSTER_REPO_ROOT) && CGO_ENABLED=0 GOTOOLCHAIN=local go build -o .cache/bin/flipstress ./e2e/flipstress
	@KUBECONFIG=$(CLUSTER_KUBECONFIG) nsenter --net=/var/run/netns/inplace-e2e $(CLUSTER_REPO_ROOT)/.cache/bin/flipstress \
		-updates $(STRESS_UPDATES) -pods $(STRESS_PODS) -prestop $(STRESS_PRESTOP) -hog $(STRESS_HOG) \
		-images $$($(CLUSTER_SCRIPTS)/images.sh stress-refs | paste -sd,) \
		| tee $(CLUSTER_REPO_ROOT)/.cache/stress-flips.txt

# BENCH_API_PODS, BENCH_API_RUNS, BENCH_API_ROLLOUT_PODS, BENCH_API_KINDS,
# BENCH_API_IDLE: see e2e/benchapi.
BENCH_API_PODS ?= 300
BENCH_API_RUNS ?= 2
BENCH_API_ROLLOUT_PODS ?= 10
BENCH_API_KINDS ?= statefulset,deployment,daemonset
BENCH_API_IDLE ?= 0s

.PHONY: bench-apiserver
bench-apiserver: deploy-e2e ## What inplace costs the API server, by its own metrics: pod creates managed, unmanaged, and unmanaged with a webhook call that changes nothing (BENCH_API_PODS=300 pods no node runs) and the writes of rollouts in place vs native (BENCH_API_KINDS=statefulset,deployment,daemonset BENCH_API_ROLLOUT_PODS=10).
	@cd $(CLUSTER_REPO_ROOT) && CGO_ENABLED=0 GOTOOLCHAIN=local go build -o .cache/bin/benchapi ./e2e/benchapi
	@KUBECONFIG=$(CLUSTER_KUBECONFIG) nsenter --net=/var/run/netns/inplace-e2e $(CLUSTER_REPO_ROOT)/.cache/bin/benchapi \
		-pods $(BENCH_API_PODS) -runs $(BENCH_API_RUNS) -audit-log $(CLUSTER_STATE_DIR)/logs/audit.log -rollout-pods=$(BENCH_API_ROLLOUT_PODS) -rollout-kinds=$(BENCH_API_KINDS) -idle $(BENCH_API_IDLE) \
		-images $$($(CLUSTER_SCRIPTS)/images.sh ref testapp-v1),$$($(CLUSTER_SCRIPTS)/images.sh ref testapp-v2) \
		| tee $(CLUSTER_REPO_ROOT)/.cache/bench-apiserver.txt

# GATE_WRITES_SINCE, GATE_WRITES_UNTIL: the writes counted, by the time the
# API server received them (RFC 3339; empty: from the log's start, to its end).
GATE_WRITES_SINCE ?=
GATE_WRITES_UNTIL ?=

.PHONY: gate-writes
gate-writes: ## Count the manager's writes that open a readiness gate in the cluster's audit log, at pod creation and later, and those refused as conflicts (GATE_WRITES_SINCE=... GATE_WRITES_UNTIL=...: one run's).
	@cd $(CLUSTER_REPO_ROOT) && CGO_ENABLED=0 GOTOOLCHAIN=local go run ./e2e/gatewrites -audit-log $(CLUSTER_STATE_DIR)/logs/audit.log \
		-since '$(GATE_WRITES_SINCE)' -until '$(GATE_WRITES_UNTIL)'

# CHAOS_ROLLOUTS: see e2e/chaos. CHAOS_FLAGS: more of its flags, such as
# -workloads deploy -triggers gate-closed to repeat one case.
CHAOS_ROLLOUTS ?= 50
CHAOS_FLAGS ?=

.PHONY: chaos
chaos: deploy-e2e images ## Roll the four kinds in place CHAOS_ROLLOUTS=50 times, SIGKILLing manager replicas mid-rollout (at the gate's close, the image patch, a refused write, at random, both replicas); every rollout must complete with nothing left.
	@cd $(CLUSTER_REPO_ROOT) && CGO_ENABLED=0 GOTOOLCHAIN=local go build -o .cache/bin/chaos ./e2e/chaos
	@KUBECONFIG=$(CLUSTER_KUBECONFIG) nsenter --net=/var/run/netns/inplace-e2e $(CLUSTER_REPO_ROOT)/.cache/bin/chaos \
		-rollouts $(CHAOS_ROLLOUTS) -logs $(CLUSTER_REPO_ROOT)/.cache/chaos-logs/$$(date +%Y%m%d-%H%M%S) $(CHAOS_FLAGS) -images $$($(CLUSTER_SCRIPTS)/images.sh stress-refs | paste -sd,) \
		| tee $(CLUSTER_REPO_ROOT)/.cache/chaos.txt

# KRUISE: 1 runs the seed document's own scenario, an OpenKruise Advanced
# StatefulSet, with Kruise installed (hack/demo-kruise.sh).
KRUISE ?=

.PHONY: demo
demo: ## The seed scenario on the local cluster, narrated (KRUISE=1: verbatim, with OpenKruise); leaves the cluster up (make cluster-down stops it).
	@if [ '$(KRUISE)' = 1 ]; then $(CLUSTER_REPO_ROOT)/hack/demo-kruise.sh; else $(CLUSTER_REPO_ROOT)/hack/demo.sh; fi

##@ End-to-end cluster

.PHONY: cluster
cluster: ## Build the Kubernetes binaries and test images, bring the cluster up (a healthy one is reused; NODES=3 for three nodes).
	@$(CLUSTER_SCRIPTS)/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the cluster, every node of it, and clean up after it; keeps certificates, etcd and images for a quick restart.
	@$(CLUSTER_SCRIPTS)/down.sh

.PHONY: cluster-purge
cluster-purge: ## Stop the cluster and delete all of its state (.cache/cluster).
	@$(CLUSTER_SCRIPTS)/down.sh --purge

.PHONY: kubectl
kubectl: ## Print a command that runs the cluster's kubectl from the host, for: $(make -s kubectl) get pod -A
	@echo "$(CLUSTER_KUBECTL)"

.PHONY: kubeconfig
kubeconfig: ## Print the path of the cluster's admin kubeconfig (valid inside the namespace).
	@echo "$(CLUSTER_KUBECONFIG)"

.PHONY: test-images
test-images: ## Print the test app's image references: v1, v2, v3 (oldest first), then v2-retag (v2's digest), bad (exits 1), unready (never ready).
	@$(CLUSTER_SCRIPTS)/images.sh test-refs

.PHONY: images
images: ## Build the pause and test app images and import them into every node of the running cluster.
	@$(CLUSTER_SCRIPTS)/images.sh build
	@$(CLUSTER_SCRIPTS)/images.sh import

.PHONY: kruise
kruise: deploy-e2e ## Build kruise-manager from the OpenKruise snapshot (THIRDPARTY_DIR), install it on the cluster after inplace-manager, wait until its webhooks answer.
	@$(CLUSTER_SCRIPTS)/kruise.sh install

.PHONY: kruise-down
kruise-down: ## Uninstall OpenKruise from the cluster: its fail-closed webhooks first, then its CRDs (and every Kruise object), then the rest.
	@$(CLUSTER_SCRIPTS)/kruise.sh uninstall

.PHONY: cert-manager
cert-manager: cluster $(BIN)/helm ## Build cert-manager's controller, CA injector and webhook from the snapshot (THIRDPARTY_DIR), install its own chart on the cluster, wait until it issues a Certificate. Then: make deploy-e2e E2E_MANIFESTS=e2e/manifests-cert-manager.
	@$(CLUSTER_SCRIPTS)/certmanager.sh install

.PHONY: cert-manager-down
cert-manager-down: ## Uninstall cert-manager from the cluster: its webhook configurations, its CRDs (and every Issuer, Certificate, ...), the rest; fails if anything of it is left.
	@$(CLUSTER_SCRIPTS)/certmanager.sh uninstall

.PHONY: deploy-e2e
deploy-e2e: cluster ## Build the manager binary and image, install it with e2e/manifests, wait until it is Available.
	@$(CLUSTER_SCRIPTS)/deploy.sh
