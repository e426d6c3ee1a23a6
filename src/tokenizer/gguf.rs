//! Builds a `tokenizers::Tokenizer` from a GGUF vocabulary, reproducing llama.cpp.
//!
//! Reference: llama.cpp `src/llama-vocab.cpp` (`llm_tokenizer_bpe`, `llm_tokenizer_spm`,
//! `llama_vocab::impl::load`) and `src/unicode.cpp` (`unicode_regex_split`).
//!
//! **`gpt2` (byte-level BPE).** llama.cpp splits text with a list of regexes applied in turn;
//! each regex cuts every piece into its matches *and* the gaps between them (HF's `Split` with
//! `Isolated` behaviour), then byte-level BPE runs on each piece with the GGUF merges. We build
//! the same thing from HF components: one `Split(regex, Isolated)` per llama.cpp regex, then
//! `ByteLevel` without its own regex, a BPE model, and a `ByteLevel` decoder.
//! - `smollm` (also `starcoder`, `refact`, `codeshell`): `\p{N}` — every digit its own piece —
//!   then the GPT-2 regex. llama.cpp runs the GPT-2 regex through a hand-written matcher whose
//!   behaviour equals the full HF regex (trailing `|\s+` included) except for unassigned code
//!   points, which it cuts one by one; our regex adds `\p{Cn}` for that. Checked against an
//!   independent port of llama.cpp's matcher on 20k random strings: no difference.
//! - `gpt-2` (also `phi-2`, `mpt`, `olmo`): the GPT-2 regex alone.
//! - `default` (or no `pre`): llama.cpp's four regexes (punctuation runs, GPT-2, `\p{N}+`,
//!   three ASCII digits).
//! - `llama-bpe`/`llama3` (also `llama-v3`, `falcon3`): the Llama-3 regex with llama.cpp's
//!   ASCII case classes instead of `(?i:…)`; whole words in the vocabulary skip merges, and BOS
//!   is added by default.
//! - `qwen2` (also `deepseek-r1-qwen`, `megrez`, `stablelm2`): the Qwen2 regex (single digits).
//!
//! **`llama` (SentencePiece BPE).** llama.cpp merges adjacent symbols whose concatenation is a
//! token, best score first, and falls back to `<0xNN>` byte tokens. We derive BPE merges from
//! the vocabulary and scores the way HF's SentencePiece converter does (a pair is a merge if the
//! concatenation is a token; merges ordered by the merged token's score), enable byte fallback,
//! and normalise spaces to `▁`, prefixing one `▁` to every text fragment when
//! `add_space_prefix` is on (llama.cpp prefixes the first fragment and every fragment after a
//! special token, i.e. all of them).
//!
//! Control, unknown and user-defined tokens (types 3, 2, 4) are added as whole tokens matched
//! before pre-tokenization; control and unknown ones are "special" (skipped on decode with
//! `skip_special`).

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, NormalizerWrapper, SplitDelimiterBehavior};

use super::GgufVocab;
use crate::error::{Error, Result};

/// The GPT-2 split as llama.cpp's hand-written matcher (`unicode_regex_split_custom_gpt2`) does
/// it: HF's `ByteLevel` regex, except that a code point with no Unicode category (`\p{Cn}`,
/// unassigned) is never part of a symbol run but a piece of its own.
const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}\p{Cn}]+|\s+(?!\S)|\s+|\p{Cn}";

/// Every number character its own piece (llama.cpp's first `smollm` regex).
const SINGLE_DIGIT_REGEX: &str = r"\p{N}";

/// llama.cpp's Llama-3 matcher (`unicode_regex_split_custom_llama3`): ASCII case classes
/// replace `(?i:…)` (which would also match `ſ`, `K`), and unassigned code points are pieces of
/// their own, as in [`GPT2_REGEX`].
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}\p{Cn}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+|\p{Cn}";

/// llama.cpp's Qwen2 regex (like Llama-3 but single digits; llama.cpp runs it through
/// `std::regex`, where unassigned code points behave as in this regex).
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's `default` pre-tokenizer: four regexes applied in turn.
const DEFAULT_REGEXES: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", r"[0-9][0-9][0-9]"];

