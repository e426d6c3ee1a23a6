//! Loading an HF model directory's tokenizer files.
//!
//! `tokenizer.json` is read by the `tokenizers` crate exactly as transformers reads it. The
//! facts transformers keeps elsewhere come from `tokenizer_config.json` (special tokens,
//! `add_bos_token`, `chat_template`), `generation_config.json` (`eos_token_id`, `bos_token_id`)
//! and `chat_template.jinja` / `chat_template.json` (newer transformers save the template there).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Specials;
use crate::error::{Error, Result};

/// Bounds on the JSON side files we read (a tokenizer config is kilobytes; the bound stops a
/// wrong path from reading gigabytes into memory).
const SIDE_FILE_BYTES_MAX: u64 = 64 << 20;

/// Loads `dir/tokenizer.json` and the special tokens around it.
pub(super) fn load(dir: &Path) -> Result<(tokenizers::Tokenizer, Specials)> {
    let path = dir.join("tokenizer.json");
    if !path.is_file() {
        let source = std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer.json not found");
        return Err(Error::io(path, source));
    }
    let inner = tokenizers::Tokenizer::from_file(&path)
        .map_err(|e| Error::format(&path, format!("not a valid HF tokenizer.json: {e}")))?;

    let config = read_json(&dir.join("tokenizer_config.json"))?;
    let generation = read_json(&dir.join("generation_config.json"))?;
    let config_path = dir.join("tokenizer_config.json");
    let config_name = config_path.display().to_string();

    let bos_text = config.as_ref().and_then(|c| token_text(c.get("bos_token")));
    let eos_text = config.as_ref().and_then(|c| token_text(c.get("eos_token")));
    let resolve = |what: &str, text: Option<String>| -> Option<u32> {
        let text = text?;
        let id = inner.token_to_id(&text);
        if id.is_none() {
            log::warn!("{config_name}: {what} '{text}' is not in the vocabulary; ignored");
        }
        id
    };
    let generation_ids =
        |key: &str| -> Vec<u32> { generation.as_ref().map(|g| ids(g.get(key))).unwrap_or_default() };

    let bos_id = resolve("bos_token", bos_text).or_else(|| generation_ids("bos_token_id").first().copied());
    let mut eos_ids: Vec<u32> = resolve("eos_token", eos_text).into_iter().collect();
    eos_ids.extend(generation_ids("eos_token_id"));

    let add_bos = match config.as_ref().and_then(|c| c.get("add_bos_token")) {
        Some(Value::Bool(b)) => *b,
        _ => post_processor_adds(&inner, bos_id),
    };
    let chat_template = match config.as_ref().map(|c| chat_template(c, &config_name)).transpose()?.flatten() {
        Some(t) => Some(t),
        None => template_file(dir)?,
    };
    Ok((inner, Specials { bos_id, add_bos, eos_ids, chat_template }))
}

/// Reads a JSON file if it exists; a file that exists but does not parse is an error.
fn read_json(path: &Path) -> Result<Option<Value>> {
    let Some(text) = read_small(path)? else {
        return Ok(None);
    };
    serde_json::from_str(&text).map(Some).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

/// Reads a small text file if it exists.
fn read_small(path: &Path) -> Result<Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.len() > SIDE_FILE_BYTES_MAX {
        return Err(Error::format(path, format!("{} bytes, more than {SIDE_FILE_BYTES_MAX}", meta.len())));
    }
    std::fs::read_to_string(path).map(Some).map_err(|e| Error::io(path, e))
}

/// A special token given as `"<s>"` or as an added-token object `{"content": "<s>", ...}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Token ids given as an integer or a list of integers; anything else yields none.
fn ids(v: Option<&Value>) -> Vec<u32> {
    let one = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Whether `tokenizer.json`'s post-processor prepends BOS (Llama-3 style configs say so only
/// there, with no `add_bos_token`).
fn post_processor_adds(inner: &tokenizers::Tokenizer, bos_id: Option<u32>) -> bool {
    let Some(bos) = bos_id else {
        return false;
    };
    match inner.encode_fast("a", true) {
        Ok(e) => e.get_ids().first() == Some(&bos),
        Err(_) => false,
    }
}

/// `chat_template` as a string, or a list of `{name, template}` (the one named `default`,
/// else the first).
fn chat_template(config: &Value, source: &str) -> Result<Option<String>> {
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let named =
                |name: &str| list.iter().find(|t| t.get("name").and_then(Value::as_str) == Some(name));
            let entry = named("default").or_else(|| list.first());
            match entry.and_then(|t| t.get("template")).and_then(Value::as_str) {
                Some(t) => Ok(Some(t.to_string())),
                None if list.is_empty() => Ok(None),
                None => Err(Error::config(source, "chat_template list entries need a string 'template'")),
            }
        }
        Some(_) => Err(Error::config(source, "chat_template must be a string or a list of {name, template}")),
    }
}

