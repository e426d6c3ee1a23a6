//! The runtime on the real engine with the tiny fixture model: adapters fetched, docked,
//! used and undocked; every stream ends exactly once; the ledger returns to its baseline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loradock::generate::{generate, FinishReason, GenerateParams};
use loradock::kv::KvCache;
use loradock::model::Compute;
use loradock::runtime::{
    Component, ErrorKind, Event, Faults, Next, Policy, Request, Runtime, RuntimeConfig, Stats,
};
use loradock::store::Digest;

use crate::common::{self, TempDir};

const WAIT: Duration = Duration::from_secs(60);

fn adapters_dir() -> PathBuf {
    common::tiny().join("adapters")
}

/// A runtime on the tiny model with the fixture adapters under its roots.
fn config(cache: &TempDir) -> RuntimeConfig {
    let mut cfg = RuntimeConfig::new(common::tiny().join("model"), cache.0.join("cache"));
    cfg.threads = 1;
    cfg.budget_bytes = 64 << 20;
    cfg.max_context = 256;
    cfg.store.roots = vec![adapters_dir(), cache.0.clone()];
    cfg
}

fn digest(dir: &Path) -> Digest {
    Digest::of_path(dir).expect("digest")
}

fn register(rt: &Runtime, name: &str, dir: &Path, policy: Policy) {
    rt.register_adapter(name, dir.to_str().unwrap(), Some(digest(dir)), policy).expect("register");
}

/// Every event of a stream; panics when one does not come within `WAIT`.
fn events(mut s: loradock::runtime::Stream) -> Vec<Event> {
    s.collect(WAIT).expect("the stream ended in time")
}

fn text_and_end(evs: &[Event]) -> (String, Event) {
    let text = evs
        .iter()
        .filter_map(|e| match e {
            Event::Token { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let terminal: Vec<&Event> = evs.iter().filter(|e| e.is_terminal()).collect();
    assert_eq!(terminal.len(), 1, "exactly one terminal event: {evs:?}");
    assert!(evs.last().unwrap().is_terminal(), "the terminal event comes last");
    (text, terminal[0].clone())
}

/// Wait until `f(stats)` holds (asynchronous undocks and releases), or fail with the stats.
fn settle(rt: &Runtime, what: &str, f: impl Fn(&Stats) -> bool) -> Stats {
    let t0 = Instant::now();
    loop {
        let s = rt.stats();
        if f(&s) {
            return s;
        }
        assert!(t0.elapsed() < WAIT, "{what} did not happen: {s:#?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn baseline(rt: &Runtime) -> u64 {
    rt.stats().device.by_category[0]
}

fn at_baseline(rt: &Runtime) -> Stats {
    let base = baseline(rt);
    settle(rt, "ledger back to its baseline", |s| {
        s.device.used_bytes == base && s.adapters_docked == 0 && s.running == 0 && s.pending_queue_depth == 0
    })
}

/// The engine's own greedy text for `prompt` with `adapter` (reference for the runtime).
fn direct(prompt: &str, adapter: Option<&str>, max_tokens: usize) -> String {
    let e = loradock::engine::Engine::load(&common::tiny().join("model"), &Default::default()).unwrap();
    let m = &e.loaded.model;
    let tok = e.tokenizer.as_ref().unwrap();
    let ids = tok.encode(prompt, true).unwrap();
    let a = adapter.map(|n| loradock::lora::load_peft(&adapters_dir().join(n), &m.config).unwrap());
    let list: Vec<_> = a.iter().map(|a| (a, 1.0f32)).collect();
    let mut kv = KvCache::new(&m.config, 256);
    let mut c = Compute::new(1);
    let p = GenerateParams { max_tokens, ignore_eos: true, ..Default::default() };
    generate(m, &mut c, Some(tok), &mut kv, &ids, &list, &p, &mut |_| {}).unwrap().text
}

fn req(prompt: &str, adapters: &[(&str, f32)], max_tokens: usize) -> Request {
    let mut r = Request::prompt(prompt).max_tokens(max_tokens);
    r.params.ignore_eos = true;
    for (n, w) in adapters {
        r = r.with_adapter(*n, *w);
    }
    r
}

#[test]
fn serves_base_and_adapters_like_the_engine_and_undocks_after() {
    let tmp = TempDir::new("rt-basic");
    let rt = Runtime::new(config(&tmp)).unwrap();
    register(&rt, "qv", &adapters_dir().join("r8_qv"), Policy::Disposable);
    register(&rt, "mlp", &adapters_dir().join("r16_mlp"), Policy::Disposable);
    let s0 = rt.submit(req("hello world", &[], 12)).unwrap();
    let s1 = rt.submit(req("hello world", &[("qv", 1.0)], 12)).unwrap();
    let s2 = rt.submit(req("the cat", &[("mlp", 1.0)], 12)).unwrap();
    for (s, adapter, prompt) in
        [(s0, None, "hello world"), (s1, Some("r8_qv"), "hello world"), (s2, Some("r16_mlp"), "the cat")]
    {
        let (text, end) = text_and_end(&events(s));
        match end {
            Event::Done { reason, usage } => {
                assert_eq!(reason, FinishReason::Length);
                assert_eq!(usage.completion_tokens, 12);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(text, direct(prompt, adapter, 12), "runtime and engine agree ({adapter:?})");
    }
    let s = at_baseline(&rt);
    assert_eq!(s.docks, 2);
    assert_eq!(s.undocks, 2);
    assert_eq!(s.requests_completed, 3);
    assert!(s.device.high_water_bytes <= s.device.budget_bytes);
    assert!(s.device.high_water_bytes > s.device.by_category[0], "KV and adapters were charged");
    rt.shutdown();
}
