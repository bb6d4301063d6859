//! Host kernels on contiguous `f32` slices: SiLU and 2D convolution, forward
//! and backward. They know nothing of burn; `kernels::flex` wraps them as
//! burn-flex (and `Autodiff<Flex>`) operations.
//!
//! - SiLU, `silu(x) = x sigma(x)`, with an exponential that compilers
//!   vectorise (burn-flex calls scalar libm `expf`, a quarter of the UNet's
//!   forward in the profile of issue #8).
//! - Convolution by per-image im2col and one `gemm` per image written
//!   straight into the NCHW output: no NHWC round trip, no transposed
//!   scatter, and strided convolutions read only the positions they keep.
//!
//! Natively, work is split over images (or over slice chunks) with rayon; in
//! the browser (one thread) it runs in order.

use gemm::Parallelism;

/// Elements per parallel chunk of the elementwise kernels.
const CHUNK: usize = 1 << 14;

/// `e^r` for `|r| <= ln(2) / 2`: its Taylor series to degree 7, truncation error below
/// `(ln 2 / 2)^8 / 8! < 1e-8` relative.
#[inline(always)]
fn exp_reduced(r: f32) -> f32 {
    const C: [f32; 8] = [1.0, 1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0];
    let mut p = C[7];
    for &c in C[..7].iter().rev() {
        p = p * r + c;
    }
    p
}

/// `e^x`, with `x` clamped to `[-87, 88]` (so `2^n` stays a normal number): `x = n ln 2 + r`
/// with `n` rounded to nearest by adding `1.5 * 2^23` (no `round` call, so it vectorises) and
/// `r` by Cody and Waite's two-part `ln 2` (exact to f32 rounding). The low mantissa bits of the
/// shifted sum hold `n` itself, so `2^n`'s exponent bits come without a float-to-int conversion
/// (whose saturating semantics compilers do not vectorise).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Bits 0..9 of `shifted` are `n mod 2^9`; the shift keeps exactly those of `n + 127`.
    let scale = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    exp_reduced(r) * scale
}

/// `sigma(x) = 1 / (1 + e^-x)`.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn silu_body(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * sigmoid(x);
    }
}

/// `d silu / dx = sigma(x) (1 + x (1 - sigma(x)))`, times the incoming gradient.
#[inline(always)]
fn silu_backward_body(x: &[f32], g: &[f32], out: &mut [f32]) {
    for ((o, &x), &g) in out.iter_mut().zip(x).zip(g) {
        let s = sigmoid(x);
        *o = g * s * (1.0 + x * (1.0 - s));
    }
}

