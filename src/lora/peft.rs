//! PEFT LoRA directories (`adapter_config.json` + `adapter_model.safetensors`): parsed,
//! validated against the base model, and turned into a [`LoraAdapter`] — or refused whole
//! with an error naming the file, tensor and reason. Never partially loaded.

use std::path::Path;

use serde::Deserialize;

use super::targets::{PatternMap, TargetRules};
use super::{LoraAdapter, LoraPair, Module};
use crate::error::{Error, Result};
use crate::model::hf::SafetensorsSet;
use crate::model::LlamaConfig;

/// The fields of `adapter_config.json` loradock reads.
#[derive(Debug, Deserialize)]
pub struct PeftConfig {
    /// Must be "LORA".
    #[serde(default)]
    pub peft_type: Option<String>,
    /// Default rank.
    pub r: usize,
    /// Default alpha.
    pub lora_alpha: f32,
    /// Scale alpha/√r instead of alpha/r.
    #[serde(default)]
    pub use_rslora: bool,
    /// DoRA (refused).
    #[serde(default)]
    pub use_dora: bool,
    /// Fully trained modules saved beside the adapter (refused).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// Bias training mode; only "none" is supported.
    #[serde(default)]
    pub bias: Option<String>,
    /// A trained bias on lora_B (refused).
    #[serde(default)]
    pub lora_bias: bool,
    /// Per-module rank overrides (pattern → rank, in config order).
    #[serde(default)]
    pub rank_pattern: Option<serde_json::Value>,
    /// Per-module alpha overrides (pattern → alpha, in config order).
    #[serde(default)]
    pub alpha_pattern: Option<serde_json::Value>,
    /// Modules to adapt: a list of names, a regex, or "all-linear".
    #[serde(default)]
    pub target_modules: Option<serde_json::Value>,
    /// Modules never adapted: a list of names or a regex.
    #[serde(default)]
    pub exclude_modules: Option<serde_json::Value>,
    /// Layer indices to adapt (an integer or a list).
    #[serde(default)]
    pub layers_to_transform: Option<serde_json::Value>,
    /// Name(s) of the layer list in module keys.
    #[serde(default)]
    pub layers_pattern: Option<serde_json::Value>,
    /// Initialization; inits that rewrite the base (PiSSA, OLoRA, LoftQ...) are refused.
    #[serde(default)]
    pub init_lora_weights: Option<serde_json::Value>,
    /// LoftQ settings (refused when non-empty).
    #[serde(default)]
    pub loftq_config: Option<serde_json::Value>,
}

fn refuse(dir: &Path, reason: impl Into<String>) -> Error {
    Error::adapter(dir.display().to_string(), reason)
}

/// The config file's name inside an adapter directory.
const CONFIG_FILE: &str = "adapter_config.json";

impl PeftConfig {
    /// Parse and check for variants loradock cannot apply exactly.
    pub fn read(dir: &Path) -> Result<PeftConfig> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => refuse(dir, "adapter_config.json is missing"),
            _ => Error::io(&path, e),
        })?;
        PeftConfig::parse(dir, &text)
    }

    /// Parse the bytes of `adapter_config.json` of the adapter called `dir` (a path or a
    /// name, for messages) and check for variants loradock cannot apply exactly.
    pub fn parse(dir: &Path, text: &[u8]) -> Result<PeftConfig> {
        let path = dir.join(CONFIG_FILE);
        let c: PeftConfig = serde_json::from_slice(text)
            .map_err(|e| Error::format(&path, format!("not a valid PEFT LoRA config: {e}")))?;
        if let Some(t) = &c.peft_type {
            if t != "LORA" {
                return Err(refuse(dir, format!("peft_type '{t}' is not LORA")));
            }
        }
        if c.use_dora {
            return Err(refuse(dir, "DoRA (use_dora: true) is not supported"));
        }
        if c.modules_to_save.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(refuse(dir, "modules_to_save replaces base modules; not supported"));
        }
        if c.lora_bias {
            return Err(refuse(dir, "lora_bias: true (a bias on lora_B) is not supported"));
        }
        if let Some(b) = &c.bias {
            if b != "none" {
                return Err(refuse(dir, format!("bias '{b}' is not supported (only \"none\")")));
            }
        }
        if let Some(serde_json::Value::String(s)) = &c.init_lora_weights {
            let s = s.to_ascii_lowercase();
            if ["pissa", "olora", "loftq", "corda", "eva"].iter().any(|k| s.starts_with(k)) {
                return Err(refuse(
                    dir,
                    format!("init_lora_weights '{s}' changes the base weights; not supported"),
                ));
            }
        }
        if c.loftq_config.as_ref().is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty())) {
            return Err(refuse(dir, "LoftQ changes the base weights; not supported"));
        }
        if c.r == 0 || !c.lora_alpha.is_finite() {
            return Err(refuse(dir, "r must be > 0 and lora_alpha finite"));
        }
        Ok(c)
    }
}