/// The SentencePiece word-boundary mark.
const SPM_SPACE: &str = "\u{2581}";

/// A tokenizer built from GGUF metadata, with the model-family default for `add_bos`.
pub(super) struct Built {
    pub(super) inner: tokenizers::Tokenizer,
    /// llama.cpp's default when `tokenizer.ggml.add_bos_token` is absent.
    pub(super) add_bos_default: bool,
}

/// How a `gpt2` vocabulary pre-tokenizes, from `tokenizer.ggml.pre`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum PreTokenizer {
    Default,
    Gpt2,
    Smollm,
    Llama3,
    Qwen2,
}

impl PreTokenizer {
    fn from_name(pre: Option<&str>) -> Result<Self> {
        Ok(match pre {
            None => {
                log::warn!("GGUF vocab has no tokenizer.ggml.pre; using llama.cpp's 'default' pre-tokenizer");
                PreTokenizer::Default
            }
            Some("default") => PreTokenizer::Default,
            Some("gpt-2" | "phi-2" | "mpt" | "olmo") => PreTokenizer::Gpt2,
            Some("smollm" | "starcoder" | "refact" | "codeshell") => PreTokenizer::Smollm,
            Some("llama3" | "llama-v3" | "llama-bpe" | "falcon3") => PreTokenizer::Llama3,
            Some("qwen2" | "deepseek-r1-qwen" | "megrez" | "stablelm2") => PreTokenizer::Qwen2,
            Some(other) => {
                return Err(Error::unsupported(
                    "GGUF tokenizer",
                    format!(
                        "pre-tokenizer '{other}' (tokenizer.ggml.pre) is not supported; supported: default, \
                         gpt-2, smollm, llama-bpe/llama3, qwen2"
                    ),
                ))
            }
        })
    }

    fn regexes(self) -> Vec<&'static str> {
        match self {
            PreTokenizer::Default => DEFAULT_REGEXES.to_vec(),
            PreTokenizer::Gpt2 => vec![GPT2_REGEX],
            PreTokenizer::Smollm => vec![SINGLE_DIGIT_REGEX, GPT2_REGEX],
            PreTokenizer::Llama3 => vec![LLAMA3_REGEX],
            PreTokenizer::Qwen2 => vec![QWEN2_REGEX],
        }
    }

    /// llama.cpp: whole pieces found in the vocabulary skip BPE merges.
    fn ignore_merges(self) -> bool {
        self == PreTokenizer::Llama3
    }

    /// llama.cpp's `add_bos` default for this pre-tokenizer.
    fn add_bos_default(self) -> bool {
        self == PreTokenizer::Llama3
    }

    fn build(self) -> Result<PreTokenizerWrapper> {
        let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
        for regex in self.regexes() {
            let split = Split::new(
                tokenizers::pre_tokenizers::split::SplitPattern::Regex(regex.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| Error::tokenizer(format!("pre-tokenizer regex {regex:?} does not compile: {e}")))?;
            steps.push(split.into());
        }
        steps.push(ByteLevel::new(false, false, false).into());
        Ok(PreSequence::new(steps).into())
    }
}

/// Builds the tokenizer for `v`.
pub(super) fn build(v: &GgufVocab) -> Result<Built> {
    check_vocab(v)?;
    let tokens = token_texts(v);
    match v.model.as_str() {
        "gpt2" => build_gpt2(v, &tokens),
        "llama" => build_spm(v, &tokens),
        other => Err(Error::unsupported(
            "GGUF tokenizer",
            format!("tokenizer model '{other}' (tokenizer.ggml.model); supported: gpt2, llama"),
        )),
    }
}

