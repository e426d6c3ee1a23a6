//! `loradock runtime-bench`: the runtime measured end to end with real adapters files.
//! - `churn`: many dock/undock cycles (one request per cycle, a disposable adapter each),
//!   printing cycles/s, queue-time percentiles (submit → admitted: fetch, parse, dock, wait),
//!   the ledger at the end and process RSS over time;
//! - `cold-dock`: time to first token with an adapter that is not docked (its files in the
//!   page cache, the store's RAM cache off) against the same without an adapter, beside the
//!   raw read time of the adapter's files;
//! - `scale`: throughput under one request load with 1, 10, 100, 1000… registered adapters
//!   (S-LoRA's experiment at CPU scale);
//! - `prefix`: requests that share a long prompt prefix (a system prompt) under one adapter,
//!   with prefix reuse on and then off: time to first token, prompt positions computed, KV
//!   high-water mark.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use super::bench_mixed::synthetic_adapters;
use super::WorkDir;
use crate::error::{Error, Result};
use crate::lora::{write_peft, Module};
use crate::runtime::{Event, Next, Policy, Request, Runtime, RuntimeConfig, Stream};
use crate::store::Digest;

/// What `runtime-bench` measures.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RuntimeBenchMode {
    /// Dock/undock cycles.
    Churn,
    /// Time to first token of an adapter that is not docked.
    ColdDock,
    /// Throughput with more and more registered adapters.
    Scale,
    /// Requests sharing a prompt prefix, with prefix reuse on and off.
    Prefix,
}

/// `runtime-bench` flags.
#[derive(Debug, Args)]
pub struct RuntimeBenchArgs {
    /// Model: HF directory or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// What to measure.
    #[arg(long, value_enum)]
    pub mode: RuntimeBenchMode,
    /// Synthetic adapters to write (churn).
    #[arg(long, default_value_t = 200)]
    pub adapters: usize,
    /// Requests (churn: one dock/undock cycle each; scale: per adapter count).
    #[arg(long, default_value_t = 10_000)]
    pub cycles: usize,
    /// Rank of the synthetic adapters (q and v of every layer, f16 files).
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 1)]
    pub max_tokens: usize,
    /// Compute threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Device budget in MiB.
    #[arg(long, default_value_t = 4096)]
    pub budget_mib: u64,
    /// Registered adapter counts for `scale`.
    #[arg(long, default_value = "1,10,100,1000")]
    pub scale: String,
    /// Milliseconds between request arrivals (`prefix`: an open loop).
    #[arg(long, default_value_t = 500)]
    pub interval_ms: u64,
    /// Tokens of the shared prompt prefix (`prefix`).
    #[arg(long, default_value_t = 256)]
    pub prefix_tokens: usize,
    /// Where adapters and caches are written (default: a fresh temp dir, removed after).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Write `n` synthetic adapters under `dir` (`a0000`…); returns their dirs and digests.
