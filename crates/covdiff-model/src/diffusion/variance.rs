//! The covariance of a skip step `t -> s` (docs/maths.md, "Skip-step posterior"): the two fixed
//! choices of Ho et al., the principled learned one `btilde I + kappa E_t` of the K-DCT paper, and
//! the 2D thesis' direct one, where the network's matrix is the step covariance itself.

use super::sampler::SamplerError;
use crate::covariance::{AnyCovariance, Covariance};
use burn::tensor::backend::Backend;
use covdiff_core::skip_step::SkipStep;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The covariance of a skip step from `t` to `s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepVariance {
    /// "beta": `(1 - a) I`.
    #[serde(rename = "beta")]
    Large,
    /// "beta-tilde": `btilde I`; at `s = 0`, where `btilde = 0`, the large value (Ho et al.).
    #[serde(rename = "beta-tilde")]
    Small,
    /// `btilde I + kappa E_t` with the model's `E_t` (docs/maths.md; the K-DCT paper's Eq. 9).
    #[serde(rename = "learned")]
    Learned,
    /// The model's matrix as the step covariance itself, as the 2D thesis trains it (its KL to the
    /// batch noise covariance; `papers/anisotropic-covariance-2d.md`, Sec. 5).
    #[serde(rename = "direct")]
    Direct,
}

impl StepVariance {
    pub const ALL: [StepVariance; 4] = [Self::Large, Self::Small, Self::Learned, Self::Direct];

    /// The serde name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Large => "beta",
            Self::Small => "beta-tilde",
            Self::Learned => "learned",
            Self::Direct => "direct",
        }
    }

    /// Whether the model must provide its covariance.
    pub fn is_learned(self) -> bool {
        matches!(self, Self::Learned | Self::Direct)
    }

    /// The step covariance; `learned` is the model's matrix (needed for the learned rules).
    pub fn at<B: Backend>(
        self,
        st: &SkipStep,
        learned: Option<AnyCovariance<B>>,
        shape: [usize; 4],
        device: &B::Device,
    ) -> Result<AnyCovariance<B>, SamplerError> {
        Ok(match self {
            Self::Large => AnyCovariance::scalar(st.large_variance(), shape, device),
            Self::Small if st.s == 0 => AnyCovariance::scalar(st.large_variance(), shape, device),
            Self::Small => AnyCovariance::scalar(st.small_variance(), shape, device),
            Self::Learned => {
                let (shift, scale) = st.covariance_shift_scale();
                learned.ok_or(SamplerError::MissingCovariance)?.shift_scale(shift, scale)
            }
            Self::Direct => learned.ok_or(SamplerError::MissingCovariance)?,
        })
    }
}

impl FromStr for StepVariance {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        covdiff_core::Error::by_name("step variance", s, &Self::ALL, Self::name)
    }
}
