#!/usr/bin/env python3
"""Reference fixtures for adapter handling on the tiny model (tests/fixtures/tiny/, made by
make_fixtures.py; this script reads it and never rewrites it).

    python3 scripts/make_adapter_fixtures.py                   # both stages
    python3 scripts/make_adapter_fixtures.py --stage hf        # PEFT part (.venv-fixtures)
    python3 scripts/make_adapter_fixtures.py --stage llamacpp  # llama.cpp part (.venv-llamacpp)

Stage "hf" (torch + transformers + PEFT, pinned in scripts/pyvenv.py) writes
  adapters/<name>/            PEFT save_pretrained output (adapter_config.json +
                              adapter_model.safetensors, or .bin for refuse_pickle):
                              coverage adapters (rank/alpha patterns, regex targets, layer subset,
                              exclude_modules, adapter-named keys, float16 tensors), two same-shape
                              inputs t_a/t_b, the approximate add_weighted_adapter composites
                              (wa_*), and adapters a loader must refuse (refuse_*)
  adapters_reference.safetensors  float32 logits [len(p0), vocab] named logits.<case>, plus
                              logits.mixed.row<i> for a 4-row mixed-adapter batch
  adapters_reference.json     what each case is, PEFT's per-module r/alpha/scale, logit deltas
                              vs base, cross-checks, the composite algorithms, PEFT's verdict on
                              each refused adapter
  gguf_lora/{r8_qv,r4_rslora_all}.gguf  GGUF LoRA made by shared/peers/hf_to_gguf.py
Stage "llamacpp" (llama-cpp-python) adds logits.gguf_lora.<name> (llama.cpp on tiny-f16.gguf +
the LoRA at scale 1) and a "gguf_lora" section to the same two files.
Seeded and deterministic; the model, its adapters and reference files are checked byte-identical
before and after.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as MF  # noqa: E402
import pyvenv  # noqa: E402

OUT = MF.OUT
ADIR = os.path.join(OUT, "adapters")
GLDIR = os.path.join(OUT, "gguf_lora")
REF_ST = os.path.join(OUT, "adapters_reference.safetensors")
REF_JSON = os.path.join(OUT, "adapters_reference.json")
MODEL_DIR = os.path.join(OUT, "model")
SCRATCH = os.path.join(MF.BUILD, "adapters")
SEED = MF.SEED
MIN_DELTA = 1e-2
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]
PREFIX = "base_model.model."

# name, LoraConfig kwargs, saved dtype. lora_dropout 0, task CAUSAL_LM throughout.
COVERAGE = [
    ("pat_rank_alpha", dict(r=4, lora_alpha=8, target_modules="all-linear",
                            rank_pattern={"q_proj": 8, "model.layers.1.mlp.down_proj": 2,
                                          r"layers\.0\.mlp\.(gate|up)_proj": 6},
                            alpha_pattern={"v_proj": 32, "^model.layers.0.self_attn.o_proj": 3}),
     "float32"),
    ("regex_targets", dict(r=4, lora_alpha=8, target_modules=r".*\.(q_proj|up_proj)$"), "float32"),
    ("layers_subset", dict(r=4, lora_alpha=8, target_modules=QKVO, layers_to_transform=[1],
                           layers_pattern="layers"), "float32"),
    ("exclude", dict(r=2, lora_alpha=4, target_modules="all-linear", exclude_modules=["down_proj"]),
     "float32"),
    ("exclude_regex", dict(r=2, lora_alpha=4, target_modules="all-linear",
                           exclude_modules=r".*\.(down_proj|layers\.0\.mlp\.up_proj)"), "float32"),
    ("f16_tensors", dict(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"]), "float16"),
    # same rank and targets (what PEFT's linear-family combinations require), different alpha
    ("t_a", dict(r=4, lora_alpha=8, target_modules=QKVO), "float32"),
    ("t_b", dict(r=4, lora_alpha=4, target_modules=QKVO), "float32"),
]
NAMED_DEFAULT = ("named_default", "r8_qv")
L1 = dict(layers_to_transform=[1])  # keep the refused ones tiny: layer 1 only
# name, LoraConfig kwargs, save_pretrained kwargs, why a loader must refuse it
REFUSED = [
    ("refuse_dora", dict(r=2, lora_alpha=4, target_modules=["q_proj"], use_dora=True, **L1), {},
     "use_dora: true; tensors include <module>.lora_magnitude_vector (DoRA, not plain LoRA)"),
    ("refuse_modules_to_save", dict(r=2, lora_alpha=4, target_modules=["q_proj"],
                                    modules_to_save=["lm_head"], **L1), {},
     "modules_to_save: [lm_head]; a full replacement base_model.model.lm_head.weight [384,256]"),
    ("refuse_lm_head", dict(r=2, lora_alpha=4, target_modules=["q_proj", "lm_head"]),
     dict(save_embedding_layers=False),
     "LoRA on lm_head (base_model.model.lm_head.lora_A/B.weight)"),
    ("refuse_embedding", dict(r=2, lora_alpha=4, target_modules=["embed_tokens"]),
     dict(save_embedding_layers=False),
     "LoRA on embed_tokens: lora_embedding_A [r, vocab] / lora_embedding_B [hidden, r]"),
    ("refuse_bias", dict(r=2, lora_alpha=4, target_modules=["q_proj"], lora_bias=True, **L1), {},
     "lora_bias: true; tensor <module>.lora_B.bias [out]"),
    ("refuse_bias_lora_only", dict(r=2, lora_alpha=4, target_modules=["q_proj"], bias="lora_only",
                                   **L1), {},
     "bias: lora_only (trains the targeted modules' base biases). This Llama has no biases, so "
     "PEFT saved no bias tensor: only the config says it; on a model with q/k/v biases (Qwen2) "
     "the file would carry replacement biases"),
    ("refuse_pickle", dict(r=2, lora_alpha=4, target_modules=["q_proj"], **L1),
     dict(safe_serialization=False), "adapter_model.bin only (torch pickle), no safetensors"),
    ("refuse_pissa", dict(r=2, lora_alpha=4, target_modules=["q_proj"], init_lora_weights="pissa",
                          **L1), {},
     "init_lora_weights: pissa; saved without path_initial_model_for_weight_conversion, so A/B "
     "belong to PEFT's residual base W - s*B0@A0, not to the original base weights"),
    ("refuse_missing_module", dict(r=2, lora_alpha=4, target_modules=["q_proj"]), {},
     "layer-1 tensors renamed to model.layers.1.self_attn.qkv_proj.lora_A/B.weight (a module "
     "Llama does not have; target_modules [q_proj, qkv_proj]); layer 0 q_proj is valid"),
    ("refuse_rank_mismatch", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], **L1),
     {}, "adapter_config.json says r=8; the tensors have rank 4 (lora_A [4,256], lora_B [out,4])"),
]
# exact cat of three adapters with different targets and ranks; the first must not be rslora
CAT3 = ("cat3", [("r8_qv", 0.5), ("r16_mlp", 0.3), ("r4_rslora_all", -0.6)])
WA_INPUTS, WA_WEIGHTS, DENSITY = ["t_a", "t_b"], [0.7, 0.5], 0.5
# case, combination_type, extra kwargs, seed (torch.manual_seed right before the call)
APPROX = [
    ("wa_svd_r8", "svd", dict(svd_rank=8), SEED + 301),
    ("wa_svd_r4", "svd", dict(svd_rank=4), SEED + 302),
    ("wa_ties", "ties", dict(density=DENSITY), SEED + 303),
    ("wa_dare_linear", "dare_linear", dict(density=DENSITY), SEED + 304),
    ("wa_dare_ties", "dare_ties", dict(density=DENSITY), SEED + 305),
    ("wa_magnitude_prune", "magnitude_prune", dict(density=DENSITY), SEED + 306),
]
SUM_TT = ("sum_ta_tb", [("t_a", 0.7), ("t_b", 0.5)])
MIXED = ["__base__", "r8_qv", "r4_rslora_all", "r16_mlp"]
MIXED_SEED = SEED + 400
GGUF_LORAS = ["r8_qv", "r4_rslora_all"]

log = MF.log


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def protected_files():
    """Everything make_fixtures.py wrote: must stay byte-identical."""
    out = {}
    for root, _, names in os.walk(OUT):
        for n in names:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, OUT)
            if rel.startswith("adapters/"):
                if rel.split("/")[1] not in MF_ADAPTERS:
                    continue
            elif rel.startswith("gguf_lora/") or rel.startswith("adapters_reference."):
                continue
            out[rel] = MF.sha256_file(p)
    return out


MF_ADAPTERS = {n for n, *_ in MF.ADAPTERS} | {os.path.basename(MF.CAT_DIR)}


def new_paths():
    """Our outputs (relative to OUT), for the size report."""
    names = [n for n, *_ in COVERAGE] + [NAMED_DEFAULT[0]] + [n for n, *_ in REFUSED] + \
            [c for c, *_ in APPROX]
    paths = [f"adapters/{n}" for n in names] + ["gguf_lora", "adapters_reference.safetensors",
                                                 "adapters_reference.json"]
    return paths


def size_of(rel):
    p = os.path.join(OUT, rel)
    if os.path.isdir(p):
        return MF.tree_size(p)[0]
    return os.path.getsize(p) if os.path.exists(p) else 0


def short(name):
    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def lora_modules(pm, adapter):
    """{module: (module object)} for every LoRA layer holding `adapter`, HF module names."""
    from peft.tuners.lora import LoraLayer
    out = {}
    for n, m in pm.named_modules():
        if isinstance(m, LoraLayer) and (adapter in m.lora_A or adapter in m.lora_embedding_A):
            out[short(n)] = m
    return out


def module_table(pm, adapter):
    return {n: {"r": int(m.r[adapter]), "lora_alpha": float(m.lora_alpha[adapter]),
                "scale": float(m.scaling[adapter])} for n, m in lora_modules(pm, adapter).items()}


def boundary_tie(t, density):
    """True if magnitude pruning of t at `density` has a tie at its threshold (top-k ambiguous)."""
    import torch
    k = int(density * t.numel())
    v = torch.sort(t.abs().reshape(-1), descending=True).values
    return 0 < k < t.numel() and bool(v[k - 1] == v[k])


def randomize(pm, adapter, g, rnd, untie_density=None):
    """Random non-zero A and B, float16-exact (bfloat16-exact if rnd is bfloat16); B's std makes
    s*B@A*x ~10-30 % of W*x like make_fixtures.py. untie_density: redraw a tensor until magnitude
    pruning at that density has no tie at its threshold. Returns the number of redraws."""
    import torch
    redraws = 0
    for _, m in lora_modules(pm, adapter).items():
        r, s = m.r[adapter], m.scaling[adapter]
        b_std = 0.1 / (s * r ** 0.5)
        if adapter in m.lora_A:
            A, B = m.lora_A[adapter].weight, m.lora_B[adapter].weight
            a_std = 1.0 / A.shape[1] ** 0.5
        else:  # embedding: A [r, vocab] is indexed by token, B [hidden, r]
            A, B = m.lora_embedding_A[adapter], m.lora_embedding_B[adapter]
            a_std = 1.0
        with torch.no_grad():
            for P, std in ((A, a_std), (B, b_std)):
                while True:
                    v = (torch.randn(*P.shape, generator=g) * std).to(rnd).to(torch.float32)
                    if untie_density is None or not boundary_tie(v, untie_density):
                        break
                    redraws += 1
                P.copy_(v)
            if adapter in m.lora_B and m.lora_B[adapter].bias is not None:
                bb = m.lora_B[adapter].bias
                bb.copy_((torch.randn(*bb.shape, generator=g) * 0.05).to(rnd).to(torch.float32))
    return redraws


def tidy(d):
    """Keep adapter_config.json + the weights file; sorted config keys, base name fixed."""
    for n in os.listdir(d):
        if n not in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
            p = os.path.join(d, n)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    p = os.path.join(d, "adapter_config.json")
    c = json.load(open(p))
    c["base_model_name_or_path"] = "loradock-tiny"
    for k in ("target_modules", "exclude_modules"):
        if isinstance(c.get(k), list):
            c[k] = sorted(c[k])
    MF.write_json(p, dict(sorted(c.items())))
    return c


def edit_config(d, **kv):
    p = os.path.join(d, "adapter_config.json")
    c = json.load(open(p))
    c.update(kv)
    MF.write_json(p, dict(sorted(c.items())))


def new_peft(kwargs):
    from peft import LoraConfig, get_peft_model
    cfg = LoraConfig(lora_dropout=0.0, task_type="CAUSAL_LM", **kwargs)
    pm = get_peft_model(MF.load_base(MODEL_DIR), cfg)
    pm.peft_config["default"].base_model_name_or_path = "loradock-tiny"
    return pm


def save_adapter(pm, name, save_kw=None, adapter="default"):
    tmp = os.path.join(SCRATCH, "save", name)
    shutil.rmtree(tmp, ignore_errors=True)
    pm.save_pretrained(tmp, selected_adapters=[adapter], **(save_kw or {}))
    src = tmp if adapter == "default" else os.path.join(tmp, adapter)
    d = os.path.join(ADIR, name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.move(src, d)
    return tidy(d)


def load_peft(names, dirs=None):
    """Fresh base + adapters loaded from disk under their own names (first one active)."""
    import torch
    from peft import PeftModel
    dirs = dirs or {}
    path = lambda n: dirs.get(n, os.path.join(ADIR, n))  # noqa: E731
    pm = PeftModel.from_pretrained(MF.load_base(MODEL_DIR), path(names[0]), adapter_name=names[0])
    for n in names[1:]:
        pm.load_adapter(path(n), adapter_name=n)
    pm.set_adapter(names[0])
    pm.eval()
    for n, p in pm.named_parameters():
        assert p.dtype == torch.float32, (n, p.dtype)
    return pm


def merged64(pm, parts):
    """float64 base weights + sum over (adapter, weight) of weight * scale * B @ A, with A, B and
    the per-module scale taken from PEFT's loaded modules. Feeds MF.np_forward64."""
    import numpy as np
    from safetensors.numpy import load_file
    W = {k: v.astype(np.float64) for k, v in
         load_file(os.path.join(MODEL_DIR, "model.safetensors")).items()}
    for a, w in parts:
        for n, m in lora_modules(pm, a).items():
            A = m.lora_A[a].weight.detach().double().numpy()
            B = m.lora_B[a].weight.detach().double().numpy()
            W[n + ".weight"] += w * m.scaling[a] * (B @ A)
    return W


