//! HTTP(S) downloads for the store: one blocking `ureq` agent (rustls), with connect, per-read
//! and per-attempt time limits, bounded retries with exponential backoff, and a size cap.
//!
//! Each download streams the body into a file (a temp path the caller renames into the disk
//! cache) and into memory while hashing it, so the bytes are read from the network once.
//!
//! Retried (up to [`HttpConfig::max_attempts`] in all): connection failures, time-outs, 5xx,
//! 408 and 429 answers, bodies cut short. Not retried: other 4xx answers, a body over the size
//! cap, bad URLs, TLS failures — asking again would give the same answer.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// An HTTP response as ureq returns it.
type Response = ureq::http::Response<ureq::Body>;

/// Limits of the store's HTTP client. Every field is a limit; none is optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time allowed to establish a connection (including TLS), per attempt.
    pub connect_timeout: Duration,
    /// Time allowed without receiving any data once connected (headers or body).
    pub read_timeout: Duration,
    /// Time allowed for one whole attempt, body included (a trickling server ends here).
    pub attempt_timeout: Duration,
    /// Attempts per file, first included (1 means no retry). At most 16.
    pub max_attempts: u32,
    /// Pause before the second attempt; doubled after each further failure.
    pub backoff_initial: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
    /// Largest file accepted, in bytes (checked against `Content-Length` and while streaming).
    pub max_file_bytes: u64,
    /// Follow `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` from the environment.
    pub proxy_from_env: bool,
}

impl Default for HttpConfig {
    /// 10 s to connect, 30 s without data, 10 min per attempt, 4 attempts with 250 ms
    /// doubling to 8 s between them, 4 GiB per file, environment proxies honoured.
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(600),
            max_attempts: 4,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
            max_file_bytes: 4 << 30,
            proxy_from_env: true,
        }
    }
}

impl HttpConfig {
    /// Check every limit is usable; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let zero = |name: &str, d: Duration| {
            if d.is_zero() {
                Err(Error::invalid(format!("http.{name}"), "must be greater than zero"))
            } else {
                Ok(())
            }
        };
        zero("connect_timeout", self.connect_timeout)?;
        zero("read_timeout", self.read_timeout)?;
        zero("attempt_timeout", self.attempt_timeout)?;
        if !(1..=16).contains(&self.max_attempts) {
            return Err(Error::invalid("http.max_attempts", "must be between 1 and 16"));
        }
        if self.max_file_bytes == 0 {
            return Err(Error::invalid("http.max_file_bytes", "must be greater than zero"));
        }
        Ok(())
    }
}

/// A file received: its bytes and their sha256.
pub(crate) struct Downloaded {
    pub bytes: Vec<u8>,
    pub sha256: [u8; 32],
}

/// Why one attempt failed, and whether another may succeed.
pub(crate) enum Failure {
    Retry(Error),
    Fatal(Error),
}

/// The store's HTTP client. `Send + Sync`; one per store, shared by its download threads
/// (cloning shares the connection pool).
#[derive(Clone)]
pub(crate) struct HttpClient {
    agent: ureq::Agent,
    cfg: HttpConfig,
}

impl HttpClient {
    /// A client under `cfg` (validated first).
    pub fn new(cfg: &HttpConfig) -> Result<HttpClient> {
        cfg.validate()?;
        let mut b = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_per_read(Some(cfg.read_timeout))
            .timeout_per_call(Some(cfg.attempt_timeout))
            .max_redirects(5)
            .user_agent(concat!("loradock/", env!("CARGO_PKG_VERSION")));
        if !cfg.proxy_from_env {
            b = b.proxy(None);
        }
        Ok(HttpClient { agent: b.build().into(), cfg: cfg.clone() })
    }

