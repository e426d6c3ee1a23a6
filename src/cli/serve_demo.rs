//! `loradock serve-demo`: the whole idea on the real model. One base resident; the trained
//! adapters plus hundreds derived from them at run time (scaled, rank-truncated and perturbed
//! copies, each under its own content hash) are served by a local HTTP hub, registered by URL
//! and digest, fetched just in time, docked, composed, undocked; a live status line shows the
//! ledger against its budget; a summary table ends it.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use super::demo_http::FileServer;
use super::WorkDir;
use crate::chat::ChatMessage;
use crate::error::{Error, Result};
use crate::lora::compose::{materialize, Combination};
use crate::lora::{load_peft, write_peft, LoraAdapter};
use crate::runtime::{Event, Input, Next, Policy, Request, Runtime, RuntimeConfig, Stats, Stream};
use crate::store::unixfs_write::Dag;
use crate::store::Digest;

/// `serve-demo` flags.
#[derive(Debug, Args)]
pub struct ServeDemoArgs {
    /// The base model (GGUF or HF directory).
    #[arg(long)]
    pub model: PathBuf,
    /// Directory of trained PEFT adapters (one sub-directory each).
    #[arg(long, default_value = "tests/fixtures/smollm2/adapters")]
    pub adapters: PathBuf,
    /// Adapters derived at run time from the trained ones.
    #[arg(long, default_value_t = 300)]
    pub derived: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Device budget in MiB (the red line; the default is tight on purpose, so that
    /// requests wait for memory and keep-warm adapters are evicted).
    #[arg(long, default_value_t = 144)]
    pub budget_mib: u64,
    /// Compute threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Work directory for derived adapters and caches (default: a temp dir, removed after).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Prompts that show each trained style (matched by adapter name; others get the first).
const SHOWCASE: &[(&str, &str)] = &[
    ("french", "What is a good way to spend a Sunday afternoon?"),
    ("shell", "How do I list the files in a directory, newest first?"),
    ("python", "How do I read a text file line by line?"),
    ("json", "Describe the planet Mars."),
];

fn showcase_prompt(name: &str) -> &'static str {
    SHOWCASE.iter().find(|(n, _)| name.contains(n)).map_or(SHOWCASE[0].1, |(_, p)| p)
}

fn chat(prompt: &str, max_tokens: usize) -> Request {
    let mut r = Request::prompt("");
    r.input = Input::Chat(vec![ChatMessage::user(prompt)]);
    r.params.max_tokens = max_tokens;
    r
}

/// Derived adapter `i` from `trained`: scaled, rank-truncated (SVD to rank 4 or 2) or
/// perturbed, deterministic in `i`.
fn derive(trained: &[(String, LoraAdapter)], i: usize) -> Result<(String, LoraAdapter)> {
    let (base_name, base) = &trained[i % trained.len()];
    // A factor of its own for every i: every derived adapter has distinct content.
    let f = 0.5 + (i as f32 + 1.0) * 0.004;
    let (kind, mut a) = match i % 3 {
        0 => {
            let mut a = base.clone();
            for p in a.layers.iter_mut().flatten().flatten() {
                p.b.iter_mut().for_each(|x| *x *= f);
            }
            ("scaled", a)
        }
        1 => {
            let rank = if i.is_multiple_of(2) { 4 } else { 2 };
            ("svd", materialize(&[(base, f)], &Combination::Svd { rank: Some(rank) })?)
        }
        _ => {
            let mut a = base.clone();
            let mut s = 0x9E37_79B9_7F4A_7C15u64 ^ i as u64;
            for p in a.layers.iter_mut().flatten().flatten() {
                for x in p.a.iter_mut() {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    *x += ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.01;
                }
            }
            ("perturbed", a)
        }
    };
    a.name = format!("{base_name}-{kind}-{i}");
    Ok((a.name.clone(), a))
}

fn status_line(s: &Stats, t0: Instant, done: usize, total: usize) -> String {
    let d = &s.device;
    format!(
        "\r[{:>5.1}s] {done:>4}/{total} requests | registered {} docked {} | fetched {} (cache hits {}) | evicted {} | {:.1}/{:.0} MiB used, high water {:.1} MiB | {:.0} tok/s   ",
        t0.elapsed().as_secs_f64(),
        s.adapters_registered,
        s.adapters_docked,
        s.store.fetches,
        s.store.ram_hits + s.store.disk_hits,
        s.evictions,
        d.used_bytes as f64 / 1048576.0,
        d.budget_bytes as f64 / 1048576.0,
        d.high_water_bytes as f64 / 1048576.0,
        s.tokens_per_s
    )
}

/// Read a stream to its end; the error, if it failed.
fn finish(mut s: Stream) -> Option<String> {
    let Some(events) = s.collect(Duration::from_secs(120)) else { return Some("no event for 120 s".into()) };
    events.into_iter().find_map(|e| match e {
        Event::Error { message, .. } => Some(message),
        _ => None,
    })
}

/// Run `serve-demo`.
pub(crate) fn serve_demo(a: &ServeDemoArgs) -> Result<()> {
    let scratch = WorkDir::new(a.work_dir.as_deref(), "demo")?;
    let work = scratch.path().to_path_buf();
    let hub = work.join("hub");
    std::fs::create_dir_all(&hub).map_err(|e| Error::io(&hub, e))?;
    let t0 = Instant::now();
    println!("loradock serve-demo: base model {}", a.model.display());

    // 1. The trained adapters, and hundreds derived from them, written to the hub.
    let engine = crate::engine::Engine::load(&a.model, &Default::default())?;
    let cfg = engine.loaded.model.config.clone();
    drop(engine);
    let mut trained = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&a.adapters)
        .map_err(|e| Error::io(&a.adapters, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("adapter_config.json").exists())
        .collect();
    dirs.sort();
    for d in &dirs {
        let name = d.file_name().unwrap_or_default().to_string_lossy().to_string();
        trained.push((name, load_peft(d, &cfg)?));
    }
    if trained.is_empty() {
        return Err(Error::invalid("adapters", format!("no PEFT adapters under {}", a.adapters.display())));
    }
    let mut hub_entries: Vec<(String, PathBuf, Policy)> = Vec::new();
    for (name, ad) in &trained {
        let d = hub.join(name);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        write_peft(ad, &d, true)?;
        hub_entries.push((name.clone(), d, Policy::KeepWarm));
    }
    for i in 0..a.derived {
        let (name, ad) = derive(&trained, i)?;
        let d = hub.join(&name);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
        write_peft(&ad, &d, true)?;
        hub_entries.push((name, d, Policy::Disposable));
    }
    println!(
        "{} trained adapters ({}) and {} derived ones written to the local hub in {:.1} s",
        trained.len(),
        trained.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
        a.derived,
        t0.elapsed().as_secs_f64()
    );

    // 2. The hub (HTTP files, and an IPFS gateway for every other derived adapter), and a
    // runtime that knows adapters only by URL and digest, or by CID.
    let mut dag = Dag::default();
    let mut cids = std::collections::HashMap::new();
    for (i, (name, dir, _)) in hub_entries.iter().enumerate() {
        if i >= trained.len() && i % 2 == 1 {
            let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| Error::io(dir.join(f), e));
            let (c, w) = (read("adapter_config.json")?, read("adapter_model.safetensors")?);
            let cid = dag.add_dir(&[("adapter_config.json", &c), ("adapter_model.safetensors", &w)])?;
            cids.insert(name.clone(), cid);
        }
    }
    let server = FileServer::start(&hub, std::sync::Arc::new(dag))?;
    let mut rc = RuntimeConfig::new(&a.model, work.join("cache"));
    // A small host-RAM cache, so that second uses come from the disk cache.
    rc.store.ram_budget_bytes = 32 << 20;
    rc.store.gateways = vec![server.url("").trim_end_matches('/').to_string()];
    rc.threads = a.threads;
    rc.budget_bytes = a.budget_mib << 20;
    rc.max_seqs = a.concurrency.max(1);
    rc.max_context = 1024;
    rc.submit_queue = 4096;
    rc.pending_queue = 4096;
    let rt = Runtime::new(rc)?;
    for (name, dir, policy) in &hub_entries {
        match cids.get(name) {
            // Verified end to end against the CID: no separate digest needed.
            Some(cid) => rt.register_adapter(name, &format!("ipfs://{cid}"), None, *policy)?,
            None => {
                let rel = dir.strip_prefix(&hub).expect("under the hub").to_string_lossy().to_string();
                rt.register_adapter(name, &server.url(&rel), Some(Digest::of_path(dir)?), *policy)?
            }
        };
    }
    println!(
        "{} adapters registered: {} by HTTP URL and sha256 digest, {} by ipfs:// CID (trustless CAR from the local gateway); nothing fetched yet\n",
        hub_entries.len(),
        hub_entries.len() - cids.len(),
        cids.len()
    );

