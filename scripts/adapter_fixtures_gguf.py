"""GGUF LoRA part of make_adapter_fixtures.py: conversion with shared/peers/hf_to_gguf.py and its
checks (stage hf, .venv-fixtures), llama.cpp's logits with the LoRA applied (stage llamacpp,
.venv-llamacpp). Needs only numpy, gguf, safetensors (+ llama_cpp for the second part)."""
import ctypes
import json
import math
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as MF  # noqa: E402

HF_OF = MF.GGUF_TO_HF  # attn_q -> self_attn.q_proj, ...
PEER = os.path.join(MF.PEERS, "hf_to_gguf.py")


def unpermute(t, n_head):
    """Undo convert_hf_to_gguf.py's q/k row permutation (HF rotate-half -> GGML interleaved)."""
    return (t.reshape(n_head, t.shape[0] // n_head // 2, 2, *t.shape[1:])
            .swapaxes(1, 2).reshape(t.shape))


def read_lora(path):
    """(metadata {key: value}, tensors [{name, type, ne, numpy}], {hf_module: (A, B)} with B's
    q/k rows un-permuted back to HF order; float64)."""
    import gguf
    import numpy as np
    from gguf.quants import dequantize
    cfg = json.load(open(os.path.join(MF.OUT, "model", "config.json")))
    r = gguf.GGUFReader(path)
    meta = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):
            continue
        v = f.contents()
        meta[name] = {"type": f.types[0].name if f.types else None, "value": v}
    tensors, mods = [], {}
    for t in r.tensors:
        ne = [int(x) for x in t.shape]
        a = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(list(reversed(ne)))
        tensors.append({"name": t.name, "type": t.tensor_type.name, "ne": ne,
                        "numpy_shape": list(reversed(ne))})
        m = re.match(r"blk\.(\d+)\.(\w+)\.weight\.lora_([ab])$", t.name)
        assert m, t.name
        hf = f"model.layers.{m.group(1)}.{HF_OF[m.group(2)]}"
        if m.group(3) == "b" and m.group(2) == "attn_q":
            a = unpermute(a, cfg["num_attention_heads"])
        elif m.group(3) == "b" and m.group(2) == "attn_k":
            a = unpermute(a, cfg["num_key_value_heads"])
        mods.setdefault(hf, [None, None])["ab".index(m.group(3))] = a
    return meta, tensors, mods


