#!/usr/bin/env bash
# Flex <-> wgpu parity (tests/backend_parity.rs): every learnable module, RoIAlign and one
# full forward of the shipped model, max |difference| <= 1e-3. Opt-in: it builds the wgpu
# backend. Without a Vulkan driver it installs Mesa's software one (lavapipe, Debian's
# mesa-vulkan-drivers), so it runs on a machine without a GPU (slowly). Extra arguments go
# to cargo (e.g. --release).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  echo "no Vulkan driver found: installing mesa-vulkan-drivers (lavapipe)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1
fi
ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null || true
# Mesa asks for a runtime folder (and says so on every device it opens) where none is set.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
exec cargo test --locked --features wgpu "$@" --test backend_parity -- --nocapture --test-threads 1
