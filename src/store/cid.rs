//! IPFS content identifiers, just the forms the store can verify.
//!
//! Accepted:
//! - **CIDv0**: base58btc `Qm…` (46 characters): dag-pb, sha2-256;
//! - **CIDv1** in multibase base32 lower (`b…`, the usual `bafy…`/`bafk…`) or base58btc
//!   (`z…`), with codec raw (0x55) or dag-pb (0x70) and a sha2-256 (0x12, 32 bytes) multihash.
//!
//! Everything else is refused with a reason naming what was found: other multibases (hex,
//! base36, base64…), other codecs (dag-cbor, dag-json…), other hashes (identity, blake3,
//! sha2-512…) — the store could not check such content against its CID.
//!
//! Base32, base58 and unsigned varints are implemented here (a few dozen lines each) rather
//! than pulled in from the `cid`/`multibase` crates, which would bring a generic multihash
//! table for the one hash we accept.

use std::fmt;

use crate::error::{Error, Result};

/// Multicodec of a raw block (the bytes are the content).
pub const RAW: u64 = 0x55;
/// Multicodec of a dag-pb (protobuf, UnixFS) block.
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// A CID whose content the store can verify: sha2-256 of a raw or dag-pb block.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid {
    version: u8,
    codec: u64,
    sha256: [u8; 32],
}

impl Cid {
    /// A CIDv1 for a block of `codec` ([`RAW`] or [`DAG_PB`]) hashing to `sha256`.
    pub fn v1(codec: u64, sha256: [u8; 32]) -> Result<Cid> {
        check_codec(codec).map_err(|r| Error::invalid("cid", r))?;
        Ok(Cid { version: 1, codec, sha256 })
    }

    /// Parse the text form (see the module docs). Errors name the CID and the reason.
    pub fn parse(s: &str) -> Result<Cid> {
        let bad = |reason: String| Error::invalid("cid", format!("'{s}': {reason}"));
        if s.len() == 46 && s.starts_with("Qm") {
            let bytes = base58_decode(s).ok_or_else(|| bad("not valid base58btc".into()))?;
            let (cid, used) = Cid::read(&bytes).map_err(bad)?;
            if used != bytes.len() {
                return Err(bad("trailing bytes after the CID".into()));
            }
            return Ok(cid);
        }
        let Some(prefix) = s.chars().next() else { return Err(bad("empty CID".into())) };
        let rest = &s[prefix.len_utf8()..];
        let bytes = match prefix {
            'b' => base32_decode(rest).ok_or_else(|| bad("not valid base32 (lowercase, no padding)".into()))?,
            'z' => base58_decode(rest).ok_or_else(|| bad("not valid base58btc".into()))?,
            other => {
                return Err(bad(format!(
                    "multibase '{other}' is not supported (accepted: CIDv0 'Qm…', CIDv1 in base32 'b…' or base58btc 'z…')"
                )))
            }
        };
        if bytes.first() != Some(&1) {
            return Err(bad(format!(
                "CID version {} is not supported in this form (CIDv1 expected)",
                bytes.first().map_or("?".into(), |b| b.to_string())
            )));
        }
        let (cid, used) = Cid::read(&bytes).map_err(bad)?;
        if used != bytes.len() {
            return Err(bad("trailing bytes after the CID".into()));
        }
        Ok(cid)
    }

    /// Read a binary CID (as in CAR files and dag-pb links) from the start of `b`; returns it
    /// and the bytes it took. The error is a reason, without the CID's text.
    pub fn read(b: &[u8]) -> std::result::Result<(Cid, usize), String> {
        if b.len() >= 2 && b[0] == 0x12 && b[1] == 0x20 {
            // CIDv0: a bare sha2-256 multihash.
            let d = b.get(2..34).ok_or("CIDv0 multihash cut short")?;
            return Ok((Cid { version: 0, codec: DAG_PB, sha256: d.try_into().expect("32 bytes") }, 34));
        }
        let mut at = 0;
        let version = varint(b, &mut at)?;
        if version != 1 {
            return Err(format!("CID version {version} is not supported"));
        }
        let codec = varint(b, &mut at)?;
        check_codec(codec)?;
        let hash = varint(b, &mut at)?;
        let len = varint(b, &mut at)?;
        if hash != SHA2_256 {
            return Err(format!(
                "multihash {} (0x{hash:x}) is not supported: only sha2-256 (0x12) content can be verified",
                hash_name(hash)
            ));
        }
        if len != 32 {
            return Err(format!("a sha2-256 multihash has 32 bytes, this one says {len}"));
        }
        let d = b.get(at..at + 32).ok_or("multihash digest cut short")?;
        Ok((Cid { version: 1, codec, sha256: d.try_into().expect("32 bytes") }, at + 32))
    }

    /// 0 or 1.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// [`RAW`] or [`DAG_PB`].
    pub fn codec(&self) -> u64 {
        self.codec
    }

    /// The sha2-256 the block's bytes must hash to.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The binary form (multihash alone for v0).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        if self.version == 1 {
            put_varint(&mut out, 1);
            put_varint(&mut out, self.codec);
        }
        out.extend_from_slice(&[0x12, 0x20]);
        out.extend_from_slice(&self.sha256);
        out
    }
}

