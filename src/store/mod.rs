//! The adapter store: one per runtime, shared by every device's fetcher. It turns an adapter
//! source (a path, `file://`, `http(s)://`, `ipfs://CID`) and an expected digest into verified bytes in host
//! RAM, downloading each adapter at most once.
//!
//! - **Identity.** Adapters are named by [`Digest`]: `sha256:<hex>` of a GGUF LoRA file, or of
//!   the canonical manifest of a PEFT adapter's two files (see [`digest`] for the exact
//!   definition; `sha256sum adapter_config.json adapter_model.safetensors | sha256sum`).
//! - **Verification.** Content is hashed as it arrives and compared with the expected digest;
//!   a mismatch is an [`Error::DigestMismatch`] naming both. A fetch without an expected digest
//!   is refused unless [`StoreConfig::allow_unverified`]; then the computed digest is recorded
//!   in [`FetchedAdapter::digest`] and the source is read again on every such fetch (it may
//!   change), while the result is still cached under its digest for fetches that name it.
//! - **Single flight.** Concurrent fetches of one digest (or, without a digest, one source)
//!   share one fetch: the first caller does it, the others block until it ends and get its
//!   outcome, error included. A follower whose own source differs is not retried from it.
//! - **Bounded downloads.** At most [`StoreConfig::max_concurrent_downloads`] adapters are
//!   downloaded at once; others wait their turn.
//! - **Caches.** A host-RAM cache (LRU under [`StoreConfig::ram_budget_bytes`], see
//!   `ram.rs`: it counts the bytes it keeps alive; an evicted adapter still held elsewhere stays
//!   in memory until its last `Arc` goes) and a disk cache of downloads (LRU under
//!   [`StoreConfig::disk_cap_bytes`], entries named by digest, re-hashed when read). Lookup
//!   order for a fetch with a digest: RAM, disk, source. Local sources are read in place, not
//!   copied to the disk cache. With a digest, a cached copy is served whatever the source.
//! - **Jail.** Local sources must resolve inside [`StoreConfig::roots`] (see [`source`]).
//!
//! - **IPFS.** `ipfs://CID` is fetched through [`StoreConfig::gateways`] (trustless CAR or raw
//!   responses, every block checked against its CID, UnixFS reassembled; hedged to the next
//!   gateway after [`StoreConfig::hedge_after`]; see `ipfs.rs`). The CID verifies the content,
//!   so no expected digest is needed; the fetched adapter's [`Digest`] is still the sha256
//!   definition above. The store remembers which digest each CID gave (in memory, and in
//!   `cache_dir/cids/<CID>` so it survives a restart), so a later fetch of the CID is answered
//!   from the caches. The cache directory is trusted to be the store's alone.
//!
//! The API is blocking and the [`Store`] is `Send + Sync`: the runtime calls it from blocking
//! tasks.

mod car;
pub mod cid;
pub mod digest;
mod disk;
mod fetched;
mod flight;
pub mod http;
mod ipfs;
mod ram;
pub mod source;
mod unixfs;
pub mod unixfs_write;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use sha2::{Digest as _, Sha256};

pub use cid::Cid;
pub use digest::Digest;
pub use fetched::{AdapterFile, FetchedAdapter, GGUF_FILE};
pub use http::HttpConfig;
pub use source::{Layout, Source};

use crate::error::{Error, Result};
use digest::PEFT_FILES;
use disk::DiskCache;
use flight::{Flights, Role, Semaphore};
use http::HttpClient;
use ram::RamCache;

/// Everything a [`Store`] needs; every size and count is a limit.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directories local sources must resolve inside. Empty: local sources are refused.
    pub roots: Vec<PathBuf>,
    /// Disk cache directory (created if missing; one store per directory).
    pub cache_dir: PathBuf,
    /// Most bytes of downloaded adapters kept on disk.
    pub disk_cap_bytes: u64,
    /// Most bytes of adapters the RAM cache keeps alive.
    pub ram_budget_bytes: u64,
    /// Most adapters downloaded at once (at least 1, at most 256).
    pub max_concurrent_downloads: usize,
    /// HTTP time limits, retries and size cap.
    pub http: HttpConfig,
    /// Accept fetches without an expected digest (their content cannot be verified).
    /// `ipfs://` sources verify against their CID and need no digest.
    pub allow_unverified: bool,
    /// IPFS HTTP gateways (`http(s)://host[:port][/prefix]`, no query) asked for `ipfs://`
    /// sources, in order; at most 16. Empty: `ipfs://` sources are refused when fetched.
    pub gateways: Vec<String>,
    /// When the gateway asked last has sent no response headers after this long, the next
    /// one is asked too (hedging). Greater than zero.
    pub hedge_after: Duration,
}

