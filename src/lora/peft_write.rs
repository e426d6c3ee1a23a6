//! Write an adapter as a PEFT directory (`adapter_config.json` + `adapter_model.safetensors`),
//! the layout [`super::load_peft`] reads: for derived adapters (benchmarks, the demo node).

use std::path::Path;

use half::f16;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::{LoraAdapter, Module};
use crate::error::{Error, Result};

/// Write `a` into the existing directory `dir`, weights in f16 when `half` (else f32).
/// Every adapted module must share one rank and one scale (PEFT's `r` and `lora_alpha`).
pub fn write_peft(a: &LoraAdapter, dir: &Path, half: bool) -> Result<()> {
    let pairs: Vec<_> = a.layers.iter().flatten().flatten().collect();
    let first = pairs.first().ok_or_else(|| Error::adapter(&a.name, "no adapted module to write"))?;
    if pairs.iter().any(|p| p.rank != first.rank || p.scale != first.scale) {
        return Err(Error::adapter(
            &a.name,
            "modules differ in rank or scale; only uniform adapters are written",
        ));
    }
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let bytes = |v: &[f32]| -> Vec<u8> {
        if half {
            v.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect()
        } else {
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        }
    };
    for (li, layer) in a.layers.iter().enumerate() {
        for m in Module::ALL {
            let Some(p) = &layer[m as usize] else { continue };
            let base = format!("base_model.model.model.layers.{li}.{}.{}", m.hf_parent(), m.hf_name());
            tensors.push((format!("{base}.lora_A.weight"), vec![p.rank, p.d_in], bytes(&p.a)));
            tensors.push((format!("{base}.lora_B.weight"), vec![p.d_out, p.rank], bytes(&p.b)));
        }
    }
    let dtype = if half { Dtype::F16 } else { Dtype::F32 };
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| {
            let v = TensorView::new(dtype, s.clone(), b)
                .map_err(|e| Error::adapter(&a.name, format!("{n}: {e}")))?;
            Ok((n.clone(), v))
        })
        .collect::<Result<_>>()?;
    let st = dir.join("adapter_model.safetensors");
    safetensors::serialize_to_file(views, None, &st)
        .map_err(|e| Error::adapter(&a.name, format!("writing {}: {e}", st.display())))?;
    let targets: Vec<&str> = a.targets();
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": first.rank,
        "lora_alpha": first.scale * first.rank as f32,
        "target_modules": targets,
        "bias": "none",
        "use_rslora": false,
        "use_dora": false,
    });
    let cp = dir.join("adapter_config.json");
    std::fs::write(&cp, serde_json::to_vec_pretty(&config).expect("plain JSON"))
        .map_err(|e| Error::io(&cp, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::{load_peft, LoraPair};
    use crate::test_util::TempDir;

    #[test]
    fn written_adapters_load_back_identically() {
        let cfg = crate::model::LlamaConfig::from_hf_json(
            r#"{"model_type":"llama","hidden_size":16,"intermediate_size":32,
                "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":32}"#,
            "test",
        )
        .unwrap();
        let (d_out, d_in) = crate::lora::peft::module_shape(&cfg, Module::V);
        let mut layers: Vec<[Option<LoraPair>; 7]> =
            (0..cfg.num_layers).map(|_| Default::default()).collect();
        let a: Vec<f32> = (0..2 * d_in).map(|i| i as f32 * 0.25).collect();
        let b: Vec<f32> = (0..d_out * 2).map(|i| -(i as f32) * 0.5).collect();
        layers[1][Module::V as usize] = Some(LoraPair { rank: 2, d_in, d_out, a, b, scale: 4.0 });
        let ad = LoraAdapter { name: "w".into(), layers };
        let dir = TempDir::new("peft-write");
        write_peft(&ad, dir.path(), false).unwrap();
        let back = load_peft(dir.path(), &cfg).unwrap();
        assert_eq!(back.content_hash(), ad.content_hash());
        // Mixed ranks are refused, naming the adapter.
        let mut mixed = ad.clone();
        mixed.layers[0][Module::Q as usize] = Some(LoraPair {
            rank: 1,
            d_in,
            d_out: cfg.q_dim(),
            a: vec![0.0; d_in],
            b: vec![0.0; cfg.q_dim()],
            scale: 4.0,
        });
        assert!(write_peft(&mixed, dir.path(), false).unwrap_err().to_string().contains("w"));
    }
}
