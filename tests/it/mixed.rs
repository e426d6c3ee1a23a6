//! Mixed batches: one forward pass over sequences that each carry their own set of weighted
//! adapters (or none) equals running every sequence alone.

use loradock::kv::KvCache;
use loradock::lora::LoraAdapter;
use loradock::model::{Compute, LogitsMode, SeqBatch};

use crate::common::*;

#[test]
fn a_mixed_batch_equals_each_row_alone_in_prefill_and_decode() {
    let j = reference_json();
    let m = model(&tiny().join("model"));
    let mut c = Compute::new(2);
    let (a, b, r) = (adapter(&m, "r8_qv"), adapter(&m, "r16_mlp"), adapter(&m, "r4_rslora_all"));
    let ps = prompts(&j);
    let sets: Vec<Vec<(&LoraAdapter, f32)>> =
        vec![vec![], vec![(&a, 1.0)], vec![(&a, 0.7), (&b, -0.4)], vec![(&r, 1.0), (&a, 0.25)]];
    let rows: Vec<&[u32]> = vec![&ps[0].1, &ps[1].1, &ps[1].1[..7], &ps[0].1[2..]];
    // Alone: prefill then two decode steps per row.
    let mut alone = Vec::new();
    for (ids, set) in rows.iter().zip(&sets) {
        let mut kv = KvCache::new(&m.config, 64);
        let mut s = [SeqBatch { tokens: ids, kv: &mut kv, adapters: set, logits: LogitsMode::All }];
        let mut out = m.forward(&mut c, &mut s).unwrap().pop().unwrap();
        for step in [5u32, 9] {
            let mut s = [SeqBatch { tokens: &[step], kv: &mut kv, adapters: set, logits: LogitsMode::Last }];
            out.extend(m.forward(&mut c, &mut s).unwrap().pop().unwrap());
        }
        alone.push(out);
    }
    // Together.
    let mut kvs: Vec<KvCache> = rows.iter().map(|_| KvCache::new(&m.config, 64)).collect();
    let mut together: Vec<Vec<f32>> = {
        let mut batch: Vec<SeqBatch<'_>> = rows
            .iter()
            .zip(kvs.iter_mut())
            .zip(&sets)
            .map(|((ids, kv), set)| SeqBatch { tokens: ids, kv, adapters: set, logits: LogitsMode::All })
            .collect();
        m.forward(&mut c, &mut batch).unwrap()
    };
    for step in [5u32, 9] {
        let toks = [step];
        let mut batch: Vec<SeqBatch<'_>> = kvs
            .iter_mut()
            .zip(&sets)
            .map(|(kv, set)| SeqBatch { tokens: &toks, kv, adapters: set, logits: LogitsMode::Last })
            .collect();
        for (t, out) in together.iter_mut().zip(m.forward(&mut c, &mut batch).unwrap()) {
            t.extend(out);
        }
    }
    for (i, (x, y)) in alone.iter().zip(&together).enumerate() {
        let d = max_abs_diff(x, y);
        assert!(d <= 1e-5, "row {i}: {d}");
    }
    // The composite row really differs from its parts.
    assert!(max_abs_diff(&alone[1][..384], &alone[2][..384]) > 1e-2 || rows[1].len() != rows[2].len());
}

#[test]
fn duplicate_adapters_and_non_finite_weights_are_refused() {
    let m = model(&tiny().join("model"));
    let mut c = Compute::new(2);
    let a = adapter(&m, "r8_qv");
    let mut kv = KvCache::new(&m.config, 8);
    let twice = [(&a, 1.0), (&a, 0.5)];
    let mut s = [SeqBatch { tokens: &[1], kv: &mut kv, adapters: &twice, logits: LogitsMode::Last }];
    let e = m.forward(&mut c, &mut s).unwrap_err().to_string();
    assert!(e.contains("appears twice"), "{e}");
    let nan = [(&a, f32::NAN)];
    let mut s = [SeqBatch { tokens: &[1], kv: &mut kv, adapters: &nan, logits: LogitsMode::Last }];
    let e = m.forward(&mut c, &mut s).unwrap_err().to_string();
    assert!(e.contains("non-finite weight"), "{e}");
    // The engine keeps serving.
    let mut s = [SeqBatch { tokens: &[1], kv: &mut kv, adapters: &[(&a, -1.0)], logits: LogitsMode::Last }];
    assert!(m.forward(&mut c, &mut s).is_ok());
}
