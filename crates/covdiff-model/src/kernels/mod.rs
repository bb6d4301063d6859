//! Fused CPU kernels for the operations that dominate the UNet and the K-DCT
//! operator on burn-flex (issue #8's profile): 2D convolution, group norm
//! (with the SiLU that follows it), SiLU and softmax, forward and backward,
//! and the K-DCT structured term (forward only).
//!
//! The functions here take and return burn tensors for any backend. On
//! `Flex` and `Autodiff<Flex>` they run covdiff's host kernels (`host`,
//! checked against their definitions); on every other backend (wgpu, CUDA,
//! ndarray) they return `None` or call burn's own operation, so GPU code
//! paths are unchanged. The backend is recognised at run time by its
//! `TypeId`, so model code stays generic over `B: Backend`.

#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
pub mod host;

use burn::tensor::{backend::Backend, Tensor};

/// `silu(x) = x sigma(x)`, by covdiff's vectorised kernel on flex (with its own backward step
/// under autodiff), by burn's elsewhere.
pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match dispatch::silu(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::silu(x)
}

/// Calls `f(i, block_i)` on the consecutive `len`-sized blocks of `out` (the last may be
/// shorter): on all cores natively with flex (rayon), in order otherwise.
pub fn for_blocks(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len.max(1)).enumerate().for_each(|(i, c)| f(i, c));
    }
    #[cfg(not(all(feature = "flex", not(target_arch = "wasm32"))))]
    out.chunks_mut(len.max(1)).enumerate().for_each(|(i, c)| f(i, c));
}

/// Runs `f` on one of the CPU pool's worker threads and returns its result (natively with
/// flex; in place otherwise). Every parallel kernel that `f` then calls starts from inside the
/// pool: a thread outside it must hand each parallel call to the pool, wake a worker and sleep
/// until the call is done, which cost about a tenth of a training step in the profile (#8).
pub fn on_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    #[cfg(all(feature = "flex", not(target_arch = "wasm32")))]
    {
        rayon::scope(|_| f())
    }
    #[cfg(not(all(feature = "flex", not(target_arch = "wasm32"))))]
    f()
}

/// The softmax over the last dimension, by covdiff's kernel on flex (with its own backward step
/// under autodiff; flex's own uses scalar `expf`), by burn's elsewhere.
pub fn softmax_last<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    #[cfg(feature = "flex")]
    let x = match dispatch::softmax_last(x) {
        Ok(y) => return y,
        Err(x) => x,
    };
    burn::tensor::activation::softmax(x, D - 1)
}

/// `$call` (a `dispatch` function) with the flex feature, `None` without it (its arguments
/// then unused).
macro_rules! flex_or_none {
    ($call:expr; $($arg:expr),*) => {{
        #[cfg(feature = "flex")]
        {
            $call
        }
        #[cfg(not(feature = "flex"))]
        {
            let _ = ($($arg),*);
            None
        }
    }};
}

/// Whether backend `B` has the host kernels of [`conv2d`] and [`group_norm`] (flex, with or
/// without autodiff).
pub fn has_host_kernels<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    {
        dispatch::Route::of::<B>().is_some()
    }
    #[cfg(not(feature = "flex"))]
    {
        false
    }
}

/// Whether backend `B` has the host kernel of [`kdct_structured`] (flex without autodiff).
pub fn has_kdct_kernel<B: Backend>() -> bool {
    #[cfg(feature = "flex")]
    {
        matches!(dispatch::Route::of::<B>(), Some(dispatch::Route::Flex))
    }
    #[cfg(not(feature = "flex"))]
    {
        false
    }
}

/// `y = W * x + b` (torch's `Conv2d`: square kernel, zero padding `padding`, stride `stride`,
/// one group), by covdiff's host kernel, or `None` when [`has_host_kernels`] is false or the
/// operands are not `f32` with matching shapes.
pub fn conv2d<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: &Tensor<B, 1>,
    stride: usize,
    padding: usize,
) -> Option<Tensor<B, 4>> {
    flex_or_none!(dispatch::conv2d(x, weight, bias, stride, padding); x, weight, bias, stride, padding)
}

