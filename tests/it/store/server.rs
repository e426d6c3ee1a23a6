//! A small HTTP/1.1 server on 127.0.0.1 for the store tests: configurable routes that
//! misbehave in the ways a real server can, a request count per path, and the most requests
//! it has handled at once. One thread per connection; `Connection: close` on every answer.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a path answers.
#[derive(Clone)]
pub enum Route {
    /// 200 with `Content-Length`.
    Ok(Vec<u8>),
    /// Wait, then 200.
    Delay(Duration, Vec<u8>),
    /// Wait before sending anything, then 200 (for read time-outs before headers).
    StallHeaders(Duration, Vec<u8>),
    /// Headers and the first half of the body, then wait, then the rest.
    StallBody(Duration, Vec<u8>),
    /// 500 for the first `n` requests, then 200.
    FailThenOk(usize, Vec<u8>),
    /// Always this status, empty body.
    Status(u16),
    /// `Content-Length` of the whole body, but only the first `n` bytes, then close.
    Truncated(Vec<u8>, usize),
    /// 200 without `Content-Length`: the body runs until the connection closes.
    NoLength(Vec<u8>),
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    hits: Mutex<HashMap<String, usize>>,
    accept: Mutex<HashMap<String, String>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

/// The server; stops accepting on drop.
pub struct Server {
    port: u16,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Listen on an ephemeral port of 127.0.0.1.
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        Server { port, state, stop, accept: Some(accept) }
    }

    /// Answer `path` (starting with `/`) as `route`.
    pub fn route(&self, path: &str, route: Route) {
        self.state.routes.lock().unwrap().insert(path.to_string(), route);
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests received for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The `Accept` header of the last request for `path`, if it had one.
    pub fn accept(&self, path: &str) -> Option<String> {
        self.state.accept.lock().unwrap().get(path).cloned()
    }

    /// Requests received for every path.
    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    /// The most requests in progress at once so far.
    pub fn max_active(&self) -> usize {
        self.state.max_active.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve(mut conn: TcpStream, st: &State) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let Some((path, accept)) = read_request(&mut conn) else { return };
    if let Some(a) = accept {
        st.accept.lock().unwrap().insert(path.clone(), a);
    }
    let hit = {
        let mut hits = st.hits.lock().unwrap();
        let h = hits.entry(path.clone()).or_insert(0);
        *h += 1;
        *h
    };
    let route = st.routes.lock().unwrap().get(&path).cloned();
    let n = st.active.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_active.fetch_max(n, Ordering::SeqCst);
    // Errors writing mean the client went away (a time-out test): nothing to do.
    let _ = answer(&mut conn, route, hit);
    st.active.fetch_sub(1, Ordering::SeqCst);
}

fn answer(conn: &mut TcpStream, route: Option<Route>, hit: usize) -> std::io::Result<()> {
    let ok = |c: &mut TcpStream, body: &[u8]| -> std::io::Result<()> {
        head(c, 200, Some(body.len()))?;
        c.write_all(body)
    };
    match route {
        None => head(conn, 404, Some(0)),
        Some(Route::Ok(b)) => ok(conn, &b),
        Some(Route::Delay(d, b)) => {
            std::thread::sleep(d);
            ok(conn, &b)
        }
        Some(Route::StallHeaders(d, b)) => {
            std::thread::sleep(d);
            ok(conn, &b)
        }
        Some(Route::StallBody(d, b)) => {
            head(conn, 200, Some(b.len()))?;
            conn.write_all(&b[..b.len() / 2])?;
            conn.flush()?;
            std::thread::sleep(d);
            conn.write_all(&b[b.len() / 2..])
        }
        Some(Route::FailThenOk(n, b)) if hit > n => ok(conn, &b),
        Some(Route::FailThenOk(..)) => head(conn, 500, Some(0)),
        Some(Route::Status(s)) => head(conn, s, Some(0)),
        Some(Route::Truncated(b, n)) => {
            head(conn, 200, Some(b.len()))?;
            conn.write_all(&b[..n])
        }
        Some(Route::NoLength(b)) => {
            head(conn, 200, None)?;
            conn.write_all(&b)
        }
    }
}

fn head(conn: &mut TcpStream, status: u16, len: Option<usize>) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let mut h = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    if let Some(n) = len {
        h += &format!("Content-Length: {n}\r\n");
    }
    h += "\r\n";
    conn.write_all(h.as_bytes())
}

/// The path and `Accept` header of a `GET` request; `None` for anything unreadable.
fn read_request(conn: &mut TcpStream) -> Option<(String, Option<String>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut byte).ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.lines();
    let mut first = lines.next()?.split(' ');
    (first.next()? == "GET").then_some(())?;
    let path = first.next()?.to_string();
    let accept = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.trim().to_string());
    Some((path, accept))
}
