//! ggml's 32-value block formats (Q8_0, Q4_0, Q4_1): layout, dequantization, quantization,
//! and the 8-bit activation blocks their integer dot products use.
//!
//! Layouts (little-endian, packed, as in ggml):
//! - `Q8_0`: `d: f16`, `qs: [i8; 32]`; x = d·q.
//! - `Q4_0`: `d: f16`, `qs: [u8; 16]`; value j < 16 is the low nibble of byte j, value j + 16
//!   the high nibble; x = d·(q − 8).
//! - `Q4_1`: `d: f16`, `m: f16`, `qs: [u8; 16]` (nibbles as Q4_0); x = d·q + m.

use half::f16;

/// Values per block.
pub const QK: usize = 32;

/// An activation block: 32 values quantized to i8 with an f32 scale, plus `d·Σq` (needed by
/// formats with a min, like Q4_1).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(8))]
pub struct BlockQ8 {
    /// Scale.
    pub d: f32,
    /// `d · Σ qs`.
    pub s: f32,
    /// Quantized values.
    pub qs: [i8; QK],
}

impl Default for BlockQ8 {
    fn default() -> Self {
        BlockQ8 { d: 0.0, s: 0.0, qs: [0; QK] }
    }
}

#[inline]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Quantize `x` (a multiple of 32 long) into activation blocks, one per 32 values.
pub fn quantize_q8_blocks(x: &[f32], out: &mut [BlockQ8]) {
    debug_assert_eq!(x.len(), out.len() * QK);
    for (blk, xs) in out.iter_mut().zip(x.chunks_exact(QK)) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in blk.qs.iter_mut().zip(xs) {
            let r = (v * id).round() as i32;
            *q = r.clamp(-127, 127) as i8;
            sum += *q as i32;
        }
        blk.d = d;
        blk.s = d * sum as f32;
    }
}

/// Dequantize one block-quantized row (`Q8_0`, `Q4_0`, `Q4_1`) into `out`.
pub fn dequantize_row(dtype: crate::tensor::DType, row: &[u8], out: &mut [f32]) {
    use crate::tensor::DType;
    match dtype {
        DType::Q8_0 => {
            for (b, o) in row.chunks_exact(34).zip(out.chunks_exact_mut(QK)) {
                let d = f16_at(b, 0);
                for (v, q) in o.iter_mut().zip(&b[2..34]) {
                    *v = d * (*q as i8) as f32;
                }
            }
        }
        DType::Q4_0 => {
            for (b, o) in row.chunks_exact(18).zip(out.chunks_exact_mut(QK)) {
                let d = f16_at(b, 0);
                for j in 0..16 {
                    o[j] = d * ((b[2 + j] & 0x0f) as i32 - 8) as f32;
                    o[j + 16] = d * ((b[2 + j] >> 4) as i32 - 8) as f32;
                }
            }
        }
        DType::Q4_1 => {
            for (b, o) in row.chunks_exact(20).zip(out.chunks_exact_mut(QK)) {
                let d = f16_at(b, 0);
                let m = f16_at(b, 2);
                for j in 0..16 {
                    o[j] = d * (b[4 + j] & 0x0f) as f32 + m;
                    o[j + 16] = d * (b[4 + j] >> 4) as f32 + m;
                }
            }
        }
        other => unreachable!("dequantize_row called for {other:?}"),
    }
}

/// Quantize a row of f32 values (a multiple of 32 long) to `Q8_0` blocks, as ggml does.
pub fn quantize_row_q8_0(x: &[f32], out: &mut Vec<u8>) {
    for xs in x.chunks_exact(QK) {
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        for v in xs {
            out.push(((v * id).round() as i32).clamp(-127, 127) as i8 as u8);
        }
    }
}

/// Quantize a row of f32 values (a multiple of 32 long) to `Q4_0` blocks, as ggml does (the
/// value of largest magnitude maps to −8).
pub fn quantize_row_q4_0(x: &[f32], out: &mut Vec<u8>) {
    for xs in x.chunks_exact(QK) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in xs {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
        for j in 0..16 {
            out.push(q(xs[j]) | (q(xs[j + 16]) << 4));
        }
    }
}

/// Quantize a row of f32 values (a multiple of 32 long) to `Q4_1` blocks, as ggml does
/// (`d = (max − min)/15`, `m = min`, codes rounded to nearest).
pub fn quantize_row_q4_1(x: &[f32], out: &mut Vec<u8>) {
    for xs in x.chunks_exact(QK) {
        let (min, max) = xs.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_bits().to_le_bytes());
        let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        for j in 0..16 {
            out.push(q(xs[j]) | (q(xs[j + 16]) << 4));
        }
    }
}

