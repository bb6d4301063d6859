//! The host kernels as burn-flex operations, and as `Autodiff<Flex>` operations with their
//! own backward steps (burn-autodiff's backend-extension API).

use super::host::{self, ConvGeometry, NormGeometry};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, TensorData};

/// The primitive of `Autodiff<Flex>`: a `FlexTensor` and its graph node.
pub(super) type AdTensor = FloatTensor<Autodiff<Flex>>;

/// `t` as a contiguous `f32` slice (copied only when it is a strided view), or `None` for
/// another dtype.
fn contiguous(t: FlexTensor) -> Option<FlexTensor> {
    if t.dtype() != DType::F32 {
        return None;
    }
    Some(if t.as_slice::<f32>().is_some() { t } else { t.to_contiguous() })
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

fn tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn shape(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// `t`, contiguous, for a tensor the caller has checked to be `f32`.
fn checked(t: FlexTensor) -> FlexTensor {
    contiguous(t).expect("the dispatcher passes f32 tensors only")
}

/// `silu(x)`, for an `f32` tensor.
pub(super) fn silu(x: FlexTensor) -> FlexTensor {
    let x = checked(x);
    tensor(host::silu(slice(&x)), shape(&x))
}

/// `silu(x)` under autodiff, for an `f32` tensor, with the backward step `g silu'(x)`.
pub(super) fn silu_autodiff(x: AdTensor) -> AdTensor {
    unary_autodiff(x, silu, Keep::Input, |x, g| tensor(host::silu_backward(slice(x), slice(g)), shape(x)))
}

/// The softmax over the last dimension, for an `f32` tensor.
pub(super) fn softmax_last(x: FlexTensor) -> FlexTensor {
    let x = checked(x);
    let dims = shape(&x);
    tensor(host::softmax_rows(slice(&x), row_length(&dims)), dims)
}

/// [`softmax_last`] under autodiff, with the backward step `y (g - <g, y>)` per row.
pub(super) fn softmax_last_autodiff(x: AdTensor) -> AdTensor {
    unary_autodiff(x, softmax_last, Keep::Output, |y, g| {
        let dims = shape(y);
        tensor(host::softmax_rows_backward(slice(y), slice(g), row_length(&dims)), dims)
    })
}

/// The last dimension's length (at least 1).
fn row_length(dims: &[usize]) -> usize {
    dims.last().copied().unwrap_or(1).max(1)
}

/// Which tensor a one-input op's backward step needs.
enum Keep {
    Input,
    Output,
}

/// What [`UnaryBackward`] keeps: the input or the output, and the gradient rule
/// `backward(kept, g)`.
#[derive(Clone, Debug)]
struct UnaryState {
    kept: FlexTensor,
    backward: fn(&FlexTensor, &FlexTensor) -> FlexTensor,
}

#[derive(Debug)]
struct UnaryBackward;

impl Backward<Flex, 1> for UnaryBackward {
    type State = UnaryState;

    fn backward(self, ops: Ops<UnaryState, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |g| (s.backward)(&s.kept, &checked(g)));
    }
}

/// A one-input op on an `f32` tensor under autodiff: `forward` on the primitive, with the
/// backward step `backward(kept, g)`.
fn unary_autodiff(
    x: AdTensor,
    forward: fn(FlexTensor) -> FlexTensor,
    keep: Keep,
    backward: fn(&FlexTensor, &FlexTensor) -> FlexTensor,
) -> AdTensor {
    let input = checked(x.primitive.clone());
    let y = forward(input.clone());
    match UnaryBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let kept = match keep {
                Keep::Input => input,
                Keep::Output => y.clone(),
            };
            prep.finish(UnaryState { kept, backward }, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}

/// The convolution's operands, contiguous, with its geometry; `None` for another dtype or a
/// layout the host kernel does not cover (a non-square kernel, groups, channels that differ).
fn conv_operands(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    stride: usize,
    pad: usize,
) -> Option<(FlexTensor, FlexTensor, FlexTensor, ConvGeometry)> {
    let (x, weight, bias) = (contiguous(x.clone())?, contiguous(weight.clone())?, contiguous(bias.clone())?);
    let (xs, ws, bs) = (shape(&x), shape(&weight), shape(&bias));
    let (&[batch, cin, h, w], &[cout, wcin, k, k2], &[bn]) = (&xs[..], &ws[..], &bs[..]) else { return None };
    let fits = wcin == cin && k == k2 && bn == cout && stride >= 1 && h + 2 * pad >= k && w + 2 * pad >= k;
    fits.then_some((x, weight, bias, ConvGeometry { batch, cin, h, w, cout, k, stride, pad }))
}

fn conv_output(x: &FlexTensor, weight: &FlexTensor, bias: &FlexTensor, g: &ConvGeometry) -> FlexTensor {
    let (ho, wo) = g.out_hw();
    tensor(host::conv2d(slice(x), slice(weight), slice(bias), g), vec![g.batch, g.cout, ho, wo])
}

/// `W * x + b`, or `None` when [`conv_operands`] refuses the operands.
pub(super) fn conv2d(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    stride: usize,
    pad: usize,
) -> Option<FlexTensor> {
    let (x, weight, bias, g) = conv_operands(x, weight, bias, stride, pad)?;
    Some(conv_output(&x, &weight, &bias, &g))
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    /// The input and weights, contiguous, and the geometry.
    type State = (FlexTensor, FlexTensor, ConvGeometry);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, g) = ops.state;
        let dy = checked(grads.consume::<Flex>(&ops.node));
        let [px, pw, pb] = ops.parents;
        let want = [px.is_some(), pw.is_some(), pb.is_some()];
        let d = host::conv2d_backward(slice(&x), slice(&weight), slice(&dy), &g, want);
        let parts = [(px, d.x, shape(&x)), (pw, d.weight, shape(&weight)), (pb, d.bias, vec![g.cout])];
        for (parent, grad, dims) in parts {
            if let (Some(node), Some(grad)) = (parent, grad) {
                grads.register::<Flex>(node.id, tensor(grad, dims));
            }
        }
    }
}

