//! Adapter sources: where an adapter's bytes come from, and the path jail for local ones.
//!
//! Accepted forms:
//! - a plain path, absolute or relative (to the process's working directory);
//! - `file:///abs/path` (host empty or `localhost`; `%XX` escapes decoded);
//! - `http://…` and `https://…`.
//!
//! A source ending in `.gguf` names a single GGUF LoRA file; anything else names a PEFT
//! adapter directory: a local directory holding `adapter_config.json` and
//! `adapter_model.safetensors`, or an HTTP base URL under which those two names are fetched
//! (`<base>/adapter_config.json`).
//!
//! `ipfs://<CID>` names IPFS content fetched through the configured gateways (see `ipfs.rs`):
//! a UnixFS directory holding a PEFT adapter (or one `.gguf`), or a file / raw block that is a
//! GGUF LoRA. Which one is known only once the content arrives, so such a source has no
//! [`Source::layout`]. The CID is checked here (see [`Cid::parse`]); paths below it are
//! refused.
//!
//! Local sources are jailed: the path, and each adapter file in it, must resolve
//! (canonicalized, following every symlink and `..`) inside one of the configured roots.

use std::path::{Path, PathBuf};

use super::cid::Cid;
use super::digest::PEFT_FILES;
use crate::error::{Error, Result};

/// What a source holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// A PEFT adapter directory (two files, see [`PEFT_FILES`]).
    PeftDir,
    /// A single GGUF LoRA file.
    GgufFile,
}

/// A parsed adapter source. Parsing does no I/O; local paths are jailed when fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A path on this machine (from a plain path or a `file://` URL).
    Local {
        /// The path as given (decoded from the URL), not yet resolved.
        path: PathBuf,
        /// Directory or single file.
        layout: Layout,
    },
    /// An `http://` or `https://` URL.
    Http {
        /// The URL; for [`Layout::PeftDir`] the base, without a trailing `/`.
        url: String,
        /// Directory (base URL) or single file.
        layout: Layout,
    },
    /// `ipfs://<CID>`: content-addressed, so self-verifying.
    Ipfs {
        /// The content's CID.
        cid: Cid,
    },
}

impl Source {
    /// Parse a source string; see the module docs for the accepted forms.
    ///
    /// Errors are [`Error::Store`] naming the source: empty strings, unknown schemes,
    /// `file://` URLs with a remote host or a relative path, `ipfs://` with a CID the store
    /// cannot verify or a path after it,
    /// PEFT base URLs with a query or fragment (the file names could not be appended).
    pub fn parse(s: &str) -> Result<Source> {
        let refuse = |reason: &str| Err(Error::store(s, reason));
        if s.is_empty() {
            return refuse("empty adapter source");
        }
        if s.contains('\0') {
            return refuse("adapter source contains a NUL byte");
        }
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return parse_http(s);
        }
        if lower.starts_with("ipfs://") {
            let rest = s[7..].trim_end_matches('/');
            if rest.contains(['/', '?', '#']) {
                return refuse("ipfs:// sources name a CID alone (no path, query or fragment)");
            }
            return match Cid::parse(rest) {
                Ok(cid) => Ok(Source::Ipfs { cid }),
                Err(Error::InvalidArgument { reason, .. }) => refuse(&format!("unsupported CID: {reason}")),
                Err(e) => Err(e),
            };
        }
        if let Some(rest) = strip_prefix_ci(s, "file://") {
            let path = if let Some(p) = rest.strip_prefix('/') {
                format!("/{p}")
            } else if let Some(p) = strip_prefix_ci(rest, "localhost/") {
                format!("/{p}")
            } else {
                return refuse("file:// URLs must name an absolute local path (file:///abs/path)");
            };
            let Some(decoded) = percent_decode(&path) else {
                return refuse("bad %-escape in file:// URL");
            };
            let path = PathBuf::from(decoded);
            return Ok(Source::Local { layout: layout_of(&path.to_string_lossy()), path });
        }
        if let Some(i) = s.find("://") {
            let scheme = &s[..i];
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
                return refuse(&format!(
                    "unknown scheme '{scheme}://' (accepted: paths, file://, http://, https://)"
                ));
            }
        }
        Ok(Source::Local { path: PathBuf::from(s), layout: layout_of(s) })
    }

    /// Directory or single file; `None` for IPFS (known once the content arrives).
    pub fn layout(&self) -> Option<Layout> {
        match self {
            Source::Local { layout, .. } | Source::Http { layout, .. } => Some(*layout),
            Source::Ipfs { .. } => None,
        }
    }

    /// The CID of an `ipfs://` source: the content is verified against it, so such a source
    /// needs no expected digest.
    pub fn cid(&self) -> Option<Cid> {
        match self {
            Source::Ipfs { cid } => Some(*cid),
            _ => None,
        }
    }

    /// The source as text, for errors and logs.
    pub fn display(&self) -> String {
        match self {
            Source::Local { path, .. } => path.display().to_string(),
            Source::Http { url, .. } => url.clone(),
            Source::Ipfs { cid } => format!("ipfs://{cid}"),
        }
    }
}

impl std::str::FromStr for Source {
    type Err = Error;
    fn from_str(s: &str) -> Result<Source> {
        Source::parse(s)
    }
}