/// The template saved beside the config by newer transformers, if any.
fn template_file(dir: &Path) -> Result<Option<String>> {
    if let Some(t) = read_small(&dir.join("chat_template.jinja"))? {
        return Ok(Some(t));
    }
    let path: PathBuf = dir.join("chat_template.json");
    match read_json(&path)? {
        Some(v) => chat_template(&v, &path.display().to_string()),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_vocab::gpt2;
    use super::super::Tokenizer;
    use crate::test_util::TempDir;
    use std::fs;

    fn write(dir: &TempDir, name: &str, text: &str) {
        fs::write(dir.path().join(name), text).expect("temp file is writable");
    }

    /// A directory holding the tiny GGUF test vocabulary saved as `tokenizer.json`.
    fn hf_dir(tag: &str) -> TempDir {
        let tok = Tokenizer::from_gguf_vocab(&gpt2("smollm")).expect("tiny vocab builds");
        let dir = TempDir::new(tag);
        let json = tok.inner.to_string(false).expect("serializes");
        write(&dir, "tokenizer.json", &json);
        dir
    }

    #[test]
    fn missing_tokenizer_json_names_the_path() {
        let dir = TempDir::new("missing");
        let err = Tokenizer::from_hf_dir(dir.path()).expect_err("no tokenizer.json");
        let msg = err.to_string();
        assert!(msg.contains("tokenizer.json") && msg.contains(&dir.path().display().to_string()), "{msg}");
    }

    #[test]
    fn corrupt_files_name_the_path() {
        let dir = TempDir::new("corrupt");
        write(&dir, "tokenizer.json", "{ not json");
        let err = Tokenizer::from_hf_dir(dir.path()).expect_err("corrupt tokenizer.json");
        assert!(err.to_string().contains("tokenizer.json"), "{err}");

        let dir = hf_dir("corrupt-config");
        write(&dir, "tokenizer_config.json", "[1, 2");
        let err = Tokenizer::from_hf_dir(dir.path()).expect_err("corrupt config");
        assert!(err.to_string().contains("tokenizer_config.json"), "{err}");

        let dir = hf_dir("bad-template");
        write(&dir, "tokenizer_config.json", r#"{"chat_template": 42}"#);
        let err = Tokenizer::from_hf_dir(dir.path()).expect_err("bad template type");
        assert!(err.to_string().contains("chat_template"), "{err}");
    }

    #[test]
    fn reads_config_and_generation_config() {
        let dir = hf_dir("config");
        write(
            &dir,
            "tokenizer_config.json",
            r#"{"bos_token": {"content": "<|im_start|>", "special": true}, "eos_token": "<|im_end|>",
                "add_bos_token": true, "chat_template": "{{ messages[0].content }}"}"#,
        );
        write(&dir, "generation_config.json", r#"{"eos_token_id": [2, 0, 99999999999]}"#);
        let tok = Tokenizer::from_hf_dir(dir.path()).expect("loads");
        assert_eq!(tok.bos_id(), Some(1));
        assert_eq!(tok.bos_token(), Some("<|im_start|>"));
        assert_eq!(tok.eos_token(), Some("<|im_end|>"));
        assert_eq!(tok.eos_ids(), &[2, 0]);
        assert_eq!(tok.chat_template(), Some("{{ messages[0].content }}"));
        let hello = tok.token_to_id("hello").expect("token");
        assert_eq!(tok.encode("hello", true).expect("encodes"), vec![1, hello]);
        assert_eq!(tok.encode("hello", false).expect("encodes"), vec![hello]);
    }

    #[test]
    fn generation_config_ids_may_be_a_single_integer() {
        let dir = hf_dir("gen-int");
        write(&dir, "generation_config.json", r#"{"eos_token_id": 2, "bos_token_id": 1}"#);
        let tok = Tokenizer::from_hf_dir(dir.path()).expect("loads");
        assert_eq!(tok.eos_ids(), &[2, 0]);
        assert_eq!(tok.bos_id(), Some(1));
        // No add_bos_token and no post-processor adding it: BOS is not added.
        assert!(!tok.adds_bos());
    }

    #[test]
    fn chat_template_list_prefers_default() {
        let dir = hf_dir("template-list");
        write(
            &dir,
            "tokenizer_config.json",
            r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        );
        assert_eq!(Tokenizer::from_hf_dir(dir.path()).expect("loads").chat_template(), Some("D"));
        write(&dir, "tokenizer_config.json", r#"{"chat_template": [{"name": "rag", "template": "R"}]}"#);
        assert_eq!(Tokenizer::from_hf_dir(dir.path()).expect("loads").chat_template(), Some("R"));
        write(&dir, "tokenizer_config.json", r#"{"chat_template": [{"name": "rag"}]}"#);
        assert!(Tokenizer::from_hf_dir(dir.path()).is_err());
    }

    #[test]
    fn chat_template_file_is_used_when_config_has_none() {
        let dir = hf_dir("template-file");
        write(&dir, "tokenizer_config.json", r#"{"eos_token": "<|im_end|>"}"#);
        write(&dir, "chat_template.jinja", "J");
        assert_eq!(Tokenizer::from_hf_dir(dir.path()).expect("loads").chat_template(), Some("J"));
    }

    #[test]
    fn unknown_special_token_texts_are_ignored() {
        let dir = hf_dir("unknown-special");
        write(&dir, "tokenizer_config.json", r#"{"bos_token": "<nope>", "eos_token": null}"#);
        let tok = Tokenizer::from_hf_dir(dir.path()).expect("loads");
        assert_eq!(tok.bos_id(), None);
        // Still ends on the known end-of-generation texts of the vocabulary.
        assert_eq!(tok.eos_ids(), &[2, 0]);
    }

    #[test]
    fn hf_and_gguf_builds_agree() {
        let dir = hf_dir("agree");
        let hf = Tokenizer::from_hf_dir(dir.path()).expect("loads");
        let gguf = Tokenizer::from_gguf_vocab(&gpt2("smollm")).expect("builds");
        for text in ["hello the 123", "<|im_start|>user\nhi<|im_end|>", "  spaces\t\n", "ünïcödé 😀"] {
            assert_eq!(
                hf.encode(text, false).expect("hf"),
                gguf.encode(text, false).expect("gguf"),
                "{text:?}"
            );
        }
    }
}
