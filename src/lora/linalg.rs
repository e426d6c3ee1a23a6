//! Small dense linear algebra in f64 for composing adapters: thin QR (modified Gram-Schmidt
//! with re-orthogonalization) and SVD by one-sided Jacobi. Sizes are ranks (tens), widths
//! are model dimensions (thousands): never an `out × in` matrix.

/// Column-major matrix `rows × cols`.
#[derive(Debug, Clone)]
pub struct Mat {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `data[c * rows + r]`.
    pub data: Vec<f64>,
}

impl Mat {
    /// A zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// Column `c`.
    pub fn col(&self, c: usize) -> &[f64] {
        &self.data[c * self.rows..(c + 1) * self.rows]
    }

    fn col_mut(&mut self, c: usize) -> &mut [f64] {
        &mut self.data[c * self.rows..(c + 1) * self.rows]
    }

    /// Element `(r, c)`.
    pub fn at(&self, r: usize, c: usize) -> f64 {
        self.data[c * self.rows + r]
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Thin QR: `a = q · r` with `q` (`rows × cols`) orthonormal where `a` has full column rank;
/// a column that is (numerically) dependent on earlier ones gets a zero `q` column and a zero
/// diagonal in `r`, which keeps the product exact.
pub fn qr(a: &Mat) -> (Mat, Mat) {
    let (m, n) = (a.rows, a.cols);
    let mut q = a.clone();
    let mut r = Mat::zeros(n, n);
    let scale = a.data.iter().fold(0.0f64, |s, v| s.max(v.abs())).max(f64::MIN_POSITIVE);
    for j in 0..n {
        // Two passes of Gram-Schmidt keep q orthogonal to working precision.
        for _ in 0..2 {
            for i in 0..j {
                let p = dot(q.col(i), q.col(j));
                r.data[j * n + i] += p;
                let qi: Vec<f64> = q.col(i).to_vec();
                for (x, y) in q.col_mut(j).iter_mut().zip(&qi) {
                    *x -= p * y;
                }
            }
        }
        let norm = dot(q.col(j), q.col(j)).sqrt();
        if norm <= 1e-12 * scale * (m as f64).sqrt() {
            q.col_mut(j).fill(0.0);
            r.data[j * n + j] = 0.0;
        } else {
            q.col_mut(j).iter_mut().for_each(|x| *x /= norm);
            r.data[j * n + j] = norm;
        }
    }
    (q, r)
}

/// SVD of a small square matrix: `a = u · diag(s) · vᵀ`, singular values in descending order.
pub fn svd(a: &Mat) -> (Mat, Vec<f64>, Mat) {
    let n = a.cols;
    let mut w = a.clone();
    let mut v = Mat::zeros(n, n);
    for i in 0..n {
        v.data[i * n + i] = 1.0;
    }
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let alpha = dot(w.col(p), w.col(p));
                let beta = dot(w.col(q), w.col(q));
                let gamma = dot(w.col(p), w.col(q));
                if gamma.abs() <= 1e-15 * (alpha * beta).sqrt() || gamma == 0.0 {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for m in [&mut w, &mut v] {
                    for k in 0..m.rows {
                        let (xp, xq) = (m.at(k, p), m.at(k, q));
                        m.data[p * m.rows + k] = c * xp - s * xq;
                        m.data[q * m.rows + k] = s * xp + c * xq;
                    }
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut order: Vec<(usize, f64)> = (0..n).map(|j| (j, dot(w.col(j), w.col(j)).sqrt())).collect();
    order.sort_by(|x, y| y.1.total_cmp(&x.1));
    let mut u = Mat::zeros(a.rows, n);
    let mut vs = Mat::zeros(n, n);
    let mut s = Vec::with_capacity(n);
    for (k, &(j, sigma)) in order.iter().enumerate() {
        s.push(sigma);
        if sigma > 0.0 {
            for (dst, src) in u.col_mut(k).iter_mut().zip(w.col(j)) {
                *dst = src / sigma;
            }
        }
        vs.col_mut(k).copy_from_slice(v.col(j));
    }
    (u, s, vs)
}

/// `a · b`.
pub fn matmul(a: &Mat, b: &Mat) -> Mat {
    assert_eq!(a.cols, b.rows, "matmul shapes");
    let mut c = Mat::zeros(a.rows, b.cols);
    for j in 0..b.cols {
        for k in 0..a.cols {
            let bkj = b.at(k, j);
            if bkj != 0.0 {
                let ak: Vec<f64> = a.col(k).to_vec();
                for (x, y) in c.col_mut(j).iter_mut().zip(&ak) {
                    *x += bkj * y;
                }
            }
        }
    }
    c
}

/// `aᵀ`.
pub fn transpose(a: &Mat) -> Mat {
    let mut t = Mat::zeros(a.cols, a.rows);
    for c in 0..a.cols {
        for r in 0..a.rows {
            t.data[r * a.cols + c] = a.at(r, c);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: usize, cols: usize, seed: u32) -> Mat {
        let v = crate::test_util::pseudo_random(rows * cols, seed);
        Mat { rows, cols, data: v.iter().map(|&x| x as f64).collect() }
    }

    fn close(a: &Mat, b: &Mat, tol: f64) -> bool {
        a.data.iter().zip(&b.data).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn qr_reconstructs_and_is_orthonormal() {
        let a = m(40, 6, 1);
        let (q, r) = qr(&a);
        assert!(close(&matmul(&q, &r), &a, 1e-12));
        let qtq = matmul(&transpose(&q), &q);
        for i in 0..6 {
            for j in 0..6 {
                assert!((qtq.at(i, j) - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        // A dependent column keeps the product exact.
        let mut d = a.clone();
        let c0 = d.col(0).to_vec();
        d.col_mut(3).iter_mut().zip(&c0).for_each(|(x, y)| *x = 2.0 * y);
        let (q, r) = qr(&d);
        assert!(close(&matmul(&q, &r), &d, 1e-12));
    }

    #[test]
    fn svd_reconstructs_with_sorted_values() {
        let a = m(7, 7, 3);
        let (u, s, v) = svd(&a);
        assert!(s.windows(2).all(|w| w[0] >= w[1]));
        let mut us = u.clone();
        for (j, sj) in s.iter().enumerate() {
            us.col_mut(j).iter_mut().for_each(|x| *x *= sj);
        }
        assert!(close(&matmul(&us, &transpose(&v)), &a, 1e-10));
    }
}
