//! Sample-quality metrics between point clouds.
//!
//! The energy distance `D^2 = 2 E|X - Y| - E|X - X'| - E|Y - Y'|` (Szekely &
//! Rizzo) is zero iff the two laws are equal, needs no kernel bandwidth
//! (unlike MMD, whose verdict depends on one), and is a V-statistic we can
//! compute exactly in O(N M) for the few thousand points of a 2D toy set.
//! For images: the Frechet distance and k-NN precision and recall in a
//! classifier's feature space.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Energy distance `D^2` between point sets `x` and `y`, each flat with `dim` coordinates per point.
pub fn energy_distance(x: &[f64], y: &[f64], dim: usize) -> f64 {
    assert!(dim > 0 && x.len().is_multiple_of(dim) && y.len().is_multiple_of(dim), "flat points of {dim} coordinates");
    let mean_dist = |a: &[f64], b: &[f64]| {
        let (na, nb) = (a.len() / dim, b.len() / dim);
        let mut s = 0.0;
        for p in a.chunks_exact(dim) {
            for q in b.chunks_exact(dim) {
                s += p.iter().zip(q).map(|(u, v)| (u - v).powi(2)).sum::<f64>().sqrt();
            }
        }
        s / (na * nb).max(1) as f64
    };
    2.0 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)
}

/// Mean and covariance (divided by N - 1) of flat points.
pub fn moments(x: &[f64], dim: usize) -> (DVector<f64>, DMatrix<f64>) {
    let n = x.len() / dim;
    let m = DMatrix::from_row_slice(n, dim, x);
    let mean = DVector::from_fn(dim, |j, _| m.column(j).mean());
    let centred = DMatrix::from_fn(n, dim, |i, j| m[(i, j)] - mean[j]);
    (mean, centred.transpose() * &centred / (n.max(2) - 1) as f64)
}

/// Symmetric square root by eigendecomposition (negative eigenvalues from round-off clamped to 0).
fn sqrtm_psd(a: &DMatrix<f64>) -> DMatrix<f64> {
    let e = SymmetricEigen::new(a.clone());
    &e.eigenvectors * DMatrix::from_diagonal(&e.eigenvalues.map(|l| l.max(0.0).sqrt())) * e.eigenvectors.transpose()
}

/// Frechet distance between Gaussians: `|m1 - m2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`.
pub fn frechet_from_moments(m1: &DVector<f64>, s1: &DMatrix<f64>, m2: &DVector<f64>, s2: &DMatrix<f64>) -> f64 {
    let r1 = sqrtm_psd(s1);
    let cross = sqrtm_psd(&(&r1 * s2 * &r1));
    (m1 - m2).norm_squared() + s1.trace() + s2.trace() - 2.0 * cross.trace()
}

/// FD (the FID formula in any feature space) between two sets of flat feature vectors.
pub fn frechet_distance(x: &[f64], y: &[f64], dim: usize) -> f64 {
    let (m1, s1) = moments(x, dim);
    let (m2, s2) = moments(y, dim);
    frechet_from_moments(&m1, &s1, &m2, &s2)
}

