#!/usr/bin/env bash
# Installs the system packages and tools that builds and tests need. Idempotent.
set -euo pipefail
need=()
# chromium: the headless browser of the web page test (driven by Python playwright).
# binutils: strip, for scripts/build-images.sh. shellcheck: make lint. The local cluster's node
# packages (containerd, runc, iptables, ...) are installed by `cluster-up
# MODE=full` itself (hack/cluster/lib/node.sh NODE_PACKAGES).
for pkg in python3-venv pkg-config chromium binutils shellcheck; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