fn write_adapters(model: &Path, dir: &Path, n: usize, rank: usize) -> Result<Vec<(PathBuf, Digest)>> {
    let e = crate::engine::Engine::load(model, &Default::default())?;
    let cfg = &e.loaded.model.config;
    let t0 = Instant::now();
    let mut out = Vec::with_capacity(n);
    for (i, a) in synthetic_adapters(cfg, n, rank, &[Module::Q, Module::V]).into_iter().enumerate() {
        let d = dir.join(format!("a{i:04}"));
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        write_peft(&a, &d, true)?;
        out.push((d.clone(), Digest::of_path(&d)?));
    }
    eprintln!("wrote {n} adapters (rank {rank}, q/v, f16) in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(out)
}

fn runtime(a: &RuntimeBenchArgs, work: &Path, roots: &Path, tag: &str) -> Result<Runtime> {
    let mut cfg = RuntimeConfig::new(&a.model, work.join(format!("cache-{tag}")));
    cfg.threads = a.threads;
    cfg.budget_bytes = a.budget_mib << 20;
    cfg.max_seqs = a.concurrency.max(1);
    cfg.max_context = 512;
    cfg.submit_queue = 4096;
    cfg.pending_queue = 4096;
    cfg.store.roots = vec![roots.to_path_buf()];
    Runtime::new(cfg)
}

fn request(name: Option<&str>, max_tokens: usize) -> Request {
    let mut r = Request::prompt("The quick brown fox").max_tokens(max_tokens);
    r.params.ignore_eos = true;
    if let Some(n) = name {
        r = r.with_adapter(n, 1.0);
    }
    r
}

/// Read a stream to its end; (queue ms, first-token ms after `t0`, completed).
fn drain(mut s: Stream, t0: Instant) -> Result<(f64, f64, bool)> {
    let mut first = f64::NAN;
    loop {
        match s.next(Duration::from_secs(120)) {
            Next::Event(Event::Token { .. }) => {
                if first.is_nan() {
                    first = t0.elapsed().as_secs_f64() * 1e3;
                }
            }
            Next::Event(Event::Done { usage, .. }) => return Ok((usage.queue_ms, first, true)),
            Next::Event(Event::Error { kind, message }) => {
                return Err(Error::invalid(
                    "runtime-bench",
                    format!("request failed ({}): {message}", kind.as_str()),
                ))
            }
            Next::Timeout => return Err(Error::invalid("runtime-bench", "a request took more than 120 s")),
            Next::Ended => return Ok((f64::NAN, first, false)),
        }
    }
}

fn churn(a: &RuntimeBenchArgs, work: &Path) -> Result<()> {
    let dirs = write_adapters(&a.model, &work.join("adapters"), a.adapters, a.rank)?;
    let rt = runtime(a, work, &work.join("adapters"), "churn")?;
    let base = rt.stats().device.used_bytes;
    for (i, (d, dig)) in dirs.iter().enumerate() {
        rt.register_adapter(&format!("a{i}"), &d.display().to_string(), Some(*dig), Policy::Disposable)?;
    }
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut queue = Vec::with_capacity(a.cycles);
    let mut inflight = std::collections::VecDeque::new();
    let t0 = Instant::now();
    let every = (a.cycles / 20).max(1);
    println!("rss_mib at cycle 0: {:.1}", rss_mib());
    for i in 0..a.cycles {
        let name = format!("a{}", next() % a.adapters as u64);
        inflight.push_back(rt.submit(request(Some(&name), a.max_tokens))?);
        if inflight.len() >= a.concurrency {
            queue.push(drain(inflight.pop_front().expect("non-empty"), Instant::now())?.0);
        }
        if (i + 1) % every == 0 {
            let s = rt.stats();
            println!(
                "cycle {:>7}: {:>8.0} cycles/s, rss {:.1} MiB, docked {}, ledger {} B",
                i + 1,
                (i + 1) as f64 / t0.elapsed().as_secs_f64(),
                rss_mib(),
                s.adapters_docked,
                s.device.used_bytes
            );
        }
    }
    for s in inflight {
        queue.push(drain(s, Instant::now())?.0);
    }
    let secs = t0.elapsed().as_secs_f64();
    let t_settle = Instant::now();
    while (rt.stats().adapters_docked > 0 || rt.stats().device.used_bytes != base)
        && t_settle.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = rt.stats();
    println!(
        "cycles: {}  adapters: {}  rank: {}  concurrency: {}",
        a.cycles, a.adapters, a.rank, a.concurrency
    );
    println!("cycles/s: {:.0}", a.cycles as f64 / secs);
    println!(
        "queue ms (submit -> admitted: fetch + parse + dock + wait): p50 {:.3}  p99 {:.3}",
        pct(&mut queue.clone(), 0.5),
        pct(&mut queue, 0.99)
    );
    println!(
        "docks {}  undocks {}  mean dock ms {:.3}  evictions {}",
        s.docks, s.undocks, s.mean_dock_ms, s.evictions
    );
    println!(
        "ledger: baseline {} B, now {} B, high water {} B, budget {} B, by category {:?}",
        base, s.device.used_bytes, s.device.high_water_bytes, s.device.budget_bytes, s.device.by_category
    );
    println!("store: {:?}", s.store);
    println!("rss_mib at end: {:.1}", rss_mib());
    Ok(())
}

fn cold_dock(a: &RuntimeBenchArgs, work: &Path) -> Result<()> {
    let dirs = write_adapters(&a.model, &work.join("adapters"), a.cycles.clamp(1, 200), a.rank)?;
    let mut read_ms = Vec::new();
    for (d, _) in &dirs {
        let t = Instant::now();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            let p = d.join(f);
            std::hint::black_box(std::fs::read(&p).map_err(|e| Error::io(&p, e))?);
        }
        read_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let bytes = std::fs::metadata(dirs[0].0.join("adapter_model.safetensors")).map_or(0, |m| m.len());
    let mut cfg = RuntimeConfig::new(&a.model, work.join("cache-cold"));
    cfg.threads = a.threads;
    cfg.budget_bytes = a.budget_mib << 20;
    cfg.store.roots = vec![work.join("adapters")];
    // No host-RAM cache: every dock reads the files (from the page cache).
    cfg.store.ram_budget_bytes = 0;
    let rt = Runtime::new(cfg)?;
    for (i, (d, dig)) in dirs.iter().enumerate() {
        rt.register_adapter(&format!("a{i}"), &d.display().to_string(), Some(*dig), Policy::Disposable)?;
    }
    drain(rt.submit(request(None, 1))?, Instant::now())?; // warm-up
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..dirs.len() {
        let t = Instant::now();
        without.push(drain(rt.submit(request(None, 1))?, t)?.1);
        let t = Instant::now();
        with.push(drain(rt.submit(request(Some(&format!("a{i}")), 1))?, t)?.1);
    }
    let s = rt.stats();
    let (w, wo) = (pct(&mut with, 0.5), pct(&mut without, 0.5));
    println!("adapters: {} (rank {}, q/v, f16 weights {} bytes each)", dirs.len(), a.rank, bytes);
    println!("raw read of the files (page cache): p50 {:.3} ms", pct(&mut read_ms, 0.5));
    println!("first token without adapter: p50 {wo:.3} ms");
    println!("first token with a cold adapter: p50 {w:.3} ms  (dock overhead {:.3} ms)", w - wo);
    println!("merger dock time (parse + validate + reserve, mean): {:.3} ms", s.mean_dock_ms);
    Ok(())
}

fn scale(a: &RuntimeBenchArgs, work: &Path) -> Result<()> {
    let counts: Vec<usize> = a
        .scale
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| Error::invalid("scale", format!("'{s}' is not a count"))))
        .collect::<Result<_>>()?;
    let most = counts.iter().copied().max().unwrap_or(1);
    let dirs = write_adapters(&a.model, &work.join("adapters"), most, a.rank)?;
    println!("requests per run: {}  max_tokens: {}  concurrency: {}", a.cycles, a.max_tokens, a.concurrency);
    for &n in &counts {
        let rt = runtime(a, work, &work.join("adapters"), &format!("scale{n}"))?;
        for (i, (d, dig)) in dirs.iter().take(n).enumerate() {
            rt.register_adapter(&format!("a{i}"), &d.display().to_string(), Some(*dig), Policy::KeepWarm)?;
        }
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let t0 = Instant::now();
        let mut inflight = std::collections::VecDeque::new();
        let mut tokens = 0usize;
        for _ in 0..a.cycles {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            inflight.push_back(rt.submit(request(Some(&format!("a{}", rng % n as u64)), a.max_tokens))?);
            if inflight.len() >= a.concurrency {
                drain(inflight.pop_front().expect("non-empty"), Instant::now())?;
                tokens += a.max_tokens;
            }
        }
        for s in inflight {
            drain(s, Instant::now())?;
            tokens += a.max_tokens;
        }
        let secs = t0.elapsed().as_secs_f64();
        let s = rt.stats();
        println!(
            "adapters {:>5}: {:>8.1} tokens/s  {:>6.1} requests/s  docks {:>5}  evictions {:>5}  docked at end {:>5}",
            n,
            tokens as f64 / secs,
            a.cycles as f64 / secs,
            s.docks,
            s.evictions,
            s.adapters_docked
        );
    }
    Ok(())
}

