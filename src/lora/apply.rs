//! Unmerged LoRA: `y[t] += w · s · B (A x[t])` for a block of token rows, split across the
//! thread pool. The rank-r intermediate is tiny; the cost is reading A and B once per step.

use crate::backend::cpu::pool::{chunking, SharedOut};
use crate::backend::cpu::{Kernels, ThreadPool};

use super::LoraPair;

/// Add `weight · pair.scale · B(A·x)` to `y`, where `x` is `[n, d_in]` and `y` is
/// `[n, d_out]` (row strides `x_stride` and `y_stride`, which may exceed the widths when the
/// rows are views into wider buffers). `tmp` is scratch space, grown as needed.
#[allow(clippy::too_many_arguments)]
pub fn apply_lora(
    pool: &ThreadPool,
    k: &Kernels,
    pair: &LoraPair,
    weight: f32,
    x: &[f32],
    x_stride: usize,
    n: usize,
    y: &mut [f32],
    y_stride: usize,
    tmp: &mut Vec<f32>,
) {
    let (r, din, dout) = (pair.rank, pair.d_in, pair.d_out);
    assert!(n == 0 || (x.len() >= (n - 1) * x_stride + din && y.len() >= (n - 1) * y_stride + dout));
    tmp.resize(n * r, 0.0);
    let s = weight * pair.scale;
    for t in 0..n {
        let xt = &x[t * x_stride..t * x_stride + din];
        for j in 0..r {
            tmp[t * r + j] = s * (k.dot_f32)(&pair.a[j * din..(j + 1) * din], xt);
        }
    }
    let tmp: &[f32] = tmp;
    let out = SharedOut::new(y);
    let (n_chunks, per) = chunking(dout, pool.n_threads(), 64, 8);
    let work = |chunk: usize, _thread: usize| {
        for o in chunk * per..((chunk + 1) * per).min(dout) {
            let brow = &pair.b[o * r..(o + 1) * r];
            for t in 0..n {
                let add = (k.dot_f32)(brow, &tmp[t * r..(t + 1) * r]);
                // SAFETY: column `o` belongs to this chunk and `t < n`, so the element is in
                // bounds (checked above) and written by this chunk only.
                unsafe { *out.get().add(t * y_stride + o) += add };
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
        apply_lora(&pool, &Kernels::detect(), &pair, 2.0, &x, 3, 1, &mut y, 2, &mut Vec::new());
        assert_eq!(y, vec![15., 12.5]);
    }
}