/// Defines `$name`, which runs `$body` compiled for AVX-512 or AVX2 where the processor has
/// them (the same code, vectorised wider), else for the build's baseline.
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($a:ident: $t:ty),*) => $body:ident) => {
        multiversion!($(#[$doc])* fn $name($($a: $t),*) -> () => $body);
    };
    ($(#[$doc:meta])* fn $name:ident($($a:ident: $t:ty),*) -> $ret:ty => $body:ident) => {
        $(#[$doc])*
        fn $name($($a: $t),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn wide($($a: $t),*) -> $ret {
                    $body($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn mid($($a: $t),*) -> $ret {
                    $body($($a),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the processor has AVX-512F, checked just above.
                    return unsafe { wide($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the processor has AVX2 and FMA, checked just above.
                    return unsafe { mid($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}

multiversion!(fn silu_kernel(x: &[f32], y: &mut [f32]) => silu_body);
multiversion!(fn silu_backward_kernel(x: &[f32], g: &[f32], out: &mut [f32]) => silu_backward_body);

/// `y = silu(x)`, elementwise.
pub fn silu(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for_chunks(&mut y, |start, out| silu_kernel(&x[start..start + out.len()], out));
    y
}

/// `g silu'(x)`, elementwise.
pub fn silu_backward(x: &[f32], g: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.len(), "silu_backward: x and its gradient differ in length");
    let mut out = vec![0.0; x.len()];
    for_chunks(&mut out, |start, out| {
        let end = start + out.len();
        silu_backward_kernel(&x[start..end], &g[start..end], out)
    });
    out
}

/// `out = n sigma(n)` with `n = x scale + shift` (or `out = n` without the activation).
#[inline(always)]
fn affine_body(x: &[f32], out: &mut [f32], scale: f32, shift: f32, activation: bool) {
    if activation {
        for (o, &x) in out.iter_mut().zip(x) {
            let n = x * scale + shift;
            *o = n * sigmoid(n);
        }
    } else {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = x * scale + shift;
        }
    }
}

/// Lanes of the vectorised sums: independent partial sums, which compilers keep in SIMD
/// registers (a single running sum is a serial dependency they may not reorder).
const LANES: usize = 16;

/// `sum f(x)`, in lanes of `f32` partial sums added in `f64` at the end.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; LANES];
    let (chunks, rest) = x.as_chunks::<LANES>();
    for c in chunks {
        for (s, &v) in lanes.iter_mut().zip(c) {
            *s += f(v);
        }
    }
    rest.iter().map(|&v| f(v) as f64).sum::<f64>() + lanes.iter().map(|&v| v as f64).sum::<f64>()
}

/// `(sum (x - shift), sum (x - shift)^2)`, one pass each (a single pass interleaving both sums
/// did not vectorise).
#[inline(always)]
fn moments_body(x: &[f32], shift: f32) -> [f64; 2] {
    [lane_sum(x, |v| v - shift), lane_sum(x, |v| (v - shift) * (v - shift))]
}

/// The first backward pass of a group-norm channel: `dz = dy silu'(n)` (or `dz = dy`) into
/// `out`, with `n = xhat gamma + beta`, `xhat = (x - mean) rstd`; returns `(sum dz xhat, sum dz)`.
/// Elementwise first, then two lane sums: one fused pass did not vectorise.
#[inline(always)]
fn norm_backward_body(
    x: &[f32],
    dy: &[f32],
    out: &mut [f32],
    [mean, rstd, gamma, beta]: [f32; 4],
    activation: bool,
) -> [f64; 2] {
    if activation {
        for ((o, &xv), &d) in out.iter_mut().zip(x).zip(dy) {
            let n = (xv - mean) * rstd * gamma + beta;
            let s = sigmoid(n);
            *o = d * s * (1.0 + n * (1.0 - s));
        }
    } else {
        out.copy_from_slice(dy);
    }
    let dz_xhat = {
        let mut lanes = [0.0f32; LANES];
        let (xs, xr) = x.as_chunks::<LANES>();
        let (os, or) = out.as_chunks::<LANES>();
        for (xc, oc) in xs.iter().zip(os) {
            for ((s, &xv), &o) in lanes.iter_mut().zip(xc).zip(oc) {
                *s += o * ((xv - mean) * rstd);
            }
        }
        let tail: f64 = xr.iter().zip(or).map(|(&xv, &o)| (o * ((xv - mean) * rstd)) as f64).sum();
        tail + lanes.iter().map(|&v| v as f64).sum::<f64>()
    };
    [dz_xhat, lane_sum(out, |v| v)]
}

multiversion!(fn moments_kernel(x: &[f32], shift: f32) -> [f64; 2] => moments_body);
multiversion!(fn affine_kernel(x: &[f32], out: &mut [f32], scale: f32, shift: f32, activation: bool) => affine_body);
multiversion!(fn norm_backward_kernel(x: &[f32], dy: &[f32], out: &mut [f32], p: [f32; 4], activation: bool) -> [f64; 2] => norm_backward_body);

/// The geometry of a group normalisation: `[batch, channels, pixels]`, `groups` groups of
/// `channels / groups` channels, and the variance's `eps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormGeometry {
    pub batch: usize,
    pub channels: usize,
    pub pixels: usize,
    pub groups: usize,
    pub eps: f32,
}

impl NormGeometry {
    /// Elements per group of one image.
    fn group_len(&self) -> usize {
        self.channels / self.groups * self.pixels
    }
}

/// Group normalisation (Wu and He, 2018), optionally followed by SiLU in the same pass:
/// `n = gamma_c (x - mu_g) / sqrt(var_g + eps) + beta_c`, `y = n` or `y = silu(n)`, with `mu_g`,
/// `var_g` each image's mean and biased variance over its group's channels and pixels.
/// Returns `y` and the statistics `(mu_g, 1 / sqrt(var_g + eps))` per image and group, which
/// the backward pass reuses.
pub fn group_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    g: &NormGeometry,
    activation: bool,
) -> (Vec<f32>, Vec<[f32; 2]>) {
    assert!(g.groups > 0 && g.channels.is_multiple_of(g.groups), "group_norm: groups must divide the channels");
    assert_eq!(x.len(), g.batch * g.channels * g.pixels, "group_norm: input size");
    assert!(gamma.len() == g.channels && beta.len() == g.channels, "group_norm: affine parameters' size");
    let mut y = vec![0.0; x.len()];
    let mut stats = vec![[0.0f32; 2]; g.batch * g.groups];
    let (cpg, len) = (g.channels / g.groups, g.group_len());
    let image = g.channels * g.pixels;
    let work = |i: usize, out: &mut [f32], st: &mut [[f32; 2]]| {
        for (k, (out, st)) in out.chunks_mut(len).zip(st).enumerate() {
            let xs = &x[i * image + k * len..i * image + (k + 1) * len];
            // Moments about the group's first value, so that the variance does not cancel.
            let [s1, s2] = moments_kernel(xs, xs[0]);
            let shifted_mean = s1 / len as f64;
            let mean = xs[0] as f64 + shifted_mean;
            let var = (s2 / len as f64 - shifted_mean * shifted_mean).max(0.0);
            let rstd = 1.0 / (var + g.eps as f64).sqrt();
            *st = [mean as f32, rstd as f32];
            for (c, (xc, oc)) in xs.chunks(g.pixels).zip(out.chunks_mut(g.pixels)).enumerate() {
                let ch = k * cpg + c;
                let scale = gamma[ch] as f64 * rstd;
                let shift = beta[ch] as f64 - mean * scale;
                affine_kernel(xc, oc, scale as f32, shift as f32, activation);
            }
        }
    };
    per_image_with(&mut y, image, &mut stats, g.groups, work);
    (y, stats)
}

/// The gradients of [`group_norm`] for `dy`: `(dx, dgamma, dbeta)`. Per group, with
/// `xhat = (x - mu) rstd`, `dz = dy` (or `dy silu'(n)`) and `dxhat = gamma_c dz`:
/// `dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat))`, `dgamma_c = sum dz xhat`,
/// `dbeta_c = sum dz`.
pub fn group_norm_backward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    stats: &[[f32; 2]],
    dy: &[f32],
    g: &NormGeometry,
    activation: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.batch * g.channels * g.pixels, "group_norm_backward: input size");
    assert_eq!(dy.len(), x.len(), "group_norm_backward: output gradient size");
    assert_eq!(stats.len(), g.batch * g.groups, "group_norm_backward: statistics size");
    let mut dx = vec![0.0; x.len()];
    // Per image: dgamma then dbeta, summed over images at the end.
    let mut partial = vec![[0.0f32; 2]; g.batch * g.channels];
    let (cpg, len) = (g.channels / g.groups, g.group_len());
    let image = g.channels * g.pixels;
    let work = |i: usize, out: &mut [f32], part: &mut [[f32; 2]]| {
        for (k, out) in out.chunks_mut(len).enumerate() {
            let [mean, rstd] = stats[i * g.groups + k];
            let base = i * image + k * len;
            let (xs, dys) = (&x[base..base + len], &dy[base..base + len]);
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for (c, ((xc, dyc), oc)) in
                xs.chunks(g.pixels).zip(dys.chunks(g.pixels)).zip(out.chunks_mut(g.pixels)).enumerate()
            {
                let ch = k * cpg + c;
                let [dgamma, dbeta] = norm_backward_kernel(xc, dyc, oc, [mean, rstd, gamma[ch], beta[ch]], activation);
                part[ch] = [dgamma as f32, dbeta as f32];
                // dxhat = gamma dz, so its sums are gamma times those of dz.
                s1 += gamma[ch] as f64 * dbeta;
                s2 += gamma[ch] as f64 * dgamma;
            }
            let (m1, m2) = ((s1 / len as f64) as f32, (s2 / len as f64) as f32);
            for (c, (oc, xc)) in out.chunks_mut(g.pixels).zip(xs.chunks(g.pixels)).enumerate() {
                let gm = gamma[k * cpg + c];
                for (o, &xv) in oc.iter_mut().zip(xc) {
                    let xhat = (xv - mean) * rstd;
                    *o = rstd * (gm * *o - m1 - xhat * m2);
                }
            }
        }
    };
    per_image_with(&mut dx, image, &mut partial, g.channels, work);
    let (mut dgamma, mut dbeta) = (vec![0.0f64; g.channels], vec![0.0f64; g.channels]);
    for img in partial.chunks(g.channels) {
        for (c, [dg, db]) in img.iter().enumerate() {
            dgamma[c] += *dg as f64;
            dbeta[c] += *db as f64;
        }
    }
    let to32 = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (dx, to32(dgamma), to32(dbeta))
}

/// Like [`per_image`], with a second per-image output (`side`, `side_len` entries per image).
fn per_image_with<T: Send>(
    out: &mut [f32],
    len: usize,
    side: &mut [T],
    side_len: usize,
    f: impl Fn(usize, &mut [f32], &mut [T]) + Sync + Send,
) {
    if len == 0 || side_len == 0 {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len).zip(side.par_chunks_mut(side_len)).enumerate().for_each(|(i, (o, s))| f(i, o, s));
    }
    #[cfg(target_arch = "wasm32")]
    out.chunks_mut(len).zip(side.chunks_mut(side_len)).enumerate().for_each(|(i, (o, s))| f(i, o, s));
}

/// One row of a softmax: `y = e^(x - max x) / sum e^(x - max x)`, with lane-wise maximum and
/// sum (so they vectorise).
#[inline(always)]
fn softmax_row_body(x: &[f32], y: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let (chunks, rest) = x.as_chunks::<LANES>();
    for c in chunks {
        for l in 0..LANES {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    let max = rest.iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sums = [0.0f32; LANES];
    let n = x.len() / LANES * LANES;
    for (xc, yc) in x[..n].as_chunks::<LANES>().0.iter().zip(y[..n].as_chunks_mut::<LANES>().0) {
        for l in 0..LANES {
            yc[l] = exp(xc[l] - max);
            sums[l] += yc[l];
        }
    }
    let mut sum = sums.iter().sum::<f32>();
    for (yv, &xv) in y[n..].iter_mut().zip(&x[n..]) {
        *yv = exp(xv - max);
        sum += *yv;
    }
    let inv = 1.0 / sum;
    y.iter_mut().for_each(|v| *v *= inv);
}

/// One row of the softmax's backward step: `dx = y (g - <g, y>)`.
#[inline(always)]
fn softmax_row_backward_body(y: &[f32], g: &[f32], dx: &mut [f32]) {
    let mut lanes = [0.0f32; LANES];
    let n = y.len() / LANES * LANES;
    for (yc, gc) in y[..n].as_chunks::<LANES>().0.iter().zip(g[..n].as_chunks::<LANES>().0) {
        for l in 0..LANES {
            lanes[l] += yc[l] * gc[l];
        }
    }
    let dot = lanes.iter().sum::<f32>() + y[n..].iter().zip(&g[n..]).map(|(a, b)| a * b).sum::<f32>();
    for ((d, &yv), &gv) in dx.iter_mut().zip(y).zip(g) {
        *d = yv * (gv - dot);
    }
}

multiversion!(fn softmax_row_kernel(x: &[f32], y: &mut [f32]) => softmax_row_body);
multiversion!(fn softmax_row_backward_kernel(y: &[f32], g: &[f32], dx: &mut [f32]) => softmax_row_backward_body);

/// The softmax over each consecutive `row`-long slice of `x`.
pub fn softmax_rows(x: &[f32], row: usize) -> Vec<f32> {
    assert!(row > 0 && x.len().is_multiple_of(row), "softmax_rows: rows of equal length");
    let mut y = vec![0.0; x.len()];
    for_rows(&mut y, row, |start, out| {
        for (xr, yr) in x[start..start + out.len()].chunks(row).zip(out.chunks_mut(row)) {
            softmax_row_kernel(xr, yr);
        }
    });
    y
}

/// The gradient of [`softmax_rows`] from its output `y` and the incoming gradient `g`.
pub fn softmax_rows_backward(y: &[f32], g: &[f32], row: usize) -> Vec<f32> {
    assert!(row > 0 && y.len() == g.len() && y.len().is_multiple_of(row), "softmax_rows_backward: sizes");
    let mut dx = vec![0.0; y.len()];
    for_rows(&mut dx, row, |start, out| {
        let end = start + out.len();
        for ((yr, gr), dr) in y[start..end].chunks(row).zip(g[start..end].chunks(row)).zip(out.chunks_mut(row)) {
            softmax_row_backward_kernel(yr, gr, dr);
        }
    });
    dx
}

/// Calls `f(offset, chunk)` on chunks of `out` made of whole `row`-long rows, in parallel
/// natively.
fn for_rows(out: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let len = CHUNK.div_ceil(row) * row;
    super::for_blocks(out, len, |i, chunk| f(i * len, chunk));
}

/// Calls `f(offset, chunk)` on chunks of `out`, in parallel natively.
fn for_chunks(out: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    for_rows(out, 1, f);
}

/// The geometry of a 2D convolution: input `[batch, cin, h, w]`, weights `[cout, cin, k, k]`,
/// zero padding `pad` on every side, stride `stride` (groups 1, dilation 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeometry {
    /// Output height and width, `(h + 2 pad - k) / stride + 1`.
    pub fn out_hw(&self) -> (usize, usize) {
        let o = |n: usize| (n + 2 * self.pad - self.k) / self.stride + 1;
        (o(self.h), o(self.w))
    }

    /// Rows of the im2col matrix, `cin k^2`.
    fn taps(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// Output pixels per image.
    fn pixels(&self) -> usize {
        let (ho, wo) = self.out_hw();
        ho * wo
    }

    /// A 1x1, stride-1, unpadded convolution reads the image as its own im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Input index `x[c, iy, ix]` of tap `(di, dj)` at output row `oy`, column `ox`, or `None`
    /// in the padding.
    #[inline(always)]
    fn source(&self, oy: usize, di: usize) -> Option<usize> {
        (oy * self.stride + di).checked_sub(self.pad).filter(|&i| i < self.h)
    }

    /// For tap column `dj`: the output columns `ox` whose input column lies inside the image.
    fn valid_cols(&self, dj: usize, wo: usize) -> std::ops::Range<usize> {
        let s = self.stride;
        let first = self.pad.saturating_sub(dj).div_ceil(s);
        // ox s + dj - pad < w  <=>  ox < (w + pad - dj) / s, rounded up.
        let end = (self.w + self.pad).saturating_sub(dj).div_ceil(s).min(wo);
        first.min(end)..end
    }
}

/// `col[(c, di, dj), (oy, ox)] = x[c, oy s + di - pad, ox s + dj - pad]` (zero in the padding),
/// for one image: a `cin k^2 x ho wo` matrix, row-major.
fn im2col(x: &[f32], g: &ConvGeometry, col: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (k, s) = (g.k, g.stride);
    for c in 0..g.cin {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for di in 0..k {
            for dj in 0..k {
                let row = &mut col[((c * k + di) * k + dj) * ho * wo..][..ho * wo];
                let cols = g.valid_cols(dj, wo);
                for oy in 0..ho {
                    let out = &mut row[oy * wo..(oy + 1) * wo];
                    let Some(iy) = g.source(oy, di) else {
                        out.fill(0.0);
                        continue;
                    };
                    let line = &plane[iy * g.w..(iy + 1) * g.w];
                    out[..cols.start].fill(0.0);
                    out[cols.end..].fill(0.0);
                    let x0 = cols.start * s + dj - g.pad;
                    if s == 1 {
                        out[cols.clone()].copy_from_slice(&line[x0..x0 + cols.len()]);
                    } else {
                        for (o, ox) in out[cols.clone()].iter_mut().zip(0..) {
                            *o = line[x0 + ox * s];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: `dx[c, iy, ix] += col[(c, di, dj), (oy, ox)]` over every tap that
/// read `(iy, ix)`; `dx` starts at zero.
fn col2im(col: &[f32], g: &ConvGeometry, dx: &mut [f32]) {
    let (ho, wo) = g.out_hw();
    let (k, s) = (g.k, g.stride);
    dx.fill(0.0);
    for c in 0..g.cin {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for di in 0..k {
            for dj in 0..k {
                let row = &col[((c * k + di) * k + dj) * ho * wo..][..ho * wo];
                let cols = g.valid_cols(dj, wo);
                for oy in 0..ho {
                    let Some(iy) = g.source(oy, di) else { continue };
                    let line = &mut plane[iy * g.w..(iy + 1) * g.w];
                    let src = &row[oy * wo + cols.start..oy * wo + cols.end];
                    let x0 = cols.start * s + dj - g.pad;
                    if s == 1 {
                        for (d, &v) in line[x0..x0 + src.len()].iter_mut().zip(src) {
                            *d += v;
                        }
                    } else {
                        for (i, &v) in src.iter().enumerate() {
                            line[x0 + i * s] += v;
                        }
                    }
                }
            }
        }
    }
}

/// A strided matrix operand for [`matmul`]: element `(i, j)` at `i row_stride + j col_stride`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    fn rows(data: &'a [f32], cols: usize) -> Self {
        Self { data, row_stride: cols, col_stride: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self { data, row_stride: 1, col_stride: cols }
    }
    /// The same strides from element `offset` of `data` on.
    fn strided(data: &'a [f32], offset: usize, row_stride: usize, col_stride: usize) -> Self {
        Self { data: &data[offset..], row_stride, col_stride }
    }
}

/// A strided matrix destination for [`matmul`].
struct Out<'a> {
    data: &'a mut [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Out<'a> {
    fn rows(data: &'a mut [f32], cols: usize) -> Self {
        Self { data, row_stride: cols, col_stride: 1 }
    }
    fn strided(data: &'a mut [f32], offset: usize, row_stride: usize, col_stride: usize) -> Self {
        Self { data: &mut data[offset..], row_stride, col_stride }
    }
}

/// The largest offset a strided `rows x cols` matrix reaches, or `None` when it is empty.
fn reach(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Option<usize> {
    (rows > 0 && cols > 0).then(|| (rows - 1) * row_stride + (cols - 1) * col_stride)
}

/// `dst (m x n) = [dst +] lhs (m x k) rhs (k x n)`, by the gemm crate (burn-flex's own matrix
/// kernel).
fn matmul(dst: Out, accumulate: bool, lhs: View, rhs: View, [m, k, n]: [usize; 3], threads: Parallelism) {
    let fits = |len: usize, r, c, rs, cs| reach(r, c, rs, cs).is_none_or(|last| last < len);
    assert!(fits(dst.data.len(), m, n, dst.row_stride, dst.col_stride), "matmul: destination too small");
    assert!(fits(lhs.data.len(), m, k, lhs.row_stride, lhs.col_stride), "matmul: lhs too small");
    assert!(fits(rhs.data.len(), k, n, rhs.row_stride, rhs.col_stride), "matmul: rhs too small");
    // SAFETY: the three views are in bounds (asserted above), `dst` is exclusively borrowed and
    // does not alias the shared `lhs` and `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst.col_stride as isize,
            dst.row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            threads,
        );
    }
}

/// Stride-1 convolutions as `k^2` shifted products, with no im2col matrix. On the zero-padded
/// image flattened plane by plane (width `wp = w + 2 pad`, one more zero row at the bottom), the
/// tap `(di, dj)` of output `(oy, ox)` sits at `(oy wp + ox) + (di wp + dj)`. Computed on the
/// padded width (`ho x wp` "wide" outputs, the last `k - 1` columns then dropped), every tap is
/// one contiguous shift of the padded plane: `y_wide += W[:, :, di, dj] shift(x_pad)`, a
/// `cout x cin` by `cin x ho wp` product reading the padded image in place.
struct Shifted {
    wp: usize,
    /// Elements per padded plane, `(h + 2 pad + 1) wp`.
    plane: usize,
    /// Wide outputs per plane, `ho wp`.
    wide: usize,
    g: ConvGeometry,
}

impl Shifted {
    fn new(g: &ConvGeometry) -> Self {
        let wp = g.w + 2 * g.pad;
        let (ho, _) = g.out_hw();
        Self { wp, plane: (g.h + 2 * g.pad + 1) * wp, wide: ho * wp, g: *g }
    }

    /// Where tap `t = di k + dj` starts in a padded plane.
    fn offset(&self, t: usize) -> usize {
        (t / self.g.k) * self.wp + t % self.g.k
    }

    /// One image, zero-padded and flattened plane by plane.
    fn pad(&self, xi: &[f32]) -> Vec<f32> {
        let g = &self.g;
        let mut padded = vec![0.0; g.cin * self.plane];
        for (src, dst) in xi.chunks(g.h * g.w).zip(padded.chunks_mut(self.plane)) {
            for (row, line) in src.chunks(g.w).enumerate() {
                let start = (row + g.pad) * self.wp + g.pad;
                dst[start..start + g.w].copy_from_slice(line);
            }
        }
        padded
    }

    /// The interior of padded planes: the adjoint of [`Shifted::pad`].
    fn unpad(&self, padded: &[f32], out: &mut [f32]) {
        let g = &self.g;
        for (src, dst) in padded.chunks(self.plane).zip(out.chunks_mut(g.h * g.w)) {
            for (row, line) in dst.chunks_mut(g.w).enumerate() {
                let start = (row + g.pad) * self.wp + g.pad;
                line.copy_from_slice(&src[start..start + g.w]);
            }
        }
    }

    /// Wide outputs (`channels` planes of `ho x wp`) cropped to `ho x wo`.
    fn crop(&self, wide: &[f32], out: &mut [f32]) {
        let (_, wo) = self.g.out_hw();
        for (src, dst) in wide.chunks(self.wp).zip(out.chunks_mut(wo)) {
            dst.copy_from_slice(&src[..wo]);
        }
    }

    /// `ho x wo` planes widened to `ho x wp` with zeros: the adjoint of [`Shifted::crop`].
    fn widen(&self, planes: &[f32]) -> Vec<f32> {
        let (_, wo) = self.g.out_hw();
        let mut wide = vec![0.0; planes.len() / wo * self.wp];
        for (src, dst) in planes.chunks(wo).zip(wide.chunks_mut(self.wp)) {
            dst[..wo].copy_from_slice(src);
        }
        wide
    }

    /// `W[:, :, t]` as a `cout x cin` view of the `[cout, cin, k, k]` weights.
    fn tap<'a>(&self, weight: &'a [f32], t: usize) -> View<'a> {
        let kk = self.g.k * self.g.k;
        View::strided(weight, t, self.g.cin * kk, kk)
    }

    /// `y_i = sum_t W_t shift_t(x_pad) + b`, cropped.
    fn forward(&self, xi: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32], threads: Parallelism) {
        let g = &self.g;
        let padded = self.pad(xi);
        let mut wide = vec![0.0; g.cout * self.wide];
        for (row, &b) in wide.chunks_mut(self.wide).zip(bias) {
            row.fill(b);
        }
        for t in 0..g.k * g.k {
            let shifted = View::strided(&padded, self.offset(t), self.plane, 1);
            let dst = Out::rows(&mut wide, self.wide);
            matmul(dst, true, self.tap(weight, t), shifted, [g.cout, g.cin, self.wide], threads);
        }
        self.crop(&wide, out);
    }

    /// `dx_i = unpad(sum_t shift_t^T (W_t^T dy_wide))`.
    fn backward_x(&self, dyi: &[f32], weight: &[f32], dxi: &mut [f32], threads: Parallelism) {
        let g = &self.g;
        let kk = g.k * g.k;
        let dy_wide = self.widen(dyi);
        let mut padded = vec![0.0; g.cin * self.plane];
        for t in 0..kk {
            let wt = View::strided(weight, t, kk, g.cin * kk);
            let dst = Out::strided(&mut padded, self.offset(t), self.plane, 1);
            matmul(dst, true, wt, View::rows(&dy_wide, self.wide), [g.cin, g.cout, self.wide], threads);
        }
        self.unpad(&padded, dxi);
    }

    /// `dW_t [+]= dy_wide shift_t(x_pad)^T`; the dropped wide columns of `dy_wide` are zero.
    fn backward_weight(&self, xi: &[f32], dyi: &[f32], acc: &mut [f32], accumulate: bool, threads: Parallelism) {
        let g = &self.g;
        let kk = g.k * g.k;
        let padded = self.pad(xi);
        let dy_wide = self.widen(dyi);
        for t in 0..kk {
            let shifted_t = View::strided(&padded, self.offset(t), 1, self.plane);
            let dst = Out::strided(acc, t, g.cin * kk, kk);
            let lhs = View::rows(&dy_wide, self.wide);
            matmul(dst, accumulate, lhs, shifted_t, [g.cout, self.wide, g.cin], threads);
        }
    }
}

/// How to spread per-image work: over images when there are at least as many images as
/// threads (each product single-threaded), else image by image with threaded products.
fn split(batch: usize) -> (bool, Parallelism) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = rayon::current_num_threads();
        if threads > 1 && batch < threads {
            return (false, Parallelism::Rayon(threads));
        }
        (threads > 1, Parallelism::None)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = batch;
        (false, Parallelism::None)
    }
}

/// Runs `f(i, chunk_i)` for every image's `len`-sized chunk of `out`, over images in parallel
/// when `parallel`.
fn per_image(out: &mut [f32], len: usize, parallel: bool, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if len == 0 {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    if parallel {
        use rayon::prelude::*;
        out.par_chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
        return;
    }
    let _ = parallel;
    out.chunks_mut(len).enumerate().for_each(|(i, c)| f(i, c));
}

/// `y = W * x + b` (cross-correlation, torch's `Conv2d`), per image and written in place into
/// `y`'s NCHW layout: a 1x1 convolution is one product with the image; a stride-1 one is `k^2`
/// shifted products ([`Shifted`]); any other is `W col(x_i)` with an im2col matrix.
pub fn conv2d(x: &[f32], weight: &[f32], bias: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (taps, pixels) = (g.taps(), g.pixels());
    let image = g.cin * g.h * g.w;
    assert_eq!(x.len(), g.batch * image, "conv2d: input size");
    assert_eq!(weight.len(), g.cout * taps, "conv2d: weight size");
    assert_eq!(bias.len(), g.cout, "conv2d: bias size");
    let mut y = vec![0.0; g.batch * g.cout * pixels];
    let (parallel, threads) = split(g.batch);
    let shifted = (g.stride == 1 && !g.is_pointwise()).then(|| Shifted::new(g));
    per_image(&mut y, g.cout * pixels, parallel, |i, out| {
        let xi = &x[i * image..(i + 1) * image];
        if let Some(shifted) = &shifted {
            return shifted.forward(xi, weight, bias, out, threads);
        }
        for (row, &b) in out.chunks_mut(pixels).zip(bias) {
            row.fill(b);
        }
        let w = View::rows(weight, taps);
        let dst = Out::rows(out, pixels);
        if g.is_pointwise() {
            matmul(dst, true, w, View::rows(xi, pixels), [g.cout, taps, pixels], threads);
        } else {
            let mut col = vec![0.0; taps * pixels];
            im2col(xi, g, &mut col);
            matmul(dst, true, w, View::rows(&col, pixels), [g.cout, taps, pixels], threads);
        }
    });
    y
}

/// The gradients of [`conv2d`] given `dy = dL/dy`, each computed only when asked for:
/// - `dx_i = col2im(W^T dy_i)`;
/// - `dW = sum_i dy_i col(x_i)^T`;
/// - `db = sum over images and pixels of dy`.
///
/// Stride-1 convolutions use the same shifted products as the forward ([`Shifted`]).
pub struct ConvGradients {
    pub x: Option<Vec<f32>>,
    pub weight: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
}

/// See [`ConvGradients`]; `want` says which of `(x, weight, bias)` to compute.
pub fn conv2d_backward(x: &[f32], weight: &[f32], dy: &[f32], g: &ConvGeometry, want: [bool; 3]) -> ConvGradients {
    let (taps, pixels) = (g.taps(), g.pixels());
    let image = g.cin * g.h * g.w;
    let out_image = g.cout * pixels;
    assert_eq!(x.len(), g.batch * image, "conv2d_backward: input size");
    assert_eq!(weight.len(), g.cout * taps, "conv2d_backward: weight size");
    assert_eq!(dy.len(), g.batch * out_image, "conv2d_backward: output gradient size");
    let (parallel, threads) = split(g.batch);
    let shifted = (g.stride == 1 && !g.is_pointwise()).then(|| Shifted::new(g));

    let dx = want[0].then(|| {
        let mut dx = vec![0.0; g.batch * image];
        per_image(&mut dx, image, parallel, |i, dxi| {
            let dy_i = &dy[i * out_image..(i + 1) * out_image];
            if let Some(shifted) = &shifted {
                return shifted.backward_x(dy_i, weight, dxi, threads);
            }
            let (wt, dyi) = (View::transposed(weight, taps), View::rows(dy_i, pixels));
            if g.is_pointwise() {
                matmul(Out::rows(dxi, pixels), false, wt, dyi, [taps, g.cout, pixels], threads);
            } else {
                let mut col = vec![0.0; taps * pixels];
                matmul(Out::rows(&mut col, pixels), false, wt, dyi, [taps, g.cout, pixels], threads);
                col2im(&col, g, dxi);
            }
        });
        dx
    });

    let dw = want[1].then(|| {
        // One partial sum per image block, added at the end.
        let blocks = if parallel { threads_available().min(g.batch) } else { 1 };
        let per = g.batch.div_ceil(blocks);
        let mut partial = vec![0.0; blocks * g.cout * taps];
        per_image(&mut partial, g.cout * taps, parallel, |blk, acc| {
            let mut col = vec![0.0; if g.is_pointwise() || shifted.is_some() { 0 } else { taps * pixels }];
            for i in blk * per..((blk + 1) * per).min(g.batch) {
                let dy_i = &dy[i * out_image..(i + 1) * out_image];
                let xi = &x[i * image..(i + 1) * image];
                let accumulate = i > blk * per;
                if let Some(shifted) = &shifted {
                    shifted.backward_weight(xi, dy_i, acc, accumulate, threads);
                    continue;
                }
                let colt = if g.is_pointwise() {
                    View::transposed(xi, pixels)
                } else {
                    im2col(xi, g, &mut col);
                    View::transposed(&col, pixels)
                };
                let dst = Out::rows(acc, taps);
                matmul(dst, accumulate, View::rows(dy_i, pixels), colt, [g.cout, pixels, taps], threads);
            }
        });
        let (first, rest) = partial.split_at_mut(g.cout * taps);
        for block in rest.chunks(g.cout * taps) {
            for (a, &b) in first.iter_mut().zip(block) {
                *a += b;
            }
        }
        partial.truncate(g.cout * taps);
        partial
    });

    let db = want[2].then(|| {
        let mut db = vec![0.0f64; g.cout];
        for img in dy.chunks(out_image) {
            for (d, row) in db.iter_mut().zip(img.chunks(pixels)) {
                *d += row.iter().map(|&v| v as f64).sum::<f64>();
            }
        }
        db.into_iter().map(|v| v as f32).collect()
    });

    ConvGradients { x: dx, weight: dw, bias: db }
}

/// `sum = a + b`, `diff = a - b`.
#[inline(always)]
fn butterfly_body(a: &[f32], b: &[f32], sum: &mut [f32], diff: &mut [f32]) {
    for (((s, t), &a), &b) in sum.iter_mut().zip(diff.iter_mut()).zip(a).zip(b) {
        *s = a + b;
        *t = a - b;
    }
}

/// Per `d`-long row `x_r`: `plus_r[n] = x_r[n] + x_r[d-1-n]`, `minus_r[n] = x_r[n] - x_r[d-1-n]`,
/// `n < d/2`.
#[inline(always)]
fn mirror_fold_body(x: &[f32], plus: &mut [f32], minus: &mut [f32], d: usize) {
    let h = d / 2;
    for ((xr, pr), mr) in x.chunks_exact(d).zip(plus.chunks_exact_mut(h)).zip(minus.chunks_exact_mut(h)) {
        for n in 0..h {
            let (a, b) = (xr[n], xr[d - 1 - n]);
            pr[n] = a + b;
            mr[n] = a - b;
        }
    }
}

/// The adjoint of [`mirror_fold_body`]: per row, `out[n] = e[n] + o[n]`, `out[d-1-n] = e[n] - o[n]`.
#[inline(always)]
fn mirror_unfold_body(e: &[f32], o: &[f32], out: &mut [f32], d: usize) {
    let h = d / 2;
    for ((zr, er), or) in out.chunks_exact_mut(d).zip(e.chunks_exact(h)).zip(o.chunks_exact(h)) {
        for n in 0..h {
            zr[n] = er[n] + or[n];
            zr[d - 1 - n] = er[n] - or[n];
        }
    }
}

/// `acc += m v`.
#[inline(always)]
fn axpy_body(acc: &mut [f32], m: f32, v: &[f32]) {
    acc.iter_mut().zip(v).for_each(|(a, &v)| *a += m * v);
}

/// `x *= w` elementwise.
#[inline(always)]
fn scale_body(x: &mut [f32], w: &[f32]) {
    x.iter_mut().zip(w).for_each(|(x, &w)| *x *= w);
}

multiversion!(fn butterfly_kernel(a: &[f32], b: &[f32], sum: &mut [f32], diff: &mut [f32]) => butterfly_body);
multiversion!(fn mirror_fold_kernel(x: &[f32], plus: &mut [f32], minus: &mut [f32], d: usize) => mirror_fold_body);
multiversion!(fn mirror_unfold_kernel(e: &[f32], o: &[f32], out: &mut [f32], d: usize) => mirror_unfold_body);
multiversion!(fn axpy_kernel(acc: &mut [f32], m: f32, v: &[f32]) => axpy_body);
multiversion!(fn scale_kernel(x: &mut [f32], w: &[f32]) => scale_body);

/// One `d x d` factor `F` of the K-DCT basis, split into square parts that act on folded
/// inputs, so that a whole group of planes goes through each part in one product.
/// - With the DCT-II's mirror symmetry, `F[k, d-1-n] = (-1)^k F[k, n]` (docs/maths.md, "DCT":
///   `cos(pi (2n+1) k / 2d)` changes sign with `k` under `n -> d-1-n`), one butterfly step of the
///   fast DCT: `(F x)_{2j} = F_e (x_n + x_{d-1-n})` and `(F x)_{2j+1} = F_o (x_n - x_{d-1-n})`,
///   with `F_e[j, n] = F[2j, n]`, `F_o[j, n] = F[2j+1, n]`, `n < d/2`. Half the multiply-adds.
/// - Any other matrix (the learnt "Free" bases): one part, `F` itself, on `x` unfolded.
///
/// Coefficients are kept in the parts' order (for the mirror, the even ones, then the odd ones):
/// coefficient `k'` of the kernel's layout is row `order[k']` of `F`.
struct Factor {
    d: usize,
    mirror: bool,
    /// The parts, each row-major `w x w` (`w = d/2` for the mirror, else `d`).
    parts: Vec<Vec<f32>>,
    order: Vec<usize>,
}

impl Factor {
    /// The mirror split when `f` (row-major `d x d`) has the symmetry to within f32 rounding,
    /// else the dense factor.
    fn new(f: &[f32], d: usize) -> Self {
        if Self::is_mirrored(f, d) {
            let h = d / 2;
            let half = |parity: usize| (0..h).flat_map(|j| f[(2 * j + parity) * d..][..h].to_vec()).collect();
            let order = (0..h).map(|j| 2 * j).chain((0..h).map(|j| 2 * j + 1)).collect();
            Self { d, mirror: true, parts: vec![half(0), half(1)], order }
        } else {
            Self { d, mirror: false, parts: vec![f.to_vec()], order: (0..d).collect() }
        }
    }

    fn is_mirrored(f: &[f32], d: usize) -> bool {
        if d < 2 || !d.is_multiple_of(2) {
            return false;
        }
        let scale = f.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let tolerance = 4.0 * f32::EPSILON * scale;
        let sign = |k: usize| if k.is_multiple_of(2) { 1.0 } else { -1.0 };
        scale > 0.0
            && (0..d).all(|k| (0..d / 2).all(|n| (f[k * d + d - 1 - n] - sign(k) * f[k * d + n]).abs() <= tolerance))
    }

    /// The parts' size `w`.
    fn width(&self) -> usize {
        if self.mirror {
            self.d / 2
        } else {
            self.d
        }
    }

    /// Folds every `d`-long row of `x` (`rows` of them) into the parts' inputs, part `q`'s
    /// `rows x w` block at `q rows w` of `u`.
    fn fold_rows(&self, x: &[f32], u: &mut [f32]) {
        if self.mirror {
            let (plus, minus) = u.split_at_mut(x.len() / 2);
            mirror_fold_kernel(x, plus, minus, self.d);
        } else {
            u.copy_from_slice(x);
        }
    }

    /// The adjoint of [`Self::fold_rows`]: the parts' outputs `u` back to `d`-long rows.
    fn unfold_rows(&self, u: &[f32], out: &mut [f32]) {
        if self.mirror {
            let (e, o) = u.split_at(out.len() / 2);
            mirror_unfold_kernel(e, o, out, self.d);
        } else {
            out.copy_from_slice(u);
        }
    }

    /// Folds the rows of each `d x d` plane `X_g` of `x` (`planes` of them) across planes:
    /// row `n` of part `q` is `[fold(X_0)_n, fold(X_1)_n, ...]`, a `w x (planes d)` matrix.
    fn fold_planes(&self, x: &[f32], u: &mut [f32], planes: usize) {
        let d = self.d;
        let (w, row) = (self.width(), planes * d);
        if self.mirror {
            let (plus, minus) = u.split_at_mut(w * row);
            for (g, xg) in x.chunks_exact(d * d).enumerate() {
                for n in 0..w {
                    let at = n * row + g * d;
                    let (top, bottom) = (&xg[n * d..][..d], &xg[(d - 1 - n) * d..][..d]);
                    butterfly_kernel(top, bottom, &mut plus[at..][..d], &mut minus[at..][..d]);
                }
            }
        } else {
            for (g, xg) in x.chunks_exact(d * d).enumerate() {
                for (n, xr) in xg.chunks_exact(d).enumerate() {
                    u[n * row + g * d..][..d].copy_from_slice(xr);
                }
            }
        }
    }

    /// The adjoint of [`Self::fold_planes`]: parts' outputs `u` (each `w x (planes d)`) back to
    /// `d x d` planes.
    fn unfold_planes(&self, u: &[f32], out: &mut [f32], planes: usize) {
        let d = self.d;
        let (w, row) = (self.width(), planes * d);
        if self.mirror {
            let (e, o) = u.split_at(w * row);
            for (g, zg) in out.chunks_exact_mut(d * d).enumerate() {
                let (top, bottom) = zg.split_at_mut(w * d);
                for n in 0..w {
                    let at = n * row + g * d;
                    let (t, b) = (&mut top[n * d..][..d], &mut bottom[(w - 1 - n) * d..][..d]);
                    butterfly_kernel(&e[at..][..d], &o[at..][..d], t, b);
                }
            }
        } else {
            for (g, zg) in out.chunks_exact_mut(d * d).enumerate() {
                for (n, zr) in zg.chunks_exact_mut(d).enumerate() {
                    zr.copy_from_slice(&u[n * row + g * d..][..d]);
                }
            }
        }
    }
}

/// Images per group of [`kdct_structured`]: each group is one set of products, so groups are
/// as large as its four `images c d^2` buffers allow in a core's L2 cache (`BUDGET` floats
/// each), and there are at least as many as threads, in a multiple of them.
fn images_per_group(n: usize, per_image: usize, threads: usize) -> usize {
    const BUDGET: usize = 1 << 16;
    let by_cache = n.div_ceil((BUDGET / per_image.max(1)).max(1));
    let groups = by_cache.div_ceil(threads.max(1)) * threads.max(1);
    n.div_ceil(groups.clamp(1, n.max(1))).max(1)
}

/// The structured term of K-DCT (paper Eq. 13 and Alg. 1), for `n` images of `c` channels of
/// `d x d`: with `T(X) = A X B^T`,
/// - `analyse`: `y_i = T^T(lam_i * T(M_i v_i))` per channel (the matvec, `M = L L^T`);
/// - otherwise: `y_i = T^T(lam_i * M_i v_i)` (the sample, `M = L`, `lam` its square root).
///
/// Images run in groups (in parallel), and each factor acts on all of a group's planes in one
/// product per [`Factor`] part: `B` on the rows as a `(planes d) x w` by `w x w` product, and
/// `A` across the planes' rows as a `w x w` by `w x (planes d)` one, with the spectrum held as
/// `S[k'][plane][l']` in the factors' orders. Factors with the DCT's mirror symmetry take half
/// the multiply-adds. Eight products per group in all, whatever the number of planes.
pub fn kdct_structured(ops: Operands<'_>, analyse: bool) -> Vec<f32> {
    let [n, c, d] = ops.sizes;
    let per_group = images_per_group(n, c * d * d, threads_available());
    kdct_structured_grouped(ops, analyse, per_group)
}

/// [`kdct_structured`]'s operands: `v` `[n, c, d, d]`, `mix` `[n, c, c]`, `lam` `[n, d, d]`, `a`
/// and `b` `[d, d]`, `sizes` `[n, c, d]`, and an optional diagonal term `[g, w]` (both shaped as
/// `v`): then `y += g * w`, added while each group is in cache (`E v = e v + ...` in Eq. 13;
/// `sqrt(e) xi1 + ...` in Alg. 1), which saves the caller two passes over memory.
pub struct Operands<'a> {
    pub v: &'a [f32],
    pub mix: &'a [f32],
    pub lam: &'a [f32],
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub sizes: [usize; 3],
    pub diagonal: Option<[&'a [f32]; 2]>,
}

/// [`kdct_structured`] with `per_group` images per group.
fn kdct_structured_grouped(ops: Operands<'_>, analyse: bool, per_group: usize) -> Vec<f32> {
    let Operands { v, mix, lam, a, b, sizes: [n, c, d], diagonal } = ops;
    let plane = d * d;
    assert_eq!(v.len(), n * c * plane, "kdct_structured: v size");
    if let Some([g, w]) = diagonal {
        assert!(g.len() == v.len() && w.len() == v.len(), "kdct_structured: diagonal term size");
    }
    assert_eq!(mix.len(), n * c * c, "kdct_structured: mixing matrices' size");
    assert_eq!(lam.len(), n * plane, "kdct_structured: spectrum size");
    assert!(a.len() == plane && b.len() == plane, "kdct_structured: basis size");
    let (fa, fb) = (Factor::new(a, d), Factor::new(b, d));
    let (wa, wb) = (fa.width(), fb.width());
    // lam_i in the factors' orders, written into `out`: lam'[k'][l'] = lam[order_A[k']][order_B[l']].
    let lam_ordered = |i: usize, out: &mut [f32]| {
        let li = &lam[i * plane..][..plane];
        for (row, &k) in out.chunks_exact_mut(d).zip(&fa.order) {
            let src = &li[k * d..][..d];
            row.iter_mut().zip(&fb.order).for_each(|(o, &l)| *o = src[l]);
        }
    };
    let mut y = vec![0.0; v.len()];
    let group_len = per_group * c * plane;
    let groups = n.div_ceil(per_group.max(1));
    let threads = threads_available();
    let parallel = threads > 1 && groups > 1;
    let gemm_threads = product_threads(parallel, v.len());
    per_image(&mut y, group_len, parallel, |gi, yg| {
        with_scratch(3 * yg.len() + per_group * plane, |scratch| {
            let first = gi * per_group;
            let images = yg.len() / (c * plane);
            let planes = images * c;
            let rows = planes * d;
            let (p, rest) = scratch.split_at_mut(yg.len());
            let (u, rest) = rest.split_at_mut(yg.len());
            let (t, lams) = rest.split_at_mut(yg.len());
            let (mut p, mut t) = (p, t);
            // p = M_i v_i, channel by channel (the scratch holds the last call's values).
            p.fill(0.0);
            for (pi, i) in p.chunks_mut(c * plane).zip(first..) {
                let vi = &v[i * c * plane..][..c * plane];
                for (k, pk) in pi.chunks_mut(plane).enumerate() {
                    for (j, vj) in vi.chunks(plane).enumerate() {
                        axpy_kernel(pk, mix[(i * c + k) * c + j], vj);
                    }
                }
            }
            for (i, li) in (first..first + images).zip(lams.chunks_exact_mut(plane)) {
                lam_ordered(i, li);
            }
            let lam_of = |g: usize, kr: usize| &lams[(g / c) * plane + kr * d..][..d];
            // s = S[k'][plane][l'].
            let s = if analyse {
                // T = p B^T on the rows, then A T across the planes' rows (T(X) = A X B^T).
                fb.fold_rows(p, u);
                for (q, part) in fb.parts.iter().enumerate() {
                    let lhs = View::rows(&u[q * rows * wb..], wb);
                    matmul(
                        Out::strided(t, q * wb, d, 1),
                        false,
                        lhs,
                        View::transposed(part, wb),
                        [rows, wb, wb],
                        gemm_threads,
                    );
                }
                fa.fold_planes(t, u, planes);
                for (q, part) in fa.parts.iter().enumerate() {
                    let rhs = View::rows(&u[q * wa * rows..], rows);
                    matmul(
                        Out::strided(p, q * wa * rows, rows, 1),
                        false,
                        View::rows(part, wa),
                        rhs,
                        [wa, wa, rows],
                        gemm_threads,
                    );
                }
                for (kr, sk) in p.chunks_exact_mut(rows).enumerate() {
                    for (g, skg) in sk.chunks_exact_mut(d).enumerate() {
                        scale_kernel(skg, lam_of(g, kr));
                    }
                }
                p
            } else {
                // The sample's S is (M v) itself, read in the factors' orders.
                for (kr, &k) in fa.order.iter().enumerate() {
                    for g in 0..planes {
                        let (src, li) = (&p[g * plane + k * d..][..d], lam_of(g, kr));
                        for ((dst, &l), &w) in t[kr * rows + g * d..][..d].iter_mut().zip(&fb.order).zip(li) {
                            *dst = src[l] * w;
                        }
                    }
                }
                std::mem::swap(&mut p, &mut t);
                p
            };
            // T^T(S) = A^T S B: A^T across the planes' rows, then B on the rows.
            for (q, part) in fa.parts.iter().enumerate() {
                let rhs = View::strided(s, q * wa * rows, rows, 1);
                matmul(
                    Out::rows(&mut u[q * wa * rows..], rows),
                    false,
                    View::transposed(part, wa),
                    rhs,
                    [wa, wa, rows],
                    gemm_threads,
                );
            }
            fa.unfold_planes(u, t, planes);
            for (q, part) in fb.parts.iter().enumerate() {
                let lhs = View::strided(t, q * wb, d, 1);
                matmul(
                    Out::rows(&mut u[q * rows * wb..], wb),
                    false,
                    lhs,
                    View::rows(part, wb),
                    [rows, wb, wb],
                    gemm_threads,
                );
            }
            fb.unfold_rows(u, yg);
            if let Some([g, w]) = diagonal {
                let (g, w) = (&g[first * c * plane..], &w[first * c * plane..]);
                yg.iter_mut().zip(g).zip(w).for_each(|((y, &g), &w)| *y += g * w);
            }
        })
    });
    y
}

/// The products' own threads in [`kdct_structured`]: all of them when the images are not spread
/// over threads (a single group) and the group is large, else none (and none in the browser).
fn product_threads(spread: bool, len: usize) -> Parallelism {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = rayon::current_num_threads();
        if !spread && threads > 1 && len >= 1 << 16 {
            return Parallelism::Rayon(threads);
        }
    }
    let _ = (spread, len);
    Parallelism::None
}

thread_local! {
    /// Per-thread working memory of [`kdct_structured`], kept between calls: a sampling loop
    /// asks for the same sizes at every step, so after the first it neither allocates nor
    /// clears (nor page-faults on) its buffers.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` on `len` floats of this thread's scratch (of unspecified contents), or of a fresh buffer
/// when the scratch is already in use further up this thread's stack.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
            f(&mut buffer[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

fn threads_available() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    {
        rayon::current_num_threads()
    }
    #[cfg(target_arch = "wasm32")]
    {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution by its definition, in f64.
    fn direct(x: &[f32], w: &[f32], b: &[f32], g: &ConvGeometry) -> Vec<f64> {
        let (ho, wo) = g.out_hw();
        let mut y = vec![0.0; g.batch * g.cout * ho * wo];
        for n in 0..g.batch {
            for o in 0..g.cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut acc = b[o] as f64;
                        for c in 0..g.cin {
                            for di in 0..g.k {
                                for dj in 0..g.k {
                                    let iy = (oy * g.stride + di) as isize - g.pad as isize;
                                    let ix = (ox * g.stride + dj) as isize - g.pad as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xv = x[((n * g.cin + c) * g.h + iy as usize) * g.w + ix as usize];
                                    acc += w[((o * g.cin + c) * g.k + di) * g.k + dj] as f64 * xv as f64;
                                }
                            }
                        }
                        y[((n * g.cout + o) * ho + oy) * wo + ox] = acc;
                    }
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn geometries() -> Vec<ConvGeometry> {
        let g = |batch, cin, h, w, cout, k, stride, pad| ConvGeometry { batch, cin, h, w, cout, k, stride, pad };
        vec![
            g(3, 2, 7, 5, 4, 3, 1, 1),
            g(2, 3, 8, 8, 5, 3, 2, 1),
            g(2, 3, 7, 9, 2, 3, 2, 1),
            g(1, 4, 6, 6, 3, 1, 1, 0),
            g(2, 2, 5, 5, 3, 3, 1, 0),
            g(4, 1, 6, 4, 2, 5, 1, 2),
        ]
    }

    /// Input, weights and bias of geometry `g`, from seeds `seed`, `seed + 1`, `seed + 2`.
    fn operands(g: &ConvGeometry, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x = values(g.batch * g.cin * g.h * g.w, seed);
        (x, values(g.cout * g.cin * g.k * g.k, seed + 1), values(g.cout, seed + 2))
    }

    #[test]
    fn conv_matches_the_definition() {
        for g in geometries() {
            let (x, w, b) = operands(&g, 1);
            let ours = conv2d(&x, &w, &b, &g);
            let truth = direct(&x, &w, &b, &g);
            assert_eq!(ours.len(), truth.len(), "{g:?}");
            for (a, t) in ours.iter().zip(&truth) {
                assert!((*a as f64 - t).abs() < 1e-5, "{g:?}: {a} vs {t}");
            }
        }
    }

    /// Each gradient is checked as the adjoint of the (linear) convolution: for a random `dy`,
    /// `<dy, conv(x + e_j)> - <dy, conv(x)>` is the `j`-th entry of the gradient, computed by
    /// the definition above.
    #[test]
    fn conv_gradients_match_finite_differences_of_the_definition() {
        for g in geometries() {
            let (x, w, b) = operands(&g, 4);
            let y0 = direct(&x, &w, &b, &g);
            let dy = values(y0.len(), 7);
            let loss = |y: &[f64]| y.iter().zip(&dy).map(|(a, &d)| a * d as f64).sum::<f64>();
            let l0 = loss(&y0);
            let grads = conv2d_backward(&x, &w, &dy, &g, [true, true, true]);
            // The convolution is affine in each argument, so a unit step gives the exact partial.
            let check = |ours: &[f32], n: usize, perturbed: &dyn Fn(usize) -> Vec<f64>| {
                assert_eq!(ours.len(), n, "{g:?}");
                for (j, &o) in ours.iter().enumerate() {
                    let truth = loss(&perturbed(j)) - l0;
                    assert!((o as f64 - truth).abs() < 1e-4, "{g:?} entry {j}: {o} vs {truth}");
                }
            };
            check(grads.x.as_ref().unwrap(), x.len(), &|j| {
                let mut x = x.clone();
                x[j] += 1.0;
                direct(&x, &w, &b, &g)
            });
            check(grads.weight.as_ref().unwrap(), w.len(), &|j| {
                let mut w = w.clone();
                w[j] += 1.0;
                direct(&x, &w, &b, &g)
            });
            check(grads.bias.as_ref().unwrap(), b.len(), &|j| {
                let mut b = b.clone();
                b[j] += 1.0;
                direct(&x, &w, &b, &g)
            });
        }
    }

    /// The K-DCT structured term against dense `d^2 x d^2` matrices: `T = A (x) B` (row-major
    /// vectorisation), `M_i` mixing channels, `Lam_i` diagonal; for `A`, `B` with no structure
    /// (the dense route), and for the DCT and other mirror-symmetric factors (the half-size
    /// route).
    fn check_kdct_structured(n: usize, c: usize, d: usize, a: &[f32], b: &[f32], seed: u64) {
        let (p, dd) = (d * d, d * d);
        let v = values(n * c * p, seed);
        let mix = values(n * c * c, seed + 1);
        let lam = values(n * p, seed + 2);
        // T[(i,j),(k,l)] = A[i,k] B[j,l].
        let t = |r: usize, q: usize| (a[(r / d) * d + q / d] * b[(r % d) * d + q % d]) as f64;
        // Every grouping of the images: one per group, two, all in one, and the default.
        let groupings = [1, 2, n, images_per_group(n, c * p, threads_available())];
        // The optional diagonal term g * w.
        let (g, w) = (values(n * c * p, seed + 3), values(n * c * p, seed + 4));
        let cases = [true, false].into_iter().flat_map(|an| groupings.map(move |pg| (an, pg)));
        for ((analyse, per_group), with_diagonal) in cases.flat_map(|case| [(case, false), (case, true)]) {
            let diagonal = with_diagonal.then_some([&g[..], &w[..]]);
            let ops = Operands { v: &v, mix: &mix, lam: &lam, a, b, sizes: [n, c, d], diagonal };
            let ours = kdct_structured_grouped(ops, analyse, per_group);
            for img in 0..n {
                for k in 0..c {
                    // u = sum_j M_kj v_j, then s = Lam (T u) or Lam u, then y = T^T s.
                    let u: Vec<f64> = (0..dd)
                        .map(|q| (0..c).map(|j| (mix[(img * c + k) * c + j] * v[(img * c + j) * p + q]) as f64).sum())
                        .collect();
                    let s: Vec<f64> = (0..dd)
                        .map(|r| {
                            let tu = if analyse { (0..dd).map(|q| t(r, q) * u[q]).sum() } else { u[r] };
                            lam[img * p + r] as f64 * tu
                        })
                        .collect();
                    for q in 0..dd {
                        let at = (img * c + k) * p + q;
                        let diag = if with_diagonal { (g[at] * w[at]) as f64 } else { 0.0 };
                        let truth: f64 = (0..dd).map(|r| t(r, q) * s[r]).sum::<f64>() + diag;
                        let got = ours[(img * c + k) * p + q] as f64;
                        assert!(
                            (got - truth).abs() < 1e-4 * (1.0 + truth.abs()),
                            "d {d}, analyse {analyse}, {per_group} per group, diagonal {with_diagonal}, image {img} channel {k} at {q}: {got} vs {truth}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn kdct_structured_matches_dense_kronecker_products() {
        let d = 5;
        check_kdct_structured(2, 3, d, &values(d * d, 14), &values(d * d, 15), 11);
        let d = 6;
        let (a, b) = (values(d * d, 24), values(d * d, 25));
        assert!(!Factor::is_mirrored(&a, d), "a random matrix has no mirror symmetry");
        check_kdct_structured(2, 3, d, &a, &b, 21);
    }

    /// A random `d x d` matrix with the DCT's mirror symmetry, `F[k, d-1-n] = (-1)^k F[k, n]`.
    fn mirrored(d: usize, seed: u64) -> Vec<f32> {
        let mut f = values(d * d, seed);
        for k in 0..d {
            for n in 0..d / 2 {
                let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
                f[k * d + d - 1 - n] = sign * f[k * d + n];
            }
        }
        f
    }

    #[test]
    fn image_groups_cover_the_batch_and_fill_every_thread() {
        for (n, per_image, threads) in
            [(16, 3 * 64 * 64, 2), (16, 3 * 16 * 16, 2), (16, 3 * 256 * 256, 2), (1, 48, 2), (5, 48, 1), (3, 48, 4)]
        {
            let g = images_per_group(n, per_image, threads);
            let groups = n.div_ceil(g);
            assert!(g >= 1 && groups * g >= n, "n {n}: {g} per group");
            assert!(groups >= threads.min(n), "n {n}, {threads} threads: only {groups} groups");
        }
        // 16 images of 3 x 64^2 take four groups of four (two per thread, each within the budget).
        assert_eq!(images_per_group(16, 3 * 64 * 64, 2), 4);
    }

    #[test]
    fn kdct_structured_on_mirror_symmetric_factors_matches_dense_products() {
        for d in [2, 6, 8] {
            let dct: Vec<f32> = covdiff_core::dct::dct_matrix(d).into_iter().map(|x| x as f32).collect();
            assert!(Factor::is_mirrored(&dct, d), "the DCT-II matrix is mirror-symmetric (d = {d})");
            check_kdct_structured(5, 3, d, &dct, &dct, 31);
            let (a, b) = (mirrored(d, 40), mirrored(d, 41));
            assert!(Factor::is_mirrored(&a, d));
            // One mirrored factor and one dense one, both ways round.
            check_kdct_structured(2, 2, d, &a, &values(d * d, 42), 51);
            check_kdct_structured(2, 1, d, &values(d * d, 43), &b, 61);
        }
    }

    #[test]
    fn exp_and_silu_match_libm() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.025).collect();
        // exp is exact only inside its clamp, [-87, 88]; silu is checked everywhere.
        for &x in xs.iter().filter(|x| x.abs() <= 87.0) {
            let (ours, truth) = (exp(x) as f64, (x as f64).exp());
            assert!(((ours - truth) / truth).abs() < 4e-7, "exp({x}): {ours} vs {truth}");
        }
        let y = silu(&xs);
        let g = values(xs.len(), 8);
        let dx = silu_backward(&xs, &g);
        for ((&x, &y), (&g, &dx)) in xs.iter().zip(&y).zip(g.iter().zip(&dx)) {
            let x = x as f64;
            let s = 1.0 / (1.0 + (-x).exp());
            assert!((y as f64 - x * s).abs() < 1e-6 * (1.0 + x.abs()), "silu({x})");
            let truth = g as f64 * s * (1.0 + x * (1.0 - s));
            assert!((dx as f64 - truth).abs() < 1e-6, "silu'({x})");
        }
        // Far tails: no overflow to NaN.
        let tails = silu(&[-1e4, 1e4]);
        assert!(tails[0] <= 0.0 && tails[0] > -1e-30 && tails[1] == 1e4, "{tails:?}");
    }
}
