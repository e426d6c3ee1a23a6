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
import json
import os
import re
import shutil
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyvenv  # noqa: E402
from adapter_fixtures_compose import ALGORITHMS, make_composites, make_mixed  # noqa: E402
from adapter_fixtures_lib import (ADIR, COVERAGE, DENSITY, GGUF_LORAS, GLDIR, MF,  # noqa: E402
                                  MIN_DELTA, MODEL_DIR, NAMED_DEFAULT, OUT, REF_JSON, REF_ST,
                                  REFUSED, SCRATCH, SEED, WA_INPUTS, case_info, edit_config,
                                  load_peft, log, lora_modules, module_table, new_paths, new_peft,
                                  peft_verdict, protected_files, randomize, save_adapter, size_of,
                                  tensor_listing)

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
        "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
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


def stage_llamacpp():
    import adapter_fixtures_gguf as AG
    AG.stage_llamacpp(REF_JSON, REF_ST, SCRATCH)


def main():
    pyvenv.two_stage_main(__doc__, __file__, stage_hf, stage_llamacpp, report)


if __name__ == "__main__":
    main()