/// Integer dot of a `Q8_0` weight row with activation blocks (portable version).
pub fn dot_q8_0_scalar(row: &[u8], x: &[BlockQ8]) -> f32 {
    let mut acc = 0.0f32;
    for (b, xb) in row.chunks_exact(34).zip(x) {
        let mut s = 0i32;
        for (q, xq) in b[2..34].iter().zip(&xb.qs) {
            s += (*q as i8 as i32) * (*xq as i32);
        }
        acc += f16_at(b, 0) * xb.d * s as f32;
    }
    acc
}

/// Integer dot of a `Q4_0` weight row with activation blocks (portable version).
pub fn dot_q4_0_scalar(row: &[u8], x: &[BlockQ8]) -> f32 {
    let mut acc = 0.0f32;
    for (b, xb) in row.chunks_exact(18).zip(x) {
        let mut s = 0i32;
        for j in 0..16 {
            s += ((b[2 + j] & 0x0f) as i32 - 8) * xb.qs[j] as i32;
            s += ((b[2 + j] >> 4) as i32 - 8) * xb.qs[j + 16] as i32;
        }
        acc += f16_at(b, 0) * xb.d * s as f32;
    }
    acc
}

/// Integer dot of a `Q4_1` weight row with activation blocks (portable version).
pub fn dot_q4_1_scalar(row: &[u8], x: &[BlockQ8]) -> f32 {
    let mut acc = 0.0f32;
    for (b, xb) in row.chunks_exact(20).zip(x) {
        let mut s = 0i32;
        for j in 0..16 {
            s += (b[4 + j] & 0x0f) as i32 * xb.qs[j] as i32;
            s += (b[4 + j] >> 4) as i32 * xb.qs[j + 16] as i32;
        }
        acc += f16_at(b, 0) * xb.d * s as f32 + f16_at(b, 2) * xb.s;
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0).collect()
    }

    #[test]
    fn q8_0_round_trip_is_close() {
        let x = ramp(64);
        let mut b = Vec::new();
        quantize_row_q8_0(&x, &mut b);
        assert_eq!(b.len(), 68);
        let mut y = vec![0.0; 64];
        dequantize_row(DType::Q8_0, &b, &mut y);
        for (a, c) in x.iter().zip(&y) {
            assert!((a - c).abs() < 0.03, "{a} vs {c}");
        }
    }

    #[test]
    fn q4_0_round_trip_is_close() {
        let x = ramp(32);
        let mut b = Vec::new();
        quantize_row_q4_0(&x, &mut b);
        let mut y = vec![0.0; 32];
        dequantize_row(DType::Q4_0, &b, &mut y);
        // ggml maps the extreme value to -8, so the far end of the range (+7d) can be off by
        // up to one step d = amax / 8; everything else by half a step.
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, c) in x.iter().zip(&y) {
            assert!((a - c).abs() <= amax / 8.0 + 1e-3, "{a} vs {c}");
        }
    }

    #[test]
    fn integer_dots_match_dequantized_dots() {
        let w = ramp(64);
        let x: Vec<f32> = ramp(64).iter().rev().map(|v| v * 0.7).collect();
        let mut xq = vec![BlockQ8::default(); 2];
        quantize_q8_blocks(&x, &mut xq);
        let xd: Vec<f32> = xq.iter().flat_map(|b| b.qs.iter().map(move |q| *q as f32 * b.d)).collect();
        // Q4_1 block built by hand: d = 0.5, m = -1, nibbles 0..15.
        let mut q41 = Vec::new();
        for _ in 0..2 {
            q41.extend_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
            q41.extend_from_slice(&f16::from_f32(-1.0).to_bits().to_le_bytes());
            q41.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        }
        let mut q80 = Vec::new();
        quantize_row_q8_0(&w, &mut q80);
        let mut q40 = Vec::new();
        quantize_row_q4_0(&w, &mut q40);
        for (dt, row, dot) in [
            (DType::Q8_0, &q80, dot_q8_0_scalar as fn(&[u8], &[BlockQ8]) -> f32),
            (DType::Q4_0, &q40, dot_q4_0_scalar),
            (DType::Q4_1, &q41, dot_q4_1_scalar),
        ] {
            let mut wd = vec![0.0; 64];
            dequantize_row(dt, row, &mut wd);
            let want: f32 = wd.iter().zip(&xd).map(|(a, b)| a * b).sum();
            let got = dot(row, &xq);
            assert!((want - got).abs() < 1e-3 * want.abs().max(1.0), "{dt:?}: {want} vs {got}");
        }
    }
}
