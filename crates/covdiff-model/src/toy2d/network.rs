//! The thesis' networks (Sec. 5.2): MLPs with 4 hidden layers of width 128
//! and ReLU; the time step is embedded (sinusoidally) and concatenated to the
//! input, and with labels a learnt class embedding is concatenated too.

use crate::covariance::Full2;
use crate::timestep::sinusoidal;
use burn::config::Config;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::{relu, softplus};
use burn::tensor::{backend::Backend, Int, Tensor};

/// Shape of both networks.
#[derive(Config, Debug, PartialEq)]
pub struct Toy2dConfig {
    #[config(default = 128)]
    pub hidden: usize,
    #[config(default = 4)]
    pub layers: usize,
    /// Width of the sinusoidal time embedding.
    #[config(default = 16)]
    pub time_dim: usize,
    /// Number of classes; 0 for an unconditional model.
    #[config(default = 0)]
    pub classes: usize,
    #[config(default = 8)]
    pub class_dim: usize,
    /// Floor added to the softplus of the Cholesky diagonal.
    #[config(default = 1e-3)]
    pub floor: f64,
}

impl Toy2dConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Toy2dModel<B> {
        Toy2dModel { eps: self.mlp(2, device), cov: self.mlp(3, device), floor: self.floor }
    }

    fn mlp<B: Backend>(&self, d_out: usize, device: &B::Device) -> Mlp<B> {
        let class_dim = if self.classes > 0 { self.class_dim } else { 0 };
        let mut width = 2 + self.time_dim + class_dim;
        let mut hidden = Vec::with_capacity(self.layers);
        for _ in 0..self.layers {
            hidden.push(LinearConfig::new(width, self.hidden).init(device));
            width = self.hidden;
        }
        Mlp {
            hidden,
            out: LinearConfig::new(width, d_out).init(device),
            class_embedding: (self.classes > 0).then(|| EmbeddingConfig::new(self.classes, class_dim).init(device)),
            time_dim: self.time_dim,
        }
    }
}

/// `[x, emb(t), emb(y)] -> ReLU MLP -> d_out`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    hidden: Vec<Linear<B>>,
    out: Linear<B>,
    class_embedding: Option<Embedding<B>>,
    time_dim: usize,
}

impl<B: Backend> Mlp<B> {
    /// `x` `[N, 2]`, `t` `[N]` (the step, as a float), `y` `[N]` labels when conditional.
    pub fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 1>, y: Option<Tensor<B, 1, Int>>) -> Tensor<B, 2> {
        let n = x.dims()[0];
        let mut parts = vec![x, sinusoidal(t, self.time_dim, false, 0.0)];
        if let (Some(emb), Some(y)) = (&self.class_embedding, y) {
            let e = emb.forward(y.reshape([n, 1]));
            let k = e.dims()[2];
            parts.push(e.reshape([n, k]));
        }
        let mut h = Tensor::cat(parts, 1);
        for layer in &self.hidden {
            h = relu(layer.forward(h));
        }
        self.out.forward(h)
    }

    pub fn is_conditional(&self) -> bool {
        self.class_embedding.is_some()
    }
}

/// The eps-network and the covariance network.
#[derive(Module, Debug)]
pub struct Toy2dModel<B: Backend> {
    pub eps: Mlp<B>,
    pub cov: Mlp<B>,
    floor: f64,
}

impl<B: Backend> Toy2dModel<B> {
    /// `eps_hat(x_t, t, y)`, `[N, 2]`.
    pub fn predict_eps(&self, x: Tensor<B, 2>, t: Tensor<B, 1>, y: Option<Tensor<B, 1, Int>>) -> Tensor<B, 2> {
        self.eps.forward(x, t, y)
    }

    /// `L L^T` with `L = [[a, 0], [b, c]]`, `a, c = softplus(.) + floor` (SPD by construction).
    pub fn predict_cov(&self, x: Tensor<B, 2>, t: Tensor<B, 1>, y: Option<Tensor<B, 1, Int>>) -> Full2<B> {
        let o = self.cov.forward(x, t, y);
        let n = o.dims()[0];
        let col = |k: usize| o.clone().narrow(1, k, 1).reshape([n]);
        let a = softplus(col(0), 1.0) + self.floor;
        let c = softplus(col(2), 1.0) + self.floor;
        Full2::from_cholesky(a, col(1), c)
    }

    pub fn is_conditional(&self) -> bool {
        self.eps.is_conditional()
    }
}