/// `W * x + b` under autodiff, with [`host::conv2d_backward`] as its backward step; `None` when
/// [`conv_operands`] refuses the operands.
pub(super) fn conv2d_autodiff(
    x: &AdTensor,
    weight: &AdTensor,
    bias: &AdTensor,
    stride: usize,
    pad: usize,
) -> Option<AdTensor> {
    let (xp, wp, bp, g) = conv_operands(&x.primitive, &weight.primitive, &bias.primitive, stride, pad)?;
    let y = conv_output(&xp, &wp, &bp, &g);
    let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
    Some(match ConvBackward.prepare::<NoCheckpointing>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((xp, wp, g), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    })
}

/// The group norm's operands, contiguous, with its geometry; `None` for another dtype or shapes
/// that do not fit (`groups` not dividing the channels, parameters of another length).
fn norm_operands(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    groups: usize,
    eps: f32,
) -> Option<(FlexTensor, FlexTensor, FlexTensor, NormGeometry)> {
    let (x, gamma, beta) = (contiguous(x.clone())?, contiguous(gamma.clone())?, contiguous(beta.clone())?);
    let (xs, gs, bs) = (shape(&x), shape(&gamma), shape(&beta));
    let (&[batch, channels, h, w], &[gc], &[bc]) = (&xs[..], &gs[..], &bs[..]) else { return None };
    let fits = groups > 0 && channels.is_multiple_of(groups) && gc == channels && bc == channels;
    fits.then_some((x, gamma, beta, NormGeometry { batch, channels, pixels: h * w, groups, eps }))
}

