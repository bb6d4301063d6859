#!/usr/bin/env python3
"""Writes a small diffusers UNet2DModel folder with random weights, and its own output on a fixed
input, for covdiff's test of `covdiff import diffusers` (tests/fixtures/diffusers-unet).

The folder is what `UNet2DModel.save_pretrained` writes: config.json and
diffusion_pytorch_model.safetensors. Beside them: reference_x.npy [2, 1, 8, 8],
reference_t.npy (diffusers' 0-based timesteps) and reference_eps.npy, diffusers' output.
The configuration exercises what the importer maps: attention in one level with several heads,
freq_shift = 1 and flip_sin_to_cos = False (as google/ddpm-cifar10-32).

Usage: python3 scripts/diffusers_fixture.py [out_dir]
Needs torch and diffusers (pip); never a dependency of covdiff.
"""
import os
import sys

import numpy as np
import torch
from diffusers import UNet2DModel

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/diffusers-unet"
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
unet = UNet2DModel(
    sample_size=8,
    in_channels=1,
    out_channels=1,
    block_out_channels=(8, 16),
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    norm_num_groups=4,
    attention_head_dim=8,
    freq_shift=1,
    flip_sin_to_cos=False,
).eval()
# Random weights everywhere (no zero-initialised layer hides a mistake), small enough that
# activations stay O(1).
with torch.no_grad():
    for p in unet.parameters():
        p.copy_(torch.randn_like(p) * 0.2)
unet.save_pretrained(out, safe_serialization=True)
i = np.arange(8)[None, :, None]
j = np.arange(8)[None, None, :]
k = np.arange(2)[:, None, None]
x = (np.sin(0.7 * i * (k + 1)) * np.cos(0.5 * j + k) + 0.1 * (i - j) / 8.0).astype(np.float32)[:, None]
t = np.array([0, 537], dtype=np.int64)
with torch.no_grad():
    eps = unet(torch.from_numpy(x), torch.from_numpy(t)).sample.numpy().astype(np.float32)
np.save(os.path.join(out, "reference_x.npy"), x)
np.save(os.path.join(out, "reference_t.npy"), t.astype(np.float32))
np.save(os.path.join(out, "reference_eps.npy"), eps)
print("wrote", out, "eps range", float(eps.min()), float(eps.max()))
