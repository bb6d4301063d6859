//! The weighted streaming softmax (the locality appendix, C.3 "wssm"):
//! `sum_m softmax(l)_m v_m` over chunks of `m`, with a running log-sum-exp, so that memory stays
//! O(chunk) and no exponential overflows. After chunks `1..k` the state holds the running maximum
//! `a`, `s = sum_m exp(l_m - a)` and `acc = sum_m exp(l_m - a) v_m`; a new chunk with maximum
//! `a' >= a` rescales both by `exp(a - a')` before adding its own terms.

use burn::tensor::{backend::Backend, Tensor};

#[derive(Clone, Debug)]
struct State<B: Backend> {
    /// `[B, R, 1]`.
    max: Tensor<B, 3>,
    /// `[B, R, 1]`.
    sum: Tensor<B, 3>,
    /// `[B, R, V]`.
    acc: Tensor<B, 3>,
}

/// `R` softmaxes per batch element, each over a stream of logits, each weighting `V`-vectors.
#[derive(Clone, Debug, Default)]
pub struct StreamingSoftmax<B: Backend> {
    state: Option<State<B>>,
}

impl<B: Backend> StreamingSoftmax<B> {
    pub fn new() -> Self {
        Self { state: None }
    }

    /// Fold in one chunk of logits `[B, R, M]`. `contract` gets the chunk's weights
    /// `exp(l - a')` (relative to the new running maximum, so at most 1) and returns
    /// `sum_m w_m v_m`, `[B, R, V]`.
    pub fn update(&mut self, logits: Tensor<B, 3>, contract: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>) {
        let chunk_max = logits.clone().max_dim(2);
        let (max, rescale) = match &self.state {
            None => (chunk_max, None),
            Some(s) => {
                let max = s.max.clone().max_pair(chunk_max);
                let rescale = (s.max.clone() - max.clone()).exp();
                (max, Some(rescale))
            }
        };
        let w = (logits - max.clone()).exp();
        let sum = w.clone().sum_dim(2);
        let acc = contract(w);
        self.state = Some(match (self.state.take(), rescale) {
            (Some(s), Some(r)) => State { sum: s.sum * r.clone() + sum, acc: s.acc * r + acc, max },
            _ => State { max, sum, acc },
        });
    }

    /// `sum_m softmax(l)_m v_m`, `[B, R, V]`, or `None` before the first chunk.
    pub fn value(&self) -> Option<Tensor<B, 3>> {
        self.state.as_ref().map(|s| s.acc.clone() / s.sum.clone())
    }

    /// `log sum_m exp(l_m)`, `[B, R, 1]`, or `None` before the first chunk.
    pub fn log_normaliser(&self) -> Option<Tensor<B, 3>> {
        self.state.as_ref().map(|s| s.max.clone() + s.sum.clone().log())
    }
}
