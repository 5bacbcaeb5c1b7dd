# The operator under control-plane faults and pod disruptions (tests/faults).
# Included by the top-level Makefile.
#
#   make test-faults                      full cluster (started unless one runs), debug
#                                         images, tests/faults/faults.sh; FAULTS_LONG=1 for
#                                         the 500-cycle create/delete loop

.PHONY: test-faults

test-faults: ## The operator under faults: apiserver/etcd down, leader cut off, evictions
	@tests/faults/run.sh
