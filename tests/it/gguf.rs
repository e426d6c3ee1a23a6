//! The GGUF path on the tiny model: the F16 file (and an F32 copy written here) must equal the
//! transformers reference; quantized files made by llama.cpp's own quantizer must match a
//! float64 forward on their dequantized weights (`exact.*`), at least as closely as llama.cpp
//! itself does.

use std::collections::HashMap;

use loradock::model::gguf::{GgufFile, GgufWriter, Value};
use loradock::model::Compute;

use crate::common::*;

fn load_st(path: &std::path::Path) -> HashMap<String, Vec<f32>> {
    read_f32_tensors(path).into_iter().map(|(n, (_, v))| (n, v)).collect()
}

/// Largest per-position difference, relative to the reference's logit range at that position.
fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    max_abs_diff(a, b)
}

#[test]
fn f16_gguf_matches_the_hf_reference() {
    let j = reference_json();
    let refs = reference_logits();
    let m = model(&tiny().join("gguf/tiny-f16.gguf"));
    let mut c = Compute::new(2);
    for (p, ids) in prompts(&j) {
        let d = max_abs(&refs[&format!("logits.{p}.base")].1, &logits(&m, &mut c, &ids, &[]));
        assert!(d <= 1e-4, "{p}: {d}");
    }
}

/// Rewrite the F16 GGUF with every F16 tensor as F32 and check the F32 path is exact too.
#[test]
fn f32_gguf_matches_the_hf_reference() {
    let src = GgufFile::open(&tiny().join("gguf/tiny-f16.gguf")).expect("opens");
    let mut w = GgufWriter::default();
    for (k, v) in &src.metadata {
        match v {
            Value::Str(s) => {
                w.str(k, s);
            }
            Value::U64(x) => {
                w.u32(k, *x as u32);
            }
            Value::I64(x) => {
                w.u32(k, *x as u32);
            }
            Value::F64(x) => {
                w.f32(k, *x as f32);
            }
            Value::Bool(b) => {
                w.bool(k, *b);
            }
            Value::Array(a) if a.iter().all(|x| x.as_str().is_some()) => {
                let strs: Vec<String> = a.iter().map(|x| x.as_str().unwrap().to_string()).collect();
                w.str_array(k, &strs);
            }
            Value::Array(_) => {} // scores/types: not needed for logits
        }
    }
    for t in &src.tensors {
        let m = src.matrix(&t.name).expect("tensor").expect("present");
        w.tensor_f32(&t.name, &t.dims, &m.to_f32());
    }
    let dir = TempDir::new("f32gguf");
    let path = dir.0.join("tiny-f32.gguf");
    std::fs::write(&path, w.to_bytes()).unwrap();
    let m = model(&path);
    assert_eq!(m.layers[0].wq.dtype(), loradock::tensor::DType::F32);
    let j = reference_json();
    let refs = reference_logits();
    let mut c = Compute::new(2);
    for (p, ids) in prompts(&j) {
        let d = max_abs(&refs[&format!("logits.{p}.base")].1, &logits(&m, &mut c, &ids, &[]));
        assert!(d <= 1e-4, "{p}: {d}");
    }
}

#[test]
fn quantized_gguf_matches_exact_dequantized_forward() {
    let j = reference_json();
    let ll = load_st(&tiny().join("gguf/llamacpp_logits.safetensors"));
    let mut c = Compute::new(2);
    // (type, tolerance vs the exact forward). K-quants use f32 activations: near exact.
    // Q8_0/Q4_0/Q4_1 quantize activations to 8 bits (as llama.cpp does): we require no more
    // than 1.5x llama.cpp's own deviation, plus a small floor.
    for ty in ["q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k"] {
        let m = model(&tiny().join(format!("gguf/tiny-{ty}.gguf")));
        for (p, ids) in prompts(&j) {
            let exact = &ll[&format!("exact.{p}.{ty}")];
            let ours = logits(&m, &mut c, &ids, &[]);
            let d_ours = max_abs(exact, &ours);
            let d_llama = max_abs(exact, &ll[&format!("logits.{p}.{ty}")]);
            let tol = if ty.ends_with("_k") { 1e-3 } else { 1.5 * d_llama + 1e-3 };
            eprintln!("{ty}/{p}: loradock {d_ours:.6} llama.cpp {d_llama:.6} (tolerance {tol:.6})");
            assert!(d_ours <= tol, "{ty}/{p}: {d_ours} > {tol} (llama.cpp: {d_llama})");
        }
    }
}
