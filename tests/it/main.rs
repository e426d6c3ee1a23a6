//! Integration tests: one binary (fewer link steps in CI), one module per area.

mod adapters;
mod bad_input;
mod batching;
mod cli;
mod common;
mod demo_adapters;
mod ffi_header;
mod formats;
mod gguf;
mod mixed;
mod parity;
mod prefix;
mod runtime;
mod smollm2;
mod store;
