//! A base model together with its tokenizer and compute state: what the CLI and the runtime
//! load from one path.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::loader::Format;
use crate::model::{load_model, Compute, LoadOptions, LoadedModel};
use crate::tokenizer::{gguf_vocab_from_metadata, Tokenizer};

/// A loaded model, its tokenizer (when the files carry one) and where they came from.
pub struct Engine {
    /// The model and its source.
    pub loaded: LoadedModel,
    /// The tokenizer: from `tokenizer.json` in an HF directory, or the GGUF vocabulary.
    pub tokenizer: Option<Tokenizer>,
}

impl Engine {
    /// Load the model at `path` and its tokenizer. A missing tokenizer is not an error here
    /// (token-id work needs none); callers that need text check [`Engine::require_tokenizer`].
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Engine> {
        let loaded = load_model(path, opts)?;
        let tokenizer = match (&loaded.format, &loaded.gguf) {
            (Format::Gguf, Some(g)) => {
                if g.get("tokenizer.ggml.model").is_some() {
                    Some(Tokenizer::from_gguf_vocab(&gguf_vocab_from_metadata(g)?)?)
                } else {
                    None
                }
            }
            _ => {
                if path.join("tokenizer.json").exists() {
                    Some(Tokenizer::from_hf_dir(path)?)
                } else {
                    None
                }
            }
        };
        if let Some(t) = &tokenizer {
            if t.vocab_size() > loaded.model.config.vocab_size {
                return Err(Error::config(
                    path.display().to_string(),
                    format!(
                        "the tokenizer has {} tokens but the model's embedding only {} rows",
                        t.vocab_size(),
                        loaded.model.config.vocab_size
                    ),
                ));
            }
        }
        Ok(Engine { loaded, tokenizer })
    }

    /// The tokenizer, or an error saying the model files carry none.
    pub fn require_tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::tokenizer(format!(
                "{} has no tokenizer (tokenizer.json or GGUF vocabulary); pass token ids instead",
                self.loaded.path.display()
            ))
        })
    }

    /// Fresh compute state with `threads` threads (0 = all cores).
    pub fn compute(threads: usize) -> Compute {
        Compute::new(threads)
    }
}
