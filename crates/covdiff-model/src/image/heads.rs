//! Covariance heads on a frozen UNet (K-DCT paper Eq. 15, Table 5, CIFAR-10 rows):
//! the diagonal `e` comes from the last up-block through a conv ("Conv_last"),
//! the colour factor `L` and the spectrum `lam` from the mid-block through an
//! MLP ("MLP_mid"). Positive outputs are `softplus + floor`.

use crate::covariance::{AnyCovariance, Diagonal, KDct, LowRank};
use crate::kernels::silu;
use crate::spatial::{dct_matrix, SpatialBasis};
use crate::unet::{group_norm_silu, Conv, UNetConfig};
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::activation::softplus;
use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which covariance the heads predict (docs/maths.md, "Covariance models of E_t").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HeadKind {
    /// `diag(e)`.
    #[serde(rename = "diag")]
    Diagonal,
    /// `diag(e) + R R^T`, `R` from the last up-block.
    #[serde(rename = "lowrank")]
    LowRank { rank: usize },
    /// `diag(e) + (L L^T) (x) F2^T diag(lam) F2`.
    #[serde(rename = "kdct")]
    KDct,
    /// K-DCT with learnt separable bases `A`, `B` (paper Table 9).
    Free,
    /// K-DCT with `A F A'`, `B F B'`, diagonal `A, A', B, B'` learnt.
    FreeDiag,
}

impl HeadKind {
    pub fn name(self) -> String {
        match self {
            Self::Diagonal => "diag".into(),
            Self::LowRank { rank } => format!("lowrank{rank}"),
            Self::KDct => "kdct".into(),
            Self::Free => "free".into(),
            Self::FreeDiag => "free-diag".into(),
        }
    }

    fn is_kdct_family(self) -> bool {
        matches!(self, Self::KDct | Self::Free | Self::FreeDiag)
    }
}

impl fmt::Display for HeadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for HeadKind {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        match s {
            "diag" | "diagonal" => Ok(Self::Diagonal),
            "kdct" | "k-dct" => Ok(Self::KDct),
            "free" => Ok(Self::Free),
            "free-diag" | "freediag" => Ok(Self::FreeDiag),
            "lowrank" => Ok(Self::LowRank { rank: 8 }),
            _ => match s.strip_prefix("lowrank").map(str::parse::<usize>) {
                Some(Ok(rank)) if rank > 0 => Ok(Self::LowRank { rank }),
                _ => {
                    Err(covdiff_core::Error::unknown("covariance head", s, "diag, lowrank<r>, kdct, free or free-diag"))
                }
            },
        }
    }
}

/// The heads' shape. `second_moment` marks SN heads (Bao et al.): the diagonal
/// output is `E[eps^2 | x_t]`, and the covariance is `diag(m - eps_hat^2)`.
#[derive(Config, Debug, PartialEq)]
pub struct CovarianceHeadsConfig {
    pub kind: HeadKind,
    /// Image channels `C`.
    pub channels: usize,
    /// Image size `d`.
    pub size: usize,
    /// Channels of the last up-block's output.
    pub last_channels: usize,
    /// `C_mid h_mid w_mid`: the flattened mid-block output.
    pub mid_features: usize,
    #[config(default = 256)]
    pub hidden: usize,
    #[config(default = 8)]
    pub norm_num_groups: usize,
    /// Added to the softplus of every positive output.
    #[config(default = 1e-4)]
    pub floor: f64,
    #[config(default = false)]
    pub second_moment: bool,
}

