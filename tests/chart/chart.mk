# Tests of the Helm chart charts/modelship (tests/chart/test.sh). Included by
# the top-level Makefile; also usable alone: make -f tests/chart/chart.mk test-chart
#
#   make test-chart                       lint, template, schema, and a private
#                                         control plane: dry run, install, RBAC
#                                         (kubectl auth can-i and the operator
#                                         itself), upgrade, uninstall
#   make test-chart CHART_TESTS_OFFLINE=1 the offline part only (seconds)
#   make test-chart-e2e                   the user's journey on the running full
#                                         cluster (make cluster-up, then
#                                         scripts/build-images.sh): install,
#                                         iris Ready and predicting, 404 model
#                                         Degraded then fixed, delete, uninstall
# Environment: MODELSHIP_CHART_CLUSTER_DIR (default /tmp/modelship-chart-cp),
# MODELSHIP_CHART_PORT_BASE (default 19000), MODELSHIP_OPERATOR_BIN.

.PHONY: test-chart test-chart-e2e lint-chart

test-chart:
	@CHART_TESTS_OFFLINE=$(CHART_TESTS_OFFLINE) tests/chart/test.sh

lint-chart:
	@tests/cluster/cluster.sh build >/dev/null
	@eval "$$(tests/cluster/cluster.sh env)" && helm lint charts/modelship

test-chart-e2e:
	@tests/chart/e2e.sh
