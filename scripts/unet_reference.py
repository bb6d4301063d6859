#!/usr/bin/env python3
"""Writes tests/fixtures/unet_reference.npz-like .npy files: the output of diffusers'
UNet2DModel (the peer implementation) with the shipped tiny UNet's weights, on a fixed
input, for covdiff's test `unet_matches_diffusers_on_the_shipped_weights`.

Usage: python3 scripts/unet_reference.py [weights/fashion-mnist-kdct.safetensors] [out_dir]
Needs torch, diffusers and safetensors (pip); never a dependency of covdiff.
"""
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from bench_torch import tiny_unet  # noqa: E402

weights = sys.argv[1] if len(sys.argv) > 1 else "weights/fashion-mnist-kdct.safetensors"
out = sys.argv[2] if len(sys.argv) > 2 else "crates/covdiff-model/tests/fixtures"
os.makedirs(out, exist_ok=True)
unet = tiny_unet(1).eval()
state = {k: v for k, v in load_file(weights).items() if not k.startswith("covariance_heads.")}
missing, unexpected = unet.load_state_dict(state, strict=False)
assert not missing and not unexpected, (missing, unexpected)
# A deterministic input that needs no shared random generator: smooth patterns plus a ramp.
b = 3
i = np.arange(28)[None, :, None]
j = np.arange(28)[None, None, :]
k = np.arange(b)[:, None, None]
x = (np.sin(0.3 * i * (k + 1)) * np.cos(0.2 * j + k) + 0.05 * (i - j) / 28.0).astype(np.float32)[:, None]
t = np.array([5, 250, 900], dtype=np.int64)
with torch.no_grad():
    y = unet(torch.from_numpy(x), torch.from_numpy(t)).sample.numpy()
np.save(os.path.join(out, "unet_reference_x.npy"), x)
np.save(os.path.join(out, "unet_reference_eps.npy"), y.astype(np.float32))
print("wrote", out, "eps range", float(y.min()), float(y.max()))
