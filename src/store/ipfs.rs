//! `ipfs://CID` through trustless HTTP gateways, verified end to end, with hedged requests.
//!
//! - A **raw** CID (codec 0x55) is asked for as `GET {gateway}/ipfs/{cid}?format=raw`
//!   (`Accept: application/vnd.ipld.raw`); its bytes must hash to the CID. It is a GGUF file.
//! - A **dag-pb** CID is asked for as `GET {gateway}/ipfs/{cid}?format=car`
//!   (`Accept: application/vnd.ipld.car`); every block of the CAR is checked against its CID
//!   (`car.rs`), then the UnixFS DAG is walked from the requested CID (`unixfs.rs`): a file is
//!   a GGUF LoRA; a directory must hold `adapter_config.json` and `adapter_model.safetensors`
//!   (a PEFT adapter) or else exactly one `*.gguf` file. Blocks the DAG does not reach are
//!   ignored; a block it reaches that is missing, or any block with wrong bytes, refuses that
//!   gateway's answer, naming the block.
//! - **Gateways** are tried in configured order: a gateway that fails (connection, status,
//!   time-out, unverifiable answer) passes the fetch to the next. **Hedging:** when the gateway
//!   asked last has not sent its response headers within `hedge_after`, the next one is asked
//!   too, in parallel; the first answer that verifies wins and the others are told to stop
//!   (a loser blocked before its headers ends at its read time-out). At most one thread per
//!   configured gateway per fetch.
//! - **Retries:** when every gateway has failed and some failed in a way asking again may cure
//!   (connection, time-out, 5xx/408/429, body cut short — not a wrong or missing block, not a
//!   404), those are asked again in another round, up to [`HttpConfig::max_attempts`] rounds
//!   with the same backoff as HTTP sources.
//!
//! [`HttpConfig::max_attempts`]: super::HttpConfig::max_attempts

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::cid::{Cid, RAW};
use super::digest::{PEFT_CONFIG, PEFT_WEIGHTS};
use super::fetched::GGUF_FILE;
use super::http::{Failure, HttpClient};
use super::source::Layout;
use super::unixfs::{self, Entry};
use crate::error::{Error, Result};

