//! ggml's 256-value "K" super-block formats (Q4_K, Q5_K, Q6_K): layouts and dequantization
//! of one super-block at a time. Matrix products dequantize block by block into a small
//! stack buffer; whole matrices are never expanded.
//!
//! Layouts (packed, little-endian, as in ggml):
//! - `Q4_K` (144 B): `d: f16`, `dmin: f16`, `scales: [u8; 12]` (8 × 6-bit scale and min),
//!   `qs: [u8; 128]`.
//! - `Q5_K` (176 B): as Q4_K plus `qh: [u8; 32]` (the fifth bits) before `qs`.
//! - `Q6_K` (210 B): `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]`, `d: f16`.

use super::quant::f16_at;

/// Values per super-block.
pub const QK_K: usize = 256;

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes.
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((q[j] & 63) as f32, (q[j + 4] & 63) as f32)
    } else {
        (((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4)) as f32, ((q[j + 4] >> 4) | ((q[j] >> 6) << 4)) as f32)
    }
}

/// Dequantize one Q4_K super-block (144 bytes) into 256 values.
pub fn dequantize_q4k(b: &[u8], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (chunk, j) in (0..QK_K).step_by(64).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let q = &qs[chunk * 32..chunk * 32 + 32];
        for l in 0..32 {
            y[j + l] = d1 * (q[l] & 0x0f) as f32 - m1;
            y[j + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// Dequantize one Q5_K super-block (176 bytes) into 256 values.
pub fn dequantize_q5k(b: &[u8], y: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (chunk, j) in (0..QK_K).step_by(64).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1, d2, m2) = (d * sc1, dmin * m1, d * sc2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let q = &qs[chunk * 32..chunk * 32 + 32];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[j + l] = d1 * ((q[l] & 0x0f) + h1) as f32 - m1;
            y[j + 32 + l] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// Dequantize one Q6_K super-block (210 bytes) into 256 values.
pub fn dequantize_q6k(b: &[u8], y: &mut [f32; QK_K]) {
    let ql_all = &b[0..128];
    let qh_all = &b[128..192];
    let sc_all = &b[192..208];
    let d = f16_at(b, 208);
    for half in 0..2 {
        let ql = &ql_all[half * 64..half * 64 + 64];
        let qh = &qh_all[half * 32..half * 32 + 32];
        let sc = &sc_all[half * 8..half * 8 + 8];
        let out = &mut y[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    fn h(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_bits().to_le_bytes()
    }

    #[test]
    fn q4k_decodes_scales_mins_and_nibbles() {
        let mut b = vec![0u8; 144];
        b[0..2].copy_from_slice(&h(0.5));
        b[2..4].copy_from_slice(&h(0.25));
        // Sub-block 0: scale 3, min 2. Sub-block 5: scale 1 + (1 << 4) = 17, min 4 + (2 << 4) = 36.
        b[4] = 3;
        b[4 + 4] = 2;
        b[4 + 9] = 1 | (4 << 4); // q[j+4] for j = 5
        b[4 + 1] |= 1 << 6; // high bits of the scale of j = 5 live in q[j-4] = q[1]
        b[4 + 5] |= 2 << 6; // high bits of the min of j = 5 live in q[j] = q[5]
        for l in 0..128 {
            b[16 + l] = 0x97; // low nibble 7, high nibble 9
        }
        let mut y = [0.0; QK_K];
        dequantize_q4k(&b, &mut y);
        assert_eq!(y[0], 0.5 * 3.0 * 7.0 - 0.25 * 2.0);
        // Sub-block 5 is the high nibbles of the third 64-chunk: values 160..192.
        assert_eq!(y[170], 0.5 * 17.0 * 9.0 - 0.25 * 36.0);
    }

    #[test]
    fn q6k_decodes_signed_six_bits() {
        let mut b = vec![0u8; 210];
        b[208..210].copy_from_slice(&h(2.0));
        for s in 0..16 {
            b[192 + s] = (-(s as i8) - 1) as u8;
        }
        b[0] = 0x0f; // value 0: low 4 bits 15
        b[128] = 0x03; // value 0: high 2 bits 3 -> q = 63 - 32 = 31
        let mut y = [0.0; QK_K];
        dequantize_q6k(&b, &mut y);
        assert_eq!(y[0], -2.0 * 31.0);
        assert_eq!(y[1], -2.0 * -32.0);
    }

    #[test]
    fn q5k_uses_the_fifth_bit() {
        let mut b = vec![0u8; 176];
        b[0..2].copy_from_slice(&h(1.0));
        b[4] = 1; // scale of sub-block 0
        b[16] = 1; // fifth bit of value 0
        b[48] = 0x02;
        let mut y = [0.0; QK_K];
        dequantize_q5k(&b, &mut y);
        assert_eq!(y[0], 18.0);
        assert_eq!(y[1], 0.0);
    }
}
