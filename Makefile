# modelship: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Builds are cached outside the repo so fresh clones (and CI) reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/modelship/target
export CARGO_TERM_COLOR ?= never
# Tests write what they make (screenshots, logs) here, never into the tree.
export MODELSHIP_ARTIFACTS ?= /tmp/modelship-artifacts
VENV ?= .venv
PY := $(VENV)/bin/python
SERVER_BIN := $(CARGO_TARGET_DIR)/debug/modelship-server

include hack/cluster/cluster.mk
include tests/chart/chart.mk
include tests/e2e/e2e.mk
include tests/batch/batch.mk
include tests/monitoring/monitoring.mk
include tests/zoo/zoo.mk
include tests/faults/faults.mk

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: setup
setup: ## Install what builds and tests need (idempotent)
	scripts/setup.sh
	scripts/setup-python.sh
	scripts/setup-grpc-tools.sh

.PHONY: build
build: ## Build both binaries (debug)
	cargo build --workspace --bins

# Every shell script of the project's own tooling and suites (bench/ aside).
SHELL_SCRIPTS := $(wildcard hack/cluster/*.sh hack/cluster/lib/*.sh hack/cluster/test/*.sh hack/cluster/build/*.sh \
  hack/lib/*.sh hack/lib/test/*.sh tests/*/*.sh scripts/*.sh)

.PHONY: lint
lint: lint-shell lint-modules ## cargo fmt --check, clippy with warnings as errors, shellcheck, module shape
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

.PHONY: lint-modules
lint-modules: ## No import circle between top-level modules, no .rs file over 600 lines, //! docs (docs/architecture.md)
	python3 scripts/check_modules.py
	python3 -m pytest -q -p no:cacheprovider scripts/test_check_modules.py

.PHONY: lint-shell
lint-shell: ## shellcheck of the shell tooling and suites (follows sourced files)
	shellcheck -x $(SHELL_SCRIPTS)

# The operator's apiserver target needs a real API server: test-operator runs
# it, here its tests only say that they are skipped (hence REQUIRE_NO_SKIP=).
.PHONY: test-rust
test-rust: ## Unit and integration tests of both crates
	REQUIRE_NO_SKIP= cargo test --workspace

.PHONY: test-models
test-models: setup ## Regenerate the demo models and check they predict as committed
	$(PY) models/generate.py --check

# The page's all-replica figures are tested against a real Prometheus
# (tests/server/test_monitor_prometheus.py): the cluster's, built once and cached.
.PHONY: test-server
test-server: setup build ## Conformance with tritonclient and kserve, bad-input suite, the page's figures from Prometheus
	prometheus="$$(hack/cluster/cluster.sh prometheus-dir)"; \
	  MODELSHIP_SERVER_BIN=$(SERVER_BIN) MODELSHIP_PROMETHEUS_BIN=$$prometheus/prometheus $(PY) -m pytest -q tests/server

.PHONY: screenshots
screenshots: setup build ## Refresh docs/screenshots/ (the web page in headless Chromium)
	MODELSHIP_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots MODELSHIP_SERVER_BIN=$(SERVER_BIN) \
	  $(PY) -m pytest -q tests/server/test_web_page.py

.PHONY: test-harness
test-harness: ## The shell suites' harness (hack/lib/harness.sh) proves its pass/fail/skip rules
	hack/lib/test/harness_test.sh

# The operator's integration tests (operator/tests/apiserver) run against a
# private control plane (etcd + kube-apiserver + kube-controller-manager) that
# is torn down after. full_cluster needs pods on a node: test-e2e runs it.
OPERATOR_CP_DIR ?= /tmp/modelship-operator-cp
OPERATOR_CP_PORT_BASE ?= 18000

.PHONY: test-operator
test-operator: ## Operator integration tests against a real API server
	MODELSHIP_CLUSTER_DIR=$(OPERATOR_CP_DIR) MODELSHIP_CLUSTER_PORT_BASE=$(OPERATOR_CP_PORT_BASE) MODE=control-plane hack/cluster/cluster.sh up
	status=0; MODELSHIP_TEST_KUBECONFIG=$(OPERATOR_CP_DIR)/kubeconfig cargo test -p modelship-operator --test apiserver -- --skip full_cluster || status=$$?; \
	  MODELSHIP_CLUSTER_DIR=$(OPERATOR_CP_DIR) MODELSHIP_CLUSTER_PORT_BASE=$(OPERATOR_CP_PORT_BASE) hack/cluster/cluster.sh down; \
	  exit $$status

# Every suite runs whole under make test: a skip is a failure there.
.PHONY: test
test: export REQUIRE_NO_SKIP = 1
test: setup lint test-harness test-rust test-models test-server test-zoo test-operator test-chart test-cluster test-e2e test-batch test-faults test-monitoring ## Run every test
	@echo "make test: all suites passed"

.PHONY: serve
serve: ## Serve the builtin Iris model on 127.0.0.1:8080 (no cluster)
	cargo run --release -p modelship-server -- serve --model builtin://iris --host 127.0.0.1 --port 8080

.PHONY: demo
demo: ## Local cluster, operator by Helm, the Iris model deployed and answering (left running)
	scripts/demo.sh

.PHONY: demo-down
demo-down: ## Remove everything make demo started
	scripts/demo.sh down

.PHONY: bench-server
bench-server: ## Benchmark modelship vs MLServer and KServe: Iris REST sweep, payload log, gRPC, compute-heavy models (writes docs/benchmarks.md)
	bench/setup.sh
	scripts/setup-grpc-tools.sh
	cargo build --release --locked -p modelship-server -p modelship-operator --bins --examples
	$(PY) bench/bench_server.py
	$(PY) bench/bench_payload_log.py --write
	$(PY) bench/bench_grpc.py
	$(PY) bench/bench_heavy.py

.PHONY: bench-payload-log
bench-payload-log: ## Payload logging off / on to a live sink / on to a dead sink, same load (docs/benchmarks.md)
	bench/setup.sh
	cargo build --release --locked -p modelship-server --bins --examples
	$(PY) bench/bench_payload_log.py --write

.PHONY: bench-grpc
bench-grpc: ## gRPC: modelship vs MLServer and KServe gRPC, an empty tonic service, modelship REST (docs/benchmarks.md)
	bench/setup.sh
	scripts/setup-grpc-tools.sh
	cargo build --release --locked -p modelship-server --bins --examples
	$(PY) bench/bench_grpc.py

.PHONY: bench-heavy
bench-heavy: ## Compute-heavy models (digits MLP, CNN): batching on/off, tract/ORT, MLServer, KServe (docs/benchmarks.md)
	bench/setup.sh
	cargo build --release --locked -p modelship-server --bins
	$(PY) bench/bench_heavy.py
