//! `loradock synth`: deterministic random-weight models of real shapes, written as GGUF where
//! they are needed (a GPU machine cannot receive the real model files), plus PEFT adapters.
//! Weights are approximately N(0, 0.02²) like a fresh init (norms 1), so activations stay
//! finite; the same seed gives the same bytes. The vocabulary is a valid SentencePiece-style
//! one (control tokens, 256 byte tokens, synthetic pieces): any text tokenizes through byte
//! fallback, and generated text is gibberish — these models are for speed and parity only.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::bench_mixed::{synthetic_adapters, SplitMix};
use crate::error::{Error, Result};
use crate::lora::{write_peft, Module};
use crate::model::gguf::GgufWriter;
use crate::model::{load_model, LoadOptions};
use crate::tensor::quant::{quantize_row_q4_0, quantize_row_q4_1, quantize_row_q8_0};
use crate::tensor::DType;

/// A model shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// SmolLM2-135M: 30 layers, hidden 576, 9 heads (3 KV), FFN 1536, vocab 49152, tied.
    Smollm2,
    /// A Llama-3-8B-like shape: 32 layers, hidden 4096, 32 heads (8 KV), FFN 14336, vocab
    /// 128256, untied.
    Llama8b,
    /// A ~200M shape (the mixed-batch benchmark's): 16 layers, hidden 1024, 16 heads (4 KV),
    /// FFN 2816, vocab 32000, untied.
    Bench200m,
}

/// Weight type of the projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SynthType {
    /// IEEE half.
    F16,
    /// ggml Q8_0.
    #[value(name = "q8_0")]
    Q8_0,
    /// ggml Q4_0.
    #[value(name = "q4_0")]
    Q4_0,
    /// ggml Q4_1.
    #[value(name = "q4_1")]
    Q4_1,
}

/// `synth` flags.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Model shape.
    #[arg(long, value_enum, default_value = "smollm2")]
    pub shape: Shape,
    /// Weight type of the projections and the output head (norms are f32, the embedding f16).
    #[arg(long = "type", value_enum, default_value = "q4_1")]
    pub dtype: SynthType,
    /// Output GGUF file.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write this many PEFT adapters (`<out>.adapters/a0000`…), rank `--rank` on
    /// q/k/v/o, f16 tensors.
    #[arg(long, default_value_t = 0)]
    pub adapters: usize,
    /// Rank of the adapters.
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// Use only the first N layers of the shape (a smaller file with the same layer shapes).
    #[arg(long)]
    pub layers: Option<usize>,
}

struct Dims {
    layers: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    vocab: usize,
    tied: bool,
    theta: f32,
}

fn dims(s: Shape) -> Dims {
    match s {
        Shape::Smollm2 => Dims {
            layers: 30,
            hidden: 576,
            heads: 9,
            kv_heads: 3,
            ffn: 1536,
            vocab: 49152,
            tied: true,
            theta: 100000.0,
        },
        Shape::Llama8b => Dims {
            layers: 32,
            hidden: 4096,
            heads: 32,
            kv_heads: 8,
            ffn: 14336,
            vocab: 128256,
            tied: false,
            theta: 500000.0,
        },
        Shape::Bench200m => Dims {
            layers: 16,
            hidden: 1024,
            heads: 16,
            kv_heads: 4,
            ffn: 2816,
            vocab: 32000,
            tied: false,
            theta: 10000.0,
        },
    }
}

const INIT_STD: f32 = 0.02;

/// `rows × cols` random values quantized to `t`, as ggml tensor bytes (its type id first).
fn tensor(rng: &mut SplitMix, rows: usize, cols: usize, t: SynthType) -> (u32, Vec<u8>) {
    let dtype = match t {
        SynthType::F16 => DType::F16,
        SynthType::Q8_0 => DType::Q8_0,
        SynthType::Q4_0 => DType::Q4_0,
        SynthType::Q4_1 => DType::Q4_1,
    };
    let mut out = Vec::with_capacity(rows * dtype.row_bytes(cols).expect("shape dims are multiples of 32"));
    let mut row = vec![0f32; cols];
    for _ in 0..rows {
        row.iter_mut().for_each(|v| *v = rng.normal(INIT_STD));
        match t {
            SynthType::F16 => out.extend(row.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes())),
            SynthType::Q8_0 => quantize_row_q8_0(&row, &mut out),
            SynthType::Q4_0 => quantize_row_q4_0(&row, &mut out),
            SynthType::Q4_1 => quantize_row_q4_1(&row, &mut out),
        }
    }
    (dtype.ggml_id(), out)
}

/// A made tensor: ggml type id and bytes.
type Made = (u32, Vec<u8>);

/// Make every tensor of `jobs` on all cores; results in job order.
fn make_all(jobs: &[(String, usize, usize, SynthType)], seed: u64) -> Vec<Made> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let out: Vec<parking_lot::Mutex<Option<Made>>> =
        jobs.iter().map(|_| parking_lot::Mutex::new(None)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((_, rows, cols, t)) = jobs.get(i) else { break };
                let mut rng = SplitMix(
                    0x5EED_0000
                        ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
                        ^ (i as u64).wrapping_mul(0x9E37_79B9),
                );
                *out[i].lock() = Some(tensor(&mut rng, *rows, *cols, *t));
            });
        }
    });
    out.into_iter().map(|m| m.into_inner().expect("every job ran")).collect()
}

