//! The adapter store: adapter sources and the digests that name adapters. (Downloads, caches
//! and the `Store` itself follow.)

pub mod digest;
pub mod source;

pub use digest::Digest;
pub use source::{Layout, Source};
