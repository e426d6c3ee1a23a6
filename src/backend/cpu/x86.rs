//! AVX2 + FMA + F16C kernels for x86-64, selected only after run-time detection.

use std::arch::x86_64::*;

use super::kernels::Kernels;
use crate::tensor::quant::BlockQ8;

/// The AVX2 kernels, if this CPU has AVX2, FMA and F16C.
pub(super) fn kernels() -> Option<Kernels> {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    {
        Some(Kernels { isa: "avx2", dot_f32, dot_f16, dot_bf16, dot_q8_0, dot_q4_0, dot_q4_1 })
    } else {
        None
    }
}

// Each safe wrapper below is only ever stored in a `Kernels` built by `kernels()`, which checks
// the CPU features first.

fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: AVX2/FMA presence was checked in `kernels()`.
    unsafe { dot_f32_avx2(a, b) }
}
fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: AVX2/FMA/F16C presence was checked in `kernels()`.
    unsafe { dot_f16_avx2(row, x) }
}
fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: AVX2/FMA presence was checked in `kernels()`.
    unsafe { dot_bf16_avx2(row, x) }
}
fn dot_q8_0(row: &[u8], x: &[BlockQ8]) -> f32 {
    // SAFETY: AVX2/FMA presence was checked in `kernels()`.
    unsafe { dot_q8_0_avx2(row, x) }
}
fn dot_q4_0(row: &[u8], x: &[BlockQ8]) -> f32 {
    // SAFETY: AVX2/FMA presence was checked in `kernels()`.
    unsafe { dot_q4_0_avx2(row, x) }
}
fn dot_q4_1(row: &[u8], x: &[BlockQ8]) -> f32 {
    // SAFETY: AVX2/FMA presence was checked in `kernels()`.
    unsafe { dot_q4_1_avx2(row, x) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc_k) in acc.iter_mut().enumerate() {
            let x = _mm256_loadu_ps(pa.add(i + 8 * k));
            let y = _mm256_loadu_ps(pb.add(i + 8 * k));
            *acc_k = _mm256_fmadd_ps(x, y, *acc_k);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
        i += 8;
    }
    let mut s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_avx2(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(row.len() / 2);
    let (pw, px) = (row.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut i = 0;
    while i + 16 <= n {
        for (k, acc_k) in acc.iter_mut().enumerate() {
            let w = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(2 * (i + 8 * k)) as *const __m128i));
            *acc_k = _mm256_fmadd_ps(w, _mm256_loadu_ps(px.add(i + 8 * k)), *acc_k);
        }
        i += 16;
    }
    while i + 8 <= n {
        let w = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(2 * i) as *const __m128i));
        acc[0] = _mm256_fmadd_ps(w, _mm256_loadu_ps(px.add(i)), acc[0]);
        i += 8;
    }
    let mut s = hsum(_mm256_add_ps(acc[0], acc[1]));
    while i < n {
        s += half::f16::from_bits(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])).to_f32() * x[i];
        i += 1;
    }
    s
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_bf16_avx2(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(row.len() / 2);
    let (pw, px) = (row.as_ptr(), x.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(pw.add(2 * i) as *const __m128i);
        let w = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        acc = _mm256_fmadd_ps(w, _mm256_loadu_ps(px.add(i)), acc);
        i += 8;
    }
    let mut s = hsum(acc);
    while i < n {
        s += half::bf16::from_bits(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])).to_f32() * x[i];
        i += 1;
    }
    s
}

/// Σ w·x of 32 signed bytes each, as 8 i32 lanes converted to f32.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn mul_sum_i8(w: __m256i, x: __m256i) -> __m256 {
    let ax = _mm256_sign_epi8(w, w);
    let sy = _mm256_sign_epi8(x, w);
    let dot16 = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(dot16, _mm256_set1_epi16(1)))
}

/// 16 packed bytes → 32 nibbles (low nibbles in the low lane, high nibbles in the high lane).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let b = _mm_loadu_si128(p as *const __m128i);
    let lo = _mm_and_si128(b, _mm_set1_epi8(0x0f));
    let hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0f));
    _mm256_set_m128i(hi, lo)
}

#[inline]
fn f16_at(p: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([p[at], p[at + 1]])).to_f32()
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q8_0_avx2(row: &[u8], x: &[BlockQ8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, xb) in row.chunks_exact(34).zip(x) {
        let w = _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i);
        let xv = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let d = _mm256_set1_ps(f16_at(b, 0) * xb.d);
        acc = _mm256_fmadd_ps(d, mul_sum_i8(w, xv), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_0_avx2(row: &[u8], x: &[BlockQ8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let eight = _mm256_set1_epi8(8);
    for (b, xb) in row.chunks_exact(18).zip(x) {
        let w = _mm256_sub_epi8(nibbles(b.as_ptr().add(2)), eight);
        let xv = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let d = _mm256_set1_ps(f16_at(b, 0) * xb.d);
        acc = _mm256_fmadd_ps(d, mul_sum_i8(w, xv), acc);
    }
    hsum(acc)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_q4_1_avx2(row: &[u8], x: &[BlockQ8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0.0f32;
    let ones = _mm256_set1_epi16(1);
    for (b, xb) in row.chunks_exact(20).zip(x) {
        let w = nibbles(b.as_ptr().add(4));
        let xv = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), ones));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(b, 0) * xb.d), s, acc);
        mins += f16_at(b, 2) * xb.s;
    }
    hsum(acc) + mins
}
