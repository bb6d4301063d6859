#!/usr/bin/env bash
# Install what covdiff needs on a fresh Debian machine (run as root, or with sudo).
# Idempotent: a second run only checks.
set -euo pipefail

need_apt=()
for pkg in mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "covdiff needs a Rust toolchain (rustup): https://rustup.rs" >&2
  exit 1
fi
rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
echo "covdiff set-up: done"
