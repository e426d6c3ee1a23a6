//! Matrix products `Y[t, r] = Σ_c W[r, c] · X[t, c]` for every weight dtype, split across the
//! thread pool by output rows. Several matrices that read the same input (Q, K and V; gate and
//! up) run as one job so the input is quantized once and the pool is woken once.

use super::kernels::Kernels;
use super::pool::{chunking, SharedOut, ThreadPool};
use crate::tensor::kquant::{dequantize_q4k, dequantize_q5k, dequantize_q6k, QK_K};
use crate::tensor::quant::{quantize_q8_blocks, BlockQ8, QK};
use crate::tensor::{DType, QMatrix};

/// Tokens per multi-token dot call (the kernels take up to 8).
const TILE_TOKENS: usize = 8;

/// One matrix of a [`matmul_many`] call and where its output goes (`[n, w.rows()]`).
pub struct MatJob<'a> {
    /// The weights.
    pub w: &'a QMatrix,
    /// Output, row-major `[n_tokens, w.rows()]`.
    pub y: &'a mut [f32],
}

/// Reusable buffers for matrix products (quantized activations), so the decode loop does not
/// allocate.
#[derive(Default)]
pub struct Workspace {
    q8: Vec<BlockQ8>,
}

/// `y = x · wᵀ` for one matrix (`x` is `[n, w.cols()]`, `y` is `[n, w.rows()]`).
pub fn matmul(
    pool: &ThreadPool,
    k: &Kernels,
    x: &[f32],
    n: usize,
    w: &QMatrix,
    y: &mut [f32],
    ws: &mut Workspace,
) {
    matmul_many(pool, k, x, n, &mut [MatJob { w, y }], ws);
}

