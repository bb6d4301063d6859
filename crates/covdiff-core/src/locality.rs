//! Locality in analytic denoisers (the locality appendix, A.2 to A.4 and B.3): patch windows,
//! binary masks as pixel supports, sensitivity fields aligned by offset, and the metrics that
//! put an analytic denoiser beside a trained one (r^2, MSE, distance to the nearest training
//! image). Plain host arithmetic; the denoisers themselves live in `covdiff_model::analytic`.

use crate::Error;
use nalgebra::{DMatrix, SymmetricEigen};

/// The offsets `lo..=hi` of a `p`-wide window about its centre: `-(p-1)/2 ..= p/2`, so that odd
/// `p` is centred and even `p` has one more offset after the centre than before it.
pub fn window(p: usize) -> (i64, i64) {
    let lo = -(((p.max(1) - 1) / 2) as i64);
    (lo, lo + p.max(1) as i64 - 1)
}

/// The offsets `(dy, dx)` of a `p x p` patch (A.2's `M_q` extracts the pixels `q + offset`).
pub fn patch_offsets(p: usize) -> Vec<(i64, i64)> {
    let (lo, hi) = window(p);
    (lo..=hi).flat_map(|dy| (lo..=hi).map(move |dx| (dy, dx))).collect()
}

/// The binary masks `B^q` of Eq. 9 for every output pixel `q` of a `d x d` image, as a row-major
/// `d^2 x d^2` matrix: row `q` is 1 at the pixels `q + offset` that lie inside the image (zero
/// padding: pixels outside the image are dropped from the distance).
pub fn offset_masks(d: usize, offsets: &[(i64, i64)]) -> Vec<f32> {
    let q = d * d;
    let mut m = vec![0.0f32; q * q];
    for qy in 0..d {
        for qx in 0..d {
            let row = qy * d + qx;
            for &(dy, dx) in offsets {
                let (y, x) = (qy as i64 + dy, qx as i64 + dx);
                if (0..d as i64).contains(&y) && (0..d as i64).contains(&x) {
                    m[row * q + y as usize * d + x as usize] = 1.0;
                }
            }
        }
    }
    m
}

/// A value per diffusion time, looked up at the nearest tabulated time (patch sizes and masks are
/// measured on a sampler's trajectory and used at its times).
#[derive(Clone, Debug, PartialEq)]
pub struct TimeTable<T> {
    entries: Vec<(usize, T)>,
}

impl<T> TimeTable<T> {
    /// Entries `(t, value)`; an empty table is an error.
    pub fn new(mut entries: Vec<(usize, T)>) -> Result<Self, Error> {
        if entries.is_empty() {
            return Err(Error::invalid("time table", "needs at least one (t, value) entry"));
        }
        entries.sort_by_key(|e| e.0);
        Ok(Self { entries })
    }

    /// One value at every time.
    pub fn constant(value: T) -> Self {
        Self { entries: vec![(0, value)] }
    }

    /// The value at the tabulated time nearest to `t` (the later one on a tie).
    pub fn at(&self, t: usize) -> &T {
        let best = self.entries.iter().min_by_key(|(s, _)| (s.abs_diff(t), usize::MAX - s)).map(|(_, v)| v);
        best.unwrap_or(&self.entries[0].1)
    }

    pub fn entries(&self) -> &[(usize, T)] {
        &self.entries
    }
}

/// A sensitivity field (appendix B.3): rows of the Jacobian `d x0_hat_q / d x_t`, each made
/// non-negative (`|J|`, summed over channels), normalised per image to a maximum of 1, moved so
/// that the output pixel `q` sits at the centre of a `(2d - 1) x (2d - 1)` offset grid, and
/// averaged; then normalised to a maximum of 1 again.
#[derive(Clone, Debug, PartialEq)]
pub struct SensitivityField {
    /// The image size `d`; the field is `(2d - 1)^2`, row-major, offset `(0, 0)` at its centre.
    pub size: usize,
    pub values: Vec<f64>,
    /// How many Jacobian rows were averaged.
    pub rows: usize,
}

