//! Shared helpers: fixture paths, the reference logits, temp dirs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use loradock::lora::{load_peft, LoraAdapter};
use loradock::model::{load_model, Compute, LlamaModel, LoadOptions, LogitsMode, SeqBatch};

/// `tests/fixtures/tiny`.
pub fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny")
}

/// The reference description (`reference.json`).
pub fn reference_json() -> serde_json::Value {
    let text = std::fs::read_to_string(tiny().join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference.json parses")
}

/// Every tensor of an f32 safetensors file: name → (shape, values).
pub fn read_f32_tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name} is not f32");
            let vals =
                v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (name, (v.shape().to_vec(), vals))
        })
        .collect()
}

/// Every tensor of `reference.safetensors` as f32 values.
pub fn reference_logits() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    read_f32_tensors(&tiny().join("reference.safetensors"))
}

/// Prompt ids by name (`p0`, `p1`).
pub fn prompts(j: &serde_json::Value) -> Vec<(String, Vec<u32>)> {
    j["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| {
            let ids =
                p["ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id") as u32).collect();
            (p["name"].as_str().expect("name").to_string(), ids)
        })
        .collect()
}

/// Load a model with default options.
pub fn model(path: &Path) -> LlamaModel {
    load_model(path, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
        .model
}

/// Load a fixture adapter by directory name.
pub fn adapter(m: &LlamaModel, name: &str) -> LoraAdapter {
    load_peft(&tiny().join("adapters").join(name), &m.config)
        .unwrap_or_else(|e| panic!("adapter {name}: {e}"))
}

/// All-position logits of `ids` in one forward pass.
pub fn logits(m: &LlamaModel, c: &mut Compute, ids: &[u32], adapters: &[(&LoraAdapter, f32)]) -> Vec<f32> {
    let mut kv = loradock::kv::KvCache::new(&m.config, 64);
    let mut seqs = [SeqBatch { tokens: ids, kv: &mut kv, adapters, logits: LogitsMode::All }];
    m.forward(c, &mut seqs).expect("forward").pop().expect("one sequence")
}

/// Greedy ids: prefill `ids` then decode `n` tokens through the KV cache.
pub fn greedy(
    m: &LlamaModel,
    c: &mut Compute,
    ids: &[u32],
    adapters: &[(&LoraAdapter, f32)],
    n: usize,
) -> Vec<u32> {
    let mut kv = loradock::kv::KvCache::new(&m.config, 64);
    let mut seqs = [SeqBatch { tokens: ids, kv: &mut kv, adapters, logits: LogitsMode::Last }];
    let mut last = m.forward(c, &mut seqs).expect("prefill").pop().expect("one");
    let mut out = Vec::new();
    for _ in 0..n {
        let tok = argmax(&last);
        out.push(tok);
        let mut seqs = [SeqBatch {
            tokens: std::slice::from_ref(&tok),
            kv: &mut kv,
            adapters,
            logits: LogitsMode::Last,
        }];
        last = m.forward(c, &mut seqs).expect("decode").pop().expect("one");
    }
    out
}

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `tag`.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "loradock-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copy every file of `src` into a new temp dir.
pub fn copy_dir(src: &Path, tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), d.0.join(e.file_name())).expect("copy");
    }
    d
}
