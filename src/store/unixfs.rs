//! UnixFS over dag-pb: files reassembled from their blocks, directories listed.
//!
//! A dag-pb block is a protobuf `PBNode { Data = 1: bytes, Links = 2: repeated PBLink }`,
//! `PBLink { Hash = 1: CID bytes, Name = 2: string, Tsize = 3: uint64 }`; its `Data` is a
//! UnixFS protobuf `{ Type = 1, Data = 2, filesize = 3, blocksizes = 4 (repeated) }`.
//! A file's bytes are its own `Data` then each link's bytes in order (a raw-codec link is
//! plain bytes); the declared `blocksizes` and `filesize` are checked against what the blocks
//! hold. A directory is its named links. HAMT-sharded directories, symlinks and metadata nodes
//! are refused. Blocks come already verified (see `car.rs`); a block missing from them is an
//! error naming its CID. The walk is bounded: files by the size cap, depth by 64 levels, and
//! node visits by a budget (twice the blocks, plus one per KiB of the cap), so a DAG that
//! links the same empty node over and over cannot make it run for ever.

use std::collections::HashMap;

use super::cid::{varint, Cid, RAW};

/// What a CID names.
pub(crate) enum Entry {
    /// A file's bytes.
    File(Vec<u8>),
    /// A directory's entries, name and CID, in link order.
    Dir(Vec<(String, Cid)>),
}

const TYPE_RAW: u64 = 0;
const TYPE_DIR: u64 = 1;
const TYPE_FILE: u64 = 2;
const MAX_DEPTH: usize = 64;

/// Decode the entry at `cid`; a file is reassembled, at most `cap` bytes.
pub(crate) fn entry(cid: &Cid, blocks: &HashMap<Cid, &[u8]>, cap: u64) -> Result<Entry, String> {
    let block = get(cid, blocks)?;
    if cid.codec() == RAW {
        return Ok(Entry::File(block.to_vec()));
    }
    let node = PbNode::decode(block).map_err(|e| format!("block {cid}: bad dag-pb: {e}"))?;
    let fs = UnixFs::decode(node.data).map_err(|e| format!("block {cid}: bad UnixFS data: {e}"))?;
    match fs.kind {
        TYPE_DIR => {
            let mut v = Vec::with_capacity(node.links.len());
            for l in node.links {
                let name = l.name.ok_or_else(|| format!("directory {cid} has an unnamed link"))?;
                v.push((name, l.cid));
            }
            Ok(Entry::Dir(v))
        }
        TYPE_FILE | TYPE_RAW => {
            let mut out = Vec::new();
            let mut walk = Walk { blocks, cap, visits_left: 2 * blocks.len() as u64 + cap / 1024 };
            walk.append_file(cid, &mut out, 0)?;
            Ok(Entry::File(out))
        }
        5 => Err(format!("{cid} is a HAMT-sharded directory, which is not supported")),
        k => Err(format!("{cid} is UnixFS type {k} (not a file or a directory)")),
    }
}

fn get<'a>(cid: &Cid, blocks: &HashMap<Cid, &'a [u8]>) -> Result<&'a [u8], String> {
    blocks.get(cid).copied().ok_or_else(|| format!("block {cid} is missing from the gateway's answer"))
}

/// A file being reassembled, with its limits.
struct Walk<'a, 'b> {
    blocks: &'a HashMap<Cid, &'b [u8]>,
    cap: u64,
    visits_left: u64,
}

