//! Host-side packing of weights into the layouts the CUDA kernels read (`kernels/README.md`):
//! ggml's interleaved blocks (`scale, quants, scale, quants…`) become separate arrays of quants
//! and of scales, so a warp reads its quants with aligned, coalesced loads. Quants keep their
//! exact bits; K-quants (no GPU kernel) and f32 become f16.
//!
//! [`Packed::matvec_ref`] is the kernels' arithmetic on the CPU: the GPU parity tests compare
//! against it, and the unit tests here check it against the CPU engine's dequantization.

use half::{bf16, f16};

use crate::error::{Error, Result};
use crate::tensor::quant::QK;
use crate::tensor::{DType, QMatrix};

/// A weight matrix `[rows, cols]` in a kernel's layout.
#[derive(Debug, Clone, PartialEq)]
pub enum Packed {
    /// Row-major halves.
    F16(Vec<f16>),
    /// Row-major bfloat16.
    Bf16(Vec<bf16>),
    /// Q8_0: `qs[r·cols + c]`; `d[r·cols/32 + b]` per block of 32.
    Q8_0 {
        /// Quants, row-major.
        qs: Vec<i8>,
        /// One scale per block.
        d: Vec<f16>,
    },
    /// Q4_0: 16 bytes per block (byte j: element j low nibble, element j+16 high nibble),
    /// blocks row-major; value `d·(q − 8)`.
    Q4_0 {
        /// Nibbles.
        qs: Vec<u8>,
        /// One scale per block.
        d: Vec<f16>,
    },
    /// Q4_1: nibbles as Q4_0; value `d·q + m`.
    Q4_1 {
        /// Nibbles.
        qs: Vec<u8>,
        /// One scale per block.
        d: Vec<f16>,
        /// One min per block.
        m: Vec<f16>,
    },
}

/// A packed matrix with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedMatrix {
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// The data.
    pub data: Packed,
}

fn half_at(b: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([b[at], b[at + 1]])
}

