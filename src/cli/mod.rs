//! The `loradock` command line's arguments and commands (the binary in `src/bin` only calls
//! [`run`]). Other checks and scripts drive these commands: their flags and JSON output are
//! kept stable.

mod batch;
mod bench;
mod bench_mixed;
mod bench_runtime;
mod chat;
mod commands;
mod demo_http;
mod gpu_bench;
mod inspect;
mod perplexity;
mod serve_demo;
mod synth;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};

/// loradock: one resident base model, many LoRA adapters.
#[derive(Debug, Parser)]
#[command(name = "loradock", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate text (or token ids) from a prompt.
    Generate(GenerateArgs),
    /// Write the logits of every prompt position to a safetensors file.
    Logits(LogitsArgs),
    /// Describe a model, GGUF file or adapter.
    Inspect {
        /// Model directory, GGUF file or PEFT adapter directory.
        path: PathBuf,
    },
    /// Measure prefill and decode speed.
    Bench(BenchArgs),
    /// Perplexity of a text file (quality of quantized weights and KV caches).
    Perplexity(PerplexityArgs),
    /// Talk to the base model, an adapter or a composite (one line per turn).
    Chat(ChatArgs),
    /// Measure the runtime: dock/undock churn, cold docks, throughput against adapter count.
    RuntimeBench(bench_runtime::RuntimeBenchArgs),
    /// The demo node: trained and derived adapters fetched over HTTP, docked, composed,
    /// undocked under a budget, with a live status line and a summary.
    ServeDemo(serve_demo::ServeDemoArgs),
    /// Write a deterministic random-weight model of a real shape as GGUF (for GPU machines
    /// and benchmarks), optionally with PEFT adapters.
    Synth(synth::SynthArgs),
    /// Report whether a usable NVIDIA GPU is present, and if not, why.
    Gpu,
    /// The CUDA backend's figures on one GPU: bandwidth bound, batch-1 decode, a batch of
    /// distinct adapters against no adapters, cold dock latency.
    GpuBench(gpu_bench::GpuBenchArgs),
}

/// `chat` flags.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Model and adapters (several `--adapter DIR:WEIGHT` compose exactly).
    #[command(flatten)]
    pub model: ModelArgs,
    /// System message.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `perplexity` flags.
#[derive(Debug, Args)]
pub struct PerplexityArgs {
    /// Model, adapters, threads, `--kv`; `--ctx` is the window length.
    #[command(flatten)]
    pub model: ModelArgs,
    /// UTF-8 text file to score.
    #[arg(long)]
    pub file: PathBuf,
    /// Score at most this many tokens of the file (0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_tokens: usize,
    /// Also run with an f32 KV cache and report the largest logit difference from it.
    #[arg(long)]
    pub compare_f32: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Model and adapter flags shared by the commands.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Model: HF directory or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// PEFT adapter directory, optionally with a weight: DIR[:WEIGHT]. Repeat to sum adapters.
    #[arg(long = "adapter", value_name = "DIR[:WEIGHT]")]
    pub adapters: Vec<String>,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Convert weights at load: q8_0 or q4_0 (quantize f32/f16/bf16 projections), or f32
    /// (dequantize every tensor, for parity checks against float references).
    #[arg(long)]
    pub quant: Option<String>,
    /// Context length (KV cache positions); default: the model's, capped at 4096.
    #[arg(long)]
    pub ctx: Option<usize>,
    /// KV cache element type: f32 (exact), f16, int8 or q4.
    #[arg(long, default_value = "f32")]
    pub kv: String,
    /// Memory budget in bytes (the red line) for weights, adapters and KV caches; refused
    /// with a clear error when they do not fit. Suffixes K, M, G (powers of 1024) allowed.
    #[arg(long)]
    pub budget: Option<String>,
}

