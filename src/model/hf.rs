//! Hugging Face model directories: `config.json` plus `model.safetensors` or a sharded
//! `model.safetensors.index.json`. Tensors are used in place from the memory maps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensors};

use crate::error::{Error, Result};
use crate::tensor::storage::Backing;
use crate::tensor::{DType, QMatrix};

/// Where one tensor lives.
struct Entry {
    shard: usize,
    dtype: DType,
    shape: Vec<usize>,
    offset: usize,
    len: usize,
}

/// The tensors of a safetensors file or of a sharded set, mapped in memory (or of one
/// buffer in memory).
pub struct SafetensorsSet {
    shards: Vec<(PathBuf, Backing)>,
    entries: HashMap<String, Entry>,
}

fn map_dtype(d: StDtype, path: &Path, name: &str) -> Result<DType> {
    Ok(match d {
        StDtype::F32 => DType::F32,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        other => {
            return Err(Error::unsupported(
                format!("{}: tensor '{name}'", path.display()),
                format!("dtype {other:?} (supported: F32, F16, BF16)"),
            ))
        }
    })
}

impl SafetensorsSet {
    /// Open one `.safetensors` file.
    pub fn open_file(path: &Path) -> Result<SafetensorsSet> {
        let mut set = SafetensorsSet { shards: Vec::new(), entries: HashMap::new() };
        set.add_shard(path)?;
        Ok(set)
    }

    /// Tensors of the safetensors bytes `bytes`, used in place; `name` stands for the file in
    /// messages.
    pub fn from_bytes(name: &Path, bytes: Arc<[u8]>) -> Result<SafetensorsSet> {
        let mut set = SafetensorsSet { shards: Vec::new(), entries: HashMap::new() };
        set.add_backing(name, Backing::Shared(bytes))?;
        Ok(set)
    }

    /// Open a model directory's weights: `model.safetensors`, or the shards listed by
    /// `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<SafetensorsSet> {
        let single = dir.join("model.safetensors");
        if single.exists() {
            return SafetensorsSet::open_file(&single);
        }
        let index = dir.join("model.safetensors.index.json");
        if !index.exists() {
            if dir.join("pytorch_model.bin").exists() {
                return Err(Error::unsupported(
                    dir.display().to_string(),
                    "pickle weights (pytorch_model.bin) are never loaded; convert them to safetensors",
                ));
            }
            return Err(Error::format(dir, "no model.safetensors or model.safetensors.index.json"));
        }
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&index, format!("invalid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::format(&index, "no 'weight_map' object"))?;
        let mut files: Vec<&str> = map.values().filter_map(|f| f.as_str()).collect();
        files.sort_unstable();
        files.dedup();
        let mut set = SafetensorsSet { shards: Vec::new(), entries: HashMap::new() };
        for f in files {
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(Error::format(&index, format!("shard name '{f}' leaves the model directory")));
            }
            set.add_shard(&dir.join(f))?;
        }
        Ok(set)
    }

    fn add_shard(&mut self, path: &Path) -> Result<()> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: mapped read-only and never written; the user must not truncate model files
        // while they are loaded (as for every mmap-based loader).
        let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?);
        self.add_backing(path, Backing::Mapped(map))
    }

    fn add_backing(&mut self, path: &Path, backing: Backing) -> Result<()> {
        let map = backing.bytes();
        let st = SafeTensors::deserialize(map)
            .map_err(|e| Error::format(path, format!("invalid safetensors: {e}")))?;
        let shard = self.shards.len();
        for (name, view) in st.tensors() {
            let dtype = map_dtype(view.dtype(), path, &name)?;
            let offset = view.data().as_ptr() as usize - map.as_ptr() as usize;
            let entry = Entry { shard, dtype, shape: view.shape().to_vec(), offset, len: view.data().len() };
            if self.entries.insert(name.clone(), entry).is_some() {
                return Err(Error::format(path, format!("tensor '{name}' appears in two shards")));
            }
        }
        self.shards.push((path.to_path_buf(), backing));
        Ok(())
    }

    /// Names of all tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }

    /// Shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// dtype of tensor `name`, if present.
    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.entries.get(name).map(|e| e.dtype)
    }

    /// Path of the file holding `name` (for messages).
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.entries.get(name).map(|e| self.shards[e.shard].0.as_path())
    }

    /// Tensor `name` as a `[rows, cols]` matrix (1-D → `[1, n]`), in place. `Ok(None)` when
    /// absent; an error when it has more than 2 dimensions.
    pub fn matrix(&self, name: &str) -> Result<Option<QMatrix>> {
        let Some(e) = self.entries.get(name) else { return Ok(None) };
        let (path, map) = &self.shards[e.shard];
        let (rows, cols) = match e.shape.as_slice() {
            [n] => (1, *n),
            [r, c] => (*r, *c),
            other => {
                return Err(Error::format(
                    path,
                    format!("tensor '{name}' has shape {other:?}, expected 1 or 2 dimensions"),
                ))
            }
        };
        let storage = map.storage(e.offset, e.len);
        QMatrix::new(e.dtype, rows, cols, storage, &format!("{}: tensor '{name}'", path.display())).map(Some)
    }

    /// Tensor `name` as f32 values with its shape (small tensors: norms, biases, adapters).
    pub fn f32_values(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(m) = self.matrix(name)? else { return Ok(None) };
        Ok(Some((self.entries[name].shape.clone(), m.to_f32())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    fn write_st(path: &Path, tensors: &[(&str, StDtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| {
                (n.to_string(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())
            })
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    #[test]
    fn reads_tensors_in_place() {
        let dir = TempDir::new("st-ok");
        let vals: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        write_st(&dir.path().join("model.safetensors"), &[("w", StDtype::F32, vec![2, 3], vals)]);
        let set = SafetensorsSet::open_dir(dir.path()).unwrap();
        let m = set.matrix("w").unwrap().unwrap();
        assert_eq!((m.rows(), m.cols()), (2, 3));
        assert_eq!(m.to_f32(), vec![1., 2., 3., 4., 5., 6.]);
        assert!(set.matrix("missing").unwrap().is_none());
    }

    #[test]
    fn corrupt_files_are_refused() {
        let dir = TempDir::new("st-bad");
        let vals: Vec<u8> = vec![0u8; 24];
        let p = dir.path().join("model.safetensors");
        write_st(&p, &[("w", StDtype::F32, vec![2, 3], vals)]);
        let bytes = std::fs::read(&p).unwrap();
        // Truncated: the data section ends early.
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let e = SafetensorsSet::open_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("invalid safetensors"), "{e}");
        // Header length pointing past the file.
        let mut b = bytes.clone();
        b[0..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&p, &b).unwrap();
        assert!(SafetensorsSet::open_dir(dir.path()).is_err());
        // Unsupported dtype.
        write_st(&p, &[("w", StDtype::I32, vec![2], vec![0u8; 8])]);
        let e = SafetensorsSet::open_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("dtype I32"), "{e}");
        // Pickle only.
        std::fs::remove_file(&p).unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"x").unwrap();
        let e = SafetensorsSet::open_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("pickle"), "{e}");
    }
}
