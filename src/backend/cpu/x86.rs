//! AVX2 + FMA + F16C kernels for x86-64 (8-bit dots optionally on AVX512-VNNI), selected only
//! after run-time detection.

use std::arch::x86_64::*;

use super::kernels::{each_row, Kernels};
use crate::tensor::quant::BlockQ8;

/// The best x86 kernels for this CPU: AVX2 (+FMA, F16C), with the 8-bit dot products on
/// AVX512-VNNI (256-bit forms) where present. `LORADOCK_ISA=avx2` skips VNNI.
pub(super) fn kernels() -> Option<Kernels> {
    let avx2 = is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c");
    if !avx2 {
        return None;
    }
    let vnni = is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl");
    if vnni && std::env::var("LORADOCK_ISA").map_or(true, |v| v != "avx2") {
        return Some(Kernels {
            isa: "avx2+avx512vnni",
            dot_f32,
            dot_f16,
            dot_bf16,
            dot_q8_0: dot_q8_0_vnni,
            dot_q4_0: dot_q4_0_vnni,
            dot_q4_1: dot_q4_1_vnni,
            dot_q8_0_x4: dot_q8_0_x4_vnni,
            dot_q4_0_x4: dot_q4_0_x4_vnni,
            dot_q4_1_x4: dot_q4_1_x4_vnni,
            dot_q8_0_rows: dot_q8_0_rows_vnni,
            dot_q4_0_rows: dot_q4_0_rows_vnni,
            dot_q4_1_rows: dot_q4_1_rows_vnni,
        });
    }
    Some(Kernels {
        isa: "avx2",
        dot_f32,
        dot_f16,
        dot_bf16,
        dot_q8_0,
        dot_q4_0,
        dot_q4_1,
        dot_q8_0_x4: tile_by_rows::<34>,
        dot_q4_0_x4: tile_by_rows::<18>,
        dot_q4_1_x4: tile_by_rows::<20>,
        dot_q8_0_rows: |r, rb, x, o| each_row(dot_q8_0, r, rb, x, o),
        dot_q4_0_rows: |r, rb, x, o| each_row(dot_q4_0, r, rb, x, o),
        dot_q4_1_rows: |r, rb, x, o| each_row(dot_q4_1, r, rb, x, o),
    })
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
fn dot_q8_0_vnni(row: &[u8], x: &[BlockQ8]) -> f32 {
    // SAFETY: AVX2/FMA/F16C/AVX512-VNNI/AVX512-VL presence was checked in `kernels()`.
    unsafe { vnni::dot_q8_0(row, x) }
}
fn dot_q4_0_vnni(row: &[u8], x: &[BlockQ8]) -> f32 {
    // SAFETY: AVX2/FMA/F16C/AVX512-VNNI/AVX512-VL presence was checked in `kernels()`.
    unsafe { vnni::dot_q4_0(row, x) }
}
fn dot_q4_1_vnni(row: &[u8], x: &[BlockQ8]) -> f32 {
    // SAFETY: AVX2/FMA/F16C/AVX512-VNNI/AVX512-VL presence was checked in `kernels()`.
    unsafe { vnni::dot_q4_1(row, x) }
}
fn dot_q8_0_rows_vnni(rows: &[u8], row_bytes: usize, x: &[BlockQ8], out: &mut [f32]) {
    // SAFETY: AVX2/FMA/F16C/AVX512-VNNI/AVX512-VL presence was checked in `kernels()`.
    unsafe { vnni::dot_q8_0_rows(rows, row_bytes, x, out) }
}
fn dot_q4_0_rows_vnni(rows: &[u8], row_bytes: usize, x: &[BlockQ8], out: &mut [f32]) {
    // SAFETY: AVX2/FMA/F16C/AVX512-VNNI/AVX512-VL presence was checked in `kernels()`.
    unsafe { vnni::dot_q4_0_rows(rows, row_bytes, x, out) }
}
fn dot_q4_1_rows_vnni(rows: &[u8], row_bytes: usize, x: &[BlockQ8], out: &mut [f32]) {
    // SAFETY: AVX2/FMA/F16C/AVX512-VNNI/AVX512-VL presence was checked in `kernels()`.
    unsafe { vnni::dot_q4_1_rows(rows, row_bytes, x, out) }
}
fn dot_q8_0_x4_vnni(row: &[u8], x: &[BlockQ8], blocks: usize, out: &mut [f32]) {
    // SAFETY: AVX2/FMA/F16C/AVX512-VNNI/AVX512-VL presence was checked in `kernels()`.
    unsafe { vnni::dot_q8_0_x4(row, x, blocks, out) }
}
fn dot_q4_0_x4_vnni(row: &[u8], x: &[BlockQ8], blocks: usize, out: &mut [f32]) {
    // SAFETY: AVX2/FMA/F16C/AVX512-VNNI/AVX512-VL presence was checked in `kernels()`.
    unsafe { vnni::dot_q4_0_x4(row, x, blocks, out) }
}
fn dot_q4_1_x4_vnni(row: &[u8], x: &[BlockQ8], blocks: usize, out: &mut [f32]) {
    // SAFETY: AVX2/FMA/F16C/AVX512-VNNI/AVX512-VL presence was checked in `kernels()`.
    unsafe { vnni::dot_q4_1_x4(row, x, blocks, out) }
}
/// Multi-token dots for the plain AVX2 set: one AVX2 dot per token (`BB` = block bytes picks
/// the kernel).
fn tile_by_rows<const BB: usize>(row: &[u8], x: &[BlockQ8], blocks: usize, out: &mut [f32]) {
    for (t, o) in out.iter_mut().enumerate() {
        let xs = &x[t * blocks..(t + 1) * blocks];
        *o = match BB {
            34 => dot_q8_0(row, xs),
            18 => dot_q4_0(row, xs),
            _ => dot_q4_1(row, xs),
        };
    }
}
fn dot_q8_0(row: &[u8], x: &[BlockQ8]) -> f32 {
    // SAFETY: AVX2/FMA/F16C presence was checked in `kernels()`.
    unsafe { dot_q8_0_avx2(row, x) }
}
fn dot_q4_0(row: &[u8], x: &[BlockQ8]) -> f32 {
    // SAFETY: AVX2/FMA/F16C presence was checked in `kernels()`.
    unsafe { dot_q4_0_avx2(row, x) }
}
fn dot_q4_1(row: &[u8], x: &[BlockQ8]) -> f32 {
    // SAFETY: AVX2/FMA/F16C presence was checked in `kernels()`.
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

/// Two adjacent f16 values at `p` (a block's scale and min) as f32, with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x2(p: *const u8) -> (f32, f32) {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p as *const i32)));
    (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_shuffle_ps(v, v, 1)))
}

