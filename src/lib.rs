//! loradock: an embeddable runtime that keeps one base LLM resident and serves many LoRA
//! fine-tunes of it.
//!
//! The crate is laid out by role (see `ARCHITECTURE.md` in the design notes):
//! - [`tensor`]: dtypes and quantized block formats.
//! - [`backend`]: compute kernels (CPU: SIMD chosen at run time, a persistent thread pool).
//! - [`model`]: HF safetensors and GGUF loading, the Llama-family forward pass.
//! - [`lora`]: PEFT adapter parsing, validation and unmerged application.
//! - [`kv`]: the KV cache.
//! - [`memory`]: the byte ledger (budget, reservations, high-water mark).
//! - [`store`]: adapter sources, verification and caches.
//! - [`tokenizer`], [`chat`], [`sampling`]: text ↔ ids, chat templates, token selection.
//! - [`generate`]: the prefill/decode loop that ties them together.
//! - [`store`]: adapter sources, digests, downloads and the disk and RAM caches.

#![warn(missing_docs)]

pub(crate) mod actors;
pub mod backend;
pub mod batcher;
pub mod chat;
pub mod cli;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod generate;
pub mod kv;
pub mod lora;
pub mod memory;
pub mod model;
pub mod runtime;
pub mod sampling;
pub mod store;
pub mod tensor;
pub mod tokenizer;

pub use error::{Error, Result};

#[cfg(test)]
mod test_util;
