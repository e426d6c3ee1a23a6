//! A small HTTP server on 127.0.0.1 for `serve-demo`: it plays the adapter hub the runtime
//! fetches from (GET only, files under one directory, no `..`) and an IPFS trustless gateway
//! (`/ipfs/<cid>?format=car|raw`) for the DAGs it was given.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::cid::Cid;
use crate::store::unixfs_write::Dag;

/// A running file server; stops on drop.
pub(crate) struct FileServer {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Files served (200 responses).
    pub served: Arc<AtomicU64>,
}

impl FileServer {
    /// Serve the files under `root` on an ephemeral port.
    pub(crate) fn start(root: &Path, dag: Arc<Dag>) -> Result<FileServer> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("127.0.0.1:0", e))?;
        let port = l.local_addr().map_err(|e| Error::io("127.0.0.1", e))?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (root, st, sv) = (root.to_path_buf(), Arc::clone(&stop), Arc::clone(&served));
        std::thread::Builder::new()
            .name("demo-http".into())
            .spawn(move || {
                for c in l.incoming() {
                    if st.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(c) = c else { continue };
                    let (root, sv, dag) = (root.clone(), Arc::clone(&sv), Arc::clone(&dag));
                    std::thread::spawn(move || {
                        if let Err(e) = serve(c, &root, &dag, &sv) {
                            log::debug!("demo http: {e}");
                        }
                    });
                }
            })
            .map_err(|e| Error::io("demo-http thread", e))?;
        Ok(FileServer { port, stop, served })
    }

    /// `http://127.0.0.1:<port>/<rel>`.
    pub(crate) fn url(&self, rel: &str) -> String {
        format!("http://127.0.0.1:{}/{rel}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The gateway's answer for `/ipfs/<cid>?format=…`.
fn ipfs(dag: &Dag, target: &str) -> Option<Vec<u8>> {
    let rest = target.strip_prefix("/ipfs/")?;
    let (cid, query) = rest.split_once('?').unwrap_or((rest, ""));
    let cid = Cid::parse(cid).ok()?;
    match query {
        "format=raw" => dag.blocks.get(&cid).cloned(),
        "format=car" if dag.blocks.contains_key(&cid) => Some(dag.car(&cid)),
        _ => None,
    }
}

fn serve(mut c: TcpStream, root: &Path, dag: &Dag, served: &AtomicU64) -> std::io::Result<()> {
    let mut line = String::new();
    let mut r = BufReader::new(c.try_clone()?);
    r.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let rel = PathBuf::from(target.trim_start_matches('/').split('?').next().unwrap_or(""));
    let safe = rel.components().all(|c| matches!(c, Component::Normal(_)));
    let body = if method != "GET" {
        None
    } else if target.starts_with("/ipfs/") {
        ipfs(dag, target)
    } else if safe {
        std::fs::read(root.join(&rel)).ok()
    } else {
        None
    };
    match body {
        Some(b) => {
            served.fetch_add(1, Ordering::Relaxed);
            write!(c, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len())?;
            c.write_all(&b)
        }
        None => c.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}
