#!/usr/bin/env bash
# Install what covdiff needs on a fresh Debian machine (run as root, or with sudo).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# chromium and chromium-driver: the page's tests (scripts/web-test.sh) run in headless Chromium.
for pkg in mesa-vulkan-drivers libvulkan1 dataset-fashion-mnist pkg-config chromium chromium-driver nodejs; do
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

# The page: trunk builds it, wasm-bindgen-cli (at the version in Cargo.lock) generates its JS
# bindings and runs the wasm tests. From crates.io; a second run finds them installed.
wbg=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wbg"; then
  # Not --locked: its lock file pins a webpki-roots release that crates.io mirrors may lack.
  cargo install wasm-bindgen-cli --version "$wbg"
fi
# trunk 0.21.14: the last release that builds with rustc 1.95 (0.22 needs 1.96).
trunk --version 2>/dev/null | grep -q "^trunk 0.21.14" || cargo install trunk --version 0.21.14 --locked
echo "covdiff set-up: done"
