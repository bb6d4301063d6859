//! Backend selection by `--device`, with a clear error where a device is
//! missing or was not compiled in.

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// The default CPU backend ([`covdiff_model::backends::Cpu`]).
    Cpu,
    /// burn-ndarray, whatever the default.
    Ndarray,
    /// burn-flex, whatever the default.
    Flex,
    Wgpu,
    Cuda,
}

impl FromStr for DeviceKind {
    type Err = covdiff_core::Error;
    fn from_str(s: &str) -> Result<Self, covdiff_core::Error> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "ndarray" => Ok(Self::Ndarray),
            "flex" => Ok(Self::Flex),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(covdiff_core::Error::unknown("device", other, "cpu, flex, ndarray, wgpu or cuda")),
        }
    }
}

/// Work that runs on any backend.
pub trait BackendJob {
    type Output;
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Run `job` on the chosen device.
pub fn dispatch<J: BackendJob>(kind: DeviceKind, job: J) -> Result<J::Output> {
    match kind {
        DeviceKind::Cpu => run_cpu(job),
        DeviceKind::Ndarray => run_ndarray(job),
        DeviceKind::Flex => run_flex(job),
        DeviceKind::Wgpu => run_wgpu(job),
        DeviceKind::Cuda => run_cuda(job),
    }
}

#[cfg(any(feature = "flex", feature = "ndarray"))]
fn run_cpu<J: BackendJob>(job: J) -> Result<J::Output> {
    job.run::<covdiff_model::backends::Cpu>(Default::default())
}

#[cfg(not(any(feature = "flex", feature = "ndarray")))]
fn run_cpu<J: BackendJob>(_: J) -> Result<J::Output> {
    bail!("this covdiff was built without a cpu backend: rebuild with --features flex")
}

#[cfg(feature = "ndarray")]
fn run_ndarray<J: BackendJob>(job: J) -> Result<J::Output> {
    job.run::<covdiff_model::backends::NdArray>(Default::default())
}

#[cfg(not(feature = "ndarray"))]
fn run_ndarray<J: BackendJob>(_: J) -> Result<J::Output> {
    bail!("this covdiff was built without the ndarray backend: rebuild with --features ndarray")
}

#[cfg(feature = "flex")]
fn run_flex<J: BackendJob>(job: J) -> Result<J::Output> {
    job.run::<covdiff_model::backends::Flex>(Default::default())
}

#[cfg(not(feature = "flex"))]
fn run_flex<J: BackendJob>(_: J) -> Result<J::Output> {
    bail!("this covdiff was built without the flex backend: rebuild with --features flex")
}

#[cfg(feature = "wgpu")]
fn run_wgpu<J: BackendJob>(job: J) -> Result<J::Output> {
    let device = burn::backend::wgpu::WgpuDevice::default();
    let hint = "no GPU adapter was found (on Linux, install a Vulkan driver such as mesa-vulkan-drivers)";
    probe::<covdiff_model::backends::Wgpu>(&device, "wgpu", hint)?;
    job.run::<covdiff_model::backends::Wgpu>(device)
}

#[cfg(not(feature = "wgpu"))]
fn run_wgpu<J: BackendJob>(_: J) -> Result<J::Output> {
    bail!("this covdiff was built without the wgpu backend: rebuild with --features wgpu")
}

#[cfg(feature = "cuda")]
fn run_cuda<J: BackendJob>(job: J) -> Result<J::Output> {
    let device = burn::backend::cuda::CudaDevice::default();
    let hint = "no usable NVIDIA GPU: the CUDA driver (libcuda) or a device is missing";
    probe::<covdiff_model::backends::Cuda>(&device, "cuda", hint)?;
    job.run::<covdiff_model::backends::Cuda>(device)
}

#[cfg(not(feature = "cuda"))]
fn run_cuda<J: BackendJob>(_: J) -> Result<J::Output> {
    bail!("this covdiff was built without the cuda backend: rebuild with --features cuda")
}

/// Run one tiny computation; a backend that panics for want of a driver becomes an error.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn probe<B: Backend>(device: &B::Device, name: &str, hint: &str) -> Result<()> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = burn::tensor::Tensor::<B, 1>::ones([4], device);
        t.sum().into_scalar()
    }));
    std::panic::set_hook(previous);
    match outcome {
        Ok(_) => Ok(()),
        Err(payload) => {
            let why = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let why = why.lines().next().unwrap_or("").chars().take(300).collect::<String>();
            bail!(
                "the {name} device is unavailable: {hint}{}",
                if why.is_empty() { String::new() } else { format!(" ({why})") }
            )
        }
    }
}
