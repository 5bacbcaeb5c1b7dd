# shellcheck shell=bash
# OCI images without a registry: umoci builds an image "from scratch" out of
# a local root filesystem (a directory, or a single static binary), and
# ctr imports it into containerd's k8s.io namespace, where the kubelet's
# pods find it (use imagePullPolicy: Never or IfNotPresent).

# shellcheck disable=SC2034 # used by cluster.sh
PAUSE_IMAGE=modelship.local/pause:local

# build_image NAME SRC OUT_TAR [ENTRYPOINT...]
#   NAME        full reference, e.g. modelship.local/testapp:dev
#   SRC         a directory (copied as the root filesystem) or a file
#               (copied to /<basename>, mode 0755)
#   ENTRYPOINT  defaults to /<basename of SRC> when SRC is a file
build_image() {
  local name="$1" src="$2" out="$3"; shift 3
  command -v umoci >/dev/null || die "umoci is missing (apt-get install umoci)"
  [ -e "$src" ] || die "image source $src does not exist"
  local entrypoint=("$@")
  if [ -f "$src" ] && [ "${#entrypoint[@]}" -eq 0 ]; then entrypoint=("/$(basename "$src")"); fi
  [ "${#entrypoint[@]}" -gt 0 ] || die "an image from a directory needs an entrypoint"

  local work; work="$(mktemp -d)"
  if ! assemble_image "$name" "$src" "$work" "${entrypoint[@]}"; then
    rm -rf "$work"
    die "building image $name from $src failed"
  fi
  mkdir -p "$(dirname "$out")"
  tar -C "$work/oci" -cf "$out" .
  rm -rf "$work"
}

assemble_image() { # assemble_image NAME SRC WORKDIR ENTRYPOINT...
  local name="$1" src="$2" work="$3"; shift 3
  local entrypoint=("$@")
  umoci init --layout "$work/oci" || return 1
  umoci new --image "$work/oci:img" || return 1
  umoci unpack --image "$work/oci:img" "$work/bundle" >/dev/null || return 1
  # "/" must be readable by any user, whatever umask made the directory.
  chmod 0755 "$work/bundle/rootfs" || return 1
  if [ -d "$src" ]; then
    cp -a "$src/." "$work/bundle/rootfs/" || return 1
  else
    install -m 0755 "$src" "$work/bundle/rootfs/$(basename "$src")" || return 1
  fi
  umoci repack --image "$work/oci:img" "$work/bundle" || return 1
  local cfg=(--image "$work/oci:img" --os linux --architecture amd64 --config.workingdir /)
  local e
  for e in "${entrypoint[@]}"; do cfg+=(--config.entrypoint "$e"); done
  umoci config "${cfg[@]}" || return 1
  umoci gc --layout "$work/oci" || return 1
  # Name the image for containerd.
  jq --arg n "$name" '.manifests[0].annotations["io.containerd.image.name"] = $n
    | .manifests[0].annotations["org.opencontainers.image.ref.name"] = ($n | sub(".*:"; ""))' \
    "$work/oci/index.json" > "$work/index.json" || return 1
  mv "$work/index.json" "$work/oci/index.json"
}

# import_image TAR: into the running cluster's containerd.
import_image() {
  [ -S "$CONTAINERD_SOCK" ] || die "containerd of the cluster is not running ($CONTAINERD_SOCK); start it with: make cluster-up"
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false "$1" >/dev/null
}

# image_cmd NAME SRC [ENTRYPOINT...]: build and import; keeps the archive
# in $STATE_DIR/images.
image_cmd() {
  [ "$#" -ge 2 ] || die "usage: cluster.sh image NAME SRC [ENTRYPOINT...]"
  local name="$1" tar
  tar="$STATE_DIR/images/$(echo "$name" | tr '/:' '__').tar"
  build_image "$1" "$2" "$tar" "${@:3}"
  import_image "$tar"
  log "image $name imported into containerd (namespace k8s.io)"
}
