//! The orthonormal DCT-II (docs/maths.md, "DCT"): the matrix `F`, and fast 2D
//! transforms of `d x d` planes with `rustdct`.

use rustdct::{DctPlanner, TransformType2And3};
use std::sync::Arc;

/// `F[k, m] = sqrt(2/d) c_k cos(pi (2m + 1) k / (2d))`, `c_0 = 1/sqrt(2)`, row-major `d x d`.
pub fn dct_matrix(d: usize) -> Vec<f64> {
    let mut f = vec![0.0; d * d];
    let scale = (2.0 / d as f64).sqrt();
    for k in 0..d {
        let ck = if k == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
        for m in 0..d {
            let arg = std::f64::consts::PI * (2 * m + 1) as f64 * k as f64 / (2 * d) as f64;
            f[k * d + m] = scale * ck * arg.cos();
        }
    }
    f
}

/// Fast orthonormal 2D DCT-II and its inverse on row-major `d x d` planes.
pub struct Dct2d {
    d: usize,
    plan: Arc<dyn TransformType2And3<f64>>,
}

impl Dct2d {
    pub fn new(d: usize) -> Self {
        let plan = DctPlanner::new().plan_dct2(d);
        Self { d, plan }
    }

    pub fn size(&self) -> usize {
        self.d
    }

    /// `DCT2(X) = F X F^T`, in place.
    pub fn forward(&self, plane: &mut [f64]) {
        self.apply(plane, true);
    }

    /// `IDCT2(Y) = F^T Y F`, in place.
    pub fn inverse(&self, plane: &mut [f64]) {
        self.apply(plane, false);
    }

    fn apply(&self, plane: &mut [f64], forward: bool) {
        let d = self.d;
        assert_eq!(plane.len(), d * d, "plane must be d x d");
        let mut scratch = vec![0.0; self.plan.get_scratch_len()];
        // Rows (the column index j), then columns through a transpose.
        for _ in 0..2 {
            for row in plane.chunks_exact_mut(d) {
                self.line(row, forward, &mut scratch);
            }
            transpose_square(plane, d);
        }
    }

    fn line(&self, v: &mut [f64], forward: bool, scratch: &mut [f64]) {
        let d = self.d;
        let s = (2.0 / d as f64).sqrt();
        if forward {
            // rustdct's DCT-II is unnormalised: sum_m x_m cos(...).
            self.plan.process_dct2_with_scratch(v, scratch);
            for x in v.iter_mut() {
                *x *= s;
            }
            v[0] *= std::f64::consts::FRAC_1_SQRT_2;
        } else {
            // rustdct's DCT-III is x_0/2 + sum_{k>0} x_k cos(...).
            v[0] *= std::f64::consts::SQRT_2;
            self.plan.process_dct3_with_scratch(v, scratch);
            for x in v.iter_mut() {
                *x *= s;
            }
        }
    }
}

fn transpose_square(a: &mut [f64], d: usize) {
    for i in 0..d {
        for j in (i + 1)..d {
            a.swap(i * d + j, j * d + i);
        }
    }
}

/// `Y = A X B^T` for row-major `d x d` matrices: the matrix form of a separable transform.
pub fn separable(a: &[f64], x: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut ax = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                ax[i * d + j] += aik * x[k * d + j];
            }
        }
    }
    let mut y = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            y[i * d + j] = (0..d).map(|k| ax[i * d + k] * b[j * d + k]).sum();
        }
    }
    y
}

/// Transpose of a row-major `d x d` matrix.
pub fn transposed(a: &[f64], d: usize) -> Vec<f64> {
    let mut t = a.to_vec();
    transpose_square(&mut t, d);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, RngExt, SeedableRng};

    #[test]
    fn dct_matrix_is_orthonormal() {
        for d in [1, 2, 5, 8, 16] {
            let f = dct_matrix(d);
            for i in 0..d {
                for j in 0..d {
                    let dot: f64 = (0..d).map(|k| f[i * d + k] * f[j * d + k]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-12, "d={d} ({i},{j})");
                }
            }
        }
    }

    #[test]
    fn fast_dct_matches_matrix_dct() {
        // Both are exact; the only difference is floating-point rounding.
        let mut rng = StdRng::seed_from_u64(3);
        for d in [2, 3, 4, 7, 8, 16, 32] {
            let f = dct_matrix(d);
            let x: Vec<f64> = (0..d * d).map(|_| rng.random_range(-1.0..1.0)).collect();
            let want = separable(&f, &x, &f, d);
            let dct = Dct2d::new(d);
            let mut y = x.clone();
            dct.forward(&mut y);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "d={d}");
            }
            let ft = transposed(&f, d);
            let back = separable(&ft, &want, &ft, d);
            dct.inverse(&mut y);
            for ((a, b), c) in y.iter().zip(&back).zip(&x) {
                assert!((a - b).abs() < 1e-12 && (a - c).abs() < 1e-12, "d={d}");
            }
        }
    }
}
