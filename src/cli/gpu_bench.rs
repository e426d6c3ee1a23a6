//! `loradock gpu-bench`: the CUDA backend's figures on one GPU — the copy bandwidth bound,
//! batch-1 decode against it, a batch with a distinct adapter per row against the same batch
//! without adapters, and cold dock latency. Prints one block of `key: value` lines that
//! `scripts/gpu_check.sh` records. Refuses, naming the reason, where there is no usable GPU.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::backend::cuda::kv_gpu::{GpuKv, KvLayout};
use crate::backend::cuda::model::{CudaModel, GpuLoras, GpuSeq};
use crate::backend::cuda::pages::{BlockTable, PageAllocator};
use crate::backend::cuda::{probe, CudaDevice, Probe};
use crate::error::{Error, Result};
use crate::lora::{load_adapter, LoraAdapter};
use crate::memory::Ledger;
use crate::model::{load_model, LoadOptions};
use crate::sampling::argmax;

/// `gpu-bench` flags.
#[derive(Debug, Args)]
pub struct GpuBenchArgs {
    /// Model (GGUF file or HF directory).
    #[arg(long)]
    pub model: PathBuf,
    /// Directory of adapters (`a0000`, `a0001`… as `synth --adapters` writes them).
    #[arg(long)]
    pub adapters: Option<PathBuf>,
    /// Rows of the mixed batch (each with its own adapter).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Decode steps timed.
    #[arg(long, default_value_t = 64)]
    pub steps: usize,
    /// KV cache type: f16 or int8.
    #[arg(long, default_value = "f16")]
    pub kv: String,
    /// Device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
}

/// Decode `steps` tokens for `sets.len()` sequences after a 32-token prompt; returns tok/s.
fn decode(
    dev: &CudaDevice,
    m: &CudaModel,
    layout: KvLayout,
    sets: &[Vec<(usize, f32)>],
    loras: Option<&GpuLoras>,
    steps: usize,
) -> Result<f64> {
    let cfg = m.config();
    let per_seq = (32 + steps + 1).div_ceil(16);
    let mut kv =
        GpuKv::new(dev, layout, cfg.num_layers, per_seq * sets.len(), cfg.num_kv_heads, cfg.head_dim)?;
    let mut pages = PageAllocator::new((per_seq * sets.len()) as u32);
    let mut tables = vec![BlockTable::new(); sets.len()];
    let prompt: Vec<u32> = (0..32).map(|i| (i * 97 + 11) as u32 % cfg.vocab_size as u32).collect();
    let mut next: Vec<u32> = vec![0; sets.len()];
    let mut t0 = Instant::now();
    for step in 0..=steps {
        if step == 1 {
            t0 = Instant::now();
        }
        let toks: Vec<Vec<u32>> = if step == 0 {
            vec![prompt.clone(); sets.len()]
        } else {
            next.iter().map(|&t| vec![t]).collect()
        };
        let mut seqs: Vec<GpuSeq<'_>> = tables
            .iter_mut()
            .zip(&toks)
            .zip(sets)
            .map(|((table, t), set)| GpuSeq { tokens: t, table, adapters: set.clone() })
            .collect();
        let logits = m.forward(dev, &mut kv, &mut pages, &mut seqs, loras)?;
        next = logits.iter().map(|l| argmax(l)).collect();
    }
    Ok((steps * sets.len()) as f64 / t0.elapsed().as_secs_f64())
}

/// Run the benchmark `a` describes.
pub fn gpu_bench(a: &GpuBenchArgs) -> Result<()> {
    let p = probe();
    println!("probe: {}", p.describe());
    let total = match &p {
        Probe::Available { devices, .. } => {
            devices.iter().find(|d| d.ordinal == a.device).map(|d| d.total_memory).unwrap_or(0)
        }
        Probe::Unavailable(why) => return Err(Error::device("cuda", why.clone())),
    };
    let layout = match a.kv.as_str() {
        "f16" => KvLayout::F16,
        "int8" => KvLayout::Int8,
        other => return Err(Error::invalid("kv", format!("'{other}': the GPU cache is f16 or int8"))),
    };
    let dev = CudaDevice::open(a.device, Ledger::new(format!("cuda:{}", a.device), total / 10 * 9))?;
    let bw = dev.copy_bandwidth(1 << 30, 20)?;
    println!("copy bandwidth (read+write): {bw:.0} GB/s");
    let model = load_model(&a.model, &LoadOptions::default())?.model;
    let t = Instant::now();
    let gm = CudaModel::upload(&dev, &model)?;
    dev.synchronize()?;
    println!("model: {} ({:.2} s to upload)", a.model.display(), t.elapsed().as_secs_f64());
    let bpt = gm.bytes_per_token();
    let bound = bw * 1e9 / bpt as f64;
    println!("bytes per token: {bpt} → bound {bound:.0} tok/s");
    let b1 = decode(&dev, &gm, layout, &[vec![]], None, a.steps)?;
    println!("batch-1 decode: {b1:.1} tok/s ({:.1}% of the bound)", 100.0 * b1 / bound);
    let Some(dir) = &a.adapters else { return Ok(()) };
    let t = Instant::now();
    let first = load_adapter(&dir.join("a0000"), &model.config)?;
    let one = GpuLoras::upload(&dev, &model.config, &[&first])?;
    dev.synchronize()?;
    println!(
        "cold dock (parse from page cache + upload, 1 adapter): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    drop(one);
    let adapters: Vec<LoraAdapter> = (0..a.batch)
        .map(|i| load_adapter(&dir.join(format!("a{i:04}")), &model.config))
        .collect::<Result<_>>()?;
    let refs: Vec<&LoraAdapter> = adapters.iter().collect();
    let t = Instant::now();
    let loras = GpuLoras::upload(&dev, &model.config, &refs)?;
    dev.synchronize()?;
    println!("docked {} adapters in {:.1} ms", refs.len(), t.elapsed().as_secs_f64() * 1e3);
    let none: Vec<Vec<(usize, f32)>> = vec![vec![]; a.batch];
    let mixed: Vec<Vec<(usize, f32)>> = (0..a.batch).map(|i| vec![(i, 1.0)]).collect();
    let base = decode(&dev, &gm, layout, &none, Some(&loras), a.steps)?;
    let with = decode(&dev, &gm, layout, &mixed, Some(&loras), a.steps)?;
    println!("batch-{} decode, no adapters: {base:.1} tok/s", a.batch);
    println!("batch-{} decode, a distinct adapter per row: {with:.1} tok/s ({:.3}x)", a.batch, with / base);
    let stats = dev.ledger().stats();
    println!("ledger: high water {} of {} bytes", stats.high_water_bytes, stats.budget_bytes);
    Ok(())
}