fn parse_http(s: &str) -> Result<Source> {
    let after_scheme = &s[s.find("://").map_or(0, |i| i + 3)..];
    let host_end = after_scheme.find(['/', '?', '#']).unwrap_or(after_scheme.len());
    if after_scheme[..host_end].is_empty() {
        return Err(Error::store(s, "URL has no host"));
    }
    let path_part = &after_scheme[host_end..];
    let path_only = &path_part[..path_part.find(['?', '#']).unwrap_or(path_part.len())];
    let layout = layout_of(path_only);
    if layout == Layout::PeftDir && path_part.len() != path_only.len() {
        return Err(Error::store(
            s,
            "a PEFT base URL cannot carry a query or fragment (the adapter file names are appended to it)",
        ));
    }
    let url = match layout {
        Layout::PeftDir => s.trim_end_matches('/').to_string(),
        Layout::GgufFile => s.to_string(),
    };
    Ok(Source::Http { url, layout })
}

fn layout_of(path: &str) -> Layout {
    if path.to_ascii_lowercase().ends_with(".gguf") {
        Layout::GgufFile
    } else {
        Layout::PeftDir
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v == 0 {
                return None;
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Canonical forms of the configured roots; each must exist and be a directory.
pub fn canonical_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>> {
    roots
        .iter()
        .map(|r| {
            let c = r.canonicalize().map_err(|e| Error::io(r, e))?;
            if !c.is_dir() {
                return Err(Error::config(r.display().to_string(), "a store root must be a directory"));
            }
            Ok(c)
        })
        .collect()
}

/// Resolve a local source inside the jail: returns the canonical path of each file to read
/// (one for GGUF, the two PEFT files in manifest order).
///
/// Refused with [`Error::Store`] naming the path when it (or a file in it) resolves outside
/// every root — through `..` or a symlink — or when it is not the kind the layout requires.
pub fn resolve_local(path: &Path, layout: Layout, roots: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let named = path.display().to_string();
    if roots.is_empty() {
        return Err(Error::store(named, "local adapter sources are disabled (no store roots configured)"));
    }
    let canon = jailed(path, roots)?;
    match layout {
        Layout::GgufFile => {
            if !canon.is_file() {
                return Err(Error::store(named, "a .gguf source must be a regular file"));
            }
            Ok(vec![canon])
        }
        Layout::PeftDir => {
            if !canon.is_dir() {
                return Err(Error::store(
                    named,
                    "a PEFT adapter source must be a directory (or name a .gguf file)",
                ));
            }
            let mut files = Vec::with_capacity(PEFT_FILES.len());
            for name in PEFT_FILES {
                let f = jailed(&canon.join(name), roots)?;
                if !f.is_file() {
                    return Err(Error::store(f.display().to_string(), "not a regular file"));
                }
                files.push(f);
            }
            Ok(files)
        }
    }
}

/// Canonicalize `path` and check it lies under one of `roots` (already canonical).
fn jailed(path: &Path, roots: &[PathBuf]) -> Result<PathBuf> {
    let canon = path.canonicalize().map_err(|e| Error::io(path, e))?;
    if roots.iter().any(|r| canon.starts_with(r)) {
        Ok(canon)
    } else {
        Err(Error::store(
            path.display().to_string(),
            format!("resolves to {}, outside the configured store roots", canon.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> (PathBuf, Layout) {
        match Source::parse(s).unwrap() {
            Source::Local { path, layout } => (path, layout),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn parses_paths_and_file_urls() {
        assert_eq!(local("/a/b"), (PathBuf::from("/a/b"), Layout::PeftDir));
        assert_eq!(local("rel/x.gguf"), (PathBuf::from("rel/x.gguf"), Layout::GgufFile));
        assert_eq!(local("file:///a/my%20dir"), (PathBuf::from("/a/my dir"), Layout::PeftDir));
        assert_eq!(local("FILE://localhost/a/L.GGUF"), (PathBuf::from("/a/L.GGUF"), Layout::GgufFile));
        assert_eq!(local("C:dir"), (PathBuf::from("C:dir"), Layout::PeftDir));
    }

    #[test]
    fn parses_http_urls() {
        let s = Source::parse("https://h.example/adapters/a1/").unwrap();
        assert_eq!(s, Source::Http { url: "https://h.example/adapters/a1".into(), layout: Layout::PeftDir });
        let s = Source::parse("http://h:8080/x.gguf?sig=1").unwrap();
        assert_eq!(s.layout(), Some(Layout::GgufFile));
        assert_eq!(s.display(), "http://h:8080/x.gguf?sig=1");
    }

    #[test]
    fn refuses_bad_sources_naming_them() {
        for (s, needle) in [
            ("", "empty"),
            ("ipfs://bafyabc", "unsupported CID"),
            ("ipfs://bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354/x", "CID alone"),
            ("ftp://h/x", "unknown scheme 'ftp://'"),
            ("file://otherhost/x", "absolute local path"),
            ("file:///a%zz", "%-escape"),
            ("file:///a%00b", "%-escape"),
            ("http:///x", "no host"),
            ("https://h/dir?x=1", "query or fragment"),
        ] {
            let e = Source::parse(s).unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
            assert!(e.starts_with(s), "{s}: error should name the source: {e}");
        }
    }

    #[test]
    fn parses_ipfs_cids() {
        let v1 = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354";
        let s = Source::parse(&format!("ipfs://{v1}/")).unwrap();
        assert_eq!((s.display(), s.layout()), (format!("ipfs://{v1}"), None));
        assert_eq!(s.cid().unwrap().to_string(), v1);
        let v0 = Source::parse("ipfs://QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn").unwrap();
        assert_eq!(v0.cid().unwrap().sha256(), s.cid().unwrap().sha256());
    }

    #[test]
    fn no_roots_means_no_local_sources() {
        let e = resolve_local(Path::new("/tmp"), Layout::PeftDir, &[]).unwrap_err().to_string();
        assert!(e.contains("no store roots"), "{e}");
    }
}