/// Improved precision and recall (Kynkaenniemi et al., 2019): a point lies on a set's manifold
/// when it is within the k-th-nearest-neighbour radius of some point of that set. Precision is
/// the share of `fake` on the manifold of `real`; recall the share of `real` on that of `fake`.
pub fn precision_recall(real: &[f64], fake: &[f64], dim: usize, k: usize) -> (f64, f64) {
    let d2 = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| (u - v).powi(2)).sum::<f64>();
    let radii = |set: &[f64]| -> Vec<f64> {
        set.chunks_exact(dim)
            .map(|p| {
                let mut d: Vec<f64> = set.chunks_exact(dim).map(|q| d2(p, q)).collect();
                d.sort_by(f64::total_cmp);
                d[k.min(d.len() - 1)] // d[0] is the point itself
            })
            .collect()
    };
    let coverage = |manifold: &[f64], probes: &[f64]| {
        let r = radii(manifold);
        let hits = probes
            .chunks_exact(dim)
            .filter(|p| manifold.chunks_exact(dim).zip(&r).any(|(q, r)| d2(p, q) <= *r))
            .count();
        hits as f64 / (probes.len() / dim).max(1) as f64
    };
    (coverage(real, fake), coverage(fake, real))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, RngExt, SeedableRng};
    use rand_distr::{Distribution, Normal, StandardNormal};

    #[test]
    fn energy_distance_of_two_gaussians_matches_its_closed_form() {
        // In 1D, for N(0,1) against N(mu,1): D^2 = 2 E|Z + mu| - 2 E|Z'| with Z ~ N(0, 2),
        // E|N(m, s^2)| = s sqrt(2/pi) exp(-m^2/(2 s^2)) + m (1 - 2 Phi(-m/s)).
        let mut rng = StdRng::seed_from_u64(1);
        let n01 = Normal::new(0.0, 1.0).unwrap();
        let mu = 1.0;
        let x: Vec<f64> = (0..2000).map(|_| n01.sample(&mut rng)).collect();
        let y: Vec<f64> = (0..2000).map(|_| mu + n01.sample(&mut rng)).collect();
        let s = 2f64.sqrt();
        let phi = |z: f64| 0.5 * (1.0 + erf(z / 2f64.sqrt()));
        let abs_mean = |m: f64| {
            s * (2.0 / std::f64::consts::PI).sqrt() * (-m * m / (2.0 * s * s)).exp() + m * (1.0 - 2.0 * phi(-m / s))
        };
        let want = 2.0 * abs_mean(mu) - 2.0 * abs_mean(0.0);
        let got = energy_distance(&x, &y, 1);
        // V-statistic bias is O(1/N) and the MC error ~0.02 at N = 2000.
        assert!((got - want).abs() < 0.05, "{got} vs {want}");
        assert!(energy_distance(&x, &x, 1).abs() < 1e-12);
    }

    /// Abramowitz-Stegun 7.1.26, |error| < 1.5e-7.
    fn erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.3275911 * x.abs());
        let y = 1.0
            - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592)
                * t
                * (-x * x).exp();
        y.copysign(x)
    }

    #[test]
    fn frechet_distance_of_commuting_gaussians_is_closed_form() {
        // Diagonal covariances commute: FD = |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2.
        let m1 = DVector::from_vec(vec![0.0, 1.0, -1.0]);
        let m2 = DVector::from_vec(vec![0.5, 1.0, 0.0]);
        let (a, b) = ([1.0, 4.0, 0.25], [2.0, 1.0, 0.25]);
        let s1 = DMatrix::from_diagonal(&DVector::from_row_slice(&a));
        let s2 = DMatrix::from_diagonal(&DVector::from_row_slice(&b));
        let want = 0.25 + 1.0 + a.iter().zip(&b).map(|(x, y): (&f64, &f64)| (x.sqrt() - y.sqrt()).powi(2)).sum::<f64>();
        assert!((frechet_from_moments(&m1, &s1, &m2, &s2) - want).abs() < 1e-10);
        // Rotating both by the same orthogonal matrix changes nothing.
        let (c, s) = (0.6f64, 0.8f64);
        let q = DMatrix::from_row_slice(3, 3, &[c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]);
        let got =
            frechet_from_moments(&(&q * &m1), &(&q * &s1 * q.transpose()), &(&q * &m2), &(&q * &s2 * q.transpose()));
        assert!((got - want).abs() < 1e-10, "{got} vs {want}");
    }

    #[test]
    fn frechet_distance_of_samples_converges() {
        // 20k draws of N(0, I) against N(0.3 e1, I) in 2D: FD -> 0.09; sampling error ~ 2 dim / N.
        let mut rng = StdRng::seed_from_u64(4);
        let mut draw = |shift: f64| -> Vec<f64> {
            (0..40_000).map(|i| rng.sample::<f64, _>(StandardNormal) + if i % 2 == 0 { shift } else { 0.0 }).collect()
        };
        let (x, y) = (draw(0.0), draw(0.3));
        let fd = frechet_distance(&x, &y, 2);
        assert!((fd - 0.09).abs() < 0.01, "{fd}");
    }

    #[test]
    fn precision_and_recall_see_coverage() {
        let grid: Vec<f64> = (0..100).flat_map(|i| [(i % 10) as f64, (i / 10) as f64]).collect();
        assert_eq!(precision_recall(&grid, &grid, 2, 3), (1.0, 1.0));
        // Fakes collapsed on one corner: all precise, poor recall.
        let corner: Vec<f64> = (0..100).flat_map(|i| [(i % 2) as f64 * 0.5, (i / 50) as f64 * 0.5]).collect();
        let (p, r) = precision_recall(&grid, &corner, 2, 3);
        assert!(p == 1.0 && r < 0.2, "{p} {r}");
        // Fakes far away: neither.
        let far: Vec<f64> = grid.iter().map(|v| v + 100.0).collect();
        assert_eq!(precision_recall(&grid, &far, 2, 3), (0.0, 0.0));
    }
}