impl fmt::Display for Cid {
    /// `Qm…` for v0, base32 lower `b…` for v1 (what gateways and `ipfs` print).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version == 0 {
            f.write_str(&base58_encode(&self.to_bytes()))
        } else {
            write!(f, "b{}", base32_encode(&self.to_bytes()))
        }
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for Cid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Cid> {
        Cid::parse(s)
    }
}

fn check_codec(codec: u64) -> std::result::Result<(), String> {
    match codec {
        RAW | DAG_PB => Ok(()),
        c => {
            let name = match c {
                0x71 => " (dag-cbor)",
                0x0129 => " (dag-json)",
                0x0200 => " (json)",
                0x51 => " (cbor)",
                _ => "",
            };
            Err(format!("codec 0x{c:x}{name} is not supported (accepted: raw 0x55, dag-pb 0x70)"))
        }
    }
}

fn hash_name(code: u64) -> &'static str {
    match code {
        0x00 => "identity",
        0x11 => "sha1",
        0x13 => "sha2-512",
        0x16 => "sha3-256",
        0x1e => "blake3",
        0xb220 => "blake2b-256",
        _ => "unknown",
    }
}

/// An unsigned LEB128 varint at `*at` (at most 9 bytes, as multiformats allows), advancing it.
pub(crate) fn varint(b: &[u8], at: &mut usize) -> std::result::Result<u64, String> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(*at).ok_or("varint cut short")?;
        *at += 1;
        if i == 9 && byte > 1 {
            return Err("varint overflows 64 bits".into());
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint overflows 64 bits".into())
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const B58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn base32_encode(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0);
    for &x in b {
        acc = (acc << 8) | u32::from(x);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            s.push(B32[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        s.push(B32[((acc << (5 - bits)) & 31) as usize] as char);
    }
    s
}

fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = B32.iter().position(|&d| d == c)? as u32;
        acc = (acc << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    // Leftover bits must be zero padding of fewer than 5 bits.
    (bits < 5 && acc == 0).then_some(out)
}

fn base58_encode(b: &[u8]) -> String {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    let mut digits: Vec<u8> = Vec::new(); // little-endian base 58
    for &x in &b[zeros..] {
        let mut carry = u32::from(x);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut s = "1".repeat(zeros);
    s.extend(digits.iter().rev().map(|&d| B58[d as usize] as char));
    s
}

fn base58_decode(s: &str) -> Option<Vec<u8>> {
    let zeros = s.bytes().take_while(|&c| c == b'1').count();
    let mut bytes: Vec<u8> = Vec::new(); // little-endian base 256
    for c in s.bytes().skip(zeros) {
        let mut carry = B58.iter().position(|&d| d == c)? as u32;
        for x in bytes.iter_mut() {
            carry += u32::from(*x) * 58;
            *x = carry as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push(carry as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0; zeros];
    out.extend(bytes.iter().rev());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The empty directory and "hello world\n" (`ipfs add`), well-known CIDs.
    const V0: &str = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn";
    const V1: &str = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354";

    #[test]
    fn round_trips_v0_and_v1() {
        let c = Cid::parse(V0).unwrap();
        assert_eq!((c.version(), c.codec()), (0, DAG_PB));
        assert_eq!(c.to_string(), V0);
        let d = Cid::parse(V1).unwrap();
        assert_eq!((d.version(), d.codec()), (1, DAG_PB));
        assert_eq!(d.to_string(), V1);
        assert_eq!(c.sha256(), d.sha256(), "same block, two CID versions");
        let z = format!("z{}", base58_encode(&d.to_bytes()));
        assert_eq!(Cid::parse(&z).unwrap(), d);
        let (back, n) = Cid::read(&d.to_bytes()).unwrap();
        assert_eq!((back, n), (d, 36));
    }

    #[test]
    fn refuses_what_it_cannot_verify() {
        let with = |codec: u64, hash: u64, len: u64| {
            let mut b = Vec::new();
            for v in [1, codec, hash, len] {
                put_varint(&mut b, v);
            }
            b.extend(std::iter::repeat_n(7u8, len as usize));
            format!("b{}", base32_encode(&b))
        };
        for (s, needle) in [
            (with(0x71, 0x12, 32), "codec 0x71 (dag-cbor) is not supported"),
            (with(0x55, 0x1e, 32), "blake3 (0x1e) is not supported"),
            (with(0x55, 0x00, 4), "identity (0x0) is not supported"),
            (with(0x55, 0x12, 20), "32 bytes"),
            (format!("f{}", "01"), "multibase 'f' is not supported"),
            ("k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8".into(), "multibase 'k'"),
            (V1.to_uppercase(), "multibase 'B'"),
            (format!("{V1}x"), "base32"),
            ("Qm0000000000000000000000000000000000000000000".into(), "multibase 'Q'"),
        ] {
            let e = Cid::parse(&s).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains(&s), "{s}: {e}");
        }
    }

    #[test]
    fn varints() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut at = 0;
            assert_eq!(varint(&b, &mut at), Ok(v));
            assert_eq!(at, b.len());
        }
        assert!(varint(&[0x80], &mut 0).is_err());
    }
}
