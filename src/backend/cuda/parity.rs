//! GPU parity: every kernel against its CPU reference, and whole-model logits (base, a mixed
//! batch of adapters, quantized weights, int8 KV) against the CPU engine. Each test skips,
//! saying why, where [`probe`](super::probe) finds no usable GPU; `LORADOCK_REQUIRE_CUDA=1`
//! (set by `scripts/gpu_check.sh`) turns a skip into a failure.

use std::path::PathBuf;

use half::f16;

use super::device::{CudaDevice, DeviceBuffer};
use super::kv_gpu::{GpuKv, KvLayout};
use super::lora_gpu::{GpuLoraPlan, GpuPool};
use super::lora_plan::{AdapterPool, LoraPlan};
use super::model::{CudaModel, GpuLoras, GpuSeq};
use super::pack::PackedMatrix;
use super::pages::{batch_tables, BlockTable, PageAllocator};
use super::probe::{probe, Probe};
use crate::kv::{KvCache, KvType};
use crate::lora::{load_peft, LoraAdapter, LoraPair};
use crate::memory::{Category, Ledger};
use crate::model::{load_model, Compute, LlamaModel, LoadOptions, LogitsMode, SeqBatch};
use crate::tensor::{DType, QMatrix};

fn gpu() -> Option<CudaDevice> {
    match probe() {
        Probe::Unavailable(why) => {
            assert!(
                std::env::var("LORADOCK_REQUIRE_CUDA").is_err(),
                "LORADOCK_REQUIRE_CUDA is set but: {why}"
            );
            eprintln!("skipped: {why}");
            None
        }
        Probe::Available { .. } => {
            Some(CudaDevice::open(0, Ledger::new("cuda:0", 16 << 30)).expect("open cuda:0"))
        }
    }
}

/// Deterministic values in [-1, 1] (the crate's test generator).
fn rand(n: usize, seed: u32) -> Vec<f32> {
    crate::test_util::pseudo_random(n, seed)
}

#[track_caller]
fn close(got: &[f32], want: &[f32], rel: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
    assert!(worst <= rel * scale, "{what}: max |diff| {worst} > {rel} × {scale}");
    eprintln!("{what}: max |diff| {worst:.3e} (scale {scale:.3e})");
}

fn up(dev: &CudaDevice, v: &[f32]) -> DeviceBuffer<f32> {
    dev.upload(Category::Scratch, v).unwrap()
}

#[test]
fn matvec_every_weight_type_and_token_count() {
    let Some(dev) = gpu() else { return };
    let (rows, cols) = (301, 576);
    let v = rand(rows * cols, 1);
    let f32m = QMatrix::from_f32(rows, cols, &v);
    let f16b: Vec<u8> = v.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect();
    let bf16b: Vec<u8> = v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect();
    let st = crate::tensor::storage::Storage::from_bytes;
    let mats = [
        ("f16", QMatrix::new(DType::F16, rows, cols, st(&f16b), "w").unwrap()),
        ("bf16", QMatrix::new(DType::BF16, rows, cols, st(&bf16b), "w").unwrap()),
        ("q8_0", f32m.quantize(DType::Q8_0).unwrap()),
        ("q4_0", f32m.quantize(DType::Q4_0).unwrap()),
        ("q4_1", f32m.quantize(DType::Q4_1).unwrap()),
    ];
    for (name, m) in mats {
        let p = PackedMatrix::pack(&m).unwrap();
        let w = dev.upload_matrix(Category::BaseWeights, &p).unwrap();
        for n in [1, 5, 13] {
            let x = rand(n * cols, 7 + n as u32);
            let mut y = dev.zeros::<f32>(Category::Scratch, n * rows).unwrap();
            dev.matvec(&w, &up(&dev, &x), &mut y, n).unwrap();
            close(&dev.download(&y).unwrap(), &p.matvec_ref(&x, n), 1e-5, &format!("matvec {name} n={n}"));
        }
    }
}

