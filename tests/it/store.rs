//! The adapter store against a local HTTP server (`store/server.rs`) and the fixture adapters:
//! digests, the path jail, verified downloads, single flight, bounded downloads, the RAM and
//! disk caches, and every error path followed by a fetch that works.

mod ipfs;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use loradock::store::{Digest, FetchedAdapter, HttpConfig, Layout, Source, Store, StoreConfig};
use loradock::Error;
use server::{Route, Server};
use sha2::{Digest as _, Sha256};

use crate::common::{model, tiny, TempDir};

/// `sha256sum adapter_config.json adapter_model.safetensors | sha256sum` in `adapters/r8_qv`.
const PEFT_DIGEST: &str = "sha256:6d93f4775034c520ed0dc1aeffe883abdb1c8ab70b95b99aec3d51df0b49bd97";
/// `sha256sum gguf_lora/r8_qv.gguf`.
const GGUF_DIGEST: &str = "sha256:1a96dd98c84695767764195f3dd742033e422d93dd5741ef553e92c178d2950e";

const CONFIG_PATH: &str = "/r8_qv/adapter_config.json";
const WEIGHTS_PATH: &str = "/r8_qv/adapter_model.safetensors";
const GGUF_PATH: &str = "/r8_qv.gguf";

fn digest(s: &str) -> Digest {
    Digest::parse(s).expect("a valid digest")
}

fn peft_dir() -> PathBuf {
    tiny().join("adapters/r8_qv")
}

fn gguf_file() -> PathBuf {
    tiny().join("gguf_lora/r8_qv.gguf")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Short limits so the failure tests take a fraction of a second each.
fn http_config() -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_millis(300),
        attempt_timeout: Duration::from_secs(5),
        max_attempts: 2,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        max_file_bytes: 1 << 20,
        proxy_from_env: false,
    }
}

fn config(dir: &TempDir) -> StoreConfig {
    StoreConfig {
        roots: Vec::new(),
        cache_dir: dir.0.join("cache"),
        disk_cap_bytes: 64 << 20,
        ram_budget_bytes: 64 << 20,
        max_concurrent_downloads: 4,
        http: http_config(),
        allow_unverified: false,
        gateways: Vec::new(),
        hedge_after: Duration::from_millis(300),
    }
}

fn store(cfg: StoreConfig) -> Store {
    Store::new(cfg).unwrap_or_else(|e| panic!("store: {e}"))
}

/// The fixture adapters at `CONFIG_PATH`/`WEIGHTS_PATH` (PEFT base `/r8_qv`) and `GGUF_PATH`.
fn serve_fixtures(s: &Server, delay: Duration) {
    let files = [
        (CONFIG_PATH, read(&peft_dir().join("adapter_config.json"))),
        (WEIGHTS_PATH, read(&peft_dir().join("adapter_model.safetensors"))),
        (GGUF_PATH, read(&gguf_file())),
    ];
    for (path, bytes) in files {
        s.route(path, if delay.is_zero() { Route::Ok(bytes) } else { Route::Delay(delay, bytes) });
    }
}

