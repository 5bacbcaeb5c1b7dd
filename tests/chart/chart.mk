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
#                                         scripts/build-images.sh): install (2
#                                         operator replicas), iris Ready and
#                                         predicting, rolling update under load,
#                                         autoscaling out and in, 404 model Degraded
#                                         then fixed, leader killed and taken over,
#                                         delete, uninstall
#   make test-e2e                         all of it in make test: starts a full
#                                         cluster (unless one runs), loads images of
#                                         the debug builds, runs test-chart-e2e and
#                                         the operator's full-mode test, stops the
#                                         cluster it started (E2E_PROFILE=release
#                                         for release builds)
# Environment: MODELSHIP_CHART_CLUSTER_DIR (default /tmp/modelship-chart-cp),
# MODELSHIP_CHART_PORT_BASE (default 19000), MODELSHIP_OPERATOR_BIN.

.PHONY: test-chart test-chart-e2e test-e2e lint-chart

test-chart:
	@CHART_TESTS_OFFLINE=$(CHART_TESTS_OFFLINE) tests/chart/test.sh

lint-chart:
	@tests/cluster/cluster.sh build >/dev/null
	@eval "$$(tests/cluster/cluster.sh env)" && helm lint charts/modelship

test-chart-e2e:
	@tests/chart/e2e.sh

test-e2e:
	@tests/chart/run-e2e.sh
