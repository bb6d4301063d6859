//! Toy 2D data of the anisotropic-covariance thesis: swiss roll, S-curve,
//! two moons and circles, with class labels, and the four-shape mixes.
//! Every set is centred and scaled to unit standard deviation per axis.

use rand::{rngs::StdRng, RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;
use std::str::FromStr;

/// A named toy dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Toy {
    SwissRoll,
    SCurve,
    /// Two interleaved half circles; labels 0 (upper) and 1 (lower).
    Moons,
    /// Two concentric circles; labels 0 (outer) and 1 (inner).
    Circles,
    /// The four shapes side by side in separate regions, labelled by shape.
    Mix,
    /// The four shapes on top of each other, labelled by shape (thesis Sec. 5.5).
    MixOverlap,
}

impl Toy {
    pub const ALL: [Toy; 6] = [Toy::SwissRoll, Toy::SCurve, Toy::Moons, Toy::Circles, Toy::Mix, Toy::MixOverlap];

    pub fn name(self) -> &'static str {
        match self {
            Toy::SwissRoll => "swiss-roll",
            Toy::SCurve => "s-curve",
            Toy::Moons => "moons",
            Toy::Circles => "circles",
            Toy::Mix => "mix",
            Toy::MixOverlap => "mix-overlap",
        }
    }

    /// Number of classes (1 for unlabelled shapes).
    pub fn classes(self) -> usize {
        match self {
            Toy::SwissRoll | Toy::SCurve => 1,
            Toy::Moons | Toy::Circles => 2,
            Toy::Mix | Toy::MixOverlap => 4,
        }
    }
}

impl FromStr for Toy {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        crate::Error::by_name("toy dataset", s, &Toy::ALL, Toy::name)
    }
}

/// Points and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Points {
    pub xy: Vec<[f64; 2]>,
    pub labels: Vec<usize>,
    pub classes: usize,
}

/// `n` points of `toy` with Gaussian jitter `noise` (in the shape's own units), seeded.
pub fn sample(toy: Toy, n: usize, noise: f64, seed: u64) -> Points {
    let mut rng = StdRng::seed_from_u64(seed);
    let jitter = Normal::new(0.0, noise.max(0.0)).expect("finite noise");
    let mut xy = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let (p, label) = match toy {
            Toy::Mix | Toy::MixOverlap => {
                let shape = i % 4;
                let base = [Toy::SwissRoll, Toy::SCurve, Toy::Moons, Toy::Circles][shape];
                let (mut p, _) = shape_point(base, &mut rng);
                // Standardise each shape roughly, then place it.
                let s = shape_scale(base);
                p = [(p[0] - s.0[0]) / s.1, (p[1] - s.0[1]) / s.1];
                if toy == Toy::Mix {
                    let off = [[-2.5, 2.5], [2.5, 2.5], [-2.5, -2.5], [2.5, -2.5]][shape];
                    p = [p[0] + off[0], p[1] + off[1]];
                }
                (p, shape)
            }
            _ => shape_point(toy, &mut rng),
        };
        xy.push([p[0] + jitter.sample(&mut rng), p[1] + jitter.sample(&mut rng)]);
        labels.push(label);
    }
    standardise(&mut xy);
    Points { xy, labels, classes: toy.classes() }
}

fn shape_point(toy: Toy, rng: &mut StdRng) -> ([f64; 2], usize) {
    let u: f64 = rng.random();
    match toy {
        Toy::SwissRoll => {
            let t = 1.5 * PI * (1.0 + 2.0 * u);
            ([t * t.cos(), t * t.sin()], 0)
        }
        Toy::SCurve => {
            let t = 3.0 * PI * (u - 0.5);
            ([t.sin(), t.signum() * (t.cos() - 1.0)], 0)
        }
        Toy::Moons => {
            let th = PI * u;
            if rng.random::<bool>() {
                ([th.cos(), th.sin()], 0)
            } else {
                ([1.0 - th.cos(), 0.5 - th.sin()], 1)
            }
        }
        Toy::Circles => {
            let th = 2.0 * PI * u;
            if rng.random::<bool>() {
                ([th.cos(), th.sin()], 0)
            } else {
                ([0.5 * th.cos(), 0.5 * th.sin()], 1)
            }
        }
        Toy::Mix | Toy::MixOverlap => unreachable!("mixes are built from the four shapes"),
    }
}

/// Approximate centre and scale of each base shape, for placing it in a mix.
fn shape_scale(toy: Toy) -> ([f64; 2], f64) {
    match toy {
        Toy::SwissRoll => ([0.0, 0.0], 8.0),
        Toy::SCurve => ([0.0, 0.0], 1.0),
        Toy::Moons => ([0.5, 0.25], 0.8),
        _ => ([0.0, 0.0], 0.7),
    }
}

fn standardise(xy: &mut [[f64; 2]]) {
    let n = xy.len().max(1) as f64;
    for k in 0..2 {
        let mean = xy.iter().map(|p| p[k]).sum::<f64>() / n;
        let var = xy.iter().map(|p| (p[k] - mean).powi(2)).sum::<f64>() / n;
        let sd = var.sqrt().max(1e-12);
        for p in xy.iter_mut() {
            p[k] = (p[k] - mean) / sd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toys_are_seeded_standardised_and_labelled() {
        for toy in Toy::ALL {
            let a = sample(toy, 2000, 0.05, 7);
            assert_eq!(a, sample(toy, 2000, 0.05, 7), "{toy:?} is seeded");
            assert_ne!(a.xy, sample(toy, 2000, 0.05, 8).xy);
            for k in 0..2 {
                let m: f64 = a.xy.iter().map(|p| p[k]).sum::<f64>() / 2000.0;
                let v: f64 = a.xy.iter().map(|p| (p[k] - m).powi(2)).sum::<f64>() / 2000.0;
                assert!(m.abs() < 1e-9 && (v - 1.0).abs() < 1e-9);
            }
            let mut seen = vec![false; toy.classes()];
            a.labels.iter().for_each(|&l| seen[l] = true);
            assert!(seen.iter().all(|s| *s), "{toy:?} uses every class");
            assert_eq!(toy.name().parse::<Toy>().unwrap(), toy);
        }
        assert!("spiral".parse::<Toy>().is_err());
    }

    #[test]
    fn moons_classes_are_the_two_half_circles() {
        let p = sample(Toy::Moons, 4000, 0.0, 1);
        let mean_y = |c| {
            let ys: Vec<f64> = p.xy.iter().zip(&p.labels).filter(|(_, l)| **l == c).map(|(q, _)| q[1]).collect();
            ys.iter().sum::<f64>() / ys.len() as f64
        };
        assert!(mean_y(0) > 0.5 && mean_y(1) < -0.5);
    }

    #[test]
    fn separate_mix_keeps_classes_apart_and_overlap_does_not() {
        let centre = |p: &Points, c| {
            let pts: Vec<_> = p.xy.iter().zip(&p.labels).filter(|(_, l)| **l == c).map(|(q, _)| *q).collect();
            let n = pts.len() as f64;
            [pts.iter().map(|q| q[0]).sum::<f64>() / n, pts.iter().map(|q| q[1]).sum::<f64>() / n]
        };
        let sep = sample(Toy::Mix, 4000, 0.0, 3);
        let ovl = sample(Toy::MixOverlap, 4000, 0.0, 3);
        let dist = |p: &Points| {
            let (a, b) = (centre(p, 0), centre(p, 3));
            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
        };
        assert!(dist(&sep) > 1.5, "{}", dist(&sep));
        assert!(dist(&ovl) < 0.5, "{}", dist(&ovl));
    }
}
