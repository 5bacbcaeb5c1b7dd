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

#   make bench-batch-cluster  not a test: 4,000,000 rows of CSV scored on the full cluster by
#                       1 pod and by 2 pods (4 shards each, release image), 3 runs each
#                       interleaved, medians (tests/batch/bench.sh; docs/benchmarks.md)

.PHONY: bench-batch-cluster

bench-batch-cluster: setup ## BatchPrediction on the cluster: 4M rows, 1 pod vs 2 (release build)
	cargo build --release --locked -p modelship-server --bin modelship-server -p modelship-operator --bin modelship-operator
	BATCH_BENCH=1 BATCH_TEST_ROWS=$${BATCH_TEST_ROWS:-4000000} BATCH_SKIP_BUILD=1 \
	  SERVER_BIN=$(CARGO_TARGET_DIR)/release/modelship-server OPERATOR_BIN=$(CARGO_TARGET_DIR)/release/modelship-operator \
	  tests/batch/run.sh