impl StoreConfig {
    /// Defaults around `cache_dir`: no roots, 16 GiB of disk, 2 GiB of RAM, 4 concurrent
    /// downloads, [`HttpConfig::default`], unverified content refused, no IPFS gateways,
    /// hedging after 300 ms.
    pub fn new(cache_dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            roots: Vec::new(),
            cache_dir: cache_dir.into(),
            disk_cap_bytes: 16 << 30,
            ram_budget_bytes: 2 << 30,
            max_concurrent_downloads: 4,
            http: HttpConfig::default(),
            allow_unverified: false,
            gateways: Vec::new(),
            hedge_after: Duration::from_millis(300),
        }
    }
}

/// Counters since the store was created, and current sizes. A snapshot; fields are plain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Calls to [`Store::fetch`].
    pub fetches: u64,
    /// Fetches answered from the RAM cache.
    pub ram_hits: u64,
    /// Fetches answered from the disk cache.
    pub disk_hits: u64,
    /// Fetches that waited on another caller's fetch of the same key.
    pub coalesced: u64,
    /// Adapters read from local sources.
    pub local_reads: u64,
    /// Adapters downloaded (a PEFT adapter's two files count once), successful or not.
    pub network_downloads: u64,
    /// Bytes received over the network in successful downloads.
    pub bytes_downloaded: u64,
    /// Fetches that ended in an error.
    pub failures: u64,
    /// Bytes the RAM cache keeps alive.
    pub ram_bytes: u64,
    /// Bytes of the disk cache's entries.
    pub disk_bytes: u64,
    /// Fetches in progress now (single-flight leaders).
    pub in_flight: u64,
}

#[derive(Default)]
struct Counters {
    fetches: AtomicU64,
    ram_hits: AtomicU64,
    disk_hits: AtomicU64,
    coalesced: AtomicU64,
    local_reads: AtomicU64,
    network_downloads: AtomicU64,
    bytes_downloaded: AtomicU64,
    failures: AtomicU64,
}

fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

/// Single-flight key: the digest when one is expected, else the source.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Digest(Digest),
    Source(Source),
}

/// The adapter store (see the module docs). `Send + Sync`; share it behind an `Arc`.
pub struct Store {
    cfg: StoreConfig,
    roots: Vec<PathBuf>,
    http: HttpClient,
    disk: DiskCache,
    ram: RamCache,
    flights: Flights<Key, Arc<FetchedAdapter>>,
    downloads: Semaphore,
    counters: Counters,
    /// The digest each CID fetched so far gave (CIDs are immutable); also on disk in `cids`.
    cid_digests: Mutex<HashMap<Cid, Digest>>,
    cids_dir: PathBuf,
}

impl Store {
    /// Check `cfg`, canonicalize the roots, open the disk cache (taking its lock, indexing
    /// what a previous store left, evicting down to the cap).
    pub fn new(cfg: StoreConfig) -> Result<Store> {
        if !(1..=256).contains(&cfg.max_concurrent_downloads) {
            return Err(Error::invalid("max_concurrent_downloads", "must be between 1 and 256"));
        }
        if cfg.gateways.len() > 16 {
            return Err(Error::invalid("gateways", "at most 16"));
        }
        for g in &cfg.gateways {
            let ok = matches!(Source::parse(g), Ok(Source::Http { layout: Layout::PeftDir, .. }));
            if !ok {
                return Err(Error::invalid("gateways", format!("'{g}' is not an http(s) base URL")));
            }
        }
        if cfg.hedge_after.is_zero() {
            return Err(Error::invalid("hedge_after", "must be greater than zero"));
        }
        let roots = source::canonical_roots(&cfg.roots)?;
        let http = HttpClient::new(&cfg.http)?;
        let disk = DiskCache::open(&cfg.cache_dir, cfg.disk_cap_bytes)?;
        let cids_dir = cfg.cache_dir.join("cids");
        std::fs::create_dir_all(&cids_dir).map_err(|e| Error::io(&cids_dir, e))?;
        Ok(Store {
            roots,
            http,
            disk,
            ram: RamCache::new(cfg.ram_budget_bytes),
            flights: Flights::new(),
            downloads: Semaphore::new(cfg.max_concurrent_downloads),
            counters: Counters::default(),
            cid_digests: Mutex::new(HashMap::new()),
            cids_dir,
            cfg,
        })
    }