impl PackedMatrix {
    /// Pack `m` (any loader dtype). Q8_0/Q4_0/Q4_1/F16/BF16 keep their bits; F32 and the
    /// K-quants become f16 (there is no GPU kernel for them; f16 keeps K-quant values exactly
    /// enough for decoding, and is what a user would pick for an f32 checkpoint on a GPU).
    pub fn pack(m: &QMatrix) -> Result<PackedMatrix> {
        let (rows, cols) = (m.rows(), m.cols());
        let blocks_per_row = cols / QK;
        let data = match m.dtype() {
            DType::F16 => {
                Packed::F16(m.bytes().chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect())
            }
            DType::BF16 => {
                Packed::Bf16(m.bytes().chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]])).collect())
            }
            DType::Q8_0 => {
                let (mut qs, mut d) =
                    (Vec::with_capacity(rows * cols), Vec::with_capacity(rows * blocks_per_row));
                for block in m.bytes().chunks_exact(34) {
                    d.push(half_at(block, 0));
                    qs.extend(block[2..34].iter().map(|&b| b as i8));
                }
                Packed::Q8_0 { qs, d }
            }
            DType::Q4_0 => {
                let (mut qs, mut d) =
                    (Vec::with_capacity(rows * cols / 2), Vec::with_capacity(rows * blocks_per_row));
                for block in m.bytes().chunks_exact(18) {
                    d.push(half_at(block, 0));
                    qs.extend_from_slice(&block[2..18]);
                }
                Packed::Q4_0 { qs, d }
            }
            DType::Q4_1 => {
                let n = rows * blocks_per_row;
                let (mut qs, mut d, mut mins) =
                    (Vec::with_capacity(rows * cols / 2), Vec::with_capacity(n), Vec::with_capacity(n));
                for block in m.bytes().chunks_exact(20) {
                    d.push(half_at(block, 0));
                    mins.push(half_at(block, 2));
                    qs.extend_from_slice(&block[4..20]);
                }
                Packed::Q4_1 { qs, d, m: mins }
            }
            DType::F32 | DType::Q4K | DType::Q5K | DType::Q6K => {
                let mut out = Vec::with_capacity(rows * cols);
                let mut row = vec![0f32; cols];
                for r in 0..rows {
                    m.dequantize_row_into(r, &mut row);
                    out.extend(row.iter().map(|&v| f16::from_f32(v)));
                }
                Packed::F16(out)
            }
        };
        let p = PackedMatrix { rows, cols, data };
        p.check()?;
        Ok(p)
    }

    /// Check that the arrays have the lengths the shape requires (a packed matrix built by
    /// hand or read back from a device must agree with its shape before a kernel reads it).
    pub fn check(&self) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        let n = rows * cols;
        let bad = |what: &str, got: usize, want: usize| {
            Err(Error::invalid(
                "packed matrix",
                format!("{rows}x{cols}: {what} has {got} elements, {want} expected"),
            ))
        };
        let blocks = |d: &[f16]| -> Result<()> {
            if !cols.is_multiple_of(QK) {
                return Err(Error::invalid(
                    "packed matrix",
                    format!("{cols} columns is not a multiple of {QK}"),
                ));
            }
            if d.len() != n / QK {
                return bad("scales", d.len(), n / QK);
            }
            Ok(())
        };
        match &self.data {
            Packed::F16(w) if w.len() != n => bad("f16 data", w.len(), n),
            Packed::Bf16(w) if w.len() != n => bad("bf16 data", w.len(), n),
            Packed::Q8_0 { qs, d } => {
                blocks(d)?;
                if qs.len() != n {
                    return bad("quants", qs.len(), n);
                }
                Ok(())
            }
            Packed::Q4_0 { qs, d } | Packed::Q4_1 { qs, d, .. } => {
                blocks(d)?;
                if let Packed::Q4_1 { m, .. } = &self.data {
                    if m.len() != d.len() {
                        return bad("mins", m.len(), d.len());
                    }
                }
                if qs.len() != n / 2 {
                    return bad("nibbles", qs.len(), n / 2);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Device bytes of this matrix (what its upload reserves).
    pub fn device_bytes(&self) -> u64 {
        (match &self.data {
            Packed::F16(w) => w.len() * 2,
            Packed::Bf16(w) => w.len() * 2,
            Packed::Q8_0 { qs, d } => qs.len() + d.len() * 2,
            Packed::Q4_0 { qs, d } => qs.len() + d.len() * 2,
            Packed::Q4_1 { qs, d, m } => qs.len() + d.len() * 2 + m.len() * 2,
        }) as u64
    }

    /// Element `(r, c)` as the kernels dequantize it.
    pub fn value(&self, r: usize, c: usize) -> f32 {
        let i = r * self.cols + c;
        let (b, j) = (i / QK, i % QK);
        let nibble = |qs: &[u8]| {
            let byte = qs[b * 16 + (j % 16)];
            if j < 16 {
                byte & 0x0f
            } else {
                byte >> 4
            }
        };
        match &self.data {
            Packed::F16(w) => w[i].to_f32(),
            Packed::Bf16(w) => w[i].to_f32(),
            Packed::Q8_0 { qs, d } => d[b].to_f32() * qs[i] as f32,
            Packed::Q4_0 { qs, d } => d[b].to_f32() * (nibble(qs) as f32 - 8.0),
            Packed::Q4_1 { qs, d, m } => d[b].to_f32() * nibble(qs) as f32 + m[b].to_f32(),
        }
    }

    /// `y[t] = W · x[t]` for `n_tokens` rows of `x` (`[n_tokens, cols]`), exactly the kernels'
    /// arithmetic in f32 (no activation quantization) — the reference the GPU is checked against.
    pub fn matvec_ref(&self, x: &[f32], n_tokens: usize) -> Vec<f32> {
        assert_eq!(x.len(), n_tokens * self.cols, "x has the wrong length");
        let mut y = vec![0f32; n_tokens * self.rows];
        let mut row = vec![0f32; self.cols];
        for r in 0..self.rows {
            for (c, v) in row.iter_mut().enumerate() {
                *v = self.value(r, c);
            }
            for t in 0..n_tokens {
                let xt = &x[t * self.cols..(t + 1) * self.cols];
                y[t * self.rows + r] = row.iter().zip(xt).map(|(a, b)| a * b).sum();
            }
        }
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::storage::Storage;

    fn values(rows: usize, cols: usize, seed: u32) -> Vec<f32> {
        crate::test_util::pseudo_random(rows * cols, seed)
    }

    /// A `rows × cols` matrix of `dtype` with deterministic contents (blocks built by hand
    /// where the loader has no quantizer for the type).
    fn matrix(dtype: DType, rows: usize, cols: usize) -> QMatrix {
        let v = values(rows, cols, 7);
        let bytes: Vec<u8> = match dtype {
            DType::F32 => return QMatrix::from_f32(rows, cols, &v),
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => {
                return QMatrix::from_f32(rows, cols, &v).quantize(dtype).unwrap()
            }
            DType::F16 => v.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect(),
            DType::BF16 => v.iter().flat_map(|x| bf16::from_f32(*x).to_le_bytes()).collect(),
            DType::Q4K => (0..rows * cols / 256)
                .flat_map(|i| {
                    let mut out = f16::from_f32(0.01).to_le_bytes().to_vec();
                    out.extend(f16::from_f32(0.005).to_le_bytes());
                    out.extend((0..140).map(|j| (i * 31 + j * 7) as u8));
                    out
                })
                .collect(),
            other => panic!("no test matrix for {other:?}"),
        };
        QMatrix::new(dtype, rows, cols, Storage::from_bytes(&bytes), "w").unwrap()
    }

    #[test]
    fn every_element_dequantizes_as_the_cpu_engine_does() {
        for dtype in [DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::F32] {
            let (rows, cols) = (5, 96);
            let m = matrix(dtype, rows, cols);
            let p = PackedMatrix::pack(&m).unwrap();
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                m.dequantize_row_into(r, &mut row);
                for (c, &want) in row.iter().enumerate() {
                    let got = p.value(r, c);
                    let tol = if dtype == DType::F32 { 1e-3 * want.abs().max(1e-2) } else { 0.0 };
                    assert!((got - want).abs() <= tol, "{dtype:?} ({r},{c}): {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn quants_are_moved_not_changed() {
        let m = matrix(DType::Q4_1, 3, 64);
        let p = PackedMatrix::pack(&m).unwrap();
        let Packed::Q4_1 { qs, d, m: mins } = &p.data else { panic!("not Q4_1") };
        // Block 1 of row 2 is block 5 overall: bytes 5·20 .. 6·20 of the ggml row data.
        let block = &m.bytes()[5 * 20..6 * 20];
        assert_eq!(d[5], half_at(block, 0));
        assert_eq!(mins[5], half_at(block, 2));
        assert_eq!(&qs[5 * 16..6 * 16], &block[4..20]);
        assert_eq!(p.device_bytes(), (3 * 64 / 2 + 3 * 2 * 2 * 2) as u64);
    }

    #[test]
    fn reference_product_matches_dense_math() {
        let (rows, cols, n) = (7, 64, 3);
        let m = matrix(DType::Q8_0, rows, cols);
        let p = PackedMatrix::pack(&m).unwrap();
        let dense = m.to_f32();
        let x = values(n, cols, 3);
        let y = p.matvec_ref(&x, n);
        for t in 0..n {
            for r in 0..rows {
                let want: f32 = (0..cols).map(|c| dense[r * cols + c] * x[t * cols + c]).sum();
                assert!((y[t * rows + r] - want).abs() < 1e-4, "t{t} r{r}");
            }
        }
    }

    #[test]
    fn k_quants_become_f16_and_shape_errors_are_named() {
        let m = matrix(DType::Q4K, 2, 256);
        let p = PackedMatrix::pack(&m).unwrap();
        assert!(matches!(p.data, Packed::F16(_)));
        let bad = PackedMatrix {
            rows: 2,
            cols: 64,
            data: Packed::Q8_0 { qs: vec![0; 128], d: vec![f16::ZERO; 3] },
        };
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("scales has 3 elements, 4 expected"), "{e}");
        let f = QMatrix::new(DType::F16, 4, 32, Storage::from_bytes(&[0u8; 4 * 32 * 2]), "w").unwrap();
        assert_eq!(PackedMatrix::pack(&f).unwrap().device_bytes(), 256);
    }
}