impl Walk<'_, '_> {
    /// Append the bytes of the file node `cid` to `out`.
    fn append_file(&mut self, cid: &Cid, out: &mut Vec<u8>, depth: usize) -> Result<(), String> {
        let cap = self.cap;
        if depth > MAX_DEPTH {
            return Err(format!("file DAG deeper than {MAX_DEPTH} levels at {cid}"));
        }
        if self.visits_left == 0 {
            return Err(format!("file DAG at {cid} links more nodes than it can hold; refusing it"));
        }
        self.visits_left -= 1;
        let block = get(cid, self.blocks)?;
        let start = out.len();
        let grow = |out: &mut Vec<u8>, b: &[u8]| {
            if (out.len() + b.len()) as u64 > cap {
                return Err(format!("file exceeds the size cap of {cap} bytes (http.max_file_bytes)"));
            }
            out.extend_from_slice(b);
            Ok(())
        };
        if cid.codec() == RAW {
            return grow(out, block);
        }
        let node = PbNode::decode(block).map_err(|e| format!("block {cid}: bad dag-pb: {e}"))?;
        let fs = UnixFs::decode(node.data).map_err(|e| format!("block {cid}: bad UnixFS data: {e}"))?;
        if fs.kind != TYPE_FILE && fs.kind != TYPE_RAW {
            return Err(format!("block {cid} inside a file is UnixFS type {}", fs.kind));
        }
        grow(out, fs.data)?;
        if !node.links.is_empty() && fs.blocksizes.len() != node.links.len() {
            return Err(format!(
                "file node {cid} has {} links but {} blocksizes",
                node.links.len(),
                fs.blocksizes.len()
            ));
        }
        for (l, want) in node.links.iter().zip(&fs.blocksizes) {
            let before = out.len();
            self.append_file(&l.cid, out, depth + 1)?;
            let got = (out.len() - before) as u64;
            if got != *want {
                return Err(format!(
                    "file node {cid}: child {} holds {got} bytes, blocksizes says {want}",
                    l.cid
                ));
            }
        }
        if let Some(size) = fs.filesize {
            let got = (out.len() - start) as u64;
            if got != size {
                return Err(format!("file node {cid} holds {got} bytes, filesize says {size}"));
            }
        }
        Ok(())
    }
}

struct PbLink {
    cid: Cid,
    name: Option<String>,
}

struct PbNode<'a> {
    data: &'a [u8],
    links: Vec<PbLink>,
}

impl<'a> PbNode<'a> {
    fn decode(b: &'a [u8]) -> Result<PbNode<'a>, String> {
        let mut node = PbNode { data: &[], links: Vec::new() };
        for f in Fields::new(b) {
            match f? {
                (1, Value::Bytes(d)) => node.data = d,
                (2, Value::Bytes(l)) => {
                    let (mut cid, mut name) = (None, None);
                    for f in Fields::new(l) {
                        match f? {
                            (1, Value::Bytes(h)) => {
                                let (c, n) = Cid::read(h).map_err(|e| format!("link: {e}"))?;
                                if n != h.len() {
                                    return Err("link CID has trailing bytes".into());
                                }
                                cid = Some(c);
                            }
                            (2, Value::Bytes(s)) => {
                                name = Some(
                                    String::from_utf8(s.to_vec()).map_err(|_| "link name is not UTF-8")?,
                                );
                            }
                            _ => {}
                        }
                    }
                    node.links.push(PbLink { cid: cid.ok_or("link without a Hash")?, name });
                }
                _ => {}
            }
        }
        Ok(node)
    }
}

struct UnixFs<'a> {
    kind: u64,
    data: &'a [u8],
    filesize: Option<u64>,
    blocksizes: Vec<u64>,
}

