//! GGUF (v2/v3) files: metadata and tensor directory parsed from a memory map, every length,
//! count and offset checked against the file so that a truncated or hostile file gives an
//! error naming what is wrong, never a panic or an out-of-bounds read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::tensor::storage::Backing;
use crate::tensor::{DType, QMatrix};

const MAGIC: &[u8; 4] = b"GGUF";
/// Upper bounds that keep a hostile header from asking for absurd allocations.
const MAX_TENSORS: u64 = 1 << 16;
const MAX_KV: u64 = 1 << 16;
const MAX_ARRAY: u64 = 1 << 24;
const MAX_STRING: u64 = 1 << 26;
const MAX_DIMS: u32 = 4;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned integer (u8/u16/u32/u64).
    U64(u64),
    /// Signed integer (i8/i16/i32/i64).
    I64(i64),
    /// Float (f32/f64).
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values.
    Array(Vec<Value>),
}

impl Value {
    /// As an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U64(v) => Some(v),
            Value::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    /// As a float, if numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F64(v) => Some(v),
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    /// As a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// As a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
    /// As an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` is the contiguous (column) dimension.
    pub dims: Vec<u64>,
    /// ggml type id.
    pub type_id: u32,
    /// Byte offset of the data from the start of the file.
    pub offset: usize,
    /// Byte length of the data (0 when the type is unknown to loradock).
    pub len: usize,
}

