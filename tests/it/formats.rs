//! HF model directories in every layout loradock accepts: sharded f32 safetensors (exact), bf16
//! weights (close), load-time quantization (close), and a Qwen2-style model with q/k/v biases.

use std::collections::BTreeMap;
use std::path::Path;

use loradock::model::{load_model, Compute, LoadOptions};
use loradock::tensor::DType;
use safetensors::Dtype;

use crate::common::*;

/// A tensor's shape and f32 values.
type Tensor = (Vec<usize>, Vec<f32>);

/// The tiny model's tensors as f32 values with their shapes.
fn tiny_tensors() -> BTreeMap<String, Tensor> {
    let bytes = std::fs::read(tiny().join("model/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| {
            assert_eq!(v.dtype(), Dtype::F16);
            let vals = v
                .data()
                .chunks_exact(2)
                .map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
                .collect();
            (n, (v.shape().to_vec(), vals))
        })
        .collect()
}

fn encode(vals: &[f32], dt: Dtype) -> Vec<u8> {
    match dt {
        Dtype::F32 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::BF16 => vals.iter().flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes()).collect(),
        _ => unreachable!(),
    }
}

fn write(path: &Path, tensors: &[(&String, &Tensor)], dt: Dtype) {
    let data: Vec<Vec<u8>> = tensors.iter().map(|(_, (_, v))| encode(v, dt)).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&data)
        .map(|((n, (s, _)), d)| {
            ((*n).clone(), safetensors::tensor::TensorView::new(dt, s.clone(), d).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// A copy of the tiny model directory without its weights.
fn skeleton(tag: &str) -> TempDir {
    let d = copy_dir(&tiny().join("model"), tag);
    std::fs::remove_file(d.0.join("model.safetensors")).unwrap();
    d
}

fn base_diff(dir: &Path, opts: &LoadOptions) -> f32 {
    let j = reference_json();
    let refs = reference_logits();
    let m = load_model(dir, opts).unwrap_or_else(|e| panic!("{e}")).model;
    let mut c = Compute::new(2);
    let (_, ids) = &prompts(&j)[0];
    max_abs_diff(&refs["logits.p0.base"].1, &logits(&m, &mut c, ids, &[]))
}

#[test]
fn sharded_f32_safetensors_are_exact() {
    let t = tiny_tensors();
    let d = skeleton("sharded");
    let all: Vec<_> = t.iter().collect();
    let (a, b) = all.split_at(all.len() / 2);
    write(&d.0.join("model-00001-of-00002.safetensors"), a, Dtype::F32);
    write(&d.0.join("model-00002-of-00002.safetensors"), b, Dtype::F32);
    let mut map = serde_json::Map::new();
    for (n, _) in a {
        map.insert((*n).clone(), "model-00001-of-00002.safetensors".into());
    }
    for (n, _) in b {
        map.insert((*n).clone(), "model-00002-of-00002.safetensors".into());
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(d.0.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let m = load_model(&d.0, &LoadOptions::default()).unwrap().model;
    assert_eq!(m.layers[1].w_down.dtype(), DType::F32);
    assert!(m.layers[1].w_down.is_mapped(), "f32 weights are used in place");
    let diff = base_diff(&d.0, &LoadOptions::default());
    assert!(diff <= 1e-4, "{diff}");
    // A shard name that leaves the directory is refused.
    let bad = serde_json::json!({"weight_map": {"x": "../model.safetensors"}});
    std::fs::write(d.0.join("model.safetensors.index.json"), bad.to_string()).unwrap();
    let e = load_model(&d.0, &LoadOptions::default()).err().unwrap().to_string();
    assert!(e.contains("leaves the model directory"), "{e}");
}

#[test]
fn bf16_weights_load_and_stay_close() {
    let t = tiny_tensors();
    let d = skeleton("bf16");
    write(&d.0.join("model.safetensors"), &t.iter().collect::<Vec<_>>(), Dtype::BF16);
    let m = load_model(&d.0, &LoadOptions::default()).unwrap().model;
    assert_eq!(m.layers[0].wq.dtype(), DType::BF16);
    // bf16 keeps 8 mantissa bits: the logits move, but stay near (std of the logits ~3.5).
    let diff = base_diff(&d.0, &LoadOptions::default());
    assert!(diff < 0.5, "{diff}");
}

#[test]
fn load_time_quantization_stays_close() {
    for (q, tol) in [(DType::Q8_0, 0.5), (DType::Q4_0, 8.0)] {
        let opts = LoadOptions { quant: Some(q) };
        let m = load_model(&tiny().join("model"), &opts).unwrap().model;
        assert_eq!(m.layers[0].wq.dtype(), q);
        let diff = base_diff(&tiny().join("model"), &opts);
        assert!(diff < tol, "{q:?}: {diff}");
    }
    let e = load_model(&tiny().join("model"), &LoadOptions { quant: Some(DType::Q6K) })
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("q8_0, q4_0 and f32"), "{e}");
}

/// Qwen2 is Llama with q/k/v biases: zero biases change nothing, non-zero ones do.
#[test]
fn qwen2_biases_are_applied() {
    let mut t = tiny_tensors();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("model/config.json")).unwrap()).unwrap();
    let kv = cfg["num_key_value_heads"].as_u64().unwrap() as usize * 64;
    let q = cfg["num_attention_heads"].as_u64().unwrap() as usize * 64;
    let d = skeleton("qwen2");
    let mut c2 = cfg.clone();
    c2["model_type"] = "qwen2".into();
    std::fs::write(d.0.join("config.json"), c2.to_string()).unwrap();
    for layer in 0..2 {
        for (name, n) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            t.insert(format!("model.layers.{layer}.self_attn.{name}.bias"), (vec![n], vec![0.0; n]));
        }
    }
    write(&d.0.join("model.safetensors"), &t.iter().collect::<Vec<_>>(), Dtype::F32);
    assert!(base_diff(&d.0, &LoadOptions::default()) <= 1e-4);
    let v = t.get_mut("model.layers.0.self_attn.v_proj.bias").unwrap();
    v.1.iter_mut().for_each(|x| *x = 0.5);
    write(&d.0.join("model.safetensors"), &t.iter().collect::<Vec<_>>(), Dtype::F32);
    assert!(base_diff(&d.0, &LoadOptions::default()) > 1e-2);
}
