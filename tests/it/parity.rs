//! Parity with transformers + PEFT on the tiny fixture model (f32 math on f16-exact weights):
//! logits within 1e-4 max abs for the base, every adapter and a weighted two-adapter sum;
//! greedy ids identical; and deliberate mistakes are caught.

use loradock::lora::LoraAdapter;
use loradock::model::Compute;

use crate::common::*;

/// Max abs difference allowed against the f32 reference.
const TOL: f32 = 1e-4;

fn case_adapters(case: &serde_json::Value) -> Vec<(String, f32)> {
    case["adapters"]
        .as_array()
        .expect("adapters")
        .iter()
        .map(|a| {
            (a["name"].as_str().expect("name").to_string(), a["weight"].as_f64().expect("weight") as f32)
        })
        .collect()
}

#[test]
fn hf_logits_and_greedy_match_reference_for_every_case() {
    let j = reference_json();
    let refs = reference_logits();
    let m = model(&tiny().join("model"));
    let mut c = Compute::new(2);
    for case in j["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("case name");
        let loaded: Vec<(LoraAdapter, f32)> =
            case_adapters(case).into_iter().map(|(n, w)| (adapter(&m, &n), w)).collect();
        let set: Vec<(&LoraAdapter, f32)> = loaded.iter().map(|(a, w)| (a, *w)).collect();
        for (pname, ids) in prompts(&j) {
            let want = &refs[&format!("logits.{pname}.{name}")].1;
            let got = logits(&m, &mut c, &ids, &set);
            let d = max_abs_diff(want, &got);
            assert!(d <= TOL, "{name}/{pname}: max abs diff {d} > {TOL}");
            let want_ids: Vec<u32> = j["greedy"]["results"][name][&pname]["ids"]
                .as_array()
                .expect("greedy ids")
                .iter()
                .map(|v| v.as_u64().expect("id") as u32)
                .collect();
            let got_ids = greedy(&m, &mut c, &ids, &set, want_ids.len());
            assert_eq!(got_ids, want_ids, "{name}/{pname}: greedy ids differ");
        }
    }
}

#[test]
fn every_adapter_moves_logits_far_beyond_the_tolerance() {
    let j = reference_json();
    let refs = reference_logits();
    for case in j["cases"].as_array().expect("cases").iter().skip(1) {
        let name = case["name"].as_str().expect("name");
        let d = max_abs_diff(&refs[&format!("logits.p0.{name}")].1, &refs["logits.p0.base"].1);
        assert!(d >= 100.0 * TOL, "{name} moves the logits by only {d}");
    }
}

#[test]
fn precomposed_cat_adapter_equals_the_weighted_sum() {
    let j = reference_json();
    let refs = reference_logits();
    let m = model(&tiny().join("model"));
    let mut c = Compute::new(2);
    let cat = adapter(&m, "cat_r8qv0.7_r16mlp-0.4");
    for (pname, ids) in prompts(&j) {
        let got = logits(&m, &mut c, &ids, &[(&cat, 1.0)]);
        let d = max_abs_diff(&refs[&format!("logits.{pname}.sum_r8qv0.7_r16mlp-0.4")].1, &got);
        assert!(d <= TOL, "{pname}: {d}");
    }
}

#[test]
fn kv_cache_decode_equals_full_forward() {
    let j = reference_json();
    let m = model(&tiny().join("model"));
    let mut c = Compute::new(2);
    let (_, ids) = &prompts(&j)[0];
    let full = logits(&m, &mut c, ids, &[]);
    let vocab = m.config.vocab_size;
    // Feed the same tokens one by one through the cache.
    let mut kv = loradock::kv::KvCache::new(&m.config, 64);
    for (i, t) in ids.iter().enumerate() {
        let mut s = [loradock::model::SeqBatch {
            tokens: std::slice::from_ref(t),
            kv: &mut kv,
            adapters: &[],
            logits: loradock::model::LogitsMode::Last,
        }];
        let row = m.forward(&mut c, &mut s).expect("step").pop().expect("one");
        let d = max_abs_diff(&full[i * vocab..(i + 1) * vocab], &row);
        assert!(d <= TOL, "position {i}: {d}");
    }
}

/// A test that cannot tell a wrong RoPE theta from the right one proves nothing.
#[test]
fn a_wrong_rope_theta_is_caught() {
    let j = reference_json();
    let refs = reference_logits();
    let dir = copy_dir(&tiny().join("model"), "rope");
    let cfg_path = dir.0.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let theta = cfg["rope_theta"].as_f64().expect("rope_theta");
    cfg["rope_theta"] = serde_json::json!(10000.0);
    assert_ne!(theta, 10000.0, "the fixture must use a non-default theta");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let m = model(&dir.0);
    let mut c = Compute::new(2);
    let (_, ids) = &prompts(&j)[0];
    let d = max_abs_diff(&refs["logits.p0.base"].1, &logits(&m, &mut c, ids, &[]));
    assert!(d > 100.0 * TOL, "wrong theta changed the logits by only {d}");
}

/// Scaling an rsLoRA adapter by alpha/r instead of alpha/√r must fail the comparison.
#[test]
fn alpha_over_r_instead_of_rslora_is_caught() {
    let j = reference_json();
    let refs = reference_logits();
    let m = model(&tiny().join("model"));
    let dir = copy_dir(&tiny().join("adapters/r4_rslora_all"), "rslora");
    let p = dir.0.join("adapter_config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(cfg["use_rslora"], serde_json::json!(true));
    cfg["use_rslora"] = serde_json::json!(false);
    std::fs::write(&p, cfg.to_string()).unwrap();
    let wrong = loradock::lora::load_peft(&dir.0, &m.config).expect("loads");
    let mut c = Compute::new(2);
    let (_, ids) = &prompts(&j)[0];
    let d = max_abs_diff(&refs["logits.p0.r4_rslora_all"].1, &logits(&m, &mut c, ids, &[(&wrong, 1.0)]));
    assert!(d > 100.0 * TOL, "alpha/r changed the logits by only {d}");
}

/// Quantized KV caches stay near the f32 reference on the tiny model (its logits have a std
/// of ~3.5; a random model has no outlier channels, so Hadamard rotation helps little here):
/// f16 within 0.01, int8 within 0.2, q4 within 2.0 max abs. Real quality is measured on
/// SmolLM2 by `loradock perplexity` (bench/results).
#[test]
fn quantized_kv_caches_stay_close_to_the_reference() {
    use loradock::kv::{KvCache, KvType};
    use loradock::model::{LogitsMode, SeqBatch};
    let j = reference_json();
    let refs = reference_logits();
    let m = model(&tiny().join("model"));
    let mut c = Compute::new(2);
    let (_, ids) = &prompts(&j)[0];
    for (kind, tol) in [(KvType::F16, 0.01), (KvType::Int8, 0.2), (KvType::Q4, 2.0)] {
        let mut kv = KvCache::with_type(&m.config, 64, kind);
        let mut s = [SeqBatch { tokens: ids, kv: &mut kv, adapters: &[], logits: LogitsMode::All }];
        let got = m.forward(&mut c, &mut s).unwrap().pop().unwrap();
        let d = max_abs_diff(&refs["logits.p0.base"].1, &got);
        eprintln!("{kind:?} KV: max abs diff {d:.4}");
        assert!(d <= tol, "{kind:?}: {d}");
    }
}
