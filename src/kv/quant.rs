//! Quantization of cached head vectors and the two operations attention needs on them:
//! `q · k` and `out += p · v`, read in place for every [`LayerView`] type.

use half::f16;

use super::LayerView;

/// In-place normalized Walsh-Hadamard transform (`x.len()` a power of two): orthonormal and
/// its own inverse. Quantized caches store rotated heads, which spreads outlier channels over
/// the whole head before rounding.
pub fn fwht(x: &mut [f32]) {
    let n = x.len();
    debug_assert!(n.is_power_of_two());
    let mut h = 1;
    while h < n {
        for i in (0..n).step_by(2 * h) {
            for j in i..i + h {
                let (a, b) = (x[j], x[j + h]);
                x[j] = a + b;
                x[j + h] = a - b;
            }
        }
        h *= 2;
    }
    let s = 1.0 / (n as f32).sqrt();
    x.iter_mut().for_each(|v| *v *= s);
}

/// Symmetric int8: returns the scale (`max|x| / 127`).
pub(super) fn quantize_q8(x: &[f32], q: &mut [i8]) -> f32 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    for (o, v) in q.iter_mut().zip(x) {
        *o = (v * id).round().clamp(-127.0, 127.0) as i8;
    }
    d
}

/// Asymmetric 4-bit, two values per byte (low nibble first): returns (scale, min).
pub(super) fn quantize_q4(x: &[f32], q: &mut [u8]) -> (f32, f32) {
    let (lo, hi) = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let d = (hi - lo) / 15.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let code = |v: f32| ((v - lo) * id).round().clamp(0.0, 15.0) as u8;
    for (i, o) in q.iter_mut().enumerate() {
        let a = code(x[2 * i]);
        let b = x.get(2 * i + 1).map_or(0, |v| code(*v));
        *o = a | (b << 4);
    }
    (d, lo)
}

/// `Σ q[i]·k[i]` for int8 `k`.
pub fn dot_q8(q: &[f32], k: &[i8]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (qc, kc) in q.chunks_exact(8).zip(k.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += qc[i] * kc[i] as f32;
        }
    }
    acc.iter().sum::<f32>() + q.iter().zip(k).skip(q.len() / 8 * 8).map(|(a, b)| a * *b as f32).sum::<f32>()
}

/// `Σ q[i]·code[i]` for packed 4-bit codes.
pub fn dot_q4(q: &[f32], codes: &[u8]) -> f32 {
    let mut acc = [0.0f32; 2];
    for (qp, c) in q.chunks(2).zip(codes) {
        acc[0] += qp[0] * (c & 0x0f) as f32;
        if let Some(q1) = qp.get(1) {
            acc[1] += q1 * (c >> 4) as f32;
        }
    }
    acc[0] + acc[1]
}

/// `q · k` for head slot `h` of a key view (`d` = head dim).
#[inline]
pub fn dot_view(view: &LayerView<'_>, h: usize, q: &[f32], d: usize) -> f32 {
    match *view {
        LayerView::F32(k) => crate::backend::cpu::kernels::dot_f32_portable(q, &k[h * d..(h + 1) * d]),
        LayerView::F16(k) => k[h * d..(h + 1) * d].iter().zip(q).map(|(a, b)| a.to_f32() * b).sum(),
        LayerView::Int8(k, s) => s[h] * dot_q8(q, &k[h * d..(h + 1) * d]),
        LayerView::Q4(k, s, m) => {
            let (hb, nb) = (d.div_ceil(2), super::q4_blocks(d));
            let codes = &k[h * hb..(h + 1) * hb];
            q.chunks(super::Q4_BLOCK)
                .enumerate()
                .map(|(b, qb)| {
                    let cb = &codes[b * super::Q4_BLOCK / 2..];
                    s[h * nb + b] * dot_q4(qb, cb) + m[h * nb + b] * qb.iter().sum::<f32>()
                })
                .sum()
        }
    }
}

/// `out += p · v` for head slot `h` of a value view.
#[inline]
pub fn axpy_view(view: &LayerView<'_>, h: usize, p: f32, out: &mut [f32], d: usize) {
    match *view {
        LayerView::F32(v) => out.iter_mut().zip(&v[h * d..(h + 1) * d]).for_each(|(o, x)| *o += p * x),
        LayerView::F16(v) => {
            out.iter_mut().zip(&v[h * d..(h + 1) * d]).for_each(|(o, x)| *o += p * f16::to_f32(*x))
        }
        LayerView::Int8(v, s) => {
            let ps = p * s[h];
            out.iter_mut().zip(&v[h * d..(h + 1) * d]).for_each(|(o, x)| *o += ps * *x as f32);
        }
        LayerView::Q4(v, s, m) => {
            let (hb, nb) = (d.div_ceil(2), super::q4_blocks(d));
            for (i, c) in v[h * hb..(h + 1) * hb].iter().enumerate() {
                let b = h * nb + 2 * i / super::Q4_BLOCK;
                let (ps, pm) = (p * s[b], p * m[b]);
                out[2 * i] += ps * (c & 0x0f) as f32 + pm;
                if let Some(o) = out.get_mut(2 * i + 1) {
                    *o += ps * (c >> 4) as f32 + pm;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hadamard_is_orthonormal_and_its_own_inverse() {
        let x: Vec<f32> = crate::test_util::pseudo_random(64, 3);
        let mut y = x.clone();
        fwht(&mut y);
        let (nx, ny): (f32, f32) = (x.iter().map(|v| v * v).sum(), y.iter().map(|v| v * v).sum());
        assert!((nx - ny).abs() < 1e-4);
        fwht(&mut y);
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-5));
    }
}