    /// The adapter at `source`, verified against `expected` (see the module docs for the
    /// lookup order, single flight and what is refused). Blocks until done.
    ///
    /// Errors: [`Error::Store`] (refused source, HTTP status, size cap, truncated body,
    /// unverified content; for `ipfs://`, one error listing what each gateway did wrong:
    /// a block that does not hash to its CID or is missing, a status, a time-out),
    /// [`Error::DigestMismatch`], [`Error::Timeout`], [`Error::Io`] — each naming the source.
    /// The store keeps serving after any of them.
    pub fn fetch(&self, source: &Source, expected: Option<Digest>) -> Result<Arc<FetchedAdapter>> {
        bump(&self.counters.fetches, 1);
        let r = self.fetch_inner(source, expected);
        if r.is_err() {
            bump(&self.counters.failures, 1);
        }
        r
    }

    fn fetch_inner(&self, source: &Source, expected: Option<Digest>) -> Result<Arc<FetchedAdapter>> {
        let cid = source.cid();
        let expected = expected.or_else(|| cid.and_then(|c| self.known_digest(&c)));
        if expected.is_none() && cid.is_none() && !self.cfg.allow_unverified {
            return Err(Error::store(
                source.display(),
                "no expected digest given, and unverified content is not allowed (allow_unverified)",
            ));
        }
        if let Some(a) = expected.and_then(|d| self.ram.get(&d)) {
            bump(&self.counters.ram_hits, 1);
            return Ok(a);
        }
        let key = expected.map_or_else(|| Key::Source(source.clone()), Key::Digest);
        match self.flights.join(key) {
            Role::Follower(f) => {
                bump(&self.counters.coalesced, 1);
                f.wait()
            }
            Role::Leader(l) => {
                let outcome = self.lead(source, expected);
                l.finish(outcome)
            }
        }
    }

    /// The work of one fetch: RAM again (a leader may just have finished), disk, source.
    fn lead(&self, source: &Source, expected: Option<Digest>) -> Result<Arc<FetchedAdapter>> {
        if let Some(d) = expected {
            if let Some(a) = self.ram.get(&d) {
                bump(&self.counters.ram_hits, 1);
                return Ok(a);
            }
            if let Some(a) = self.read_disk_entry(&d) {
                bump(&self.counters.disk_hits, 1);
                let a = Arc::new(a);
                self.ram.insert(&a);
                return Ok(a);
            }
        }
        let a = match source {
            Source::Local { path, layout } => {
                let files = source::resolve_local(path, *layout, &self.roots)?;
                bump(&self.counters.local_reads, 1);
                let a = read_files(*layout, &files)?;
                check(source, expected, a.digest())?;
                a
            }
            Source::Http { url, layout } => self.download(source, url, *layout, expected)?,
            Source::Ipfs { cid } => self.download_ipfs(source, *cid, expected)?,
        };
        let a = Arc::new(a);
        self.ram.insert(&a);
        Ok(a)
    }

    /// The adapter from the disk cache if present and intact; a bad entry is removed.
    fn read_disk_entry(&self, d: &Digest) -> Option<FetchedAdapter> {
        let (layout, files) = self.disk.get(d)?;
        match read_files(layout, &files) {
            Ok(a) if a.digest() == *d => Some(a),
            Ok(a) => {
                log::warn!("store: disk cache entry {d} hashes to {}; dropping it", a.digest());
                self.disk.remove(d);
                None
            }
            Err(e) => {
                log::warn!("store: disk cache entry {d} unreadable ({e}); dropping it");
                self.disk.remove(d);
                None
            }
        }
    }

    /// Download under a permit into a temp entry, verify, commit to the disk cache.
    fn download(
        &self,
        source: &Source,
        url: &str,
        layout: Layout,
        expected: Option<Digest>,
    ) -> Result<FetchedAdapter> {
        let _permit = self.downloads.acquire();
        bump(&self.counters.network_downloads, 1);
        let tmp = self.disk.temp_entry()?;
        let names = file_names(layout);
        let mut files = Vec::with_capacity(names.len());
        let mut hashes = Vec::with_capacity(names.len());
        for name in names {
            let file_url = match layout {
                Layout::PeftDir => format!("{url}/{name}"),
                Layout::GgufFile => url.to_string(),
            };
            let got = self.http.download(&file_url, &tmp.path(name))?;
            bump(&self.counters.bytes_downloaded, got.bytes.len() as u64);
            hashes.push(got.sha256);
            files.push(AdapterFile { name, bytes: got.bytes.into() });
        }
        let digest = combine(layout, &hashes);
        check(source, expected, digest)?;
        let a = FetchedAdapter::new(digest, layout, files);
        if let Err(e) = self.disk.commit(tmp, digest, layout, a.total_bytes()) {
            log::warn!("store: could not keep {digest} in the disk cache: {e}");
        }
        Ok(a)
    }

