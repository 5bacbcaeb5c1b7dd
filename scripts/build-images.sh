#!/usr/bin/env bash
# Builds the modelship-server and modelship-operator images without Docker and
# without a registry, and loads them into the local cluster's containerd.
#
#   scripts/build-images.sh               build binaries, images, import (when a full cluster runs)
#   scripts/build-images.sh --no-build    reuse the release binaries already built
#   scripts/build-images.sh --no-import   only write the OCI archives
#
# The images mirror the final stage of inference-server/Dockerfile and
# operator/Dockerfile (gcr.io/distroless/cc-debian12:nonroot): the binary at
# /usr/local/bin, the shared libraries it needs (glibc, libgcc_s, libstdc++,
# the loader) taken from this host, CA certificates, /etc/passwd with the
# nonroot user 65532, /tmp; user 65532:65532, no shell. The server image adds
# the ONNX Runtime library at /usr/lib/modelship/ and MODELSHIP_ORT_LIBRARY.
# umoci (Debian) writes the OCI images, `ctr images import` loads them.
#
# Environment:
#   CARGO_TARGET_DIR        default ~/.cache/modelship/target
#   MODELSHIP_IMAGES_DIR    where rootfs trees and OCI archives go
#                           (default ~/.cache/modelship/images)
#   MODELSHIP_CLUSTER_DIR   the cluster whose containerd gets the images (default .cluster)
#   SERVER_IMAGE, OPERATOR_IMAGE  names (default modelship/server:dev, modelship/operator:dev)
#   SERVER_BIN, OPERATOR_BIN      binaries to package (default: the release builds)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/modelship/target}"
IMAGES_DIR="${MODELSHIP_IMAGES_DIR:-$HOME/.cache/modelship/images}"
CLUSTER_DIR="${MODELSHIP_CLUSTER_DIR:-$ROOT/.cluster}"
SERVER_IMAGE="${SERVER_IMAGE:-modelship/server:dev}"
OPERATOR_IMAGE="${OPERATOR_IMAGE:-modelship/operator:dev}"
ORT_VERSION=1.31.1
ORT_LIBRARY="$ROOT/.venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION"

BUILD=1 IMPORT=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    --no-import) IMPORT=0 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "build-images: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'build-images: %s\n' "$*" >&2; exit 1; }

command -v umoci >/dev/null || die "umoci is missing: apt-get install umoci"
command -v jq >/dev/null || die "jq is missing: apt-get install jq"
[ -f "$ORT_LIBRARY" ] || die "ONNX Runtime library not found at $ORT_LIBRARY: run scripts/setup-python.sh (make setup)"
[ -f /etc/ssl/certs/ca-certificates.crt ] || die "no /etc/ssl/certs/ca-certificates.crt: apt-get install ca-certificates"

if [ "$BUILD" = 1 ]; then
  log "cargo build --release (modelship-server, modelship-operator)"
  (cd "$ROOT" && cargo build --release --locked -p modelship-server --bin modelship-server \
    -p modelship-operator --bin modelship-operator)
fi
SERVER_BIN="${SERVER_BIN:-$CARGO_TARGET_DIR/release/modelship-server}"
OPERATOR_BIN="${OPERATOR_BIN:-$CARGO_TARGET_DIR/release/modelship-operator}"
for bin in "$SERVER_BIN" "$OPERATOR_BIN"; do
  [ -x "$bin" ] || die "$bin is missing: run without --no-build"
done

# copy_libraries ROOTFS ELF...: every shared library the ELF files load (ldd),
# and the loader, copied (links resolved) to the same paths under ROOTFS.
copy_libraries() {
  local rootfs="$1"; shift
  local lib
  while read -r lib; do
    [ -n "$lib" ] || continue
    install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done < <(for elf in "$@"; do
             ldd "$elf" | awk '/=> \// {print $3} /^[ \t]*\/[^ ]*ld-linux/ {print $1}'
           done | sort -u)
}

# base_rootfs ROOTFS: what distroless/cc:nonroot gives a program.
base_rootfs() {
  local rootfs="$1"
  mkdir -p "$rootfs"/{etc/ssl/certs,tmp,home/nonroot,usr/local/bin}
  chmod 1777 "$rootfs/tmp"
  chown 65532:65532 "$rootfs/home/nonroot"
  cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
}

