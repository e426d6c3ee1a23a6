//! Text ↔ token ids, from an HF model directory (`tokenizer.json`) or a GGUF vocabulary.
//!
//! Both sources end up as one [`Tokenizer`] wrapping a real `tokenizers::Tokenizer`:
//! - [`Tokenizer::from_hf_dir`] reads `tokenizer.json` exactly as transformers does, plus the
//!   special tokens and chat template from `tokenizer_config.json` and the end-of-generation ids
//!   from `generation_config.json`.
//! - [`Tokenizer::from_gguf_vocab`] builds the tokenizer in code from the `tokenizer.ggml.*`
//!   metadata, reproducing llama.cpp's tokenizer for the vocabulary's model (`gpt2` byte-level
//!   BPE or `llama` SentencePiece BPE) and pre-tokenizer (`tokenizer.ggml.pre`), so that ids
//!   match `llama_tokenize` (see `gguf.rs` for how each pre-tokenizer is assembled).
//!
//! Special tokens written in the text (`<|im_start|>`, `<s>`…) are always parsed as special
//! tokens: chat templates render them as text and rely on that.
//!
//! Thread safety: a [`Tokenizer`] is immutable after construction, `Send + Sync`, and can be
//! shared by reference between threads.

mod gguf;
mod hf;
mod metadata;
mod stream;

#[cfg(test)]
mod fixture_tests;

pub(crate) use metadata::{gguf_vocab_from_metadata, GgufMetadata};
pub use stream::StreamDecoder;

