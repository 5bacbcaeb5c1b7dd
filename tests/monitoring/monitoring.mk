# Feedback from production on a full local cluster, watched by a real
# Prometheus (tests/monitoring). Included by the top-level Makefile.
#
#   make test-monitoring     promtool tests of the chart's alerts; then on a full
#                            cluster (started unless one runs, stopped if started):
#                            2 replicas, 1,000 inferences and feedback through the
#                            Service, accuracy 0.90 from PromQL, drift and its alert,
#                            every dashboard query answered, feedback behind API keys

.PHONY: test-monitoring

test-monitoring: setup ## Prometheus on the cluster: rules' unit tests, accuracy and drift across 2 replicas
	@tests/monitoring/run.sh
