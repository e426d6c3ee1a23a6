"""Composites (PEFT add_weighted_adapter, exact and approximate) and the mixed-adapter batch for
make_adapter_fixtures.py, with a numpy re-implementation of PEFT's merge algorithms."""
import math
import os

from adapter_fixtures_lib import (ADIR, APPROX, CAT3, DENSITY, MF, MIXED, MIXED_SEED, MODEL_DIR,
                                  OUT, SUM_TT, WA_INPUTS, WA_WEIGHTS, case_info, f64_check,
                                  load_peft, log, lora_modules, save_adapter)


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