use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Vocabulary as stored in GGUF metadata (filled by the GGUF loader from `tokenizer.ggml.*` keys).
///
/// Only `model` and `tokens` are required; every other field mirrors an optional key and `None`
/// means the key is absent (llama.cpp's defaults then apply, see [`Tokenizer::from_gguf_vocab`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`: the pre-tokenizer of a `gpt2` model, e.g. `"smollm"`, `"llama-bpe"`,
    /// `"default"`, `"qwen2"`, `"gpt-2"`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: token texts, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`: one score per token (SentencePiece merge priority).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type`: one type per token, see the `TYPE_*` constants.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"left right"` strings, highest priority first (`gpt2` models).
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` (end of turn).
    pub eot_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece models).
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

impl GgufVocab {
    /// Token type: an ordinary token.
    pub const TYPE_NORMAL: i32 = 1;
    /// Token type: the unknown token.
    pub const TYPE_UNKNOWN: i32 = 2;
    /// Token type: a control token (`<s>`, `<|im_start|>`…), parsed as special in text.
    pub const TYPE_CONTROL: i32 = 3;
    /// Token type: a user-defined token, always matched as a whole in text.
    pub const TYPE_USER_DEFINED: i32 = 4;
    /// Token type: an unused slot.
    pub const TYPE_UNUSED: i32 = 5;
    /// Token type: a byte token `<0xNN>` (SentencePiece byte fallback).
    pub const TYPE_BYTE: i32 = 6;

    /// The type of token `id` ([`GgufVocab::TYPE_NORMAL`] when the vocabulary has no types).
    pub fn token_type(&self, id: usize) -> i32 {
        self.token_types.as_ref().and_then(|t| t.get(id).copied()).unwrap_or(Self::TYPE_NORMAL)
    }
}

/// Texts of tokens that end generation wherever they exist in a vocabulary (llama.cpp keeps
/// the same list: chat models end a turn with these even when `eos` names another token).
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// Special-token facts gathered from a source, before they are resolved against the vocabulary.
#[derive(Debug, Default)]
struct Specials {
    bos_id: Option<u32>,
    add_bos: bool,
    /// End-of-generation ids in priority order (the primary EOS first); duplicates allowed.
    eos_ids: Vec<u32>,
    chat_template: Option<String>,
}

/// A tokenizer for one model: encode, decode, special tokens and chat template.
///
/// Immutable once built; `Send + Sync`.
#[derive(Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// A copy of `inner` that encodes special-token texts as plain text, made on first use.
    plain: OnceLock<tokenizers::Tokenizer>,
    vocab_size: usize,
    bos_id: Option<u32>,
    add_bos: bool,
    eos_ids: Vec<u32>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    chat_template: Option<String>,
}

impl Tokenizer {
    /// Loads the tokenizer of an HF model directory.
    ///
    /// Reads `tokenizer.json` (required; an error names the path when it is missing or
    /// corrupt), `tokenizer_config.json` (`bos_token`, `eos_token`, `add_bos_token`,
    /// `chat_template` as a string or a list of `{name, template}`) and
    /// `generation_config.json` (`eos_token_id`, an integer or a list) when present, and a
    /// `chat_template.jinja` file when the config has no template.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let (inner, specials) = hf::load(dir)?;
        Self::assemble(inner, specials)
    }

    /// Builds the tokenizer described by GGUF metadata, matching llama.cpp's `llama_tokenize`.
    ///
    /// `gpt2` vocabularies become a byte-level BPE whose pre-tokenizer follows
    /// `tokenizer.ggml.pre` (`default`, `gpt-2`, `smollm`, `llama-bpe`/`llama3`, `qwen2` and
    /// their llama.cpp aliases); an unknown `pre` is an error naming it. `llama` vocabularies
    /// become a SentencePiece-style BPE with byte fallback, merges derived from the scores.
    /// Control, user-defined and unknown tokens are parsed as whole tokens in text.
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Self> {
        let built = gguf::build(v)?;
        let n = v.tokens.len();
        let in_range = |what: &str, id: Option<u32>| -> Option<u32> {
            match id {
                Some(id) if (id as usize) < n => Some(id),
                Some(id) => {
                    log::warn!("GGUF vocab: {what} id {id} is outside the vocabulary ({n} tokens); ignored");
                    None
                }
                None => None,
            }
        };
        let bos_id = in_range("bos", v.bos_id);
        let mut eos_ids: Vec<u32> = Vec::new();
        eos_ids.extend(in_range("eos", v.eos_id));
        eos_ids.extend(in_range("eot", v.eot_id));
        let add_bos = v.add_bos.unwrap_or(built.add_bos_default);
        if add_bos && bos_id.is_none() {
            log::warn!("GGUF vocab: add_bos_token is true but no bos token is set; BOS is not added");
        }
        let specials = Specials { bos_id, add_bos, eos_ids, chat_template: v.chat_template.clone() };
        Self::assemble(built.inner, specials)
    }

    /// Resolves the special tokens against the vocabulary and computes derived facts.
    fn assemble(inner: tokenizers::Tokenizer, specials: Specials) -> Result<Self> {
        let max_added = inner.get_added_tokens_decoder().keys().max().map_or(0, |&id| id as usize + 1);
        let vocab_size = inner.get_vocab_size(false).max(max_added);
        if vocab_size == 0 {
            return Err(Error::tokenizer("the vocabulary is empty"));
        }
        let mut eos_ids: Vec<u32> = Vec::new();
        let candidates = specials
            .eos_ids
            .iter()
            .copied()
            .chain(END_OF_GENERATION_TEXTS.iter().filter_map(|text| inner.token_to_id(text)));
        for id in candidates {
            if (id as usize) < vocab_size && !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        if eos_ids.is_empty() {
            log::warn!("tokenizer: no end-of-generation token found; generation stops only at its limit");
        }
        let bos_id = specials.bos_id.filter(|&id| (id as usize) < vocab_size);
        let bos_token = bos_id.and_then(|id| inner.id_to_token(id));
        let eos_token = eos_ids.first().and_then(|&id| inner.id_to_token(id));
        Ok(Tokenizer {
            inner,
            plain: OnceLock::new(),
            vocab_size,
            bos_id,
            add_bos: specials.add_bos && bos_id.is_some(),
            eos_ids,
            bos_token,
            eos_token,
            chat_template: specials.chat_template,
        })
    }

    /// Encodes `text` into token ids.
    ///
    /// Special tokens written in the text are parsed as special tokens. With `add_bos`, the
    /// BOS token is prepended only if the model defines one and its configuration asks for it
    /// (`add_bos_token`); an EOS is never appended.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        self.encode_with(&self.inner, text, add_bos)
    }

    /// Like [`Tokenizer::encode`], but special-token texts (`<|im_start|>`, `<s>`…) are
    /// encoded as ordinary text, so untrusted input cannot inject control tokens.
    /// User-defined added tokens are still matched (llama.cpp's `parse_special = false`).
    pub fn encode_plain(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let plain = self.plain.get_or_init(|| {
            let mut plain = self.inner.clone();
            plain.set_encode_special_tokens(true);
            plain
        });
        self.encode_with(plain, text, add_bos)
    }

    fn encode_with(&self, tok: &tokenizers::Tokenizer, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let encoding =
            tok.encode_fast(text, false).map_err(|e| Error::tokenizer(format!("cannot encode text: {e}")))?;
        let ids = encoding.get_ids();
        let mut out = Vec::with_capacity(ids.len() + 1);
        if add_bos && self.add_bos {
            out.extend(self.bos_id);
        }
        out.extend_from_slice(ids);
        Ok(out)
    }

    /// Decodes `ids` into text; with `skip_special`, special tokens (BOS, EOS, `<|im_end|>`…)
    /// are left out. An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.check_ids(ids)?;
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::tokenizer(format!("cannot decode {} ids: {e}", ids.len())))
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            Some(id) => Err(Error::tokenizer(format!(
                "token id {id} is outside the vocabulary ({} tokens)",
                self.vocab_size
            ))),
            None => Ok(()),
        }
    }

    /// Number of token ids (one more than the largest id, added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The BOS token id, if the model defines one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Whether [`Tokenizer::encode`] with `add_bos = true` prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Every id that ends generation: the EOS first, then EOT, the ids of
    /// `generation_config.json`, and tokens such as `<|im_end|>` or `<|eot_id|>` when the
    /// vocabulary has them. No duplicates.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` ends generation (one of [`Tokenizer::eos_ids`]).
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// The chat template (Jinja source), if the model ships one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The BOS token's text, e.g. `"<s>"`.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The primary EOS token's text, e.g. `"<|im_end|>"`.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The id of a token given its exact vocabulary text (special tokens included).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary text of token `id` (byte-level tokens are shown in their `Ġ` form).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// An incremental detokenizer for streaming generated ids as text; it skips special
    /// tokens (see [`StreamDecoder::with_special`]).
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }
}

