//! Integration tests: one binary (fewer link steps in CI), one module per area.

mod bad_input;
mod common;
mod gguf;
mod parity;
mod smollm2;