def convert(adir, gldir, scratch, names):
    """GGUF LoRA files for `names` (adapters/<name>) into gldir, checked tensor by tensor against
    the PEFT safetensors. rslora: llama.cpp scales by alpha / rank only, so the file gets
    adapter.lora.alpha = lora_alpha * sqrt(r) (converted from a config copy with that alpha and
    use_rslora false); a naive conversion with the config's lora_alpha goes to scratch."""
    import numpy as np
    from safetensors.numpy import load_file
    model_dir = os.path.join(MF.OUT, "model")
    os.makedirs(gldir, exist_ok=True)
    info = {}
    for name in names:
        src = os.path.join(adir, name)
        cfg = json.load(open(os.path.join(src, "adapter_config.json")))
        out = os.path.join(gldir, f"{name}.gguf")
        conv = src
        e = {"source": f"adapters/{name}", "file": f"gguf_lora/{name}.gguf",
             "converter": "shared/peers/hf_to_gguf.py lora <dir> <out> --base "
                          "tests/fixtures/tiny/model (default --type f16)",
             "peft": {"r": cfg["r"], "lora_alpha": cfg["lora_alpha"], "use_rslora": cfg["use_rslora"],
                      "scale": cfg["lora_alpha"] / (math.sqrt(cfg["r"]) if cfg["use_rslora"] else cfg["r"])}}
        if cfg.get("use_rslora"):
            assert not cfg.get("rank_pattern") and not cfg.get("alpha_pattern"), name
            alpha = cfg["lora_alpha"] * math.sqrt(cfg["r"])
            conv = os.path.join(scratch, "gguf_src", name)  # same basename -> same general.name
            shutil.rmtree(conv, ignore_errors=True)
            shutil.copytree(src, conv)
            p = os.path.join(conv, "adapter_config.json")
            c = dict(cfg, lora_alpha=alpha, use_rslora=False)
            MF.write_json(p, c)
            naive = os.path.join(scratch, f"{name}.naive.gguf")
            subprocess.check_call([sys.executable, PEER, "lora", src, naive, "--base", model_dir],
                                  stdout=subprocess.DEVNULL)
            e["rslora"] = {
                "representable": "not directly: GGUF LoRA has one float adapter.lora.alpha and "
                                 "llama.cpp uses scale = user_scale * alpha / rank (rank = lora_a "
                                 "rows); there is no rslora flag",
                "llama_cpp_convert_lora_to_gguf": "writes adapter.lora.alpha = lora_alpha and "
                                                  "ignores use_rslora (and rank_pattern / "
                                                  "alpha_pattern), so an rslora adapter comes out "
                                                  "with scale alpha/r instead of alpha/sqrt(r)",
                "done_here": f"adapter.lora.alpha = lora_alpha * sqrt(r) = {cfg['lora_alpha']} * "
                             f"sqrt({cfg['r']}) = {alpha} (A and B unchanged), so alpha/r = "
                             f"{alpha / cfg['r']} = PEFT's lora_alpha/sqrt(r). Only possible "
                             "because every module has the same r",
                "naive_file": f"(scratch, not committed) .cache/fixtures/adapters/{name}.naive.gguf"
                              f" with alpha {cfg['lora_alpha']} (scale {cfg['lora_alpha'] / cfg['r']})"}
        subprocess.check_call([sys.executable, PEER, "lora", conv, out, "--base", model_dir],
                              stdout=subprocess.DEVNULL)
        meta, tensors, mods = read_lora(out)
        st = load_file(os.path.join(src, "adapter_model.safetensors"))
        assert len(mods) * 2 == len(st), (len(mods), len(st))
        worst = 0.0
        for hf, (A, B) in mods.items():
            pa = st[f"base_model.model.{hf}.lora_A.weight"].astype(np.float64)
            pb = st[f"base_model.model.{hf}.lora_B.weight"].astype(np.float64)
            worst = max(worst, float(np.abs(A - pa).max()), float(np.abs(B - pb).max()))
        assert worst == 0.0, (name, worst)  # f16 is lossless: every value is float16-exact
        alpha = float(meta["adapter.lora.alpha"]["value"])
        e.update({"bytes": os.path.getsize(out), "metadata": meta, "tensors": tensors,
                  "gguf_alpha": alpha, "llama_cpp_scale_at_user_scale_1": alpha / cfg["r"],
                  "tensor_values_vs_peft_max_abs_diff": worst})
        assert abs(alpha / cfg["r"] - e["peft"]["scale"]) < 1e-6, (name, alpha)
        info[name] = e
        MF.log(f"gguf lora {name}: {len(tensors)} tensors, alpha {alpha}, "
               f"{os.path.getsize(out)} bytes, values identical to PEFT's")
    return info


def exact_logits(lora_path, ids):
    """numpy float64 forward: tiny-f16.gguf weights + alpha/r * B@A from the GGUF LoRA."""
    W = MF.gguf_weights64(os.path.join(MF.OUT, "gguf", "tiny-f16.gguf"))
    meta, _, mods = read_lora(lora_path)
    alpha = float(meta["adapter.lora.alpha"]["value"])
    for hf, (A, B) in mods.items():
        W[hf + ".weight"] += (alpha / A.shape[0]) * (B @ A)
    return MF.np_forward64(W, ids)