#[test]
fn norm_rope_swiglu_add_embed_argmax() {
    let Some(dev) = gpu() else { return };
    let (n, dim) = (3, 576);
    let x = rand(n * dim, 2);
    let w = rand(dim, 3);
    let mut y = dev.zeros::<f32>(Category::Scratch, n * dim).unwrap();
    dev.rmsnorm(&up(&dev, &x), &up(&dev, &w), &mut y, n, 1e-5).unwrap();
    let want: Vec<f32> = x
        .chunks(dim)
        .flat_map(|r| {
            let inv = 1.0 / (r.iter().map(|v| v * v).sum::<f32>() / dim as f32 + 1e-5).sqrt();
            r.iter().zip(&w).map(move |(a, b)| b * (a * inv)).collect::<Vec<_>>()
        })
        .collect();
    close(&dev.download(&y).unwrap(), &want, 1e-5, "rmsnorm");

    let (heads, hd) = (9, 64);
    let inv_freq: Vec<f32> = (0..hd / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / hd as f32)).collect();
    let pos = [0i32, 17, 4000];
    let q = rand(3 * heads * hd, 4);
    let mut qd = up(&dev, &q);
    dev.rope(&mut qd, &dev.upload(Category::Scratch, &pos).unwrap(), &up(&dev, &inv_freq), heads, hd)
        .unwrap();
    let mut want = q.clone();
    let (mut cs, mut sn) = (vec![0f32; hd / 2], vec![0f32; hd / 2]);
    for (t, &p) in pos.iter().enumerate() {
        crate::model::rope::angles(&inv_freq, p as usize, &mut cs, &mut sn);
        for h in 0..heads {
            crate::model::rope::apply(&mut want[(t * heads + h) * hd..][..hd], &cs, &sn);
        }
    }
    close(&dev.download(&qd).unwrap(), &want, 1e-4, "rope");

    let (g, u) = (rand(1000, 5), rand(1000, 6));
    let mut out = dev.zeros::<f32>(Category::Scratch, 1000).unwrap();
    dev.silu_mul(&up(&dev, &g), &up(&dev, &u), &mut out, 1000).unwrap();
    let want: Vec<f32> = g.iter().zip(&u).map(|(a, b)| a / (1.0 + (-a).exp()) * b).collect();
    close(&dev.download(&out).unwrap(), &want, 1e-6, "silu_mul");
    let mut acc = up(&dev, &g);
    dev.add(&mut acc, &up(&dev, &u), 1000).unwrap();
    close(
        &dev.download(&acc).unwrap(),
        &g.iter().zip(&u).map(|(a, b)| a + b).collect::<Vec<_>>(),
        0.0,
        "add",
    );

    let (vocab, edim) = (50, 64);
    let table = rand(vocab * edim, 8);
    let tq = QMatrix::from_f32(vocab, edim, &table).quantize(DType::Q8_0).unwrap();
    let tp = PackedMatrix::pack(&tq).unwrap();
    let tg = dev.upload_matrix(Category::BaseWeights, &tp).unwrap();
    let ids = [3i32, 49, 0];
    let mut e = dev.zeros::<f32>(Category::Scratch, 3 * edim).unwrap();
    dev.embed(&tg, &dev.upload(Category::Scratch, &ids).unwrap(), &mut e).unwrap();
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| (0..edim).map(move |c| (i as usize, c)))
        .map(|(i, c)| tp.value(i, c))
        .collect();
    close(&dev.download(&e).unwrap(), &want, 0.0, "embed q8_0");

    let mut logits = rand(2 * 5000, 9);
    logits[4321] = 5.0;
    logits[5000 + 17] = 5.0;
    logits[5000 + 18] = 5.0; // a tie: the smaller index wins, as on the CPU
    let (ids, vals) = dev.argmax(&up(&dev, &logits), 5000).unwrap();
    assert_eq!((ids, vals), (vec![4321, 17], vec![5.0, 5.0]));
}

/// Reference attention for one query row over `n` positions of f32 K/V `[pos, kv_head, hd]`.
fn attend_ref(q: &[f32], k: &[f32], v: &[f32], n: usize, nh: usize, nkv: usize, hd: usize) -> Vec<f32> {
    let mut out = vec![0f32; nh * hd];
    let scale = 1.0 / (hd as f32).sqrt();
    for h in 0..nh {
        let kh = h / (nh / nkv);
        let s: Vec<f64> = (0..n)
            .map(|p| {
                (0..hd).map(|i| (q[h * hd + i] * k[(p * nkv + kh) * hd + i]) as f64).sum::<f64>()
                    * scale as f64
            })
            .collect();
        let m = s.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        for i in 0..hd {
            out[h * hd + i] =
                (0..n).map(|p| e[p] / z * v[(p * nkv + kh) * hd + i] as f64).sum::<f64>() as f32;
        }
    }
    out
}