fn src(s: &str) -> Source {
    Source::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// `n` bytes no other blob has (`i` distinguishes them).
fn blob(i: u32, n: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..n).map(|k| (k as u32).wrapping_mul(31).wrapping_add(i * 7) as u8).collect();
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

fn blob_digest(b: &[u8]) -> Digest {
    Digest::of_bytes(b)
}

fn assert_same_bytes(a: &FetchedAdapter, name: &str, path: &Path) {
    assert_eq!(&**a.file(name).unwrap_or_else(|| panic!("no {name}")), &read(path)[..], "{name}");
}

#[test]
fn digests_match_an_independent_computation() {
    // The manifest, written out by hand as sha256sum prints it.
    let hex = |p: &Path| Sha256::digest(read(p)).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let manifest = format!(
        "{}  adapter_config.json\n{}  adapter_model.safetensors\n",
        hex(&peft_dir().join("adapter_config.json")),
        hex(&peft_dir().join("adapter_model.safetensors"))
    );
    let by_hand = format!("sha256:{:x}", Sha256::digest(manifest.as_bytes()));
    assert_eq!(by_hand, PEFT_DIGEST, "the constant is `sha256sum ... | sha256sum`");
    assert_eq!(format!("sha256:{}", hex(&gguf_file())), GGUF_DIGEST);

    let dir = TempDir::new("store-digest");
    let s = store(StoreConfig { roots: vec![tiny()], ..config(&dir) });
    let peft = s.fetch(&src(&peft_dir().to_string_lossy()), Some(digest(PEFT_DIGEST))).unwrap();
    assert_eq!(peft.digest().to_string(), PEFT_DIGEST);
    assert_eq!(peft.layout(), Layout::PeftDir);
    assert_same_bytes(&peft, "adapter_config.json", &peft_dir().join("adapter_config.json"));
    assert_same_bytes(&peft, "adapter_model.safetensors", &peft_dir().join("adapter_model.safetensors"));
    let gguf =
        s.fetch(&src(&format!("file://{}", gguf_file().display())), Some(digest(GGUF_DIGEST))).unwrap();
    assert_eq!((gguf.digest(), gguf.layout()), (digest(GGUF_DIGEST), Layout::GgufFile));
    assert_eq!(gguf.total_bytes(), read(&gguf_file()).len() as u64);
    let st = s.stats();
    assert_eq!((st.local_reads, st.network_downloads, st.disk_bytes), (2, 0, 0), "local reads stay local");
}

#[cfg(unix)]
#[test]
fn path_jail_refuses_dotdot_and_symlink_escapes() {
    use std::os::unix::fs::symlink;
    let base = TempDir::new("store-jail");
    let (root, outside) = (base.0.join("root"), base.0.join("outside"));
    for d in [&root, &outside, &root.join("ok"), &root.join("sneaky"), &root.join("dir.gguf")] {
        std::fs::create_dir_all(d).unwrap();
    }
    for name in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(peft_dir().join(name), root.join("ok").join(name)).unwrap();
        std::fs::copy(peft_dir().join(name), outside.join(name)).unwrap();
    }
    std::fs::copy(gguf_file(), outside.join("x.gguf")).unwrap();
    symlink(&outside, root.join("link")).unwrap();
    symlink(outside.join("x.gguf"), root.join("out.gguf")).unwrap();
    symlink(root.join("ok"), root.join("inner")).unwrap();
    std::fs::copy(peft_dir().join("adapter_config.json"), root.join("sneaky/adapter_config.json")).unwrap();
    symlink(outside.join("adapter_model.safetensors"), root.join("sneaky/adapter_model.safetensors"))
        .unwrap();

    let s = store(StoreConfig { roots: vec![root.clone()], ..config(&base) });
    let want = Some(digest(PEFT_DIGEST));
    let ok = |p: PathBuf| s.fetch(&src(&p.to_string_lossy()), want).map(|a| a.digest());
    assert_eq!(ok(root.join("ok")).unwrap(), digest(PEFT_DIGEST));
    assert_eq!(ok(root.join("inner")).unwrap(), digest(PEFT_DIGEST), "a symlink staying inside is fine");
    let url = format!("file://{}", root.join("ok").display());
    assert_eq!(s.fetch(&src(&url), want).unwrap().digest(), digest(PEFT_DIGEST));

    // Refusals name the path; the RAM cache must not hide them, so use a fresh digest-less
    // store that allows unverified content (the jail is checked before any read).
    let s = store(StoreConfig {
        roots: vec![root.clone()],
        allow_unverified: true,
        ..config(&TempDir::new("j2"))
    });
    for (p, named, needle) in [
        (root.join("../outside"), root.join("../outside"), "outside the configured store roots"),
        (root.join("link"), root.join("link"), "outside the configured store roots"),
        (root.join("out.gguf"), root.join("out.gguf"), "outside the configured store roots"),
        (
            root.join("sneaky"),
            root.join("sneaky/adapter_model.safetensors"),
            "outside the configured store roots",
        ),
        (root.join("dir.gguf"), root.join("dir.gguf"), "must be a regular file"),
        (root.join("missing"), root.join("missing"), "No such file"),
    ] {
        let e = s.fetch(&src(&p.to_string_lossy()), None).expect_err("refused").to_string();
        assert!(e.starts_with(&named.display().to_string()) && e.contains(needle), "{}: {e}", p.display());
    }
    let st = s.stats();
    assert_eq!((st.failures, st.local_reads, st.ram_bytes), (6, 0, 0), "nothing was read");
}

