# The user's journey on a full local cluster (tests/e2e). Included by the
# top-level Makefile; also usable alone: make -f tests/e2e/e2e.mk test-e2e
#
#   make test-chart-e2e                   the journey on the running full
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

.PHONY: test-chart-e2e test-e2e

test-chart-e2e: ## The user's journey on the running full cluster (images loaded)
	@tests/e2e/e2e.sh

test-e2e: ## Full cluster, debug images, the journey and the full_cluster test
	@tests/e2e/run-e2e.sh
