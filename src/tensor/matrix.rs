//! A 2-D weight matrix `[rows, cols]` (rows = output features, cols = input features), stored
//! row-major in any [`DType`], with each row a whole number of blocks.

use half::{bf16, f16};

use super::kquant::{dequantize_q4k, dequantize_q5k, dequantize_q6k, QK_K};
use super::quant::dequantize_row;
use super::{DType, Storage};
use crate::error::{Error, Result};

/// A weight matrix used by matrix products: `y[r] = Σ_c W[r, c] · x[c]`.
#[derive(Clone)]
pub struct QMatrix {
    dtype: DType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    storage: Storage,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix({:?}, {}x{})", self.dtype, self.rows, self.cols)
    }
}

impl QMatrix {
    /// A matrix over `storage`, which must hold exactly `rows` rows of `cols` values. Plain
    /// float storage that is not aligned for its type is copied into an aligned buffer.
    pub fn new(dtype: DType, rows: usize, cols: usize, storage: Storage, name: &str) -> Result<QMatrix> {
        let row_bytes = dtype.row_bytes(cols).map_err(|e| Error::unsupported(name, e.to_string()))?;
        let want = row_bytes.checked_mul(rows).ok_or_else(|| Error::unsupported(name, "tensor too large"))?;
        if storage.len() != want {
            return Err(Error::unsupported(
                name,
                format!(
                    "{} bytes of data for a {rows}x{cols} {dtype:?} matrix, which needs {want}",
                    storage.len()
                ),
            ));
        }
        let align = match dtype {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            _ => 1,
        };
        let storage = if !(storage.bytes().as_ptr() as usize).is_multiple_of(align) {
            Storage::from_bytes(storage.bytes())
        } else {
            storage
        };
        Ok(QMatrix { dtype, rows, cols, row_bytes, storage })
    }

    /// An owned f32 matrix from values in row-major order.
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> QMatrix {
        assert_eq!(values.len(), rows * cols, "from_f32: value count does not match the shape");
        QMatrix { dtype: DType::F32, rows, cols, row_bytes: cols * 4, storage: Storage::from_f32(values) }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }
    /// Total bytes of data.
    pub fn bytes_len(&self) -> usize {
        self.storage.len()
    }
    /// True when the data is used in place from a file mapping.
    pub fn is_mapped(&self) -> bool {
        self.storage.is_mapped()
    }
    /// All bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// The bytes of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> &[u8] {
        &self.storage.bytes()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Rows `start..end` as a new matrix sharing nothing (owned copy).
    pub fn slice_rows(&self, start: usize, end: usize) -> QMatrix {
        assert!(start <= end && end <= self.rows, "slice_rows out of range");
        let bytes = &self.storage.bytes()[start * self.row_bytes..end * self.row_bytes];
        QMatrix {
            dtype: self.dtype,
            rows: end - start,
            cols: self.cols,
            row_bytes: self.row_bytes,
            storage: Storage::from_bytes(bytes),
        }
    }

    /// A copy with rows reordered: row `i` of the result is row `perm[i]` of `self`.
    pub fn permute_rows(&self, perm: &[usize]) -> QMatrix {
        assert_eq!(perm.len(), self.rows, "permute_rows: permutation length");
        let mut bytes = Vec::with_capacity(self.storage.len());
        for &p in perm {
            bytes.extend_from_slice(self.row(p));
        }
        QMatrix { storage: Storage::from_bytes(&bytes), ..self.clone() }
    }

    /// Dequantize row `r` into `out` (`cols` long).
    pub fn dequantize_row_into(&self, r: usize, out: &mut [f32]) {
        let row = self.row(r);
        match self.dtype {
            DType::F32 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            DType::F16 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
            DType::BF16 => {
                for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                    *o = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => dequantize_row(self.dtype, row, out),
            DType::Q4K | DType::Q5K | DType::Q6K => {
                let f = match self.dtype {
                    DType::Q4K => dequantize_q4k,
                    DType::Q5K => dequantize_q5k,
                    _ => dequantize_q6k,
                };
                let bb = self.dtype.block_bytes();
                let mut tmp = [0.0f32; QK_K];
                for (b, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(QK_K)) {
                    f(b, &mut tmp);
                    o.copy_from_slice(&tmp);
                }
            }
        }
    }

    /// The whole matrix as f32 values (tests and tools only; engines never expand weights).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (r, o) in out.chunks_exact_mut(self.cols).enumerate() {
            self.dequantize_row_into(r, o);
        }
        out
    }

    /// Re-encode an f32/f16/bf16 matrix as `Q8_0` or `Q4_0` (load-time quantization).
    pub fn quantize(&self, to: DType) -> Result<QMatrix> {
        if self.dtype.is_quantized() {
            return Err(Error::unsupported(
                format!("{:?} matrix", self.dtype),
                "re-quantizing quantized weights",
            ));
        }
        let mut bytes = Vec::with_capacity(to.row_bytes(self.cols)? * self.rows);
        let mut row = vec![0.0f32; self.cols];
        for r in 0..self.rows {
            self.dequantize_row_into(r, &mut row);
            match to {
                DType::Q8_0 => super::quant::quantize_row_q8_0(&row, &mut bytes),
                DType::Q4_0 => super::quant::quantize_row_q4_0(&row, &mut bytes),
                DType::Q4_1 => super::quant::quantize_row_q4_1(&row, &mut bytes),
                other => {
                    return Err(Error::unsupported(format!("{other:?}"), "load-time quantization target"))
                }
            }
        }
        QMatrix::new(to, self.rows, self.cols, Storage::from_bytes(&bytes), "quantized")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_the_byte_count() {
        let s = Storage::from_bytes(&[0u8; 34]);
        assert!(QMatrix::new(DType::Q8_0, 1, 32, s.clone(), "w").is_ok());
        let e = QMatrix::new(DType::Q8_0, 2, 32, s, "w").unwrap_err().to_string();
        assert!(e.contains("34 bytes") && e.contains("needs 68"), "{e}");
        assert!(QMatrix::new(DType::Q8_0, 1, 31, Storage::from_bytes(&[0u8; 34]), "w").is_err());
    }

    #[test]
    fn permute_and_slice_rows() {
        let m = QMatrix::from_f32(3, 2, &[1., 2., 3., 4., 5., 6.]);
        assert_eq!(m.permute_rows(&[2, 0, 1]).to_f32(), vec![5., 6., 1., 2., 3., 4.]);
        assert_eq!(m.slice_rows(1, 3).to_f32(), vec![3., 4., 5., 6.]);
    }

    #[test]
    fn quantize_q4_1_is_close_and_keeps_the_range() {
        let vals: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin() * 2.0 + 0.5).collect();
        let q = QMatrix::from_f32(2, 32, &vals).quantize(DType::Q4_1).unwrap();
        assert_eq!(q.bytes_len(), 2 * 20);
        for (a, b) in vals.iter().zip(q.to_f32()) {
            // Half a step of (max − min)/15 for a range of about 4, plus f16 rounding.
            assert!((a - b).abs() < 0.14, "{a} vs {b}");
        }
    }

    #[test]
    fn quantize_q8_0_is_close() {
        let vals: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 10.0).collect();
        let m = QMatrix::from_f32(2, 32, &vals);
        let q = m.quantize(DType::Q8_0).unwrap();
        for (a, b) in vals.iter().zip(q.to_f32()) {
            assert!((a - b).abs() < 0.02);
        }
        assert!(q.quantize(DType::Q4_0).is_err());
    }
}