def f64_check(pm, parts, ids, ref):
    import numpy as np
    return float(np.abs(MF.np_forward64(merged64(pm, parts), ids) - ref).max())


def peft_pattern_rule(cfg, key):
    """Our reading of PEFT's rank/alpha lookup (peft.utils.other.get_pattern_key): the first key K
    of the pattern dict (file order) with re.match(r'(.*\\.)?(K)$', module_name) wins."""
    def pick(pat, default):
        for k, v in pat.items():
            if re.match(rf"(.*\.)?({k})$", key):
                return v
        return default
    r = pick(cfg.get("rank_pattern") or {}, cfg["r"])
    alpha = pick(cfg.get("alpha_pattern") or {}, cfg["lora_alpha"])
    return r, alpha


def peft_verdict(name):
    """What PEFT itself does with a refused adapter: load it and report errors/warnings."""
    from peft import PeftModel
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        try:
            pm = PeftModel.from_pretrained(MF.load_base(MODEL_DIR), os.path.join(ADIR, name))
            res = {"loads": True, "modules": sorted(lora_modules(pm, "default"))}
        except Exception as e:  # noqa: BLE001
            msg = " ".join(x.strip() for x in str(e).strip().splitlines()[:2])
            res = {"loads": False, "error": f"{type(e).__name__}: {msg[:400]}"}
    keep = [str(w.message).splitlines()[0][:300] for w in ws
            if "peft" in (w.filename or "") and "gradient_checkpointing" not in str(w.message)]
    if keep:
        res["warnings"] = sorted(set(keep))
    return res


