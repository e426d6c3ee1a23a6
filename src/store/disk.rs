//! The store's disk cache: downloaded adapters kept under a size cap, least recently used
//! evicted first.
//!
//! Layout of `cache_dir`:
//! - `objects/sha256-<hex>/`: one directory per adapter, named by its digest, holding its
//!   files under their own names (`adapter_config.json` + `adapter_model.safetensors`, or
//!   `adapter.gguf`);
//! - `tmp/`: downloads in progress, each in its own directory, renamed into `objects/` in one
//!   step once verified (so `objects/` never holds a partial entry); emptied at start-up;
//! - `.lock`: held exclusively by the one store using the directory.
//!
//! Last use is the entry directory's modification time, refreshed on every hit, so the LRU
//! order survives a restart. Entries are re-hashed when read (the store does it), so a
//! corrupted entry is dropped and fetched again rather than served.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::digest::{Digest, PEFT_FILES};
use super::fetched::GGUF_FILE;
use super::source::Layout;
use crate::error::{Error, Result};

struct Entry {
    bytes: u64,
    last_use: u64,
    layout: Layout,
}

#[derive(Default)]
struct Index {
    entries: HashMap<Digest, Entry>,
    by_use: BTreeMap<u64, Digest>,
    total_bytes: u64,
    tick: u64,
}

impl Index {
    fn insert(&mut self, d: Digest, bytes: u64, layout: Layout) {
        self.remove(&d);
        self.tick += 1;
        self.entries.insert(d, Entry { bytes, last_use: self.tick, layout });
        self.by_use.insert(self.tick, d);
        self.total_bytes += bytes;
    }

    fn touch(&mut self, d: &Digest) -> Option<Layout> {
        let e = self.entries.get_mut(d)?;
        self.by_use.remove(&e.last_use);
        self.tick += 1;
        e.last_use = self.tick;
        self.by_use.insert(self.tick, *d);
        Some(e.layout)
    }

    fn remove(&mut self, d: &Digest) -> bool {
        let Some(e) = self.entries.remove(d) else { return false };
        self.by_use.remove(&e.last_use);
        self.total_bytes -= e.bytes;
        true
    }

    /// Pop least recently used entries, never `keep`, until the total fits `cap`.
    fn evict_to(&mut self, cap: u64, keep: Option<Digest>) -> Vec<Digest> {
        let mut victims = Vec::new();
        while self.total_bytes > cap {
            let Some(d) = self.by_use.values().copied().find(|d| Some(*d) != keep) else { break };
            self.remove(&d);
            victims.push(d);
        }
        victims
    }
}

/// A download directory under `tmp/`, removed on drop unless committed.
pub(crate) struct TempEntry {
    dir: PathBuf,
    committed: bool,
}

