//! K-step trajectories `t_K > ... > t_1` through a T-step schedule
//! (docs/maths.md, "Schedules").

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How the K sampling times are spread over 1..=T.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    /// `t_k = round(1 + (k - 1)(T - 1)/(K - 1))`.
    #[default]
    Even,
    /// `t_k = round(1 + ((k - 1)/(K - 1))^2 (T - 1))`: denser near the data.
    Quadratic,
}

impl FromStr for Spacing {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        match s {
            "even" => Ok(Self::Even),
            "quadratic" => Ok(Self::Quadratic),
            other => Err(crate::Error::unknown("spacing", other, "even or quadratic")),
        }
    }
}

impl fmt::Display for Spacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Even => "even",
            Self::Quadratic => "quadratic",
        })
    }
}

/// A decreasing list of times `t_K > ... > t_1 >= 1`, with `t_K = T`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trajectory {
    times: Vec<usize>,
}

impl Trajectory {
    /// K times out of a T-step schedule; needs `1 <= K <= T`.
    pub fn new(total: usize, k: usize, spacing: Spacing) -> Result<Self, crate::Error> {
        if k == 0 || k > total {
            return Err(crate::Error::invalid("trajectory", format!("need 1 <= K <= T, got K = {k}, T = {total}")));
        }
        let mut asc = Vec::with_capacity(k);
        for i in 0..k {
            let u = if k == 1 { 1.0 } else { i as f64 / (k - 1) as f64 };
            let w = match spacing {
                Spacing::Even => u,
                Spacing::Quadratic => u * u,
            };
            let mut t = (1.0 + w * (total - 1) as f64).round() as usize;
            if let Some(&prev) = asc.last() {
                t = t.max(prev + 1);
            }
            asc.push(t);
        }
        // Pushing duplicates apart can only overshoot where K is close to T; pull back.
        for i in (0..k).rev() {
            let cap = total - (k - 1 - i);
            asc[i] = asc[i].min(cap);
        }
        asc.reverse();
        Ok(Self { times: asc })
    }

    /// The times, decreasing.
    pub fn times(&self) -> &[usize] {
        &self.times
    }

    /// The K steps `(t, s)` in sampling order, the last one ending at `s = 0` (clean data).
    pub fn steps(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::with_capacity(self.times.len());
        for (i, &t) in self.times.iter().enumerate() {
            out.push((t, self.times.get(i + 1).copied().unwrap_or(0)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_trajectory_spans_one_to_t() {
        let tr = Trajectory::new(1000, 10, Spacing::Even).unwrap();
        assert_eq!(tr.times(), &[1000, 889, 778, 667, 556, 445, 334, 223, 112, 1]);
        assert_eq!(tr.steps().last(), Some(&(1, 0)));
        assert_eq!(Trajectory::new(1000, 1, Spacing::Even).unwrap().times(), &[1000]);
    }

    #[test]
    fn trajectories_are_strictly_decreasing_for_every_k() {
        for spacing in [Spacing::Even, Spacing::Quadratic] {
            for k in [1, 2, 5, 50, 300, 999, 1000] {
                let tr = Trajectory::new(1000, k, spacing).unwrap();
                let t = tr.times();
                assert_eq!(t.len(), k);
                assert_eq!(t[0], 1000);
                assert!(t.windows(2).all(|w| w[0] > w[1]), "{spacing} K={k}");
                assert!(*t.last().unwrap() >= 1);
            }
        }
        assert!(Trajectory::new(10, 11, Spacing::Even).is_err());
        assert!(Trajectory::new(10, 0, Spacing::Even).is_err());
    }

    #[test]
    fn quadratic_is_denser_near_the_data() {
        let tr = Trajectory::new(1000, 10, Spacing::Quadratic).unwrap();
        let t = tr.times();
        assert!(t[8] - t[9] < t[0] - t[1]);
    }
}
