//! LoRA adapters: PEFT parsing and validation ([`peft`]) and unmerged application
//! `y += w · s · B(A·x)` on top of the base projection, base weights untouched.

pub mod apply;
pub mod compose;
pub mod gguf_lora;
pub mod linalg;
pub mod peft;
pub mod peft_write;
pub mod targets;

pub use apply::apply_lora;
pub use gguf_lora::load_gguf_lora;
pub use peft::load_peft;
pub use peft_write::write_peft;

/// Load an adapter: a PEFT directory, or a GGUF LoRA file (llama.cpp's format).
pub fn load_adapter(
    path: &std::path::Path,
    cfg: &crate::model::LlamaConfig,
) -> crate::error::Result<LoraAdapter> {
    if path.is_file() {
        load_gguf_lora(path, cfg)
    } else {
        load_peft(path, cfg)
    }
}

/// The seven linear modules of a Llama decoder layer that adapters may target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Module {
    /// `self_attn.q_proj`
    Q = 0,
    /// `self_attn.k_proj`
    K = 1,
    /// `self_attn.v_proj`
    V = 2,
    /// `self_attn.o_proj`
    O = 3,
    /// `mlp.gate_proj`
    Gate = 4,
    /// `mlp.up_proj`
    Up = 5,
    /// `mlp.down_proj`
    Down = 6,
}

impl Module {
    /// All modules, in index order.
    pub const ALL: [Module; 7] =
        [Module::Q, Module::K, Module::V, Module::O, Module::Gate, Module::Up, Module::Down];

    /// The HF module name (`q_proj`...).
    pub fn hf_name(self) -> &'static str {
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"][self as usize]
    }

    /// The HF parent path inside a layer (`self_attn` or `mlp`).
    pub fn hf_parent(self) -> &'static str {
        if (self as usize) < 4 {
            "self_attn"
        } else {
            "mlp"
        }
    }

    /// The module with HF name `name`.
    pub fn from_hf_name(name: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.hf_name() == name)
    }
}

/// One adapted module: `A` is `[rank, in]`, `B` is `[out, rank]`, both f32, and `scale` is
/// the adapter's own `alpha / r` (or `alpha / √r` with rsLoRA).
#[derive(Debug, Clone)]
pub struct LoraPair {
    /// Rank.
    pub rank: usize,
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
    /// `A`, row-major `[rank, d_in]`.
    pub a: Vec<f32>,
    /// `B`, row-major `[d_out, rank]`.
    pub b: Vec<f32>,
    /// The adapter's scale for this module.
    pub scale: f32,
}

/// A validated adapter ready to apply: per layer, an optional pair per module.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// Where it came from (path or name), for messages.
    pub name: String,
    /// `layers[i][m as usize]`.
    pub layers: Vec<[Option<LoraPair>; 7]>,
}

impl LoraAdapter {
    /// The pair for `module` of `layer`, if adapted.
    #[inline]
    pub fn pair(&self, layer: usize, module: Module) -> Option<&LoraPair> {
        self.layers.get(layer).and_then(|l| l[module as usize].as_ref())
    }

    /// Bytes of adapter weights held (f32).
    pub fn bytes(&self) -> usize {
        self.layers.iter().flatten().flatten().map(|p| (p.a.len() + p.b.len()) * 4).sum()
    }

    /// Largest rank over all modules.
    pub fn max_rank(&self) -> usize {
        self.layers.iter().flatten().flatten().map(|p| p.rank).max().unwrap_or(0)
    }

    /// The adapter's content hash: sha256 over every adapted module's position, shapes, scale
    /// and weights (f32, little-endian). The name is not part of it: the same weights under
    /// another name are the same adapter.
    pub fn content_hash(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (li, layer) in self.layers.iter().enumerate() {
            for (mi, pair) in layer.iter().enumerate() {
                let Some(p) = pair else { continue };
                for v in [li as u64, mi as u64, p.rank as u64, p.d_in as u64, p.d_out as u64] {
                    h.update(v.to_le_bytes());
                }
                h.update(p.scale.to_le_bytes());
                for x in p.a.iter().chain(&p.b) {
                    h.update(x.to_le_bytes());
                }
            }
        }
        h.finalize().into()
    }

    /// Names of the modules adapted in at least one layer.
    pub fn targets(&self) -> Vec<&'static str> {
        Module::ALL
            .into_iter()
            .filter(|m| self.layers.iter().any(|l| l[*m as usize].is_some()))
            .map(|m| m.hf_name())
            .collect()
    }
}
