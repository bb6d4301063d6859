//! The concrete backends, one per cargo feature.

/// burn's own CPU backend: gemm (AVX-512 where the processor has it), SIMD and
/// rayon; it also builds for wasm32, where it is the browser's CPU fallback.
#[cfg(feature = "flex")]
pub type Flex = burn::backend::Flex;

/// burn-ndarray (matrixmultiply), kept for comparison.
#[cfg(feature = "ndarray")]
pub type NdArray = burn::backend::NdArray<f32>;

/// The default CPU backend, chosen by `covdiff bench` (see the README): flex
/// where it is compiled in, else ndarray.
#[cfg(feature = "flex")]
pub type Cpu = Flex;
#[cfg(all(feature = "ndarray", not(feature = "flex")))]
pub type Cpu = NdArray;

/// wgpu: Vulkan (or Metal, DX12) natively, WebGPU in the browser.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu<f32, i32>;

/// CUDA, loaded at run time; needs an NVIDIA driver to run.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;
