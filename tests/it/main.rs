//! Integration tests: one binary (fewer link steps in CI), one module per area.

mod common;
mod parity;