#[cfg(test)]
pub(crate) mod test_vocab {
    //! Tiny vocabularies built in code for unit tests.

    use super::GgufVocab;
    use std::collections::HashMap;

    /// The GPT-2 byte ↔ unicode map (printable bytes map to themselves).
    pub fn byte_to_char() -> HashMap<u8, char> {
        let mut map = HashMap::new();
        let mut n = 0u32;
        for b in 0..=255u8 {
            let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
            let c = if printable {
                char::from(b)
            } else {
                n += 1;
                char::from_u32(255 + n).expect("code points 256..=323 are valid chars")
            };
            map.insert(b, c);
        }
        map
    }

    /// The byte-level form of `s` (each UTF-8 byte as its GPT-2 char).
    pub fn byte_level(s: &str) -> String {
        let map = byte_to_char();
        s.bytes().map(|b| map[&b]).collect()
    }

    /// A `gpt2` vocabulary: three control tokens, all 256 bytes, and merges forming
    /// `" the"`, `"he"`, `"ll"`, `"hello"`, `"12"`.
    pub fn gpt2(pre: &str) -> GgufVocab {
        let mut tokens: Vec<String> =
            vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
        let mut types = vec![GgufVocab::TYPE_CONTROL; 3];
        let map = byte_to_char();
        for b in 0..=255u8 {
            tokens.push(map[&b].to_string());
            types.push(GgufVocab::TYPE_NORMAL);
        }
        let merges = ["Ġ t", "h e", "Ġt he", "l l", "he ll", "hell o", "1 2"];
        for m in merges {
            tokens.push(m.replace(' ', ""));
            types.push(GgufVocab::TYPE_NORMAL);
        }
        GgufVocab {
            model: "gpt2".into(),
            pre: Some(pre.into()),
            tokens,
            token_types: Some(types),
            merges: Some(merges.iter().map(|s| s.to_string()).collect()),
            bos_id: Some(1),
            eos_id: Some(2),
            unk_id: Some(0),
            add_bos: Some(false),
            chat_template: Some("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}".into()),
            ..GgufVocab::default()
        }
    }

    /// A `llama` (SentencePiece) vocabulary: `<unk> <s> </s>`, 256 byte tokens, then pieces
    /// whose scores make `▁hello` and `▁world` whole tokens.
    pub fn spm() -> GgufVocab {
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        let mut types = vec![GgufVocab::TYPE_UNKNOWN, GgufVocab::TYPE_CONTROL, GgufVocab::TYPE_CONTROL];
        let mut scores = vec![0.0f32; 3];
        for b in 0..=255u32 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(GgufVocab::TYPE_BYTE);
            scores.push(0.0);
        }
        let pieces = [
            "▁", "h", "e", "l", "o", "w", "r", "d", "a", "b", "ll", "he", "▁h", "▁he", "llo", "▁hello", "or",
            "▁w", "▁wor", "ld", "▁world", "é",
        ];
        for (i, p) in pieces.iter().enumerate() {
            tokens.push(p.to_string());
            types.push(GgufVocab::TYPE_NORMAL);
            // Longer pieces listed later get higher scores, like a trained SentencePiece model.
            scores.push(-100.0 + i as f32);
        }
        GgufVocab {
            model: "llama".into(),
            tokens,
            scores: Some(scores),
            token_types: Some(types),
            bos_id: Some(1),
            eos_id: Some(2),
            unk_id: Some(0),
            ..GgufVocab::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_vocab::{byte_level, gpt2, spm};
    use super::*;

    #[test]
    fn tokenizer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
    }

