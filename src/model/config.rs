//! The Llama-family hyper-parameters, read from an HF `config.json` or GGUF metadata.

use serde::Deserialize;

use crate::error::{Error, Result};

/// Architectures of the Llama family that loradock runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama 1/2/3, SmolLM, Mistral-style dense models.
    Llama,
    /// Qwen2: Llama with biases on q/k/v.
    Qwen2,
}

/// RoPE frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        /// Overall factor.
        factor: f32,
        /// Low-frequency factor.
        low_freq_factor: f32,
        /// High-frequency factor.
        high_freq_factor: f32,
        /// Context length of the original training.
        original_max_position_embeddings: f32,
    },
    /// Positions divided by a factor.
    Linear {
        /// Factor.
        factor: f32,
    },
    /// Per-frequency divisors given as a tensor (GGUF `rope_freqs.weight`).
    Factors(Vec<f32>),
}

/// Hyper-parameters of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Architecture.
    pub arch: Arch,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA when fewer than query heads).
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Longest context the model was trained for.
    pub max_position_embeddings: usize,
    /// RoPE base.
    pub rope_theta: f32,
    /// RoPE scaling, if any.
    pub rope_scaling: Option<RopeScaling>,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Output projection shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases.
    pub attention_bias: bool,
}

impl LlamaConfig {
    /// Width of the query projection output.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }
    /// Width of the key (and value) projection output.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// Check internal consistency; `source` names the file in errors.
    pub fn validate(&self, source: &str) -> Result<()> {
        let bad = |r: String| Err(Error::config(source, r));
        if self.hidden_size == 0 || self.num_layers == 0 || self.num_heads == 0 || self.vocab_size == 0 {
            return bad(
                "hidden_size, num_hidden_layers, num_attention_heads and vocab_size must be > 0".into()
            );
        }
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim {} must be even and > 0", self.head_dim));
        }
        if self.rope_theta.is_nan()
            || self.rope_theta <= 0.0
            || self.rms_norm_eps.is_nan()
            || self.rms_norm_eps <= 0.0
        {
            return bad("rope_theta and rms_norm_eps must be > 0".into());
        }
        if self.num_layers > 1024 || self.hidden_size > 1 << 16 || self.vocab_size > 1 << 22 {
            return bad("dimensions beyond loradock's limits (1024 layers, 65536 wide, 4M vocab)".into());
        }
        Ok(())
    }

    /// Parse an HF `config.json`.
    pub fn from_hf_json(text: &str, source: &str) -> Result<LlamaConfig> {
        let raw: HfConfig = serde_json::from_str(text)
            .map_err(|e| Error::config(source, format!("not a valid config.json: {e}")))?;
        let model_type = raw.model_type.clone().unwrap_or_default();
        let arch = match model_type.as_str() {
            "llama" | "mistral" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(Error::unsupported(
                    source,
                    format!("model_type '{other}' (supported: llama, mistral, qwen2)"),
                ))
            }
        };
        // Llama's attention_bias also adds an o_proj bias, and mlp_bias biases the MLP:
        // neither is implemented, so refuse rather than ignore the tensors.
        if arch == Arch::Llama && raw.attention_bias == Some(true) {
            return Err(Error::unsupported(source, "attention_bias: true on a llama model (o_proj bias)"));
        }
        if raw.mlp_bias == Some(true) {
            return Err(Error::unsupported(source, "mlp_bias: true"));
        }
        if raw.hidden_act.as_deref().is_some_and(|a| a != "silu") {
            return Err(Error::unsupported(source, format!("hidden_act {:?} (only silu)", raw.hidden_act)));
        }
        let num_heads = raw.num_attention_heads;
        let head_dim = raw.head_dim.unwrap_or(raw.hidden_size.checked_div(num_heads).unwrap_or(0));
        let rope_scaling = match &raw.rope_scaling {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(parse_rope_scaling(v, source)?),
        };
        let cfg = LlamaConfig {
            arch,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_layers: raw.num_hidden_layers,
            num_heads,
            num_kv_heads: raw.num_key_value_heads.unwrap_or(num_heads),
            head_dim,
            vocab_size: raw.vocab_size,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            rope_theta: raw.rope_theta.unwrap_or(10000.0),
            rope_scaling,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            // Qwen2 always has q/k/v biases (its config does not switch them).
            attention_bias: arch == Arch::Qwen2,
        };
        cfg.validate(source)?;
        Ok(cfg)
    }
}

fn parse_rope_scaling(v: &serde_json::Value, source: &str) -> Result<RopeScaling> {
    let kind = v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("");
    let num = |k: &str| -> Result<f32> {
        v.get(k)
            .and_then(|x| x.as_f64())
            .map(|x| x as f32)
            .ok_or_else(|| Error::config(source, format!("rope_scaling.{k} missing or not a number")))
    };
    match kind {
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        }),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor")? }),
        "default" => Ok(RopeScaling::Linear { factor: 1.0 }),
        other => Err(Error::unsupported(source, format!("rope_scaling type '{other}'"))),
    }
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    rope_theta: Option<f32>,
    rope_scaling: Option<serde_json::Value>,
    rms_norm_eps: Option<f32>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOL: &str = r#"{"model_type":"llama","hidden_size":576,"intermediate_size":1536,
        "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"vocab_size":49152,
        "rope_theta":100000,"rms_norm_eps":1e-5,"tie_word_embeddings":true,"hidden_act":"silu"}"#;

    #[test]
    fn parses_a_llama_config() {
        let c = LlamaConfig::from_hf_json(SMOL, "config.json").unwrap();
        assert_eq!(c.head_dim, 64);
        assert_eq!(c.kv_dim(), 192);
        assert!(c.tie_word_embeddings);
        assert_eq!(c.arch, Arch::Llama);
    }

    #[test]
    fn llama3_scaling_and_qwen2_bias() {
        let j = SMOL.replace(
            "\"rope_theta\":100000",
            r#""rope_theta":500000,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        );
        let c = LlamaConfig::from_hf_json(&j, "c").unwrap();
        assert!(matches!(c.rope_scaling, Some(RopeScaling::Llama3 { factor, .. }) if factor == 8.0));
        let q =
            SMOL.replace("\"llama\"", "\"qwen2\"").replace("\"silu\"", "\"silu\",\"attention_bias\":false");
        assert!(LlamaConfig::from_hf_json(&q, "c").unwrap().attention_bias);
        let b = SMOL.replace("\"silu\"", "\"silu\",\"attention_bias\":true");
        assert!(LlamaConfig::from_hf_json(&b, "c").unwrap_err().to_string().contains("o_proj bias"));
    }

    #[test]
    fn refuses_bad_configs() {
        let e =
            LlamaConfig::from_hf_json(&SMOL.replace("\"llama\"", "\"gpt2\""), "m/config.json").unwrap_err();
        assert!(e.to_string().contains("model_type 'gpt2'"), "{e}");
        let e = LlamaConfig::from_hf_json(
            &SMOL.replace("\"num_key_value_heads\":3", "\"num_key_value_heads\":4"),
            "c",
        )
        .unwrap_err();
        assert!(e.to_string().contains("multiple of num_key_value_heads"), "{e}");
        assert!(LlamaConfig::from_hf_json("{", "c").is_err());
    }
}
