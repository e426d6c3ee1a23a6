//! Tensors as the engine holds them: dtypes, ggml-compatible quantized blocks, and weight
//! matrices that are either mapped from a file in place or owned.

pub mod dtype;
pub mod kquant;
pub mod matrix;
pub mod quant;
pub mod storage;

pub use dtype::DType;
pub use matrix::QMatrix;
pub use storage::Storage;
