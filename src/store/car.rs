//! CARv1 archives (what a trustless gateway answers `?format=car` with), read and verified.
//!
//! A CARv1 is a varint-length-prefixed dag-cbor header `{version: 1, roots: [CID…]}` followed
//! by sections, each a varint length then a binary CID and the block's bytes. Every block's
//! bytes are hashed and compared with its CID's sha2-256 before anything reads them; one
//! mismatch refuses the whole archive, naming the block. Blocks with CIDs the store cannot
//! verify (other hashes or codecs) are left out, unread: a DAG that needs one fails when it
//! links to it, saying why. Duplicate blocks are allowed.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};

use super::cid::{varint, Cid};

/// The verified blocks of a CAR by CID, and its header's roots.
pub(crate) struct Car<'a> {
    pub roots: Vec<Cid>,
    pub blocks: HashMap<Cid, &'a [u8]>,
}

/// Parse and verify `b`; the error is a reason (the caller names the source).
pub(crate) fn read(b: &[u8]) -> Result<Car<'_>, String> {
    let mut at = 0;
    let hlen = usize::try_from(varint(b, &mut at).map_err(|e| format!("CAR header: {e}"))?)
        .map_err(|_| "CAR header length overflows")?;
    let header = b.get(at..at.saturating_add(hlen)).ok_or("CAR header cut short")?;
    at += hlen;
    let roots = header_roots(header).map_err(|e| format!("CAR header: {e}"))?;
    let mut blocks = HashMap::new();
    while at < b.len() {
        let len = varint(b, &mut at).map_err(|e| format!("CAR section at byte {at}: {e}"))?;
        let len = usize::try_from(len).map_err(|_| "CAR section length overflows")?;
        let section =
            b.get(at..at.saturating_add(len)).ok_or_else(|| format!("CAR section at byte {at} cut short"))?;
        let (cid, n) = match Cid::read(section) {
            Ok(c) => c,
            Err(e) => {
                log::debug!("store: CAR block at byte {at} skipped: {e}");
                at += len;
                continue;
            }
        };
        let bytes = &section[n..];
        if <[u8; 32]>::from(Sha256::digest(bytes)) != *cid.sha256() {
            return Err(format!("block {cid} does not hash to its CID (the gateway sent wrong bytes)"));
        }
        blocks.insert(cid, bytes);
        at += len;
    }
    Ok(Car { roots, blocks })
}

/// The roots of a CARv1 header; refuses other versions.
fn header_roots(h: &[u8]) -> Result<Vec<Cid>, String> {
    let mut c = Cbor { b: h, at: 0 };
    let (major, n) = c.head()?;
    if major != 5 {
        return Err("not a map".into());
    }
    let (mut roots, mut version) = (None, None);
    for _ in 0..n {
        let key = c.text()?;
        match key.as_str() {
            "version" => {
                let (m, v) = c.head()?;
                if m != 0 {
                    return Err("version is not an integer".into());
                }
                version = Some(v);
            }
            "roots" => {
                let (m, k) = c.head()?;
                if m != 4 {
                    return Err("roots is not an array".into());
                }
                let mut v = Vec::new();
                for _ in 0..k {
                    let (m, tag) = c.head()?;
                    if (m, tag) != (6, 42) {
                        return Err("a root is not a CID (tag 42)".into());
                    }
                    let bytes = c.bytes()?;
                    // A dag-cbor CID starts with the multibase identity prefix 0x00.
                    let raw = bytes.strip_prefix(&[0u8][..]).ok_or("a root CID lacks its 0x00 prefix")?;
                    v.push(Cid::read(raw).map(|(cid, _)| cid)?);
                }
                roots = Some(v);
            }
            _ => c.skip()?,
        }
    }
    match version {
        Some(1) => roots.ok_or_else(|| "no roots".into()),
        Some(v) => Err(format!("CAR version {v} is not supported (CARv1 expected)")),
        None => Err("no version".into()),
    }
}

/// Just enough CBOR for a CAR header.
struct Cbor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cbor<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let x = *self.b.get(self.at).ok_or("cut short")?;
        self.at += 1;
        Ok(x)
    }

    /// Major type and argument.
    fn head(&mut self) -> Result<(u8, u64), String> {
        let x = self.byte()?;
        let (major, info) = (x >> 5, x & 31);
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let mut v = 0u64;
                for _ in 0..(1 << (info - 24)) {
                    v = (v << 8) | u64::from(self.byte()?);
                }
                v
            }
            _ => return Err("indefinite lengths are not dag-cbor".into()),
        };
        Ok((major, arg))
    }

    fn slice(&mut self, n: u64) -> Result<&[u8], String> {
        let n = usize::try_from(n).map_err(|_| "length overflows")?;
        let s = self.b.get(self.at..self.at.saturating_add(n)).ok_or("cut short")?;
        self.at += n;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&[u8], String> {
        match self.head()? {
            (2, n) => self.slice(n),
            _ => Err("expected a byte string".into()),
        }
    }

    fn text(&mut self) -> Result<String, String> {
        match self.head()? {
            (3, n) => Ok(String::from_utf8_lossy(self.slice(n)?).into_owned()),
            _ => Err("expected a text key".into()),
        }
    }

    fn skip(&mut self) -> Result<(), String> {
        match self.head()? {
            (0 | 1 | 7, _) => Ok(()),
            (2 | 3, n) => self.slice(n).map(|_| ()),
            (4, n) => (0..n).try_for_each(|_| self.skip()),
            (5, n) => (0..2 * n).try_for_each(|_| self.skip()),
            (6, _) => self.skip(),
            _ => Err("bad CBOR".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cid::{put_varint, RAW};
    use super::*;

    /// A CARv1 of `blocks` with `root`, written by hand.
    fn car(root: &Cid, blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
        let mut rb = vec![0u8];
        rb.extend(root.to_bytes());
        let mut h = vec![0xa2, 0x65];
        h.extend(b"roots");
        h.extend([0x81, 0xd8, 0x2a, 0x58, rb.len() as u8]);
        h.extend(&rb);
        h.push(0x67);
        h.extend(b"version");
        h.push(0x01);
        let mut out = Vec::new();
        put_varint(&mut out, h.len() as u64);
        out.extend(h);
        for (cid, bytes) in blocks {
            let c = cid.to_bytes();
            put_varint(&mut out, (c.len() + bytes.len()) as u64);
            out.extend(c);
            out.extend(bytes);
        }
        out
    }

    #[test]
    fn verifies_every_block() {
        let data = b"hello".to_vec();
        let cid = Cid::v1(RAW, Sha256::digest(&data).into()).unwrap();
        let good = car(&cid, &[(cid, data.clone())]);
        let c = read(&good).unwrap();
        assert_eq!(c.roots, vec![cid]);
        assert_eq!(c.blocks[&cid], &data[..]);

        let bad = car(&cid, &[(cid, b"hellO".to_vec())]);
        let e = read(&bad).err().unwrap();
        assert!(e.contains(&cid.to_string()) && e.contains("does not hash"), "{e}");
        let e = read(&good[..good.len() - 1]).err().unwrap();
        assert!(e.contains("cut short"), "{e}");

        // A block under a CID the store cannot check (blake3) is left out, not trusted.
        let mut odd = good.clone();
        let mut sec = vec![0x01, 0x55, 0x1e, 0x20];
        sec.extend([7u8; 32]);
        sec.extend(b"unchecked");
        put_varint(&mut odd, sec.len() as u64);
        odd.extend(sec);
        let c = read(&odd).unwrap();
        assert_eq!((c.blocks.len(), c.blocks[&cid]), (1, &data[..]));
    }
}