    /// Fetch a CID through the gateways under a permit, check `expected`, keep it on disk.
    fn download_ipfs(&self, source: &Source, cid: Cid, expected: Option<Digest>) -> Result<FetchedAdapter> {
        let _permit = self.downloads.acquire();
        bump(&self.counters.network_downloads, 1);
        let got = ipfs::fetch(&self.http, &self.cfg.gateways, self.cfg.hedge_after, cid)?;
        bump(&self.counters.bytes_downloaded, got.received);
        let hashes: Vec<[u8; 32]> = got.files.iter().map(|(_, b)| Sha256::digest(b).into()).collect();
        let digest = combine(got.layout, &hashes);
        check(source, expected, digest)?;
        let tmp = self.disk.temp_entry()?;
        let mut files = Vec::with_capacity(got.files.len());
        for (name, bytes) in got.files {
            let p = tmp.path(name);
            std::fs::write(&p, &bytes).map_err(|e| Error::io(&p, e))?;
            files.push(AdapterFile { name, bytes: bytes.into() });
        }
        let a = FetchedAdapter::new(digest, got.layout, files);
        if let Err(e) = self.disk.commit(tmp, digest, got.layout, a.total_bytes()) {
            log::warn!("store: could not keep {digest} in the disk cache: {e}");
        }
        self.remember(cid, digest);
        Ok(a)
    }

    /// The digest `cid` gave before, from memory or `cache_dir/cids/`.
    fn known_digest(&self, cid: &Cid) -> Option<Digest> {
        if let Some(d) = self.cid_digests.lock().get(cid) {
            return Some(*d);
        }
        let text = std::fs::read_to_string(self.cids_dir.join(cid.to_string())).ok()?;
        let d = Digest::parse(text.trim()).ok()?;
        self.cid_digests.lock().insert(*cid, d);
        Some(d)
    }

    /// Record that `cid` holds the adapter `digest` (on disk best-effort, via a temp file).
    fn remember(&self, cid: Cid, digest: Digest) {
        self.cid_digests.lock().insert(cid, digest);
        let (path, tmp) = (self.cids_dir.join(cid.to_string()), self.cids_dir.join(format!(".{cid}.tmp")));
        let r = std::fs::write(&tmp, format!("{digest}\n")).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = r {
            log::warn!("store: could not record {cid} -> {digest} in {}: {e}", self.cids_dir.display());
        }
    }

    /// Counters and sizes now.
    pub fn stats(&self) -> StoreStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStats {
            fetches: get(&c.fetches),
            ram_hits: get(&c.ram_hits),
            disk_hits: get(&c.disk_hits),
            coalesced: get(&c.coalesced),
            local_reads: get(&c.local_reads),
            network_downloads: get(&c.network_downloads),
            bytes_downloaded: get(&c.bytes_downloaded),
            failures: get(&c.failures),
            ram_bytes: self.ram.bytes(),
            disk_bytes: self.disk.total_bytes(),
            in_flight: self.flights.len() as u64,
        }
    }

    /// The configuration the store was built with.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }
}

/// `Err(DigestMismatch)` when a digest was expected and `found` differs.
fn check(source: &Source, expected: Option<Digest>, found: Digest) -> Result<()> {
    match expected {
        Some(e) if e != found => Err(Error::DigestMismatch {
            source: source.display(),
            expected: e.to_string(),
            found: found.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Read and hash an adapter's files (paths in layout order) into memory.
fn read_files(layout: Layout, paths: &[PathBuf]) -> Result<FetchedAdapter> {
    let names = file_names(layout);
    debug_assert_eq!(names.len(), paths.len(), "one path per file of the layout");
    let mut files = Vec::with_capacity(names.len());
    let mut hashes = Vec::with_capacity(names.len());
    for (name, path) in names.iter().zip(paths) {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        hashes.push(<[u8; 32]>::from(Sha256::digest(&bytes)));
        files.push(AdapterFile { name, bytes: bytes.into() });
    }
    Ok(FetchedAdapter::new(combine(layout, &hashes), layout, files))
}

/// The files of a layout, in manifest order.
fn file_names(layout: Layout) -> &'static [&'static str] {
    match layout {
        Layout::PeftDir => &PEFT_FILES,
        Layout::GgufFile => &[GGUF_FILE],
    }
}

/// The adapter digest from its files' sha256 values (in [`file_names`] order).
fn combine(layout: Layout, hashes: &[[u8; 32]]) -> Digest {
    assert_eq!(hashes.len(), file_names(layout).len(), "one hash per file of the layout");
    match layout {
        Layout::PeftDir => Digest::of_peft(&hashes[0], &hashes[1]),
        Layout::GgufFile => Digest::Sha256(hashes[0]),
    }
}

/// Compile-time check that the store can be shared across threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Store>();
    shared::<FetchedAdapter>();
};
