//! The one error type of loradock: structured variants with the context a user needs to act.
//!
//! Every fallible function returns [`Result<T>`]. Variants name the file, tensor or
//! parameter at fault; `Display` gives one clear line. The C ABI maps these to status codes in
//! exactly one place (see `ffi/`).

use std::fmt;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in loradock, with enough context to name the culprit.
#[derive(Debug)]
pub enum Error {
    /// An I/O operation on `path` failed.
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying OS error.
        source: std::io::Error,
    },
    /// A file's bytes do not follow its format (truncated, bad offsets, bad magic...).
    Format {
        /// The file involved.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// A format feature we do not support (architecture, tensor type, file version...).
    Unsupported {
        /// The file or object involved.
        what: String,
        /// What is not supported.
        reason: String,
    },
    /// A tensor's shape disagrees with what the model configuration requires.
    ShapeMismatch {
        /// File or adapter the tensor comes from.
        source: String,
        /// Tensor name.
        tensor: String,
        /// Shape required.
        expected: Vec<usize>,
        /// Shape found.
        found: Vec<usize>,
    },
    /// A tensor the model needs is absent.
    MissingTensor {
        /// File or directory searched.
        source: String,
        /// Tensor name.
        tensor: String,
    },
    /// A configuration file or value is invalid.
    Config {
        /// File or object involved.
        source: String,
        /// What is wrong.
        reason: String,
    },
    /// An adapter cannot be used as given.
    Adapter {
        /// Adapter path or name.
        adapter: String,
        /// Tensor involved, if any.
        tensor: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// Text could not be tokenized, detokenized or templated.
    Tokenizer {
        /// What is wrong.
        reason: String,
    },
    /// A caller passed an invalid argument.
    InvalidArgument {
        /// Parameter name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The adapter store could not fetch or keep an adapter: a refused source (outside the
    /// configured roots, unknown scheme), an HTTP status, a size cap, a truncated body,
    /// unverified content, a cache failure.
    Store {
        /// The adapter source (path or URL) or cache entry involved.
        source: String,
        /// What is wrong.
        reason: String,
    },
    /// Fetched content does not hash to the digest the caller expected.
    DigestMismatch {
        /// The adapter source (path or URL).
        source: String,
        /// Digest expected (`sha256:<hex>`).
        expected: String,
        /// Digest of the bytes received.
        found: String,
    },
    /// A network operation ran past its time limit.
    Timeout {
        /// The URL involved.
        source: String,
        /// Which limit, in words (e.g. "no data for 300 ms").
        reason: String,
    },
    /// A bounded queue or batch is full; try again later.
    Busy {
        /// What is full.
        what: String,
        /// Its limit.
        limit: usize,
    },
    /// No adapter is registered under this name.
    UnknownAdapter {
        /// The name asked for.
        name: String,
    },
    /// The runtime is shut down (or stopped after too many actor failures) and takes no work.
    ShutDown {
        /// Why, in words.
        reason: String,
    },
    /// A reservation does not fit under a ledger's budget (the red line).
    OverBudget {
        /// The ledger ("cpu", "cuda:0", "host").
        ledger: String,
        /// What the bytes were for.
        category: &'static str,
        /// Bytes asked for.
        requested: u64,
        /// Bytes free at the time.
        free: u64,
        /// The budget.
        budget: u64,
    },
    /// A compute device (a CUDA GPU) failed or cannot be used: no driver, a driver too old,
    /// a kernel that did not load, a failed launch or copy.
    Device {
        /// The device ("cuda", "cuda:0").
        device: String,
        /// What went wrong, in words.
        reason: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// An [`Error::Format`] for `path`.
    pub fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Format { path: path.into(), reason: reason.into() }
    }

    /// An [`Error::Config`].
    pub fn config(source: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config { source: source.into(), reason: reason.into() }
    }

    /// An [`Error::Unsupported`].
    pub fn unsupported(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Unsupported { what: what.into(), reason: reason.into() }
    }

    /// An [`Error::Adapter`] without a tensor.
    pub fn adapter(adapter: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Adapter { adapter: adapter.into(), tensor: None, reason: reason.into() }
    }

    /// An [`Error::InvalidArgument`].
    pub fn invalid(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { name: name.into(), reason: reason.into() }
    }

    /// An [`Error::Device`].
    pub fn device(device: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Device { device: device.into(), reason: reason.into() }
    }

    /// An [`Error::Tokenizer`].
    pub fn tokenizer(reason: impl Into<String>) -> Self {
        Error::Tokenizer { reason: reason.into() }
    }

    /// An [`Error::Store`].
    pub fn store(source: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Store { source: source.into(), reason: reason.into() }
    }
}

fn dims(d: &[usize]) -> String {
    let parts: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {}", path.display(), source),
            Error::Format { path, reason } => write!(f, "{}: malformed file: {}", path.display(), reason),
            Error::Unsupported { what, reason } => write!(f, "{what}: unsupported: {reason}"),
            Error::ShapeMismatch { source, tensor, expected, found } => write!(
                f,
                "{source}: tensor '{tensor}' has shape {} but {} is required",
                dims(found),
                dims(expected)
            ),
            Error::MissingTensor { source, tensor } => {
                write!(f, "{source}: required tensor '{tensor}' is missing")
            }
            Error::Config { source, reason } => write!(f, "{source}: invalid configuration: {reason}"),
            Error::Adapter { adapter, tensor: Some(t), reason } => {
                write!(f, "adapter {adapter}: tensor '{t}': {reason}")
            }
            Error::Adapter { adapter, tensor: None, reason } => write!(f, "adapter {adapter}: {reason}"),
            Error::Tokenizer { reason } => write!(f, "tokenizer: {reason}"),
            Error::InvalidArgument { name, reason } => write!(f, "invalid argument '{name}': {reason}"),
            Error::Store { source, reason } => write!(f, "{source}: {reason}"),
            Error::DigestMismatch { source, expected, found } => {
                write!(f, "{source}: digest mismatch: expected {expected}, found {found}")
            }
            Error::Timeout { source, reason } => write!(f, "{source}: timed out: {reason}"),
            Error::Busy { what, limit } => write!(f, "busy: the {what} is full ({limit} at most)"),
            Error::UnknownAdapter { name } => write!(f, "no adapter is registered as '{name}'"),
            Error::ShutDown { reason } => write!(f, "the runtime takes no more work: {reason}"),
            Error::OverBudget { ledger, category, requested, free, budget } => write!(
                f,
                "{ledger}: {requested} bytes of {category} do not fit under the budget ({free} free of {budget})"
            ),
            Error::Device { device, reason } => write!(f, "{device}: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_culprit() {
        let e = Error::ShapeMismatch {
            source: "a.safetensors".into(),
            tensor: "w".into(),
            expected: vec![2, 3],
            found: vec![3, 2],
        };
        assert_eq!(e.to_string(), "a.safetensors: tensor 'w' has shape [3, 2] but [2, 3] is required");
        let e = Error::io("x/y", std::io::Error::new(std::io::ErrorKind::NotFound, "gone"));
        assert!(e.to_string().starts_with("x/y: "));
        assert!(std::error::Error::source(&e).is_some());
    }
}