/// One f16 value at `p` as f32, with F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16x1(p: *const u8) -> f32 {
    let bits = std::ptr::read_unaligned(p as *const u16);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q8_0_avx2(row: &[u8], x: &[BlockQ8]) -> f32 {
    let n = (row.len() / 34).min(x.len());
    let (pw, px) = (row.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 2];
    for i in 0..n {
        let b = pw.add(i * 34);
        let xb = &*px.add(i);
        let w = _mm256_loadu_si256(b.add(2) as *const __m256i);
        let xv = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let d = _mm256_set1_ps(f16x1(b) * xb.d);
        acc[i & 1] = _mm256_fmadd_ps(d, mul_sum_i8(w, xv), acc[i & 1]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_0_avx2(row: &[u8], x: &[BlockQ8]) -> f32 {
    let n = (row.len() / 18).min(x.len());
    let (pw, px) = (row.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 2];
    let eight = _mm256_set1_epi8(8);
    for i in 0..n {
        let b = pw.add(i * 18);
        let xb = &*px.add(i);
        let w = _mm256_sub_epi8(nibbles(b.add(2)), eight);
        let xv = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let d = _mm256_set1_ps(f16x1(b) * xb.d);
        acc[i & 1] = _mm256_fmadd_ps(d, mul_sum_i8(w, xv), acc[i & 1]);
    }
    hsum(_mm256_add_ps(acc[0], acc[1]))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_1_avx2(row: &[u8], x: &[BlockQ8]) -> f32 {
    let n = (row.len() / 20).min(x.len());
    let (pw, px) = (row.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut mins = 0.0f32;
    let ones = _mm256_set1_epi16(1);
    for i in 0..n {
        let b = pw.add(i * 20);
        let xb = &*px.add(i);
        let (d, m) = f16x2(b);
        let w = nibbles(b.add(4));
        let xv = _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i);
        let s = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(w, xv), ones));
        acc[i & 1] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb.d), s, acc[i & 1]);
        mins += m * xb.s;
    }
    hsum(_mm256_add_ps(acc[0], acc[1])) + mins
}

