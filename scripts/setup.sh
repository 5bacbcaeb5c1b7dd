#!/usr/bin/env bash
# Installs the system packages and tools that builds and tests need. Idempotent.
set -euo pipefail
need=()
# chromium: the headless browser of the web page test (driven by Python playwright).
# The rest: what the local cluster's node runs on and what its tests inspect
# (tests/cluster/lib/node.sh NODE_PACKAGES, which `cluster-up MODE=full` also
# installs when missing), iproute2 and util-linux (taskset) named for clarity.
for pkg in python3-venv pkg-config chromium binutils iproute2 util-linux \
  containerd runc containernetworking-plugins iptables conntrack umoci ethtool socat jq; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is required (rustup)"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