#[test]
fn paged_attention_decode_and_prefill_f16_and_int8() {
    let Some(dev) = gpu() else { return };
    let (nh, nkv, hd) = (8, 2, 64);
    let lens = [1usize, 37, 300];
    for layout in [KvLayout::F16, KvLayout::Int8] {
        let mut kv = GpuKv::new(&dev, layout, 1, 64, nkv, hd).unwrap();
        let mut pages = PageAllocator::new(64);
        let mut tables = vec![BlockTable::new(); lens.len()];
        let mut host_k = Vec::new();
        let mut host_v = Vec::new();
        for (s, &len) in lens.iter().enumerate() {
            let (k, v) = (rand(len * nkv * hd, 10 + s as u32), rand(len * nkv * hd, 20 + s as u32));
            let slots = tables[s].append(&mut pages, len).unwrap();
            kv.append(&dev, 0, &up(&dev, &k), &up(&dev, &v), &dev.upload(Category::Scratch, &slots).unwrap())
                .unwrap();
            // f16 pages hold rounded values: the reference uses the same.
            let r = |x: &Vec<f32>| x.iter().map(|a| f16::from_f32(*a).to_f32()).collect::<Vec<_>>();
            host_k.push(r(&k));
            host_v.push(r(&v));
        }
        let tol = if layout == KvLayout::F16 { 1e-4 } else { 4e-2 };
        // Decode: one query per sequence.
        let q = rand(lens.len() * nh * hd, 30);
        let refs: Vec<&BlockTable> = tables.iter().collect();
        let (flat, width, seq_lens) = batch_tables(&refs);
        let mut out = dev.zeros::<f32>(Category::Scratch, q.len()).unwrap();
        let (tb, lb) = (
            dev.upload(Category::Scratch, &flat).unwrap(),
            dev.upload(Category::Scratch, &seq_lens).unwrap(),
        );
        kv.attend_decode(&dev, 0, &up(&dev, &q), &tb, width, &lb, &mut out, nh, 1.0 / (hd as f32).sqrt())
            .unwrap();
        let got = dev.download(&out).unwrap();
        for (s, &len) in lens.iter().enumerate() {
            let want = attend_ref(&q[s * nh * hd..][..nh * hd], &host_k[s], &host_v[s], len, nh, nkv, hd);
            close(&got[s * nh * hd..][..nh * hd], &want, tol, &format!("decode {layout:?} len {len}"));
        }
        // Prefill: the last 5 positions of the longest sequence, causally.
        let (s, len, m) = (2, lens[2], 5);
        let q = rand(m * nh * hd, 31);
        let table = dev
            .upload(Category::Scratch, &tables[s].pages().iter().map(|&p| p as i32).collect::<Vec<_>>())
            .unwrap();
        let mut out = dev.zeros::<f32>(Category::Scratch, q.len()).unwrap();
        kv.attend_prefill(
            &dev,
            0,
            &up(&dev, &q),
            0,
            &table,
            len - m,
            m,
            &mut out,
            nh,
            1.0 / (hd as f32).sqrt(),
        )
        .unwrap();
        let got = dev.download(&out).unwrap();
        for t in 0..m {
            let want = attend_ref(
                &q[t * nh * hd..][..nh * hd],
                &host_k[s],
                &host_v[s],
                len - m + t + 1,
                nh,
                nkv,
                hd,
            );
            close(&got[t * nh * hd..][..nh * hd], &want, tol, &format!("prefill {layout:?} token {t}"));
        }
    }
}