/// Several products that share the input `x` (`[n, cols]`), in one pass of the pool.
pub fn matmul_many(
    pool: &ThreadPool,
    k: &Kernels,
    x: &[f32],
    n: usize,
    jobs: &mut [MatJob<'_>],
    ws: &mut Workspace,
) {
    let Some(first) = jobs.first() else { return };
    let cols = first.w.cols();
    assert_eq!(x.len(), n * cols, "matmul: input is not [n, cols]");
    for j in jobs.iter() {
        assert_eq!(j.w.cols(), cols, "matmul_many: matrices must share their input width");
        assert_eq!(j.y.len(), n * j.w.rows(), "matmul: output is not [n, rows]");
    }
    let needs_q8 = jobs.iter().any(|j| matches!(j.w.dtype(), DType::Q8_0 | DType::Q4_0 | DType::Q4_1));
    if needs_q8 {
        let blocks = cols / QK;
        ws.q8.resize(n * blocks, BlockQ8::default());
        quantize_q8_blocks(x, &mut ws.q8);
    }
    let xq: &[BlockQ8] = &ws.q8;
    let total: usize = jobs.iter().map(|j| j.w.rows()).sum();
    let outs: Vec<(SharedOut, &QMatrix)> = jobs.iter_mut().map(|j| (SharedOut::new(j.y), j.w)).collect();
    let (n_chunks, per) = chunking(total, pool.n_threads(), 16, 4);
    pool.run(n_chunks, &|chunk, _| {
        let range = chunk * per..((chunk + 1) * per).min(total);
        let mut base = 0;
        for &(out, w) in &outs {
            let rows = w.rows();
            let lo = range.start.max(base);
            let hi = range.end.min(base + rows);
            if lo < hi {
                rows_product(k, w, x, xq, n, lo - base..hi - base, out);
            }
            base += rows;
        }
    });
}

/// Compute output rows `rows` of `w` for all `n` tokens.
fn rows_product(
    k: &Kernels,
    w: &QMatrix,
    x: &[f32],
    xq: &[BlockQ8],
    n: usize,
    rows: std::ops::Range<usize>,
    out: SharedOut,
) {
    let cols = w.cols();
    let nr = w.rows();
    let put = |t: usize, r: usize, v: f32| {
        // SAFETY: `r` lies in this thread's row range and `t < n`, so the index is in bounds
        // of the `[n, nr]` output and written by this thread only (chunks cover disjoint row ranges).
        unsafe { *out.get().add(t * nr + r) = v };
    };
    match w.dtype() {
        DType::F32 => {
            let wf = crate::tensor::storage::cast_slice::<f32>(w.bytes())
                .expect("f32 matrices are aligned at load");
            for r in rows {
                let wr = &wf[r * cols..(r + 1) * cols];
                for t in 0..n {
                    put(t, r, (k.dot_f32)(wr, &x[t * cols..(t + 1) * cols]));
                }
            }
        }
        DType::F16 | DType::BF16 => {
            let dot = if w.dtype() == DType::F16 { k.dot_f16 } else { k.dot_bf16 };
            for r in rows {
                let wr = w.row(r);
                for t in 0..n {
                    put(t, r, dot(wr, &x[t * cols..(t + 1) * cols]));
                }
            }
        }
        DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => {
            let (dot_rows, dot4) = match w.dtype() {
                DType::Q8_0 => (k.dot_q8_0_rows, k.dot_q8_0_x4),
                DType::Q4_0 => (k.dot_q4_0_rows, k.dot_q4_0_x4),
                _ => (k.dot_q4_1_rows, k.dot_q4_1_x4),
            };
            let blocks = cols / QK;
            if n == 1 {
                // One token (batch-1 decode): four rows per pass.
                let rb = w.row_bytes();
                let bytes = w.bytes();
                let mut out4 = [0.0f32; 4];
                for r0 in rows.clone().step_by(4) {
                    let m = (rows.end - r0).min(4);
                    dot_rows(&bytes[r0 * rb..(r0 + m) * rb], rb, &xq[..blocks], &mut out4[..m]);
                    for (i, v) in out4[..m].iter().enumerate() {
                        put(0, r0 + i, *v);
                    }
                }
                return;
            }
            let mut tile = [0.0f32; TILE_TOKENS];
            for r in rows {
                let wr = w.row(r);
                // Several tokens: each weight block is unpacked once per tile of tokens.
                for t0 in (0..n).step_by(TILE_TOKENS) {
                    let tn = TILE_TOKENS.min(n - t0);
                    dot4(wr, &xq[t0 * blocks..(t0 + tn) * blocks], blocks, &mut tile[..tn]);
                    for (ti, v) in tile[..tn].iter().enumerate() {
                        put(t0 + ti, r, *v);
                    }
                }
            }
        }
        DType::Q4K | DType::Q5K | DType::Q6K => {
            let deq = match w.dtype() {
                DType::Q4K => dequantize_q4k,
                DType::Q5K => dequantize_q5k,
                _ => dequantize_q6k,
            };
            let bb = w.dtype().block_bytes();
            const TILE: usize = 16;
            let mut tmp = [0.0f32; QK_K];
            for r in rows {
                let wr = w.row(r);
                for t0 in (0..n).step_by(TILE) {
                    let tn = TILE.min(n - t0);
                    let mut acc = [0.0f32; TILE];
                    for (bi, blk) in wr.chunks_exact(bb).enumerate() {
                        deq(blk, &mut tmp);
                        for (ti, a) in acc.iter_mut().enumerate().take(tn) {
                            let xs = &x[(t0 + ti) * cols + bi * QK_K..(t0 + ti) * cols + (bi + 1) * QK_K];
                            *a += (k.dot_f32)(&tmp, xs);
                        }
                    }
                    for (ti, a) in acc.iter().enumerate().take(tn) {
                        put(t0 + ti, r, *a);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Storage;

    use crate::test_util::pseudo_random as vals;

    fn reference(w: &QMatrix, x: &[f32], n: usize) -> Vec<f32> {
        let wf = w.to_f32();
        let (rows, cols) = (w.rows(), w.cols());
        let mut y = vec![0.0; n * rows];
        for t in 0..n {
            for r in 0..rows {
                y[t * rows + r] = (0..cols).map(|c| wf[r * cols + c] * x[t * cols + c]).sum();
            }
        }
        y
    }

    #[test]
    fn every_dtype_matches_the_dequantized_reference() {
        let pool = ThreadPool::new(2);
        let k = Kernels::detect();
        let (rows, cols, n) = (37, 256, 3);
        let x = vals(n * cols, 3);
        let f = QMatrix::from_f32(rows, cols, &vals(rows * cols, 4));
        let h: Vec<u8> =
            f.to_f32().iter().flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes()).collect();
        // Random bytes make valid K-quant blocks once the f16 scales are made finite and small.
        let kq = |dt: DType, d_at: &[usize]| {
            let rb = dt.row_bytes(cols).unwrap();
            let mut b: Vec<u8> = vals(rows * rb, 9).iter().map(|v| (v * 127.0 + 128.0) as u8).collect();
            for blk in b.chunks_exact_mut(dt.block_bytes()) {
                for &a in d_at {
                    blk[a..a + 2].copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
                }
            }
            QMatrix::new(dt, rows, cols, Storage::from_bytes(&b), "k").unwrap()
        };
        let mats = vec![
            f.clone(),
            QMatrix::new(DType::F16, rows, cols, Storage::from_bytes(&h), "h").unwrap(),
            f.quantize(DType::Q8_0).unwrap(),
            f.quantize(DType::Q4_0).unwrap(),
            kq(DType::Q4K, &[0, 2]),
            kq(DType::Q5K, &[0, 2]),
            kq(DType::Q6K, &[208]),
        ];
        let mut ws = Workspace::default();
        for w in &mats {
            let want = reference(w, &x, n);
            let mut y = vec![0.0; n * rows];
            matmul(&pool, &k, &x, n, w, &mut y, &mut ws);
            // Q8 activations cost ~1% relative error; float paths are exact up to rounding.
            let tol = if matches!(w.dtype(), DType::Q8_0 | DType::Q4_0) { 2e-2 } else { 1e-4 };
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, b) in want.iter().zip(&y) {
                assert!((a - b).abs() <= tol * scale, "{:?}: {a} vs {b}", w.dtype());
            }
        }
    }

    #[test]
    fn many_equals_separate() {
        let pool = ThreadPool::new(2);
        let k = Kernels::detect();
        let (cols, n) = (64, 2);
        let x = vals(n * cols, 5);
        let a = QMatrix::from_f32(5, cols, &vals(5 * cols, 6)).quantize(DType::Q8_0).unwrap();
        let b = QMatrix::from_f32(9, cols, &vals(9 * cols, 7));
        let mut ws = Workspace::default();
        let (mut ya, mut yb) = (vec![0.0; n * 5], vec![0.0; n * 9]);
        matmul_many(
            &pool,
            &k,
            &x,
            n,
            &mut [MatJob { w: &a, y: &mut ya }, MatJob { w: &b, y: &mut yb }],
            &mut ws,
        );
        let (mut ya2, mut yb2) = (vec![0.0; n * 5], vec![0.0; n * 9]);
        matmul(&pool, &k, &x, n, &a, &mut ya2, &mut ws);
        matmul(&pool, &k, &x, n, &b, &mut yb2, &mut ws);
        assert_eq!(ya, ya2);
        assert_eq!(yb, yb2);
    }
}
