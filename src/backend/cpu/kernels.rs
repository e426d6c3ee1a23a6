//! Dot-product kernels, chosen once at run time: AVX2/FMA/F16C where the CPU has them,
//! portable Rust otherwise. Both compute the same math (integer dots on 8-bit activation
//! blocks for Q8_0/Q4_0/Q4_1; f32 dots for float and K-quant weights).

use half::{bf16, f16};

use crate::tensor::quant::{dot_q4_0_scalar, dot_q4_1_scalar, dot_q8_0_scalar, BlockQ8};

/// `dot(a, b)` over f32 slices of equal length.
pub type DotF32 = fn(&[f32], &[f32]) -> f32;
/// `dot(row_bytes, x)` of a 16-bit float row (f16 or bf16 bits) with f32 activations.
pub type DotHalf = fn(&[u8], &[f32]) -> f32;
/// `dot(row_bytes, x_blocks)` of a block-quantized row with 8-bit activation blocks.
pub type DotQ = fn(&[u8], &[BlockQ8]) -> f32;
/// Dots of one block-quantized row with up to 8 tokens at once: `x` holds `out.len()` tokens'
/// activation blocks, token-major with `blocks` per token; `out[t]` receives token `t`'s dot.
pub type DotQx4 = fn(&[u8], &[BlockQ8], usize, &mut [f32]);

/// Dots of up to 4 consecutive block-quantized rows (`rows` holds them, `row_bytes` apart)
/// with one token's activation blocks: `out[r]` receives row `r`'s dot. Rows interleaved in
/// one pass keep several independent accumulator chains busy and load each activation block
/// once (the batch-1 decode path).
pub type DotQRows = fn(&[u8], usize, &[BlockQ8], &mut [f32]);

/// The kernels a CPU engine uses.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Name of the instruction set chosen ("avx2" or "portable").
    pub isa: &'static str,
    /// f32 · f32.
    pub dot_f32: DotF32,
    /// f16 row · f32.
    pub dot_f16: DotHalf,
    /// bf16 row · f32.
    pub dot_bf16: DotHalf,
    /// Q8_0 row · Q8 activations.
    pub dot_q8_0: DotQ,
    /// Q4_0 row · Q8 activations.
    pub dot_q4_0: DotQ,
    /// Q4_1 row · Q8 activations.
    pub dot_q4_1: DotQ,
    /// Q8_0 row · up to 8 tokens.
    pub dot_q8_0_x4: DotQx4,
    /// Q4_0 row · up to 8 tokens.
    pub dot_q4_0_x4: DotQx4,
    /// Q4_1 row · up to 8 tokens.
    pub dot_q4_1_x4: DotQx4,
    /// Up to 4 Q8_0 rows · one token.
    pub dot_q8_0_rows: DotQRows,
    /// Up to 4 Q4_0 rows · one token.
    pub dot_q4_0_rows: DotQRows,
    /// Up to 4 Q4_1 rows · one token.
    pub dot_q4_1_rows: DotQRows,
}

impl Kernels {
    /// The best kernels this CPU supports. `LORADOCK_ISA=portable` forces the fallback.
    pub fn detect() -> Kernels {
        if std::env::var("LORADOCK_ISA").is_ok_and(|v| v == "portable") {
            return Kernels::portable();
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = super::x86::kernels() {
            return k;
        }
        Kernels::portable()
    }

    /// Plain Rust kernels that run everywhere.
    pub fn portable() -> Kernels {
        Kernels {
            isa: "portable",
            dot_f32: dot_f32_portable,
            dot_f16: dot_f16_portable,
            dot_bf16: dot_bf16_portable,
            dot_q8_0: dot_q8_0_scalar,
            dot_q4_0: dot_q4_0_scalar,
            dot_q4_1: dot_q4_1_scalar,
            dot_q8_0_x4: |r, x, b, o| each_token(dot_q8_0_scalar, r, x, b, o),
            dot_q4_0_x4: |r, x, b, o| each_token(dot_q4_0_scalar, r, x, b, o),
            dot_q4_1_x4: |r, x, b, o| each_token(dot_q4_1_scalar, r, x, b, o),
            dot_q8_0_rows: |r, rb, x, o| each_row(dot_q8_0_scalar, r, rb, x, o),
            dot_q4_0_rows: |r, rb, x, o| each_row(dot_q4_0_scalar, r, rb, x, o),
            dot_q4_1_rows: |r, rb, x, o| each_row(dot_q4_1_scalar, r, rb, x, o),
        }
    }
}

/// A multi-row dot made of one single-row dot per row.
pub(super) fn each_row(dot: DotQ, rows: &[u8], row_bytes: usize, x: &[BlockQ8], out: &mut [f32]) {
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot(&rows[r * row_bytes..(r + 1) * row_bytes], x);
    }
}

/// A multi-token dot made of one single-token dot per token.
fn each_token(dot: DotQ, row: &[u8], x: &[BlockQ8], blocks: usize, out: &mut [f32]) {
    for (t, o) in out.iter_mut().enumerate() {
        *o = dot(row, &x[t * blocks..(t + 1) * blocks]);
    }
}

/// Portable f32 dot with 8 independent accumulators (vectorizes without fast-math).
#[inline]
pub fn dot_f32_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