#[test]
fn mixed_adapter_lora_step() {
    let Some(dev) = gpu() else { return };
    let (din, dout) = (576, 1536);
    let mut pool = AdapterPool::new(din, dout);
    for (i, r) in [16usize, 4, 64, 8, 1].into_iter().enumerate() {
        let a = rand(r * din, 40 + i as u32).iter().map(|v| v * 0.05).collect();
        let b = rand(dout * r, 50 + i as u32).iter().map(|v| v * 0.05).collect();
        pool.push(&LoraPair { rank: r, d_in: din, d_out: dout, a, b, scale: 0.5 + i as f32 }).unwrap();
    }
    let rows: Vec<Vec<(usize, f32)>> = (0..24)
        .map(|r| match r % 6 {
            0 => vec![],
            1 => vec![(r % 5, 1.0)],
            2 => vec![(2, 0.3), (0, 0.7)],
            3 => vec![(4, -1.0), (1, 2.0), (3, 0.5)],
            _ => vec![((r + 1) % 5, 1.0)],
        })
        .collect();
    let plan = LoraPlan::build(&rows, &pool.slots).unwrap();
    let x = rand(rows.len() * din, 60);
    let base = rand(rows.len() * dout, 61);
    let mut want = base.clone();
    plan.apply_ref(&pool, &x, &mut want);
    let gp = GpuPool::upload(&dev, &pool).unwrap();
    let mut gplan = GpuLoraPlan::upload(&dev, &plan).unwrap();
    let mut y = up(&dev, &base);
    dev.lora(&gp, &mut gplan, &up(&dev, &x), &mut y).unwrap();
    close(&dev.download(&y).unwrap(), &want, 1e-5, "lora shrink/expand, 24 rows, 5 adapters");
}

/// The tiny fixture model: from the source tree this binary was built in, or, on a GPU machine
/// that received a copy of the tree elsewhere, from the working directory (the tree's root).
fn tiny() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("tests/fixtures/tiny")
    }
}

/// CPU last-token logits of each sequence, prefilled then decoded token by token.
fn cpu_run(
    m: &LlamaModel,
    kv: KvType,
    prompts: &[Vec<u32>],
    sets: &[Vec<(&LoraAdapter, f32)>],
    steps: &[Vec<u32>],
) -> Vec<Vec<Vec<f32>>> {
    let mut c = Compute::new(2);
    let mut caches: Vec<KvCache> = prompts.iter().map(|_| KvCache::with_type(&m.config, 256, kv)).collect();
    let mut out = vec![Vec::new(); prompts.len()];
    for round in 0..=steps.len() {
        let toks: Vec<&[u32]> = if round == 0 {
            prompts.iter().map(|p| &p[..]).collect()
        } else {
            steps[round - 1].iter().map(std::slice::from_ref).collect()
        };
        let mut seqs: Vec<SeqBatch<'_>> = caches
            .iter_mut()
            .zip(&toks)
            .zip(sets)
            .map(|((kv, t), set)| SeqBatch { tokens: t, kv, adapters: set, logits: LogitsMode::Last })
            .collect();
        for (i, l) in m.forward(&mut c, &mut seqs).unwrap().into_iter().enumerate() {
            out[i].push(l);
        }
    }
    out
}

fn gpu_run(
    dev: &CudaDevice,
    m: &LlamaModel,
    layout: KvLayout,
    prompts: &[Vec<u32>],
    sets: &[Vec<(usize, f32)>],
    adapters: &[&LoraAdapter],
    steps: &[Vec<u32>],
) -> Vec<Vec<Vec<f32>>> {
    let gm = CudaModel::upload(dev, m).unwrap();
    let cfg = &m.config;
    let loras = GpuLoras::upload(dev, cfg, adapters).unwrap();
    let mut kv = GpuKv::new(dev, layout, cfg.num_layers, 64, cfg.num_kv_heads, cfg.head_dim).unwrap();
    let mut pages = PageAllocator::new(64);
    let mut tables = vec![BlockTable::new(); prompts.len()];
    let mut out = vec![Vec::new(); prompts.len()];
    for round in 0..=steps.len() {
        let mut seqs: Vec<GpuSeq<'_>> = tables
            .iter_mut()
            .enumerate()
            .map(|(i, table)| GpuSeq {
                tokens: if round == 0 { &prompts[i] } else { std::slice::from_ref(&steps[round - 1][i]) },
                table,
                adapters: sets[i].clone(),
            })
            .collect();
        for (i, l) in
            gm.forward(dev, &mut kv, &mut pages, &mut seqs, Some(&loras)).unwrap().into_iter().enumerate()
        {
            out[i].push(l);
        }
    }
    out
}