impl<'a> UnixFs<'a> {
    fn decode(b: &'a [u8]) -> Result<UnixFs<'a>, String> {
        let mut fs = UnixFs { kind: u64::MAX, data: &[], filesize: None, blocksizes: Vec::new() };
        for f in Fields::new(b) {
            match f? {
                (1, Value::Varint(k)) => fs.kind = k,
                (2, Value::Bytes(d)) => fs.data = d,
                (3, Value::Varint(n)) => fs.filesize = Some(n),
                (4, Value::Varint(n)) => fs.blocksizes.push(n),
                (4, Value::Bytes(packed)) => {
                    let mut at = 0;
                    while at < packed.len() {
                        fs.blocksizes.push(varint(packed, &mut at)?);
                    }
                }
                _ => {}
            }
        }
        if fs.kind == u64::MAX {
            return Err("no Type".into());
        }
        Ok(fs)
    }
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message: (field number, value).
struct Fields<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn new(b: &'a [u8]) -> Self {
        Fields { b, at: 0 }
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), String> {
        let key = varint(self.b, &mut self.at)?;
        let v = match key & 7 {
            0 => Value::Varint(varint(self.b, &mut self.at)?),
            1 | 5 => {
                self.at += if key & 7 == 1 { 8 } else { 4 };
                if self.at > self.b.len() {
                    return Err("fixed-width field cut short".into());
                }
                Value::Fixed
            }
            2 => {
                let n = usize::try_from(varint(self.b, &mut self.at)?).map_err(|_| "length overflows")?;
                let s = self.b.get(self.at..self.at.saturating_add(n)).ok_or("field cut short")?;
                self.at += n;
                Value::Bytes(s)
            }
            w => return Err(format!("wire type {w} not supported")),
        };
        Ok((key >> 3, v))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.b.len() {
            return None;
        }
        let r = self.field();
        if r.is_err() {
            self.at = self.b.len();
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::cid::{put_varint, DAG_PB};
    use super::*;
    use sha2::{Digest as _, Sha256};

    fn field_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        put_varint(out, field << 3 | 2);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
        put_varint(out, field << 3);
        put_varint(out, v);
    }

    /// A dag-pb UnixFS file node with `links` and their declared sizes.
    fn file_node(data: &[u8], links: &[(Cid, u64)], filesize: u64) -> (Cid, Vec<u8>) {
        let mut fs = Vec::new();
        field_varint(&mut fs, 1, TYPE_FILE);
        field_bytes(&mut fs, 2, data);
        field_varint(&mut fs, 3, filesize);
        for (_, n) in links {
            field_varint(&mut fs, 4, *n);
        }
        let mut node = Vec::new();
        for (c, n) in links {
            let mut l = Vec::new();
            field_bytes(&mut l, 1, &c.to_bytes());
            field_bytes(&mut l, 2, b"");
            field_varint(&mut l, 3, *n);
            field_bytes(&mut node, 2, &l);
        }
        field_bytes(&mut node, 1, &fs);
        (Cid::v1(DAG_PB, Sha256::digest(&node).into()).unwrap(), node)
    }

    fn raw(b: &[u8]) -> Cid {
        Cid::v1(RAW, Sha256::digest(b).into()).unwrap()
    }

    #[test]
    fn reassembles_and_checks_declared_sizes() {
        let (a, b) = (b"hello ".to_vec(), b"world".to_vec());
        let (ca, cb) = (raw(&a), raw(&b));
        let (root, node) = file_node(b"", &[(ca, 6), (cb, 5)], 11);
        let blocks: HashMap<Cid, &[u8]> = [(ca, &a[..]), (cb, &b[..]), (root, &node[..])].into();
        let Entry::File(f) = entry(&root, &blocks, 1 << 20).unwrap() else { panic!("a file") };
        assert_eq!(f, b"hello world");
        let e = entry(&root, &blocks, 8).err().unwrap();
        assert!(e.contains("size cap of 8"), "{e}");

        let (lying, node) = file_node(b"", &[(ca, 6), (cb, 4)], 10);
        let blocks: HashMap<Cid, &[u8]> = [(ca, &a[..]), (cb, &b[..]), (lying, &node[..])].into();
        let e = entry(&lying, &blocks, 1 << 20).err().unwrap();
        assert!(e.contains("blocksizes says 4"), "{e}");
    }

    #[test]
    fn a_dag_of_repeated_empty_links_is_bounded() {
        // 40 levels, each linking the level below 8 times: 8^40 visits if nothing stopped it.
        let (mut cid, mut node) = file_node(b"", &[], 0);
        let mut all = vec![(cid, node.clone())];
        for _ in 0..40 {
            (cid, node) = file_node(b"", &vec![(cid, 0); 8], 0);
            all.push((cid, node.clone()));
        }
        let blocks: HashMap<Cid, &[u8]> = all.iter().map(|(c, n)| (*c, &n[..])).collect();
        let e = entry(&cid, &blocks, 1 << 20).err().unwrap();
        assert!(e.contains("links more nodes"), "{e}");
    }
}