/// Split a PEFT tensor name into (layer, module, is_a).
fn parse_name(name: &str) -> Option<(usize, Module, bool)> {
    let rest = &name[name.find("layers.")? + "layers.".len()..];
    let mut parts = rest.split('.');
    let layer: usize = parts.next()?.parse().ok()?;
    let parent = parts.next()?;
    let module = Module::from_hf_name(parts.next()?)?;
    if parent != module.hf_parent() {
        return None;
    }
    let is_a = match parts.next()? {
        "lora_A" => true,
        "lora_B" => false,
        _ => return None,
    };
    let tail: Vec<&str> = parts.collect();
    // `weight`, or `<adapter name>.weight`.
    match tail.as_slice() {
        ["weight"] | [_, "weight"] => Some((layer, module, is_a)),
        _ => None,
    }
}

/// `(out, in)` of `module` in the base model.
pub fn module_shape(cfg: &LlamaConfig, m: Module) -> (usize, usize) {
    let h = cfg.hidden_size;
    match m {
        Module::Q => (cfg.q_dim(), h),
        Module::K | Module::V => (cfg.kv_dim(), h),
        Module::O => (h, cfg.q_dim()),
        Module::Gate | Module::Up => (cfg.intermediate_size, h),
        Module::Down => (h, cfg.intermediate_size),
    }
}

/// Load the PEFT adapter in `dir` for a base model with `cfg`.
pub fn load_peft(dir: &Path, cfg: &LlamaConfig) -> Result<LoraAdapter> {
    let c = PeftConfig::read(dir)?;
    let st_path = dir.join("adapter_model.safetensors");
    if !st_path.exists() {
        if dir.join("adapter_model.bin").exists() {
            return Err(refuse(
                dir,
                "adapter_model.bin is a pickle file and is never loaded; save with safetensors",
            ));
        }
        return Err(refuse(dir, "adapter_model.safetensors is missing"));
    }
    build(dir, &c, &SafetensorsSet::open_file(&st_path)?, cfg)
}

/// Parse a PEFT adapter from its two files' bytes (as the store hands them over, already
/// verified); `name` stands for the adapter in messages. Same checks as [`load_peft`].
pub fn parse_peft(
    name: &str,
    config_json: &[u8],
    weights: std::sync::Arc<[u8]>,
    cfg: &LlamaConfig,
) -> Result<LoraAdapter> {
    let dir = Path::new(name);
    let c = PeftConfig::parse(dir, config_json)?;
    let set = SafetensorsSet::from_bytes(&dir.join("adapter_model.safetensors"), weights)?;
    build(dir, &c, &set, cfg)
}

