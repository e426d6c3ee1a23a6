//! Base models: configuration, file formats (HF safetensors directories and GGUF), weight
//! loading, and the Llama-family forward pass.

pub mod config;
pub mod gguf;
mod gguf_meta;
pub mod hf;
pub mod llama;
pub mod loader;
pub(crate) mod rope;

pub use config::{Arch, LlamaConfig, RopeScaling};
pub use llama::{Compute, LlamaModel, LogitsMode, SeqBatch};
pub use loader::{load_model, LoadOptions, LoadedModel};
