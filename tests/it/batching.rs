//! Continuous batching on the real engine (tiny fixture model): rows admitted at different
//! steps, with different adapters and limits, produce exactly the tokens they produce alone;
//! every row ends exactly once; cancel and a full batch behave; KV caches return to the ledger.

use loradock::batcher::{Batcher, Event, Request};
use loradock::generate::{FinishReason, GenerateParams};
use loradock::kv::{KvCache, KvType};
use loradock::lora::LoraAdapter;
use loradock::memory::Ledger;
use loradock::model::Compute;

use crate::common::*;

/// A row to run: prompt, weighted adapters, tokens to generate.
type Spec<'a> = (Vec<u32>, Vec<(&'a LoraAdapter, f32)>, usize);

fn params(max_tokens: usize) -> GenerateParams {
    GenerateParams { max_tokens, ignore_eos: true, ..Default::default() }
}

#[test]
fn rows_joining_mid_flight_match_their_solo_runs() {
    let j = reference_json();
    let m = model(&tiny().join("model"));
    let mut c = Compute::new(2);
    let (a, b) = (adapter(&m, "r8_qv"), adapter(&m, "r16_mlp"));
    let ps = prompts(&j);
    // Three rows: base (16 tokens), an adapter (5 tokens), a composite (9 tokens).
    let specs: Vec<Spec<'_>> = vec![
        (ps[0].1.clone(), vec![], 16),
        (ps[1].1.clone(), vec![(&a, 1.0)], 5),
        (ps[0].1[..6].to_vec(), vec![(&a, 0.7), (&b, -0.4)], 9),
    ];
    let solo: Vec<Vec<u32>> = specs.iter().map(|(p, ad, n)| greedy(&m, &mut c, p, ad, *n)).collect();
    let ledger = Ledger::new("cpu", 1 << 30);
    let mut bt = Batcher::new(&m, None, 3);
    let mut got: Vec<Option<Vec<u32>>> = vec![None; 3];
    let mut pending: Vec<Request<&LoraAdapter>> = specs
        .iter()
        .map(|(p, ad, n)| Request {
            prompt: p.clone(),
            adapters: ad.clone(),
            params: params(*n),
            kv: KvCache::reserved(&m.config, 64, KvType::F32, &ledger).unwrap(),
            cached: 0,
        })
        .collect();
    pending.reverse();
    let mut ids = vec![bt.admit(pending.pop().unwrap()).unwrap()];
    let mut step = 0;
    while !bt.is_empty() || ids.len() < 3 {
        // Row 1 joins after 3 steps, row 2 after 7: both while row 0 is decoding.
        if (step == 3 && ids.len() == 1) || (step == 7 && ids.len() == 2) {
            ids.push(bt.admit(pending.pop().unwrap()).unwrap());
        }
        bt.step(&mut c, &mut |ev| {
            if let Event::Done { id, output, .. } = ev {
                let i = ids.iter().position(|x| *x == id).unwrap();
                assert!(got[i].is_none(), "row {i} ended twice");
                assert_eq!(output.finish, FinishReason::Length);
                got[i] = Some(output.token_ids);
            }
        })
        .unwrap();
        step += 1;
        assert!(step < 100, "the batch never drained");
    }
    for (i, (g, s)) in got.iter().zip(&solo).enumerate() {
        assert_eq!(g.as_ref().unwrap(), s, "row {i}");
    }
    assert_eq!(ledger.stats().used_bytes, 0, "every KV cache went back to the ledger");
    assert!(ledger.stats().high_water_bytes > 0);
}

#[test]
fn cancel_full_batch_and_bad_requests() {
    let m = model(&tiny().join("model"));
    let mut c = Compute::new(2);
    let kv = || KvCache::new(&m.config, 32);
    let mut bt: Batcher<'_, '_, &LoraAdapter> = Batcher::new(&m, None, 2);
    let a = bt
        .admit(Request { prompt: vec![1, 2, 3], adapters: vec![], params: params(50), kv: kv(), cached: 0 })
        .unwrap();
    let _b = bt
        .admit(Request { prompt: vec![4, 5], adapters: vec![], params: params(3), kv: kv(), cached: 0 })
        .unwrap();
    let e = bt
        .admit(Request { prompt: vec![1], adapters: vec![], params: params(1), kv: kv(), cached: 0 })
        .unwrap_err();
    assert!(e.to_string().contains("busy"), "{e}");
    let mut done = Vec::new();
    bt.step(&mut c, &mut |ev| {
        if let Event::Done { id, output, .. } = ev {
            done.push((id, output.finish));
        }
    })
    .unwrap();
    assert!(bt.cancel(a, &mut |ev| {
        if let Event::Done { id, output, .. } = ev {
            done.push((id, output.finish));
        }
    }));
    assert!(!bt.cancel(a, &mut |_| {}), "a row is cancelled once");
    while !bt.is_empty() {
        bt.step(&mut c, &mut |ev| {
            if let Event::Done { id, output, .. } = ev {
                done.push((id, output.finish));
            }
        })
        .unwrap();
    }
    assert_eq!(done.len(), 2, "exactly one Done per row: {done:?}");
    assert!(done.contains(&(a, FinishReason::Cancelled)));
    // Bad requests are refused without joining.
    let e = bt
        .admit(Request { prompt: vec![], adapters: vec![], params: params(1), kv: kv(), cached: 0 })
        .unwrap_err();
    assert!(e.to_string().contains("no tokens"), "{e}");
    let e = bt
        .admit(Request { prompt: vec![1; 40], adapters: vec![], params: params(1), kv: kv(), cached: 0 })
        .unwrap_err();
    assert!(e.to_string().contains("context"), "{e}");
    assert!(bt.is_empty());
}