    /// GET `url` into a new file at `dest` and into memory, retrying as the config allows.
    /// On error `dest` may hold a partial file; the caller removes it.
    pub fn download(&self, url: &str, dest: &Path) -> Result<Downloaded> {
        let mut pause = self.cfg.backoff_initial;
        let mut attempt = 1;
        loop {
            match self.attempt(url, dest) {
                Ok(d) => return Ok(d),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) if attempt >= self.cfg.max_attempts => {
                    return Err(gave_up(e, attempt));
                }
                Err(Failure::Retry(e)) => {
                    log::warn!("store: attempt {attempt} failed: {e}; retrying in {} ms", pause.as_millis());
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(self.cfg.backoff_max);
                    attempt += 1;
                }
            }
        }
    }

    fn attempt(&self, url: &str, dest: &Path) -> std::result::Result<Downloaded, Failure> {
        let resp = self.agent.get(url).call().map_err(|e| classify(url, e, &self.cfg))?;
        check_status(url, &resp)?;
        let declared = self.declared_len(url, &resp)?;
        let mut file = std::fs::File::create(dest).map_err(|e| Failure::Fatal(Error::io(dest, e)))?;
        let mut hasher = Sha256::new();
        let bytes = self.read_body(url, resp.into_body().into_reader(), declared, None, &mut |chunk| {
            hasher.update(chunk);
            file.write_all(chunk).map_err(|e| Failure::Fatal(Error::io(dest, e)))
        })?;
        file.flush().map_err(|e| Failure::Fatal(Error::io(dest, e)))?;
        Ok(Downloaded { bytes, sha256: hasher.finalize().into() })
    }

    /// The declared body length, refused when it exceeds the size cap.
    fn declared_len(&self, url: &str, resp: &Response) -> std::result::Result<Option<u64>, Failure> {
        let cap = self.cfg.max_file_bytes;
        let declared = resp.body().content_length();
        if let Some(n) = declared.filter(|n| *n > cap) {
            return Err(Failure::Fatal(too_large(url, &format!("Content-Length {n}"), cap)));
        }
        Ok(declared)
    }

    /// Read a body to memory under the size cap, passing each chunk to `on_chunk`; a body
    /// shorter than `declared` is a retryable failure; `cancel`, when set, stops early.
    fn read_body(
        &self,
        url: &str,
        mut reader: impl Read,
        declared: Option<u64>,
        cancel: Option<&std::sync::atomic::AtomicBool>,
        on_chunk: &mut dyn FnMut(&[u8]) -> std::result::Result<(), Failure>,
    ) -> std::result::Result<Vec<u8>, Failure> {
        let cap = self.cfg.max_file_bytes;
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(cap) as usize);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                return Err(Failure::Fatal(Error::store(url, "cancelled: another gateway answered first")));
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return Err(body_failure(url, e, bytes.len() as u64, declared, &self.cfg)),
            };
            if bytes.len() as u64 + n as u64 > cap {
                return Err(Failure::Fatal(too_large(url, "the body", cap)));
            }
            on_chunk(&buf[..n])?;
            bytes.extend_from_slice(&buf[..n]);
        }
        if let Some(n) = declared.filter(|n| *n != bytes.len() as u64) {
            let e = Error::store(url, format!("body cut short: {} of {n} bytes received", bytes.len()));
            return Err(Failure::Retry(e));
        }
        Ok(bytes)
    }
}

impl HttpClient {
    /// The limits this client was built with.
    pub fn config(&self) -> &HttpConfig {
        &self.cfg
    }

    /// One GET of `url` with `Accept: accept`, into memory, without retrying (the caller
    /// decides, from the [`Failure`] kind). Calls `on_headers` once a 2xx status line and
    /// headers have arrived; gives up early, with an error, once `cancel` is set.
    pub fn get_once(
        &self,
        url: &str,
        accept: &str,
        cancel: &std::sync::atomic::AtomicBool,
        on_headers: impl FnOnce(),
    ) -> std::result::Result<Vec<u8>, Failure> {
        let resp =
            self.agent.get(url).header("Accept", accept).call().map_err(|e| classify(url, e, &self.cfg))?;
        check_status(url, &resp)?;
        on_headers();
        let declared = self.declared_len(url, &resp)?;
        self.read_body(url, resp.into_body().into_reader(), declared, Some(cancel), &mut |_| Ok(()))
    }
}

