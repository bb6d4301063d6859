// Gaussian free field noise on the GPU (docs/maths.md, "Non-isotropic noise"; the CPU reference is
// covdiff-core's gff.rs): g = Re(IDFT2(sqrt(lam) * DFT2(z))) with z ~ N(0, I) real,
// lam_k = N w_k^2 / sum_j w_j^2, w_k = |k|^(-gamma) on the signed frequencies, w_0 = 1.
// The page runs the entry points in order: noise, normalise, dft (rows, then columns, sign -1),
// shape_spectrum, dft (rows, columns, sign +1), finish. The DFT is direct, O(d) a value (d <= 256).

struct Params {
  d: u32,
  seed: u32,
  gamma: f32,
  sign: f32,   // -1 forward, +1 inverse
  axis: u32,   // 1: along a row (x), 0: along a column (y)
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
};

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> scale: array<f32>;

const TAU: f32 = 6.283185307179586;

// PCG hash (O'Neill): one well-mixed 32-bit value per input.
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// z_p ~ N(0, 1) by Box-Muller from two hashed uniforms.
@compute @workgroup_size(64)
fn noise(@builtin(global_invocation_id) id: vec3<u32>) {
  let n = P.d * P.d;
  let p = id.x;
  if (p >= n) { return; }
  let h1 = pcg(p ^ pcg(P.seed));
  let h2 = pcg(h1 ^ 0x9e3779b9u);
  let u1 = (f32(h1 >> 8u) + 0.5) / 16777216.0;
  let u2 = f32(h2 >> 8u) / 16777216.0;
  dst[p] = vec2<f32>(sqrt(-2.0 * log(u1)) * cos(TAU * u2), 0.0);
}

fn signed_k(k: u32) -> f32 {
  if (k <= P.d / 2u) { return f32(k); }
  return f32(k) - f32(P.d);
}

// w_k = |k|^(-gamma), and 1 at k = 0 (the k = 0 rule of gff.rs).
fn weight(p: u32) -> f32 {
  let ky = signed_k(p / P.d);
  let kx = signed_k(p % P.d);
  let r = sqrt(ky * ky + kx * kx);
  if (r == 0.0) { return 1.0; }
  return pow(r, -P.gamma);
}

// scale[0] = sqrt(N / sum_k w_k^2), so that sqrt(lam_k) = w_k scale[0] (unit pixel variance).
@compute @workgroup_size(1)
fn normalise() {
  let n = P.d * P.d;
  var s = 0.0;
  for (var p = 0u; p < n; p++) {
    let w = weight(p);
    s += w * w;
  }
  scale[0] = sqrt(f32(n) / s);
}

// One direct DFT along `axis`: dst[.., k] = sum_j src[.., j] exp(sign 2 pi i k j / d).
@compute @workgroup_size(64)
fn dft(@builtin(global_invocation_id) id: vec3<u32>) {
  let d = P.d;
  let q = id.x;
  if (q >= d * d) { return; }
  var k: u32;
  var base: u32;
  var stride: u32;
  if (P.axis == 1u) { k = q % d; base = q - k; stride = 1u; } else { k = q / d; base = q % d; stride = d; }
  var acc = vec2<f32>(0.0, 0.0);
  for (var j = 0u; j < d; j++) {
    let a = P.sign * TAU * f32((k * j) % d) / f32(d);
    let c = cos(a);
    let s = sin(a);
    let v = src[base + j * stride];
    acc += vec2<f32>(v.x * c - v.y * s, v.x * s + v.y * c);
  }
  dst[q] = acc;
}

// Multiply the spectrum by sqrt(lam_k).
@compute @workgroup_size(64)
fn shape_spectrum(@builtin(global_invocation_id) id: vec3<u32>) {
  let p = id.x;
  if (p >= P.d * P.d) { return; }
  dst[p] = src[p] * (weight(p) * scale[0]);
}

// The inverse DFT's 1/N; the real part is the field.
@compute @workgroup_size(64)
fn finish(@builtin(global_invocation_id) id: vec3<u32>) {
  let p = id.x;
  let n = P.d * P.d;
  if (p >= n) { return; }
  dst[p] = vec2<f32>(src[p].x / f32(n), 0.0);
}
