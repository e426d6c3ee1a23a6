//! Prefix reuse keyed by content, on the tiny model: the engine reads a shared prefix exactly
//! as if it had computed it; in the runtime, requests running at the same time share prompt
//! pages only under the same base, adapter contents, weights and tokens — never by name — and
//! shared pages are charged once and freed when the last request holding them ends.

use std::time::Duration;

use loradock::kv::prefix::{block_keys, context_key, SharedPrefix, BLOCK};
use loradock::kv::{KvCache, KvType};
use loradock::memory::{Category, Ledger};
use loradock::model::{Compute, LogitsMode, SeqBatch};
use loradock::runtime::{Next, Policy, Runtime, Stats};

use crate::common::{self, TempDir};
use crate::runtime::{adapters_dir, at_baseline, config, direct, done_ok, register, req, settle};

/// A prompt of well over two pages on the tiny tokenizer.
const PROMPT: &str = "the cat sat on the mat and the dog sat on the log while the bird sang in the tree \
                      and the fish swam in the pond under the bridge by the old mill";

#[test]
fn a_cache_over_a_shared_prefix_gives_the_same_logits_as_computing_it() {
    let m = common::model(&common::tiny().join("model"));
    let a = common::adapter(&m, "r8_qv");
    let ids: Vec<u32> = (0..45).map(|i| (i * 37 % 200 + 5) as u32).collect();
    let ledger = Ledger::new("cpu", 64 << 20);
    let mut c = Compute::new(1);
    for kind in [KvType::F32, KvType::Int8] {
        let adapters = [(&a, 0.7f32)];
        let last = |kv: &mut KvCache, tokens: &[u32], c: &mut Compute| {
            let mut seqs = [SeqBatch { tokens, kv, adapters: &adapters, logits: LogitsMode::Last }];
            m.forward(c, &mut seqs).unwrap().remove(0)
        };
        // Alone.
        let mut plain = KvCache::reserved(&m.config, 64, kind, &ledger).unwrap();
        let want = last(&mut plain, &ids, &mut c);
        // The first request writes two pages into a new shared prefix during its prefill...
        let prefix = SharedPrefix::reserved(&m.config, 2 * BLOCK, kind, &ledger).unwrap();
        let mut writer =
            KvCache::over_prefix(&m.config, 64, kind, prefix.clone(), 2 * BLOCK, &ledger).unwrap();
        assert!(!prefix.is_ready());
        let got_writer = last(&mut writer, &ids, &mut c);
        assert!(prefix.is_ready(), "ready once its positions are written");
        // ...and a second one reads them and computes only the rest.
        let mut reader =
            KvCache::over_prefix(&m.config, 64, kind, prefix.clone(), 2 * BLOCK, &ledger).unwrap();
        assert_eq!(reader.len(), 2 * BLOCK);
        let got_reader = last(&mut reader, &ids[2 * BLOCK..], &mut c);
        assert_eq!(got_writer, want, "{kind:?}: writer");
        assert_eq!(got_reader, want, "{kind:?}: reader");
        // A reader may use fewer pages than the prefix holds.
        let mut short = KvCache::over_prefix(&m.config, 64, kind, prefix.clone(), BLOCK, &ledger).unwrap();
        assert_eq!(last(&mut short, &ids[BLOCK..], &mut c), want, "{kind:?}: one page");
        // Charged once: the prefix's bytes are in the ledger once, whoever reads them.
        let per_pos = KvCache::bytes_for(&m.config, 1, kind);
        let kv_now = ledger.stats().by_category[Category::KvPages as usize];
        assert_eq!(kv_now, per_pos * (64 + 2 * BLOCK as u64 + (64 - 32) + (64 - 32) + (64 - 16)));
        drop((plain, writer, reader, short));
        assert_eq!(
            ledger.stats().by_category[Category::KvPages as usize],
            per_pos * 2 * BLOCK as u64,
            "held by `prefix`"
        );
        drop(prefix);
        assert_eq!(ledger.stats().used_bytes, 0, "freed with its last holder");
    }
    // Bad combinations are refused with their reason.
    let p = SharedPrefix::reserved(&m.config, BLOCK, KvType::F16, &ledger).unwrap();
    let e =
        KvCache::over_prefix(&m.config, 64, KvType::F16, p.clone(), 3, &ledger).err().unwrap().to_string();
    assert!(e.contains("ready: false"), "{e}");
    let e = KvCache::over_prefix(&m.config, 64, KvType::Int8, p, BLOCK, &ledger).err().unwrap().to_string();
    assert!(e.contains("F16") && e.contains("Int8"), "{e}");
}

