//! Building a [`LlamaModel`] from an HF directory or a GGUF file: hyper-parameters, weight
//! name walking, shape validation against the configuration, GGUF q/k un-permutation, and
//! optional load-time quantization.

use std::path::{Path, PathBuf};

use super::config::{Arch, LlamaConfig, RopeScaling};
use super::gguf::{GgufFile, Value};
use super::hf::SafetensorsSet;
use super::llama::{Layer, LlamaModel};
use crate::error::{Error, Result};
use crate::tensor::{DType, QMatrix};

/// Options for loading a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Re-encode f32/f16/bf16 projection weights to this type at load (`Q8_0` or `Q4_0`), or
    /// with `F32` dequantize every tensor (embedding included) to f32.
    pub quant: Option<DType>,
}

/// The on-disk format a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// HF directory with safetensors.
    HfSafetensors,
    /// GGUF file.
    Gguf,
}

/// A loaded model with where it came from.
pub struct LoadedModel {
    /// The model.
    pub model: LlamaModel,
    /// Its path.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// For GGUF files, the parsed file (metadata such as the vocabulary stays readable).
    pub gguf: Option<GgufFile>,
}

/// Load the model at `path`: a directory (HF layout) or a `.gguf` file.
pub fn load_model(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    if let Some(q) = opts.quant {
        if !matches!(q, DType::Q8_0 | DType::Q4_0 | DType::F32) {
            return Err(Error::invalid(
                "quant",
                format!("{q:?}: load-time conversion supports q8_0, q4_0 and f32 (dequantize everything)"),
            ));
        }
    }
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        let model = load_hf(path, opts)?;
        Ok(LoadedModel { model, path: path.to_path_buf(), format: Format::HfSafetensors, gguf: None })
    } else {
        let g = GgufFile::open(path)?;
        let model = load_gguf(&g, opts)?;
        Ok(LoadedModel { model, path: path.to_path_buf(), format: Format::Gguf, gguf: Some(g) })
    }
}

/// Looks a tensor up by name in one file format.
type TensorGetter<'a> = Box<dyn Fn(&str) -> Result<Option<QMatrix>> + 'a>;

/// Fetches named tensors and checks their shapes.
struct Walker<'a> {
    source: String,
    get: TensorGetter<'a>,
    quant: Option<DType>,
}

impl Walker<'_> {
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let m = self.optional(name, rows, cols)?;
        m.ok_or_else(|| Error::MissingTensor { source: self.source.clone(), tensor: name.to_string() })
    }

    fn optional(&self, name: &str, rows: usize, cols: usize) -> Result<Option<QMatrix>> {
        let Some(m) = (self.get)(name)? else { return Ok(None) };
        if (m.rows(), m.cols()) != (rows, cols) {
            return Err(Error::ShapeMismatch {
                source: self.source.clone(),
                tensor: name.to_string(),
                expected: vec![rows, cols],
                found: vec![m.rows(), m.cols()],
            });
        }
        match self.quant {
            // f32: every stored type dequantized (for parity checks against float references).
            Some(DType::F32) if m.dtype() != DType::F32 => {
                Ok(Some(QMatrix::from_f32(rows, cols, &m.to_f32())))
            }
            Some(DType::F32) => Ok(Some(m)),
            Some(q) if !m.dtype().is_quantized() && cols.is_multiple_of(32) => m.quantize(q).map(Some),
            _ => Ok(Some(m)),
        }
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let v = self.optional_vector(name, len)?;
        v.ok_or_else(|| Error::MissingTensor { source: self.source.clone(), tensor: name.to_string() })
    }

    fn optional_vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        let Some(m) = (self.get)(name)? else { return Ok(None) };
        if m.rows() * m.cols() != len {
            return Err(Error::ShapeMismatch {
                source: self.source.clone(),
                tensor: name.to_string(),
                expected: vec![len],
                found: vec![m.rows(), m.cols()],
            });
        }
        Ok(Some(m.to_f32()))
    }
}

/// Tensor names of one layout.
struct Names {
    embed: &'static str,
    norm: &'static str,
    lm_head: &'static str,
    layer: fn(usize, &str) -> String,
}

