//! The concrete backends, one per cargo feature.

/// CPU backend (ndarray), the default and the one CI runs.
#[cfg(feature = "ndarray")]
pub type Cpu = burn::backend::NdArray<f32>;

/// wgpu: Vulkan (or Metal, DX12) natively, WebGPU in the browser.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu<f32, i32>;

/// CUDA, loaded at run time; needs an NVIDIA driver to run.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda<f32, i32>;