#[test]
fn http_fetch_verifies_peft_and_gguf_and_serves_ram_hits() {
    let server = Server::start();
    serve_fixtures(&server, Duration::ZERO);
    let dir = TempDir::new("store-http");
    let s = store(config(&dir));
    let peft = s.fetch(&src(&server.url("/r8_qv/")), Some(digest(PEFT_DIGEST))).unwrap();
    assert_same_bytes(&peft, "adapter_model.safetensors", &peft_dir().join("adapter_model.safetensors"));
    let gguf = s.fetch(&src(&server.url(GGUF_PATH)), Some(digest(GGUF_DIGEST))).unwrap();
    assert_same_bytes(&gguf, "adapter.gguf", &gguf_file());
    let again = s.fetch(&src(&server.url("/r8_qv")), Some(digest(PEFT_DIGEST))).unwrap();
    assert!(Arc::ptr_eq(&peft, &again), "a RAM hit hands out the same bytes");
    assert_eq!([CONFIG_PATH, WEIGHTS_PATH, GGUF_PATH].map(|p| server.hits(p)), [1, 1, 1]);
    let st = s.stats();
    assert_eq!((st.fetches, st.network_downloads, st.ram_hits, st.disk_hits), (3, 2, 1, 0));
    assert_eq!(st.bytes_downloaded, peft.total_bytes() + gguf.total_bytes());
    assert_eq!(st.ram_bytes, st.bytes_downloaded);
    assert_eq!(st.disk_bytes, st.bytes_downloaded);
    assert_eq!(st.in_flight, 0);
}

#[test]
fn fifty_concurrent_fetches_of_one_digest_download_once() {
    let server = Server::start();
    serve_fixtures(&server, Duration::from_millis(150));
    let dir = TempDir::new("store-single-flight");
    let s = store(config(&dir));
    let source = src(&server.url("/r8_qv"));
    let barrier = Barrier::new(50);
    let got: Vec<Arc<FetchedAdapter>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..50)
            .map(|_| {
                sc.spawn(|| {
                    barrier.wait();
                    s.fetch(&source, Some(digest(PEFT_DIGEST)))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("no panic").expect("fetch")).collect()
    });
    assert!(got.iter().all(|a| Arc::ptr_eq(a, &got[0])), "every caller shares one adapter");
    assert_eq!((server.hits(CONFIG_PATH), server.hits(WEIGHTS_PATH)), (1, 1), "one download");
    let st = s.stats();
    assert_eq!((st.fetches, st.network_downloads), (50, 1));
    assert_eq!(st.coalesced + st.ram_hits, 49);
}

#[test]
fn concurrent_downloads_stay_under_the_limit() {
    let server = Server::start();
    let blobs: Vec<Vec<u8>> = (0..6).map(|i| blob(i, 4096)).collect();
    for (i, b) in blobs.iter().enumerate() {
        server.route(&format!("/b{i}.gguf"), Route::Delay(Duration::from_millis(120), b.clone()));
    }
    let run = |limit: usize| {
        let dir = TempDir::new("store-bounded");
        let s = store(StoreConfig { max_concurrent_downloads: limit, ..config(&dir) });
        std::thread::scope(|sc| {
            for (i, b) in blobs.iter().enumerate() {
                let (s, url) = (&s, server.url(&format!("/b{i}.gguf")));
                sc.spawn(move || s.fetch(&src(&url), Some(blob_digest(b))).expect("fetch"));
            }
        });
        assert_eq!(s.stats().network_downloads, 6);
    };
    run(2);
    assert!((1..=2).contains(&server.max_active()), "limit 2, saw {}", server.max_active());
    let server_max_before = server.max_active();
    run(6);
    assert!(server.max_active() > server_max_before, "without the limit the server sees more at once");
    assert_eq!(server.total_hits(), 12);
}

