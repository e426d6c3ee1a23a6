//! Compute backends. The CPU backend is always present; a CUDA backend will sit beside it
//! behind the same entry points.

pub mod cpu;