fn prefix(a: &RuntimeBenchArgs, work: &Path) -> Result<()> {
    let dirs = write_adapters(&a.model, &work.join("adapters"), 1, a.rank)?;
    let vocab = crate::engine::Engine::load(&a.model, &Default::default())?.loaded.model.config.vocab_size;
    let id = |i: usize| (256 + (i * 7919) % (vocab - 512)) as u32;
    let system: Vec<u32> = (0..a.prefix_tokens).map(id).collect();
    println!(
        "requests: {} (one every {} ms)  max rows: {}  shared prefix: {} tokens + 8 own  max_tokens: {}  adapter: rank {} q/v",
        a.cycles, a.interval_ms, a.concurrency, a.prefix_tokens, a.max_tokens, a.rank
    );
    for reuse in [true, false] {
        let mut cfg = RuntimeConfig::new(&a.model, work.join(format!("cache-prefix-{reuse}")));
        cfg.threads = a.threads;
        cfg.budget_bytes = a.budget_mib << 20;
        cfg.max_seqs = a.concurrency.max(1);
        cfg.max_context = a.prefix_tokens + 8 + a.max_tokens + 16;
        cfg.prefix_reuse = reuse;
        cfg.store.roots = vec![work.join("adapters")];
        let rt = Runtime::new(cfg)?;
        rt.register_adapter("a0", &dirs[0].0.display().to_string(), Some(dirs[0].1), Policy::KeepWarm)?;
        let request = |i: usize| {
            let mut tokens = system.clone();
            tokens.extend((0..8).map(|j| id(100_000 + i * 8 + j)));
            let mut r = Request::prompt("").with_adapter("a0", 1.0).max_tokens(a.max_tokens);
            r.input = crate::runtime::Input::Tokens(tokens);
            r.params.ignore_eos = true;
            r
        };
        drain(rt.submit(request(usize::MAX / 16))?, Instant::now())?; // warm-up: docks the adapter
        let kv0 = rt.stats().device.high_water_bytes;
        // Open loop: a request every `interval_ms`, whatever is running (a closed loop of
        // identical requests runs in lockstep, so none would ever overlap another's prefix).
        let t0 = Instant::now();
        let mut readers = Vec::new();
        for i in 0..a.cycles {
            let at = Duration::from_millis(a.interval_ms * i as u64);
            if let Some(wait) = at.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            let (s, t) = (rt.submit(request(i))?, Instant::now());
            readers.push(std::thread::spawn(move || drain(s, t).map(|r| r.1)));
        }
        let mut ttft = Vec::new();
        for r in readers {
            ttft.push(r.join().map_err(|_| Error::invalid("runtime-bench", "a reader thread panicked"))??);
        }
        let secs = t0.elapsed().as_secs_f64();
        let s = rt.stats();
        let computed = a.cycles * (a.prefix_tokens + 8) - s.prefix.hit_tokens as usize;
        println!(
            "prefix reuse {:<3}: {:>7.2} s  {:>6.1} requests/s  first token p50 {:>8.1} ms p90 {:>8.1} ms  \
             prompt positions computed {:>7} (read from shared pages {:>7})  high water {:.1} MiB (before {:.1})",
            if reuse { "on" } else { "off" },
            secs,
            a.cycles as f64 / secs,
            pct(&mut ttft.clone(), 0.5),
            pct(&mut ttft, 0.9),
            computed,
            s.prefix.hit_tokens,
            s.device.high_water_bytes as f64 / (1u64 << 20) as f64,
            kv0 as f64 / (1u64 << 20) as f64,
        );
        rt.shutdown();
    }
    Ok(())
}

/// Run `runtime-bench`.
pub(crate) fn bench_runtime(a: &RuntimeBenchArgs) -> Result<()> {
    let scratch = WorkDir::new(a.work_dir.as_deref(), "runtime-bench")?;
    let work = scratch.path().to_path_buf();
    if a.adapters == 0 || a.cycles == 0 || a.concurrency == 0 {
        return Err(Error::invalid(
            "runtime-bench",
            "--adapters, --cycles and --concurrency must be at least 1",
        ));
    }
    match a.mode {
        RuntimeBenchMode::Churn => churn(a, &work),
        RuntimeBenchMode::ColdDock => cold_dock(a, &work),
        RuntimeBenchMode::Scale => scale(a, &work),
        RuntimeBenchMode::Prefix => prefix(a, &work),
    }
}
