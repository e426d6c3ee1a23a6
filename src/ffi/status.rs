//! Status codes of the C ABI and the one place errors map to them.

use crate::error::Error;
use crate::runtime::ErrorKind;

/// What a C call returned. Values are banded by class and never reused:
/// 0 success; 1xx the caller's arguments; 2xx lookups, streams and lifecycle; 3xx capacity;
/// 4xx files and formats; 5xx fetching adapters; 6xx consumers; 9xx internal failures.
#[allow(non_camel_case_types)]
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum loradock_status {
    /// Success.
    LORADOCK_STATUS_OK = 0,
    /// A required pointer argument was NULL.
    LORADOCK_STATUS_NULL_ARGUMENT = 100,
    /// An argument's value is invalid (range, syntax, combination).
    LORADOCK_STATUS_INVALID_ARGUMENT = 101,
    /// A string argument is not valid UTF-8.
    LORADOCK_STATUS_INVALID_UTF8 = 102,
    /// A params struct's `struct_size` is smaller than the first version of the struct.
    LORADOCK_STATUS_STRUCT_SIZE = 103,
    /// The output buffer was too small; what fit was written (NUL-terminated).
    LORADOCK_STATUS_BUFFER_TOO_SMALL = 104,
    /// No adapter is registered under the name given.
    LORADOCK_STATUS_UNKNOWN_ADAPTER = 200,
    /// The runtime is shut down (or stopped after repeated failures).
    LORADOCK_STATUS_SHUT_DOWN = 201,
    /// `loradock_stream_next`: no event within the time-out; the request goes on.
    LORADOCK_STATUS_TIMEOUT = 202,
    /// `loradock_stream_next`: the terminal event was already delivered.
    LORADOCK_STATUS_STREAM_ENDED = 203,
    /// A bounded queue is full; try again later.
    LORADOCK_STATUS_BUSY = 300,
    /// The work does not fit under the memory budget.
    LORADOCK_STATUS_OVER_BUDGET = 301,
    /// A file could not be read or written.
    LORADOCK_STATUS_IO = 400,
    /// A file is malformed.
    LORADOCK_STATUS_FORMAT = 401,
    /// A format feature is not supported.
    LORADOCK_STATUS_UNSUPPORTED = 402,
    /// A tensor's shape does not fit the model.
    LORADOCK_STATUS_SHAPE_MISMATCH = 403,
    /// A required tensor is missing.
    LORADOCK_STATUS_MISSING_TENSOR = 404,
    /// A configuration file or value is invalid.
    LORADOCK_STATUS_CONFIG = 405,
    /// An adapter cannot be used (refused variant, bad tensor, wrong target).
    LORADOCK_STATUS_ADAPTER = 406,
    /// Text could not be tokenized or templated.
    LORADOCK_STATUS_TOKENIZER = 407,
    /// The store could not fetch an adapter (refused source, HTTP error, unverifiable).
    LORADOCK_STATUS_FETCH = 500,
    /// Fetched content does not match the expected digest.
    LORADOCK_STATUS_DIGEST_MISMATCH = 501,
    /// A fetch ran past its time limit.
    LORADOCK_STATUS_FETCH_TIMEOUT = 502,
    /// The consumer did not read its stream in time; the request was ended.
    LORADOCK_STATUS_SLOW_CONSUMER = 600,
    /// A runtime component failed (it was restarted).
    LORADOCK_STATUS_INTERNAL = 900,
    /// A Rust panic was caught at the C boundary.
    LORADOCK_STATUS_PANIC = 901,
    /// A compute device (GPU) failed or cannot be used.
    LORADOCK_STATUS_DEVICE = 902,
}

use loradock_status as S;

