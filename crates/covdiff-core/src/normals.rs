//! covdiff's own standard normal numbers: a counter-based stream that gives the same numbers
//! for the same seed on every machine, backend and thread count, natively and in wasm32.
//!
//! - **Bits.** Pair `p` of a stream with key `k` takes the 64 bits `mix(k + (p + 1) gamma)`:
//!   SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
//!   OOPSLA 2014) read at position `p`, so any range of the stream can be computed on its own.
//! - **Normals.** The Box–Muller transform: `r = sqrt(-2 ln u1)`, `theta = 2 pi u2`, and the pair
//!   `(r cos theta, r sin theta)` of independent standard normals. `u1` in `(0, 1]` takes 31 bits
//!   (so `|z| <= sqrt(64 ln 2) = 6.66`), `u2` in `[0, 1)` takes 24.
//! - **Layout.** Numbers come in blocks of [`BLOCK`]: pair `i` of a block gives number `i`
//!   (`r cos theta`) and number `i + BLOCK / 2` (`r sin theta`). A draw of `n` numbers takes
//!   `ceil(n / BLOCK)` whole blocks, so blocks can be filled in parallel.
//! - **Speed.** `ln`, `cos` and `sin` are polynomials in `f32` (below, with their error bounds), with
//!   no branches, so the compiler vectorises the loop: libm's scalar calls, or rand's Ziggurat,
//!   cost several times more per number (#8).

/// Numbers per block of the stream.
pub const BLOCK: usize = 4096;
const PAIRS: usize = BLOCK / 2;

/// SplitMix64's increment, the odd integer nearest `2^64 / phi`.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// A seeded stream of standard normal numbers. Copying it copies its position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormalStream {
    key: u64,
    next_block: u64,
}

impl NormalStream {
    /// The stream of `seed`. The key is the seed mixed once, so that nearby seeds start far apart
    /// in SplitMix64's sequence.
    pub const fn new(seed: u64) -> Self {
        Self { key: mix(seed ^ 0x6A09_E667_F3BC_C908), next_block: 0 }
    }

    /// Reserves the blocks that `n` numbers take and returns the first one; fill them with
    /// [`NormalStream::fill_block`] (in any order, on any thread).
    pub fn reserve(&mut self, n: usize) -> u64 {
        let first = self.next_block;
        self.next_block += n.div_ceil(BLOCK) as u64;
        first
    }

    /// The next `out.len()` numbers of the stream, on this thread.
    pub fn fill(&mut self, out: &mut [f32]) {
        let first = self.reserve(out.len());
        for (i, chunk) in out.chunks_mut(BLOCK).enumerate() {
            self.fill_block(first + i as u64, chunk);
        }
    }

    /// The first `out.len()` (at most [`BLOCK`]) numbers of block `block`.
    ///
    /// On x86-64 CPUs with AVX2 the same code is compiled for 8 lanes instead of SSE2's 4 (and
    /// never with FMA), so the numbers are bit for bit the same on every machine.
    pub fn fill_block(&self, block: u64, out: &mut [f32]) {
        assert!(out.len() <= BLOCK, "a block holds {BLOCK} numbers, not {}", out.len());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { self.fill_block_avx2(block, out) };
        }
        self.fill_block_portable(block, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn fill_block_avx2(&self, block: u64, out: &mut [f32]) {
        self.fill_block_portable(block, out)
    }

    /// [`NormalStream::fill_block`] in portable code, inlined into each target's copy.
    #[inline(always)]
    fn fill_block_portable(&self, block: u64, out: &mut [f32]) {
        let base = block.wrapping_mul(PAIRS as u64);
        let half = out.len().min(PAIRS);
        // Two passes, integer then float, so that each loop vectorises on its own.
        let (mut u1, mut u2) = ([0.0f32; PAIRS], [0i32; PAIRS]);
        for (p, (u1, u2)) in u1[..half].iter_mut().zip(&mut u2[..half]).enumerate() {
            (*u1, *u2) = self.uniforms(base + p as u64);
        }
        let (cos, sin) = out.split_at_mut(half);
        let both = sin.len();
        let (paired, single) = cos.split_at_mut(both);
        for (((c, s), &u1), &u2) in paired.iter_mut().zip(sin.iter_mut()).zip(&u1).zip(&u2) {
            (*c, *s) = box_muller(u1, u2);
        }
        for ((c, &u1), &u2) in single.iter_mut().zip(&u1[both..]).zip(&u2[both..]) {
            *c = box_muller(u1, u2).0;
        }
    }

    /// The uniforms of pair `p`: `u1` in `(0, 1]` from the top 31 bits (`(v + 1/2) 2^-31`, never
    /// 0), and `u2 = v2 2^-24` in `[0, 1)` from the low 24, as the integer `v2`.
    #[inline(always)]
    fn uniforms(&self, p: u64) -> (f32, i32) {
        let bits = mix(self.key.wrapping_add(p.wrapping_add(1).wrapping_mul(GAMMA)));
        let u1 = ((bits >> 33) as i32 as f32) * (1.0 / 2_147_483_648.0) + 1.0 / 4_294_967_296.0;
        (u1, (bits & 0xFF_FFFF) as i32)
    }
}

/// The Box–Muller pair `(r cos theta, r sin theta)`, `r = sqrt(-2 ln u1)`, `theta = 2 pi v2 2^-24`.
#[inline(always)]
fn box_muller(u1: f32, v2: i32) -> (f32, f32) {
    // u1 may round up to 1, where ln is 0 up to rounding: clamp so the root is real.
    let r = (-2.0 * ln(u1)).max(0.0).sqrt();
    let (c, s) = cos_sin_turns(v2);
    (r * c, r * s)
}

/// SplitMix64's output function (Stafford's "Mix13").
#[inline(always)]
const fn mix(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `ln x` for normal positive `x`: `x = m 2^e` with `m` in `[sqrt(1/2), sqrt(2))`, and
/// `ln m = 2 atanh(s) = 2 (s + s^3/3 + ... + s^9/9)` with `s = (m - 1) / (m + 1)`, `|s| <= 0.172`:
/// the first omitted term is below `1e-9`, so the error is `f32` rounding (about `1e-7` relative).
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xFF) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    let big = m > std::f32::consts::SQRT_2;
    m = if big { 0.5 * m } else { m };
    e += big as i32;
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let poly = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0))));
    e as f32 * std::f32::consts::LN_2 + 2.0 * s * poly
}

