//! `ipfs://CID` sources against gateway emulations (`server.rs`) serving CARs and raw blocks
//! that js-ipfs (`tests/ipfs/make_cars.mjs`: `ipfs-unixfs-importer`, `@ipld/car`) built from
//! the fixture adapters — an implementation we did not write. Honest, lying (a flipped byte in
//! one block), missing-block, failing and stalling gateways.
//!
//! The fixtures need `node` and `tests/ipfs/node_modules` (`npm ci --prefix tests/ipfs`).
//! Without them these tests skip with a message, unless `CI` or
//! `LORADOCK_REQUIRE_IPFS_FIXTURES` is set (`scripts/test.sh` sets it): then they fail.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use loradock::store::{Cid, Layout, Source, Store, StoreConfig};
use sha2::{Digest as _, Sha256};

use super::server::{Route, Server};
use super::{config, digest, gguf_file, peft_dir, read, src, store, GGUF_DIGEST, PEFT_DIGEST};
use crate::common::TempDir;

/// The CARs and CIDs `make_cars.mjs` wrote.
struct Fixtures {
    dir: PathBuf,
    cids: serde_json::Value,
}

impl Fixtures {
    fn cid(&self, name: &str) -> String {
        self.cids[name]["root"].as_str().unwrap_or_else(|| panic!("no {name} in cids.json")).to_string()
    }

    fn bytes(&self, file: &str) -> Vec<u8> {
        read(&self.dir.join(file))
    }
}

/// Build the fixtures once per test process; `None` (after saying why) when node or the npm
/// packages are missing outside CI.
fn fixtures() -> Option<&'static Fixtures> {
    static F: OnceLock<Option<Fixtures>> = OnceLock::new();
    F.get_or_init(|| {
        let required = std::env::var_os("CI").is_some_and(|v| !v.is_empty())
            || std::env::var_os("LORADOCK_REQUIRE_IPFS_FIXTURES").is_some_and(|v| v != "0");
        let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ipfs");
        let missing = if std::process::Command::new("node").arg("--version").output().is_err() {
            Some("node is not installed")
        } else if !js.join("node_modules/ipfs-unixfs-importer").is_dir() {
            Some("tests/ipfs/node_modules is missing (run `npm ci --prefix tests/ipfs`)")
        } else {
            None
        };
        if let Some(why) = missing {
            assert!(!required, "IPFS fixtures required (CI / LORADOCK_REQUIRE_IPFS_FIXTURES) but {why}");
            eprintln!("SKIPPING IPFS store tests: {why}");
            return None;
        }
        let out = TempDir::new("ipfs-cars");
        let dir = out.0.clone();
        std::mem::forget(out); // shared by every test of the process
        let run = std::process::Command::new("node")
            .arg(js.join("make_cars.mjs"))
            .arg(crate::common::tiny())
            .arg(&dir)
            .output()
            .expect("run node");
        assert!(run.status.success(), "make_cars.mjs failed: {}", String::from_utf8_lossy(&run.stderr));
        let cids = serde_json::from_slice(&read(&dir.join("cids.json"))).expect("cids.json");
        Some(Fixtures { dir, cids })
    })
    .as_ref()
}

/// A CARv1 split into its header and sections (CID + block), to build lying answers from.
struct CarParts {
    header: Vec<u8>,
    sections: Vec<Vec<u8>>,
}