    #[test]
    fn gpt2_encode_decode_roundtrip() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("tiny vocab builds");
        let ids = tok.encode("hello the 12", false).expect("encodes");
        let hello = tok.token_to_id("hello").expect("merged token");
        let the = tok.token_to_id(&byte_level(" the")).expect("merged token");
        assert_eq!(ids[0], hello);
        assert_eq!(ids[1], the);
        assert_eq!(tok.decode(&ids, false).expect("decodes"), "hello the 12");
    }

    #[test]
    fn special_tokens_in_text_are_parsed() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("tiny vocab builds");
        let ids = tok.encode("<|im_start|>hello<|im_end|>", false).expect("encodes");
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(ids.last(), Some(&2));
        assert_eq!(ids.len(), 3);
        assert_eq!(tok.decode(&ids, true).expect("decodes"), "hello");
        assert_eq!(tok.decode(&ids, false).expect("decodes"), "<|im_start|>hello<|im_end|>");
    }

    #[test]
    fn encode_plain_does_not_parse_special_tokens() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("tiny vocab builds");
        let ids = tok.encode_plain("<|im_start|>hello", false).expect("encodes");
        assert!(!ids.contains(&1));
        assert_eq!(tok.decode(&ids, true).expect("decodes"), "<|im_start|>hello");
        // The parsing copy does not leak into `encode`.
        assert_eq!(tok.encode("<|im_start|>hello", false).expect("encodes")[0], 1);
    }

    #[test]
    fn bos_is_added_only_when_wanted() {
        let mut v = gpt2("gpt-2");
        let tok = Tokenizer::from_gguf_vocab(&v).expect("builds");
        assert!(!tok.adds_bos());
        assert_eq!(tok.encode("hello", true).expect("encodes").len(), 1);
        v.add_bos = Some(true);
        let tok = Tokenizer::from_gguf_vocab(&v).expect("builds");
        assert_eq!(tok.encode("hello", true).expect("encodes"), vec![1, tok.token_to_id("hello").unwrap()]);
        assert_eq!(tok.encode("hello", false).expect("encodes").len(), 1);
        v.bos_id = None;
        let tok = Tokenizer::from_gguf_vocab(&v).expect("builds without a bos");
        assert_eq!(tok.bos_id(), None);
        assert_eq!(tok.encode("hello", true).expect("encodes").len(), 1);
    }

    #[test]
    fn eos_ids_collect_every_end_of_generation_token() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        // eos (<|im_end|>) first, then <|endoftext|> found by its text.
        assert_eq!(tok.eos_ids(), &[2, 0]);
        assert!(tok.is_eos(0) && tok.is_eos(2) && !tok.is_eos(1));
        assert_eq!(tok.eos_token(), Some("<|im_end|>"));
        assert_eq!(tok.bos_token(), Some("<|im_start|>"));
        assert!(tok.chat_template().is_some());
    }

    #[test]
    fn out_of_range_special_ids_are_ignored() {
        let mut v = gpt2("gpt-2");
        v.bos_id = Some(1_000_000);
        v.eos_id = Some(1_000_001);
        let tok = Tokenizer::from_gguf_vocab(&v).expect("builds");
        assert_eq!(tok.bos_id(), None);
        // Only the end-of-generation texts remain, in the list's order.
        assert_eq!(tok.eos_ids(), &[2, 0]);
    }

    #[test]
    fn decode_rejects_ids_outside_the_vocabulary() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        let n = tok.vocab_size() as u32;
        let err = tok.decode(&[3, n], false).expect_err("id out of range");
        assert!(err.to_string().contains(&n.to_string()), "{err}");
    }

    #[test]
    fn empty_text_encodes_to_nothing() {
        let tok = Tokenizer::from_gguf_vocab(&spm()).expect("builds");
        assert_eq!(tok.encode("", false).expect("encodes"), Vec::<u32>::new());
        assert_eq!(tok.encode("", true).expect("encodes"), vec![1]);
        assert_eq!(tok.decode(&[], false).expect("decodes"), "");
    }
}
