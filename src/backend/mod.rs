//! Compute backends. The CPU backend is always present; the CUDA backend ([`cuda`]) is built
//! into every binary and used where [`cuda::probe`] finds a usable GPU.

pub mod cpu;
pub mod cuda;
