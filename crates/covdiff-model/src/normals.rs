//! The standard normal draws of every sampler: covdiff's own seeded stream
//! ([`covdiff_core::normals::NormalStream`]), drawn on the host and uploaded, on every backend.
//!
//! - **Reproducible everywhere.** A seed gives the same numbers on flex, ndarray, wgpu and CUDA,
//!   natively and in the browser, on any number of threads: the page's WebGPU samples can be
//!   checked against the CLI's.
//! - **Fast.** On the CPU backends, burn's own normal draw cost about 20 ns a number, more than
//!   the rest of a K-DCT sample together (Alg. 1 draws `2n` numbers); the stream's vectorised
//!   Box–Muller takes about 2 ns on one core, and blocks are drawn in parallel.
//!
//! The stream is one per process, as burn's generator is one per backend: [`seed`] seeds both.
//! burn's own generator still makes the draws that are not a sampler's (initial weights,
//! training noise on a GPU, Rademacher probes).

use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::tensor::{backend::Backend, Tensor, TensorData};
use covdiff_core::normals::{NormalStream, BLOCK};

/// The process's stream; seed 0 until [`seed`] is called.
static STREAM: Mutex<NormalStream> = Mutex::new(NormalStream::new(0));

fn stream() -> MutexGuard<'static, NormalStream> {
    // A stream is two integers, whole after any panic, so a poisoned lock is still good.
    STREAM.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seeds covdiff's normal stream and the backend's generator.
pub fn seed<B: Backend>(device: &B::Device, seed: u64) {
    B::seed(device, seed);
    *stream() = NormalStream::new(seed);
}

/// Runs `f` with `own` as the process's stream, then stores the advanced stream back in `own`
/// and restores the one that was there. Runs that are stepped in turn (the page's samplers)
/// each keep their own numbers this way.
pub fn with_stream<R>(own: &mut NormalStream, f: impl FnOnce() -> R) -> R {
    let outer = std::mem::replace(&mut *stream(), *own);
    let result = f();
    *own = std::mem::replace(&mut *stream(), outer);
    result
}

/// Standard normal numbers of the given shape, the next ones of covdiff's stream.
pub fn standard_normal<B: Backend, const D: usize>(shape: [usize; D], device: &B::Device) -> Tensor<B, D> {
    let n = shape.iter().product::<usize>();
    let (own, first) = {
        let mut s = stream();
        let first = s.reserve(n);
        (*s, first)
    };
    let mut z = vec![0.0f32; n];
    crate::kernels::for_blocks(&mut z, BLOCK, |block, out| own.fill_block(first + block as u64, out));
    Tensor::from_data(TensorData::new(z, shape), device)
}