    // 3. Showcase: each trained adapter, the base, and composites, concurrently.
    let mut show: Vec<(String, Request)> = Vec::new();
    for (name, _) in &trained {
        show.push((name.clone(), chat(showcase_prompt(name), 48).with_adapter(name, 1.0)));
        show.push((format!("base (no adapter) on {name}'s prompt"), chat(showcase_prompt(name), 48)));
    }
    if trained.len() >= 2 {
        let (x, y) = (&trained[0].0, &trained[1].0);
        let r = chat(showcase_prompt(x), 48).with_adapter(x, 0.6).with_adapter(y, 0.4);
        show.push((format!("{x}:0.6+{y}:0.4 (exact composite)"), r));
    }
    let streams: Vec<(String, Stream)> =
        show.into_iter().map(|(l, r)| rt.submit(r).map(|s| (l, s))).collect::<Result<_>>()?;
    // All decode together; each answer is printed token by token as it streams (later ones
    // have mostly arrived by the time their turn comes).
    for (label, mut s) in streams {
        println!("── {label}");
        print!("   ");
        let mut started = false;
        loop {
            match s.next(Duration::from_secs(120)) {
                Next::Event(Event::Token { text }) => {
                    let t = if started { text.as_str() } else { text.trim_start() };
                    started |= !t.is_empty();
                    print!("{}", t.replace('\n', "\n   "));
                    let _ = std::io::stdout().flush();
                }
                Next::Event(Event::Done { usage, .. }) => {
                    println!("\n   ({} tokens)", usage.completion_tokens);
                    break;
                }
                Next::Event(Event::Error { message, .. }) => {
                    println!("\n   error: {message}");
                    break;
                }
                Next::Timeout => {
                    println!("\n   error: no event for 120 s");
                    break;
                }
                Next::Ended => break,
            }
        }
    }
    println!();