/// `generate` flags.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model and adapters.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text.
    #[arg(long, conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// Prompt as comma-separated token ids.
    #[arg(long, value_name = "IDS")]
    pub prompt_ids: Option<String>,
    /// Run the rows of a JSON batch file together (prints one JSON object per row).
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["prompt", "prompt_ids", "chat"])]
    pub batch: Option<PathBuf>,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop string (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Do not stop at end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

/// `logits` flags.
#[derive(Debug, Args)]
pub struct LogitsArgs {
    /// Model and adapters.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt as comma-separated token ids.
    #[arg(long, value_name = "IDS", required_unless_present = "batch")]
    pub prompt_ids: Option<String>,
    /// Run the rows of a JSON batch file as one batch; writes `logits.<row>` tensors.
    #[arg(long, value_name = "FILE.json", conflicts_with = "prompt_ids")]
    pub batch: Option<PathBuf>,
    /// Output safetensors file (tensor `logits`, f32 [prompt_len, vocab]).
    #[arg(long)]
    pub out: PathBuf,
}

/// `bench` flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model and adapters.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    /// Tokens decoded per run.
    #[arg(long, default_value_t = 64)]
    pub gen_tokens: usize,
    /// Measured runs (after one warm-up). With --mixed: measured (base, mixed) pairs.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Measure a batch of N rows, each with its own synthetic adapter, against the same batch
    /// without adapters (decode throughput; --prompt-tokens and --gen-tokens are not used).
    #[arg(long, value_name = "N")]
    pub mixed: Option<usize>,
    /// Rank of the synthetic adapters of --mixed.
    #[arg(long, default_value_t = 16, requires = "mixed")]
    pub rank: usize,
    /// Modules the synthetic adapters of --mixed adapt.
    #[arg(long, value_enum, default_value_t = MixedTargets::Qkvo, requires = "mixed")]
    pub targets: MixedTargets,
    /// Prompt tokens per row for --mixed (prefilled before each run, not timed).
    #[arg(long, default_value_t = 16, requires = "mixed")]
    pub batch_prompt_tokens: usize,
    /// Decode steps per run for --mixed (each step is one forward over all N rows).
    #[arg(long, default_value_t = 32, requires = "mixed")]
    pub batch_gen_tokens: usize,
}

/// Which modules `bench --mixed` adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MixedTargets {
    /// q_proj, k_proj, v_proj and o_proj.
    Qkvo,
    /// All seven linear modules (q/k/v/o and gate/up/down).
    All,
}

/// A command's work directory: the one given (kept), or a fresh temp dir removed on drop.
pub(crate) struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    /// `given`, or `<temp>/loradock-<tag>-<pid>`; created if missing.
    pub(crate) fn new(given: Option<&std::path::Path>, tag: &str) -> Result<WorkDir> {
        let (path, remove) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => (std::env::temp_dir().join(format!("loradock-{tag}-{}", std::process::id())), true),
        };
        std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        Ok(WorkDir { path, remove })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `loradock gpu`: the CUDA probe's answer (exit status 0 either way: no GPU is not an error).
fn gpu_probe() -> Result<()> {
    println!("{}", crate::backend::cuda::probe().describe());
    Ok(())
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(a) => commands::generate(&a),
        Command::Logits(a) => commands::logits(&a),
        Command::Inspect { path } => inspect::inspect(&path),
        Command::Bench(a) => bench::bench(&a),
        Command::Perplexity(a) => perplexity::perplexity(&a),
        Command::Chat(a) => chat::chat(&a),
        Command::RuntimeBench(a) => bench_runtime::bench_runtime(&a),
        Command::ServeDemo(a) => serve_demo::serve_demo(&a),
        Command::Synth(a) => synth::synth(&a),
        Command::Gpu => gpu_probe(),
        Command::GpuBench(a) => gpu_bench::gpu_bench(&a),
    }
}

/// Parse `1,2,3` into token ids.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u32>().map_err(|_| Error::invalid("prompt-ids", format!("'{p}' is not a token id")))
        })
        .collect()
}

/// Parse `DIR[:WEIGHT]` (a trailing `:number` is the weight; anything else is the path).
pub fn parse_adapter_spec(s: &str) -> Result<(PathBuf, f32)> {
    if let Some((path, w)) = s.rsplit_once(':') {
        if let Ok(weight) = w.parse::<f32>() {
            if !weight.is_finite() {
                return Err(Error::invalid("adapter", format!("weight '{w}' is not finite")));
            }
            return Ok((PathBuf::from(path), weight));
        }
    }
    Ok((PathBuf::from(s), 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_specs_and_ids() {
        assert_eq!(parse_adapter_spec("a/b").unwrap(), (PathBuf::from("a/b"), 1.0));
        assert_eq!(parse_adapter_spec("a/b:0.5").unwrap(), (PathBuf::from("a/b"), 0.5));
        assert_eq!(parse_adapter_spec("a:b/c").unwrap(), (PathBuf::from("a:b/c"), 1.0));
        assert_eq!(parse_adapter_spec("x:-1").unwrap(), (PathBuf::from("x"), -1.0));
        assert!(parse_adapter_spec("x:NaN").is_err());
        assert_eq!(parse_ids("1, 2,3").unwrap(), vec![1, 2, 3]);
        assert!(parse_ids("1,x").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
