//! Reading a [`GgufVocab`] out of GGUF metadata, whatever parser holds it.
//!
//! The GGUF loader implements [`GgufMetadata`] for its key/value table; the `tokenizer.ggml.*`
//! key names and their validation live here, next to the code that uses them.

use super::GgufVocab;
use crate::error::{Error, Result};

/// Typed read access to a GGUF metadata table.
///
/// Each getter returns `Ok(None)` when the key is absent and an error naming the key when it
/// is present with another type. `uint` accepts any unsigned or non-negative signed integer
/// type; `bool` only booleans.
pub(crate) trait GgufMetadata {
    /// A string value.
    fn string(&self, key: &str) -> Result<Option<String>>;
    /// An integer value, widened to `u64`.
    fn uint(&self, key: &str) -> Result<Option<u64>>;
    /// A boolean value.
    fn boolean(&self, key: &str) -> Result<Option<bool>>;
    /// An array of strings.
    fn string_array(&self, key: &str) -> Result<Option<Vec<String>>>;
    /// An array of `f32` (also accepts `i32` arrays, converted, as llama.cpp does for scores).
    fn f32_array(&self, key: &str) -> Result<Option<Vec<f32>>>;
    /// An array of `i32`.
    fn i32_array(&self, key: &str) -> Result<Option<Vec<i32>>>;
}

/// Reads the `tokenizer.ggml.*` keys (and `tokenizer.chat_template`) into a [`GgufVocab`].
///
/// `tokenizer.ggml.model` and `tokenizer.ggml.tokens` are required; the other keys are
/// optional. A special-token id that does not fit in `u32` is an error.
pub(crate) fn gguf_vocab_from_metadata(meta: &dyn GgufMetadata) -> Result<GgufVocab> {
    const MODEL: &str = "tokenizer.ggml.model";
    const TOKENS: &str = "tokenizer.ggml.tokens";
    let model = meta.string(MODEL)?.ok_or_else(|| {
        Error::tokenizer(format!("GGUF metadata has no {MODEL}: the file carries no vocabulary"))
    })?;
    let tokens = meta
        .string_array(TOKENS)?
        .ok_or_else(|| Error::tokenizer(format!("GGUF metadata has no {TOKENS}")))?;
    let id = |key: &str| -> Result<Option<u32>> {
        match meta.uint(key)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| Error::tokenizer(format!("GGUF metadata {key} = {v} does not fit a token id"))),
        }
    };
    Ok(GgufVocab {
        model,
        pre: meta.string("tokenizer.ggml.pre")?,
        tokens,
        scores: meta.f32_array("tokenizer.ggml.scores")?,
        token_types: meta.i32_array("tokenizer.ggml.token_type")?,
        merges: meta.string_array("tokenizer.ggml.merges")?,
        bos_id: id("tokenizer.ggml.bos_token_id")?,
        eos_id: id("tokenizer.ggml.eos_token_id")?,
        eot_id: id("tokenizer.ggml.eot_token_id")?,
        unk_id: id("tokenizer.ggml.unknown_token_id")?,
        pad_id: id("tokenizer.ggml.padding_token_id")?,
        add_bos: meta.boolean("tokenizer.ggml.add_bos_token")?,
        add_eos: meta.boolean("tokenizer.ggml.add_eos_token")?,
        add_space_prefix: meta.boolean("tokenizer.ggml.add_space_prefix")?,
        chat_template: meta.string("tokenizer.chat_template")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A metadata table in memory.
    enum Value {
        Str(String),
        UInt(u64),
        Bool(bool),
        Strs(Vec<String>),
    }

    struct Table(HashMap<&'static str, Value>);

    fn wrong(key: &str) -> Error {
        Error::tokenizer(format!("{key}: wrong type"))
    }

    impl GgufMetadata for Table {
        fn string(&self, key: &str) -> Result<Option<String>> {
            match self.0.get(key) {
                None => Ok(None),
                Some(Value::Str(s)) => Ok(Some(s.clone())),
                Some(_) => Err(wrong(key)),
            }
        }
        fn uint(&self, key: &str) -> Result<Option<u64>> {
            match self.0.get(key) {
                None => Ok(None),
                Some(Value::UInt(v)) => Ok(Some(*v)),
                Some(_) => Err(wrong(key)),
            }
        }
        fn boolean(&self, key: &str) -> Result<Option<bool>> {
            match self.0.get(key) {
                None => Ok(None),
                Some(Value::Bool(v)) => Ok(Some(*v)),
                Some(_) => Err(wrong(key)),
            }
        }
        fn string_array(&self, key: &str) -> Result<Option<Vec<String>>> {
            match self.0.get(key) {
                None => Ok(None),
                Some(Value::Strs(v)) => Ok(Some(v.clone())),
                Some(_) => Err(wrong(key)),
            }
        }
        fn f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
            self.0.get(key).map_or(Ok(None), |_| Err(wrong(key)))
        }
        fn i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
            self.0.get(key).map_or(Ok(None), |_| Err(wrong(key)))
        }
    }

    fn minimal() -> Table {
        let mut t = HashMap::new();
        t.insert("tokenizer.ggml.model", Value::Str("gpt2".into()));
        t.insert("tokenizer.ggml.tokens", Value::Strs(vec!["a".into(), "b".into()]));
        t.insert("tokenizer.ggml.bos_token_id", Value::UInt(1));
        t.insert("tokenizer.ggml.add_bos_token", Value::Bool(false));
        Table(t)
    }

    #[test]
    fn reads_required_and_optional_keys() {
        let v = gguf_vocab_from_metadata(&minimal()).expect("valid table");
        assert_eq!(v.model, "gpt2");
        assert_eq!(v.tokens, ["a", "b"]);
        assert_eq!(v.bos_id, Some(1));
        assert_eq!(v.add_bos, Some(false));
        assert_eq!(v.eos_id, None);
        assert_eq!(v.merges, None);
    }

    #[test]
    fn missing_or_mistyped_keys_are_named() {
        let mut t = minimal();
        t.0.remove("tokenizer.ggml.tokens");
        let err = gguf_vocab_from_metadata(&t).expect_err("no tokens");
        assert!(err.to_string().contains("tokenizer.ggml.tokens"), "{err}");

        let mut t = minimal();
        t.0.remove("tokenizer.ggml.model");
        let err = gguf_vocab_from_metadata(&t).expect_err("no model");
        assert!(err.to_string().contains("tokenizer.ggml.model"), "{err}");

        let mut t = minimal();
        t.0.insert("tokenizer.ggml.eos_token_id", Value::Str("2".into()));
        let err = gguf_vocab_from_metadata(&t).expect_err("wrong type");
        assert!(err.to_string().contains("eos_token_id"), "{err}");

        let mut t = minimal();
        t.0.insert("tokenizer.ggml.eos_token_id", Value::UInt(u64::MAX));
        let err = gguf_vocab_from_metadata(&t).expect_err("too large");
        assert!(err.to_string().contains("does not fit"), "{err}");
    }
}
