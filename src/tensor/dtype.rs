//! Element types of weight tensors, with their ggml block geometry.

use crate::error::{Error, Result};

/// The element type of a weight tensor. Quantized types use ggml's block layouts exactly, so
/// GGUF data is used as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 32 values per block: f16 scale + 32 × i8.
    Q8_0,
    /// 32 values per block: f16 scale + 32 × 4-bit (offset 8).
    Q4_0,
    /// 32 values per block: f16 scale, f16 min + 32 × 4-bit.
    Q4_1,
    /// 256-value super-blocks, 4-bit with 6-bit sub-block scales and mins.
    Q4K,
    /// 256-value super-blocks, 5-bit with 6-bit sub-block scales and mins.
    Q5K,
    /// 256-value super-blocks, 6-bit with 8-bit sub-block scales.
    Q6K,
}

impl DType {
    /// Number of values in one block (1 for plain floats).
    pub const fn block_len(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => 32,
            DType::Q4K | DType::Q5K | DType::Q6K => 256,
        }
    }

    /// Bytes of one block.
    pub const fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q4K => 144,
            DType::Q5K => 176,
            DType::Q6K => 210,
        }
    }

    /// Bytes of a row of `cols` values, or an error when `cols` is not a whole number of blocks.
    pub fn row_bytes(self, cols: usize) -> Result<usize> {
        if !cols.is_multiple_of(self.block_len()) {
            return Err(Error::unsupported(
                format!("{self:?} tensor"),
                format!("row length {cols} is not a multiple of the block size {}", self.block_len()),
            ));
        }
        Ok(cols / self.block_len() * self.block_bytes())
    }

    /// Is this a block-quantized type?
    pub const fn is_quantized(self) -> bool {
        !matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// The ggml type id used in GGUF files.
    pub const fn ggml_id(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q8_0 => 8,
            DType::Q4K => 12,
            DType::Q5K => 13,
            DType::Q6K => 14,
            DType::BF16 => 30,
        }
    }

    /// The dtype for a ggml type id, or `None` when loradock does not support it.
    pub const fn from_ggml_id(id: u32) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            8 => DType::Q8_0,
            12 => DType::Q4K,
            13 => DType::Q5K,
            14 => DType::Q6K,
            30 => DType::BF16,
            _ => return None,
        })
    }

    /// ggml's name of a type id, for error messages about types we do not support.
    pub fn ggml_name(id: u32) -> &'static str {
        const NAMES: [&str; 31] = [
            "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
            "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
            "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
        ];
        NAMES.get(id as usize).copied().unwrap_or("unknown")
    }

    /// Parse a user-facing name (`q8_0`, `q4_0`, `f16`...).
    pub fn parse(name: &str) -> Result<DType> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "q8_0" => DType::Q8_0,
            "q4_0" => DType::Q4_0,
            "q4_1" => DType::Q4_1,
            "q4_k" => DType::Q4K,
            "q5_k" => DType::Q5K,
            "q6_k" => DType::Q6K,
            other => return Err(Error::invalid("dtype", format!("unknown type '{other}'"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_ids_round_trip() {
        for t in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::Q8_0,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q4K,
            DType::Q5K,
            DType::Q6K,
        ] {
            assert_eq!(DType::from_ggml_id(t.ggml_id()), Some(t));
        }
        assert_eq!(DType::from_ggml_id(6), None);
        assert_eq!(DType::ggml_name(6), "Q5_0");
        assert_eq!(DType::ggml_name(999), "unknown");
    }

    #[test]
    fn row_bytes_checks_block_multiple() {
        assert_eq!(DType::Q4_1.row_bytes(64).unwrap(), 40);
        assert_eq!(DType::Q6K.row_bytes(512).unwrap(), 420);
        assert!(DType::Q8_0.row_bytes(33).is_err());
        assert!(DType::parse("q9").is_err());
    }
}
