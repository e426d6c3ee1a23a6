//! Adapter digests: the one content identity a host names an adapter by.
//!
//! # Definition
//!
//! A digest is written `sha256:<64 lowercase hex digits>` and covers the *whole* adapter:
//!
//! - **GGUF LoRA** (a single file): the sha256 of the file's bytes.
//! - **PEFT adapter** (a directory): the sha256 of a canonical manifest of its two files,
//!   `adapter_config.json` and `adapter_model.safetensors` — exactly those two, sorted by name,
//!   one line each, `<sha256 hex of the file>` + two spaces + `<file name>` + `\n`:
//!
//!   ```text
//!   <sha256 hex of adapter_config.json>  adapter_config.json\n
//!   <sha256 hex of adapter_model.safetensors>  adapter_model.safetensors\n
//!   ```
//!
//!   This is the output format of coreutils' `sha256sum`, so a host can compute it with
//!   `sha256sum adapter_config.json adapter_model.safetensors | sha256sum` run inside the
//!   adapter directory. Other files in the directory (README, tokenizer files) are not part of
//!   the adapter and not covered.
//!
//! The config is hashed as bytes, not normalized: reformatting `adapter_config.json` changes
//! the digest. (The engine's *content hash* of loaded weights, `LoraAdapter::content_hash`, is
//! a different, format-independent key used for composites.)
//!
//! IPFS content is named by its CID in the *source* (`ipfs://<CID>`, see `cid.rs`), which
//! verifies it; the fetched adapter's digest is still the sha256 defined here, so a CID and
//! a digest can both be checked. A CID given as a digest is refused with a pointer to that.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// File name of a PEFT adapter's configuration.
pub const PEFT_CONFIG: &str = "adapter_config.json";
/// File name of a PEFT adapter's weights (safetensors only; pickle `.bin` is never read).
pub const PEFT_WEIGHTS: &str = "adapter_model.safetensors";
/// The files of a PEFT adapter, in manifest (sorted) order.
pub const PEFT_FILES: [&str; 2] = [PEFT_CONFIG, PEFT_WEIGHTS];

/// The content identity of an adapter, written `sha256:<hex>`: the sha256 of a GGUF LoRA
/// file, or for a PEFT directory the sha256 of the manifest
/// `"<sha256 hex>  adapter_config.json\n<sha256 hex>  adapter_model.safetensors\n"`, i.e.
/// `sha256sum adapter_config.json adapter_model.safetensors | sha256sum` (see the module docs).
///
/// Cheap to copy, hashable, ordered; `Display` writes `sha256:<hex>` and [`Digest::parse`]
/// reads it back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Digest {
    /// A sha256 value (of a file, or of a PEFT manifest).
    Sha256([u8; 32]),
}

impl Digest {
    /// Parse `sha256:<64 hex digits>` (hex in either case; shown lowercase).
    ///
    /// Anything else is an [`Error::InvalidArgument`] naming what was given; an IPFS CID says
    /// that CIDs are not supported yet.
    pub fn parse(s: &str) -> Result<Digest> {
        let bad = |reason: String| Error::invalid("digest", format!("'{s}': {reason}"));
        let s_trim = s.trim();
        if s_trim.starts_with("ipfs://") || super::cid::Cid::parse(s_trim).is_ok() {
            return Err(bad("an IPFS CID is not a digest here: give it as the source, ipfs://<CID>, which \
                 verifies itself (or give a sha256:<hex> digest)"
                .into()));
        }
        let Some(hex) = s_trim.strip_prefix("sha256:") else {
            return Err(bad("expected 'sha256:' followed by 64 hex digits".into()));
        };
        if hex.len() != 64 {
            return Err(bad(format!("a sha256 digest has 64 hex digits, this has {}", hex.len())));
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
            match (hex_val(pair[0]), hex_val(pair[1])) {
                (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
                _ => return Err(bad("not a hex digit in the digest".into())),
            }
        }
        Ok(Digest::Sha256(out))
    }

    /// The sha256 digest of `bytes` (a GGUF LoRA file's digest).
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest::Sha256(Sha256::digest(bytes).into())
    }

