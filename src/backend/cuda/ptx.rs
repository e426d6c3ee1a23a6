//! The kernels' PTX, compiled from `kernels/*.cu` by `scripts/build_ptx.py` (NVRTC 13.0 from
//! PyPI, `compute_90`) and embedded here. CI recompiles the sources and fails when a committed
//! `.ptx` is stale, so what is embedded is always what the sources say.

/// `(module, PTX text, kernels the host launches from it)`.
pub const MODULES: [(&str, &str, &[&str]); 5] = [
    (
        "matvec",
        include_str!("../../../kernels/ptx/matvec.ptx"),
        &[
            "matvec_f16",
            "matvec_bf16",
            "matvec_q8_0",
            "matvec_q4_0",
            "matvec_q4_1",
            "dequant_q8_0_f16",
            "dequant_q4_0_f16",
            "dequant_q4_1_f16",
            "bf16_to_f16",
            "f32_to_f16",
            "f16_to_f32",
        ],
    ),
    (
        "norm",
        include_str!("../../../kernels/ptx/norm.ptx"),
        &["rmsnorm", "rope", "silu_mul", "add_inplace", "embed_f16", "embed_q8_0"],
    ),
    (
        "attention",
        include_str!("../../../kernels/ptx/attention.ptx"),
        &[
            "kv_append_f16",
            "kv_append_i8",
            "attn_decode_f16",
            "attn_decode_i8",
            "attn_prefill_f16",
            "attn_prefill_i8",
        ],
    ),
    ("lora", include_str!("../../../kernels/ptx/lora.ptx"), &["lora_shrink", "lora_expand"]),
    ("sampling", include_str!("../../../kernels/ptx/sampling.ptx"), &["argmax_rows", "scale_logits"]),
];

/// The `.entry` names a PTX module defines.
pub fn entries(ptx: &str) -> Vec<&str> {
    ptx.lines()
        .filter_map(|l| {
            l.trim_start().strip_prefix(".visible .entry ").or_else(|| l.trim_start().strip_prefix(".entry "))
        })
        .map(|rest| rest.split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or(""))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_launched_kernel_is_in_its_module() {
        for (module, ptx, kernels) in MODULES {
            let have = entries(ptx);
            for k in kernels {
                assert!(have.contains(k), "kernels/ptx/{module}.ptx has no entry {k} (it has {have:?})");
            }
        }
    }

    #[test]
    fn ptx_targets_hopper_with_cuda_13_isa() {
        for (module, ptx, _) in MODULES {
            assert!(ptx.lines().any(|l| l.trim() == ".target sm_90"), "{module}.ptx is not for sm_90");
            let version =
                ptx.lines().find_map(|l| l.trim().strip_prefix(".version ")).expect("a .version line");
            let (major, minor) = version.split_once('.').expect("major.minor");
            let v: (u32, u32) = (major.parse().unwrap(), minor.parse().unwrap());
            // A CUDA 13.0 driver loads PTX ISA 9.0 and older; newer PTX would be refused.
            assert!(v <= (9, 0), "{module}.ptx is PTX ISA {version}, newer than CUDA 13.0 loads");
        }
    }
}
