//! The CPU backend: a persistent thread pool, SIMD kernels chosen at run time (AVX2/FMA/F16C
//! with a portable fallback), and matrix products that work block by block on quantized
//! weights.

pub mod kernels;
pub mod matmul;
pub mod pool;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use kernels::Kernels;
pub use matmul::{matmul, matmul_many, MatJob, Workspace};
pub use pool::ThreadPool;