def llamacpp_logits(model_path, lora_path, ids, scale=1.0):
    import llama_cpp as L
    import llamacpp_util as LU
    m = LU.Model(model_path, n_ctx=64)
    try:
        if lora_path is None:
            return m.logits_all(ids), None
        ad = L.llama_adapter_lora_init(m.model, lora_path.encode())
        if not ad:
            raise SystemExit(f"llama.cpp cannot load {lora_path}")
        buf = ctypes.create_string_buffer(64)
        n = L.llama_adapter_meta_val_str(ad, b"adapter.lora.alpha", buf, 64)
        alpha_seen = buf.value.decode() if n >= 0 else None
        arr = (L.llama_adapter_lora_p_ctypes * 1)(ad)
        sc = (ctypes.c_float * 1)(scale)
        rc = L.llama_set_adapters_lora(m.ctx, arr, 1, sc)
        assert rc == 0, rc
        return m.logits_all(ids), alpha_seen
    finally:
        m.close()


def stage_llamacpp(ref_json, ref_st, scratch):
    import numpy as np
    import llamacpp_util as LU
    from safetensors.numpy import load_file, save_file
    info = json.load(open(ref_json))
    ids = info["prompt"]["ids"]
    LU.init()
    href = load_file(os.path.join(MF.OUT, "reference.safetensors"))
    lc_base_stored = load_file(os.path.join(MF.OUT, "gguf", "llamacpp_logits.safetensors"))["logits.p0.f16"]
    f16 = os.path.join(MF.OUT, "gguf", "tiny-f16.gguf")
    base_lc, _ = llamacpp_logits(f16, None, ids)
    tensors = load_file(ref_st)
    out = {"llama_cpp": LU.versions(), "context": LU.CONTEXT_NOTE,
           "base_no_lora_vs_stored_gguf_llamacpp_logits_p0_f16": float(np.abs(base_lc - lc_base_stored).max())}
    for name, e in info["gguf_lora"]["files"].items():
        path = os.path.join(MF.OUT, e["file"])
        lg, alpha_seen = llamacpp_logits(f16, path, ids)
        peft = href[f"logits.p0.{name}"]
        ex = exact_logits(path, ids)
        tensors[f"logits.gguf_lora.{name}"] = lg
        r = {"tensor": f"logits.gguf_lora.{name}", "adapter_meta_alpha_seen_by_llama_cpp": alpha_seen,
             "user_scale": 1.0,
             "max_abs_diff_vs_peft": float(np.abs(lg - peft).max()),
             "peft_reference": f"reference.safetensors logits.p0.{name}",
             "numpy_float64_on_gguf_files_vs_peft": float(np.abs(ex - peft).max()),
             "max_abs_diff_vs_numpy_float64_on_gguf_files": float(np.abs(lg - ex).max()),
             "logit_delta_vs_llamacpp_base": float(np.abs(lg - base_lc).max())}
        assert r["numpy_float64_on_gguf_files_vs_peft"] < 1e-4, r
        assert r["max_abs_diff_vs_peft"] < 0.1, r
        naive = os.path.join(scratch, f"{name}.naive.gguf")
        if "rslora" in e and os.path.exists(naive):
            nl, _ = llamacpp_logits(f16, naive, ids)
            e["rslora"]["naive_file_llamacpp_max_abs_diff_vs_peft"] = float(np.abs(nl - peft).max())
        e["llamacpp"] = r
        MF.log(f"llama.cpp + {name}.gguf: vs PEFT {r['max_abs_diff_vs_peft']:.4f}, numpy-on-GGUF vs "
               f"PEFT {r['numpy_float64_on_gguf_files_vs_peft']:.2e}, delta vs base "
               f"{r['logit_delta_vs_llamacpp_base']:.3f}")
    info["gguf_lora"]["llamacpp_run"] = out
    info["tensors"] = {k: list(v.shape) for k, v in sorted(tensors.items())}
    save_file(tensors, ref_st, metadata={"generator": "scripts/make_adapter_fixtures.py"})
    MF.write_json(ref_json, info)