/// A parsed GGUF file, mapped in memory.
pub struct GgufFile {
    path: PathBuf,
    map: Backing,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata key/values.
    pub metadata: BTreeMap<String, Value>,
    /// Tensor directory, in file order.
    pub tensors: Vec<TensorInfo>,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str) -> Error {
        Error::format(self.path, format!("{what} at byte {}", self.pos))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| self.err("truncated"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u64()?;
        if n > MAX_STRING {
            return Err(self.err(&format!("string length {n} exceeds the limit")));
        }
        let s = self.take(n as usize)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.err("string is not valid UTF-8"))
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<Value> {
        let fixed = |c: &mut Self, n: usize| -> Result<u64> {
            let s = c.take(n)?;
            let mut a = [0u8; 8];
            a[..n].copy_from_slice(s);
            Ok(u64::from_le_bytes(a))
        };
        Ok(match ty {
            0 => Value::U64(fixed(self, 1)?),
            1 => Value::I64(fixed(self, 1)? as u8 as i8 as i64),
            2 => Value::U64(fixed(self, 2)?),
            3 => Value::I64(fixed(self, 2)? as u16 as i16 as i64),
            4 => Value::U64(fixed(self, 4)?),
            5 => Value::I64(fixed(self, 4)? as u32 as i32 as i64),
            6 => Value::F64(f32::from_bits(fixed(self, 4)? as u32) as f64),
            7 => Value::Bool(fixed(self, 1)? != 0),
            8 => Value::Str(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(self.err("arrays nested too deeply"));
                }
                let ety = self.u32()?;
                let n = self.u64()?;
                if n > MAX_ARRAY {
                    return Err(self.err(&format!("array length {n} exceeds the limit")));
                }
                // Each element takes at least one byte: a cheap bound against huge counts.
                if n as usize > self.b.len() - self.pos {
                    return Err(self.err("array longer than the file"));
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(ety, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(fixed(self, 8)?),
            11 => Value::I64(fixed(self, 8)? as i64),
            12 => Value::F64(f64::from_bits(fixed(self, 8)?)),
            other => return Err(self.err(&format!("unknown metadata value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Map and parse `path`.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is mapped read-only; loradock never writes to it, and (as with every
        // mmap-based loader) the user must not truncate the file while it is in use.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        GgufFile::parse(path, Backing::Mapped(Arc::new(map)))
    }

    /// Parse GGUF bytes already in memory; `path` stands for the file in messages.
    pub fn from_bytes(path: &Path, bytes: Arc<[u8]>) -> Result<GgufFile> {
        GgufFile::parse(path, Backing::Shared(bytes))
    }

    fn parse(path: &Path, map: Backing) -> Result<GgufFile> {
        let b: &[u8] = map.bytes();
        let mut c = Cursor { b, pos: 0, path };
        if c.take(4).ok() != Some(MAGIC.as_slice()) {
            return Err(Error::format(path, "not a GGUF file (bad magic)"));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::unsupported(path.display().to_string(), format!("GGUF version {version}")));
        }
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        if n_tensors > MAX_TENSORS || n_kv > MAX_KV {
            return Err(Error::format(path, format!("{n_tensors} tensors / {n_kv} keys exceed the limits")));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let v = c.value(ty, 0)?;
            metadata.insert(key, v);
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let nd = c.u32()?;
            if nd == 0 || nd > MAX_DIMS {
                return Err(Error::format(path, format!("tensor '{name}' has {nd} dimensions")));
            }
            let dims = (0..nd).map(|_| c.u64()).collect::<Result<Vec<_>>>()?;
            let type_id = c.u32()?;
            let rel = c.u64()?;
            tensors.push((name, dims, type_id, rel));
        }
        let align = metadata.get("general.alignment").and_then(Value::as_u64).unwrap_or(32);
        if align == 0 || !align.is_power_of_two() || align > 1 << 16 {
            return Err(Error::format(path, format!("general.alignment {align} is not a power of two")));
        }
        let data_start = (c.pos as u64).div_ceil(align) * align;
        let mut infos = Vec::with_capacity(tensors.len());
        for (name, dims, type_id, rel) in tensors {
            let mut count: u64 = 1;
            for &d in &dims {
                count = count.checked_mul(d).filter(|_| d > 0).ok_or_else(|| {
                    Error::format(path, format!("tensor '{name}' has bad dimensions {dims:?}"))
                })?;
            }
            let len = match DType::from_ggml_id(type_id) {
                Some(dt) => {
                    if !count.is_multiple_of(dt.block_len() as u64) || dims[0] % dt.block_len() as u64 != 0 {
                        return Err(Error::format(
                            path,
                            format!("tensor '{name}' is not a whole number of blocks"),
                        ));
                    }
                    count / dt.block_len() as u64 * dt.block_bytes() as u64
                }
                None => 0,
            };
            let offset = data_start
                .checked_add(rel)
                .filter(|o| o.checked_add(len).is_some_and(|e| e <= b.len() as u64))
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!(
                            "tensor '{name}' data (offset {rel}, {len} bytes) lies past the end of the file"
                        ),
                    )
                })?;
            if rel % align != 0 {
                return Err(Error::format(
                    path,
                    format!("tensor '{name}' offset {rel} is not aligned to {align}"),
                ));
            }
            infos.push(TensorInfo { name, dims, type_id, offset: offset as usize, len: len as usize });
        }
        Ok(GgufFile { path: path.to_path_buf(), map, version, metadata, tensors: infos })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The general architecture (`general.architecture`).
    pub fn architecture(&self) -> Option<&str> {
        self.metadata.get("general.architecture").and_then(Value::as_str)
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A required unsigned metadata value.
    pub fn req_u64(&self, key: &str) -> Result<u64> {
        self.get(key).and_then(Value::as_u64).ok_or_else(|| {
            Error::format(&self.path, format!("metadata '{key}' is missing or not an unsigned integer"))
        })
    }

    /// The directory entry of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Tensor `name` as a matrix `[dims[1], dims[0]]` (a 1-D tensor becomes `[1, dims[0]]`),
    /// used in place from the mapping. `Ok(None)` when absent.
    pub fn matrix(&self, name: &str) -> Result<Option<QMatrix>> {
        let Some(t) = self.tensor_info(name) else { return Ok(None) };
        let dt = DType::from_ggml_id(t.type_id).ok_or_else(|| {
            Error::unsupported(
                format!("{}: tensor '{name}'", self.path.display()),
                format!(
                    "ggml type {} ({}); supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K",
                    DType::ggml_name(t.type_id),
                    t.type_id
                ),
            )
        })?;
        if t.dims.len() > 2 {
            return Err(Error::format(
                &self.path,
                format!("tensor '{name}' has {} dimensions, expected 1 or 2", t.dims.len()),
            ));
        }
        let cols = t.dims[0] as usize;
        let rows = t.dims.get(1).copied().unwrap_or(1) as usize;
        let storage = self.map.storage(t.offset, t.len);
        QMatrix::new(dt, rows, cols, storage, &format!("{}: tensor '{name}'", self.path.display())).map(Some)
    }

    /// A 1-D f32-convertible tensor (norm weights, biases) as f32 values. `Ok(None)` when absent.
    pub fn vector(&self, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.matrix(name)?.map(|m| m.to_f32()))
    }
}

/// A minimal GGUF writer (metadata + F32/F16/quantized tensors), for tests, tools and the
/// `synth` command. Tensors are given in ggml order (`dims[0]` contiguous).
#[derive(Default)]
pub struct GgufWriter {
    kv: Vec<(String, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl GgufWriter {
    /// Add a u32 key.
    pub fn u32(&mut self, k: &str, v: u32) -> &mut Self {
        let mut b = 4u32.to_le_bytes().to_vec();
        b.extend_from_slice(&v.to_le_bytes());
        self.kv.push((k.into(), b));
        self
    }
    /// Add an f32 key.
    pub fn f32(&mut self, k: &str, v: f32) -> &mut Self {
        let mut b = 6u32.to_le_bytes().to_vec();
        b.extend_from_slice(&v.to_le_bytes());
        self.kv.push((k.into(), b));
        self
    }
    /// Add a bool key.
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        let mut b = 7u32.to_le_bytes().to_vec();
        b.push(v as u8);
        self.kv.push((k.into(), b));
        self
    }
    /// Add a string key.
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        let mut b = 8u32.to_le_bytes().to_vec();
        put_str(&mut b, v);
        self.kv.push((k.into(), b));
        self
    }
    /// Add a string-array key.
    pub fn str_array(&mut self, k: &str, v: &[String]) -> &mut Self {
        let mut b = 9u32.to_le_bytes().to_vec();
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        for s in v {
            put_str(&mut b, s);
        }
        self.kv.push((k.into(), b));
        self
    }
    /// Add a tensor with raw data of ggml type `type_id`.
    pub fn tensor(&mut self, name: &str, dims: &[u64], type_id: u32, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.into(), dims.to_vec(), type_id, data));
        self
    }
    /// Add an f32 tensor.
    pub fn tensor_f32(&mut self, name: &str, dims: &[u64], values: &[f32]) -> &mut Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, 0, data)
    }

    /// Add an f32-array key.
    pub fn f32_array(&mut self, k: &str, v: &[f32]) -> &mut Self {
        let mut b = 9u32.to_le_bytes().to_vec();
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        self.kv.push((k.into(), b));
        self
    }
    /// Add an i32-array key.
    pub fn i32_array(&mut self, k: &str, v: &[i32]) -> &mut Self {
        let mut b = 9u32.to_le_bytes().to_vec();
        b.extend_from_slice(&5u32.to_le_bytes());
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        self.kv.push((k.into(), b));
        self
    }

    /// Header, metadata and tensor table, padded to the data section.
    fn header(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut out, k);
            out.extend_from_slice(v);
        }
        let mut rel = 0u64;
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&rel.to_le_bytes());
            rel += (data.len() as u64).div_ceil(32) * 32;
        }
        out.resize(out.len().div_ceil(32) * 32, 0);
        out
    }

    /// The file's bytes (version 3, alignment 32).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header();
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(32) * 32, 0);
        }
        out
    }

    /// Write the file to `path`, tensor by tensor (no second copy of the data in memory).
    pub fn write_file(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let io = |e| Error::io(path, e);
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        f.write_all(&self.header()).map_err(io)?;
        for (_, _, _, data) in &self.tensors {
            f.write_all(data).map_err(io)?;
            f.write_all(&[0u8; 32][..data.len().div_ceil(32) * 32 - data.len()]).map_err(io)?;
        }
        f.flush().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn sample() -> Vec<u8> {
        let mut w = GgufWriter::default();
        w.str("general.architecture", "llama").u32("llama.block_count", 2).f32("x.eps", 1e-5);
        w.str_array("tokenizer.ggml.tokens", &["a".into(), "b".into()]);
        w.tensor_f32("t.weight", &[4, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        w.tensor_f32("n.weight", &[4], &[1., 1., 1., 1.]);
        w.to_bytes()
    }

    #[test]
    fn parses_what_the_writer_writes() {
        let dir = crate::test_util::TempDir::new("gguf-ok");
        let p = write(dir.path(), "m.gguf", &sample());
        let g = GgufFile::open(&p).unwrap();
        assert_eq!(g.architecture(), Some("llama"));
        assert_eq!(g.req_u64("llama.block_count").unwrap(), 2);
        assert!((g.get("x.eps").unwrap().as_f64().unwrap() - 1e-5).abs() < 1e-9);
        let m = g.matrix("t.weight").unwrap().unwrap();
        assert_eq!((m.rows(), m.cols()), (2, 4));
        assert!(m.is_mapped());
        assert_eq!(m.to_f32()[5], 6.0);
        assert_eq!(g.vector("n.weight").unwrap().unwrap(), vec![1.0; 4]);
        assert!(g.matrix("nope").unwrap().is_none());
    }

    #[test]
    fn hostile_files_are_refused_with_a_reason() {
        let dir = crate::test_util::TempDir::new("gguf-bad");
        let good = sample();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("magic", b"GGUX".iter().chain(&good[4..]).copied().collect(), "bad magic"),
            ("truncated", good[..good.len() - 20].to_vec(), "past the end"),
            ("header-cut", good[..30].to_vec(), "truncated"),
            (
                "version",
                {
                    let mut b = good.clone();
                    b[4] = 9;
                    b
                },
                "version 9",
            ),
            (
                "huge-count",
                {
                    let mut b = good.clone();
                    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
                    b
                },
                "exceed the limits",
            ),
        ];
        for (name, bytes, want) in cases {
            let p = write(dir.path(), name, &bytes);
            let e = GgufFile::open(&p).err().unwrap_or_else(|| panic!("{name} accepted")).to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn unsupported_tensor_types_are_named() {
        let dir = crate::test_util::TempDir::new("gguf-type");
        let mut w = GgufWriter::default();
        w.tensor("q5.weight", &[32, 1], 6, vec![0u8; 22]);
        let p = write(dir.path(), "m.gguf", &w.to_bytes());
        let g = GgufFile::open(&p).unwrap();
        let e = g.matrix("q5.weight").unwrap_err().to_string();
        assert!(e.contains("Q5_0") && e.contains("q5.weight"), "{e}");
    }
}