/// An adapter read from a gateway and verified against its CID.
pub(crate) struct IpfsAdapter {
    pub layout: Layout,
    /// The files in manifest order, under their store names.
    pub files: Vec<(&'static str, Vec<u8>)>,
    /// Bytes of the winning gateway's response.
    pub received: u64,
}

/// Fetch `cid` through `gateways` (see the module docs). Errors name `ipfs://{cid}` and what
/// each gateway did wrong.
pub(crate) fn fetch(
    http: &HttpClient,
    gateways: &[String],
    hedge_after: Duration,
    cid: Cid,
) -> Result<IpfsAdapter> {
    let name = format!("ipfs://{cid}");
    if gateways.is_empty() {
        return Err(Error::store(name, "no IPFS gateways configured (StoreConfig::gateways)"));
    }
    let cfg = http.config();
    let mut pause = cfg.backoff_initial;
    let mut ask: Vec<String> = gateways.to_vec();
    let mut fatal: Vec<String> = Vec::new();
    let mut round = 1;
    loop {
        let failures = match one_round(http, &ask, hedge_after, cid, &name)? {
            Ok(a) => return Ok(a),
            Err(f) => f,
        };
        let mut again = Vec::new();
        let mut retryable = Vec::new();
        for (i, f) in failures {
            match f {
                Failure::Retry(e) => {
                    again.push(ask[i].clone());
                    retryable.push(e.to_string());
                }
                Failure::Fatal(e) => fatal.push(e.to_string()),
            }
        }
        if again.is_empty() || round >= cfg.max_attempts {
            let rounds = if round > 1 { format!(" (gave up after {round} rounds)") } else { String::new() };
            fatal.extend(retryable);
            return Err(Error::store(
                name,
                format!("no gateway gave verified content: {}{rounds}", fatal.join("; ")),
            ));
        }
        log::warn!(
            "store: {name}: round {round} failed ({}); retrying in {} ms",
            retryable.join("; "),
            pause.as_millis()
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(cfg.backoff_max);
        ask = again;
        round += 1;
    }
}

/// The first verified answer of one round, or every gateway's failure by index.
type Round = std::result::Result<IpfsAdapter, Vec<(usize, Failure)>>;

/// Ask `gateways` once each, hedged (see the module docs).
fn one_round(
    http: &HttpClient,
    gateways: &[String],
    hedge_after: Duration,
    cid: Cid,
    name: &str,
) -> Result<Round> {
    enum Msg {
        Headers(usize),
        Done(usize, std::result::Result<IpfsAdapter, Failure>),
    }
    let (tx, rx) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let launch = |i: usize| {
        let (http, gw, tx, cancel) = (http.clone(), gateways[i].clone(), tx.clone(), cancel.clone());
        let tx2 = tx.clone();
        std::thread::Builder::new()
            .name(format!("ipfs-gateway-{i}"))
            .spawn(move || {
                let r = from_gateway(&http, &gw, cid, &cancel, || {
                    let _ = tx2.send(Msg::Headers(i));
                });
                let _ = tx.send(Msg::Done(i, r));
            })
            .map_err(|e| Error::store(format!("ipfs://{cid}"), format!("cannot start a gateway thread: {e}")))
    };
    launch(0)?;
    let (mut next, mut running) = (1, 1);
    let mut hedge_at = Some(Instant::now() + hedge_after);
    let mut errors: Vec<(usize, Failure)> = Vec::new();
    loop {
        let msg = match hedge_at.filter(|_| next < gateways.len()) {
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match msg {
            Ok(Msg::Headers(i)) => {
                if i + 1 == next {
                    hedge_at = None; // the latest gateway is answering: no need to hedge
                }
            }
            Ok(Msg::Done(i, Ok(a))) => {
                cancel.store(true, Ordering::Relaxed);
                if i > 0 || !errors.is_empty() {
                    log::info!(
                        "store: {name} served by gateway {} after {} failed",
                        gateways[i],
                        errors.len()
                    );
                }
                return Ok(Ok(a));
            }
            Ok(Msg::Done(i, Err(e))) => {
                let (Failure::Retry(m) | Failure::Fatal(m)) = &e;
                log::warn!("store: {name} via {}: {m}", gateways[i]);
                errors.push((i, e));
                running -= 1;
                if next < gateways.len() {
                    launch(next)?;
                    next += 1;
                    running += 1;
                    hedge_at = Some(Instant::now() + hedge_after);
                } else if running == 0 {
                    break;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                log::info!("store: {name}: no headers within {} ms; hedging", hedge_after.as_millis());
                launch(next)?;
                next += 1;
                running += 1;
                hedge_at = Some(Instant::now() + hedge_after);
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    errors.sort_by_key(|(i, _)| *i);
    Ok(Err(errors))
}

/// One gateway's answer for `cid`, verified and decoded.
fn from_gateway(
    http: &HttpClient,
    gateway: &str,
    cid: Cid,
    cancel: &AtomicBool,
    on_headers: impl FnOnce(),
) -> std::result::Result<IpfsAdapter, Failure> {
    let base = gateway.trim_end_matches('/');
    let (format, accept) = if cid.codec() == RAW {
        ("raw", "application/vnd.ipld.raw")
    } else {
        ("car", "application/vnd.ipld.car")
    };
    let url = format!("{base}/ipfs/{cid}?format={format}");
    let body = http.get_once(&url, accept, cancel, on_headers)?;
    let received = body.len() as u64;
    // A wrong answer is not retried from the same gateway.
    let bad = |reason: String| Failure::Fatal(Error::store(url.clone(), reason));
    if cid.codec() == RAW {
        if <[u8; 32]>::from(Sha256::digest(&body)) != *cid.sha256() {
            return Err(bad(format!("block {cid} does not hash to its CID (the gateway sent wrong bytes)")));
        }
        return Ok(IpfsAdapter { layout: Layout::GgufFile, files: vec![(GGUF_FILE, body)], received });
    }
    let cap = http.config().max_file_bytes;
    let car = super::car::read(&body).map_err(bad)?;
    if !car.roots.contains(&cid) {
        log::debug!("store: CAR from {url} has roots {:?}, not {cid}", car.roots);
    }
    let file = |c: &Cid, what: &str| match unixfs::entry(c, &car.blocks, cap).map_err(bad)? {
        Entry::File(b) => Ok(b),
        Entry::Dir(_) => Err(bad(format!("{what} ({c}) is a directory, not a file"))),
    };
    match unixfs::entry(&cid, &car.blocks, cap).map_err(bad)? {
        Entry::File(b) => Ok(IpfsAdapter { layout: Layout::GgufFile, files: vec![(GGUF_FILE, b)], received }),
        Entry::Dir(entries) => {
            let find = |n: &str| entries.iter().find(|(name, _)| name == n).map(|(_, c)| *c);
            if let (Some(c), Some(w)) = (find(PEFT_CONFIG), find(PEFT_WEIGHTS)) {
                let files =
                    vec![(PEFT_CONFIG, file(&c, PEFT_CONFIG)?), (PEFT_WEIGHTS, file(&w, PEFT_WEIGHTS)?)];
                return Ok(IpfsAdapter { layout: Layout::PeftDir, files, received });
            }
            let ggufs: Vec<_> =
                entries.iter().filter(|(n, _)| n.to_ascii_lowercase().ends_with(".gguf")).collect();
            match ggufs[..] {
                [(n, c)] => Ok(IpfsAdapter {
                    layout: Layout::GgufFile,
                    files: vec![(GGUF_FILE, file(c, n)?)],
                    received,
                }),
                _ => Err(bad(format!(
                    "directory {cid} holds neither {PEFT_CONFIG} + {PEFT_WEIGHTS} nor exactly one .gguf file"
                ))),
            }
        }
    }
}
