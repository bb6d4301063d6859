#!/usr/bin/env python3
"""PyTorch reference for `covdiff bench compare`: the same work as covdiff's
benchmarks, done by PyTorch (and diffusers' UNet2DModel) on the same machine.

Prints one JSON object (milliseconds, medians after a warm-up) on stdout:
- unet: the tiny UNet's forward (a sampling step's network call) and one
  stage-1 training step (L_simple, AdamW), batch B, 28 x 28;
- conv: the first-level 3x3 convolution, forward and forward + backward;
- kdct: per image size d, the K-DCT matvec E v and sample (paper Eq. 13, Alg. 1),
  with the DCT as matrix products (the paper's GPU implementation), and the
  diagonal matvec and sample beside them.

Needs torch and diffusers (pip); it is a benchmark, never a dependency of
covdiff. Usage: python3 scripts/bench_torch.py [--threads 2] [--batch 16]
[--sizes 16,32,64,128,256] [--weights weights/fashion-mnist-kdct.safetensors]
"""

import argparse
import json
import math
import sys
import time


def median_ms(f, reps):
    f()
    ts = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        ts.append((time.perf_counter() - s) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def tiny_unet(channels):
    """covdiff's UNetConfig::tiny: (32, 64, 64), attention at the middle level,
    one resnet per level, 8 groups, one attention head per block."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=28,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        norm_eps=1e-5,
        attention_head_dim=64,
        flip_sin_to_cos=True,
        freq_shift=0,
    )


def dct_matrix(d, torch):
    """Orthonormal DCT-II: F[k, n] = s_k cos(pi (2n + 1) k / (2d))."""
    n = torch.arange(d, dtype=torch.float64)
    k = n[:, None]
    f = torch.cos(math.pi * (2 * n[None, :] + 1) * k / (2 * d)) * math.sqrt(2.0 / d)
    f[0] /= math.sqrt(2.0)
    return f.float()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--channels", type=int, default=1, help="UNet image channels")
    ap.add_argument("--kdct-channels", type=int, default=3)
    ap.add_argument("--sizes", default="16,32,64,128,256")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--weights", default=None, help="covdiff safetensors (diffusers names) to load into the UNet")
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("bench_torch.py needs torch and diffusers: pip install torch diffusers", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch}

    # --- the tiny UNet --------------------------------------------------------
    unet = tiny_unet(a.channels)
    if a.weights:
        from safetensors.torch import load_file

        state = {k: v for k, v in load_file(a.weights).items() if not k.startswith("covariance_heads.")}
        missing, unexpected = unet.load_state_dict(state, strict=False)
        out["weights_missing"] = len(missing)
        out["weights_unexpected"] = len(unexpected)
    b, c = a.batch, a.channels
    x = torch.randn(b, c, 28, 28)
    t = torch.full((b,), 500, dtype=torch.long)
    unet.eval()
    with torch.no_grad():
        fwd = median_ms(lambda: unet(x, t).sample, a.reps)
    unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-4)

    def train_step():
        ts = torch.randint(0, 1000, (b,))
        eps = torch.randn_like(x)
        abar = torch.rand(b, 1, 1, 1)
        xt = abar.sqrt() * x + (1 - abar).sqrt() * eps
        loss = ((unet(xt, ts).sample - eps) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train = median_ms(train_step, a.reps)
    out["unet"] = {"forward_ms": fwd, "training_step_ms": train}

    # --- the first-level convolution ------------------------------------------
    conv = torch.nn.Conv2d(32, 32, 3, padding=1)
    xc = torch.randn(b, 32, 28, 28, requires_grad=True)
    with torch.no_grad():
        cf = median_ms(lambda: conv(xc), a.reps)
    cb = median_ms(lambda: conv(xc).sum().backward(), a.reps)
    out["conv"] = {"forward_ms": cf, "forward_backward_ms": cb}

    # --- K-DCT against diagonal -------------------------------------------------
    rows = []
    kc = a.kdct_channels
    with torch.no_grad():
        for d in [int(s) for s in a.sizes.split(",")]:
            f = dct_matrix(d, torch)
            ft = f.t().contiguous()
            e = torch.rand(b, kc, d, d) * 0.9 + 0.1
            l = torch.randn(b, kc, kc) * 0.5
            lam = torch.rand(b, 1, d, d) * 0.9 + 0.1
            v = torch.randn(b, kc, d, d)

            def mix(m, y):
                return torch.matmul(m, y.reshape(b, kc, d * d)).reshape(b, kc, d, d)

            def kdct_matvec():
                # Eq. 13: e v + F2^T (lam * F2 (L L^T mix v)), F2(X) = F X F^T.
                m = torch.matmul(l, l.transpose(1, 2))
                s = torch.matmul(torch.matmul(f, mix(m, v)), ft) * lam
                return e * v + torch.matmul(torch.matmul(ft, s), f)

            def kdct_sample():
                # Alg. 1: sqrt(e) xi1 + F2^T (sqrt(lam) * L xi2).
                xi1 = torch.randn(b, kc, d, d)
                xi2 = torch.randn(b, kc, d, d)
                s = mix(l, xi2) * lam.sqrt()
                return e.sqrt() * xi1 + torch.matmul(torch.matmul(ft, s), f)

            rows.append(
                {
                    "d": d,
                    "diag_matvec_ms": median_ms(lambda: e * v, a.reps),
                    "kdct_matvec_ms": median_ms(kdct_matvec, a.reps),
                    "diag_sample_ms": median_ms(lambda: e.sqrt() * torch.randn(b, kc, d, d), a.reps),
                    "kdct_sample_ms": median_ms(kdct_sample, a.reps),
                }
            )
    out["kdct"] = {"channels": kc, "rows": rows}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
