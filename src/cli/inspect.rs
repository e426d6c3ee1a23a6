//! `inspect`: what a model directory, GGUF file or adapter holds.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::lora::peft::PeftConfig;
use crate::model::config::LlamaConfig;
use crate::model::gguf::{GgufFile, Value};
use crate::model::hf::SafetensorsSet;
use crate::tensor::DType;

pub(crate) fn inspect(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        return inspect_gguf(path);
    }
    if path.join("adapter_config.json").exists() {
        return inspect_adapter(path);
    }
    if path.join("config.json").exists() {
        return inspect_hf(path);
    }
    Err(Error::format(
        path,
        "neither a GGUF file, an HF model directory (config.json) nor a PEFT adapter (adapter_config.json)",
    ))
}

fn human(bytes: usize) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn print_config(c: &LlamaConfig) {
    println!("architecture:  {:?}", c.arch);
    println!("layers:        {}", c.num_layers);
    println!("hidden:        {} (ffn {})", c.hidden_size, c.intermediate_size);
    println!("heads:         {} query, {} key/value, head_dim {}", c.num_heads, c.num_kv_heads, c.head_dim);
    println!("vocab:         {}", c.vocab_size);
    println!("context:       {}", c.max_position_embeddings);
    println!("rope:          theta {} scaling {:?}", c.rope_theta, c.rope_scaling.as_ref().map(|_| "yes"));
    println!("tied lm_head:  {}", c.tie_word_embeddings);
}

fn inspect_gguf(path: &Path) -> Result<()> {
    let g = GgufFile::open(path)?;
    println!("file:          {} (GGUF v{})", path.display(), g.version);
    let kind = g.get("general.type").and_then(Value::as_str).unwrap_or("model");
    println!("type:          {kind}");
    if let Some(n) = g.get("general.name").and_then(Value::as_str) {
        println!("name:          {n}");
    }
    let mut by_type: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for t in &g.tensors {
        let e = by_type.entry(DType::ggml_name(t.type_id).to_string()).or_default();
        e.0 += 1;
        e.1 += t.len;
    }
    println!("tensors:       {}", g.tensors.len());
    for (ty, (n, b)) in &by_type {
        println!("  {ty:<8} {n:>5} tensors  {}", human(*b));
    }
    if kind == "adapter" {
        return Ok(());
    }
    match crate::model::load_model(path, &Default::default()) {
        Ok(m) => {
            print_config(&m.model.config);
            println!("weight bytes:  {}", human(m.model.weight_bytes()));
        }
        Err(e) => println!("not loadable:  {e}"),
    }
    if let Some(m) = g.get("tokenizer.ggml.model").and_then(Value::as_str) {
        let pre = g.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("-");
        let n = g.get("tokenizer.ggml.tokens").and_then(Value::as_array).map_or(0, |a| a.len());
        println!("tokenizer:     {m} (pre {pre}), {n} tokens");
    }
    println!("chat template: {}", if g.get("tokenizer.chat_template").is_some() { "yes" } else { "no" });
    Ok(())
}

fn inspect_hf(dir: &Path) -> Result<()> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let cfg = LlamaConfig::from_hf_json(&text, &cfg_path.display().to_string())?;
    println!("directory:     {} (HF safetensors)", dir.display());
    print_config(&cfg);
    let set = SafetensorsSet::open_dir(dir)?;
    let mut by_type: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for n in set.names() {
        let (dt, shape) = (set.dtype(n).unwrap_or(DType::F32), set.shape(n).unwrap_or(&[]));
        let e = by_type.entry(format!("{dt:?}")).or_default();
        e.0 += 1;
        e.1 += shape.iter().product::<usize>() * dt.block_bytes() / dt.block_len();
    }
    for (ty, (n, b)) in &by_type {
        println!("  {ty:<8} {n:>5} tensors  {}", human(*b));
    }
    println!(
        "tokenizer:     {}",
        if dir.join("tokenizer.json").exists() { "tokenizer.json" } else { "none" }
    );
    Ok(())
}

fn inspect_adapter(dir: &Path) -> Result<()> {
    let c = PeftConfig::read(dir)?;
    println!("adapter:       {} (PEFT LoRA)", dir.display());
    println!(
        "r / alpha:     {} / {} ({})",
        c.r,
        c.lora_alpha,
        if c.use_rslora { "rsLoRA: alpha/sqrt(r)" } else { "alpha/r" }
    );
    let st = dir.join("adapter_model.safetensors");
    let set = SafetensorsSet::open_file(&st)?;
    let mut modules: BTreeMap<String, (usize, Vec<usize>, String)> = BTreeMap::new();
    let mut bytes = 0usize;
    for n in set.names() {
        let shape = set.shape(n).unwrap_or(&[]).to_vec();
        let dt = set.dtype(n).unwrap_or(DType::F32);
        bytes += shape.iter().product::<usize>() * dt.block_bytes();
        let module = n.split('.').rev().find(|p| p.ends_with("_proj")).unwrap_or("?").to_string();
        let e = modules.entry(module).or_insert((0, Vec::new(), format!("{dt:?}")));
        e.0 += 1;
        if n.contains("lora_A") && !e.1.contains(&shape[0]) {
            e.1.push(shape[0]);
        }
    }
    println!("tensors:       {} ({})", set.names().count(), human(bytes));
    for (m, (n, ranks, dt)) in &modules {
        println!("  {m:<10} {n:>4} tensors  rank {ranks:?}  {dt}");
    }
    Ok(())
}