impl CovarianceHeadsConfig {
    /// Heads that read the features of a UNet built from `unet` on `size x size` images.
    pub fn for_unet(kind: HeadKind, unet: &UNetConfig, size: usize) -> Self {
        let mid = size / unet.size_multiple();
        let last = *unet.block_out_channels.last().expect("a UNet has levels");
        Self::new(kind, unet.out_channels, size, unet.block_out_channels[0], last * mid * mid)
            .with_norm_num_groups(unet.norm_num_groups)
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> CovarianceHeads<B> {
        let c = self.channels;
        let d = self.size;
        let conv_out = match self.kind {
            HeadKind::LowRank { rank } => c * (1 + rank),
            _ => c,
        };
        let kdct = self.kind.is_kdct_family();
        let mlp = kdct.then(|| {
            (
                LinearConfig::new(self.mid_features, self.hidden).init(device),
                LinearConfig::new(self.hidden, c * c + d * d).init(device),
            )
        });
        let (mlp_1, mlp_2) = mlp.unzip();
        let f = || dct_matrix::<B>(d, device);
        CovarianceHeads {
            norm: GroupNormConfig::new(self.norm_num_groups, self.last_channels).init(device),
            conv_e: Conv::new(self.last_channels, conv_out, 3, 1, 1, device),
            mlp_1,
            mlp_2,
            basis_rows: (self.kind == HeadKind::Free).then(|| Param::from_tensor(f())),
            basis_cols: (self.kind == HeadKind::Free).then(|| Param::from_tensor(f())),
            basis_scales: (self.kind == HeadKind::FreeDiag).then(|| Param::from_tensor(Tensor::ones([4, d], device))),
            kind: self.kind,
            channels: c,
            size: d,
            floor: self.floor,
            second_moment: self.second_moment,
        }
    }
}

#[derive(Module, Debug)]
pub struct CovarianceHeads<B: Backend> {
    norm: GroupNorm<B>,
    /// `e` (and `R` for low rank) from the last up-block.
    conv_e: Conv<B>,
    /// `L` and `lam` from the mid-block.
    mlp_1: Option<Linear<B>>,
    mlp_2: Option<Linear<B>>,
    basis_rows: Option<Param<Tensor<B, 2>>>,
    basis_cols: Option<Param<Tensor<B, 2>>>,
    /// FreeDiag's `[a, a', b, b']`, `[4, d]`.
    basis_scales: Option<Param<Tensor<B, 2>>>,
    #[module(skip)]
    kind: HeadKind,
    channels: usize,
    size: usize,
    floor: f64,
    second_moment: bool,
}

impl<B: Backend> CovarianceHeads<B> {
    pub fn kind(&self) -> HeadKind {
        self.kind
    }

    /// SN heads: the output is `diag(E[eps^2 | x_t])`, not `E_t`.
    pub fn is_second_moment(&self) -> bool {
        self.second_moment
    }

    pub fn floor(&self) -> f64 {
        self.floor
    }

    fn positive<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        softplus(x, 1.0) + self.floor
    }

    fn basis(&self, device: &B::Device) -> SpatialBasis<B> {
        match (&self.basis_rows, &self.basis_cols, &self.basis_scales) {
            (Some(a), Some(b), _) => SpatialBasis::free(a.val(), b.val()),
            (_, _, Some(s)) => {
                let v = |i: usize| s.val().narrow(0, i, 1).reshape([self.size]);
                SpatialBasis::free_diag(v(0), v(1), v(2), v(3))
            }
            _ => SpatialBasis::dct(self.size, device),
        }
    }

    /// `E_t` (or, for SN heads, `diag(E[eps^2 | x_t])`) from the UNet's mid-block
    /// output `mid` and last up-block output `last_up` (see [`crate::unet::UNetOutput`]).
    pub fn forward(&self, mid: Tensor<B, 4>, last_up: Tensor<B, 4>) -> AnyCovariance<B> {
        /// A narrowed view copied into its own buffer before a reshape. burn 0.21's wgpu backend
        /// reshapes a view whose narrowed dimension has size 1 as if it were contiguous:
        /// `[2, 785].narrow(1, 0, 1).reshape([2, 1, 1])` reads entries 0 and 1, not 0 and 785,
        /// which gave grey K-DCT heads a colour factor read out of their spectrum on wgpu.
        fn own_layout<B: Backend, const D: usize>(view: Tensor<B, D>) -> Tensor<B, D> {
            view * 1.0
        }
        let [b, _, h, w] = last_up.dims();
        let (c, d) = (self.channels, self.size);
        assert_eq!((h, w), (d, d), "the last up-block must be d x d");
        let out = self.conv_e.forward(group_norm_silu(&self.norm, last_up));
        let e = self.positive(out.clone().narrow(1, 0, c));
        match self.kind {
            HeadKind::Diagonal => AnyCovariance::Diagonal(Diagonal::new(e)),
            HeadKind::LowRank { rank } => {
                // Channels c.. hold R as [rank, C, d, d]: R[b, (c, i, j), k]; scaled so R R^T starts O(1).
                let r = own_layout(out.narrow(1, c, c * rank)).reshape([b, rank, c * d * d]).swap_dims(1, 2);
                AnyCovariance::LowRank(LowRank::new(e, r / (rank as f64).sqrt()))
            }
            HeadKind::KDct | HeadKind::Free | HeadKind::FreeDiag => {
                let (Some(l1), Some(l2)) = (&self.mlp_1, &self.mlp_2) else { unreachable!("K-DCT heads have an MLP") };
                let flat = silu(mid).reshape([b as i32, -1]);
                let y = l2.forward(silu(l1.forward(flat)));
                let l = own_layout(y.clone().narrow(1, 0, c * c)).reshape([b, c, c]);
                let lam = self.positive(y.narrow(1, c * c, d * d)).reshape([b, d, d]);
                AnyCovariance::KDct(KDct::new(e, l, lam, self.basis(&self.conv_e.weight.device())))
            }
        }
    }
}
