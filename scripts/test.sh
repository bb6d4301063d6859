#!/usr/bin/env bash
# covdiff's test command: formatting, lints, every test (CPU and wgpu), and
# the page's tests in headless Chromium (scripts/web-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== clippy -D warnings"
cargo clippy --workspace --all-targets --features covdiff-cli/wgpu -- -D warnings
echo "== tests (flex CPU and wgpu backends)"
COVDIFF_REQUIRE_WGPU=1 cargo test --workspace --features covdiff-cli/wgpu
echo "== the page: wasm-bindgen tests, trunk build, end-to-end in headless Chromium"
bash scripts/web-test.sh