/// Validate the tensors of `set` against `c` and the base `cfg` and build the adapter.
fn build(dir: &Path, c: &PeftConfig, set: &SafetensorsSet, cfg: &LlamaConfig) -> Result<LoraAdapter> {
    let rules = TargetRules::new(
        c.target_modules.as_ref(),
        c.exclude_modules.as_ref(),
        c.layers_to_transform.as_ref(),
        c.layers_pattern.as_ref(),
    )?;
    let ranks = PatternMap::new("rank_pattern", c.rank_pattern.as_ref(), |v| v.as_u64().map(|r| r as usize))?;
    let alphas =
        PatternMap::new("alpha_pattern", c.alpha_pattern.as_ref(), |v| v.as_f64().map(|a| a as f32))?;
    let name = dir.display().to_string();
    type Halves = (Option<(Vec<usize>, Vec<f32>)>, Option<(Vec<usize>, Vec<f32>)>);
    let mut found: std::collections::BTreeMap<(usize, usize), Halves> = Default::default();
    let mut names: Vec<&str> = set.names().collect();
    names.sort_unstable();
    for tname in names {
        let tensor_err = |reason: String| Error::Adapter {
            adapter: name.clone(),
            tensor: Some(tname.to_string()),
            reason,
        };
        if tname.contains("lora_magnitude_vector") {
            return Err(tensor_err("DoRA magnitude vectors are not supported".into()));
        }
        let Some((layer, module, is_a)) = parse_name(tname) else {
            return Err(tensor_err(
                "not a LoRA A/B weight of a decoder layer's q/k/v/o/gate/up/down projection (embedding, lm_head and other modules are not supported)".into(),
            ));
        };
        if layer >= cfg.num_layers {
            return Err(tensor_err(format!(
                "layer {layer} does not exist (the base has {})",
                cfg.num_layers
            )));
        }
        let vals = set.f32_values(tname)?.expect("listed tensor exists");
        if let Some(bad) = vals.1.iter().position(|v| !v.is_finite()) {
            return Err(tensor_err(format!("non-finite value {} at index {bad}", vals.1[bad])));
        }
        let slot = found.entry((layer, module as usize)).or_default();
        let half = if is_a { &mut slot.0 } else { &mut slot.1 };
        if half.replace(vals).is_some() {
            return Err(tensor_err("appears twice".into()));
        }
    }
    if found.is_empty() {
        return Err(refuse(dir, "adapter_model.safetensors holds no LoRA weights"));
    }
    let mut layers: Vec<[Option<LoraPair>; 7]> = (0..cfg.num_layers).map(|_| Default::default()).collect();
    for ((layer, mi), (a, b)) in found {
        let module = Module::ALL[mi];
        let path = format!("model.layers.{layer}.{}.{}", module.hf_parent(), module.hf_name());
        let (Some((sa, a)), Some((sb, b))) = (a, b) else {
            return Err(refuse(dir, format!("{path}: lora_A and lora_B must both be present")));
        };
        let (d_out, d_in) = module_shape(cfg, module);
        let terr = |half: &str, reason: String| Error::Adapter {
            adapter: name.clone(),
            tensor: Some(format!("{path}.{half}")),
            reason,
        };
        let rank = sa[0];
        if sa.len() != 2 || sa[1] != d_in || rank == 0 {
            return Err(terr("lora_A", format!("shape {sa:?} does not fit the base: expected [r, {d_in}]")));
        }
        if sb.len() != 2 || sb != [d_out, rank] {
            return Err(terr("lora_B", format!("shape {sb:?} does not fit: expected [{d_out}, {rank}]")));
        }
        if !rules.targets(&path) {
            return Err(refuse(
                dir,
                format!("{path} has LoRA weights but adapter_config.json does not target it"),
            ));
        }
        let want_rank = ranks.get(&path).unwrap_or(c.r);
        if want_rank != rank {
            return Err(terr(
                "lora_A",
                format!("rank {rank} in the tensor but {want_rank} in adapter_config.json"),
            ));
        }
        let alpha = alphas.get(&path).unwrap_or(c.lora_alpha);
        let scale = if c.use_rslora { alpha / (rank as f32).sqrt() } else { alpha / rank as f32 };
        layers[layer][mi] = Some(LoraPair { rank, d_in, d_out, a, b, scale });
    }
    Ok(LoraAdapter { name, layers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_names_with_and_without_adapter_name() {
        assert_eq!(
            parse_name("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"),
            Some((3, Module::Q, true))
        );
        assert_eq!(
            parse_name("base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight"),
            Some((0, Module::Down, false))
        );
        assert_eq!(parse_name("base_model.model.lm_head.lora_A.weight"), None);
        assert_eq!(parse_name("base_model.model.model.layers.0.mlp.q_proj.lora_A.weight"), None);
    }
}