/// `GroupNorm(x)`, followed by SiLU when `activation`; `None` when [`norm_operands`] refuses.
pub(super) fn group_norm(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    groups: usize,
    eps: f32,
    activation: bool,
) -> Option<FlexTensor> {
    let (x, gamma, beta, g) = norm_operands(x, gamma, beta, groups, eps)?;
    let (y, _) = host::group_norm(slice(&x), slice(&gamma), slice(&beta), &g, activation);
    Some(tensor(y, shape(&x)))
}

#[derive(Debug)]
struct NormBackward;

/// What [`NormBackward`] keeps: the operands, the per-group statistics, the geometry and
/// whether SiLU follows.
#[derive(Clone, Debug)]
struct NormState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    stats: Vec<[f32; 2]>,
    geometry: NormGeometry,
    activation: bool,
}

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<NormState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let s = ops.state;
        let dy = checked(grads.consume::<Flex>(&ops.node));
        let (x, gamma, beta, dy) = (slice(&s.x), slice(&s.gamma), slice(&s.beta), slice(&dy));
        let (dx, dgamma, dbeta) = host::group_norm_backward(x, gamma, beta, &s.stats, dy, &s.geometry, s.activation);
        let [px, pg, pb] = ops.parents;
        let c = s.geometry.channels;
        for (parent, grad, dims) in [(px, dx, shape(&s.x)), (pg, dgamma, vec![c]), (pb, dbeta, vec![c])] {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, tensor(grad, dims));
            }
        }
    }
}

/// [`group_norm`] under autodiff, with [`host::group_norm_backward`] as its backward step.
pub(super) fn group_norm_autodiff(
    x: &AdTensor,
    gamma: &AdTensor,
    beta: &AdTensor,
    groups: usize,
    eps: f32,
    activation: bool,
) -> Option<AdTensor> {
    let (xp, gp, bp, geometry) = norm_operands(&x.primitive, &gamma.primitive, &beta.primitive, groups, eps)?;
    let (y, stats) = host::group_norm(slice(&xp), slice(&gp), slice(&bp), &geometry, activation);
    let y = tensor(y, shape(&xp));
    let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
    Some(match NormBackward.prepare::<NoCheckpointing>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(NormState { x: xp, gamma: gp, beta: bp, stats, geometry, activation }, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    })
}

/// [`host::kdct_structured`] on flex tensors: `v` `[n, c, d, d]`, `mix` `[n, c, c]`, `lam`
/// `[n, d, d]`, `a` and `b` `[d, d]`, and the diagonal term's `g` and `w` shaped as `v`; `None`
/// for another dtype or shapes that do not fit.
pub(super) fn kdct_structured(
    [v, mix, lam]: [&FlexTensor; 3],
    [a, b]: [&FlexTensor; 2],
    diagonal: Option<[FlexTensor; 2]>,
    analyse: bool,
) -> Option<FlexTensor> {
    let [v, mix, lam, a, b] = [v, mix, lam, a, b].map(|t| contiguous(t.clone()));
    let (v, mix, lam, a, b) = (v?, mix?, lam?, a?, b?);
    let diagonal = match diagonal {
        Some([g, w]) => Some([contiguous(g)?, contiguous(w)?]),
        None => None,
    };
    let (vs, ms, ls) = (shape(&v), shape(&mix), shape(&lam));
    let (&[n, c, d, d2], &[mn, mc, mc2]) = (&vs[..], &ms[..]) else { return None };
    let fits = d == d2 && [mn, mc, mc2] == [n, c, c] && ls == [n, d, d] && shape(&a) == [d, d] && shape(&b) == [d, d];
    let diagonal_fits = diagonal.as_ref().is_none_or(|[g, w]| shape(g) == vs && shape(w) == vs);
    (fits && diagonal_fits).then(|| {
        let ops = host::Operands {
            v: slice(&v),
            mix: slice(&mix),
            lam: slice(&lam),
            a: slice(&a),
            b: slice(&b),
            sizes: [n, c, d],
            diagonal: diagonal.as_ref().map(|[g, w]| [slice(g), slice(w)]),
        };
        tensor(host::kdct_structured(ops, analyse), vs)
    })
}