fn dot_f16_portable(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (w, xs) in row.chunks_exact(16).zip(x.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += f16::from_bits(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])).to_f32() * xs[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    let done = x.len() / 8 * 8;
    for (i, xv) in x.iter().enumerate().skip(done) {
        s += f16::from_bits(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])).to_f32() * xv;
    }
    s
}

fn dot_bf16_portable(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (w, xs) in row.chunks_exact(16).zip(x.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += bf16::from_bits(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])).to_f32() * xs[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    let done = x.len() / 8 * 8;
    for (i, xv) in x.iter().enumerate().skip(done) {
        s += bf16::from_bits(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])).to_f32() * xv;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::quant::{quantize_q8_blocks, quantize_row_q4_0, quantize_row_q8_0};

    use crate::test_util::pseudo_random as vals;

    /// The detected kernels agree with the portable ones on every type.
    #[test]
    fn detected_kernels_match_portable() {
        let (k, p) = (Kernels::detect(), Kernels::portable());
        for n in [32usize, 96, 576] {
            let (a, b) = (vals(n, 1), vals(n, 2));
            let rel = |x: f32, y: f32| (x - y).abs() / x.abs().max(1.0);
            assert!(rel((k.dot_f32)(&a, &b), (p.dot_f32)(&a, &b)) < 1e-5);
            let h: Vec<u8> = a.iter().flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes()).collect();
            assert!(rel((k.dot_f16)(&h, &b), (p.dot_f16)(&h, &b)) < 1e-5);
            let bh: Vec<u8> = a.iter().flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes()).collect();
            assert!(rel((k.dot_bf16)(&bh, &b), (p.dot_bf16)(&bh, &b)) < 1e-5);
            let mut xq = vec![BlockQ8::default(); n / 32];
            quantize_q8_blocks(&b, &mut xq);
            let (mut q8, mut q4) = (Vec::new(), Vec::new());
            quantize_row_q8_0(&a, &mut q8);
            quantize_row_q4_0(&a, &mut q4);
            assert!(rel((k.dot_q8_0)(&q8, &xq), (p.dot_q8_0)(&q8, &xq)) < 1e-5);
            assert!(rel((k.dot_q4_0)(&q4, &xq), (p.dot_q4_0)(&q4, &xq)) < 1e-5);
            // A Q4_1 row made from the Q4_0 nibbles with a min.
            let mut q41 = Vec::new();
            for blk in q4.chunks_exact(18) {
                q41.extend_from_slice(&blk[0..2]);
                q41.extend_from_slice(&f16::from_f32(-0.3).to_bits().to_le_bytes());
                q41.extend_from_slice(&blk[2..18]);
            }
            assert!(rel((k.dot_q4_1)(&q41, &xq), (p.dot_q4_1)(&q41, &xq)) < 1e-5);
            // Tiles of 1..8 tokens equal the one-token dots.
            let blocks = n / 32;
            let mut xs = Vec::new();
            for t in 0..8 {
                let mut b4 = vec![BlockQ8::default(); blocks];
                quantize_q8_blocks(&vals(n, 10 + t), &mut b4);
                xs.extend(b4);
            }
            // Up to 4 rows at once equal the one-row dots (rows of one type, `rb` apart).
            for (row, single, rows_dot) in [
                (&q8, k.dot_q8_0, k.dot_q8_0_rows),
                (&q4, k.dot_q4_0, k.dot_q4_0_rows),
                (&q41, k.dot_q4_1, k.dot_q4_1_rows),
            ] {
                let rb = row.len();
                let four: Vec<u8> = (0..4u8)
                    .flat_map(|i| {
                        // Distinct rows: every quant byte shifted (scales kept).
                        let mut r = row.clone();
                        let hdr = rb / blocks - 32 / if rb / blocks == 34 { 1 } else { 2 };
                        for (j, b) in r.iter_mut().enumerate() {
                            if j % (rb / blocks) >= hdr {
                                *b = b.wrapping_add(i.wrapping_mul(37));
                            }
                        }
                        r
                    })
                    .collect();
                for m in 1..=4 {
                    let mut out = vec![0.0; m];
                    rows_dot(&four, rb, &xs[..blocks], &mut out);
                    for (r, o) in out.iter().enumerate() {
                        let want = single(&four[r * rb..(r + 1) * rb], &xs[..blocks]);
                        assert!(rel(*o, want) < 1e-5, "{m} rows, row {r}: {o} vs {want}");
                    }
                }
            }
            for (row, single, multi) in [
                (&q8, k.dot_q8_0, k.dot_q8_0_x4),
                (&q4, k.dot_q4_0, k.dot_q4_0_x4),
                (&q41, k.dot_q4_1, k.dot_q4_1_x4),
            ] {
                for ntok in 1..=8 {
                    let mut out = vec![0.0; ntok];
                    multi(row, &xs, blocks, &mut out);
                    for (t, o) in out.iter().enumerate() {
                        let want = single(row, &xs[t * blocks..(t + 1) * blocks]);
                        assert!(rel(*o, want) < 1e-5, "{ntok} tokens, token {t}: {o} vs {want}");
                    }
                }
            }
        }
    }
}
