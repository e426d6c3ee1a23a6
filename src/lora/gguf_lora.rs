//! GGUF LoRA adapters (llama.cpp's format, as written by `convert_lora_to_gguf.py`):
//! `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`, and per adapted
//! module `blk.N.<name>.weight.lora_a` (`[r, in]`) and `.lora_b` (`[out, r]`). For llama
//! models the `lora_b` rows of q/k are permuted like the base weights in GGUF; loradock keeps
//! the HF layout, so they are un-permuted here. Scale: `alpha / r` (1 when alpha is 0), as
//! llama.cpp applies it.

use std::collections::BTreeMap;
use std::path::Path;

use super::peft::module_shape;
use super::{LoraAdapter, LoraPair, Module};
use crate::error::{Error, Result};
use crate::model::config::Arch;
use crate::model::gguf::{GgufFile, Value};
use crate::model::loader::unpermute;
use crate::model::LlamaConfig;

/// The module of a GGUF tensor name stem (`attn_q` → q_proj).
fn module_of(name: &str) -> Option<Module> {
    Some(match name {
        "attn_q" => Module::Q,
        "attn_k" => Module::K,
        "attn_v" => Module::V,
        "attn_output" => Module::O,
        "ffn_gate" => Module::Gate,
        "ffn_up" => Module::Up,
        "ffn_down" => Module::Down,
        _ => return None,
    })
}

/// Load the GGUF LoRA file at `path` for a base model with `cfg`.
pub fn load_gguf_lora(path: &Path, cfg: &LlamaConfig) -> Result<LoraAdapter> {
    build(path, &GgufFile::open(path)?, cfg)
}

/// Parse a GGUF LoRA from its bytes (as the store hands them over, already verified);
/// `name` stands for the adapter in messages. Same checks as [`load_gguf_lora`].
pub fn parse_gguf_lora(name: &str, bytes: std::sync::Arc<[u8]>, cfg: &LlamaConfig) -> Result<LoraAdapter> {
    let path = Path::new(name);
    build(path, &GgufFile::from_bytes(path, bytes)?, cfg)
}

fn build(path: &Path, g: &GgufFile, cfg: &LlamaConfig) -> Result<LoraAdapter> {
    let name = path.display().to_string();
    let refuse = |reason: String| Error::adapter(name.clone(), reason);
    let kind = g.get("general.type").and_then(Value::as_str);
    let atype = g.get("adapter.type").and_then(Value::as_str);
    if kind != Some("adapter") || atype != Some("lora") {
        return Err(refuse(format!(
            "not a GGUF LoRA adapter (general.type {kind:?}, adapter.type {atype:?})"
        )));
    }
    let arch = g.architecture().unwrap_or("");
    let want = match cfg.arch {
        Arch::Llama => "llama",
        Arch::Qwen2 => "qwen2",
    };
    if arch != want {
        return Err(refuse(format!("made for architecture '{arch}', the base is '{want}'")));
    }
    let alpha = g.get("adapter.lora.alpha").and_then(Value::as_f64).unwrap_or(0.0) as f32;
    if !alpha.is_finite() {
        return Err(refuse("adapter.lora.alpha is not finite".into()));
    }
    type Pair = (Option<(usize, usize, Vec<f32>)>, Option<(usize, usize, Vec<f32>)>);
    let mut found: BTreeMap<(usize, usize), Pair> = BTreeMap::new();
    for t in &g.tensors {
        let terr =
            |reason: String| Error::Adapter { adapter: name.clone(), tensor: Some(t.name.clone()), reason };
        let parsed = t.name.strip_prefix("blk.").and_then(|rest| {
            let (layer, rest) = rest.split_once('.')?;
            let (stem, half) = rest.split_once(".weight.lora_")?;
            Some((layer.parse::<usize>().ok()?, module_of(stem)?, half))
        });
        let Some((layer, module, half)) = parsed else {
            return Err(terr(
                "not a LoRA tensor of a decoder layer's q/k/v/o/gate/up/down projection".into(),
            ));
        };
        if layer >= cfg.num_layers {
            return Err(terr(format!("layer {layer} does not exist (the base has {})", cfg.num_layers)));
        }
        let m = g.matrix(&t.name)?.expect("listed tensor exists");
        let vals = m.to_f32();
        if let Some(bad) = vals.iter().position(|v| !v.is_finite()) {
            return Err(terr(format!("non-finite value {} at index {bad}", vals[bad])));
        }
        let slot = found.entry((layer, module as usize)).or_default();
        let entry = Some((m.rows(), m.cols(), vals));
        match half {
            "a" => slot.0 = entry,
            "b" => slot.1 = entry,
            other => return Err(terr(format!("unknown LoRA half 'lora_{other}'"))),
        }
    }
    if found.is_empty() {
        return Err(refuse("the file holds no LoRA tensors".into()));
    }
    let mut layers: Vec<[Option<LoraPair>; 7]> = (0..cfg.num_layers).map(|_| Default::default()).collect();
    for ((layer, mi), (a, b)) in found {
        let module = Module::ALL[mi];
        let what = format!("blk.{layer}.{}", module.hf_name());
        let (Some((ra, ca, a)), Some((rb, cb, mut b))) = (a, b) else {
            return Err(refuse(format!("{what}: lora_a and lora_b must both be present")));
        };
        let (d_out, d_in) = module_shape(cfg, module);
        if ca != d_in || rb != d_out || cb != ra || ra == 0 {
            return Err(refuse(format!(
                "{what}: lora_a [{ra}, {ca}] and lora_b [{rb}, {cb}] do not fit the base ([r, {d_in}] and [{d_out}, r])"
            )));
        }
        let rank = ra;
        if cfg.arch == Arch::Llama && matches!(module, Module::Q | Module::K) {
            let heads = if module == Module::Q { cfg.num_heads } else { cfg.num_kv_heads };
            let perm = unpermute(heads, cfg.head_dim);
            b = perm.iter().flat_map(|&p| b[p * rank..(p + 1) * rank].to_vec()).collect();
        }
        let scale = if alpha == 0.0 { 1.0 } else { alpha / rank as f32 };
        layers[layer][mi] = Some(LoraPair { rank, d_in, d_out, a, b, scale });
    }
    Ok(LoraAdapter { name, layers })
}