# containerd_name REF: the fully qualified name the kubelet asks containerd
# for ("modelship/server:dev" is looked up as "docker.io/modelship/server:dev";
# an image imported under the short name is not found and gets pulled).
containerd_name() {
  local ref="$1" first="${1%%/*}"
  if [[ "$ref" != */* ]]; then
    echo "docker.io/library/$ref"
  elif [[ "$first" == *.* || "$first" == *:* || "$first" == localhost ]]; then
    echo "$ref"
  else
    echo "docker.io/$ref"
  fi
}

# oci_image NAME ROOTFS OUT_TAR CONFIG-FLAGS...: an OCI image of one layer
# from ROOTFS, configured with umoci's --config.* flags, archived to OUT_TAR
# and named NAME for containerd.
oci_image() {
  local name="$1" rootfs="$2" out="$3"; shift 3
  local work; work="$(mktemp -d)"
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:img"
  umoci unpack --image "$work/oci:img" "$work/bundle" >/dev/null
  cp -a "$rootfs/." "$work/bundle/rootfs/"
  umoci repack --image "$work/oci:img" "$work/bundle"
  umoci config --image "$work/oci:img" --os linux --architecture amd64 \
    --config.workingdir / --config.user 65532:65532 "$@"
  umoci gc --layout "$work/oci"
  jq --arg n "$(containerd_name "$name")" '.manifests[0].annotations["io.containerd.image.name"] = $n
    | .manifests[0].annotations["org.opencontainers.image.ref.name"] = ($n | sub(".*:"; ""))' \
    "$work/oci/index.json" >"$work/index.json"
  mv "$work/index.json" "$work/oci/index.json"
  tar -C "$work/oci" -cf "$out" .
  rm -rf "$work"
}

mkdir -p "$IMAGES_DIR"

log "assembling the server image's root filesystem"
SERVER_ROOTFS="$IMAGES_DIR/server-rootfs"
rm -rf "$SERVER_ROOTFS"
base_rootfs "$SERVER_ROOTFS"
# Stripped: symbols and debug info are no use in an image (a debug build shrinks most).
install -s -m 0755 "$SERVER_BIN" "$SERVER_ROOTFS/usr/local/bin/modelship-server"
install -D -m 0644 "$ORT_LIBRARY" "$SERVER_ROOTFS/usr/lib/modelship/libonnxruntime.so.$ORT_VERSION"
copy_libraries "$SERVER_ROOTFS" "$SERVER_BIN" "$ORT_LIBRARY"
oci_image "$SERVER_IMAGE" "$SERVER_ROOTFS" "$IMAGES_DIR/server.oci.tar" \
  --config.env "MODELSHIP_ORT_LIBRARY=/usr/lib/modelship/libonnxruntime.so.$ORT_VERSION" \
  --config.env MODELSHIP_LOG_FORMAT=json \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.entrypoint /usr/local/bin/modelship-server \
  --config.cmd serve --config.cmd --model --config.cmd builtin://iris \
  --config.exposedports 8080/tcp

log "assembling the operator image's root filesystem"
OPERATOR_ROOTFS="$IMAGES_DIR/operator-rootfs"
rm -rf "$OPERATOR_ROOTFS"
base_rootfs "$OPERATOR_ROOTFS"
install -s -m 0755 "$OPERATOR_BIN" "$OPERATOR_ROOTFS/usr/local/bin/modelship-operator"
copy_libraries "$OPERATOR_ROOTFS" "$OPERATOR_BIN"
oci_image "$OPERATOR_IMAGE" "$OPERATOR_ROOTFS" "$IMAGES_DIR/operator.oci.tar" \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.entrypoint /usr/local/bin/modelship-operator \
  --config.exposedports 8080/tcp

# Sizes: the root filesystem on disk, and the compressed layer (what a
# registry would store and a node would pull).
size_report() {
  local name="$1" rootfs="$2" tar="$3" layer
  layer="$(tar -tvf "$tar" | awk '$3 > max && $6 ~ /blobs\/sha256/ {max = $3} END {print max}')"
  printf '%-26s rootfs %6s MiB   compressed layer %6s MiB\n' "$name" \
    "$(du -sm "$rootfs" | cut -f1)" "$(awk -v b="$layer" 'BEGIN {printf "%.1f", b / 1048576}')"
}
size_report "$SERVER_IMAGE" "$SERVER_ROOTFS" "$IMAGES_DIR/server.oci.tar"
size_report "$OPERATOR_IMAGE" "$OPERATOR_ROOTFS" "$IMAGES_DIR/operator.oci.tar"

if [ "$IMPORT" = 1 ]; then
  SOCK="$CLUSTER_DIR/run/containerd.sock"
  if [ -S "$SOCK" ]; then
    for tar in server operator; do
      ctr --address "$SOCK" -n k8s.io images import --no-unpack=false "$IMAGES_DIR/$tar.oci.tar" >/dev/null
    done
    log "imported $SERVER_IMAGE and $OPERATOR_IMAGE into the cluster's containerd ($SOCK)"
  else
    log "no full cluster in $CLUSTER_DIR (no $SOCK): images not imported; start one with make cluster-up, then run this again with --no-build"
  fi
fi
log "archives: $IMAGES_DIR/server.oci.tar $IMAGES_DIR/operator.oci.tar"