impl SensitivityField {
    /// From Jacobian rows `[rows, C, d, d]` (row-major) and each row's output pixel `q = y d + x`.
    pub fn from_rows(jacobian: &[f32], pixels: &[usize], channels: usize, d: usize) -> Result<Self, Error> {
        let dd = d * d;
        let n = channels * dd;
        if n == 0 || jacobian.len() != pixels.len() * n || pixels.iter().any(|&q| q >= dd) {
            return Err(Error::invalid(
                "sensitivity field",
                format!("{} Jacobian values for {} rows of {channels} x {d} x {d}", jacobian.len(), pixels.len()),
            ));
        }
        let w = 2 * d - 1;
        let mut acc = vec![0.0f64; w * w];
        for (row, &q) in jacobian.chunks(n).zip(pixels) {
            let mag: Vec<f64> =
                (0..dd).map(|p| (0..channels).map(|c| (row[c * dd + p] as f64).abs()).sum::<f64>()).collect();
            let max = mag.iter().cloned().fold(0.0, f64::max);
            if !(max > 0.0 && max.is_finite()) {
                continue;
            }
            let (qy, qx) = (q / d, q % d);
            for (p, m) in mag.iter().enumerate() {
                let (oy, ox) = (p / d + d - 1 - qy, p % d + d - 1 - qx);
                acc[oy * w + ox] += m / max;
            }
        }
        let max = acc.iter().cloned().fold(0.0, f64::max);
        if max > 0.0 {
            acc.iter_mut().for_each(|v| *v /= max);
        }
        Ok(Self { size: d, values: acc, rows: pixels.len() })
    }

    /// The offsets whose normalised sensitivity is at least `threshold` (Eq. 9's support `B^q`,
    /// the same for every `q`); the centre is always kept.
    pub fn support(&self, threshold: f64) -> Vec<(i64, i64)> {
        let w = 2 * self.size - 1;
        let c = self.size as i64 - 1;
        (0..w * w)
            .filter(|&k| self.values[k] >= threshold || k == (w * w) / 2)
            .map(|k| ((k / w) as i64 - c, (k % w) as i64 - c))
            .collect()
    }
}

/// The Wiener matrix `W_t = sqrt(abar) S (abar S + bbar I)^-1 = U diag(sqrt(abar) lam / (abar lam +
/// bbar)) U^T` from the eigen-decomposition of the data covariance `S` (the appendix's Algorithm 1,
/// line 2): `d x0_hat / d x_t` of the Wiener filter.
pub fn wiener_matrix(eig: &SymmetricEigen<f64, nalgebra::Dyn>, abar: f64) -> DMatrix<f64> {
    let gain = eig.eigenvalues.map(|l| {
        let l = l.max(0.0);
        abar.sqrt() * l / (abar * l + 1.0 - abar)
    });
    &eig.eigenvectors * DMatrix::from_diagonal(&gain) * eig.eigenvectors.transpose()
}

/// Binary masks from a sensitivity matrix `W` (`C d^2` square, Algorithm 1's line 3): row `q` of
/// the result (`d^2 x d^2`, row-major) is 1 at the pixels `p` where `sum_{c, c'} |W[(c, q), (c', p)]|`
/// is at least `threshold` times that row's maximum.
pub fn binarise_rows(w: &DMatrix<f64>, channels: usize, d: usize, threshold: f64) -> Vec<f32> {
    let q = d * d;
    let mut m = vec![0.0f32; q * q];
    for row in 0..q {
        let mag: Vec<f64> = (0..q)
            .map(|p| {
                (0..channels)
                    .flat_map(|a| (0..channels).map(move |b| (a, b)))
                    .map(|(a, b)| w[(a * q + row, b * q + p)].abs())
                    .sum()
            })
            .collect();
        let max = mag.iter().cloned().fold(0.0, f64::max);
        for (p, v) in mag.iter().enumerate() {
            if (max > 0.0 && *v >= threshold * max) || p == row {
                m[row * q + p] = 1.0;
            }
        }
    }
    m
}

/// `r^2 = 1 - sum (y - r)^2 / sum (r - mean r)^2` of a prediction `y` against a reference `r`
/// (the appendix's Table 1: the analytic `x0_hat` against the trained net's), and their MSE.
pub fn r2_mse(prediction: &[f32], reference: &[f32]) -> (f64, f64) {
    let n = reference.len().max(1) as f64;
    let mean = reference.iter().map(|&r| r as f64).sum::<f64>() / n;
    let (mut sse, mut sst) = (0.0, 0.0);
    for (&y, &r) in prediction.iter().zip(reference) {
        sse += (y as f64 - r as f64).powi(2);
        sst += (r as f64 - mean).powi(2);
    }
    let r2 = if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN };
    (r2, sse / n)
}

