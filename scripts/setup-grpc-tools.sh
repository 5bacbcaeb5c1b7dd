#!/usr/bin/env bash
# Builds the gRPC command-line tools the server suite uses, pinned, from their Go modules. Idempotent.
#   grpcurl -> ~/.cache/modelship/tools/bin/grpcurl   (go install; tests/server/test_grpcurl.py skips without it)
set -euo pipefail
GRPCURL_VERSION=v1.9.3
TOOLS=${MODELSHIP_TOOLS:-$HOME/.cache/modelship/tools}
command -v go >/dev/null || { echo "setup-grpc-tools: go is not installed" >&2; exit 1; }
# A binary built by go install carries its module version (grpcurl -version says "dev build").
if ! go version -m "$TOOLS/bin/grpcurl" 2>/dev/null | grep -E "^\s+mod\s+github.com/fullstorydev/grpcurl\s+$GRPCURL_VERSION\b" >/dev/null; then
  echo "building grpcurl $GRPCURL_VERSION into $TOOLS/bin"
  mkdir -p "$TOOLS/bin"
  GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "github.com/fullstorydev/grpcurl/cmd/grpcurl@$GRPCURL_VERSION"
fi
echo "grpcurl $GRPCURL_VERSION: $TOOLS/bin/grpcurl"
