//! The reverse process in 2D: K-step sampling with scalar or learned full
//! covariance, and the negative ELBO (exact per term, since n = 2).

use super::network::Toy2dModel;
use crate::covariance::{Covariance, Full2};
use crate::normals::standard_normal;
use burn::tensor::{backend::Backend, Distribution, Int, Tensor};
use covdiff_core::schedule::ScheduleTable;
use covdiff_core::skip_step::SkipStep;
use covdiff_core::trajectory::Trajectory;
use std::str::FromStr;

/// What the reverse process needs from a model at one time `t` (shared by the batch).
pub trait Denoiser2d<B: Backend> {
    /// `eps_hat(x_t, t)`, `[N, 2]`.
    fn eps(&self, x: Tensor<B, 2>, t: usize, y: Option<Tensor<B, 1, Int>>) -> Tensor<B, 2>;
    /// The learned 2 x 2 matrix: `E_t` for the principled variant, the step covariance for the thesis'.
    fn learned_cov(&self, x: Tensor<B, 2>, t: usize, y: Option<Tensor<B, 1, Int>>) -> Full2<B>;
}

impl<B: Backend> Denoiser2d<B> for Toy2dModel<B> {
    fn eps(&self, x: Tensor<B, 2>, t: usize, y: Option<Tensor<B, 1, Int>>) -> Tensor<B, 2> {
        let tt = Tensor::<B, 1>::full([x.dims()[0]], t as f32, &x.device());
        self.predict_eps(x, tt, y)
    }
    fn learned_cov(&self, x: Tensor<B, 2>, t: usize, y: Option<Tensor<B, 1, Int>>) -> Full2<B> {
        let tt = Tensor::<B, 1>::full([x.dims()[0]], t as f32, &x.device());
        self.predict_cov(x, tt, y)
    }
}

/// The covariance of a reverse step from `t` to `s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepCovariance {
    /// `(1 - a) I` ("beta").
    Large,
    /// `btilde I` ("beta-tilde"); at `s = 0`, where `btilde = 0`, the large value
    /// is used instead (for `t_1 = 1` that is `beta_1`, as in Ho et al.).
    Small,
    /// The thesis: the learned `L L^T` is the step covariance itself.
    Thesis,
    /// docs/maths.md: `btilde I + kappa E_t`, with the learned `L L^T` as `E_t`.
    Principled,
}

impl StepCovariance {
    pub const ALL: [StepCovariance; 4] = [Self::Large, Self::Small, Self::Thesis, Self::Principled];

    pub fn name(self) -> &'static str {
        match self {
            Self::Large => "beta",
            Self::Small => "beta-tilde",
            Self::Thesis => "thesis",
            Self::Principled => "principled",
        }
    }

    pub fn is_learned(self) -> bool {
        matches!(self, Self::Thesis | Self::Principled)
    }

    /// The step covariance for `x_t`.
    pub fn at<B: Backend, M: Denoiser2d<B>>(
        self,
        model: &M,
        x: Tensor<B, 2>,
        st: &SkipStep,
        y: Option<Tensor<B, 1, Int>>,
    ) -> Full2<B> {
        let n = x.dims()[0];
        let device = x.device();
        match self {
            Self::Large => Full2::scalar(st.large_variance(), n, &device),
            Self::Small if st.s == 0 => Full2::scalar(st.large_variance(), n, &device),
            Self::Small => Full2::scalar(st.small_variance(), n, &device),
            Self::Thesis => model.learned_cov(x, st.t, y),
            Self::Principled => {
                let (shift, scale) = st.covariance_shift_scale();
                model.learned_cov(x, st.t, y).shift_scale(shift, scale)
            }
        }
    }
}

impl FromStr for StepCovariance {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| covdiff_core::Error::unknown("covariance", s, Self::ALL.map(Self::name).join(", ")))
    }
}

/// The model's covariance of the clean point given `x_t`: since
/// `x_0 = (x_t - sqrt(bbar_t) eps) / sqrt(abar_t)`, `Cov[x_0 | x_t] = (bbar_t / abar_t) E_t`
/// (docs/maths.md, "Gaussian data"), with the principled model's learned `E_t`. This is what the
/// page draws as ellipses: the uncertainty the model has about where a point came from, in data
/// units.
pub fn x0_covariance<B: Backend, M: Denoiser2d<B>>(
    model: &M,
    table: &ScheduleTable,
    x: Tensor<B, 2>,
    t: usize,
) -> Full2<B> {
    let ratio = table.bbar(t) / table.abar(t);
    model.learned_cov(x, t, None).shift_scale(0.0, ratio)
}