#[test]
fn disk_cache_answers_after_ram_eviction_and_a_restart() {
    let server = Server::start();
    serve_fixtures(&server, Duration::ZERO);
    let dir = TempDir::new("store-disk-hit");
    let (peft_bytes, gguf_bytes) = (59_437, 29_440);
    // Room for the PEFT adapter alone: fetching the GGUF one evicts it from RAM.
    let cfg = StoreConfig { ram_budget_bytes: peft_bytes + 1000, ..config(&dir) };
    let (peft, gguf) = (src(&server.url("/r8_qv")), src(&server.url(GGUF_PATH)));
    {
        let s = store(cfg.clone());
        s.fetch(&peft, Some(digest(PEFT_DIGEST))).unwrap();
        s.fetch(&peft, Some(digest(PEFT_DIGEST))).unwrap();
        s.fetch(&gguf, Some(digest(GGUF_DIGEST))).unwrap();
        assert_eq!(s.stats().ram_bytes, gguf_bytes, "the PEFT adapter left RAM");
        let a = s.fetch(&peft, Some(digest(PEFT_DIGEST))).unwrap();
        assert_same_bytes(&a, "adapter_config.json", &peft_dir().join("adapter_config.json"));
        let st = s.stats();
        assert_eq!((st.ram_hits, st.disk_hits, st.network_downloads), (1, 1, 2));
        assert_eq!(st.disk_bytes, peft_bytes + gguf_bytes);
    }
    let s = store(cfg);
    assert_eq!(s.stats().disk_bytes, peft_bytes + gguf_bytes, "a new store finds the entries");
    s.fetch(&gguf, Some(digest(GGUF_DIGEST))).unwrap();
    assert_eq!(s.stats().disk_hits, 1);
    assert_eq!(server.total_hits(), 3, "no request after the first download of each");
}

#[test]
fn disk_cap_evicts_the_least_recently_used() {
    let server = Server::start();
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| blob(100 + i, if i == 3 { 3000 } else { 1000 })).collect();
    for (i, b) in blobs.iter().enumerate() {
        server.route(&format!("/d{i}.gguf"), Route::Ok(b.clone()));
    }
    let dir = TempDir::new("store-disk-cap");
    // No RAM cache: every repeat fetch goes to the disk or the network.
    let s = store(StoreConfig { disk_cap_bytes: 2500, ram_budget_bytes: 0, ..config(&dir) });
    let fetch = |i: usize| {
        s.fetch(&src(&server.url(&format!("/d{i}.gguf"))), Some(blob_digest(&blobs[i]))).expect("fetch");
    };
    let hits = |i: usize| server.hits(&format!("/d{i}.gguf"));
    fetch(0);
    fetch(1);
    fetch(2); // evicts 0
    assert_eq!(s.stats().disk_bytes, 2000);
    fetch(2); // disk hit, 2 is now the most recent
    assert_eq!((hits(2), s.stats().disk_hits), (1, 1));
    fetch(0); // network again; evicts 1 (least recently used)
    assert_eq!(hits(0), 2);
    fetch(1);
    assert_eq!(hits(1), 2, "1 had been evicted");
    fetch(3); // larger than the whole cap: served, not kept
    assert_eq!(s.stats().disk_bytes, 2000);
    assert_eq!(s.stats().ram_bytes, 0);
}

/// One failing route, what its error must say, and how many requests it may take.
struct Case {
    path: &'static str,
    route: Route,
    needle: &'static str,
    requests: usize,
}