/// All statuses, for `loradock_status_str` and tests.
pub(crate) const ALL: [loradock_status; 27] = [
    S::LORADOCK_STATUS_OK,
    S::LORADOCK_STATUS_NULL_ARGUMENT,
    S::LORADOCK_STATUS_INVALID_ARGUMENT,
    S::LORADOCK_STATUS_INVALID_UTF8,
    S::LORADOCK_STATUS_STRUCT_SIZE,
    S::LORADOCK_STATUS_BUFFER_TOO_SMALL,
    S::LORADOCK_STATUS_UNKNOWN_ADAPTER,
    S::LORADOCK_STATUS_SHUT_DOWN,
    S::LORADOCK_STATUS_TIMEOUT,
    S::LORADOCK_STATUS_STREAM_ENDED,
    S::LORADOCK_STATUS_BUSY,
    S::LORADOCK_STATUS_OVER_BUDGET,
    S::LORADOCK_STATUS_IO,
    S::LORADOCK_STATUS_FORMAT,
    S::LORADOCK_STATUS_UNSUPPORTED,
    S::LORADOCK_STATUS_SHAPE_MISMATCH,
    S::LORADOCK_STATUS_MISSING_TENSOR,
    S::LORADOCK_STATUS_CONFIG,
    S::LORADOCK_STATUS_ADAPTER,
    S::LORADOCK_STATUS_TOKENIZER,
    S::LORADOCK_STATUS_FETCH,
    S::LORADOCK_STATUS_DIGEST_MISMATCH,
    S::LORADOCK_STATUS_FETCH_TIMEOUT,
    S::LORADOCK_STATUS_SLOW_CONSUMER,
    S::LORADOCK_STATUS_INTERNAL,
    S::LORADOCK_STATUS_PANIC,
    S::LORADOCK_STATUS_DEVICE,
];

impl loradock_status {
    /// The NUL-terminated name (`"LORADOCK_STATUS_OK"`…).
    pub(crate) fn name(self) -> &'static std::ffi::CStr {
        match self {
            S::LORADOCK_STATUS_OK => c"LORADOCK_STATUS_OK",
            S::LORADOCK_STATUS_NULL_ARGUMENT => c"LORADOCK_STATUS_NULL_ARGUMENT",
            S::LORADOCK_STATUS_INVALID_ARGUMENT => c"LORADOCK_STATUS_INVALID_ARGUMENT",
            S::LORADOCK_STATUS_INVALID_UTF8 => c"LORADOCK_STATUS_INVALID_UTF8",
            S::LORADOCK_STATUS_STRUCT_SIZE => c"LORADOCK_STATUS_STRUCT_SIZE",
            S::LORADOCK_STATUS_BUFFER_TOO_SMALL => c"LORADOCK_STATUS_BUFFER_TOO_SMALL",
            S::LORADOCK_STATUS_UNKNOWN_ADAPTER => c"LORADOCK_STATUS_UNKNOWN_ADAPTER",
            S::LORADOCK_STATUS_SHUT_DOWN => c"LORADOCK_STATUS_SHUT_DOWN",
            S::LORADOCK_STATUS_TIMEOUT => c"LORADOCK_STATUS_TIMEOUT",
            S::LORADOCK_STATUS_STREAM_ENDED => c"LORADOCK_STATUS_STREAM_ENDED",
            S::LORADOCK_STATUS_BUSY => c"LORADOCK_STATUS_BUSY",
            S::LORADOCK_STATUS_OVER_BUDGET => c"LORADOCK_STATUS_OVER_BUDGET",
            S::LORADOCK_STATUS_IO => c"LORADOCK_STATUS_IO",
            S::LORADOCK_STATUS_FORMAT => c"LORADOCK_STATUS_FORMAT",
            S::LORADOCK_STATUS_UNSUPPORTED => c"LORADOCK_STATUS_UNSUPPORTED",
            S::LORADOCK_STATUS_SHAPE_MISMATCH => c"LORADOCK_STATUS_SHAPE_MISMATCH",
            S::LORADOCK_STATUS_MISSING_TENSOR => c"LORADOCK_STATUS_MISSING_TENSOR",
            S::LORADOCK_STATUS_CONFIG => c"LORADOCK_STATUS_CONFIG",
            S::LORADOCK_STATUS_ADAPTER => c"LORADOCK_STATUS_ADAPTER",
            S::LORADOCK_STATUS_TOKENIZER => c"LORADOCK_STATUS_TOKENIZER",
            S::LORADOCK_STATUS_FETCH => c"LORADOCK_STATUS_FETCH",
            S::LORADOCK_STATUS_DIGEST_MISMATCH => c"LORADOCK_STATUS_DIGEST_MISMATCH",
            S::LORADOCK_STATUS_FETCH_TIMEOUT => c"LORADOCK_STATUS_FETCH_TIMEOUT",
            S::LORADOCK_STATUS_SLOW_CONSUMER => c"LORADOCK_STATUS_SLOW_CONSUMER",
            S::LORADOCK_STATUS_INTERNAL => c"LORADOCK_STATUS_INTERNAL",
            S::LORADOCK_STATUS_PANIC => c"LORADOCK_STATUS_PANIC",
            S::LORADOCK_STATUS_DEVICE => c"LORADOCK_STATUS_DEVICE",
        }
    }

    /// The status of a raw value, if it is one.
    pub(crate) fn from_raw(v: i32) -> Option<loradock_status> {
        ALL.iter().copied().find(|s| *s as i32 == v)
    }
}

