#!/usr/bin/env bash
# The built-in example, all on Fashion-MNIST and the CPU:
#  1. how well does K-DCT describe the data's covariance (out/fit.*)?
#  2. GFF noise (out/gff.png);
#  3. a short two-stage run: the tiny UNet, then diagonal and K-DCT heads by NPR,
#     sampled side by side in 10 steps (out/compare.png) and scored by NLL (out/nll.*).
# Longer runs: see configs/ and the README.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
mkdir -p out
covdiff() { cargo run -q --release -p covdiff-cli --features wgpu -- "$@"; }
covdiff covariance fit fashion-mnist --d 16 --out out/fit.json --plot out/fit.png
covdiff gff --size 64 --gamma 1.0 --n 16 --out out/gff.png
covdiff train --config configs/fashion-mnist-eps.toml --steps "${DEMO_EPS_STEPS:-400}" --out out/eps
for kind in diag kdct; do
  covdiff train --config configs/fashion-mnist-kdct.toml --heads "$kind" \
    --eps-weights out/eps/model.safetensors --steps "${DEMO_HEAD_STEPS:-200}" --out "out/$kind"
done
covdiff sample --weights out/diag/model.safetensors --weights out/kdct/model.safetensors \
  --compare beta,beta-tilde,diag,kdct --steps 10 --n 8 --out out/compare.png
covdiff eval table --weights out/diag/model.safetensors --weights out/kdct/model.safetensors \
  --covariances beta,beta-tilde,diag,kdct --ks 10 --n 32 --out out/nll