#[test]
fn whole_model_logits_base_mixed_adapters_quantized_and_int8_kv() {
    let Some(dev) = gpu() else { return };
    let m = load_model(&tiny().join("model"), &LoadOptions::default()).unwrap().model;
    let a1 = load_peft(&tiny().join("adapters/r8_qv"), &m.config).unwrap();
    let a2 = load_peft(&tiny().join("adapters/r16_mlp"), &m.config).unwrap();
    let a3 = load_peft(&tiny().join("adapters/r4_rslora_all"), &m.config).unwrap();
    let prompts = vec![vec![1u32, 5, 9, 200, 17, 3, 88], vec![4u32, 4, 4], vec![300u32; 21], vec![7u32, 8]];
    let steps: Vec<Vec<u32>> =
        (0..4).map(|s| (0..4).map(|i| (s * 31 + i * 7 + 2) as u32).collect()).collect();
    let cpu_sets: Vec<Vec<(&LoraAdapter, f32)>> =
        vec![vec![], vec![(&a1, 1.0)], vec![(&a2, 0.6), (&a3, 0.4)], vec![(&a3, 1.0), (&a1, -0.5)]];
    let gpu_sets: Vec<Vec<(usize, f32)>> =
        vec![vec![], vec![(0, 1.0)], vec![(1, 0.6), (2, 0.4)], vec![(2, 1.0), (0, -0.5)]];
    let adapters = [&a1, &a2, &a3];
    // The tiny model is f16: GPU and CPU read the same weights; adapters are f16 on the GPU.
    let want = cpu_run(&m, KvType::F16, &prompts, &cpu_sets, &steps);
    let got = gpu_run(&dev, &m, KvLayout::F16, &prompts, &gpu_sets, &adapters, &steps);
    for (s, (g, w)) in got.iter().zip(&want).enumerate() {
        for (step, (gl, wl)) in g.iter().zip(w).enumerate() {
            close(gl, wl, 2e-3, &format!("f16 model, seq {s}, step {step}"));
        }
    }
    let want = cpu_run(&m, KvType::Int8, &prompts, &cpu_sets, &steps);
    let got = gpu_run(&dev, &m, KvLayout::Int8, &prompts, &gpu_sets, &adapters, &steps);
    for (s, (g, w)) in got.iter().zip(&want).enumerate() {
        close(g.last().unwrap(), w.last().unwrap(), 2e-2, &format!("int8 KV, seq {s}, last step"));
    }
    // Quantized GGUF weights on the GPU against the CPU engine on the same weights dequantized.
    for file in ["tiny-q8_0.gguf", "tiny-q4_1.gguf", "tiny-q4_0.gguf"] {
        let path = tiny().join("gguf").join(file);
        let q = load_model(&path, &LoadOptions::default()).unwrap().model;
        let f = load_model(&path, &LoadOptions { quant: Some(DType::F32) }).unwrap().model;
        let want = cpu_run(&f, KvType::F32, &prompts, &vec![vec![]; 4], &steps);
        let got = gpu_run(&dev, &q, KvLayout::F16, &prompts, &[vec![], vec![], vec![], vec![]], &[], &steps);
        for (s, (g, w)) in got.iter().zip(&want).enumerate() {
            close(g.last().unwrap(), w.last().unwrap(), 5e-3, &format!("{file}, seq {s}, last step"));
        }
    }
}

#[test]
fn the_ledger_is_the_red_line_on_the_gpu() {
    let Some(dev) = gpu() else { return };
    let small = CudaDevice::open(0, Ledger::new("cuda:0", 1 << 20)).unwrap();
    let e = small.zeros::<f32>(Category::KvPages, 1 << 20).unwrap_err().to_string();
    assert!(e.contains("do not fit under the budget"), "{e}");
    let e = GpuKv::new(&small, KvLayout::F16, 30, 4096, 8, 128).unwrap_err().to_string();
    assert!(e.contains("KV"), "{e}");
    assert_eq!(small.ledger().stats().used_bytes, 0);
    drop(dev);
}