/// For each of `samples` (rows of `dim`), the index of its nearest row of `set` in L2 and the
/// distance as a root mean square per pixel, `||x - x_nn|| / sqrt(dim)` (appendix Table 3).
pub fn nearest_neighbours(samples: &[f32], set: &[f32], dim: usize) -> Vec<(usize, f64)> {
    samples
        .chunks(dim)
        .map(|x| {
            let mut best = (0, f64::INFINITY);
            for (i, y) in set.chunks(dim).enumerate() {
                let d2: f64 = x.iter().zip(y).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
                if d2 < best.1 {
                    best = (i, d2);
                }
            }
            (best.0, (best.1 / dim as f64).sqrt())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_centred_and_patch_masks_count_their_pixels() {
        assert_eq!(window(1), (0, 0));
        assert_eq!(window(3), (-1, 1));
        assert_eq!(window(4), (-1, 2));
        // A 3x3 patch on a 4x4 image: corners keep 4 pixels, edges 6, the inside 9.
        let m = offset_masks(4, &patch_offsets(3));
        let count = |q: usize| m[q * 16..(q + 1) * 16].iter().sum::<f32>();
        assert_eq!((count(0), count(1), count(5)), (4.0, 6.0, 9.0));
        // Row 5 = (1, 1) covers rows 0..=2 and columns 0..=2.
        let want: Vec<usize> = vec![0, 1, 2, 4, 5, 6, 8, 9, 10];
        let got: Vec<usize> = (0..16).filter(|&j| m[5 * 16 + j] == 1.0).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_field_of_one_pixel_rows_is_a_delta_and_shifted_rows_align() {
        // Two rows, each sensitive to its own pixel and its right neighbour at half weight.
        let d = 3;
        let mut j = vec![0.0f32; 2 * 9];
        j[4] = 2.0; // row 0, q = 4 (centre)
        j[5] = -1.0;
        j[9] = 1.0; // row 1, q = 0
        j[9 + 1] = 0.5;
        let f = SensitivityField::from_rows(&j, &[4, 0], 1, d).unwrap();
        let w = 5;
        assert_eq!(f.values[2 * w + 2], 1.0);
        assert_eq!(f.values[2 * w + 3], 0.5);
        assert_eq!(f.values.iter().filter(|&&v| v > 0.0).count(), 2);
        assert_eq!(f.support(0.6), vec![(0, 0)]);
        assert_eq!(f.support(0.5), vec![(0, 0), (0, 1)]);
        assert!(SensitivityField::from_rows(&j, &[4], 1, d).is_err());
    }

    #[test]
    fn the_wiener_matrix_is_the_dense_formula_and_rows_binarise_against_their_maximum() {
        let a = DMatrix::from_fn(4, 4, |i, j| ((i * 5 + j * 3) % 7) as f64 / 7.0 - 0.4);
        let s = &a * a.transpose() + DMatrix::identity(4, 4) * 0.1;
        let abar: f64 = 0.3;
        let dense = (s.clone() * abar + DMatrix::identity(4, 4) * (1.0 - abar)).try_inverse().unwrap();
        let want = &s * dense * abar.sqrt();
        let got = wiener_matrix(&s.clone().symmetric_eigen(), abar);
        assert!((&got - &want).amax() < 1e-12);
        // d = 2, one channel: row 0 = [4, -2, 1, 0.1] keeps |v| >= 0.25 * 4.
        let w = DMatrix::from_row_slice(
            4,
            4,
            &[4.0, -2.0, 1.0, 0.1, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 5.0, 0.0],
        );
        let m = binarise_rows(&w, 1, 2, 0.25);
        assert_eq!(&m[0..4], &[1.0, 1.0, 1.0, 0.0]);
        assert_eq!(&m[4..8], &[0.0, 1.0, 0.0, 0.0], "an all-zero row keeps its own pixel");
        assert_eq!(&m[8..12], &[1.0; 4]);
        assert_eq!(&m[12..16], &[0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn time_tables_pick_the_nearest_time() {
        let t = TimeTable::new(vec![(900, 'a'), (100, 'c'), (500, 'b')]).unwrap();
        assert_eq!((*t.at(1000), *t.at(701), *t.at(699), *t.at(300), *t.at(1)), ('a', 'a', 'b', 'b', 'c'));
        assert!(TimeTable::<u8>::new(vec![]).is_err());
    }

    #[test]
    fn r2_and_nearest_neighbours_against_hand_values() {
        let (r2, mse) = r2_mse(&[1.0, 2.0, 4.0], &[1.0, 2.0, 3.0]);
        assert!((r2 - 0.5).abs() < 1e-12 && (mse - 1.0 / 3.0).abs() < 1e-12);
        let nn = nearest_neighbours(&[0.0, 0.0, 3.0, 4.0], &[1.0, 1.0, 3.0, 3.0, 0.0, 0.5], 2);
        assert_eq!(nn[0].0, 2);
        assert!((nn[0].1 - (0.125f64).sqrt()).abs() < 1e-12);
        assert_eq!(nn[1].0, 1);
        assert!((nn[1].1 - 0.5f64.sqrt()).abs() < 1e-12);
    }
}