#[test]
fn keys_depend_on_base_kv_type_adapter_contents_weights_order_and_tokens() {
    let base = [1u8; 32];
    let (x, y) = ([7u8; 32], [9u8; 32]);
    let tokens: Vec<u32> = (0..50).collect();
    let k = |base: &[u8; 32], kind, ad: &[([u8; 32], f32)], t: &[u32]| {
        block_keys(&context_key(base, kind, ad), t)
    };
    let reference = k(&base, KvType::F16, &[(x, 1.0)], &tokens);
    assert_eq!(reference.len(), 3, "whole pages before the last token: (50 - 1) / 16");
    assert_eq!(k(&base, KvType::F16, &[(x, 1.0)], &tokens[..49]).len(), 3);
    assert_eq!(
        k(&base, KvType::F16, &[(x, 1.0)], &tokens[..48]).len(),
        2,
        "the last token is always computed"
    );
    for other in [
        k(&[2u8; 32], KvType::F16, &[(x, 1.0)], &tokens),
        k(&base, KvType::Int8, &[(x, 1.0)], &tokens),
        k(&base, KvType::F16, &[(y, 1.0)], &tokens),
        k(&base, KvType::F16, &[(x, 0.5)], &tokens),
        k(&base, KvType::F16, &[(x, 1.0), (y, 1.0)], &tokens),
        k(&base, KvType::F16, &[], &tokens),
    ] {
        assert!(other.iter().all(|key| !reference.contains(key)), "a different context shares no key");
    }
    assert_ne!(
        k(&base, KvType::F16, &[(x, 1.0), (y, 1.0)], &tokens),
        k(&base, KvType::F16, &[(y, 1.0), (x, 1.0)], &tokens)
    );
    // Same context, tokens differing in page 2 only: pages 0 and 1 match, page 2 not.
    let mut t2 = tokens.clone();
    t2[40] = 999;
    let changed = k(&base, KvType::F16, &[(x, 1.0)], &t2);
    assert_eq!(&changed[..2], &reference[..2]);
    assert_ne!(changed[2], reference[2]);
}

/// Submit a request that holds its KV (and any shared prefix) until its stream is read: its
/// first event proves its prefill is done; then its small stream buffer fills and it pauses.
fn holder(rt: &Runtime, adapters: &[(&str, f32)]) -> loradock::runtime::Stream {
    let mut s = rt.submit(req(PROMPT, adapters, 40)).unwrap();
    match s.next(Duration::from_secs(20)) {
        Next::Event(_) => s,
        other => panic!("no first event: {other:?}"),
    }
}

fn hits(s: &Stats) -> u64 {
    s.prefix.hit_tokens
}

/// Read a held request to its end and check its text against the engine alone.
fn finish(s: loradock::runtime::Stream, adapter: Option<&str>) -> String {
    let rest = done_ok(s);
    let want = direct(PROMPT, adapter, 40);
    assert!(want.ends_with(&rest), "the rest of the text matches the engine's: {rest:?} vs {want:?}");
    rest
}

