#!/usr/bin/env bash
# covdiff's test command: formatting, lints, every test (CPU and wgpu), and
# the browser target's type check.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== clippy -D warnings"
cargo clippy --workspace --all-targets --features covdiff-cli/wgpu -- -D warnings
echo "== tests (flex CPU and wgpu backends)"
COVDIFF_REQUIRE_WGPU=1 cargo test --workspace --features covdiff-cli/wgpu
echo "== covdiff-model for wasm32 + WebGPU, with flex as the CPU fallback"
cargo check -p covdiff-model --target wasm32-unknown-unknown --no-default-features --features wgpu,flex
