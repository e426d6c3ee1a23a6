//! Build UnixFS DAGs and CARv1 archives: what an IPFS node does when content is added, so
//! that a local gateway (the demo's) can serve adapters by CID. Files are chunked into raw
//! leaves of 256 KiB under a dag-pb file node (one chunk: the raw leaf itself), directories
//! are dag-pb nodes linking their files by name; every CID is v1 with sha2-256 — the layout
//! `ipfs add --cid-version 1 --raw-leaves` produces. The store's reader (`unixfs.rs`) is
//! checked against an independent implementation (the npm importer) in the tests.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::cid::{put_varint, Cid, DAG_PB, RAW};
use crate::error::Result;

/// Leaf size.
pub const CHUNK: usize = 256 * 1024;

/// The blocks of a DAG by CID, and its root.
#[derive(Default)]
pub struct Dag {
    /// Every block, by CID.
    pub blocks: BTreeMap<Cid, Vec<u8>>,
}

fn cid_of(codec: u64, bytes: &[u8]) -> Result<Cid> {
    Cid::v1(codec, Sha256::digest(bytes).into())
}

fn field_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

/// A dag-pb node: links (hash, name, total size) first, then the UnixFS data.
fn pb_node(links: &[(Cid, &str, u64)], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (cid, name, tsize) in links {
        let mut l = Vec::new();
        field_bytes(&mut l, 1, &cid.to_bytes());
        field_bytes(&mut l, 2, name.as_bytes());
        field_varint(&mut l, 3, *tsize);
        field_bytes(&mut out, 2, &l);
    }
    field_bytes(&mut out, 1, data);
    out
}

impl Dag {
    fn put(&mut self, codec: u64, bytes: Vec<u8>) -> Result<(Cid, u64)> {
        let cid = cid_of(codec, &bytes)?;
        let n = bytes.len() as u64;
        self.blocks.insert(cid, bytes);
        Ok((cid, n))
    }

    /// Add a file; returns its CID and the total bytes of its blocks.
    pub fn add_file(&mut self, bytes: &[u8]) -> Result<(Cid, u64)> {
        if bytes.len() <= CHUNK {
            return self.put(RAW, bytes.to_vec());
        }
        let mut links = Vec::new();
        let mut fs = Vec::new();
        field_varint(&mut fs, 1, 2); // Type = File
        field_varint(&mut fs, 3, bytes.len() as u64); // filesize
        let mut total = 0;
        for c in bytes.chunks(CHUNK) {
            let (cid, n) = self.put(RAW, c.to_vec())?;
            links.push((cid, "", n));
            field_varint(&mut fs, 4, c.len() as u64); // blocksizes
            total += n;
        }
        let node = pb_node(&links, &fs);
        let (cid, n) = self.put(DAG_PB, node)?;
        Ok((cid, total + n))
    }

    /// Add a directory of `(name, bytes)` files; returns its CID.
    pub fn add_dir(&mut self, files: &[(&str, &[u8])]) -> Result<Cid> {
        let mut links = Vec::new();
        for (name, bytes) in files {
            let (cid, total) = self.add_file(bytes)?;
            links.push((cid, *name, total));
        }
        links.sort_by(|a, b| a.1.cmp(b.1));
        let mut fs = Vec::new();
        field_varint(&mut fs, 1, 1); // Type = Directory
        Ok(self.put(DAG_PB, pb_node(&links, &fs))?.0)
    }

    /// The blocks reachable from `root` (itself first).
    fn reachable(&self, root: &Cid, out: &mut Vec<Cid>) {
        if out.contains(root) {
            return;
        }
        out.push(*root);
        let Some(b) = self.blocks.get(root) else { return };
        if root.codec() != DAG_PB {
            return;
        }
        // Links are the field-2 entries of the node; each link's field 1 is a CID.
        let mut at = 0;
        while at < b.len() {
            let Ok(key) = super::cid::varint(b, &mut at) else { return };
            let Ok(len) = super::cid::varint(b, &mut at) else { return };
            let end = at + len as usize;
            if key == (2 << 3 | 2) {
                let l = &b[at..end];
                let mut i = 0;
                if let (Ok(_), Ok(n)) = (super::cid::varint(l, &mut i), super::cid::varint(l, &mut i)) {
                    if let Ok((c, _)) = Cid::read(&l[i..i + n as usize]) {
                        self.reachable(&c, out);
                    }
                }
            }
            at = end;
        }
    }

    /// A CARv1 archive of the DAG under `root` (a trustless gateway's `?format=car` answer).
    pub fn car(&self, root: &Cid) -> Vec<u8> {
        // dag-cbor header {"roots": [CID], "version": 1}, keys in canonical order.
        let cid = root.to_bytes();
        let mut h = vec![0xa2, 0x65];
        h.extend_from_slice(b"roots");
        h.extend_from_slice(&[0x81, 0xd8, 0x2a]);
        let blen = cid.len() + 1;
        if blen < 24 {
            h.push(0x40 | blen as u8);
        } else {
            h.extend_from_slice(&[0x58, blen as u8]);
        }
        h.push(0);
        h.extend_from_slice(&cid);
        h.push(0x67);
        h.extend_from_slice(b"version");
        h.push(0x01);
        let mut out = Vec::new();
        put_varint(&mut out, h.len() as u64);
        out.extend_from_slice(&h);
        let mut order = Vec::new();
        self.reachable(root, &mut order);
        for c in order {
            let Some(b) = self.blocks.get(&c) else { continue };
            let cb = c.to_bytes();
            put_varint(&mut out, (cb.len() + b.len()) as u64);
            out.extend_from_slice(&cb);
            out.extend_from_slice(b);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::unixfs::{entry, Entry};

    #[test]
    fn directories_round_trip_through_the_car_reader() {
        let big: Vec<u8> = (0..(CHUNK * 2 + 1000)).map(|i| (i % 251) as u8).collect();
        let mut d = Dag::default();
        let root = d
            .add_dir(&[("adapter_config.json", b"{\"r\": 8}"), ("adapter_model.safetensors", &big)])
            .unwrap();
        let car_bytes = d.car(&root);
        let car = crate::store::car::read(&car_bytes).unwrap();
        assert_eq!(car.roots, vec![root]);
        let Entry::Dir(files) = entry(&root, &car.blocks, 1 << 30).unwrap() else { panic!("a directory") };
        assert_eq!(files.len(), 2);
        for (name, cid) in files {
            let Entry::File(bytes) = entry(&cid, &car.blocks, 1 << 30).unwrap() else { panic!("a file") };
            let want: &[u8] = if name == "adapter_config.json" { b"{\"r\": 8}" } else { &big };
            assert_eq!(bytes, want, "{name}");
        }
    }
}