/// The same block dots with `vpdpbusd` (u8 × i8 → i32, four products per lane in one step),
/// as tiles of up to eight tokens: each weight block is loaded and unpacked once for all of
/// them (prompt prefill), and the one-token dot is the tile of one.
mod vnni {
    use std::arch::x86_64::*;

    use super::{f16x1, f16x2, hsum, nibbles};
    use crate::tensor::quant::BlockQ8;

    /// The activation block of token `t` at block `i` (token-major, `blocks` per token).
    #[inline(always)]
    unsafe fn xq(px: *const BlockQ8, blocks: usize, t: usize, i: usize) -> (&'static BlockQ8, __m256i) {
        let xb = &*px.add(t * blocks + i);
        (xb, _mm256_loadu_si256(xb.qs.as_ptr() as *const __m256i))
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn q8_0_tile<const N: usize>(row: &[u8], x: &[BlockQ8], blocks: usize, out: &mut [f32]) {
        assert!(row.len() >= blocks * 34 && x.len() >= N * blocks && out.len() >= N);
        let (pw, px) = (row.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); N];
        for i in 0..blocks {
            let b = pw.add(i * 34);
            let w = _mm256_loadu_si256(b.add(2) as *const __m256i);
            // |w| · (x with w's sign): exact products with an unsigned left operand.
            let aw = _mm256_sign_epi8(w, w);
            let dw = f16x1(b);
            for (t, a) in acc.iter_mut().enumerate() {
                let (xb, xv) = xq(px, blocks, t, i);
                let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, _mm256_sign_epi8(xv, w));
                *a = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb.d), _mm256_cvtepi32_ps(s), *a);
            }
        }
        for t in 0..N {
            out[t] = hsum(acc[t]);
        }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn q4_0_tile<const N: usize>(row: &[u8], x: &[BlockQ8], blocks: usize, out: &mut [f32]) {
        assert!(row.len() >= blocks * 18 && x.len() >= N * blocks && out.len() >= N);
        let (pw, px) = (row.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); N];
        let mut corr = [0.0f32; N];
        for i in 0..blocks {
            let b = pw.add(i * 18);
            let w = nibbles(b.add(2));
            let dw = f16x1(b);
            for t in 0..N {
                let (xb, xv) = xq(px, blocks, t, i);
                // Σ (q − 8)·x = Σ q·x − 8·Σ x, with q unsigned; xb.s = d_x·Σ x.
                let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, xv);
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb.d), _mm256_cvtepi32_ps(s), acc[t]);
                corr[t] += dw * xb.s;
            }
        }
        for t in 0..N {
            out[t] = hsum(acc[t]) - 8.0 * corr[t];
        }
    }

    #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
    unsafe fn q4_1_tile<const N: usize>(row: &[u8], x: &[BlockQ8], blocks: usize, out: &mut [f32]) {
        assert!(row.len() >= blocks * 20 && x.len() >= N * blocks && out.len() >= N);
        let (pw, px) = (row.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); N];
        let mut mins = [0.0f32; N];
        for i in 0..blocks {
            let b = pw.add(i * 20);
            let (dw, m) = f16x2(b);
            let w = nibbles(b.add(4));
            for t in 0..N {
                let (xb, xv) = xq(px, blocks, t, i);
                let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, xv);
                acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * xb.d), _mm256_cvtepi32_ps(s), acc[t]);
                mins[t] += m * xb.s;
            }
        }
        for t in 0..N {
            out[t] = hsum(acc[t]) + mins[t];
        }
    }

    macro_rules! tiles {
        ($single:ident, $multi:ident, $tile:ident) => {
            #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
            pub(super) unsafe fn $single(row: &[u8], x: &[BlockQ8]) -> f32 {
                let mut out = [0.0f32; 1];
                $tile::<1>(row, x, x.len(), &mut out);
                out[0]
            }

            #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
            pub(super) unsafe fn $multi(row: &[u8], x: &[BlockQ8], blocks: usize, out: &mut [f32]) {
                match out.len() {
                    1 => $tile::<1>(row, x, blocks, out),
                    2 => $tile::<2>(row, x, blocks, out),
                    3 => $tile::<3>(row, x, blocks, out),
                    4 => $tile::<4>(row, x, blocks, out),
                    5 => $tile::<5>(row, x, blocks, out),
                    6 => $tile::<6>(row, x, blocks, out),
                    7 => $tile::<7>(row, x, blocks, out),
                    _ => $tile::<8>(row, x, blocks, out),
                }
            }
        };
    }
    /// R rows (`row_bytes` apart) · one token, interleaved block by block: R independent
    /// accumulator chains, each activation block loaded once. `BB` is the block's bytes; `body`
    /// turns (weight block pointer, activation block, activation vector) into (scaled dot
    /// vector contribution, scalar term).
    macro_rules! rows_kernel {
        ($name:ident, $bb:expr, |$b:ident, $xb:ident, $xv:ident| $body:block) => {
            #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
            unsafe fn $name<const R: usize>(rows: &[u8], row_bytes: usize, x: &[BlockQ8], out: &mut [f32]) {
                let blocks = x.len();
                assert!(
                    row_bytes >= blocks * $bb
                        && rows.len() >= (R - 1) * row_bytes + blocks * $bb
                        && out.len() >= R
                );
                let (pw, px) = (rows.as_ptr(), x.as_ptr());
                let mut acc = [_mm256_setzero_ps(); R];
                let mut extra = [0.0f32; R];
                for i in 0..blocks {
                    let $xb = &*px.add(i);
                    let $xv = _mm256_loadu_si256($xb.qs.as_ptr() as *const __m256i);
                    for r in 0..R {
                        let $b = pw.add(r * row_bytes + i * $bb);
                        let (scale, v, e): (f32, __m256i, f32) = $body;
                        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(scale), _mm256_cvtepi32_ps(v), acc[r]);
                        extra[r] += e;
                    }
                }
                for r in 0..R {
                    out[r] = hsum(acc[r]) + extra[r];
                }
            }
        };
    }
    rows_kernel!(q8_0_rows, 34, |b, xb, xv| {
        let w = _mm256_loadu_si256(b.add(2) as *const __m256i);
        let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(xv, w));
        (f16x1(b) * xb.d, s, 0.0)
    });
    rows_kernel!(q4_0_rows, 18, |b, xb, xv| {
        let dw = f16x1(b);
        let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles(b.add(2)), xv);
        (dw * xb.d, s, -8.0 * dw * xb.s)
    });
    rows_kernel!(q4_1_rows, 20, |b, xb, xv| {
        let (dw, m) = f16x2(b);
        let s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), nibbles(b.add(4)), xv);
        (dw * xb.d, s, m * xb.s)
    });

    macro_rules! rows_dispatch {
        ($pub_name:ident, $kernel:ident) => {
            #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
            pub(super) unsafe fn $pub_name(rows: &[u8], row_bytes: usize, x: &[BlockQ8], out: &mut [f32]) {
                match out.len() {
                    0 => {}
                    1 => $kernel::<1>(rows, row_bytes, x, out),
                    2 => $kernel::<2>(rows, row_bytes, x, out),
                    3 => $kernel::<3>(rows, row_bytes, x, out),
                    _ => $kernel::<4>(rows, row_bytes, x, out),
                }
            }
        };
    }
    rows_dispatch!(dot_q8_0_rows, q8_0_rows);
    rows_dispatch!(dot_q4_0_rows, q4_0_rows);
    rows_dispatch!(dot_q4_1_rows, q4_1_rows);

    tiles!(dot_q8_0, dot_q8_0_x4, q8_0_tile);
    tiles!(dot_q4_0, dot_q4_0_x4, q4_0_tile);
    tiles!(dot_q4_1, dot_q4_1_x4, q4_1_tile);
}
