//! One name per analytic denoiser, and one way to build any of them behind the shared
//! [`Denoiser`] contract (as locality-in-diffusion-models' registry does):
//! `optimal`, `wiener`, `wiener-dct`, `patch[:p]`, `els[:p]`, `mask:<threshold>` and
//! `wmask:<threshold>`.

use super::{
    AnalyticError, EquivariantPatchDenoiser, MaskedDenoiser, OptimalDenoiser, Support, TrainingSet, WienerBasis,
    WienerDenoiser,
};
use crate::diffusion::Denoiser;
use burn::tensor::backend::Backend;
use covdiff_core::locality::{binarise_rows, wiener_matrix, SensitivityField, TimeTable};
use covdiff_core::schedule::ScheduleTable;
use nalgebra::DMatrix;
use std::fmt;
use std::str::FromStr;

/// Kamb & Ganguli's patch sizes fitted to a Fashion-MNIST UNet over a 10-step trajectory
/// (the locality appendix, C.4), from the first (noisiest) step to the last.
pub const FASHION_MNIST_PATCH_SIZES: [usize; 10] = [28, 28, 25, 23, 17, 17, 13, 13, 9, 9];

/// The patch size over a sampling trajectory.
#[derive(Clone, Debug, PartialEq)]
pub enum PatchSchedule {
    /// [`FASHION_MNIST_PATCH_SIZES`], scaled to the image size.
    Fitted,
    /// One size at every step.
    Fixed(usize),
    /// Sizes from the noisiest step to the last, stretched over the trajectory.
    List(Vec<usize>),
}

impl PatchSchedule {
    /// The sizes at the trajectory's `times` (noisiest first) for `d x d` images.
    pub fn table(&self, times: &[usize], d: usize) -> Result<TimeTable<usize>, covdiff_core::Error> {
        match self {
            Self::Fitted => fitted_patch_sizes(times, d),
            Self::Fixed(p) => Ok(TimeTable::constant(*p)),
            Self::List(sizes) => stretched(sizes, times, 1.0),
        }
    }
}

impl fmt::Display for PatchSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fitted => Ok(()),
            Self::Fixed(p) => write!(f, ":{p}"),
            Self::List(v) => write!(f, ":{}", v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("/")),
        }
    }
}

/// An analytic denoiser by name.
#[derive(Clone, Debug, PartialEq)]
pub enum AnalyticSpec {
    Optimal,
    Wiener(WienerBasis),
    /// Locality alone: `p x p` patches.
    Patch(PatchSchedule),
    /// Locality and translation equivariance (ELS), the same patch choice.
    Els(PatchSchedule),
    /// The trained net's sensitivity field binarised at a threshold.
    Mask(f64),
    /// The rows of the Wiener matrix binarised at a threshold: the appendix's own model
    /// (Algorithm 1).
    WienerMask(f64),
}

impl FromStr for AnalyticSpec {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let bad =
            |a: &str| covdiff_core::Error::invalid("patch size", format!("'{a}' in '{s}' is not a positive integer"));
        let size = |a: &str| match a.parse::<usize>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(bad(a)),
        };
        let schedule = |a: Option<&str>| -> Result<PatchSchedule, covdiff_core::Error> {
            match a {
                None => Ok(PatchSchedule::Fitted),
                Some(a) if a.contains('/') => {
                    Ok(PatchSchedule::List(a.split('/').map(size).collect::<Result<_, _>>()?))
                }
                Some(a) => Ok(PatchSchedule::Fixed(size(a)?)),
            }
        };
        match (name, arg) {
            ("optimal", None) => Ok(Self::Optimal),
            ("wiener", None) => Ok(Self::Wiener(WienerBasis::Eigen)),
            ("wiener-dct", None) => Ok(Self::Wiener(WienerBasis::Dct)),
            ("patch", a) => Ok(Self::Patch(schedule(a)?)),
            ("els", a) => Ok(Self::Els(schedule(a)?)),
            ("mask" | "wmask", Some(a)) => match a.parse::<f64>() {
                Ok(th) if th.is_finite() && th > 0.0 && th <= 1.0 => {
                    Ok(if name == "mask" { Self::Mask(th) } else { Self::WienerMask(th) })
                }
                _ => Err(covdiff_core::Error::invalid("mask threshold", format!("'{a}' must be in (0, 1]"))),
            },
            _ => Err(covdiff_core::Error::unknown(
                "analytic denoiser",
                s,
                "optimal, wiener, wiener-dct, patch[:p], els[:p], mask:<threshold> or wmask:<threshold>",
            )),
        }
    }
}

impl fmt::Display for AnalyticSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Optimal => f.write_str("optimal"),
            Self::Wiener(WienerBasis::Eigen) => f.write_str("wiener"),
            Self::Wiener(WienerBasis::Dct) => f.write_str("wiener-dct"),
            Self::Patch(s) => write!(f, "patch{s}"),
            Self::Els(s) => write!(f, "els{s}"),
            Self::Mask(th) => write!(f, "mask:{th}"),
            Self::WienerMask(th) => write!(f, "wmask:{th}"),
        }
    }
}