def tensor_listing(d):
    out = {}
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        if f.endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(p, "pt") as s:
                for k in s.keys():
                    sl = s.get_slice(k)
                    out[k] = f"{sl.get_dtype()}{list(sl.get_shape())}"
        elif f.endswith(".bin"):
            import torch
            for k, v in torch.load(p, weights_only=True).items():
                out[k] = f"{str(v.dtype).replace('torch.', '')}{list(v.shape)}"
    return out


# ----------------------------------------------------------------------------------------------
# stage hf: adapters
# ----------------------------------------------------------------------------------------------

def make_coverage():
    import torch
    made = {}
    for k, (name, kw, dtype) in enumerate(COVERAGE):
        pm = new_peft(kw)
        g = torch.Generator().manual_seed(SEED + 200 + k)
        # t_a / t_b feed magnitude pruning at DENSITY: no tie at any threshold, so the kept set
        # is unique (torch.topk's choice among equal magnitudes is unspecified)
        redraws = randomize(pm, "default", g, torch.float16,
                            DENSITY if name in WA_INPUTS else None)
        table = module_table(pm, "default")
        if dtype == "float16":
            for m in lora_modules(pm, "default").values():
                m.lora_A["default"].to(torch.float16)
                m.lora_B["default"].to(torch.float16)
        cfg = save_adapter(pm, name)
        made[name] = {"kwargs": kw, "dtype": dtype, "table_at_creation": table,
                      "untie_redraws": redraws, "config": cfg}
        log(f"adapter {name}: {len(table)} LoRA modules, dtype {dtype}")
    return made


