//! The `loradock` binary as scripts drive it: flags, JSON output, files written, and errors
//! that exit non-zero with one line naming the problem.

use std::collections::HashMap;
use std::process::{Command, Output};

use crate::common::*;

fn loradock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loradock")).args(args).output().expect("runs the binary")
}

fn ok_stdout(args: &[&str]) -> String {
    let o = loradock(args);
    assert!(o.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).expect("utf-8 stdout")
}

/// The error line of a failing run (asserting it failed cleanly: status 1, one line, no panic).
fn err_line(args: &[&str]) -> String {
    let o = loradock(args);
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{args:?}: expected exit 1, stderr: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("loradock: error: "), "{stderr}");
    stderr
}

/// Run `logits --batch` on `model` with `rows` and read back every `logits.<row>` tensor.
fn logits_batch(
    model: &std::path::Path,
    rows: &serde_json::Value,
    tag: &str,
) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let dir = TempDir::new(tag);
    let file = dir.0.join("batch.json");
    std::fs::write(&file, rows.to_string()).unwrap();
    let out = dir.0.join("l.safetensors");
    ok_stdout(&[
        "logits",
        "--model",
        model.to_str().unwrap(),
        "--batch",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    read_f32_tensors(&out)
}

fn ids_csv(ids: &[u32]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

fn reference_greedy(case: &str, prompt: &str) -> Vec<u32> {
    let j = reference_json();
    j["greedy"]["results"][case][prompt]["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect()
}

#[test]
fn generate_json_matches_reference_greedy_ids_with_and_without_adapters() {
    let j = reference_json();
    let (_, ids) = &prompts(&j)[0];
    let model = tiny().join("model");
    let a = tiny().join("adapters/r8_qv");
    let b = tiny().join("adapters/r16_mlp");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("base", vec![]),
        ("r8_qv", vec![a.display().to_string()]),
        ("sum_r8qv0.7_r16mlp-0.4", vec![format!("{}:0.7", a.display()), format!("{}:-0.4", b.display())]),
    ];
    for (case, adapters) in cases {
        let csv = ids_csv(ids);
        let mut args =
            vec!["generate", "--model", model.to_str().unwrap(), "--prompt-ids", &csv, "--max-tokens", "16"];
        args.extend(["--ignore-eos", "--json", "--threads", "2"]);
        for ad in &adapters {
            args.extend(["--adapter", ad.as_str()]);
        }
        let out: serde_json::Value = serde_json::from_str(ok_stdout(&args).trim()).expect("one JSON object");
        let got: Vec<u32> =
            out["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(got, reference_greedy(case, "p0"), "{case}");
        assert_eq!(out["prompt_tokens"].as_u64(), Some(ids.len() as u64));
        assert!(out["prefill_ms"].as_f64().is_some() && out["decode_tokens_per_s"].as_f64().is_some());
        assert!(out["text"].is_string());
    }
}

#[test]
fn logits_command_writes_every_position() {
    let j = reference_json();
    let refs = reference_logits();
    let (_, ids) = &prompts(&j)[1];
    let dir = TempDir::new("cli-logits");
    let out = dir.0.join("l.safetensors");
    ok_stdout(&[
        "logits",
        "--model",
        tiny().join("gguf/tiny-f16.gguf").to_str().unwrap(),
        "--prompt-ids",
        &ids_csv(ids),
        "--out",
        out.to_str().unwrap(),
    ]);
    let got = read_f32_tensors(&out);
    let (shape, vals) = &got["logits"];
    assert_eq!(shape, &[ids.len(), 384]);
    let d = max_abs_diff(vals, &refs["logits.p1.base"].1);
    assert!(d <= 1e-4, "{d}");
}

#[test]
fn chat_text_generation_and_inspect_and_bench_run() {
    let model = tiny().join("model");
    let m = model.to_str().unwrap();
    let out: serde_json::Value = serde_json::from_str(
        ok_stdout(&[
            "generate",
            "--model",
            m,
            "--chat",
            "--prompt",
            "Hello there",
            "--max-tokens",
            "8",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert!(out["prompt_tokens"].as_u64().unwrap() > 3, "the chat template wraps the message");
    let text = ok_stdout(&["inspect", m]);
    assert!(text.contains("layers:") && text.contains("F16"), "{text}");
    let text = ok_stdout(&["inspect", tiny().join("gguf/tiny-q4_k.gguf").to_str().unwrap()]);
    assert!(text.contains("Q4_K") && text.contains("tokenizer:"), "{text}");
    let text = ok_stdout(&["inspect", tiny().join("adapters/r4_rslora_all").to_str().unwrap()]);
    assert!(text.contains("rsLoRA") && text.contains("down_proj"), "{text}");
    let b: serde_json::Value = serde_json::from_str(
        ok_stdout(&[
            "bench",
            "--model",
            m,
            "--prompt-tokens",
            "8",
            "--gen-tokens",
            "4",
            "--runs",
            "1",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert!(b["decode_tok_s"]["median"].as_f64().unwrap() > 0.0);
    assert!(b["prefill_tok_s"]["median"].as_f64().unwrap() > 0.0);
}

#[test]
fn errors_are_one_clear_line() {
    let model = tiny().join("model");
    let m = model.to_str().unwrap();
    let e = err_line(&["generate", "--model", "/nonexistent/model.gguf", "--prompt-ids", "1"]);
    assert!(e.contains("/nonexistent/model.gguf"), "{e}");
    let e = err_line(&["generate", "--model", m, "--prompt-ids", "1,x"]);
    assert!(e.contains("'x' is not a token id"), "{e}");
    let e = err_line(&["generate", "--model", m, "--prompt-ids", "99999"]);
    assert!(e.contains("outside the vocabulary"), "{e}");
    let r8 = tiny().join("adapters/r8_qv");
    let r8 = r8.to_str().unwrap();
    let e = err_line(&["generate", "--model", m, "--prompt-ids", "1", "--adapter", r8, "--adapter", r8]);
    assert!(e.contains("named twice"), "{e}");
    let e = err_line(&["generate", "--model", m, "--prompt-ids", "1", "--adapter", "/nonexistent/adapter"]);
    assert!(e.contains("/nonexistent/adapter"), "{e}");
    let e = err_line(&["generate", "--model", m, "--prompt-ids", "1", "--temperature=-1"]);
    assert!(e.contains("temperature"), "{e}");
    // A model directory without a tokenizer cannot take text.
    let d = copy_dir(&model, "cli-notok");
    std::fs::remove_file(d.0.join("tokenizer.json")).unwrap();
    let e = err_line(&["generate", "--model", d.0.to_str().unwrap(), "--prompt", "hi"]);
    assert!(e.contains("no tokenizer"), "{e}");
    let e = err_line(&["inspect", "/nonexistent"]);
    assert!(e.contains("/nonexistent"), "{e}");
}

/// Rows with different adapter sets in one batch reproduce each case's reference.
#[test]
fn batch_files_run_rows_with_their_own_adapters() {
    let j = reference_json();
    let refs = reference_logits();
    let ps = prompts(&j);
    let (a, b) = (tiny().join("adapters/r8_qv"), tiny().join("adapters/r16_mlp"));
    let rows = serde_json::json!([
        {"prompt_ids": ps[0].1, "adapters": []},
        {"prompt_ids": ps[1].1, "adapters": [{"path": a, "weight": 1.0}]},
        {"prompt_ids": ps[0].1, "adapters": [{"path": a, "weight": 0.7}, {"path": b, "weight": -0.4}], "combination": "cat"},
    ]);
    let dir = TempDir::new("cli-batch");
    let file = dir.0.join("batch.json");
    std::fs::write(&file, rows.to_string()).unwrap();
    let m = tiny().join("model");
    let got = logits_batch(&m, &rows, "cli-batch-out");
    for (i, want) in
        ["logits.p0.base", "logits.p1.r8_qv", "logits.p0.sum_r8qv0.7_r16mlp-0.4"].iter().enumerate()
    {
        let vals = &got[&format!("logits.{i}")].1;
        let d = max_abs_diff(vals, &refs[*want].1);
        assert!(d <= 1e-4, "row {i} vs {want}: {d}");
    }
    let stdout = ok_stdout(&[
        "generate",
        "--model",
        m.to_str().unwrap(),
        "--batch",
        file.to_str().unwrap(),
        "--max-tokens",
        "16",
        "--ignore-eos",
    ]);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for (line, (case, p)) in
        lines.iter().zip([("base", "p0"), ("r8_qv", "p1"), ("sum_r8qv0.7_r16mlp-0.4", "p0")])
    {
        let got: Vec<u32> =
            line["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(got, reference_greedy(case, p), "{case}/{p}");
    }
    // Unknown combinations are named with their row.
    std::fs::write(&file, serde_json::json!([{"prompt_ids": [1], "combination": "average"}]).to_string())
        .unwrap();
    let e = err_line(&["generate", "--model", m.to_str().unwrap(), "--batch", file.to_str().unwrap()]);
    assert!(e.contains("row 0") && e.contains("'average'"), "{e}");
}

/// Batch rows may ask for an approximate combination; it is materialized once per distinct
/// composite and matches PEFT's add_weighted_adapter.
#[test]
fn batch_rows_with_approximate_combinations_match_peft() {
    let dir = tiny();
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapters_reference.json")).unwrap()).unwrap();
    let ids = &j["prompt"]["ids"];
    let parts = serde_json::json!([
        {"path": dir.join("adapters/t_a"), "weight": 0.7},
        {"path": dir.join("adapters/t_b"), "weight": 0.5}
    ]);
    let rows = serde_json::json!([
        {"prompt_ids": ids, "adapters": parts, "combination": "svd", "svd_rank": 4},
        {"prompt_ids": ids, "adapters": parts, "combination": "ties", "density": 0.5},
        {"prompt_ids": ids, "adapters": parts, "combination": "svd", "svd_rank": 4},
    ]);
    let tmp = TempDir::new("cli-compose");
    let file = tmp.0.join("batch.json");
    std::fs::write(&file, rows.to_string()).unwrap();
    let m = dir.join("model");
    let refs = read_f32_tensors(&dir.join("adapters_reference.safetensors"));
    let got_all = logits_batch(&m, &rows, "cli-compose-out");
    for (i, case) in ["wa_svd_r4", "wa_ties", "wa_svd_r4"].iter().enumerate() {
        let got = &got_all[&format!("logits.{i}")].1;
        let want = &refs[&format!("logits.{case}")].1;
        let d = max_abs_diff(got, want);
        assert!(d <= 1e-4, "row {i} ({case}): {d}");
    }
    std::fs::write(
        &file,
        serde_json::json!([{"prompt_ids": [1], "adapters": parts, "combination": "ties", "density": 2.0}])
            .to_string(),
    )
    .unwrap();
    let e = err_line(&["generate", "--model", m.to_str().unwrap(), "--batch", file.to_str().unwrap()]);
    assert!(e.contains("density"), "{e}");
}

#[test]
fn bench_mixed_reports_base_and_mixed_batch_throughput() {
    let model = tiny().join("model");
    let m = model.to_str().unwrap();
    let args =
        ["bench", "--model", m, "--mixed", "3", "--rank", "4", "--runs", "1", "--batch-gen-tokens", "2"];
    let b: serde_json::Value =
        serde_json::from_str(ok_stdout(&[&args[..], &["--json"]].concat()).trim()).expect("one JSON object");
    assert_eq!(b["mode"], "mixed");
    assert_eq!(
        (b["rows"].as_u64(), b["rank"].as_u64(), b["gen_tokens"].as_u64()),
        (Some(3), Some(4), Some(2))
    );
    assert_eq!(b["targets"], serde_json::json!(["q_proj", "k_proj", "v_proj", "o_proj"]));
    for side in ["base_tok_s", "mixed_tok_s", "ratio_paired"] {
        for k in ["median", "min", "max"] {
            assert!(b[side][k].as_f64().unwrap() > 0.0, "{side}.{k}: {b}");
        }
    }
    assert!(b["ratio"].as_f64().unwrap() > 0.0, "{b}");
    assert!(b["threads"].as_u64().unwrap() > 0 && b["isa"].is_string() && b["cpu"].is_string(), "{b}");
    assert!(b["weight_bytes"].as_u64().unwrap() > 0, "{b}");
    // Rank 4 on q/k/v/o of 2 layers, f32: each adapter is 4·(in + out) floats per module.
    let each = b["adapter_bytes_each"].as_u64().unwrap();
    assert_eq!(each, 2 * 4 * 4 * ((256 + 256) + (256 + 128) * 2 + (256 + 256)), "{b}");
    assert_eq!(b["adapter_bytes_per_step"].as_u64(), Some(3 * each), "{b}");
    assert!(b["rows_changed"].as_u64().is_some(), "{b}");
    let text = ok_stdout(&args);
    assert!(text.contains("mixed") && text.contains("ratio"), "{text}");
    let e = err_line(&["bench", "--model", m, "--mixed", "0"]);
    assert!(e.contains("mixed") && e.contains("> 0"), "{e}");
    let r8 = tiny().join("adapters/r8_qv");
    let e = err_line(&["bench", "--model", m, "--mixed", "2", "--adapter", r8.to_str().unwrap()]);
    assert!(e.contains("--mixed builds its own adapters"), "{e}");
}

/// `--budget` is a red line: what does not fit is refused up front, and what runs stays under.
#[test]
fn budget_is_a_red_line() {
    let m = tiny().join("model");
    let m = m.to_str().unwrap();
    let e = err_line(&["generate", "--model", m, "--prompt-ids", "1,2", "--budget", "1K"]);
    assert!(e.contains("base_weights") && e.contains("do not fit"), "{e}");
    // Weights fit, a 4096-position f32 KV cache does not; an int8 one does.
    let e = err_line(&["generate", "--model", m, "--prompt-ids", "1,2", "--budget", "8M", "--ctx", "4096"]);
    assert!(e.contains("kv_pages"), "{e}");
    let out: serde_json::Value = serde_json::from_str(
        ok_stdout(&[
            "generate",
            "--model",
            m,
            "--prompt-ids",
            "1,2",
            "--budget",
            "8M",
            "--ctx",
            "4096",
            "--kv",
            "int8",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let (hw, budget) = (out["high_water_bytes"].as_u64().unwrap(), out["budget_bytes"].as_u64().unwrap());
    assert!(hw > 0 && hw <= budget, "{hw} of {budget}");
    let e = err_line(&["generate", "--model", m, "--prompt-ids", "1", "--budget", "lots"]);
    assert!(e.contains("not a byte count"), "{e}");
}

/// `chat` reads one turn per line, answers each, forgets on /reset and leaves at end of input.
#[test]
fn chat_answers_each_line_until_end_of_input() {
    use std::io::Write;
    use std::process::Stdio;
    let m = tiny().join("model");
    let r8 = tiny().join("adapters/r8_qv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_loradock"))
        .args([
            "chat",
            "--model",
            m.to_str().unwrap(),
            "--adapter",
            &format!("{}:0.5", r8.display()),
            "--max-tokens",
            "6",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    child.stdin.take().unwrap().write_all(b"Hello there\n\n/reset\nThe Program\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("r8_qv") && stderr.contains("forgotten"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2, "two answers, one per turn");
}

#[test]
fn serve_demo_fetches_adapters_over_http_and_ipfs_under_its_budget() {
    let dir = TempDir::new("serve-demo");
    let adapters = dir.0.join("adapters");
    for a in ["t_a", "t_b", "r8_qv"] {
        let d = adapters.join(a);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(tiny().join("adapters").join(a).join(f), d.join(f)).unwrap();
        }
    }
    let model = tiny().join("model");
    let work = dir.0.join("work");
    let out = loradock(&[
        "serve-demo",
        "--model",
        model.to_str().unwrap(),
        "--adapters",
        adapters.to_str().unwrap(),
        "--derived",
        "24",
        "--threads",
        "1",
        "--work-dir",
        work.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("15 by HTTP URL and sha256 digest, 12 by ipfs:// CID"), "{stdout}");
    assert!(stdout.contains("first use: 24 requests, 0 failed"), "{stdout}");
    assert!(stdout.contains("second use: 24 requests, 0 failed"), "{stdout}");
    assert!(stdout.contains("budget crossed                never"), "{stdout}");
    // Composites and every trained adapter answered.
    for label in ["── t_a\n", "── t_b\n", "── r8_qv\n", "(exact composite)\n"] {
        assert!(stdout.contains(label), "{label} missing: {stdout}");
    }
}

#[test]
fn synth_writes_the_same_loadable_model_for_a_seed_and_gpu_commands_explain_themselves() {
    let tmp = TempDir::new("synth");
    let dir = tmp.0.clone();
    let (a, b) = (dir.join("a.gguf"), dir.join("b.gguf"));
    for p in [&a, &b] {
        let out = ok_stdout(&[
            "synth",
            "--shape",
            "smollm2",
            "--type",
            "q4_1",
            "--layers",
            "1",
            "--out",
            p.to_str().unwrap(),
            "--adapters",
            "1",
            "--rank",
            "4",
        ]);
        assert!(out.contains("Smollm2 Q4_1, 1 layers"), "{out}");
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same seed, same bytes");
    let m = loradock::model::load_model(&a, &Default::default()).unwrap().model;
    let c = &m.config;
    assert_eq!(
        (c.hidden_size, c.num_heads, c.num_kv_heads, c.intermediate_size, c.vocab_size),
        (576, 9, 3, 1536, 49152)
    );
    let ad = loradock::lora::load_peft(&dir.join("a.gguf.adapters/a0000"), c).unwrap();
    assert_eq!(ad.layers.len(), 1);
    let gen = ok_stdout(&[
        "generate",
        "--model",
        a.to_str().unwrap(),
        "--prompt",
        "synthetic text",
        "--max-tokens",
        "3",
    ]);
    assert!(!gen.trim().is_empty());
    let e = err_line(&["synth", "--layers", "31", "--out", dir.join("c.gguf").to_str().unwrap()]);
    assert!(e.contains("31 is not between 1 and the shape's 30"), "{e}");
    // The probe answers on every machine; without a GPU the benchmark refuses with its reason.
    let probe = ok_stdout(&["gpu"]);
    if probe.starts_with("no usable GPU: ") {
        let e = err_line(&["gpu-bench", "--model", a.to_str().unwrap()]);
        assert!(e.starts_with("loradock: error: cuda: ") && e.len() > 30, "{e}");
    } else {
        assert!(probe.starts_with("CUDA driver "), "{probe}");
    }
}