#[test]
fn http_errors_are_clear_and_the_store_keeps_serving() {
    let server = Server::start();
    serve_fixtures(&server, Duration::ZERO);
    let dir = TempDir::new("store-errors");
    let s = store(config(&dir));
    let cap = http_config().max_file_bytes as usize;
    let good = blob(1, 2000);
    let stall = Duration::from_millis(900);
    let cases = [
        Case {
            path: "/slow.gguf",
            route: Route::StallHeaders(stall, good.clone()),
            needle: "timed out: no data for 300 ms (http.read_timeout) (gave up after 2 attempts)",
            requests: 2,
        },
        Case {
            path: "/stall.gguf",
            route: Route::StallBody(stall, good.clone()),
            needle: "timed out: no data for 300 ms",
            requests: 2,
        },
        Case {
            path: "/500.gguf",
            route: Route::Status(500),
            needle: "HTTP 500 Internal Server Error (gave up after 2 attempts)",
            requests: 2,
        },
        Case { path: "/404.gguf", route: Route::Status(404), needle: "HTTP 404 Not Found", requests: 1 },
        Case {
            path: "/cut.gguf",
            route: Route::Truncated(good.clone(), 700),
            needle: "cut short",
            requests: 2,
        },
        Case {
            path: "/big.gguf",
            route: Route::Ok(vec![0; cap + 1]),
            needle: "Content-Length 1048577 exceeds the size cap of 1048576 bytes",
            requests: 1,
        },
        Case {
            path: "/big-stream.gguf",
            route: Route::NoLength(vec![0; cap + 1]),
            needle: "the body exceeds the size cap",
            requests: 1,
        },
        Case {
            path: "/wrong.gguf",
            route: Route::Ok(blob(2, 2000)),
            needle: "digest mismatch: expected",
            requests: 1,
        },
    ];
    for c in cases {
        server.route(c.path, c.route);
        let url = server.url(c.path);
        let before = s.stats();
        let e = s.fetch(&src(&url), Some(blob_digest(&good))).expect_err(c.path);
        let msg = e.to_string();
        assert!(msg.starts_with(&url) && msg.contains(c.needle), "{}: {msg}", c.path);
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert_eq!(server.hits(c.path), c.requests, "{}: {msg}", c.path);
        if c.path == "/wrong.gguf" {
            let Error::DigestMismatch { expected, found, .. } = &e else { panic!("{e:?}") };
            assert_eq!(
                (expected, found),
                (&blob_digest(&good).to_string(), &blob_digest(&blob(2, 2000)).to_string())
            );
        }
        if c.path == "/slow.gguf" {
            assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
        }
        // No temp file left behind, nothing cached, nothing in flight; the store still works.
        let tmp_left = std::fs::read_dir(dir.0.join("cache/tmp")).unwrap().count();
        assert_eq!(tmp_left, 0, "{}: temp files left", c.path);
        let st = s.stats();
        assert_eq!(st.in_flight, 0, "{}", c.path);
        assert_eq!((st.disk_bytes, st.ram_bytes), (before.disk_bytes, before.ram_bytes), "{}", c.path);
        let ok = s.fetch(&src(&server.url(GGUF_PATH)), Some(digest(GGUF_DIGEST))).expect("still serving");
        assert_eq!(ok.digest(), digest(GGUF_DIGEST));
    }

    // A 500 then a 200: one retry, success.
    server.route("/flaky.gguf", Route::FailThenOk(1, good.clone()));
    let a = s.fetch(&src(&server.url("/flaky.gguf")), Some(blob_digest(&good))).expect("retried");
    assert_eq!((a.digest(), server.hits("/flaky.gguf")), (blob_digest(&good), 2));

    // Nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/gone.gguf");
    let e = s.fetch(&src(&url), Some(blob_digest(&blob(3, 10)))).unwrap_err().to_string();
    assert!(e.starts_with(&url) && e.contains("connection failed"), "{e}");

    // https:// to a server that answers in plain text: a TLS failure, not retried.
    let (url, connections) = plain_text_tls_peer();
    let e = s.fetch(&src(&url), Some(blob_digest(&blob(4, 10)))).unwrap_err().to_string();
    assert!(e.starts_with(&url) && !e.contains("gave up"), "{e}");
    assert_eq!(connections.join().expect("peer thread"), 1, "a TLS failure is not retried");
    assert_eq!(s.stats().failures, 10);
}

