# Tests of the Helm chart charts/modelship (tests/chart/test.sh). Included by
# the top-level Makefile; also usable alone: make -f tests/chart/chart.mk test-chart
#
#   make test-chart                       lint, template, schema, and a private
#                                         control plane: dry run, install, RBAC
#                                         (kubectl auth can-i and the operator
#                                         itself), upgrade, uninstall
#   make test-chart CHART_TESTS_OFFLINE=1 the offline part only (seconds)
#   make lint-chart                       helm lint alone
# The user's journey through the chart on a full cluster is tests/e2e (e2e.mk).
# Environment: MODELSHIP_CHART_CLUSTER_DIR (default /tmp/modelship-chart-cp),
# MODELSHIP_CHART_PORT_BASE (default 19000), MODELSHIP_OPERATOR_BIN.

.PHONY: test-chart lint-chart

test-chart: ## The chart: lint, schema, RBAC on a private control plane
	@CHART_TESTS_OFFLINE=$(CHART_TESTS_OFFLINE) tests/chart/test.sh

lint-chart: ## helm lint of the chart
	@hack/cluster/cluster.sh build >/dev/null
	@eval "$$(hack/cluster/cluster.sh env)" && helm lint charts/modelship
