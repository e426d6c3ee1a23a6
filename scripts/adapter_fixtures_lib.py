"""Shared pieces of make_adapter_fixtures.py (paths, what each fixture is, PEFT helpers).
torch, transformers and peft are imported inside the functions (stage hf, .venv-fixtures)."""
import json
import math
import os
import re
import shutil
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as MF  # noqa: E402

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