const HF_NAMES: Names = Names {
    embed: "model.embed_tokens.weight",
    norm: "model.norm.weight",
    lm_head: "lm_head.weight",
    layer: |i, what| {
        let t = match what {
            "attn_norm" => "input_layernorm.weight",
            "q" => "self_attn.q_proj.weight",
            "k" => "self_attn.k_proj.weight",
            "v" => "self_attn.v_proj.weight",
            "o" => "self_attn.o_proj.weight",
            "q_bias" => "self_attn.q_proj.bias",
            "k_bias" => "self_attn.k_proj.bias",
            "v_bias" => "self_attn.v_proj.bias",
            "ffn_norm" => "post_attention_layernorm.weight",
            "gate" => "mlp.gate_proj.weight",
            "up" => "mlp.up_proj.weight",
            _ => "mlp.down_proj.weight",
        };
        format!("model.layers.{i}.{t}")
    },
};

const GGUF_NAMES: Names = Names {
    embed: "token_embd.weight",
    norm: "output_norm.weight",
    lm_head: "output.weight",
    layer: |i, what| {
        let t = match what {
            "attn_norm" => "attn_norm.weight",
            "q" => "attn_q.weight",
            "k" => "attn_k.weight",
            "v" => "attn_v.weight",
            "o" => "attn_output.weight",
            "q_bias" => "attn_q.bias",
            "k_bias" => "attn_k.bias",
            "v_bias" => "attn_v.bias",
            "ffn_norm" => "ffn_norm.weight",
            "gate" => "ffn_gate.weight",
            "up" => "ffn_up.weight",
            _ => "ffn_down.weight",
        };
        format!("blk.{i}.{t}")
    },
};

/// Row permutation undoing llama.cpp's q/k reordering for `n_head` heads of `head_dim`:
/// GGUF stores each head's rotary pairs interleaved, HF stores halves.
pub fn unpermute(n_head: usize, head_dim: usize) -> Vec<usize> {
    let half = head_dim / 2;
    let mut perm = vec![0; n_head * head_dim];
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                perm[h * head_dim + j * half + i] = h * head_dim + 2 * i + j;
            }
        }
    }
    perm
}

fn build(cfg: LlamaConfig, w: &Walker<'_>, names: &Names, gguf_permuted: bool) -> Result<LlamaModel> {
    let (h, qd, kvd, ffn, vocab) =
        (cfg.hidden_size, cfg.q_dim(), cfg.kv_dim(), cfg.intermediate_size, cfg.vocab_size);
    // The embedding stays in its stored type unless it doubles as the output projection.
    let embed_quant = w.quant.filter(|q| *q == DType::F32);
    let embed_walker = Walker { source: w.source.clone(), get: Box::new(|n| (w.get)(n)), quant: embed_quant };
    let embed = if cfg.tie_word_embeddings {
        w.matrix(names.embed, vocab, h)?
    } else {
        embed_walker.matrix(names.embed, vocab, h)?
    };
    let lm_head = match w.optional(names.lm_head, vocab, h)? {
        Some(m) if !cfg.tie_word_embeddings => m,
        _ => embed.clone(),
    };
    let norm = w.vector(names.norm, h)?;
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let n = |what: &str| (names.layer)(i, what);
        let mut wq = w.matrix(&n("q"), qd, h)?;
        let mut wk = w.matrix(&n("k"), kvd, h)?;
        if gguf_permuted {
            wq = wq.permute_rows(&unpermute(cfg.num_heads, cfg.head_dim));
            wk = wk.permute_rows(&unpermute(cfg.num_kv_heads, cfg.head_dim));
        }
        let bias = if cfg.attention_bias {
            Some([w.vector(&n("q_bias"), qd)?, w.vector(&n("k_bias"), kvd)?, w.vector(&n("v_bias"), kvd)?])
        } else {
            None
        };
        layers.push(Layer {
            attn_norm: w.vector(&n("attn_norm"), h)?,
            wq,
            wk,
            wv: w.matrix(&n("v"), kvd, h)?,
            wo: w.matrix(&n("o"), h, qd)?,
            bias,
            ffn_norm: w.vector(&n("ffn_norm"), h)?,
            w_gate: w.matrix(&n("gate"), ffn, h)?,
            w_up: w.matrix(&n("up"), ffn, h)?,
            w_down: w.matrix(&n("down"), h, ffn)?,
        });
    }
    Ok(LlamaModel::new(cfg, embed, layers, norm, lm_head))
}

