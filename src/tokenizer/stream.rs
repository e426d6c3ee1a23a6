//! Incremental detokenization for streaming generated tokens as text.
//!
//! Decoding one token at a time is wrong twice over: a multi-byte character may be split
//! across byte tokens, and decoders look at neighbours (SentencePiece strips the leading space
//! of the first token only). The decoder therefore keeps a short window of ids: it decodes the
//! window with and without the newest ids and emits the difference once it is complete UTF-8
//! text (no trailing U+FFFD), as HF's `DecodeStream` and TGI do.

use super::Tokenizer;
use crate::error::Result;

/// Ids held back waiting for a character to complete before the text is emitted anyway (a
/// UTF-8 character is at most 4 bytes, so 4 byte tokens always complete one).
const PENDING_IDS_MAX: usize = 8;

/// Incremental detokenizer returned by [`Tokenizer::stream_decoder`].
///
/// Feed generated ids with [`push`](StreamDecoder::push); each call returns the new complete
/// text, if any. Call [`finish`](StreamDecoder::finish) at the end to flush what is held back.
/// Concatenating every returned piece gives the same text as [`Tokenizer::decode`] of all ids.
/// Use one decoder per generated sequence; it borrows the tokenizer and is `Send`.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    skip_special: bool,
    /// The context window: the last emitted id (kept for decoders that look at neighbours)
    /// and the ids not emitted yet.
    ids: Vec<u32>,
    /// `ids[..read]` are emitted already and decode to `prefix`.
    read: usize,
    prefix: String,
}

impl<'a> StreamDecoder<'a> {
    pub(super) fn new(tokenizer: &'a Tokenizer) -> Self {
        StreamDecoder { tokenizer, skip_special: true, ids: Vec::new(), read: 0, prefix: String::new() }
    }

    /// Whether special tokens are emitted as text (default: skipped).
    pub fn with_special(mut self, emit_special: bool) -> Self {
        self.skip_special = !emit_special;
        self
    }

    /// Adds one generated id; returns the text it completes, or `None` while a character is
    /// still incomplete (or the id adds no text, e.g. a skipped special token).
    ///
    /// An id outside the vocabulary is an error and leaves the decoder unchanged.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.tokenizer.check_ids(&[id])?;
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        let pending = self.ids.len() - self.read;
        if text.ends_with('\u{FFFD}') && pending < PENDING_IDS_MAX {
            return Ok(None);
        }
        self.emit(text)
    }

    /// Flushes the text still held back (an incomplete character becomes U+FFFD) and resets
    /// the decoder for a new sequence.
    pub fn finish(&mut self) -> Result<Option<String>> {
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        let out = self.emit(text);
        self.ids.clear();
        self.read = 0;
        self.prefix.clear();
        out
    }

    /// Emits `text` minus the already-emitted prefix and slides the window forward.
    fn emit(&mut self, text: String) -> Result<Option<String>> {
        let new = match text.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.to_string(),
            // A decoder rewrote earlier text; emit what lies past the old prefix's length.
            None => text.get(self.prefix.len()..).unwrap_or_default().to_string(),
        };
        // Keep the last emitted id as context for the next decode (leading-space rules).
        let keep_from = self.ids.len().saturating_sub(1);
        self.ids.drain(..keep_from);
        self.read = self.ids.len();
        self.prefix = self.tokenizer.decode(&self.ids, self.skip_special)?;
        Ok((!new.is_empty()).then_some(new))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_vocab::{gpt2, spm};
    use super::super::Tokenizer;

    fn stream_all(tok: &Tokenizer, ids: &[u32]) -> (Vec<Option<String>>, String) {
        let mut dec = tok.stream_decoder();
        let mut outs = Vec::new();
        let mut text = String::new();
        for &id in ids {
            let out = dec.push(id).expect("valid id");
            text.push_str(out.as_deref().unwrap_or(""));
            outs.push(out);
        }
        text.push_str(&dec.finish().expect("finishes").unwrap_or_default());
        (outs, text)
    }

    #[test]
    fn multibyte_char_is_held_until_complete() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        let ids = tok.encode("a€b", false).expect("encodes");
        // "€" is three byte tokens in this vocabulary.
        assert_eq!(ids.len(), 5);
        let (outs, text) = stream_all(&tok, &ids);
        assert_eq!(outs, [Some("a".into()), None, None, Some("€".into()), Some("b".into())]);
        assert_eq!(text, "a€b");
    }

    #[test]
    fn stream_equals_full_decode_for_sentencepiece() {
        let tok = Tokenizer::from_gguf_vocab(&spm()).expect("builds");
        for text in ["hello world", "ü hello", " hello  world é"] {
            let ids = tok.encode(text, true).expect("encodes");
            let (_, streamed) = stream_all(&tok, &ids);
            assert_eq!(streamed, tok.decode(&ids, true).expect("decodes"), "{text:?}");
        }
        // The first token's leading space is stripped, later ones keep theirs.
        let ids = tok.encode("hello world", false).expect("encodes");
        let (outs, _) = stream_all(&tok, &ids);
        assert_eq!(outs, [Some("hello".into()), Some(" world".into())]);
    }

    #[test]
    fn special_tokens_are_skipped_unless_asked() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        let hello = tok.token_to_id("hello").expect("token");
        let mut dec = tok.stream_decoder();
        assert_eq!(dec.push(1).expect("valid"), None);
        assert_eq!(dec.push(hello).expect("valid"), Some("hello".into()));
        let mut dec = tok.stream_decoder().with_special(true);
        assert_eq!(dec.push(1).expect("valid"), Some("<|im_start|>".into()));
    }

    #[test]
    fn finish_flushes_an_incomplete_char_and_resets() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        let ids = tok.encode("€", false).expect("encodes");
        let mut dec = tok.stream_decoder();
        assert_eq!(dec.push(ids[0]).expect("valid"), None);
        assert_eq!(dec.finish().expect("finishes"), Some("\u{FFFD}".into()));
        assert_eq!(dec.finish().expect("finishes"), None);
        let (_, text) = stream_all(&tok, &ids);
        assert_eq!(text, "€");
    }

    #[test]
    fn invalid_bytes_are_not_held_forever() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        // A lone continuation byte never completes: it is emitted after the pending bound.
        let cont = tok.encode("€", false).expect("encodes")[1];
        let mut dec = tok.stream_decoder();
        let outs: Vec<_> = (0..super::PENDING_IDS_MAX).map(|_| dec.push(cont).expect("valid")).collect();
        assert!(outs[..super::PENDING_IDS_MAX - 1].iter().all(Option::is_none));
        assert!(outs[super::PENDING_IDS_MAX - 1].is_some());
    }

    #[test]
    fn out_of_range_id_is_an_error_and_changes_nothing() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        let hello = tok.token_to_id("hello").expect("token");
        let mut dec = tok.stream_decoder();
        assert!(dec.push(u32::MAX).is_err());
        assert_eq!(dec.push(hello).expect("valid"), Some("hello".into()));
    }

    #[test]
    fn long_streams_keep_a_short_window() {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("gpt-2")).expect("builds");
        let text = "hello the ".repeat(200);
        let ids = tok.encode(&text, false).expect("encodes");
        let mut dec = tok.stream_decoder();
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&dec.push(id).expect("valid").unwrap_or_default());
            assert!(dec.ids.len() <= super::PENDING_IDS_MAX + 1);
        }
        assert_eq!(out, text);
    }
}
