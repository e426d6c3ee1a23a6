//! [`FetchedAdapter`]: an adapter's raw file bytes in host RAM, with the digest they hash to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::digest::{Digest, PEFT_FILES};
use super::source::Layout;
use crate::error::{Error, Result};

/// File name a GGUF LoRA is kept under in the disk cache and written as by
/// [`FetchedAdapter::write_to_dir`].
pub const GGUF_FILE: &str = "adapter.gguf";

/// One file of an adapter.
#[derive(Debug, Clone)]
pub struct AdapterFile {
    /// `adapter_config.json`, `adapter_model.safetensors` or [`GGUF_FILE`].
    pub name: &'static str,
    /// The file's bytes, shared (cloning the `Arc` copies nothing).
    pub bytes: Arc<[u8]>,
}

/// An adapter's bytes as fetched and verified by the store, not yet parsed or validated
/// (that is the merger's job).
///
/// Immutable and `Send + Sync`; handed out as `Arc<FetchedAdapter>`. The store's RAM cache
/// may drop its own reference at any time; the bytes live as long as any `Arc` does.
#[derive(Debug)]
pub struct FetchedAdapter {
    digest: Digest,
    layout: Layout,
    files: Vec<AdapterFile>,
    total_bytes: u64,
}

impl FetchedAdapter {
    /// Assemble from files whose digest (per the digest definition) the caller computed.
    pub(crate) fn new(digest: Digest, layout: Layout, files: Vec<AdapterFile>) -> FetchedAdapter {
        debug_assert_eq!(
            files.iter().map(|f| f.name).collect::<Vec<_>>(),
            match layout {
                Layout::PeftDir => PEFT_FILES.to_vec(),
                Layout::GgufFile => vec![GGUF_FILE],
            },
            "a fetched adapter holds exactly its layout's files"
        );
        let total_bytes = files.iter().map(|f| f.bytes.len() as u64).sum();
        FetchedAdapter { digest, layout, files, total_bytes }
    }

    /// The digest of the bytes held (always computed from them; equal to the expected digest
    /// when one was given).
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// PEFT directory or GGUF file.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The files: the two PEFT files in manifest order, or the one GGUF file.
    pub fn files(&self) -> &[AdapterFile] {
        &self.files
    }

    /// The bytes of the file called `name`, if the adapter has one.
    pub fn file(&self, name: &str) -> Option<&Arc<[u8]>> {
        self.files.iter().find(|f| f.name == name).map(|f| &f.bytes)
    }

    /// Bytes held in host RAM by this adapter (all files).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Write the files into the existing directory `dir` and return the path an adapter
    /// loader takes: `dir` itself for PEFT, `dir/adapter.gguf` for GGUF.
    pub fn write_to_dir(&self, dir: &Path) -> Result<PathBuf> {
        if !dir.is_dir() {
            return Err(Error::store(dir.display().to_string(), "not an existing directory"));
        }
        for f in &self.files {
            let p = dir.join(f.name);
            std::fs::write(&p, &f.bytes).map_err(|e| Error::io(&p, e))?;
        }
        Ok(match self.layout {
            Layout::PeftDir => dir.to_path_buf(),
            Layout::GgufFile => dir.join(GGUF_FILE),
        })
    }
}