fn load_hf(dir: &Path, opts: &LoadOptions) -> Result<LlamaModel> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let mut cfg = LlamaConfig::from_hf_json(&text, &cfg_path.display().to_string())?;
    let set = SafetensorsSet::open_dir(dir)?;
    if !cfg.tie_word_embeddings && set.shape("lm_head.weight").is_none() {
        // Some exports drop lm_head when it equals the embedding.
        cfg.tie_word_embeddings = true;
    }
    let walker =
        Walker { source: dir.display().to_string(), get: Box::new(|n| set.matrix(n)), quant: opts.quant };
    build(cfg, &walker, &HF_NAMES, false)
}

fn gguf_config(g: &GgufFile) -> Result<LlamaConfig> {
    let src = g.path().display().to_string();
    let arch_name =
        g.architecture().ok_or_else(|| Error::format(g.path(), "general.architecture is missing"))?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => {
            return Err(Error::unsupported(&src, format!("architecture '{other}' (supported: llama, qwen2)")))
        }
    };
    let key = |k: &str| format!("{arch_name}.{k}");
    let u = |k: &str| g.req_u64(&key(k)).map(|v| v as usize);
    let f = |k: &str| g.get(&key(k)).and_then(Value::as_f64).map(|v| v as f32);
    let hidden = u("embedding_length")?;
    let heads = u("attention.head_count")?;
    let vocab = match g.get(&key("vocab_size")).and_then(Value::as_u64) {
        Some(v) => v as usize,
        None => match g.tensor_info("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => t.dims[1] as usize,
            _ => return Err(Error::format(g.path(), "cannot tell the vocabulary size")),
        },
    };
    let head_dim = g
        .get(&key("attention.key_length"))
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .unwrap_or(hidden / heads.max(1));
    let rope_scaling = match g.get(&key("rope.scaling.type")).and_then(Value::as_str) {
        Some("linear") => Some(RopeScaling::Linear { factor: f("rope.scaling.factor").unwrap_or(1.0) }),
        Some("none") | None => None,
        Some(other) => return Err(Error::unsupported(&src, format!("rope scaling '{other}'"))),
    };
    let rope_scaling = match g.vector("rope_freqs.weight")? {
        Some(factors) => Some(RopeScaling::Factors(factors)),
        None => rope_scaling,
    };
    let cfg = LlamaConfig {
        arch,
        hidden_size: hidden,
        intermediate_size: u("feed_forward_length")?,
        num_layers: u("block_count")?,
        num_heads: heads,
        num_kv_heads: g
            .get(&key("attention.head_count_kv"))
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .unwrap_or(heads),
        head_dim,
        vocab_size: vocab,
        max_position_embeddings: u("context_length").unwrap_or(2048),
        rope_theta: f("rope.freq_base").unwrap_or(10000.0),
        rope_scaling,
        rms_norm_eps: f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        tie_word_embeddings: g.tensor_info("output.weight").is_none(),
        attention_bias: g.tensor_info("blk.0.attn_q.bias").is_some(),
    };
    cfg.validate(&src)?;
    Ok(cfg)
}

fn load_gguf(g: &GgufFile, opts: &LoadOptions) -> Result<LlamaModel> {
    let cfg = gguf_config(g)?;
    let permuted = cfg.arch == Arch::Llama;
    let walker =
        Walker { source: g.path().display().to_string(), get: Box::new(|n| g.matrix(n)), quant: opts.quant };
    build(cfg, &walker, &GGUF_NAMES, permuted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2): gguf[h, i, j] = hf[h, j, i].
        let (nh, hd) = (2, 8);
        let hf: Vec<usize> = (0..nh * hd).collect();
        let mut gguf = vec![0; nh * hd];
        for h in 0..nh {
            for i in 0..hd / 2 {
                for j in 0..2 {
                    gguf[h * hd + 2 * i + j] = hf[h * hd + j * (hd / 2) + i];
                }
            }
        }
        let perm = unpermute(nh, hd);
        let back: Vec<usize> = perm.iter().map(|&p| gguf[p]).collect();
        assert_eq!(back, hf);
    }
}