/// The posterior mean of a step from `eps_hat` (docs/maths.md, "Skip-step posterior").
fn step_mean<B: Backend>(st: &SkipStep, x: Tensor<B, 2>, eps: Tensor<B, 2>) -> Tensor<B, 2> {
    let (cx, ce) = st.mean_from_eps();
    x * cx + eps * ce
}

/// A reverse process: a schedule, a K-step trajectory through it, and a step covariance.
#[derive(Clone, Copy, Debug)]
pub struct ReverseProcess<'a> {
    pub table: &'a ScheduleTable,
    pub trajectory: &'a Trajectory,
    pub covariance: StepCovariance,
}

impl ReverseProcess<'_> {
    /// Draw `n` samples, noise scaled by `lambda`: `x_s = mu_s + lambda chol(Sigma_s) z`, with
    /// `z = 0` at the final step `t_1 -> 0` (the thesis; Ho et al.), which returns the mean.
    /// Draws from covdiff's normal stream (`normals`).
    pub fn sample<B: Backend, M: Denoiser2d<B>>(
        &self,
        model: &M,
        lambda: f64,
        n: usize,
        y: Option<Tensor<B, 1, Int>>,
        device: &B::Device,
    ) -> Tensor<B, 2> {
        let mut x = standard_normal::<B, 2>([n, 2], device);
        for (t, s) in self.trajectory.steps() {
            let st = SkipStep::new(self.table, t, s);
            let mean = step_mean(&st, x.clone(), model.eps(x.clone(), t, y.clone()));
            x = if lambda == 0.0 || s == 0 {
                mean
            } else {
                let sigma = self.covariance.at(model, x, &st, y.clone());
                let z = standard_normal::<B, 4>([n, 2, 1, 1], device);
                mean + Full2::as_points(sigma.colour(z)) * lambda
            };
        }
        x
    }

    /// The negative ELBO of each point of `x0` in nats (docs/maths.md, "Likelihood"):
    /// `KL(q(x_T|x_0) || N(0, I)) + sum_{s > 0} KL(q(x_s|x_t, x_0) || p(x_s|x_t)) - log p(x_0|x_{t_1})`,
    /// each term exact given one draw of `x_t ~ q(x_t|x_0)`, so the sum is unbiased.
    pub fn negative_elbo<B: Backend, M: Denoiser2d<B>>(
        &self,
        model: &M,
        x0: Tensor<B, 2>,
        y: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 1> {
        let [n, _] = x0.dims();
        let device = x0.device();
        let big_t = self.trajectory.times()[0];
        let (ab, bb) = (self.table.abar(big_t), self.table.bbar(big_t));
        // KL(N(sqrt(ab) x0, bb I) || N(0, I)) = 0.5 (2 bb + ab |x0|^2 - 2 - 2 ln bb).
        let sq = (x0.clone() * x0.clone()).sum_dim(1).reshape([n]);
        let mut total = (sq * ab + (2.0 * bb - 2.0 - 2.0 * bb.ln())) * 0.5;
        for (t, s) in self.trajectory.steps() {
            let st = SkipStep::new(self.table, t, s);
            let z = Tensor::<B, 2>::random([n, 2], Distribution::Normal(0.0, 1.0), &device);
            let xt = x0.clone() * st.abar_t.sqrt() + z * st.bbar_t().sqrt();
            let mean_p = Full2::as_image(step_mean(&st, xt.clone(), model.eps(xt.clone(), t, y.clone())));
            let sigma_p = self.covariance.at(model, xt.clone(), &st, y.clone());
            let term = if s == 0 {
                sigma_p.log_density(Full2::as_image(x0.clone()), mean_p) * -1.0
            } else {
                let (c0, cx) = st.mean_from_x0();
                let mean_q = Full2::as_image(x0.clone() * c0 + xt * cx);
                Full2::scalar(st.btilde, n, &device).kl(mean_q, &sigma_p, mean_p)
            };
            total = total + term;
        }
        total
    }
}