/// `(cos 2 pi u, sin 2 pi u)` for `u = v 2^-24`, `v` in `[0, 2^24)`: `u = q/4 + r` with
/// `|r| <= 1/8` (in integers, so no float-to-int conversion, which does not vectorise), Taylor
/// polynomials of `a = 2 pi r` in `[-pi/4, pi/4]` (the first omitted terms are below `2e-9`), then
/// a quarter turn `q` times.
#[inline(always)]
pub fn cos_sin_turns(v: i32) -> (f32, f32) {
    let q = (v + (1 << 21)) >> 22;
    let a = (v - (q << 22)) as f32 * (std::f32::consts::TAU / 16_777_216.0);
    let a2 = a * a;
    let sin = a * (1.0 - a2 / 6.0 * (1.0 - a2 / 20.0 * (1.0 - a2 / 42.0 * (1.0 - a2 / 72.0))));
    let cos = 1.0 - a2 / 2.0 * (1.0 - a2 / 12.0 * (1.0 - a2 / 30.0 * (1.0 - a2 / 56.0 * (1.0 - a2 / 90.0))));
    // Rotate by q quarter turns: (cos, sin) -> (-sin, cos) for an odd q, then negate both for
    // q = 2, 3.
    let (c, s) = if q & 1 == 1 { (-sin, cos) } else { (cos, sin) };
    if q & 2 == 2 {
        (-c, -s)
    } else {
        (c, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ln` and `cos_sin_turns` against the standard library's `f64` functions, over their
    /// whole input ranges (the tails of `u1` included).
    #[test]
    fn polynomials_match_libm() {
        let mut worst_ln = 0.0f64;
        for k in 0..200_000 {
            // x from 2^-33 to 1, log-spaced, so every exponent and mantissa range is visited.
            let x = 2f64.powf(-33.0 * k as f64 / 200_000.0) as f32;
            let want = (x as f64).ln();
            worst_ln = worst_ln.max((ln(x) as f64 - want).abs() / want.abs().max(1e-6));
        }
        assert!(worst_ln < 4e-7, "ln: worst relative error {worst_ln}");
        let mut worst_trig = 0.0f64;
        for k in 0..(1 << 20) {
            let v = k * 16 + k % 16;
            let (c, s) = cos_sin_turns(v);
            let a = std::f64::consts::TAU * v as f64 / 2f64.powi(24);
            worst_trig = worst_trig.max((c as f64 - a.cos()).abs()).max((s as f64 - a.sin()).abs());
        }
        assert!(worst_trig < 4e-7, "cos/sin: worst error {worst_trig}");
    }

    /// Each number against the same Box–Muller pair computed independently in `f64`: the bits
    /// of SplitMix64 (its published first output for seed 0 checks `mix` and `GAMMA`), the
    /// block layout, and the transform.
    #[test]
    fn numbers_are_box_muller_of_splitmix64() {
        // SplitMix64 seeded with 0: its first output is 0xE220A8397B1DCDAF.
        assert_eq!(mix(GAMMA), 0xE220_A839_7B1D_CDAF);
        let mut stream = NormalStream::new(42);
        let key = stream.key;
        let mut z = vec![0.0f32; 2 * BLOCK + 7];
        stream.fill(&mut z);
        let mut worst = 0.0f64;
        for (k, &v) in z.iter().enumerate() {
            let (block, i) = (k / BLOCK, k % BLOCK);
            let p = (block * PAIRS + i % PAIRS) as u64;
            let mut state = key;
            for _ in 0..=p {
                state = state.wrapping_add(GAMMA);
            }
            let bits = mix(state);
            let u1 = ((bits >> 33) as f64 + 0.5) / 2f64.powi(31);
            let u2 = (bits & 0xFF_FFFF) as f64 / 2f64.powi(24);
            let r = (-2.0 * u1.ln()).sqrt();
            let theta = std::f64::consts::TAU * u2;
            let want = if i < PAIRS { r * theta.cos() } else { r * theta.sin() };
            worst = worst.max((v as f64 - want).abs());
        }
        assert!(worst < 3e-6, "worst difference from f64 Box–Muller: {worst}");
        // Three blocks were taken, so the next draw starts a fourth.
        assert_eq!(stream.reserve(1), 3);
    }

    /// The numbers are standard normal: the Kolmogorov–Smirnov distance to `Phi` over 10^6
    /// numbers is below its 0.1% critical value `1.95 / sqrt(n)`; mean, variance and kurtosis are
    /// within 4 standard errors; the tail beyond 4 holds its expected 6.3e-5 within 4 standard
    /// errors; neighbouring numbers (cos against sin of one pair, one pair against the next) do
    /// not correlate.
    #[test]
    fn numbers_are_standard_normal() {
        let n = 1_000_000;
        let mut z = vec![0.0f32; n];
        NormalStream::new(7).fill(&mut z);
        let nf = n as f64;
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / nf;
        let var = z.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / nf;
        let kurt = z.iter().map(|&v| (v as f64 - mean).powi(4)).sum::<f64>() / nf / (var * var);
        assert!(mean.abs() < 4.0 / nf.sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 4.0 * (2.0 / nf).sqrt(), "variance {var}");
        assert!((kurt - 3.0).abs() < 4.0 * (24.0 / nf).sqrt(), "kurtosis {kurt}");
        let p4 = 6.334e-5;
        let tail = z.iter().filter(|v| v.abs() > 4.0).count() as f64 / nf;
        assert!((tail - p4).abs() < 4.0 * (p4 / nf).sqrt(), "P(|z| > 4) = {tail}");
        let mut sorted = z.clone();
        sorted.sort_by(f32::total_cmp);
        let ks = sorted
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let phi = crate::likelihood::normal_cdf(v as f64);
                (phi - i as f64 / nf).abs().max(((i + 1) as f64 / nf - phi).abs())
            })
            .fold(0.0, f64::max);
        assert!(ks < 1.95 / nf.sqrt(), "Kolmogorov–Smirnov distance {ks}");
        let corr = |lag_pairs: &dyn Fn(usize) -> (usize, usize)| {
            let m = 100_000;
            (0..m)
                .map(|j| {
                    let (a, b) = lag_pairs(j);
                    z[a] as f64 * z[b] as f64
                })
                .sum::<f64>()
                / m as f64
        };
        let cos_sin = corr(&|j| ((j / PAIRS) * BLOCK + j % PAIRS, (j / PAIRS) * BLOCK + j % PAIRS + PAIRS));
        let next =
            corr(&|j| ((j / (PAIRS - 1)) * BLOCK + j % (PAIRS - 1), (j / (PAIRS - 1)) * BLOCK + j % (PAIRS - 1) + 1));
        for (name, c) in [("cos with sin", cos_sin), ("pair with the next", next)] {
            assert!(c.abs() < 4.0 / (1e5f64).sqrt(), "{name}: correlation {c}");
        }
    }

    /// The dispatched fill (AVX2 where the CPU has it) gives the portable code's numbers, bit
    /// for bit: the browser (wasm32) and every machine draw the same numbers for a seed.
    #[test]
    fn every_instruction_set_gives_the_same_numbers() {
        let s = NormalStream::new(11);
        let (mut a, mut b) = (vec![0.0f32; BLOCK - 3], vec![0.0f32; BLOCK - 3]);
        s.fill_block(5, &mut a);
        s.fill_block_portable(5, &mut b);
        assert_eq!(a, b);
    }

    /// Filling blocks one at a time, in any order, gives what one `fill` gives; seeds differ.
    #[test]
    fn blocks_can_be_filled_in_any_order() {
        let n = 3 * BLOCK + 100;
        let mut a = vec![0.0f32; n];
        let mut s = NormalStream::new(3);
        s.fill(&mut a);
        let mut b = vec![0.0f32; n];
        let mut t = NormalStream::new(3);
        let first = t.reserve(n);
        let mut chunks: Vec<_> = b.chunks_mut(BLOCK).enumerate().collect();
        chunks.reverse();
        for (i, c) in chunks {
            t.fill_block(first + i as u64, c);
        }
        assert_eq!(a, b);
        assert_eq!(s, t);
        let mut c = vec![0.0f32; n];
        NormalStream::new(4).fill(&mut c);
        assert!(a.iter().zip(&c).filter(|(x, y)| x == y).count() < 5, "seeds 3 and 4 give the same numbers");
    }
}