/// The status of an error: the only mapping from [`Error`] to C.
pub(crate) fn of_error(e: &Error) -> loradock_status {
    match e {
        Error::Io { .. } => S::LORADOCK_STATUS_IO,
        Error::Format { .. } => S::LORADOCK_STATUS_FORMAT,
        Error::Unsupported { .. } => S::LORADOCK_STATUS_UNSUPPORTED,
        Error::ShapeMismatch { .. } => S::LORADOCK_STATUS_SHAPE_MISMATCH,
        Error::MissingTensor { .. } => S::LORADOCK_STATUS_MISSING_TENSOR,
        Error::Config { .. } => S::LORADOCK_STATUS_CONFIG,
        Error::Adapter { .. } => S::LORADOCK_STATUS_ADAPTER,
        Error::Tokenizer { .. } => S::LORADOCK_STATUS_TOKENIZER,
        Error::InvalidArgument { .. } => S::LORADOCK_STATUS_INVALID_ARGUMENT,
        Error::Store { .. } => S::LORADOCK_STATUS_FETCH,
        Error::DigestMismatch { .. } => S::LORADOCK_STATUS_DIGEST_MISMATCH,
        Error::Timeout { .. } => S::LORADOCK_STATUS_FETCH_TIMEOUT,
        Error::Busy { .. } => S::LORADOCK_STATUS_BUSY,
        Error::UnknownAdapter { .. } => S::LORADOCK_STATUS_UNKNOWN_ADAPTER,
        Error::ShutDown { .. } => S::LORADOCK_STATUS_SHUT_DOWN,
        Error::OverBudget { .. } => S::LORADOCK_STATUS_OVER_BUDGET,
        Error::Device { .. } => S::LORADOCK_STATUS_DEVICE,
    }
}

/// The status an error event of a stream carries.
pub(crate) fn of_kind(k: ErrorKind) -> loradock_status {
    match k {
        ErrorKind::Fetch => S::LORADOCK_STATUS_FETCH,
        ErrorKind::Adapter => S::LORADOCK_STATUS_ADAPTER,
        ErrorKind::OverBudget => S::LORADOCK_STATUS_OVER_BUDGET,
        ErrorKind::Busy => S::LORADOCK_STATUS_BUSY,
        ErrorKind::SlowConsumer => S::LORADOCK_STATUS_SLOW_CONSUMER,
        ErrorKind::Internal => S::LORADOCK_STATUS_INTERNAL,
        ErrorKind::Shutdown => S::LORADOCK_STATUS_SHUT_DOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_named_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for s in ALL {
            assert!(seen.insert(s as i32), "{s:?} reuses a value");
            assert_eq!(loradock_status::from_raw(s as i32), Some(s));
            assert_eq!(s.name().to_str().unwrap(), format!("{s:?}"));
        }
        assert_eq!(loradock_status::from_raw(12345), None);
    }
}