/// Group normalisation with affine parameters `gamma`, `beta` over `groups` groups, followed by
/// SiLU when `activation` (one pass over memory), by covdiff's host kernel; `None` where
/// [`has_host_kernels`] is false or the operands do not fit.
pub fn group_norm<B: Backend>(
    x: &Tensor<B, 4>,
    gamma: &Tensor<B, 1>,
    beta: &Tensor<B, 1>,
    groups: usize,
    eps: f64,
    activation: bool,
) -> Option<Tensor<B, 4>> {
    flex_or_none!(dispatch::group_norm(x, gamma, beta, groups, eps as f32, activation); x, gamma, beta, groups, eps, activation)
}

/// The structured term of K-DCT with `T(X) = A X B^T` (`a`, `b` `[d, d]`), per image `i` and
/// channel: `T^T(lam_i * T(M_i v_i))` when `analyse` (the matvec, Eq. 13, with `M = L L^T`),
/// else `T^T(lam_i * M_i v_i)` (the sample, Alg. 1, with `M = L` and `lam` its square root);
/// plus `g * w` for a `diagonal` term `(g, w)` (`e v` in Eq. 13, `sqrt(e) xi1` in Alg. 1).
/// By covdiff's host kernel on flex without autodiff; `None` elsewhere (the caller composes it
/// from tensor operations).
pub fn kdct_structured<B: Backend>(
    v: &Tensor<B, 4>,
    mix: &Tensor<B, 3>,
    lam: &Tensor<B, 3>,
    [a, b]: [&Tensor<B, 2>; 2],
    diagonal: Option<(&Tensor<B, 4>, &Tensor<B, 4>)>,
    analyse: bool,
) -> Option<Tensor<B, 4>> {
    flex_or_none!(dispatch::kdct_structured(v, mix, lam, [a, b], diagonal, analyse); v, mix, lam, a, b, diagonal, analyse)
}

#[cfg(feature = "flex")]
mod dispatch {
    use super::flex::{self, AdTensor};
    use burn::backend::flex::FlexTensor;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{backend::Backend, DType, Tensor, TensorPrimitive};
    use std::any::{Any, TypeId};

    /// The backends with host kernels.
    pub enum Route {
        Flex,
        AutodiffFlex,
    }

    impl Route {
        pub fn of<B: Backend>() -> Option<Self> {
            let id = TypeId::of::<B>();
            if id == TypeId::of::<Flex>() {
                Some(Self::Flex)
            } else if id == TypeId::of::<Autodiff<Flex>>() {
                Some(Self::AutodiffFlex)
            } else {
                None
            }
        }
    }

    /// `t` as a `U`, when `T` and `U` are the same type (checked by `TypeId` before every
    /// call); `t` back otherwise.
    fn cast<T: 'static, U: 'static>(t: T) -> Result<U, T> {
        let mut slot = Some(t);
        let taken = (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>().and_then(Option::take);
        match (taken, slot) {
            (Some(u), _) => Ok(u),
            (None, Some(t)) => Err(t),
            (None, None) => unreachable!("the slot is emptied only by a successful downcast"),
        }
    }

    fn primitive<B: Backend, const D: usize>(x: Tensor<B, D>) -> FloatTensor<B> {
        x.into_primitive().tensor()
    }

    fn wrap<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
        Tensor::from_primitive(TensorPrimitive::Float(p))
    }

