//! What a host asks the runtime for: a [`Request`] (input, adapters, sampling, limits) and
//! how adapters are named and kept.

use crate::chat::ChatMessage;
use crate::generate::GenerateParams;
use crate::lora::compose::Combination;
use crate::store::{Digest, Source};

/// How long a docked adapter stays docked once no request uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Policy {
    /// Undocked right after its last lease ends (the default).
    #[default]
    Disposable,
    /// Kept docked while memory allows; undocked least recently used first under pressure.
    KeepWarm,
    /// Never undocked while registered (counted against the budget).
    Pinned,
}

impl Policy {
    /// Parse `disposable`, `keep_warm` or `pinned`.
    pub fn parse(s: &str) -> crate::Result<Policy> {
        match s {
            "disposable" => Ok(Policy::Disposable),
            "keep_warm" => Ok(Policy::KeepWarm),
            "pinned" => Ok(Policy::Pinned),
            other => Err(crate::Error::invalid(
                "policy",
                format!("'{other}' is not one of disposable, keep_warm, pinned"),
            )),
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Disposable => "disposable",
            Policy::KeepWarm => "keep_warm",
            Policy::Pinned => "pinned",
        }
    }
}

/// One adapter a request uses.
#[derive(Debug, Clone)]
pub enum AdapterRef {
    /// An adapter registered under this name (the generation current at submit time).
    Named(String),
    /// An adapter named by source and digest, without registering it (policy: disposable).
    Inline {
        /// Where to fetch it.
        source: Source,
        /// What its content must hash to (required unless the store allows unverified
        /// content; `ipfs://` sources verify against their CID).
        digest: Option<Digest>,
    },
}

/// The text a request starts from.
#[derive(Debug, Clone)]
pub enum Input {
    /// Raw text, tokenized with a leading BOS where the model wants one.
    Prompt(String),
    /// Chat messages rendered with the model's chat template (generation prompt added).
    Chat(Vec<ChatMessage>),
    /// Token ids as they are.
    Tokens(Vec<u32>),
}

/// A generation request.
#[derive(Debug, Clone)]
pub struct Request {
    /// The input.
    pub input: Input,
    /// Adapters with their weights; empty = the base model.
    pub adapters: Vec<(AdapterRef, f32)>,
    /// How several adapters combine: [`Combination::Cat`] is the exact weighted sum, applied
    /// unmerged; other methods materialize a new adapter (cached by content).
    pub combination: Combination,
    /// Limits, sampling, stop strings.
    pub params: GenerateParams,
}

impl Request {
    /// A request for `prompt` on the base model with default parameters.
    pub fn prompt(text: impl Into<String>) -> Request {
        Request {
            input: Input::Prompt(text.into()),
            adapters: Vec::new(),
            combination: Combination::Cat,
            params: GenerateParams::default(),
        }
    }

    /// The same request with one more registered adapter at `weight`.
    pub fn with_adapter(mut self, name: impl Into<String>, weight: f32) -> Request {
        self.adapters.push((AdapterRef::Named(name.into()), weight));
        self
    }

    /// The same request with `max_tokens` as its limit.
    pub fn max_tokens(mut self, n: usize) -> Request {
        self.params.max_tokens = n;
        self
    }
}