impl AnalyticSpec {
    /// Whether it needs the trained net's sensitivity fields.
    pub fn needs_fields(&self) -> bool {
        matches!(self, Self::Mask(_))
    }

    /// Whether it needs the data's mean and covariance.
    pub fn needs_moments(&self) -> bool {
        matches!(self, Self::Wiener(_) | Self::WienerMask(_))
    }

    /// Whether its cost per image is `d^2` times that of the optimal denoiser or more, so that
    /// it is usually run on a subset of the training set.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Patch(_) | Self::Els(_) | Self::Mask(_) | Self::WienerMask(_))
    }
}

/// The fitted patch sizes at the times of a trajectory (noisiest first), scaled to the image
/// size `d` and stretched over any number of steps.
pub fn fitted_patch_sizes(times: &[usize], d: usize) -> Result<TimeTable<usize>, covdiff_core::Error> {
    stretched(&FASHION_MNIST_PATCH_SIZES, times, d as f64 / 28.0)
}

/// `sizes` (noisiest first) over the trajectory's `times`: step `i` of `K` takes entry
/// `floor(i len / K)`, scaled by `scale` and rounded.
fn stretched(sizes: &[usize], times: &[usize], scale: f64) -> Result<TimeTable<usize>, covdiff_core::Error> {
    if sizes.is_empty() {
        return Err(covdiff_core::Error::invalid("patch sizes", "the list is empty"));
    }
    let k = times.len().max(1);
    let entries = times
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, (sizes[i * sizes.len() / k] as f64 * scale).round().max(1.0) as usize))
        .collect();
    TimeTable::new(entries)
}

/// What the analytic denoisers are built from.
pub struct Ingredients<'a, B: Backend> {
    /// The whole training set (optimal).
    pub data: &'a TrainingSet<B>,
    /// The subset for the local denoisers (patch, ELS, mask).
    pub local_data: &'a TrainingSet<B>,
    pub table: &'a ScheduleTable,
    /// The sampling trajectory's times, noisiest first (for the patch-size schedule).
    pub times: &'a [usize],
    /// The data's mean and covariance (Wiener).
    pub moments: Option<(&'a [f64], &'a DMatrix<f64>)>,
    /// The trained net's sensitivity fields at the trajectory's times (mask).
    pub fields: Option<&'a TimeTable<SensitivityField>>,
}

impl AnalyticSpec {
    /// The denoiser itself.
    pub fn build<B: Backend>(&self, ing: &Ingredients<'_, B>) -> Result<Box<dyn Denoiser<B>>, AnalyticError> {
        let (table, d) = (ing.table.clone(), ing.data.size());
        let bad = |e: covdiff_core::Error| AnalyticError::Invalid(e.to_string());
        let sizes = |p: &PatchSchedule| p.table(ing.times, d).map_err(bad);
        Ok(match self {
            Self::Optimal => Box::new(OptimalDenoiser::new(ing.data.clone(), table)),
            Self::Wiener(basis) => {
                let (mean, cov) = ing
                    .moments
                    .ok_or_else(|| AnalyticError::Invalid("the Wiener filter needs the data's moments".into()))?;
                let device = ing.data.chunks()[0].x.device();
                Box::new(WienerDenoiser::new(mean, cov, *basis, ing.data.channels(), d, table, &device)?)
            }
            Self::Patch(p) => Box::new(MaskedDenoiser::new(ing.local_data.clone(), table, &Support::Patch(sizes(p)?))?),
            Self::Els(p) => Box::new(EquivariantPatchDenoiser::new(ing.local_data.clone(), table, sizes(p)?)?),
            Self::Mask(th) => {
                let fields = ing.fields.ok_or_else(|| {
                    AnalyticError::Invalid("the mask denoiser needs the trained net's sensitivity fields".into())
                })?;
                let supports = fields.entries().iter().map(|(t, f)| (*t, f.support(*th))).collect();
                let support = Support::Offsets(TimeTable::new(supports).map_err(bad)?);
                Box::new(MaskedDenoiser::new(ing.local_data.clone(), table, &support)?)
            }
            Self::WienerMask(th) => {
                let (_, cov) = ing
                    .moments
                    .ok_or_else(|| AnalyticError::Invalid("the Wiener mask needs the data's moments".into()))?;
                let eig = ((cov + cov.transpose()) * 0.5).symmetric_eigen();
                let c = ing.data.channels();
                let rows = ing
                    .times
                    .iter()
                    .map(|&t| (t, binarise_rows(&wiener_matrix(&eig, ing.table.abar(t)), c, d, *th)))
                    .collect();
                let support = Support::Rows(TimeTable::new(rows).map_err(bad)?);
                Box::new(MaskedDenoiser::new(ing.local_data.clone(), table, &support)?)
            }
        })
    }
}