def make_named_default():
    """r8_qv with the adapter name in its tensor names, as some exporters write them."""
    from safetensors.torch import load_file, save_file
    name, src = NAMED_DEFAULT
    d = os.path.join(ADIR, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    shutil.copy(os.path.join(ADIR, src, "adapter_config.json"), d)
    t = load_file(os.path.join(ADIR, src, "adapter_model.safetensors"))
    t = {re.sub(r"\.lora_([AB])\.weight$", r".lora_\1.default.weight", k): v for k, v in t.items()}
    save_file(t, os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt"})


def make_refused():
    import torch
    from safetensors.torch import load_file, save_file
    out = {}
    for k, (name, kw, save_kw, why) in enumerate(REFUSED):
        pm = new_peft(kw)
        g = torch.Generator().manual_seed(SEED + 250 + k)
        randomize(pm, "default", g, torch.float16)
        pm.to(torch.float16)  # small files; the values are float16-exact anyway
        save_adapter(pm, name, save_kw)
        d = os.path.join(ADIR, name)
        if name == "refuse_missing_module":
            p = os.path.join(d, "adapter_model.safetensors")
            t = {k2.replace("layers.1.self_attn.q_proj.", "layers.1.self_attn.qkv_proj."): v
                 for k2, v in load_file(p).items()}
            save_file(t, p, metadata={"format": "pt"})
            edit_config(d, target_modules=["q_proj", "qkv_proj"])
        elif name == "refuse_rank_mismatch":
            edit_config(d, r=8)
        files = sorted(os.listdir(d))
        assert "adapter_model.bin" in files if name == "refuse_pickle" else \
            "adapter_model.safetensors" in files, (name, files)
        out[name] = {"path": f"adapters/{name}", "why_refused": why, "files": files,
                     "tensors": tensor_listing(d), "config_kwargs": kw,
                     "save_pretrained_kwargs": save_kw}
    for name in out:
        out[name]["peft_from_pretrained"] = peft_verdict(name)
        log(f"refused {name}: PEFT says {out[name]['peft_from_pretrained']}")
    return out


def case_info(pm, adapter, ids, base, logits, parts, expect_rule=True):
    """Per-module table, delta vs base, f64 cross-check; asserts the >= 1e-2 move."""
    import numpy as np
    table = module_table(pm, adapter)
    d = np.abs(logits - base)
    f64 = f64_check(pm, parts, ids, logits)
    assert d.max() >= MIN_DELTA, (adapter, d.max())
    assert f64 < 1e-4, (adapter, f64)
    e = {"lora_modules": table, "logit_delta_vs_base": {"max_abs": round(float(d.max()), 6),
                                                        "mean_abs": round(float(d.mean()), 6)},
         "float32_vs_numpy_float64_max_abs_diff": f64}
    if expect_rule:
        cfg = pm.peft_config[adapter]
        c = {"r": cfg.r, "lora_alpha": cfg.lora_alpha, "rank_pattern": cfg.rank_pattern,
             "alpha_pattern": cfg.alpha_pattern}
        for n, row in table.items():
            r, a = peft_pattern_rule(c, n)
            s = a / (math.sqrt(r) if cfg.use_rslora else r)
            assert (r, a, s) == (row["r"], row["lora_alpha"], row["scale"]), (adapter, n, r, a, row)
    return e


# ----------------------------------------------------------------------------------------------
# stage hf: composites
# ----------------------------------------------------------------------------------------------

def np_prune_mag(x, density):
    import numpy as np
    k = int(density * x.size)
    flat = np.abs(x).reshape(-1)
    order = np.argsort(-flat, kind="stable")
    assert k == 0 or k == x.size or flat[order[k - 1]] != flat[order[k]], "tie at threshold"
    keep = np.zeros(x.size, dtype=bool)
    keep[order[:k]] = True
    return x * keep.reshape(x.shape)


def np_disjoint(P, c):
    """TIES sign election on the (unweighted) pruned stack P, then mean of the weighted agreeing
    entries (zeros never count)."""
    import numpy as np
    maj = np.where(P.sum(0) >= 0, 1.0, -1.0)
    mask = np.sign(P) == maj
    return (P * c[:, None, None] * mask).sum(0) / np.maximum(mask.sum(0), 1)


def np_combine(kind, X, c, density, masks=None):
    """PEFT's merge_utils on one stack X[i] (the i-th input's lora_A or lora_B), weights c[i]."""
    import numpy as np
    if kind == "magnitude_prune":
        return sum(ci * np_prune_mag(x, density) for ci, x in zip(c, X))
    if kind == "ties":
        return np_disjoint(np.stack([np_prune_mag(x, density) for x in X]), c)
    P = np.stack([x * m / density for x, m in zip(X, masks)])  # DARE: random keep, rescale 1/d
    if kind == "dare_linear":
        return (P * c[:, None, None]).sum(0)
    if kind == "dare_ties":
        return np_disjoint(P, c)
    raise ValueError(kind)


def reimplement(pm, case, kind, kw, masks):
    """Independent numpy version of what PEFT did for each module: max abs diff to PEFT's A/B
    (or, for svd, of B@A to the rank-r truncated SVD of the weighted delta)."""
    import numpy as np
    worst = 0.0
    for n, m in lora_modules(pm, case).items():
        A = [m.lora_A[a].weight.detach().double().numpy() for a in WA_INPUTS]
        B = [m.lora_B[a].weight.detach().double().numpy() for a in WA_INPUTS]
        ws = [w * m.scaling[a] for a, w in zip(WA_INPUTS, WA_WEIGHTS)]
        nA = m.lora_A[case].weight.detach().double().numpy()
        nB = m.lora_B[case].weight.detach().double().numpy()
        if kind == "svd":
            D = sum(w * (b @ a) for w, a, b in zip(ws, A, B))
            U, S, Vh = np.linalg.svd(D)
            r = kw["svd_rank"]
            worst = max(worst, float(np.abs(nB @ nA - (U[:, :r] * S[:r]) @ Vh[:r]).max()))
            continue
        cA = np.array([math.copysign(math.sqrt(abs(w)), w) for w in ws])
        cB = np.array([math.sqrt(abs(w)) for w in ws])
        mk = masks.get(n) if masks else None
        eA = np_combine(kind, A, cA, DENSITY, mk and mk["A"])
        eB = np_combine(kind, B, cB, DENSITY, mk and mk["B"])
        worst = max(worst, float(np.abs(eA - nA).max()), float(np.abs(eB - nB).max()))
    return worst


def record_dare_masks(pm, case, calls):
    """Map the recorded torch.bernoulli keep-masks to modules: PEFT walks the LoRA modules in
    named_modules order, lora_A then lora_B, inputs in order."""
    out, i = {}, 0
    for n in lora_modules(pm, case):
        out[n] = {}
        for ab in ("A", "B"):
            out[n][ab] = [calls[i + j].numpy() for j in range(len(WA_INPUTS))]
            i += len(WA_INPUTS)
    assert i == len(calls), (i, len(calls))
    return out


def make_composites(ids, base, tensors, cases):
    import numpy as np
    import torch
    import peft.utils.merge_utils as MU
    comp = {}
    # exact 3-way cat
    cname, parts = CAT3
    names = [n for n, _ in parts]
    pm = load_peft(names)
    pm.add_weighted_adapter(names, [w for _, w in parts], cname, combination_type="cat")
    pm.set_adapter(cname)
    lg = MF.logits_of(pm, ids)
    tensors[f"logits.{cname}"] = lg
    e = case_info(pm, cname, ids, base, lg, [(cname, 1.0)], expect_rule=False)
    pc = pm.peft_config[cname]
    by_parts = MF.logits_of(MF.sum_by_parts(MODEL_DIR, ADIR, parts), ids)
    e.update({"kind": "exact", "combination_type": "cat", "inputs": parts,
              "new_adapter": {"r": pc.r, "lora_alpha": pc.lora_alpha, "use_rslora": pc.use_rslora,
                              "target_modules": sorted(pc.target_modules)},
              "saved": None,
              "cross_checks_max_abs_diff": {
                  "parts_all_active_B_scaled_by_weight": float(np.abs(by_parts - lg).max()),
                  "numpy_float64_on_W_plus_sum_w_s_BA": f64_check(pm, parts, ids, lg)}})
    assert max(e["cross_checks_max_abs_diff"].values()) < 1e-4, e["cross_checks_max_abs_diff"]
    del pm
    # the pitfall: rslora adapter first -> PEFT copies its config (use_rslora) into the cat
    bad = [parts[2], parts[0], parts[1]]
    pm = load_peft([n for n, _ in bad])
    pm.add_weighted_adapter([n for n, _ in bad], [w for _, w in bad], "bad", combination_type="cat")
    pm.set_adapter("bad")
    e["pitfall_rslora_first"] = {
        "order": bad, "new_use_rslora": pm.peft_config["bad"].use_rslora,
        "new_scale": float(next(iter(lora_modules(pm, "bad").values())).scaling["bad"]),
        "max_abs_diff_vs_correct": float(np.abs(MF.logits_of(pm, ids) - lg).max()),
        "note": "add_weighted_adapter copies the FIRST input's LoraConfig (replace(config, r=R, "
                "lora_alpha=R)), so with an rslora adapter first the cat gets scale R/sqrt(R) = "
                "sqrt(R) instead of 1: the result is wrong. Order the inputs so the first is not "
                "rslora (the case above)."}
    comp[cname] = e
    cases.append(cname)
    del pm
    log(f"{cname}: delta {e['logit_delta_vs_base']}, checks {e['cross_checks_max_abs_diff']}, "
        f"rslora-first pitfall diff {e['pitfall_rslora_first']['max_abs_diff_vs_correct']:.3f}")

    # exact weighted sum of t_a, t_b (what the approximate ones approximate)
    pm = load_peft(WA_INPUTS)
    sname, sparts = SUM_TT
    sum_l = MF.logits_of(MF.sum_by_parts(MODEL_DIR, ADIR, sparts), ids)
    tensors[f"logits.{sname}"] = sum_l
    e = case_info(pm, WA_INPUTS[0], ids, base, sum_l, sparts, expect_rule=False)
    e.pop("lora_modules")
    e.update({"kind": "exact", "inputs": sparts,
              "computed_with": "PEFT, t_a and t_b both active (set_adapter([t_a, t_b])), each "
                               "lora_B multiplied by its weight"})
    comp[sname] = e
    cases.append(sname)

    orig_rp = MU.random_pruning
    for case, kind, kw, seed in APPROX:
        calls = []

        def rec(tensor, density, rescale, _calls=calls):
            out = orig_rp(tensor, density, rescale)
            assert bool((tensor != 0).all())
            _calls.append((out != 0).cpu())
            return out
        MU.random_pruning = rec
        try:
            torch.manual_seed(seed)
            pm.add_weighted_adapter(WA_INPUTS, WA_WEIGHTS, case, combination_type=kind, **kw)
        finally:
            MU.random_pruning = orig_rp
        pm.set_adapter(case)
        lg_mem = MF.logits_of(pm, ids)
        masks = record_dare_masks(pm, case, calls) if kind.startswith("dare") else None
        diff_impl = reimplement(pm, case, kind, kw, masks)
        assert diff_impl < 1e-6, (case, diff_impl)
        save_adapter(pm, case, adapter=case)
        pc = pm.peft_config[case]
        saved = load_peft([case])
        lg = MF.logits_of(saved, ids)
        mem_diff = float(np.abs(lg - lg_mem).max())  # views (svd) multiply with other strides
        assert mem_diff < 1e-5, (case, mem_diff)
        tensors[f"logits.{case}"] = lg
        e = case_info(saved, case, ids, base, lg, [(case, 1.0)], expect_rule=False)
        e.update({"kind": "approximate" if kind != "svd" or kw["svd_rank"] < 8 else
                  "exact up to float rounding (rank of the sum <= 4 + 4 = svd_rank)",
                  "combination_type": kind, "inputs": list(zip(WA_INPUTS, WA_WEIGHTS)),
                  "add_weighted_adapter_kwargs": kw, "torch_manual_seed": seed,
                  "saved": f"adapters/{case}",
                  "new_adapter": {"r": pc.r, "lora_alpha": pc.lora_alpha,
                                  "use_rslora": pc.use_rslora,
                                  "target_modules": sorted(pc.target_modules)},
                  "max_abs_diff_vs_exact_sum_ta_tb": float(np.abs(lg - sum_l).max()),
                  "numpy_reimplementation_max_abs_diff": diff_impl,
                  "saved_and_reloaded_vs_in_memory_max_abs_diff": mem_diff})
        if kind == "svd":
            e["svd_defaults"] = {"svd_clamp": None, "svd_full_matrices": True, "svd_driver": None}
        if masks:
            kept = [float(x.mean()) for mm in masks.values() for ab in mm.values() for x in ab]
            e["dare_keep_fraction"] = {"min": round(min(kept), 4), "max": round(max(kept), 4),
                                       "mean": round(float(np.mean(kept)), 4)}
        comp[case] = e
        cases.append(case)
        log(f"{case}: delta {e['logit_delta_vs_base']}, vs exact sum "
            f"{e['max_abs_diff_vs_exact_sum_ta_tb']:.4f}, numpy reimpl {diff_impl:.2e}")
    return comp


def make_mixed(ids0, tensors):
    import numpy as np
    import torch
    rng = np.random.default_rng(MIXED_SEED)
    rows = [list(ids0)] + [[ids0[0]] + rng.integers(len(MF.SPECIALS), MF.VOCAB,
                                                    size=len(ids0) - 1).tolist() for _ in range(3)]
    pm = load_peft([n for n in MIXED if n != "__base__"])
    with torch.no_grad():
        out = pm(input_ids=torch.tensor(rows), adapter_names=MIXED).logits.numpy()
    diffs = []
    for i, (row, a) in enumerate(zip(rows, MIXED)):
        tensors[f"logits.mixed.row{i}"] = out[i].copy()
        if a == "__base__":
            with pm.disable_adapter():
                alone = MF.logits_of(pm, row)
        else:
            pm.set_adapter(a)
            alone = MF.logits_of(pm, row)
        diffs.append(float(np.abs(alone - out[i]).max()))
    assert max(diffs) < 1e-5, diffs
    from safetensors.numpy import load_file
    row0 = float(np.abs(out[0] - load_file(os.path.join(OUT, "reference.safetensors"))["logits.p0.base"]).max())
    assert row0 == 0.0, row0
    return {"row0_vs_reference_p0_base_max_abs_diff": row0,
            "rows": [{"row": i, "ids": r, "adapter": a} for i, (r, a) in enumerate(zip(rows, MIXED))],
            "how": "one PeftModel holding r8_qv, r4_rslora_all, r16_mlp (loaded from adapters/); "
                   "model(input_ids=[4, len], adapter_names=[...]) in one forward; '__base__' = no "
                   "adapter. All rows have p0's length (no padding). Row 0 is p0; rows 1-3 are "
                   f"BOS + ids from numpy default_rng({MIXED_SEED}).integers(4, {MF.VOCAB})",
            "tensors": [f"logits.mixed.row{i}" for i in range(len(rows))],
            "row_alone_max_abs_diff": diffs}


ALGORITHMS = {
    "source": "peft 0.21.2: LoraModel.add_weighted_adapter, _check_add_weighted_adapter, "
              "_generalized_task_arithmetic_weighted_adapter, _svd_generalized_task_arithmetic_"
              "weighted_adapter (peft/tuners/lora/model.py) and peft/utils/merge_utils.py; every "
              "statement below is asserted by a numpy re-implementation "
              "(numpy_reimplementation_max_abs_diff)",
    "new_adapter_config": "replace(config of the FIRST input, r=R, lora_alpha=R, target_modules="
                          "union of the inputs' target sets (regex strings: '(t1)|(t2)'), "
                          "rank_pattern={}, alpha_pattern={}); everything else (use_rslora, "
                          "use_dora, ...) is the first input's. So the new scale is R/R = 1, or "
                          "sqrt(R) if the first input is rslora (a bug for cat/svd/...). R: cat = "
                          "sum of ranks; svd = svd_rank or max rank; linear/ties/dare_*/"
                          "magnitude_prune = the common rank (all inputs must have the same r, "
                          "else ValueError). Per module only the inputs that have LoRA on that "
                          "module take part; the new adapter is injected on the union.",
    "cat": "A' = concat_rows(w_i * s_i * A_i), B' = concat_cols(B_i) (zero-padded up to R where an "
           "input lacks the module): B'A' = sum_i w_i s_i B_i A_i exactly.",
    "svd": "D = sum_i w_i * get_delta_weight(i) = sum_i w_i s_i B_i A_i (float32); U,S,Vh = "
           "torch.linalg.svd(D, full_matrices=True, driver=None); B' = U[:, :R] @ diag(S[:R]), "
           "A' = Vh[:R]; svd_clamp=None -> no clamping (else both clamped to +-quantile(|[U,Vh]|, "
           "clamp)). B'A' is the best rank-R approximation of D; exact when R >= rank(D).",
    "linear_family": "ties, dare_linear, dare_ties, magnitude_prune (and linear) work on A and B "
                     "SEPARATELY, never on B@A: for each module, c_i = w_i * s_i, A' = "
                     "merge([A_i], weights sign(c_i)*sqrt(|c_i|)), B' = merge([B_i], weights "
                     "sqrt(|c_i|)) (the sign goes on A only). B'A' then contains cross terms "
                     "B_i A_j (i != j), which is why these are approximate even at density 1.",
    "magnitude_prune": "merge(X, c) = sum_i c_i * prune(X_i): prune keeps the k = int(density * "
                       "numel) entries of largest |x| of each X_i (torch.topk; ties at the "
                       "threshold would be unspecified: t_a/t_b were drawn without any), others 0. "
                       "Pruning sees the unweighted X_i.",
    "ties": "P_i = prune(X_i) as above; majority sign per entry = +1 if sum_i P_i >= 0 else -1 "
            "(majority_sign_method 'total', on the UNWEIGHTED pruned tensors); keep_i = (sign(P_i) "
            "== majority) (zeros never kept); merged = sum_i c_i P_i keep_i / max(sum_i keep_i, 1).",
    "dare_linear": "P_i = X_i * M_i / density, M_i = torch.bernoulli(full_like(X_i, density)) "
                   "(global torch RNG); merged = sum_i c_i P_i.",
    "dare_ties": "P_i as in dare_linear, then the ties sign election and disjoint mean: merged = "
                 "sum_i c_i P_i keep_i / max(sum_i keep_i, 1).",
    "dare_rng": "torch.manual_seed(seed) right before add_weighted_adapter; inject_adapter first "
                "initializes the new adapter's LoRA layers (kaiming_uniform_ on lora_A: draws from "
                "the global generator), then the bernoulli masks are drawn module by module in "
                "named_modules order, lora_A before lora_B, inputs in order. Not reproducible "
                "outside torch: compare with the saved adapters/wa_dare_* weights.",
}


def stage_hf():
    import numpy as np
    import peft
    import safetensors
    import torch
    import transformers
    from safetensors.numpy import load_file, save_file
    import adapter_fixtures_gguf as AG
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # base_model_name_or_path is not a hub id
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    before = protected_files()
    os.makedirs(SCRATCH, exist_ok=True)
    for rel in new_paths():
        p = os.path.join(OUT, rel)
        shutil.rmtree(p) if os.path.isdir(p) else (os.remove(p) if os.path.exists(p) else None)
    ref = json.load(open(os.path.join(OUT, "reference.json")))
    p0 = ref["prompts"][0]
    ids = p0["ids"]
    R = load_file(os.path.join(OUT, "reference.safetensors"))
    base = R["logits.p0.base"]
    assert float(np.abs(MF.logits_of(MF.load_base(MODEL_DIR), ids) - base).max()) == 0.0, \
        "this environment does not reproduce reference.safetensors"

    made = make_coverage()
    make_named_default()
    refused = make_refused()

    tensors, adapters, cases = {}, {}, []
    for name in [n for n, *_ in COVERAGE] + [NAMED_DEFAULT[0]]:
        # adapter name "default" as PeftModel.from_pretrained uses: named_default's keys only
        # load under that name (see its created_with)
        pm = load_peft(["default"], {"default": os.path.join(ADIR, name)})
        lg = MF.logits_of(pm, ids)
        tensors[f"logits.{name}"] = lg
        e = case_info(pm, "default", ids, base, lg, [("default", 1.0)])
        cfg = json.load(open(os.path.join(ADIR, name, "adapter_config.json")))
        e = {"path": f"adapters/{name}",
             "config": {k: cfg[k] for k in ("r", "lora_alpha", "use_rslora", "target_modules",
                                            "exclude_modules", "layers_to_transform",
                                            "layers_pattern", "rank_pattern", "alpha_pattern")},
             "tensors": tensor_listing(os.path.join(ADIR, name)), **e}
        if name in made:
            assert e["lora_modules"] == made[name]["table_at_creation"], name
            e["created_with"] = {"LoraConfig": made[name]["kwargs"], "saved_dtype": made[name]["dtype"]}
            if made[name]["untie_redraws"]:
                e["created_with"]["magnitude_threshold_tie_redraws"] = made[name]["untie_redraws"]
        else:
            d = float(np.abs(lg - R["logits.p0." + NAMED_DEFAULT[1]]).max())
            assert d == 0.0, d
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                other = MF.logits_of(load_peft([name]), ids)
            other_name_diff = float(np.abs(other - lg).max())
            assert float(np.abs(other - base).max()) == 0.0
            e["created_with"] = (f"adapters/{NAMED_DEFAULT[1]} with every key renamed "
                                 "'.lora_A.weight' -> '.lora_A.default.weight' (same for B); PEFT "
                                 "loads it, logits identical to reference.safetensors "
                                 f"logits.p0.{NAMED_DEFAULT[1]} (max abs diff {d}). PEFT maps "
                                 "checkpoint keys to its parameter names and passes unknown keys "
                                 "through, so these keys only load when the adapter is loaded under "
                                 "the name 'default' (PeftModel.from_pretrained's default): then "
                                 "they equal its parameter names. Under any other adapter name PEFT "
                                 "only warns 'Found missing adapter keys' and leaves lora_B = 0 "
                                 "(base output), max abs diff to r8_qv then "
                                 f"{other_name_diff:.3f}")
        adapters[name] = e
        cases.append(name)
        log(f"{name}: delta {e['logit_delta_vs_base']}, f64 {e['float32_vs_numpy_float64_max_abs_diff']:.2e}")
    adapters["pat_rank_alpha"]["pattern_rule"] = (
        "PEFT (peft.utils.other.get_pattern_key): for a module named e.g. "
        "'model.layers.0.self_attn.o_proj' (no 'base_model.model.' prefix), r = rank_pattern[K] "
        "for the FIRST key K in file order with re.match(r'(.*\\.)?(K)$', name), else r; the same "
        "for alpha_pattern/lora_alpha, independently. So keys are regexes matched at a dot "
        "boundary up to the end of the name: 'q_proj' matches every q_proj, "
        "'^model.layers.0.self_attn.o_proj' and 'layers\\.0\\.mlp\\.(gate|up)_proj' only match "
        "as regexes (a plain suffix test would miss them). scale = alpha / r (alpha / sqrt(r) "
        "with use_rslora). lora_modules lists what PEFT built; asserted equal to this rule.")
    adapters["exclude"]["note"] = (
        "saved target_modules is 'all-linear' expanded by PEFT to the 14 full module names "
        "(lm_head excluded), INCLUDING the excluded down_proj: a loader must apply "
        "exclude_modules itself. List semantics: a module is excluded if its name equals an "
        "entry or ends with '.' + entry (like target_modules lists).")
    adapters["exclude_regex"]["note"] = (
        "exclude_modules as a string: re.fullmatch(exclude_modules, module_name) excludes it "
        "(checked before targets). target_modules again the expanded 14-name list.")
    adapters["regex_targets"]["note"] = (
        "target_modules as a string: re.fullmatch(target_modules, module_name) (module names "
        "like 'model.layers.0.self_attn.q_proj'); layers_to_transform is not allowed with it.")
    adapters["layers_subset"]["note"] = (
        "layers_to_transform [1] with layers_pattern 'layers': a module is targeted if its name "
        "ends with '.<target>' AND re.match(r'(?:^|.*?\\.)layers\\.(?P<idx>\\d+)\\.', name) "
        "gives an index in the list (first numbered segment after 'layers').")
    adapters["f16_tensors"]["note"] = ("tensors stored as F16; PEFT (autocast_adapter_dtype) "
                                       "computes in float32 after loading")

    comp = make_composites(ids, base, tensors, cases)
    mixed = make_mixed(ids, tensors)
    gg = AG.convert(ADIR, GLDIR, SCRATCH, GGUF_LORAS)

    save_file(tensors, REF_ST, metadata={"generator": "scripts/make_adapter_fixtures.py"})
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__, "peft": peft.__version__,
                "safetensors": safetensors.__version__, "numpy": np.__version__,
                "gguf": MF._pkg_version("gguf")}
    info = {
        "generator": "scripts/make_adapter_fixtures.py (stage hf; stage llamacpp adds "
                     "gguf_lora.llamacpp_run, gguf_lora.files.*.llamacpp, logits.gguf_lora.*)",
        "versions": versions,
        "model_dir": "model",
        "prompt": {"name": p0["name"], "ids": ids, "text": p0["text"]},
        "compute": "as reference.json: transformers LlamaForCausalLM float32, eager attention, "
                   "CPU, full-sequence forward; PEFT LoRA unmerged, adapters loaded from the "
                   "committed files (PeftModel.from_pretrained / load_adapter)",
        "tensor_naming": {
            "logits.<case>": "float32 [len(p0), vocab] for prompt p0 of reference.json; row i = "
                             "logits after token i. <case> = an adapter under adapters/ at weight "
                             "1, or a composite (see composites)",
            "logits.mixed.row<i>": "row i of the mixed-adapter batch (see mixed_batch)",
            "logits.gguf_lora.<name>": "llama.cpp on gguf/tiny-f16.gguf + gguf_lora/<name>.gguf at "
                                       "scale 1 (see gguf_lora)"},
        "base_reference": "reference.safetensors logits.p0.base (this script checks it reproduces "
                          "it exactly); r8_qv, r4_rslora_all, r16_mlp, r2_ko alone and the exact "
                          "cat sum_r8qv0.7_r16mlp-0.4 (adapters/cat_r8qv0.7_r16mlp-0.4) are in "
                          "reference.safetensors as logits.p0.<name>",
        "cases": cases,
        "adapters": adapters,
        "composites": comp,
        "composite_algorithms": ALGORITHMS,
        "mixed_batch": mixed,
        "refused": refused,
        "refused_note": "Every refuse_* adapter: PEFT save_pretrained output, random non-zero "
                        "float16-exact A/B (PiSSA too: not its SVD init), module weights cast to "
                        "float16 before saving (small files), then the listed edit if any. "
                        "No logits: a loader should reject each with an error. "
                        "peft_from_pretrained is what PEFT 0.21.2 itself does with the file: it "
                        "loads all but refuse_rank_mismatch, refuse_missing_module only with a "
                        "'missing adapter keys' warning (layer 1 q_proj left at B = 0, the "
                        "qkv_proj tensors silently ignored).",
        "gguf_lora": {"files": gg, "layout": (
            "GGUF v3, general.architecture 'llama', general.type 'adapter', general.name = "
            "adapter dir name, adapter.type 'lora', adapter.lora.alpha float32. Tensors per "
            "targeted module: blk.<i>.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|"
            "ffn_down>.weight.lora_a, numpy [r, in] = GGUF ne [in, r], and .lora_b, numpy [out, r] "
            "= ne [r, out], F16. lora_b rows of attn_q/attn_k are permuted like the base "
            "weights (convert_hf_to_gguf.py's q/k permutation; k with n_head_kv) so B@A matches "
            "the permuted base; lora_a is not permuted. llama.cpp: y += user_scale * (alpha / r) "
            "* B (A x), r = lora_a's row count (alpha 0 means scale = user_scale).")},
        "tolerance": {"logits_abs": 1e-4, "note": "float32 references, as reference.json; "
                      "logits.gguf_lora.* are llama.cpp's (F16 activations): compare loosely"},
        "min_logit_delta_vs_base_asserted": MIN_DELTA,
    }
    MF.write_json(REF_JSON, info)
    after = protected_files()
    assert before == after, sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    log(f"{len(before)} make_fixtures.py files unchanged (sha256)")
    log("hf stage done")


def report():
    total = 0
    for rel in new_paths():
        p = os.path.join(OUT, rel)
        if os.path.isdir(p):
            for f, sz in MF.tree_size(p)[1]:
                log(f"{sz:>9}  tests/fixtures/tiny/{rel}/{f}")
        elif os.path.exists(p):
            log(f"{os.path.getsize(p):>9}  tests/fixtures/tiny/{rel}")
        total += size_of(rel)
    log(f"new adapter fixtures: {total} bytes ({total / 2**20:.2f} MiB)")
    if total > 2 * 2**20:
        log("WARNING: over the 2 MiB budget")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=["all", "hf", "llamacpp"], default="all")
    a = ap.parse_args()
    if a.stage in ("all", "hf"):
        pyvenv.reexec_in(".venv-fixtures", pyvenv.FIXTURE_PINS)
        stage_hf()
        if a.stage == "all":
            py = pyvenv.ensure_venv(".venv-llamacpp", pyvenv.LLAMACPP_PINS)
            env = dict(os.environ, PYTHONHASHSEED="0")
            subprocess.check_call([py, os.path.abspath(__file__), "--stage", "llamacpp"], env=env)
            return
    else:
        pyvenv.reexec_in(".venv-llamacpp", pyvenv.LLAMACPP_PINS)
        import adapter_fixtures_gguf as AG
        AG.stage_llamacpp(REF_JSON, REF_ST, SCRATCH)
    report()


if __name__ == "__main__":
    main()