/// Write the vocabulary keys: `<unk>`, `<s>`, `</s>`, 256 byte tokens, synthetic pieces.
fn vocab(w: &mut GgufWriter, n: usize) {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    tokens.extend((0..256).map(|b| format!("<0x{b:02X}>")));
    let letters = "etaoinshrdlucmfwypvbgkqjxz";
    let mut i = 0usize;
    while tokens.len() < n {
        // Distinct pieces: the base-26 spelling of i, with a word-start marker on half.
        let (mut k, mut piece) = (i, String::new());
        loop {
            piece.push(letters.as_bytes()[k % 26] as char);
            k /= 26;
            if k == 0 {
                break;
            }
        }
        if i.is_multiple_of(2) {
            piece.insert(0, '▁');
        }
        tokens.push(piece);
        i += 1;
    }
    let scores: Vec<f32> = (0..n).map(|j| -(j as f32)).collect();
    let types: Vec<i32> = (0..n)
        .map(|j| match j {
            0 => 2,
            1 | 2 => 3,
            3..=258 => 6,
            _ => 1,
        })
        .collect();
    w.str("tokenizer.ggml.model", "llama").str_array("tokenizer.ggml.tokens", &tokens);
    w.f32_array("tokenizer.ggml.scores", &scores).i32_array("tokenizer.ggml.token_type", &types);
    w.u32("tokenizer.ggml.bos_token_id", 1)
        .u32("tokenizer.ggml.eos_token_id", 2)
        .u32("tokenizer.ggml.unknown_token_id", 0);
}

/// Write the model (and adapters) `a` asks for; prints what it wrote.
pub fn synth(a: &SynthArgs) -> Result<()> {
    let mut d = dims(a.shape);
    if let Some(n) = a.layers {
        if n == 0 || n > d.layers {
            return Err(Error::invalid(
                "layers",
                format!("{n} is not between 1 and the shape's {}", d.layers),
            ));
        }
        d.layers = n;
    }
    let hd = d.hidden / d.heads;
    let mut w = GgufWriter::default();
    w.str("general.architecture", "llama")
        .str("general.name", &format!("loradock-synth-{:?}", a.shape).to_lowercase());
    w.u32("llama.block_count", d.layers as u32)
        .u32("llama.embedding_length", d.hidden as u32)
        .u32("llama.feed_forward_length", d.ffn as u32)
        .u32("llama.attention.head_count", d.heads as u32)
        .u32("llama.attention.head_count_kv", d.kv_heads as u32)
        .u32("llama.context_length", 8192)
        .u32("llama.vocab_size", d.vocab as u32)
        .f32("llama.rope.freq_base", d.theta)
        .f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    vocab(&mut w, d.vocab);
    // Every tensor has its own generator (seeded by the seed and its index), so tensors are
    // made in parallel and the file is the same whatever the thread count.
    let mut jobs: Vec<(String, usize, usize, SynthType)> =
        vec![("token_embd.weight".into(), d.vocab, d.hidden, SynthType::F16)];
    for l in 0..d.layers {
        let attn = [
            ("attn_q", d.heads * hd, d.hidden),
            ("attn_k", d.kv_heads * hd, d.hidden),
            ("attn_v", d.kv_heads * hd, d.hidden),
            ("attn_output", d.hidden, d.heads * hd),
        ];
        let ffn = [("ffn_gate", d.ffn, d.hidden), ("ffn_up", d.ffn, d.hidden), ("ffn_down", d.hidden, d.ffn)];
        for (name, rows, cols) in attn.into_iter().chain(ffn) {
            jobs.push((format!("blk.{l}.{name}.weight"), rows, cols, a.dtype));
        }
    }
    if !d.tied {
        jobs.push(("output.weight".into(), d.vocab, d.hidden, a.dtype));
    }
    let made = make_all(&jobs, a.seed);
    let ones = vec![1f32; d.hidden];
    for ((name, rows, cols, _), (id, data)) in jobs.iter().zip(made) {
        w.tensor(name, &[*cols as u64, *rows as u64], id, data);
    }
    for l in 0..d.layers {
        w.tensor_f32(&format!("blk.{l}.attn_norm.weight"), &[d.hidden as u64], &ones);
        w.tensor_f32(&format!("blk.{l}.ffn_norm.weight"), &[d.hidden as u64], &ones);
    }
    w.tensor_f32("output_norm.weight", &[d.hidden as u64], &ones);
    if let Some(dir) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    w.write_file(&a.out)?;
    let bytes = std::fs::metadata(&a.out).map_err(|e| Error::io(&a.out, e))?.len();
    println!(
        "wrote {} ({:.1} MiB, {:?} {:?}, {} layers)",
        a.out.display(),
        bytes as f64 / (1u64 << 20) as f64,
        a.shape,
        a.dtype,
        d.layers
    );
    if a.adapters > 0 {
        write_adapters(&a.out, a.adapters, a.rank)?;
    }
    Ok(())
}

fn write_adapters(model: &Path, n: usize, rank: usize) -> Result<()> {
    let cfg = load_model(model, &LoadOptions::default())?.model.config;
    let mut dir = model.as_os_str().to_owned();
    dir.push(".adapters");
    let dir = PathBuf::from(dir);
    for (i, ad) in synthetic_adapters(&cfg, n, rank, &[Module::Q, Module::K, Module::V, Module::O])
        .into_iter()
        .enumerate()
    {
        let d = dir.join(format!("a{i:04}"));
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        write_peft(&ad, &d, true)?;
    }
    println!("wrote {n} rank-{rank} adapters under {}", dir.display());
    Ok(())
}