impl TempEntry {
    /// Where the file called `name` goes.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for TempEntry {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The disk cache (see the module docs). `Send + Sync`.
pub(crate) struct DiskCache {
    objects: PathBuf,
    tmp: PathBuf,
    cap_bytes: u64,
    index: Mutex<Index>,
    next_tmp: AtomicU64,
    _lock: File,
}

impl DiskCache {
    /// Open (creating) the cache in `dir`, take its lock, clear `tmp/`, index `objects/` and
    /// evict down to `cap_bytes`.
    pub fn open(dir: &Path, cap_bytes: u64) -> Result<DiskCache> {
        let objects = dir.join("objects");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&objects).map_err(|e| Error::io(&objects, e))?;
        let lock_path = dir.join(".lock");
        let lock = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(Error::store(
                dir.display().to_string(),
                "cache directory is in use by another store (one store per cache_dir)",
            ));
        }
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let cache = DiskCache {
            objects,
            tmp,
            cap_bytes,
            index: Mutex::default(),
            next_tmp: AtomicU64::new(0),
            _lock: lock,
        };
        cache.scan()?;
        let victims = cache.index.lock().evict_to(cap_bytes, None);
        cache.delete(&victims);
        Ok(cache)
    }

    /// Index existing entries, oldest use first; anything not a complete entry is removed.
    fn scan(&self) -> Result<()> {
        let rd = std::fs::read_dir(&self.objects).map_err(|e| Error::io(&self.objects, e))?;
        let mut found = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(&self.objects, e))?;
            let path = ent.path();
            let entry = Digest::from_file_name(&ent.file_name().to_string_lossy())
                .and_then(|d| entry_files(&path).map(|(layout, bytes)| (d, layout, bytes)));
            let Some((d, layout, bytes)) = entry else {
                log::warn!("store: removing stray cache entry {}", path.display());
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                continue;
            };
            let mtime = ent.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
            found.push((mtime, d, layout, bytes));
        }
        found.sort_by_key(|f| f.0);
        let mut idx = self.index.lock();
        for (_, d, layout, bytes) in found {
            idx.insert(d, bytes, layout);
        }
        Ok(())
    }

    /// A fresh temp directory for one download.
    pub fn temp_entry(&self) -> Result<TempEntry> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let dir = self.tmp.join(format!("{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(TempEntry { dir, committed: false })
    }

    /// Move a verified download into `objects/` under `digest` and evict older entries down to
    /// the cap. An entry larger than the whole cap is not kept.
    pub fn commit(&self, mut tmp: TempEntry, digest: Digest, layout: Layout, bytes: u64) -> Result<()> {
        if bytes > self.cap_bytes {
            log::info!("store: {digest} ({bytes} bytes) is larger than the disk cap; not cached");
            return Ok(());
        }
        let dest = self.objects.join(digest.file_name());
        let victims = {
            let mut idx = self.index.lock();
            if !idx.entries.contains_key(&digest) {
                std::fs::rename(&tmp.dir, &dest).map_err(|e| Error::io(&dest, e))?;
                tmp.committed = true;
                idx.insert(digest, bytes, layout);
            }
            idx.evict_to(self.cap_bytes, Some(digest))
        };
        self.delete(&victims);
        Ok(())
    }

    /// The layout and file paths of the entry for `digest`, marked as just used.
    pub fn get(&self, digest: &Digest) -> Option<(Layout, Vec<PathBuf>)> {
        let layout = self.index.lock().touch(digest)?;
        let dir = self.objects.join(digest.file_name());
        if let Ok(f) = File::open(&dir) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        let names: &[&str] = match layout {
            Layout::PeftDir => &PEFT_FILES,
            Layout::GgufFile => &[GGUF_FILE],
        };
        Some((layout, names.iter().map(|n| dir.join(n)).collect()))
    }

    /// Drop the entry for `digest` (found unreadable or corrupted).
    pub fn remove(&self, digest: &Digest) {
        if self.index.lock().remove(digest) {
            self.delete(&[*digest]);
        }
    }

    /// Bytes of committed entries.
    pub fn total_bytes(&self) -> u64 {
        self.index.lock().total_bytes
    }

    fn delete(&self, victims: &[Digest]) {
        for d in victims {
            let p = self.objects.join(d.file_name());
            log::debug!("store: evicting {} from the disk cache", d);
            if let Err(e) = std::fs::remove_dir_all(&p) {
                log::warn!("store: could not remove {}: {e}", p.display());
            }
        }
    }
}

/// The layout and total size of a complete entry directory, or `None`.
fn entry_files(dir: &Path) -> Option<(Layout, u64)> {
    let size = |name: &str| std::fs::metadata(dir.join(name)).ok().filter(|m| m.is_file()).map(|m| m.len());
    if let Some(n) = size(GGUF_FILE) {
        return Some((Layout::GgufFile, n));
    }
    let (a, b) = (size(PEFT_FILES[0])?, size(PEFT_FILES[1])?);
    Some((Layout::PeftDir, a + b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_eviction_keeps_the_newest_and_respects_the_cap() {
        let mut idx = Index::default();
        let d = |i: u8| Digest::of_bytes(&[i]);
        for i in 0..4 {
            idx.insert(d(i), 10, Layout::GgufFile);
        }
        idx.touch(&d(0));
        let victims = idx.evict_to(25, Some(d(3)));
        assert_eq!(victims, vec![d(1), d(2)]);
        assert_eq!(idx.total_bytes, 20);
        assert!(idx.entries.contains_key(&d(0)) && idx.entries.contains_key(&d(3)));
        assert_eq!(idx.evict_to(5, Some(d(3))), vec![d(0)]);
        assert_eq!(idx.evict_to(5, Some(d(3))), Vec::<Digest>::new(), "the kept entry stays");
    }
}