    /// The digest of a PEFT adapter from its two files' sha256 values (config, weights).
    pub fn of_peft(config_sha256: &[u8; 32], weights_sha256: &[u8; 32]) -> Digest {
        Digest::Sha256(Sha256::digest(peft_manifest(config_sha256, weights_sha256)).into())
    }

    /// The digest of a PEFT adapter directory (`adapter_config.json` and
    /// `adapter_model.safetensors` read from `dir`), or of a GGUF LoRA file.
    pub fn of_path(path: &std::path::Path) -> Result<Digest> {
        let read = |p: std::path::PathBuf| std::fs::read(&p).map_err(|e| Error::io(p, e));
        if path.is_file() {
            return Ok(Digest::of_bytes(&read(path.to_path_buf())?));
        }
        let c: [u8; 32] = Sha256::digest(read(path.join(PEFT_CONFIG))?).into();
        let w: [u8; 32] = Sha256::digest(read(path.join(PEFT_WEIGHTS))?).into();
        Ok(Digest::of_peft(&c, &w))
    }

    /// The digest value.
    pub fn bytes(&self) -> &[u8; 32] {
        match self {
            Digest::Sha256(b) => b,
        }
    }

    /// Lowercase hex of the digest value, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        match self {
            Digest::Sha256(b) => hex(b),
        }
    }

    /// A name usable as a file name in the disk cache (`sha256-<hex>`).
    pub fn file_name(&self) -> String {
        match self {
            Digest::Sha256(b) => format!("sha256-{}", hex(b)),
        }
    }

    /// The inverse of [`Digest::file_name`]; `None` for any other name.
    pub fn from_file_name(name: &str) -> Option<Digest> {
        let hex = name.strip_prefix("sha256-")?;
        if hex.bytes().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        Digest::parse(&format!("sha256:{hex}")).ok()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Digest::Sha256(b) => write!(f, "sha256:{}", hex(b)),
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

/// The canonical PEFT manifest (see the module docs) for the two files' sha256 values.
pub fn peft_manifest(config_sha256: &[u8; 32], weights_sha256: &[u8; 32]) -> String {
    format!("{}  {PEFT_CONFIG}\n{}  {PEFT_WEIGHTS}\n", hex(config_sha256), hex(weights_sha256))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_and_display_round_trip() {
        let d = Digest::parse(&format!("sha256:{EMPTY}")).unwrap();
        assert_eq!(d, Digest::of_bytes(b""));
        assert_eq!(d.to_string(), format!("sha256:{EMPTY}"));
        let upper = Digest::parse(&format!("sha256:{}", EMPTY.to_uppercase())).unwrap();
        assert_eq!(upper, d);
        assert_eq!(Digest::from_file_name(&d.file_name()), Some(d));
        assert_eq!(Digest::from_file_name("sha256-xyz"), None);
        assert_eq!(Digest::from_file_name(&format!("sha256-{}", EMPTY.to_uppercase())), None);
    }

    #[test]
    fn parse_refuses_other_forms_clearly() {
        for (s, needle) in [
            (EMPTY.to_string(), "expected 'sha256:'"),
            (format!("sha512:{EMPTY}"), "expected 'sha256:'"),
            ("sha256:abc".to_string(), "64 hex digits, this has 3"),
            (format!("sha256:{}zz", &EMPTY[..62]), "not a hex digit"),
            ("ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(), "ipfs://<CID>"),
            ("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(), "ipfs://<CID>"),
            ("bafkreieuqyogwiw6c3oikmm2474rxi7rdmvjlhn5egjhpzekmtnffqis4q".into(), "ipfs://<CID>"),
            ("QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn".into(), "ipfs://<CID>"),
        ] {
            let e = Digest::parse(&s).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("digest"), "{s}: {e}");
        }
    }

    #[test]
    fn peft_manifest_is_sha256sum_format() {
        let a = Sha256::digest(b"{}").into();
        let b = Sha256::digest(b"weights").into();
        let m = peft_manifest(&a, &b);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("  adapter_config.json") && lines[0].len() == 64 + 2 + 19);
        assert!(lines[1].ends_with("  adapter_model.safetensors"));
        assert!(m.ends_with('\n'));
        assert_eq!(Digest::of_peft(&a, &b), Digest::of_bytes(m.as_bytes()));
    }
}
