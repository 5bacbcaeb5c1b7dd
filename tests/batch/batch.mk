# BatchPredictions on the full local cluster (tests/batch). Included by the
# top-level Makefile.
#
#   make test-batch     starts a full cluster (unless one runs) and its S3 server
#                       (versitygw, built once), loads the debug server image, runs
#                       the operator on the host, then tests/batch/batch.sh: 1,000,000
#                       rows of CSV and of Parquet scored by Indexed Jobs, a pod killed
#                       mid-shard, InputNotFound, BadRows, OutputNotEmpty, CEL, PVC input,
#                       delete; stops the cluster it started

.PHONY: test-batch

test-batch: setup ## BatchPredictions on the full cluster (S3 server, Indexed Jobs)
	@tests/batch/run.sh
