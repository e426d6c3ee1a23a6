//! Unmerged LoRA: `y[t] += w · s · B (A x[t])` for a block of token rows, split across the
//! thread pool. The rank-r intermediate is tiny; the cost is reading A and B once per step.

use crate::backend::cpu::kernels::dot_f32_portable;
use crate::backend::cpu::pool::{chunking, SharedOut};
use crate::backend::cpu::{Kernels, ThreadPool};

use super::LoraPair;

/// For every listed `(row, weight)`: add `weight · pair.scale · B(A·x[row])` to `y[row]`.
/// `x` and `y` hold rows of width ≥ `d_in` / `d_out` at strides `x_stride` / `y_stride`.
/// A and B are read once for all listed rows (a mixed batch groups its rows by adapter);
/// `tmp` is scratch space, grown as needed.
#[allow(clippy::too_many_arguments)]
pub fn apply_lora(
    pool: &ThreadPool,
    k: &Kernels,
    pair: &LoraPair,
    rows: &[(usize, f32)],
    x: &[f32],
    x_stride: usize,
    y: &mut [f32],
    y_stride: usize,
    tmp: &mut Vec<f32>,
) {
    let (r, din, dout) = (pair.rank, pair.d_in, pair.d_out);
    let n = rows.len();
    for &(row, _) in rows {
        assert!(x.len() >= row * x_stride + din && y.len() >= row * y_stride + dout, "LoRA row out of range");
    }
    tmp.resize(n * r, 0.0);
    // Phase 1: the rank-r intermediates, split across the pool by row.
    let inter = SharedOut::new(tmp);
    let first = |i: usize, _thread: usize| {
        let (row, weight) = rows[i];
        let s = weight * pair.scale;
        let xt = &x[row * x_stride..row * x_stride + din];
        for j in 0..r {
            let v = s * (k.dot_f32)(&pair.a[j * din..(j + 1) * din], xt);
            // SAFETY: chunk `i` writes only `tmp[i * r..(i + 1) * r]`, in bounds after the
            // resize above, and `tmp` outlives the job.
            unsafe { *inter.get().add(i * r + j) = v };
        }
    };
    if din * r * n < 1 << 14 {
        (0..n).for_each(|i| first(i, 0));
    } else {
        pool.run(n, &first);
    }
    let tmp: &[f32] = tmp;
    let out = SharedOut::new(y);
    let (n_chunks, per) = chunking(dout, pool.n_threads(), 64, 8);
    let work = |chunk: usize, _thread: usize| {
        for o in chunk * per..((chunk + 1) * per).min(dout) {
            let brow = &pair.b[o * r..(o + 1) * r];
            for (i, &(row, _)) in rows.iter().enumerate() {
                // Rank-length rows: the inlined portable dot beats a kernel call and its horizontal sum.
                let add = dot_f32_portable(brow, &tmp[i * r..(i + 1) * r]);
                // SAFETY: column `o` belongs to this chunk only, and the row was checked to be
                // in bounds above; rows are distinct within one call (one entry per row).
                unsafe { *out.get().add(row * y_stride + o) += add };
            }
        }
    };
    if dout * r * n < 1 << 14 {
        for c in 0..n_chunks {
            work(c, 0);
        }
    } else {
        pool.run(n_chunks, &work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_dense_formula() {
        let pair = LoraPair {
            rank: 2,
            d_in: 3,
            d_out: 2,
            a: vec![1., 0., 2., 0., 1., -1.],
            b: vec![1., 2., -1., 0.5],
            scale: 0.5,
        };
        // x = [1, 2, 3]; A x = [7, -1]; B (A x) = [5, -7.5]; · 0.5 · 2 = [5, -7.5].
        let x = vec![1., 2., 3.];
        let mut y = vec![10., 20.];
        let pool = ThreadPool::new(2);
        apply_lora(&pool, &Kernels::detect(), &pair, &[(0, 2.0)], &x, 3, &mut y, 2, &mut Vec::new());
        assert_eq!(y, vec![15., 12.5]);
    }
}