fn check_vocab(v: &GgufVocab) -> Result<()> {
    let n = v.tokens.len();
    if n == 0 {
        return Err(Error::tokenizer("GGUF vocabulary has no tokens (tokenizer.ggml.tokens)"));
    }
    if u32::try_from(n).is_err() {
        return Err(Error::tokenizer(format!("GGUF vocabulary has {n} tokens, more than u32 ids allow")));
    }
    if let Some(types) = &v.token_types {
        if types.len() < n {
            return Err(Error::tokenizer(format!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                types.len()
            )));
        }
    }
    if let Some(scores) = &v.scores {
        if scores.len() < n {
            return Err(Error::tokenizer(format!(
                "tokenizer.ggml.scores has {} entries for {n} tokens",
                scores.len()
            )));
        }
    }
    Ok(())
}

/// Token texts with llama.cpp's rule for empty entries (`[EMPTY_<id>]`).
fn token_texts(v: &GgufVocab) -> Vec<String> {
    v.tokens
        .iter()
        .enumerate()
        .map(|(i, t)| if t.is_empty() { format!("[EMPTY_{i}]") } else { t.clone() })
        .collect()
}

/// Token text → id; a duplicate text is an error (llama.cpp refuses such files too).
fn vocab_map(tokens: &[String]) -> Result<Vocab> {
    let mut vocab = Vocab::default();
    vocab.reserve(tokens.len());
    for (id, text) in tokens.iter().enumerate() {
        // `check_vocab` bounds the vocabulary by u32.
        let id = id as u32;
        if let Some(first) = vocab.insert(text.clone(), id) {
            return Err(Error::tokenizer(format!(
                "duplicate token {text:?} in GGUF vocabulary: ids {first} and {id}"
            )));
        }
    }
    Ok(vocab)
}

/// Splits `"left right"` merges (at the first space after the first byte, like llama.cpp) and
/// drops, with a warning, merges whose parts or result are not tokens.
fn parse_merges(merges: &[String], vocab: &Vocab) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(merges.len());
    let mut dropped = 0usize;
    for (i, m) in merges.iter().enumerate() {
        // A space is one byte, so this byte position is a char boundary.
        let split = m.as_bytes().iter().skip(1).position(|&b| b == b' ').map(|p| p + 1);
        let Some(pos) = split else {
            return Err(Error::tokenizer(format!(
                "tokenizer.ggml.merges[{i}] = {m:?} is not \"left right\""
            )));
        };
        let (left, right) = (&m[..pos], &m[pos + 1..]);
        let merged = format!("{left}{right}");
        if vocab.contains_key(left) && vocab.contains_key(right) && vocab.contains_key(&merged) {
            out.push((left.to_string(), right.to_string()));
        } else {
            dropped += 1;
        }
    }
    if dropped > 0 {
        log::warn!("GGUF vocab: {dropped} merges refer to tokens outside the vocabulary; ignored");
    }
    Ok(out)
}

/// Control, unknown and user-defined tokens, matched as whole tokens in text.
fn added_tokens(v: &GgufVocab, tokens: &[String]) -> Vec<AddedToken> {
    let mut added = Vec::new();
    for (id, text) in tokens.iter().enumerate() {
        let special = match v.token_type(id) {
            GgufVocab::TYPE_CONTROL | GgufVocab::TYPE_UNKNOWN => true,
            GgufVocab::TYPE_USER_DEFINED => false,
            _ => continue,
        };
        added.push(AddedToken::from(text.clone(), special).normalized(false));
    }
    added
}

fn finish(
    mut inner: tokenizers::Tokenizer,
    v: &GgufVocab,
    tokens: &[String],
    add_bos_default: bool,
) -> Built {
    let added = added_tokens(v, tokens);
    let (special, normal): (Vec<AddedToken>, Vec<AddedToken>) = added.into_iter().partition(|t| t.special);
    inner.add_special_tokens(&special);
    inner.add_tokens(&normal);
    Built { inner, add_bos_default }
}

