//! Rotary position embeddings in the Hugging Face layout (each head's first half rotates with
//! its second half), with Llama 3, linear and per-frequency-factor scaling.

use super::config::{LlamaConfig, RopeScaling};

/// Inverse frequencies `θ^(−2i/d)` for `i < d/2`, after scaling.
pub(crate) fn inv_freq(cfg: &LlamaConfig) -> Vec<f32> {
    let d = cfg.head_dim;
    let base: Vec<f32> = (0..d / 2).map(|i| 1.0 / cfg.rope_theta.powf((2 * i) as f32 / d as f32)).collect();
    match &cfg.rope_scaling {
        None => base,
        Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
        Some(RopeScaling::Factors(fs)) => base.iter().zip(fs).map(|(f, s)| f / s).collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let low_wavelen = original_max_position_embeddings / low_freq_factor;
            let high_wavelen = original_max_position_embeddings / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (original_max_position_embeddings / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// Fill `cos`/`sin` (each `d/2` long) for position `pos`.
pub(crate) fn angles(inv_freq: &[f32], pos: usize, cos: &mut [f32], sin: &mut [f32]) {
    for ((c, s), f) in cos.iter_mut().zip(sin.iter_mut()).zip(inv_freq) {
        let a = pos as f32 * f;
        *c = a.cos();
        *s = a.sin();
    }
}

/// Rotate one head vector in place (HF `rotate_half` convention).
#[inline]
pub(crate) fn apply(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = x.len() / 2;
    let (a, b) = x.split_at_mut(half);
    for i in 0..half {
        let (x0, x1) = (a[i], b[i]);
        a[i] = x0 * cos[i] - x1 * sin[i];
        b[i] = x1 * cos[i] + x0 * sin[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Arch;

    fn cfg(scaling: Option<RopeScaling>) -> LlamaConfig {
        LlamaConfig {
            arch: Arch::Llama,
            hidden_size: 8,
            intermediate_size: 8,
            num_layers: 1,
            num_heads: 1,
            num_kv_heads: 1,
            head_dim: 8,
            vocab_size: 4,
            max_position_embeddings: 16,
            rope_theta: 10000.0,
            rope_scaling: scaling,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            attention_bias: false,
        }
    }

    #[test]
    fn rotation_preserves_norm_and_position_zero_is_identity() {
        let f = inv_freq(&cfg(None));
        assert_eq!(f[0], 1.0);
        let (mut c, mut s) = (vec![0.0; 4], vec![0.0; 4]);
        angles(&f, 0, &mut c, &mut s);
        let mut x = vec![1., 2., 3., 4., 5., 6., 7., 8.];
        apply(&mut x, &c, &s);
        assert_eq!(x, vec![1., 2., 3., 4., 5., 6., 7., 8.]);
        angles(&f, 5, &mut c, &mut s);
        apply(&mut x, &c, &s);
        let n: f32 = x.iter().map(|v| v * v).sum();
        assert!((n - 204.0).abs() < 1e-3);
    }

    #[test]
    fn llama3_scaling_divides_low_frequencies_only() {
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64.0,
        };
        // Wavelengths: 2π for i = 0 (below 64/4: kept), 2π·10⁴·⁷⁵ for i = 3 (above 64: divided).
        let (a, b) = (inv_freq(&cfg(None)), inv_freq(&cfg(Some(s))));
        assert_eq!(a[0], b[0]);
        assert!((b[3] - a[3] / 8.0).abs() < 1e-9);
    }
}