/// A non-2xx status as a failure: 5xx, 408 and 429 may be retried, the rest not.
fn check_status(url: &str, resp: &Response) -> std::result::Result<(), Failure> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let reason = resp.status().canonical_reason().unwrap_or("");
    let e = Error::store(url, format!("HTTP {status} {reason}"));
    Err(if status >= 500 || status == 408 || status == 429 { Failure::Retry(e) } else { Failure::Fatal(e) })
}

fn too_large(url: &str, what: &str, cap: u64) -> Error {
    Error::store(url, format!("{what} exceeds the size cap of {cap} bytes (http.max_file_bytes)"))
}

/// A failure while reading the body after `got` bytes.
fn body_failure(url: &str, e: std::io::Error, got: u64, declared: Option<u64>, cfg: &HttpConfig) -> Failure {
    match ureq::Error::from(e) {
        ureq::Error::Timeout(t) => Failure::Retry(timeout(url, t, cfg)),
        other => {
            let of = declared.map(|n| format!(" of {n}")).unwrap_or_default();
            Failure::Retry(Error::store(url, format!("body cut short after {got}{of} bytes: {other}")))
        }
    }
}

/// Map a request failure (before any body) to retry-or-not.
fn classify(url: &str, e: ureq::Error, cfg: &HttpConfig) -> Failure {
    match e {
        ureq::Error::Timeout(t) => Failure::Retry(timeout(url, t, cfg)),
        // rustls reports a failed handshake (bad certificate, not TLS at all) as invalid data.
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            Failure::Fatal(Error::store(url, format!("TLS or protocol failure: {io}")))
        }
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Io(_) => {
            Failure::Retry(Error::store(url, format!("connection failed: {e}")))
        }
        other => Failure::Fatal(Error::store(url, other.to_string())),
    }
}

fn timeout(url: &str, t: ureq::Timeout, cfg: &HttpConfig) -> Error {
    let ms = |d: Duration| d.as_millis();
    let reason = match t {
        ureq::Timeout::Connect => {
            format!("no connection within {} ms (http.connect_timeout)", ms(cfg.connect_timeout))
        }
        ureq::Timeout::PerRead => format!("no data for {} ms (http.read_timeout)", ms(cfg.read_timeout)),
        ureq::Timeout::PerCall | ureq::Timeout::Global => {
            format!("attempt took over {} ms (http.attempt_timeout)", ms(cfg.attempt_timeout))
        }
        other => format!("{other}"),
    };
    Error::Timeout { source: url.to_string(), reason }
}

fn gave_up(e: Error, attempts: u32) -> Error {
    if attempts <= 1 {
        return e;
    }
    let note = format!(" (gave up after {attempts} attempts)");
    match e {
        Error::Store { source, reason } => Error::Store { source, reason: reason + &note },
        Error::Timeout { source, reason } => Error::Timeout { source, reason: reason + &note },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_limits_are_checked() {
        assert!(HttpConfig::default().validate().is_ok());
        let c = HttpConfig { max_attempts: 0, ..HttpConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("http.max_attempts"));
        let c = HttpConfig { read_timeout: Duration::ZERO, ..HttpConfig::default() };
        assert!(c.validate().unwrap_err().to_string().contains("http.read_timeout"));
    }

    #[test]
    fn retry_note_keeps_one_line() {
        let e = gave_up(Error::store("http://h/x", "HTTP 500"), 3);
        assert_eq!(e.to_string(), "http://h/x: HTTP 500 (gave up after 3 attempts)");
        let e = gave_up(Error::Timeout { source: "u".into(), reason: "no data".into() }, 2);
        assert_eq!(e.to_string(), "u: timed out: no data (gave up after 2 attempts)");
    }

    #[test]
    fn refused_connection_is_retried_then_reported() {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = HttpConfig {
            max_attempts: 2,
            backoff_initial: Duration::from_millis(1),
            proxy_from_env: false,
            ..HttpConfig::default()
        };
        let c = HttpClient::new(&cfg).unwrap();
        let dir = std::env::temp_dir().join(format!("loradock-http-unit-{}", std::process::id()));
        let url = format!("http://127.0.0.1:{port}/x.gguf");
        let e = c.download(&url, &dir.join("x")).err().expect("nothing listens").to_string();
        assert!(e.starts_with(&url) && e.contains("gave up after 2 attempts"), "{e}");
    }
}
