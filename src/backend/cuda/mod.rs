//! The CUDA backend: the same engine on NVIDIA GPUs, on cudarc with the driver loaded at run
//! time, so one binary builds without a toolkit and runs on CPU-only and GPU machines alike.
//!
//! - [`probe`]: is there a usable GPU, and if not, why (never panics).
//! - [`ptx`]: the kernels (`kernels/*.cu`), compiled to PTX by NVRTC 13.0 and embedded.
//! - [`pack`]: weights in the kernels' layouts, with the CPU reference of their arithmetic.
//! - [`lora_plan`]: the index arrays of a mixed-adapter step (rows grouped by adapter).
//! - [`pages`]: the paged KV cache's page allocator and block tables.
//! - [`device`], [`kv_gpu`], [`lora_gpu`]: a GPU's context, ledger-charged buffers and kernels.
//! - [`model`]: the Llama forward pass on one GPU, checked against the CPU engine.

/// Push the arguments and launch a kernel loaded on `$dev`; every argument must be a reference
/// to a value that lives until the statement ends (named locals and buffers, never temporaries).
macro_rules! launch {
    ($dev:expr, $name:literal, $grid:expr, $block:expr, [$($arg:expr),* $(,)?]) => {{
        use cudarc::driver::PushKernelArg as _;
        let f = $dev.func($name)?;
        let mut b = $dev.stream.launch_builder(f);
        $( b.arg($arg); )*
        // SAFETY: the argument list follows the kernel's signature in kernels/README.md, and
        // the caller checked every buffer's length against the sizes the kernel will index.
        unsafe { b.launch($crate::backend::cuda::device::launch_cfg($grid, $block)) }
            .map(|_| ())
            .map_err(|e| $dev.fail($name, e))
    }};
}

pub mod device;
pub mod kv_gpu;
pub mod lora_gpu;
pub mod lora_plan;
pub mod model;
pub mod pack;
pub mod pages;
pub mod probe;
pub mod ptx;

#[cfg(test)]
mod parity;

pub use device::{CudaDevice, DeviceBuffer, GpuMatrix};
pub use probe::{probe, GpuInfo, Probe};
