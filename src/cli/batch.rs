//! `--batch FILE.json` for `logits` and `generate`: a list of rows, each with its own prompt
//! and weighted adapters, run as one batch.
//!
//! ```json
//! [{"prompt_ids": [1, 2, 3], "adapters": [{"path": "a", "weight": 0.7}], "max_tokens": 16},
//!  {"prompt": "Hello", "adapters": [], "combination": "cat"}]
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::lora::compose::{Combination, CompositeCache};
use crate::lora::{load_adapter, LoraAdapter};
use crate::model::LlamaConfig;
use crate::tokenizer::Tokenizer;

/// One adapter of a row.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RowAdapter {
    path: PathBuf,
    #[serde(default = "one")]
    weight: f32,
}

fn one() -> f32 {
    1.0
}

/// One row as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RowSpec {
    #[serde(default)]
    prompt_ids: Option<Vec<u32>>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    adapters: Vec<RowAdapter>,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    #[serde(default)]
    combination: Option<String>,
    /// Fraction kept by ties/dare/magnitude_prune (default 0.5).
    #[serde(default)]
    density: Option<f32>,
    /// Target rank of svd (default: the largest input rank).
    #[serde(default)]
    svd_rank: Option<usize>,
    /// Seed of dare's random masks (default 0).
    #[serde(default)]
    seed: Option<u64>,
}

/// The rows of a batch file with their adapters loaded (each distinct adapter once, so rows
/// that share one are grouped in the forward pass). A row with an approximate combination
/// uses one materialized composite (built once per distinct composite).
pub(crate) struct Batch {
    pub specs: Vec<RowSpec>,
    pub adapters: Vec<Arc<LoraAdapter>>,
    /// Per row: (index into `adapters`, weight).
    pub uses: Vec<Vec<(usize, f32)>>,
}

impl Batch {
    pub fn read(path: &Path, cfg: &LlamaConfig) -> Result<Batch> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let specs: Vec<RowSpec> =
            serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a batch file: {e}")))?;
        if specs.is_empty() {
            return Err(Error::format(path, "the batch has no rows"));
        }
        let mut adapters: Vec<Arc<LoraAdapter>> = Vec::new();
        let mut by_path: HashMap<PathBuf, usize> = HashMap::new();
        let mut uses = Vec::new();
        let mut composites = CompositeCache::new(specs.len());
        for (i, row) in specs.iter().enumerate() {
            let method = Combination::parse(
                row.combination.as_deref().unwrap_or("cat"),
                row.density,
                row.svd_rank,
                row.seed,
            )
            .map_err(|e| Error::invalid("batch", format!("row {i}: {e}")))?;
            let mut row_uses = Vec::new();
            for a in &row.adapters {
                let canon = std::fs::canonicalize(&a.path).map_err(|e| Error::io(&a.path, e))?;
                let idx = match by_path.get(&canon) {
                    Some(&k) => k,
                    None => {
                        adapters.push(Arc::new(load_adapter(&a.path, cfg)?));
                        by_path.insert(canon, adapters.len() - 1);
                        adapters.len() - 1
                    }
                };
                if row_uses.iter().any(|(k, _)| *k == idx) {
                    return Err(Error::invalid(
                        "adapters",
                        format!("row {i} names {} twice", a.path.display()),
                    ));
                }
                row_uses.push((idx, a.weight));
            }
            if method != Combination::Cat && !row_uses.is_empty() {
                let parts: Vec<(&LoraAdapter, f32)> =
                    row_uses.iter().map(|&(k, w)| (&*adapters[k], w)).collect();
                let built = composites.get_or_build(&parts, &method)?;
                let idx = match adapters.iter().position(|a| Arc::ptr_eq(a, &built)) {
                    Some(k) => k,
                    None => {
                        adapters.push(built);
                        adapters.len() - 1
                    }
                };
                row_uses = vec![(idx, 1.0)];
            }
            uses.push(row_uses);
        }
        Ok(Batch { specs, adapters, uses })
    }

    /// Row `i`'s prompt ids (text is encoded with the tokenizer, BOS as the model wants).
    pub fn prompt(&self, i: usize, tok: Option<&Tokenizer>) -> Result<Vec<u32>> {
        match (&self.specs[i].prompt_ids, &self.specs[i].prompt) {
            (Some(ids), None) => Ok(ids.clone()),
            (None, Some(text)) => {
                let tok = tok.ok_or_else(|| {
                    Error::tokenizer(format!("row {i} gives text but the model has no tokenizer"))
                })?;
                tok.encode(text, true)
            }
            _ => Err(Error::invalid("batch", format!("row {i} needs exactly one of prompt_ids and prompt"))),
        }
    }

    /// Row `i`'s adapters as references.
    pub fn adapter_set(&self, i: usize) -> Vec<(&LoraAdapter, f32)> {
        self.uses[i].iter().map(|&(k, w)| (&*self.adapters[k], w)).collect()
    }
}
