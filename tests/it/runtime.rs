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

const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn adapters_dir() -> PathBuf {
    common::tiny().join("adapters")
}

/// A runtime on the tiny model with the fixture adapters under its roots.
pub(crate) fn config(cache: &TempDir) -> RuntimeConfig {
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

pub(crate) fn register(rt: &Runtime, name: &str, dir: &Path, policy: Policy) {
    rt.register_adapter(name, dir.to_str().unwrap(), Some(digest(dir)), policy).expect("register");
}

/// Every event of a stream; panics when one does not come within `WAIT`.
pub(crate) fn events(mut s: loradock::runtime::Stream) -> Vec<Event> {
    s.collect(WAIT).expect("the stream ended in time")
}

pub(crate) fn text_and_end(evs: &[Event]) -> (String, Event) {
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
pub(crate) fn settle(rt: &Runtime, what: &str, f: impl Fn(&Stats) -> bool) -> Stats {
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

pub(crate) fn at_baseline(rt: &Runtime) -> Stats {
    let base = baseline(rt);
    settle(rt, "ledger back to its baseline", |s| {
        s.device.used_bytes == base && s.adapters_docked == 0 && s.running == 0 && s.pending_queue_depth == 0
    })
}

/// The engine's own greedy text for `prompt` with `adapter` (reference for the runtime).
pub(crate) fn direct(prompt: &str, adapter: Option<&str>, max_tokens: usize) -> String {
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

pub(crate) fn req(prompt: &str, adapters: &[(&str, f32)], max_tokens: usize) -> Request {
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

fn error_of(evs: &[Event]) -> (ErrorKind, String) {
    match text_and_end(evs).1 {
        Event::Error { kind, message } => (kind, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

pub(crate) fn done_ok(s: loradock::runtime::Stream) -> String {
    let evs = events(s);
    let (text, end) = text_and_end(&evs);
    assert!(matches!(end, Event::Done { .. }), "{end:?}");
    text
}

#[test]
fn bad_adapters_and_requests_fail_clearly_and_the_runtime_keeps_serving() {
    let tmp = TempDir::new("rt-bad");
    let rt = Runtime::new(config(&tmp)).unwrap();
    // Unknown name, bad weight, too long: refused at submit.
    let e = rt.submit(req("hi", &[("nope", 1.0)], 4)).err().unwrap();
    assert!(e.to_string().contains("'nope'"), "{e}");
    register(&rt, "qv", &adapters_dir().join("r8_qv"), Policy::Disposable);
    let e = rt.submit(req("hi", &[("qv", f32::NAN)], 4)).err().unwrap();
    assert!(e.to_string().contains("weight"), "{e}");
    let e = rt.submit(req("hi", &[], 10_000)).err().unwrap();
    assert!(e.to_string().contains("max_context"), "{e}");
    let mut r = req("hi", &[], 4);
    r.input = loradock::runtime::Input::Tokens(vec![1 << 30]);
    assert!(rt.submit(r).err().unwrap().to_string().contains("vocabulary"));
    assert!(rt.register_adapter("a+b", "/x", None, Policy::Disposable).is_err());
    assert!(rt.unregister_adapter("never").is_err());
    // DoRA: refused at docking, naming the adapter and the reason.
    register(&rt, "dora", &adapters_dir().join("refuse_dora"), Policy::Disposable);
    let (kind, msg) = error_of(&events(rt.submit(req("hi", &[("dora", 1.0)], 4)).unwrap()));
    assert_eq!(kind, ErrorKind::Adapter);
    assert!(msg.contains("dora#") && msg.contains("DoRA"), "{msg}");
    // Wrong digest: the fetch fails naming both digests.
    let wrong = digest(&adapters_dir().join("r16_mlp"));
    rt.register_adapter(
        "liar",
        adapters_dir().join("r8_qv").to_str().unwrap(),
        Some(wrong),
        Policy::Disposable,
    )
    .unwrap();
    let (kind, msg) = error_of(&events(rt.submit(req("hi", &[("liar", 1.0)], 4)).unwrap()));
    assert_eq!(kind, ErrorKind::Fetch);
    assert!(msg.contains("digest mismatch"), "{msg}");
    // Outside the roots.
    rt.register_adapter("escape", "/etc", Some(wrong), Policy::Disposable).unwrap();
    let (kind, msg) = error_of(&events(rt.submit(req("hi", &[("escape", 1.0)], 4)).unwrap()));
    assert_eq!(kind, ErrorKind::Fetch);
    assert!(msg.contains("/etc"), "{msg}");
    // A composite with a bad part fails as a whole; a good request still works.
    let (kind, _) = error_of(&events(rt.submit(req("hi", &[("qv", 0.5), ("dora", 0.5)], 4)).unwrap()));
    assert_eq!(kind, ErrorKind::Adapter);
    assert_eq!(
        done_ok(rt.submit(req("hello world", &[("qv", 1.0)], 6)).unwrap()),
        direct("hello world", Some("r8_qv"), 6)
    );
    let s = at_baseline(&rt);
    assert!(s.dock_failures >= 2, "{s:#?}");
    assert_eq!(s.restarts, 0);
}

#[test]
fn cancel_before_and_during_generation_ends_once_with_cancelled() {
    let tmp = TempDir::new("rt-cancel");
    let rt = Runtime::new(config(&tmp)).unwrap();
    register(&rt, "qv", &adapters_dir().join("r8_qv"), Policy::Disposable);
    // During: read one token, then cancel.
    let mut s = rt.submit(req("hello world", &[("qv", 1.0)], 200)).unwrap();
    match s.next(WAIT) {
        Next::Event(Event::Token { .. }) => {}
        other => panic!("expected a first token, got {other:?}"),
    }
    s.cancel();
    s.cancel();
    let rest = s.collect(WAIT).unwrap();
    match rest.last().unwrap() {
        Event::Done { reason: FinishReason::Cancelled, usage } => assert!(usage.completion_tokens < 200),
        other => panic!("{other:?}"),
    }
    assert_eq!(rest.iter().filter(|e| e.is_terminal()).count(), 1);
    assert_eq!(s.next(Duration::from_millis(1)), Next::Ended);
    // Before: cancelled right after submit (it may or may not have started).
    let s = rt.submit(req("hello world", &[("qv", 1.0)], 200)).unwrap();
    s.cancel();
    let evs = events(s);
    assert!(matches!(text_and_end(&evs).1, Event::Done { reason: FinishReason::Cancelled, .. }));
    // Dropping a stream cancels its request too.
    drop(rt.submit(req("hello world", &[], 200)).unwrap());
    settle(&rt, "three cancelled requests", |s| s.requests_cancelled == 3);
    let st = at_baseline(&rt);
    assert_eq!(st.requests_cancelled, 3, "{st:#?}");
}

#[test]
fn the_red_line_holds_when_requests_do_not_all_fit_at_once() {
    let tmp = TempDir::new("rt-red");
    let mut cfg = config(&tmp);
    // Base weights plus room for about two requests' KV pages and adapters.
    let probe = Runtime::new(cfg.clone()).unwrap();
    let st = probe.stats();
    let base = st.device.by_category[0];
    let kv_one = st.kv_bytes_per_token * 128;
    drop(probe);
    let e = loradock::engine::Engine::load(&common::tiny().join("model"), &Default::default()).unwrap();
    let size = |n: &str| {
        loradock::lora::load_peft(&adapters_dir().join(n), &e.loaded.model.config).unwrap().bytes() as u64
    };
    cfg.budget_bytes = base + 2 * kv_one + size("r8_qv") + size("r16_mlp") + 4096;
    cfg.max_seqs = 8;
    cfg.max_context = 1024;
    let rt = Runtime::new(cfg).unwrap();
    register(&rt, "qv", &adapters_dir().join("r8_qv"), Policy::Disposable);
    register(&rt, "mlp", &adapters_dir().join("r16_mlp"), Policy::KeepWarm);
    let streams: Vec<_> = (0..12)
        .map(|i| {
            let a: &[(&str, f32)] = match i % 3 {
                0 => &[],
                1 => &[("qv", 1.0)],
                _ => &[("mlp", 0.5)],
            };
            // 8 prompt-ish tokens + 120 = 128 positions: about two fit at once.
            rt.submit(req("hello world", a, 120)).unwrap()
        })
        .collect();
    let mut max_pending = 0;
    let t0 = Instant::now();
    while rt.stats().requests_completed < 12 && t0.elapsed() < WAIT {
        max_pending = max_pending.max(rt.stats().pending_queue_depth);
        std::thread::sleep(Duration::from_millis(1));
    }
    for s in streams {
        done_ok(s);
    }
    let s = rt.stats();
    assert!(s.device.high_water_bytes <= s.device.budget_bytes, "{s:#?}");
    assert!(max_pending > 0, "some requests had to wait for memory");
    // One that can never fit is refused rather than left waiting.
    let (kind, msg) = error_of(&events(rt.submit(req("hello world", &[], 600)).unwrap()));
    assert_eq!(kind, ErrorKind::OverBudget, "{msg}");
    // At most the keep-warm adapter stays docked (pressure may have evicted it).
    let s = settle(&rt, "idle with only keep-warm adapters", |s| s.adapters_docked <= 1 && s.running == 0);
    assert_eq!(s.device.by_category[1], 0, "no KV pages left");
    rt.unregister_adapter("mlp").unwrap();
}

#[test]
fn a_slow_consumer_is_paused_then_ended_without_holding_back_the_others() {
    let tmp = TempDir::new("rt-slow");
    let mut cfg = config(&tmp);
    cfg.stream_buffer = 4;
    cfg.slow_consumer_timeout = Duration::from_millis(300);
    let rt = Runtime::new(cfg).unwrap();
    let stalled = rt.submit(req("hello world", &[], 100)).unwrap();
    let mut lagging = rt.submit(req("a dog", &[], 20)).unwrap();
    let fast = rt.submit(req("the cat", &[], 100)).unwrap();
    // The fast consumer reads everything while the stalled one reads nothing.
    assert_eq!(done_ok(fast), direct("the cat", None, 100));
    // A consumer that reads slowly but steadily is paused, not ended: its text is complete.
    let mut evs = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        match lagging.next(WAIT) {
            Next::Event(e) => evs.push(e),
            Next::Ended => break,
            Next::Timeout => panic!("timed out"),
        }
    }
    let (text, end) = text_and_end(&evs);
    assert!(matches!(end, Event::Done { .. }), "{end:?}");
    assert_eq!(text, direct("a dog", None, 20));
    // The one that never reads is ended once its pause outlasts the limit.
    std::thread::sleep(Duration::from_millis(600));
    let (kind, msg) = error_of(&events(stalled));
    assert_eq!(kind, ErrorKind::SlowConsumer, "{msg}");
    at_baseline(&rt);
}

#[test]
fn approximate_composites_are_materialized_once_and_match_the_engine() {
    use loradock::lora::compose::{materialize, Combination};
    let tmp = TempDir::new("rt-svd");
    let rt = Runtime::new(config(&tmp)).unwrap();
    register(&rt, "a", &adapters_dir().join("t_a"), Policy::Disposable);
    register(&rt, "b", &adapters_dir().join("t_b"), Policy::Disposable);
    let method = Combination::Svd { rank: Some(4) };
    let mut r = req("hello world", &[("a", 0.7), ("b", 0.3)], 10);
    r.combination = method.clone();
    let got = done_ok(rt.submit(r).unwrap());
    // The engine on the same materialized composite.
    let e = loradock::engine::Engine::load(&common::tiny().join("model"), &Default::default()).unwrap();
    let m = &e.loaded.model;
    let a = loradock::lora::load_peft(&adapters_dir().join("t_a"), &m.config).unwrap();
    let b = loradock::lora::load_peft(&adapters_dir().join("t_b"), &m.config).unwrap();
    let c = materialize(&[(&a, 0.7), (&b, 0.3)], &method).unwrap();
    let ids = e.tokenizer.as_ref().unwrap().encode("hello world", true).unwrap();
    let mut kv = KvCache::new(&m.config, 64);
    let p = GenerateParams { max_tokens: 10, ignore_eos: true, ..Default::default() };
    let want =
        generate(m, &mut Compute::new(1), e.tokenizer.as_ref(), &mut kv, &ids, &[(&c, 1.0)], &p, &mut |_| {})
            .unwrap()
            .text;
    assert_eq!(got, want);
    at_baseline(&rt);
}

#[test]
fn re_registering_a_name_makes_a_new_generation_and_running_requests_keep_theirs() {
    let tmp = TempDir::new("rt-gen");
    let rt = Runtime::new(config(&tmp)).unwrap();
    register(&rt, "x", &adapters_dir().join("r8_qv"), Policy::KeepWarm);
    let old = rt.submit(req("hello world", &[("x", 1.0)], 16)).unwrap();
    register(&rt, "x", &adapters_dir().join("r16_mlp"), Policy::KeepWarm);
    let new = rt.submit(req("hello world", &[("x", 1.0)], 16)).unwrap();
    assert_eq!(done_ok(old), direct("hello world", Some("r8_qv"), 16));
    assert_eq!(done_ok(new), direct("hello world", Some("r16_mlp"), 16));
    assert_eq!(rt.adapters()[0].1, 2, "second generation");
    // Both contents stay docked (keep-warm) under their own digests.
    settle(&rt, "two keep-warm adapters docked", |s| s.adapters_docked == 2);
}

#[test]
fn pinned_adapters_stay_and_keep_warm_ones_are_evicted_under_pressure() {
    let tmp = TempDir::new("rt-evict");
    let mut cfg = config(&tmp);
    let probe = Runtime::new(cfg.clone()).unwrap();
    let base = probe.stats().device.by_category[0];
    let kv_one = probe.stats().kv_bytes_per_token * 64;
    drop(probe);
    let e = loradock::engine::Engine::load(&common::tiny().join("model"), &Default::default()).unwrap();
    let size = |n: &str| {
        loradock::lora::load_peft(&adapters_dir().join(n), &e.loaded.model.config).unwrap().bytes() as u64
    };
    // Room for the pinned one and one of the two keep-warm ones, not both.
    cfg.budget_bytes = base + kv_one + size("r8_qv") + size("t_a").max(size("t_b")) + 1024;
    assert!(size("t_a").min(size("t_b")) > 1024);
    let rt = Runtime::new(cfg).unwrap();
    register(&rt, "pin", &adapters_dir().join("r8_qv"), Policy::Pinned);
    register(&rt, "w1", &adapters_dir().join("t_a"), Policy::KeepWarm);
    register(&rt, "w2", &adapters_dir().join("t_b"), Policy::KeepWarm);
    for name in ["pin", "w1", "w2", "pin", "w1"] {
        done_ok(rt.submit(req("hello world", &[(name, 1.0)], 40)).unwrap());
        let s = rt.stats();
        assert!(s.device.high_water_bytes <= s.device.budget_bytes);
    }
    let s = settle(&rt, "idle", |s| s.running == 0);
    assert!(s.evictions >= 1, "keep-warm adapters made room: {s:#?}");
    assert!(s.adapters_docked >= 1);
    // The pinned one never went: one dock for it although it was used twice around others.
    assert!(s.docks <= 4, "{s:#?}");
}

#[test]
fn two_runtimes_live_in_one_process() {
    let (t1, t2) = (TempDir::new("rt-two-a"), TempDir::new("rt-two-b"));
    let r1 = Runtime::new(config(&t1)).unwrap();
    let r2 = Runtime::new(config(&t2)).unwrap();
    assert_ne!(r1.id(), r2.id());
    register(&r1, "qv", &adapters_dir().join("r8_qv"), Policy::Disposable);
    register(&r2, "qv", &adapters_dir().join("r16_mlp"), Policy::Disposable);
    let s1 = r1.submit(req("hello world", &[("qv", 1.0)], 8)).unwrap();
    let s2 = r2.submit(req("hello world", &[("qv", 1.0)], 8)).unwrap();
    assert_eq!(done_ok(s1), direct("hello world", Some("r8_qv"), 8));
    assert_eq!(done_ok(s2), direct("hello world", Some("r16_mlp"), 8));
    r1.shutdown();
    // The other keeps serving.
    assert_eq!(done_ok(r2.submit(req("hello world", &[], 8)).unwrap()), direct("hello world", None, 8));
    assert!(r1.submit(req("hello world", &[], 8)).is_err(), "a shut-down runtime refuses work");
}

#[test]
fn shutdown_ends_running_requests_once() {
    let tmp = TempDir::new("rt-shut");
    let rt = Runtime::new(config(&tmp)).unwrap();
    let streams: Vec<_> = (0..4).map(|_| rt.submit(req("hello world", &[], 200)).unwrap()).collect();
    rt.shutdown();
    for s in streams {
        let evs = events(s);
        let (_, end) = text_and_end(&evs);
        assert!(
            matches!(end, Event::Done { .. } | Event::Error { kind: ErrorKind::Shutdown, .. }),
            "{end:?}"
        );
    }
}

#[test]
fn a_failed_actor_is_restarted_and_only_its_requests_fail() {
    let tmp = TempDir::new("rt-faults");
    let faults = Arc::new(Faults::new());
    let mut cfg = config(&tmp);
    cfg.faults = Some(Arc::clone(&faults));
    let rt = Runtime::new(cfg).unwrap();
    register(&rt, "qv", &adapters_dir().join("r8_qv"), Policy::Disposable);
    let want = direct("hello world", Some("r8_qv"), 8);
    for (i, c) in
        [Component::Fetcher, Component::Merger, Component::Decoder, Component::DecodeLoop, Component::Evictor]
            .into_iter()
            .enumerate()
    {
        faults.panic_next(c);
        let evs = events(rt.submit(req("hello world", &[("qv", 1.0)], 8)).unwrap());
        let (_, end) = text_and_end(&evs);
        match (&c, &end) {
            // The fetcher's next message is this request: it is lost with the fetcher.
            (Component::Fetcher, Event::Error { kind: ErrorKind::Internal, .. }) => {}
            (Component::Fetcher, _) => panic!("{c:?}: {end:?}"),
            // Other actors may fail on a message that is not this request (the merger on
            // FetchStarted, the decoder on Room, the evictor holds none): then the request
            // goes on through the successor; otherwise it ends with one Internal error.
            (_, Event::Done { .. } | Event::Error { kind: ErrorKind::Internal, .. }) => {}
            other => panic!("{c:?}: {other:?}"),
        }
        settle(&rt, "the restart", |s| s.restarts as usize > i);
        // Others go on.
        assert_eq!(done_ok(rt.submit(req("hello world", &[("qv", 1.0)], 8)).unwrap()), want, "after {c:?}");
    }
    let s = at_baseline(&rt);
    assert_eq!(s.restarts, 5, "{s:#?}");
}

#[test]
fn fetches_over_http_are_verified_single_flight_and_failures_name_the_source() {
    use crate::store::server::{Route, Server};
    let tmp = TempDir::new("rt-http");
    let srv = Server::start();
    let dir = adapters_dir().join("r8_qv");
    let cfg_bytes = std::fs::read(dir.join("adapter_config.json")).unwrap();
    let w_bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    srv.route("/a/adapter_config.json", Route::Delay(Duration::from_millis(200), cfg_bytes.clone()));
    srv.route("/a/adapter_model.safetensors", Route::Ok(w_bytes.clone()));
    // Failures with content that is not cached (a digest known, nothing fetched yet).
    let other = adapters_dir().join("r16_mlp");
    let other_cfg = std::fs::read(other.join("adapter_config.json")).unwrap();
    let other_w = std::fs::read(other.join("adapter_model.safetensors")).unwrap();
    srv.route("/bad/adapter_config.json", Route::Status(500));
    srv.route("/bad/adapter_model.safetensors", Route::Status(500));
    srv.route("/cut/adapter_config.json", Route::Ok(other_cfg));
    srv.route("/cut/adapter_model.safetensors", Route::Truncated(other_w, 100));
    let mut cfg = config(&tmp);
    cfg.store.http.max_attempts = 2;
    cfg.max_seqs = 64;
    let rt = Runtime::new(cfg).unwrap();
    let d = digest(&dir);
    rt.register_adapter("net", &srv.url("/a"), Some(d), Policy::Disposable).unwrap();
    rt.register_adapter("bad", &srv.url("/bad"), Some(digest(&other)), Policy::Disposable).unwrap();
    rt.register_adapter("cut", &srv.url("/cut"), Some(digest(&other)), Policy::Disposable).unwrap();
    let streams: Vec<_> =
        (0..50).map(|_| rt.submit(req("hello world", &[("net", 1.0)], 4)).unwrap()).collect();
    let want = direct("hello world", Some("r8_qv"), 4);
    for s in streams {
        assert_eq!(done_ok(s), want);
    }
    assert_eq!(srv.hits("/a/adapter_config.json"), 1, "50 requests, one download");
    assert_eq!(srv.hits("/a/adapter_model.safetensors"), 1);
    for name in ["bad", "cut"] {
        let (kind, msg) = error_of(&events(rt.submit(req("hello world", &[(name, 1.0)], 4)).unwrap()));
        assert_eq!(kind, ErrorKind::Fetch, "{msg}");
        assert!(msg.contains(&format!("/{name}/")), "{msg}");
    }
    at_baseline(&rt);
}

/// `n` distinct adapters (different alpha, so different content and digest) over a mix of
/// fixture ranks and targets, written under `dir`.
fn derived_adapters(dir: &Path, n: usize) -> Vec<(String, PathBuf)> {
    let bases = ["r8_qv", "r2_ko", "r16_mlp", "r4_rslora_all"];
    (0..n)
        .map(|i| {
            let base = adapters_dir().join(bases[i % bases.len()]);
            let out = dir.join(format!("d{i:04}"));
            std::fs::create_dir_all(&out).unwrap();
            let mut cfg: serde_json::Value =
                serde_json::from_slice(&std::fs::read(base.join("adapter_config.json")).unwrap()).unwrap();
            cfg["lora_alpha"] = serde_json::json!(1.0 + i as f64 * 0.25);
            std::fs::write(out.join("adapter_config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
            std::fs::copy(base.join("adapter_model.safetensors"), out.join("adapter_model.safetensors"))
                .unwrap();
            (format!("d{i}"), out)
        })
        .collect()
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn churn_of_2000_cycles_over_200_adapters_with_cancels_and_faults_returns_to_baseline() {
    let tmp = TempDir::new("rt-churn");
    let faults = Arc::new(Faults::new());
    let mut cfg = config(&tmp);
    cfg.faults = Some(Arc::clone(&faults));
    cfg.max_seqs = 16;
    cfg.restart = loradock::runtime::RestartPolicy {
        max_restarts: 1000,
        window: Duration::from_secs(60),
        backoff: Duration::from_millis(1),
    };
    // Tight enough that requests wait for memory now and then.
    let probe = Runtime::new(cfg.clone()).unwrap();
    let base = probe.stats().device.by_category[0];
    let kv_tok = probe.stats().kv_bytes_per_token;
    drop(probe);
    cfg.budget_bytes = base + kv_tok * 16 * 10 + (2 << 20);
    let rt = Runtime::new(cfg).unwrap();
    let adapters = derived_adapters(&tmp.0, 200);
    for (name, dir) in &adapters {
        register(&rt, name, dir, Policy::Disposable);
    }
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let components = [
        Component::Fetcher,
        Component::Merger,
        Component::Decoder,
        Component::DecodeLoop,
        Component::Evictor,
    ];
    let mut injected = 0;
    let mut inflight: Vec<(loradock::runtime::Stream, bool)> = Vec::new();
    let cycles = 2000;
    let drain =
        |inflight: &mut Vec<(loradock::runtime::Stream, bool)>, keep: usize, tallies: &mut [usize; 3]| {
            while inflight.len() > keep {
                let (mut s, _) = inflight.remove(0);
                let Some(evs) = s.collect(WAIT) else {
                    panic!("stream {} did not end: {:#?}", s.id(), rt.stats())
                };
                match text_and_end(&evs).1 {
                    Event::Done { reason: FinishReason::Cancelled, .. } => tallies[1] += 1,
                    Event::Done { .. } => tallies[0] += 1,
                    Event::Error { .. } => tallies[2] += 1,
                    Event::Token { .. } => unreachable!(),
                }
            }
        };
    let mut tallies = [0usize; 3];
    for i in 0..cycles {
        if i % 150 == 75 {
            faults.panic_next(components[rng.below(components.len() as u64) as usize]);
            injected += 1;
        }
        if i % 400 == 200 {
            faults.fail_fetches("d001");
        }
        if i % 400 == 260 {
            faults.clear();
        }
        let n = 1 + rng.below(2) as usize;
        let picks: Vec<(&str, f32)> = (0..n)
            .map(|_| (adapters[rng.below(200) as usize].0.as_str(), 0.5 + rng.below(3) as f32 * 0.25))
            .collect();
        let s = rt.submit(req("hello world", &picks, 1 + rng.below(3) as usize)).unwrap();
        let cancel = rng.below(10) == 0;
        if cancel {
            s.cancel();
        }
        inflight.push((s, cancel));
        drain(&mut inflight, 24, &mut tallies);
    }
    drain(&mut inflight, 0, &mut tallies);
    faults.clear();
    let [done, cancelled, failed] = tallies;
    assert_eq!(done + cancelled + failed, cycles, "every stream ended exactly once");
    assert!(done > cycles / 2, "most requests completed: {tallies:?}");
    eprintln!("churn: {done} completed, {cancelled} cancelled, {failed} failed, {injected} faults injected");
    // Nothing stuck: a fresh request is served, then the ledger is back to its baseline.
    let evs = events(rt.submit(req("hello world", &[("d3", 1.0)], 4)).unwrap());
    assert!(
        matches!(text_and_end(&evs).1, Event::Done { .. }),
        "{evs:?} {tallies:?} injected {injected}: {:#?}",
        rt.stats()
    );
    let s = at_baseline(&rt);
    assert!(s.device.high_water_bytes <= s.device.budget_bytes);
    assert!(s.docks >= 200, "adapters docked and undocked over and over: {s:#?}");
    assert_eq!(s.docks, s.undocks);
    assert_eq!(s.restarts as usize, injected, "{s:#?}");
    let t0 = Instant::now();
    rt.shutdown();
    assert!(t0.elapsed() < Duration::from_secs(10), "shutdown joined every thread");
}

#[test]
fn a_batch_full_of_paused_rows_queues_new_requests_instead_of_refusing_them() {
    let tmp = TempDir::new("rt-paused-full");
    let mut cfg = config(&tmp);
    cfg.stream_buffer = 2;
    cfg.max_seqs = 2;
    let rt = Runtime::new(cfg).unwrap();
    // Two readers that do not read: both rows pause with full buffers.
    let idle: Vec<_> = (0..2).map(|_| rt.submit(req("hello world", &[], 100)).unwrap()).collect();
    settle(&rt, "two paused rows", |s| s.running == 2);
    // A third request waits for a row rather than failing with Busy.
    let third = rt.submit(req("the cat", &[], 4)).unwrap();
    drop(idle); // cancelling them frees the rows
    assert_eq!(done_ok(third), direct("the cat", None, 4));
}
