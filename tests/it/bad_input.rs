//! Bad input gets a clear error naming the file and the problem, never a panic.

use loradock::model::{load_model, LoadOptions};

use crate::common::*;

fn load_err(path: &std::path::Path) -> String {
    match load_model(path, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_safetensors_is_refused() {
    let d = copy_dir(&tiny().join("model"), "trunc");
    let p = d.0.join("model.safetensors");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    let e = load_err(&d.0);
    assert!(e.contains("model.safetensors") && e.contains("invalid safetensors"), "{e}");
}

#[test]
fn header_offsets_past_the_file_are_refused() {
    let d = copy_dir(&tiny().join("model"), "offsets");
    let p = d.0.join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(b[0..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(b[8..8 + n].to_vec()).unwrap();
    // Point the largest data end offset past the file, keeping the header's length.
    let meta: serde_json::Value = serde_json::from_str(&header).unwrap();
    let end = meta
        .as_object()
        .unwrap()
        .values()
        .filter_map(|t| t.get("data_offsets").and_then(|o| o[1].as_u64()))
        .max()
        .unwrap();
    let digits = end.to_string();
    let nines = "9".repeat(digits.len());
    assert!(nines.parse::<u64>().unwrap() > b.len() as u64);
    let h2 = header.replacen(&format!(",{digits}]"), &format!(",{nines}]"), 1);
    assert_eq!(h2.len(), header.len());
    b[8..8 + n].copy_from_slice(h2.as_bytes());
    std::fs::write(&p, &b).unwrap();
    let e = load_err(&d.0);
    assert!(e.contains("invalid safetensors"), "{e}");
}

#[test]
fn config_that_disagrees_with_the_weights_is_refused() {
    let d = copy_dir(&tiny().join("model"), "cfgshape");
    let p = d.0.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg["intermediate_size"] = serde_json::json!(768);
    std::fs::write(&p, cfg.to_string()).unwrap();
    let e = load_err(&d.0);
    assert!(e.contains("gate_proj") && e.contains("[768, 256]"), "{e}");
}

#[test]
fn unsupported_architecture_is_named() {
    let d = copy_dir(&tiny().join("model"), "arch");
    let p = d.0.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg["model_type"] = serde_json::json!("falcon");
    std::fs::write(&p, cfg.to_string()).unwrap();
    let e = load_err(&d.0);
    assert!(e.contains("config.json") && e.contains("model_type 'falcon'"), "{e}");
}

#[test]
fn missing_weights_and_missing_tensor_are_named() {
    let d = copy_dir(&tiny().join("model"), "noweights");
    std::fs::remove_file(d.0.join("model.safetensors")).unwrap();
    assert!(load_err(&d.0).contains("no model.safetensors"));
    // A GGUF missing one layer tensor.
    let e = load_err(&tiny().join("nonexistent.gguf"));
    assert!(e.contains("nonexistent.gguf"), "{e}");
}

#[test]
fn adapter_for_another_base_is_refused() {
    let m = model(&tiny().join("model"));
    let mut other = m.config.clone();
    other.hidden_size = 128;
    let e = loradock::lora::load_peft(&tiny().join("adapters/r8_qv"), &other).unwrap_err().to_string();
    assert!(e.contains("q_proj.lora_A") && e.contains("expected [r, 128]"), "{e}");
}

#[test]
fn nan_in_an_adapter_is_refused() {
    let d = copy_dir(&tiny().join("adapters/r8_qv"), "nan");
    let p = d.0.join("adapter_model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(b[0..8].try_into().unwrap()) as usize;
    // First f32 of the data section (adapter tensors are f32).
    b[8 + n..8 + n + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    let m = model(&tiny().join("model"));
    let e = loradock::lora::load_peft(&d.0, &m.config).unwrap_err().to_string();
    assert!(e.contains("non-finite value NaN") && e.contains("tensor '"), "{e}");
}

#[test]
fn refused_adapter_variants_say_why() {
    let m = model(&tiny().join("model"));
    let cases: [(&str, serde_json::Value, &str); 4] = [
        ("use_dora", serde_json::json!(true), "DoRA"),
        ("modules_to_save", serde_json::json!(["lm_head"]), "modules_to_save"),
        ("bias", serde_json::json!("all"), "bias 'all'"),
        ("init_lora_weights", serde_json::json!("pissa"), "changes the base weights"),
    ];
    for (key, val, want) in cases {
        let d = copy_dir(&tiny().join("adapters/r8_qv"), "variant");
        let p = d.0.join("adapter_config.json");
        let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        cfg[key] = val;
        std::fs::write(&p, cfg.to_string()).unwrap();
        let e = loradock::lora::load_peft(&d.0, &m.config).unwrap_err().to_string();
        assert!(e.contains(want), "{key}: {e}");
    }
    // A pickle file is never loaded, and a missing config is named.
    let d = copy_dir(&tiny().join("adapters/r8_qv"), "pickle");
    std::fs::rename(d.0.join("adapter_model.safetensors"), d.0.join("adapter_model.bin")).unwrap();
    let e = loradock::lora::load_peft(&d.0, &m.config).unwrap_err().to_string();
    assert!(e.contains("pickle"), "{e}");
    std::fs::remove_file(d.0.join("adapter_config.json")).unwrap();
    let e = loradock::lora::load_peft(&d.0, &m.config).unwrap_err().to_string();
    assert!(e.contains("adapter_config.json is missing"), "{e}");
}

#[test]
fn rank_in_config_must_match_the_tensors() {
    let m = model(&tiny().join("model"));
    let d = copy_dir(&tiny().join("adapters/r8_qv"), "rank");
    let p = d.0.join("adapter_config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg["r"] = serde_json::json!(4);
    std::fs::write(&p, cfg.to_string()).unwrap();
    let e = loradock::lora::load_peft(&d.0, &m.config).unwrap_err().to_string();
    assert!(e.contains("rank 8 in the tensor but 4 in adapter_config.json"), "{e}");
}

#[test]
fn out_of_vocabulary_tokens_and_overflowing_context_are_errors() {
    let m = model(&tiny().join("model"));
    let mut c = loradock::model::Compute::new(2);
    let mut kv = loradock::kv::KvCache::new(&m.config, 4);
    let bad = [m.config.vocab_size as u32];
    let mut s = [loradock::model::SeqBatch {
        tokens: &bad,
        kv: &mut kv,
        adapters: &[],
        logits: loradock::model::LogitsMode::Last,
    }];
    let e = m.forward(&mut c, &mut s).unwrap_err().to_string();
    assert!(e.contains("outside the vocabulary"), "{e}");
    let long = [1u32; 5];
    let mut s = [loradock::model::SeqBatch {
        tokens: &long,
        kv: &mut kv,
        adapters: &[],
        logits: loradock::model::LogitsMode::Last,
    }];
    let e = m.forward(&mut c, &mut s).unwrap_err().to_string();
    assert!(e.contains("exceed the context of 4"), "{e}");
}