/// An `https://` URL whose server answers every connection with plain HTTP, and a thread
/// that returns how many connections it saw in its 0.8 s of life.
fn plain_text_tls_peer() -> (String, std::thread::JoinHandle<usize>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("https://127.0.0.1:{}/x.gguf", listener.local_addr().expect("addr").port());
    listener.set_nonblocking(true).expect("nonblocking");
    let peer = std::thread::spawn(move || {
        let end = std::time::Instant::now() + Duration::from_millis(800);
        let mut n = 0;
        while std::time::Instant::now() < end {
            match listener.accept() {
                Ok((mut c, _)) => {
                    n += 1;
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        n
    });
    (url, peer)
}

#[test]
fn unverified_content_is_refused_unless_allowed() {
    let server = Server::start();
    serve_fixtures(&server, Duration::ZERO);
    let dir = TempDir::new("store-unverified");
    let s = store(StoreConfig { roots: vec![tiny()], ..config(&dir) });
    for source in [server.url("/r8_qv"), peft_dir().to_string_lossy().into_owned()] {
        let e = s.fetch(&src(&source), None).unwrap_err().to_string();
        assert!(e.starts_with(&source) && e.contains("allow_unverified"), "{e}");
    }
    assert_eq!(server.total_hits(), 0, "refused before any request");
    drop(s);

    let s = store(StoreConfig { allow_unverified: true, ..config(&dir) });
    let a = s.fetch(&src(&server.url("/r8_qv")), None).unwrap();
    assert_eq!(a.digest(), digest(PEFT_DIGEST), "the computed digest is recorded");
    s.fetch(&src(&server.url("/r8_qv")), None).unwrap();
    assert_eq!(server.hits(WEIGHTS_PATH), 2, "without a digest the source is asked again");
    s.fetch(&src(&server.url("/r8_qv")), Some(a.digest())).unwrap();
    assert_eq!((server.hits(WEIGHTS_PATH), s.stats().ram_hits), (2, 1), "with it, the cache answers");
}

#[test]
fn fetched_adapters_load_against_the_tiny_model() {
    let server = Server::start();
    serve_fixtures(&server, Duration::ZERO);
    let dir = TempDir::new("store-load");
    let s = store(config(&dir));
    let m = model(&tiny().join("model"));
    for (url, want, fixture) in
        [(server.url("/r8_qv"), PEFT_DIGEST, peft_dir()), (server.url(GGUF_PATH), GGUF_DIGEST, gguf_file())]
    {
        let a = s.fetch(&src(&url), Some(digest(want))).unwrap();
        let out = TempDir::new("store-load-out");
        let path = a.write_to_dir(&out.0).unwrap();
        let loaded = loradock::lora::load_adapter(&path, &m.config).unwrap_or_else(|e| panic!("{url}: {e}"));
        let reference = loradock::lora::load_adapter(&fixture, &m.config).unwrap();
        assert_eq!(loaded.content_hash(), reference.content_hash(), "{url}");
        assert!(loaded.max_rank() == 8, "{url}");
    }
}

#[test]
fn a_cache_dir_serves_one_store_at_a_time() {
    let dir = TempDir::new("store-lock");
    let first = store(config(&dir));
    let e = Store::new(config(&dir)).err().expect("second store refused").to_string();
    assert!(e.contains("in use by another store"), "{e}");
    drop(first);
    assert!(Store::new(config(&dir)).is_ok(), "the lock goes with the store");
}
