#!/usr/bin/env bash
# The built-in example: how well does K-DCT describe Fashion-MNIST's covariance?
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
mkdir -p out
cargo run -p covdiff-cli --features wgpu -- covariance fit fashion-mnist --d 16 --out out/fit.json --plot out/fit.png
cargo run -p covdiff-cli --features wgpu -- gff --size 64 --gamma 1.0 --n 16 --out out/gff.png
