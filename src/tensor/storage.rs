//! Bytes behind a tensor: a range of a memory-mapped file used in place, or an owned buffer
//! aligned to 64 bytes.

use std::sync::Arc;

use memmap2::Mmap;

/// One 64-byte, 64-aligned chunk: owned buffers are vectors of these, so every owned tensor
/// starts on a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Chunk([u8; 64]);

/// The bytes of one tensor.
#[derive(Clone)]
pub enum Storage {
    /// A byte range of a mapped file, shared with every other tensor of that file.
    Mapped {
        /// The mapping.
        map: Arc<Mmap>,
        /// First byte of the tensor in the mapping.
        offset: usize,
        /// Length in bytes.
        len: usize,
    },
    /// A byte range of a shared in-memory buffer (an adapter's verified bytes from the store).
    Shared {
        /// The buffer.
        bytes: Arc<[u8]>,
        /// First byte of the tensor in the buffer.
        offset: usize,
        /// Length in bytes.
        len: usize,
    },
    /// An owned, 64-byte-aligned buffer.
    Owned {
        /// The buffer, in whole chunks.
        chunks: Arc<Vec<ChunkBuf>>,
        /// Bytes in use.
        len: usize,
    },
}

/// The bytes a parsed file's tensors point into: a file mapping, or a buffer already in
/// memory (verified adapter bytes from the store). Cheap to clone.
#[derive(Clone)]
pub enum Backing {
    /// A read-only file mapping.
    Mapped(Arc<Mmap>),
    /// A shared buffer.
    Shared(Arc<[u8]>),
}

impl Backing {
    /// All bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Shared(b) => b,
        }
    }

    /// Storage over `len` bytes from `offset` (panics when out of range, as
    /// [`Storage::mapped`]).
    pub fn storage(&self, offset: usize, len: usize) -> Storage {
        match self {
            Backing::Mapped(m) => Storage::mapped(Arc::clone(m), offset, len),
            Backing::Shared(b) => Storage::shared(Arc::clone(b), offset, len),
        }
    }
}

/// Opaque chunk type of owned storage (public only so `Storage` can name it).
#[derive(Clone, Copy)]
pub struct ChunkBuf(Chunk);

impl Storage {
    /// Storage over `len` bytes of `map` starting at `offset`. Panics if the range lies
    /// outside the map: loaders validate ranges before calling this.
    pub fn mapped(map: Arc<Mmap>, offset: usize, len: usize) -> Storage {
        assert!(offset.checked_add(len).is_some_and(|end| end <= map.len()), "mapped range out of bounds");
        Storage::Mapped { map, offset, len }
    }

    /// Storage over `len` bytes of `bytes` starting at `offset`. Panics if the range lies
    /// outside the buffer: parsers validate ranges before calling this.
    pub fn shared(bytes: Arc<[u8]>, offset: usize, len: usize) -> Storage {
        assert!(offset.checked_add(len).is_some_and(|end| end <= bytes.len()), "shared range out of bounds");
        Storage::Shared { bytes, offset, len }
    }

    /// A copy of `bytes` in an owned aligned buffer.
    pub fn from_bytes(bytes: &[u8]) -> Storage {
        let mut chunks = vec![ChunkBuf(Chunk([0; 64])); bytes.len().div_ceil(64)];
        for (dst, src) in chunks.iter_mut().zip(bytes.chunks(64)) {
            dst.0 .0[..src.len()].copy_from_slice(src);
        }
        Storage::Owned { chunks: Arc::new(chunks), len: bytes.len() }
    }

    /// An owned copy of `values` as little-endian f32 bytes.
    pub fn from_f32(values: &[f32]) -> Storage {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        Storage::from_bytes(&bytes)
    }

    /// The tensor's bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped { map, offset, len } => &map[*offset..*offset + *len],
            Storage::Shared { bytes, offset, len } => &bytes[*offset..*offset + *len],
            Storage::Owned { chunks, len } => {
                // SAFETY: `ChunkBuf` is a plain `repr(C)` array of 64 bytes with no padding, so
                // the vector's memory is `chunks.len() * 64` initialized bytes; `len` never
                // exceeds that (set in `from_bytes`).
                let all =
                    unsafe { std::slice::from_raw_parts(chunks.as_ptr() as *const u8, chunks.len() * 64) };
                &all[..*len]
            }
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Storage::Mapped { len, .. } | Storage::Shared { len, .. } | Storage::Owned { len, .. } => *len,
        }
    }

    /// True when the storage holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when the bytes are used in place from a file mapping.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Storage::Mapped { .. })
    }

    /// The bytes as f32 values, or `None` when they are not 4-byte aligned (or not a
    /// multiple of 4 long).
    pub fn as_f32(&self) -> Option<&[f32]> {
        cast_slice::<f32>(self.bytes())
    }

    /// The bytes as u16 values (f16/bf16 bit patterns), or `None` when misaligned.
    pub fn as_u16(&self) -> Option<&[u16]> {
        cast_slice::<u16>(self.bytes())
    }
}

/// Reinterpret bytes as a slice of a plain numeric type, if aligned and a whole number long.
pub fn cast_slice<T: Plain>(bytes: &[u8]) -> Option<&[T]> {
    let size = std::mem::size_of::<T>();
    if !(bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
        || !bytes.len().is_multiple_of(size)
    {
        return None;
    }
    // SAFETY: alignment and length were checked above; `T: Plain` types are valid for every
    // bit pattern, and the lifetime is tied to `bytes`.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len() / size) })
}

/// Numeric types valid for every bit pattern (sealed).
pub trait Plain: Copy + private::Sealed {}
impl Plain for f32 {}
impl Plain for u16 {}
impl Plain for i8 {}
mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u16 {}
    impl Sealed for i8 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_is_aligned_and_round_trips() {
        let s = Storage::from_f32(&[1.0, -2.5, 3.25]);
        assert_eq!(s.len(), 12);
        assert_eq!(s.as_f32().unwrap(), &[1.0, -2.5, 3.25]);
        assert_eq!(s.bytes().as_ptr() as usize % 64, 0);
        assert!(!s.is_mapped());
    }

    #[test]
    fn cast_refuses_misaligned() {
        let s = Storage::from_bytes(&[0u8; 9]);
        assert!(cast_slice::<f32>(&s.bytes()[1..5]).is_none());
        assert!(cast_slice::<f32>(&s.bytes()[0..6]).is_none());
        assert_eq!(cast_slice::<f32>(&s.bytes()[0..8]).unwrap().len(), 2);
    }
}