fn varint(b: &[u8], at: &mut usize) -> usize {
    let mut v = 0usize;
    for i in 0.. {
        let x = b[*at];
        *at += 1;
        v |= ((x & 0x7f) as usize) << (7 * i);
        if x & 0x80 == 0 {
            break;
        }
    }
    v
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl CarParts {
    fn split(b: &[u8]) -> CarParts {
        let mut at = 0;
        let n = varint(b, &mut at);
        let header = b[..at + n].to_vec();
        at += n;
        let mut sections = Vec::new();
        while at < b.len() {
            let n = varint(b, &mut at);
            sections.push(b[at..at + n].to_vec());
            at += n;
        }
        CarParts { header, sections }
    }

    fn join(&self) -> Vec<u8> {
        let mut out = self.header.clone();
        for s in &self.sections {
            put_varint(&mut out, s.len());
            out.extend(s);
        }
        out
    }

    /// The CID of section `i` as text (sections here are CIDv1 + block: 36-byte CIDs).
    fn cid(&self, i: usize) -> String {
        let c = &self.sections[i][..36];
        format!("b{}", base32(c))
    }
}

fn base32(b: &[u8]) -> String {
    const A: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let (mut s, mut acc, mut bits) = (String::new(), 0u32, 0);
    for &x in b {
        acc = (acc << 8) | x as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            s.push(A[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        s.push(A[((acc << (5 - bits)) & 31) as usize] as char);
    }
    s
}

/// A gateway serving `answers` (CID name in the fixtures → body) at `/ipfs/<cid>?format=…`.
fn gateway(f: &Fixtures, answers: &[(&str, Route)]) -> Server {
    let s = Server::start();
    for (name, route) in answers {
        s.route(&path(f, name), route.clone());
    }
    s
}

fn path(f: &Fixtures, name: &str) -> String {
    let format = if name == "raw" { "raw" } else { "car" };
    format!("/ipfs/{}?format={format}", f.cid(name))
}

/// Every fixture, answered honestly.
fn honest(f: &Fixtures) -> Server {
    let all: Vec<(&str, Route)> = ["dir", "file", "file_v0", "gguf_dir"]
        .into_iter()
        .map(|n| (n, Route::Ok(f.bytes(&format!("{n}.car")))))
        .chain([("raw", Route::Ok(f.bytes("raw.bin")))])
        .collect();
    gateway(f, &all)
}

fn ipfs_config(dir: &TempDir, gateways: &[&Server]) -> StoreConfig {
    StoreConfig { gateways: gateways.iter().map(|g| g.url("")).collect(), ..config(dir) }
}

/// [`ipfs_config`] with its cache in `dir/sub` (several stores in one test directory).
fn ipfs_config_in(dir: &TempDir, sub: &str, gateways: &[&Server]) -> StoreConfig {
    StoreConfig { cache_dir: dir.0.join(sub), ..ipfs_config(dir, gateways) }
}

fn ipfs(f: &Fixtures, name: &str) -> Source {
    src(&format!("ipfs://{}", f.cid(name)))
}

#[test]
fn cars_from_js_ipfs_verify_and_reassemble_byte_identical() {
    let Some(f) = fixtures() else { return };
    let gw = honest(f);
    let dir = TempDir::new("ipfs-honest");
    let s = store(ipfs_config(&dir, &[&gw]));

    // The PEFT directory: no expected digest needed, the CID verifies it.
    let a = s.fetch(&ipfs(f, "dir"), None).unwrap_or_else(|e| panic!("dir: {e}"));
    assert_eq!((a.layout(), a.digest()), (Layout::PeftDir, digest(PEFT_DIGEST)));
    for name in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(&**a.file(name).unwrap(), &read(&peft_dir().join(name))[..], "{name}");
    }
    assert_eq!(gw.accept(&path(f, "dir")).as_deref(), Some("application/vnd.ipld.car"));

    // The GGUF file: a 2-level CIDv1 tree, a CIDv0 with dag-pb leaves, and inside a directory.
    for name in ["file", "file_v0", "gguf_dir"] {
        let a = s.fetch(&ipfs(f, name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((a.layout(), a.digest()), (Layout::GgufFile, digest(GGUF_DIGEST)), "{name}");
        assert_eq!(&*a.files()[0].bytes, &read(&gguf_file())[..], "{name}");
    }
    assert!(f.cid("file_v0").starts_with("Qm"));

    // A raw block (codec 0x55): asked for as ?format=raw, a single-file adapter.
    let a = s.fetch(&ipfs(f, "raw"), None).unwrap_or_else(|e| panic!("raw: {e}"));
    assert_eq!(&*a.files()[0].bytes, &read(&peft_dir().join("adapter_config.json"))[..]);
    assert_eq!(gw.accept(&path(f, "raw")).as_deref(), Some("application/vnd.ipld.raw"));
    assert_eq!(a.digest(), loradock::store::Digest::of_bytes(&a.files()[0].bytes));

    // A CID already fetched is answered from the cache; an expected digest is checked too.
    let hits = gw.total_hits();
    s.fetch(&ipfs(f, "dir"), None).unwrap();
    s.fetch(&ipfs(f, "dir"), Some(digest(PEFT_DIGEST))).unwrap();
    assert_eq!(gw.total_hits(), hits, "no new request");
    drop(s);

    // After a restart the CID is still known: the disk cache answers.
    let s = store(ipfs_config(&dir, &[&gw]));
    let a = s.fetch(&ipfs(f, "dir"), None).unwrap();
    assert_eq!((a.digest(), s.stats().disk_hits, gw.total_hits()), (digest(PEFT_DIGEST), 1, hits));
    drop(s);

    // Fifty concurrent fetches of a new CID: one gateway request.
    let s = store(ipfs_config_in(&dir, "ipfs-concurrent", &[&gw]));
    let before = gw.hits(&path(f, "file"));
    let barrier = std::sync::Barrier::new(50);
    std::thread::scope(|sc| {
        for _ in 0..50 {
            sc.spawn(|| {
                barrier.wait();
                assert_eq!(s.fetch(&ipfs(f, "file"), None).unwrap().digest(), digest(GGUF_DIGEST));
            });
        }
    });
    assert_eq!(gw.hits(&path(f, "file")) - before, 1);
    drop(s);
    let s = store(ipfs_config_in(&dir, "ipfs-honest-2", &[&gw]));
    let e = s.fetch(&ipfs(f, "file"), Some(digest(PEFT_DIGEST))).unwrap_err().to_string();
    assert!(e.starts_with(&format!("ipfs://{}", f.cid("file"))) && e.contains("digest mismatch"), "{e}");

    // Our CID text agrees with js-ipfs's for every root.
    for name in ["dir", "file", "file_v0", "gguf_dir", "raw"] {
        assert_eq!(Cid::parse(&f.cid(name)).unwrap().to_string(), f.cid(name));
    }
}

#[test]
fn lying_and_incomplete_gateways_are_caught_and_the_next_used() {
    let Some(f) = fixtures() else { return };
    let car = CarParts::split(&f.bytes("dir.car"));
    // A flipped byte at the end of the largest block.
    let mut lie = CarParts { header: car.header.clone(), sections: car.sections.clone() };
    let big = (0..lie.sections.len()).max_by_key(|&i| lie.sections[i].len()).unwrap();
    *lie.sections[big].last_mut().unwrap() ^= 1;
    let lied_cid = car.cid(big);
    // The first block (a leaf) left out.
    let mut short = CarParts { header: car.header.clone(), sections: car.sections.clone() };
    let missing_cid = short.cid(0);
    short.sections.remove(0);
    // An unrelated (valid) block added: ignored.
    let mut extra = CarParts { header: car.header.clone(), sections: car.sections.clone() };
    let junk = b"not part of this DAG".to_vec();
    let mut sec = vec![0x01, 0x55, 0x12, 0x20];
    sec.extend(Sha256::digest(&junk));
    sec.extend(&junk);
    extra.sections.insert(1, sec);
    // A raw block with a flipped byte.
    let mut raw_lie = f.bytes("raw.bin");
    raw_lie[10] ^= 0x20;

    let liar = gateway(f, &[("dir", Route::Ok(lie.join())), ("raw", Route::Ok(raw_lie))]);
    let incomplete = gateway(f, &[("dir", Route::Ok(short.join()))]);
    let padded = gateway(f, &[("dir", Route::Ok(extra.join()))]);
    let good = honest(f);
    let dir = TempDir::new("ipfs-liars");

    let s = store(ipfs_config(&dir, &[&liar, &incomplete, &good]));
    let a = s.fetch(&ipfs(f, "dir"), None).expect("the honest gateway answers");
    assert_eq!(a.digest(), digest(PEFT_DIGEST));
    let p = path(f, "dir");
    assert_eq!((liar.hits(&p), incomplete.hits(&p), good.hits(&p)), (1, 1, 1));
    let a = s.fetch(&ipfs(f, "raw"), None).expect("raw via the honest gateway");
    assert_eq!(&*a.files()[0].bytes, &read(&peft_dir().join("adapter_config.json"))[..]);
    drop(s);

    // Alone, each bad answer is refused, naming the block.
    for (gw, needle, cid) in [
        (&liar, "does not hash to its CID", &lied_cid),
        (&incomplete, "is missing from the gateway's answer", &missing_cid),
    ] {
        let s = store(ipfs_config_in(&dir, "ipfs-liar-alone", &[gw]));
        let e = s.fetch(&ipfs(f, "dir"), None).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains(cid.as_str()), "{needle}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
    let s = store(ipfs_config_in(&dir, "ipfs-raw-liar", &[&liar]));
    let e = s.fetch(&ipfs(f, "raw"), None).unwrap_err().to_string();
    assert!(e.contains("does not hash to its CID") && e.contains(&f.cid("raw")), "{e}");

    // Blocks the DAG does not reach are ignored.
    let s = store(ipfs_config_in(&dir, "ipfs-padded", &[&padded]));
    assert_eq!(s.fetch(&ipfs(f, "dir"), None).unwrap().digest(), digest(PEFT_DIGEST));
}

#[test]
fn a_stalled_gateway_is_hedged_to_the_next() {
    let Some(f) = fixtures() else { return };
    let stall = Duration::from_secs(4);
    let slow = gateway(f, &[("file", Route::StallHeaders(stall, f.bytes("file.car")))]);
    let good = honest(f);
    let dir = TempDir::new("ipfs-hedge");
    let mut cfg = ipfs_config(&dir, &[&slow, &good]);
    cfg.hedge_after = Duration::from_millis(100);
    cfg.http.read_timeout = Duration::from_secs(10); // only hedging can save the fetch
    let s = store(cfg);
    let t = Instant::now();
    let a = s.fetch(&ipfs(f, "file"), None).expect("hedged");
    let took = t.elapsed();
    assert_eq!(a.digest(), digest(GGUF_DIGEST));
    assert!(took < Duration::from_millis(1500), "took {took:?}, the stall is {stall:?}");
    assert!(took >= Duration::from_millis(100), "the second gateway was asked only after hedge_after");
    assert_eq!((slow.hits(&path(f, "file")), good.hits(&path(f, "file"))), (1, 1));

    // A gateway that answers promptly is not hedged.
    let before = good.total_hits();
    let other = honest(f);
    let s2 = store(StoreConfig {
        hedge_after: Duration::from_millis(100),
        ..ipfs_config_in(&dir, "ipfs-nohedge", &[&good, &other])
    });
    s2.fetch(&ipfs(f, "dir"), None).unwrap();
    assert_eq!((good.total_hits() - before, other.total_hits()), (1, 0));
}

#[test]
fn all_gateways_bad_is_one_clear_error_and_unsupported_cids_are_refused() {
    let Some(f) = fixtures() else { return };
    let failing = gateway(f, &[("dir", Route::Status(500))]);
    let mut lie = f.bytes("dir.car");
    let n = lie.len();
    lie[n - 1] ^= 1;
    let liar = gateway(f, &[("dir", Route::Ok(lie))]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = TempDir::new("ipfs-all-bad");
    let mut cfg = ipfs_config(&dir, &[&failing, &liar]);
    cfg.gateways.push(format!("http://127.0.0.1:{port}"));
    let s = store(cfg);
    let e = s.fetch(&ipfs(f, "dir"), None).unwrap_err().to_string();
    let name = format!("ipfs://{}", f.cid("dir"));
    assert!(e.starts_with(&name) && e.contains("no gateway gave verified content"), "{e}");
    for needle in ["HTTP 500", "does not hash to its CID", "connection failed", "gave up after 2 rounds"] {
        assert!(e.contains(needle), "{needle}: {e}");
    }
    assert!(!e.contains('\n'), "{e}");
    // The 500 and the dead gateway were asked again (http.max_attempts rounds); the liar not.
    assert_eq!((failing.hits(&path(f, "dir")), liar.hits(&path(f, "dir"))), (2, 1));
    let st = s.stats();
    assert_eq!((st.in_flight, st.ram_bytes, st.disk_bytes), (0, 0, 0));
    assert_eq!(std::fs::read_dir(dir.0.join("cache/tmp")).unwrap().count(), 0);

    // A gateway failing once is asked again after a pause, and answers.
    let flaky = gateway(f, &[("dir", Route::FailThenOk(1, f.bytes("dir.car")))]);
    let s = store(ipfs_config_in(&dir, "ipfs-flaky", &[&flaky]));
    assert_eq!(s.fetch(&ipfs(f, "dir"), None).unwrap().digest(), digest(PEFT_DIGEST));
    assert_eq!(flaky.hits(&path(f, "dir")), 2);

    // No gateways configured.
    let s = store(StoreConfig { cache_dir: dir.0.join("ipfs-none"), ..config(&dir) });
    let e = s.fetch(&ipfs(f, "dir"), None).unwrap_err().to_string();
    assert!(e.contains("no IPFS gateways configured"), "{e}");
    // Gateways must be http(s) base URLs.
    let bad = StoreConfig {
        gateways: vec!["ftp://x".into()],
        ..StoreConfig { cache_dir: dir.0.join("ipfs-bad-gw"), ..config(&dir) }
    };
    assert!(Store::new(bad).err().unwrap().to_string().contains("gateways"));

    // CIDs whose content cannot be checked are refused when parsed, saying why.
    let cid = |codec: u8, hash: u8, len: u8| {
        let mut b = vec![1, codec, hash, len];
        b.extend(std::iter::repeat_n(9u8, len as usize));
        format!("ipfs://b{}", base32(&b))
    };
    for (s, needle) in [
        (cid(0x71, 0x12, 32), "codec 0x71 (dag-cbor) is not supported"),
        (cid(0x55, 0x1e, 32), "multihash blake3 (0x1e) is not supported"),
        (cid(0x55, 0x00, 0), "multihash identity (0x0) is not supported"),
        ("ipfs://k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8".into(), "multibase 'k'"),
        ("ipfs://not-a-cid".into(), "multibase 'n'"),
        (format!("ipfs://{}/adapter_config.json", f.cid("dir")), "CID alone"),
    ] {
        let e = Source::parse(&s).unwrap_err().to_string();
        assert!(e.starts_with(&s) && e.contains(needle), "{s}: {e}");
    }
}