fn build_gpt2(v: &GgufVocab, tokens: &[String]) -> Result<Built> {
    let pre = PreTokenizer::from_name(v.pre.as_deref())?;
    let vocab = vocab_map(tokens)?;
    let Some(merges) = v.merges.as_deref() else {
        return Err(Error::tokenizer("GGUF gpt2 vocabulary has no merges (tokenizer.ggml.merges)"));
    };
    let merges = parse_merges(merges, &vocab)?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.ignore_merges())
        .build()
        .map_err(|e| Error::tokenizer(format!("cannot build BPE model from GGUF vocabulary: {e}")))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pre.build()?));
    inner.with_decoder(Some(ByteLevel::new(false, false, false)));
    Ok(finish(inner, v, tokens, pre.add_bos_default()))
}

fn build_spm(v: &GgufVocab, tokens: &[String]) -> Result<Built> {
    let Some(scores) = v.scores.as_deref() else {
        return Err(Error::tokenizer(
            "GGUF llama (SentencePiece) vocabulary has no scores (tokenizer.ggml.scores)",
        ));
    };
    let vocab = vocab_map(tokens)?;
    let merges = spm_merges(tokens, scores, &vocab);
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
    if let Some(unk) = v.unk_id.and_then(|id| tokens.get(id as usize)) {
        builder = builder.unk_token(unk.clone());
    }
    let bpe = builder
        .build()
        .map_err(|e| Error::tokenizer(format!("cannot build SentencePiece BPE from GGUF vocabulary: {e}")))?;
    let add_space_prefix = v.add_space_prefix.unwrap_or(true);
    let replace = |from: &str, to: &str| {
        Replace::new(from, to).map_err(|e| Error::tokenizer(format!("cannot build replace {from:?}: {e}")))
    };

    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        normalizers.push(Prepend::new(SPM_SPACE.into()).into());
    }
    normalizers.push(replace(" ", SPM_SPACE)?.into());
    let mut decoders: Vec<DecoderWrapper> =
        vec![replace(SPM_SPACE, " ")?.into(), ByteFallback::new().into(), Fuse::new().into()];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_normalizer(Some(NormalizerSequence::new(normalizers)));
    inner.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(finish(inner, v, tokens, true))
}