    /// `f` applied to `x`'s primitive as a `P`, when `B`'s primitive is one; `x` back otherwise.
    fn through<B: Backend, P: 'static, const D: usize>(
        x: Tensor<B, D>,
        f: impl FnOnce(P) -> P,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        let p = cast::<_, P>(primitive(x)).map_err(wrap)?;
        let back = cast::<P, FloatTensor<B>>(f(p));
        Ok(wrap(back.unwrap_or_else(|_| unreachable!("a primitive cast back to the type it came from"))))
    }

    /// An elementwise-shaped kernel (same shape out as in) by `on_flex` or `on_autodiff`, for
    /// `f32` tensors of the backends that have one; `x` back otherwise.
    fn unary<B: Backend, const D: usize>(
        x: Tensor<B, D>,
        on_flex: fn(FlexTensor) -> FlexTensor,
        on_autodiff: fn(AdTensor) -> AdTensor,
    ) -> Result<Tensor<B, D>, Tensor<B, D>> {
        if x.dtype() != DType::F32 {
            return Err(x);
        }
        match Route::of::<B>() {
            Some(Route::Flex) => through::<B, FlexTensor, D>(x, on_flex),
            Some(Route::AutodiffFlex) => through::<B, AdTensor, D>(x, on_autodiff),
            None => Err(x),
        }
    }

    pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
        unary(x, flex::silu, flex::silu_autodiff)
    }

    pub fn softmax_last<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
        unary(x, flex::softmax_last, flex::softmax_last_autodiff)
    }

    /// A borrowed primitive as a `P`, cloned (primitives are reference-counted handles).
    fn peek<B: Backend, P: Clone + 'static, const D: usize>(x: &Tensor<B, D>) -> Option<P> {
        cast::<_, P>(primitive(x.clone())).ok()
    }

    /// A three-operand kernel (data, then two parameters), by `on_flex` or `on_autodiff` on
    /// the primitives of the backend that has one.
    fn three<B: Backend, const D: usize, const D2: usize, const D3: usize>(
        operands: (&Tensor<B, D>, &Tensor<B, D2>, &Tensor<B, D3>),
        on_flex: impl FnOnce(&FlexTensor, &FlexTensor, &FlexTensor) -> Option<FlexTensor>,
        on_autodiff: impl FnOnce(&AdTensor, &AdTensor, &AdTensor) -> Option<AdTensor>,
    ) -> Option<Tensor<B, D>> {
        let (x, p, q) = operands;
        let y = match Route::of::<B>()? {
            Route::Flex => cast::<FlexTensor, FloatTensor<B>>(on_flex(&peek(x)?, &peek(p)?, &peek(q)?)?).ok(),
            Route::AutodiffFlex => cast::<AdTensor, FloatTensor<B>>(on_autodiff(&peek(x)?, &peek(p)?, &peek(q)?)?).ok(),
        };
        y.map(wrap)
    }

    pub fn conv2d<B: Backend>(
        x: &Tensor<B, 4>,
        weight: &Tensor<B, 4>,
        bias: &Tensor<B, 1>,
        stride: usize,
        padding: usize,
    ) -> Option<Tensor<B, 4>> {
        three(
            (x, weight, bias),
            |x, w, b| flex::conv2d(x, w, b, stride, padding),
            |x, w, b| flex::conv2d_autodiff(x, w, b, stride, padding),
        )
    }

    pub fn group_norm<B: Backend>(
        x: &Tensor<B, 4>,
        gamma: &Tensor<B, 1>,
        beta: &Tensor<B, 1>,
        groups: usize,
        eps: f32,
        activation: bool,
    ) -> Option<Tensor<B, 4>> {
        three(
            (x, gamma, beta),
            |x, g, b| flex::group_norm(x, g, b, groups, eps, activation),
            |x, g, b| flex::group_norm_autodiff(x, g, b, groups, eps, activation),
        )
    }

    pub fn kdct_structured<B: Backend>(
        v: &Tensor<B, 4>,
        mix: &Tensor<B, 3>,
        lam: &Tensor<B, 3>,
        [a, b]: [&Tensor<B, 2>; 2],
        diagonal: Option<(&Tensor<B, 4>, &Tensor<B, 4>)>,
        analyse: bool,
    ) -> Option<Tensor<B, 4>> {
        let Route::Flex = Route::of::<B>()? else { return None };
        let diagonal = match diagonal {
            Some((g, w)) => Some([peek::<B, FlexTensor, 4>(g)?, peek::<B, FlexTensor, 4>(w)?]),
            None => None,
        };
        let y = flex::kdct_structured(
            [&peek::<B, FlexTensor, 4>(v)?, &peek::<B, FlexTensor, 3>(mix)?, &peek::<B, FlexTensor, 3>(lam)?],
            [&peek::<B, FlexTensor, 2>(a)?, &peek::<B, FlexTensor, 2>(b)?],
            diagonal,
            analyse,
        )?;
        cast::<FlexTensor, FloatTensor<B>>(y).ok().map(wrap)
    }
}
