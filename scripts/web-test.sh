#!/usr/bin/env bash
# The page's tests (issue #11), run by scripts/test.sh:
#   1. the bindings' wasm-bindgen tests in headless Chromium (crates/covdiff-web/tests);
#   2. `trunk build --release` of index.html into dist/;
#   3. the CLI's samples (flex) for the page's weights, seed, K and batch, the page's reference;
#   4. the end-to-end test (tests/web/e2e.mjs): the built page in headless Chromium, with WebGPU
#      (SwiftShader here) and with WebGPU disabled. Screenshots and e2e.json go to $1
#      (default: $CARGO_TARGET_DIR/web-e2e).
# Needs what scripts/setup.sh installs: chromium, chromium-driver, trunk, wasm-bindgen-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
out="${1:-$CARGO_TARGET_DIR/web-e2e}"
mkdir -p "$out"
for tool in trunk wasm-bindgen-test-runner chromium chromedriver node; do
  command -v "$tool" >/dev/null || { echo "web-test: $tool is missing; run scripts/setup.sh" >&2; exit 1; }
done

echo "== wasm-bindgen tests of crates/covdiff-web (headless Chromium)"
# wasm-bindgen-test-runner reads webdriver.json (the Chromium flags) from the working directory;
# its 20 s default timeout is too short for WebGPU on SwiftShader (shader compilation). In release
# mode, the tests share trunk's wasm32 build of burn instead of compiling it a second time.
(cd crates/covdiff-web &&
  CHROMEDRIVER=/usr/bin/chromedriver CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
    WASM_BINDGEN_TEST_TIMEOUT=600 \
    cargo test --release --target wasm32-unknown-unknown)

echo "== trunk build --release"
trunk build --release

echo "== the CLI's reference samples"
K="${E2E_K:-5}" N="${E2E_N:-4}"
export E2E_K="$K" E2E_N="$N"
cargo build -p covdiff-cli --features wgpu
covdiff="$CARGO_TARGET_DIR/debug/covdiff"
# Flex only: on WebGPU the draws come from burn-wgpu's device generator, whose streams depend on
# the adapter, so GPU samples match the CLI's in distribution, not number by number.
"$covdiff" sample --device flex --weights weights/fashion-mnist-diag.safetensors \
  --weights weights/fashion-mnist-kdct.safetensors --compare beta-tilde,ddim,diag,kdct \
  --steps "$K" --n "$N" --seed 0 --out "$out/cli-flex.png" --raw "$out/cli-flex.npy"

echo "== end-to-end test of dist/ in headless Chromium"
node tests/web/e2e.mjs "$PWD/dist" "$out" "$out"
