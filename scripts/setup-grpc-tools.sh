#!/usr/bin/env bash
# Builds the gRPC command-line tools the suites and benchmarks use, pinned, from their Go modules. Idempotent.
#   grpcurl -> ~/.cache/modelship/tools/bin/grpcurl   (go install; tests/server/test_grpcurl.py and tests/e2e/grpc.sh)
#   ghz     -> ~/.cache/modelship/tools/bin/ghz       (go install; the gRPC load generator of bench/)
set -euo pipefail
GRPCURL_VERSION=v1.9.3
GHZ_VERSION=v0.120.0
TOOLS=${MODELSHIP_TOOLS:-$HOME/.cache/modelship/tools}
command -v go >/dev/null || { echo "setup-grpc-tools: go is not installed" >&2; exit 1; }

# install_tool NAME MODULE VERSION PACKAGE: go install PACKAGE@VERSION into
# $TOOLS/bin unless the binary there already carries MODULE at VERSION (a
# binary built by go install records its module version: go version -m).
install_tool() {
  local name="$1" module="$2" version="$3" package="$4"
  if ! go version -m "$TOOLS/bin/$name" 2>/dev/null | grep -E "^\s+mod\s+$module\s+$version\b" >/dev/null; then
    echo "building $name $version into $TOOLS/bin"
    mkdir -p "$TOOLS/bin"
    GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "$package@$version"
  fi
  echo "$name $version: $TOOLS/bin/$name"
}

install_tool grpcurl github.com/fullstorydev/grpcurl "$GRPCURL_VERSION" github.com/fullstorydev/grpcurl/cmd/grpcurl
install_tool ghz github.com/bojand/ghz "$GHZ_VERSION" github.com/bojand/ghz/cmd/ghz