/// BPE merges equivalent to SentencePiece's score-driven merging: `(left, right)` is a merge
/// when `left`, `right` and `left + right` are all tokens; merges are ordered by the merged
/// token's score, best first, ties by the ids of `left` then `right`.
fn spm_merges(tokens: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    let mut merges: Vec<(f32, u32, u32)> = Vec::new();
    let mut pairs: HashMap<(u32, u32), ()> = HashMap::new();
    for (id, piece) in tokens.iter().enumerate() {
        let score = scores.get(id).copied().filter(|s| !s.is_nan()).unwrap_or(f32::NEG_INFINITY);
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if let (Some(&l), Some(&r)) = (vocab.get(left), vocab.get(right)) {
                if pairs.insert((l, r), ()).is_none() {
                    merges.push((score, l, r));
                }
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.into_iter().map(|(_, l, r)| (tokens[l as usize].clone(), tokens[r as usize].clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_vocab::{byte_level, gpt2, spm};
    use super::super::Tokenizer;
    use super::*;

    fn pieces(tok: &Tokenizer, text: &str) -> Vec<String> {
        let ids = tok.encode(text, false).expect("encodes");
        ids.iter().map(|&id| tok.decode(&[id], false).expect("decodes")).collect()
    }

    #[test]
    fn smollm_splits_every_digit() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("smollm")).expect("builds");
        // "12" is a merge, but smollm splits digits first, so it never forms.
        assert_eq!(pieces(&tok, "a 123"), ["a", " ", "1", "2", "3"]);
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        // GPT-2 keeps " 123" as one piece, so the "12" merge applies.
        assert_eq!(pieces(&tok, "a 123"), ["a", " ", "12", "3"]);
    }

    /// The pieces `pre` cuts `text` into, in byte-level form.
    fn splits(pre: PreTokenizer, text: &str) -> Vec<String> {
        use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _};
        let mut pts = PreTokenizedString::from(text);
        pre.build().expect("builds").pre_tokenize(&mut pts).expect("pre-tokenizes");
        pts.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(s, _, _)| s.to_string())
            .collect()
    }

    fn bl(pieces: &[&str]) -> Vec<String> {
        pieces.iter().map(|p| byte_level(p)).collect()
    }

    #[test]
    fn pre_tokenizers_cut_like_llama_cpp() {
        use PreTokenizer::*;
        assert_eq!(splits(Smollm, "In 2024, x"), bl(&["In", " ", "2", "0", "2", "4", ",", " x"]));
        assert_eq!(splits(Gpt2, "In 2024, x"), bl(&["In", " 2024", ",", " x"]));
        assert_eq!(splits(Llama3, "In 1234567 DON'T"), bl(&["In", " ", "123", "456", "7", " DON", "'T"]));
        assert_eq!(splits(Qwen2, "x 123\n\n"), bl(&["x", " ", "1", "2", "3", "\n\n"]));
        assert_eq!(splits(Default, "a+b 1234"), bl(&["a", "+", "b", " ", "123", "4"]));
        // Unassigned code points are pieces of their own (llama.cpp's matchers), not symbols.
        assert_eq!(splits(Gpt2, "\u{378}'s!"), bl(&["\u{378}", "'s", "!"]));
        assert_eq!(splits(Llama3, "\u{378}'s!"), bl(&["\u{378}", "'s", "!"]));
    }

    #[test]
    fn gpt2_whitespace_runs_follow_the_regex() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        // "\s+(?!\S)" leaves the last space to join the next word.
        assert_eq!(pieces(&tok, "a   the"), ["a", " ", " ", " the"]);
        assert_eq!(pieces(&tok, "hello\n\n"), ["hello", "\n", "\n"]);
    }

    #[test]
    fn every_supported_pre_tokenizer_builds() {
        for pre in ["default", "gpt-2", "smollm", "llama-bpe", "llama3", "qwen2", "starcoder"] {
            let tok = Tokenizer::from_gguf_vocab(&gpt2(pre)).unwrap_or_else(|e| panic!("{pre}: {e}"));
            let text = "hello the 2024 world's  \n end";
            let ids = tok.encode(text, false).expect("encodes");
            assert_eq!(tok.decode(&ids, false).expect("decodes"), text, "{pre}");
        }
        let mut v = gpt2("x");
        v.pre = None;
        assert!(Tokenizer::from_gguf_vocab(&v).is_ok());
    }

    #[test]
    fn llama3_adds_bos_by_default() {
        let mut v = gpt2("llama-bpe");
        v.add_bos = None;
        assert!(Tokenizer::from_gguf_vocab(&v).expect("builds").adds_bos());
        v.pre = Some("smollm".into());
        assert!(!Tokenizer::from_gguf_vocab(&v).expect("builds").adds_bos());
    }

    #[test]
    fn unknown_pre_tokenizer_is_named_in_the_error() {
        let err = Tokenizer::from_gguf_vocab(&gpt2("klingon-bpe")).expect_err("unknown pre");
        assert!(err.to_string().contains("'klingon-bpe'"), "{err}");
    }

    #[test]
    fn unknown_model_and_broken_vocabularies_are_errors() {
        let mut v = gpt2("gpt-2");
        v.model = "t5".into();
        assert!(Tokenizer::from_gguf_vocab(&v).expect_err("t5").to_string().contains("'t5'"));

        let mut v = gpt2("gpt-2");
        v.merges = None;
        assert!(Tokenizer::from_gguf_vocab(&v).expect_err("no merges").to_string().contains("merges"));

        let mut v = gpt2("gpt-2");
        v.merges = Some(vec!["nospace".into()]);
        assert!(Tokenizer::from_gguf_vocab(&v).expect_err("bad merge").to_string().contains("nospace"));

        let mut v = gpt2("gpt-2");
        v.tokens.push("hello".into());
        v.token_types.as_mut().expect("has types").push(1);
        assert!(Tokenizer::from_gguf_vocab(&v).expect_err("dup").to_string().contains("duplicate"));

        let mut v = gpt2("gpt-2");
        v.token_types = Some(vec![1]);
        assert!(Tokenizer::from_gguf_vocab(&v).expect_err("types").to_string().contains("token_type"));

        let v = GgufVocab { model: "gpt2".into(), ..GgufVocab::default() };
        assert!(Tokenizer::from_gguf_vocab(&v).expect_err("empty").to_string().contains("no tokens"));

        let mut v = spm();
        v.scores = None;
        assert!(Tokenizer::from_gguf_vocab(&v).expect_err("no scores").to_string().contains("scores"));
    }

    #[test]
    fn merges_outside_the_vocabulary_are_dropped() {
        let mut v = gpt2("gpt-2");
        v.merges.as_mut().expect("has merges").push("q z".into());
        let tok = Tokenizer::from_gguf_vocab(&v).expect("builds");
        assert_eq!(pieces(&tok, "qz"), ["q", "z"]);
    }

    #[test]
    fn empty_tokens_get_placeholder_texts() {
        let mut v = gpt2("gpt-2");
        v.tokens.push(String::new());
        v.token_types.as_mut().expect("has types").push(1);
        let tok = Tokenizer::from_gguf_vocab(&v).expect("builds");
        let id = (v.tokens.len() - 1) as u32;
        assert_eq!(tok.id_to_token(id), Some(format!("[EMPTY_{id}]")));
    }

    #[test]
    fn spm_merges_follow_scores_and_fall_back_to_bytes() {
        let tok = Tokenizer::from_gguf_vocab(&spm()).expect("builds");
        let world = tok.token_to_id("▁world").expect("piece");
        let hello = tok.token_to_id("▁hello").expect("piece");
        assert_eq!(tok.encode("hello world", false).expect("encodes"), vec![hello, world]);
        assert_eq!(tok.encode("hello world", true).expect("encodes"), vec![1, hello, world]);
        // "ü" is not a piece: two byte tokens <0xC3> <0xBC> (ids 3 + byte).
        let ids = tok.encode("ü", false).expect("encodes");
        assert_eq!(ids, vec![tok.token_to_id("▁").unwrap(), 3 + 0xC3, 3 + 0xBC]);
        for text in ["hello world", "ü é", "  hello", "a\nb"] {
            let ids = tok.encode(text, false).expect("encodes");
            assert_eq!(tok.decode(&ids, false).expect("decodes"), text);
        }
    }

    #[test]
    fn spm_prefixes_a_space_after_special_tokens() {
        let tok = Tokenizer::from_gguf_vocab(&spm()).expect("builds");
        let hello = tok.token_to_id("▁hello").expect("piece");
        // llama.cpp: every text fragment (first, and after a special token) gets "▁".
        assert_eq!(tok.encode("hello</s>hello", false).expect("encodes"), vec![hello, 2, hello]);
        assert_eq!(tok.decode(&[hello, 2, hello], true).expect("decodes"), "hello hello");

        let mut v = spm();
        v.add_space_prefix = Some(false);
        let tok = Tokenizer::from_gguf_vocab(&v).expect("builds");
        let ids = tok.encode("hello", false).expect("encodes");
        assert!(!ids.contains(&hello));
        assert_eq!(tok.decode(&ids, false).expect("decodes"), "hello");
    }

    #[test]
    fn spm_merge_order_is_by_score() {
        let v = spm();
        let vocab = vocab_map(&v.tokens).expect("unique");
        let scores = v.scores.as_deref().expect("scores");
        let merges = spm_merges(&v.tokens, scores, &vocab);
        let pos = |l: &str, r: &str| merges.iter().position(|m| m.0 == l && m.1 == r).expect("merge exists");
        assert!(pos("▁wor", "ld") < pos("▁he", "llo"));
        assert!(pos("l", "d") < pos("l", "l"));
        assert!(!merges.iter().any(|m| m.0 == "▁hel"));
    }

    #[test]
    fn byte_level_helper_matches_the_tokenizer() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        assert_eq!(tok.token_to_id(&byte_level(" ")), tok.token_to_id("Ġ"));
    }
}