    // 4. Hundreds of fine-tunes: one request per derived adapter, fetched on first use.
    let prompts = ["Give me one tip for learning.", "Name a color.", "Say something kind.", "What is rain?"];
    let derived: Vec<&(String, PathBuf, Policy)> = hub_entries.iter().skip(trained.len()).collect();
    let run = |names: &[&(String, PathBuf, Policy)], what: &str| -> Result<(usize, usize)> {
        let mut q: VecDeque<Stream> = VecDeque::new();
        let (mut done, mut failed) = (0usize, 0usize);
        let mut last = Instant::now();
        for (i, (name, _, _)) in names.iter().enumerate() {
            q.push_back(rt.submit(chat(prompts[i % prompts.len()], 12).with_adapter(name, 1.0))?);
            while q.len() >= a.concurrency.max(1) {
                let err = finish(q.pop_front().expect("non-empty"));
                done += 1;
                failed += err.is_some() as usize;
                if last.elapsed() > Duration::from_millis(200) {
                    print!("{}", status_line(&rt.stats(), t0, done, names.len()));
                    let _ = std::io::stdout().flush();
                    last = Instant::now();
                }
            }
        }
        for s in q {
            let err = finish(s);
            done += 1;
            failed += err.is_some() as usize;
        }
        println!("{}", status_line(&rt.stats(), t0, done, names.len()));
        println!("{what}: {done} requests, {failed} failed\n");
        Ok((done, failed))
    };
    let before = rt.stats();
    println!("every derived adapter once (fetched over HTTP or IPFS on first use, docked, undocked):");
    let (n1, f1) = run(&derived, "first use")?;
    let mid = rt.stats();
    println!("the first 48 again (their bytes now come from the store's disk and RAM caches):");
    let again: Vec<_> = derived.iter().take(48).copied().collect();
    let (n2, f2) = run(&again, "second use")?;
    let end = rt.stats();

    // 5. Summary.
    let d = &end.device;
    println!("summary");
    println!("  requests                 {:>10}  ({} failed)", end.requests_submitted, f1 + f2);
    println!(
        "  tokens generated         {:>10}  ({:.0} tok/s over the run)",
        end.tokens_generated, end.tokens_per_s
    );
    println!("  adapters registered      {:>10}", end.adapters_registered);
    println!(
        "  docks / undocks          {:>10}  / {}  (mean dock {:.2} ms)",
        end.docks, end.undocks, end.mean_dock_ms
    );
    println!("  evictions under pressure {:>10}", end.evictions);
    println!(
        "  hub downloads            {:>10}  ({:.1} MiB), first use {} / second use {}",
        end.store.network_downloads,
        end.store.bytes_downloaded as f64 / 1048576.0,
        mid.store.network_downloads - before.store.network_downloads,
        end.store.network_downloads - mid.store.network_downloads
    );
    println!("  hub files served         {:>10}", server.served.load(std::sync::atomic::Ordering::Relaxed));
    println!(
        "  store cache hits         {:>10}  (RAM {}, disk {})",
        end.store.ram_hits + end.store.disk_hits,
        end.store.ram_hits,
        end.store.disk_hits
    );
    println!(
        "  memory (device ledger)   budget {:.1} MiB, high water {:.1} MiB, now {:.1} MiB (base weights {:.1} MiB)",
        d.budget_bytes as f64 / 1048576.0,
        d.high_water_bytes as f64 / 1048576.0,
        d.used_bytes as f64 / 1048576.0,
        d.by_category[0] as f64 / 1048576.0
    );
    println!(
        "  budget crossed           {:>10}",
        if d.high_water_bytes <= d.budget_bytes { "never" } else { "YES (bug)" }
    );
    println!(
        "  wall time                {:>9.1}s  ({} + {} adapter requests)",
        t0.elapsed().as_secs_f64(),
        n1,
        n2
    );
    Ok(())
}
