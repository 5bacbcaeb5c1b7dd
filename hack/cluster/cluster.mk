# Local Kubernetes cluster built from upstream components (hack/cluster,
# docs/local-cluster.md). Included by the top-level Makefile; also usable
# alone: make -f hack/cluster/cluster.mk cluster-up. Paths are relative to
# the repository root.
#
#   make cluster-up [MODE=full|control-plane]   start (no-op when up)
#   make cluster-gateway                        Traefik as the full cluster's Gateway
#                                               API implementation (no-op when up)
#   make cluster-down                           stop, remove everything it made
#   make cluster-status                         what runs
#   make cluster-image IMAGE=ref SRC=path [ENTRYPOINT='/prog --flag']
#                                               OCI image from a binary or rootfs dir,
#                                               imported into the cluster's containerd
#   make test-cluster [CLUSTER_TEST_MODES='control-plane full']
#   make cluster-build                          build or reuse the binaries only
# Environment: MODELSHIP_CLUSTER_DIR, MODELSHIP_CLUSTER_PORT_BASE,
# MODELSHIP_CLUSTER_CACHE (see the docs).

CLUSTER_SH := hack/cluster/cluster.sh
CLUSTER_TEST_MODES ?= control-plane full

.PHONY: cluster-build cluster-up cluster-gateway cluster-down cluster-status cluster-image test-cluster

cluster-build: ## Build or reuse the local Kubernetes binaries (cold: minutes)
	@$(CLUSTER_SH) build

cluster-up: ## Start the local Kubernetes (MODE=full|control-plane)
	@MODE=$(if $(MODE),$(MODE),full) $(CLUSTER_SH) up

cluster-gateway: ## Traefik (Gateway API) on the full cluster, 127.0.0.1:16080 (first run builds it)
	@$(CLUSTER_SH) gateway

cluster-down: ## Stop it and remove everything it made
	@$(CLUSTER_SH) down

cluster-status: ## What of the local Kubernetes runs
	@$(CLUSTER_SH) status

cluster-image: ## IMAGE=ref SRC=binary-or-rootfs: an OCI image into its containerd
	@if [ -z "$(IMAGE)" ] || [ -z "$(SRC)" ]; then \
	  echo "usage: make cluster-image IMAGE=name:tag SRC=binary-or-rootfs-dir [ENTRYPOINT='/prog --flag']" >&2; exit 2; fi
	@$(CLUSTER_SH) image '$(IMAGE)' '$(SRC)' $(ENTRYPOINT)

test-cluster: ## Proofs of the local Kubernetes itself, both modes
	@hack/cluster/test/run.sh $(CLUSTER_TEST_MODES)