#[test]
fn running_requests_share_prompt_pages_only_under_the_same_contents_weights_and_tokens() {
    let tmp = TempDir::new("rt-prefix");
    let mut cfg = config(&tmp);
    cfg.stream_buffer = 2;
    cfg.slow_consumer_timeout = Duration::from_secs(60);
    cfg.max_seqs = 16;
    let rt = Runtime::new(cfg).unwrap();
    let qv = adapters_dir().join("r8_qv");
    register(&rt, "qv", &qv, Policy::Disposable);
    register(&rt, "same-content-other-name", &qv, Policy::Disposable);
    register(&rt, "mlp", &adapters_dir().join("r16_mlp"), Policy::Disposable);
    let kv0 = rt.stats().device.by_category[Category::KvPages as usize];

    // The first request computes the prefix; nothing to hit yet.
    let a = holder(&rt, &[("qv", 1.0)]);
    let s = rt.stats();
    assert_eq!((hits(&s), s.prefix.shared_now), (0, 1));
    let prefix_len = s.prefix.miss_tokens;
    assert!(prefix_len >= 2 * BLOCK as u64 && prefix_len.is_multiple_of(BLOCK as u64), "{s:#?}");
    let full = s.device.by_category[Category::KvPages as usize] - kv0;

    // The same adapter content under another name shares it: only its own pages are charged.
    let b = holder(&rt, &[("same-content-other-name", 1.0)]);
    let s = rt.stats();
    assert_eq!(hits(&s), prefix_len, "the whole prefix was read, not computed");
    assert_eq!(s.prefix.shared_now, 1);
    assert_eq!(
        s.device.by_category[Category::KvPages as usize] - kv0,
        2 * full - s.prefix.shared_bytes,
        "shared pages charged once"
    );

    // Other contents, weights, composites and the base never share it.
    for adapters in [
        vec![("mlp", 1.0)],
        vec![],
        vec![("qv", 0.5)],
        vec![("qv", 1.0), ("mlp", 1.0)],
        vec![("mlp", 1.0), ("qv", 1.0)],
    ] {
        let before = rt.stats();
        let text = done_ok(rt.submit(req(PROMPT, &adapters, 8)).unwrap());
        let after = rt.stats();
        assert_eq!(hits(&after), hits(&before), "{adapters:?} must not read another context's pages");
        assert_eq!(after.prefix.miss_tokens - before.prefix.miss_tokens, prefix_len, "{adapters:?}");
        assert!(!text.is_empty());
    }

    // Readers and the writer all produce the engine's own text.
    finish(b, Some("r8_qv"));
    finish(a, Some("r8_qv"));
    let s = settle(&rt, "shared prefixes freed with their last holder", |s| {
        s.prefix.shared_now == 0 && s.running == 0
    });
    assert_eq!(s.prefix.shared_bytes, 0);
    at_baseline(&rt);
    // Sequential requests do not share: the pages went with the last holder.
    let before = hits(&rt.stats());
    done_ok(rt.submit(req(PROMPT, &[("qv", 1.0)], 4)).unwrap());
    assert_eq!(hits(&rt.stats()), before);
    rt.shutdown();
}

#[test]
fn re_registering_a_name_with_new_content_never_reuses_the_old_pages() {
    let tmp = TempDir::new("rt-prefix-gen");
    let mut cfg = config(&tmp);
    cfg.stream_buffer = 2;
    cfg.slow_consumer_timeout = Duration::from_secs(60);
    let rt = Runtime::new(cfg).unwrap();
    register(&rt, "x", &adapters_dir().join("r8_qv"), Policy::KeepWarm);
    let old = holder(&rt, &[("x", 1.0)]);
    register(&rt, "x", &adapters_dir().join("r16_mlp"), Policy::KeepWarm);
    let before = rt.stats();
    let new = rt.submit(req(PROMPT, &[("x", 1.0)], 40)).unwrap();
    assert_eq!(done_ok(new), direct(PROMPT, Some("r16_mlp"), 40), "the new content's own answer");
    let after = rt.stats();
    assert_eq!(hits(&after), hits(&before), "no page of the old content was read");
    assert_eq!(after.prefix.shared_now, 1, "only the old request's prefix is alive");
    // The old content, registered again under yet another name, does share with `old`.
    register(&rt, "y", &adapters_dir().join("r8_qv"), Policy::KeepWarm);
    let y = rt.submit(req(PROMPT, &[("y", 1.0)], 40)).unwrap();
    assert_eq!(done_ok(y), direct(PROMPT, Some("r8_qv"), 40));
    assert!(hits(&rt.stats()) > hits(&after));
    finish(old, Some("r8_qv"));
    settle(&rt, "prefixes freed", |s| s.prefix.shared_now == 0 && s.running == 0);
    rt.shutdown();
}
