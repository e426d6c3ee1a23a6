//! The paged KV cache's bookkeeping, on the host: a pool of fixed pages of [`PAGE`] positions
//! per device, and per sequence a block table (its pages in order). A kernel finds position `p`
//! of sequence `s` at page `table[s][p / PAGE]`, offset `p % PAGE`; slots handed to the append
//! kernel are `page · PAGE + offset`. Everything here runs and is tested on the CPU.

use crate::error::{Error, Result};

use super::device::PAGE;

/// The free pages of one device's KV pool.
#[derive(Debug, Clone)]
pub struct PageAllocator {
    free: Vec<u32>,
    total: u32,
}

impl PageAllocator {
    /// A pool of `total` pages, all free.
    pub fn new(total: u32) -> PageAllocator {
        PageAllocator { free: (0..total).rev().collect(), total }
    }

    /// Pages free now.
    pub fn free_pages(&self) -> usize {
        self.free.len()
    }

    /// Pages in the pool.
    pub fn total(&self) -> u32 {
        self.total
    }

    /// `n` pages, or none at all (and an error naming the shortfall).
    pub fn alloc(&mut self, n: usize) -> Result<Vec<u32>> {
        if n > self.free.len() {
            return Err(Error::Busy {
                what: format!("KV page pool ({} free, {n} asked)", self.free.len()),
                limit: self.total as usize,
            });
        }
        Ok(self.free.split_off(self.free.len() - n))
    }

    /// Give pages back. A page that is not from this pool, or already free, is refused
    /// (a double free would hand one page to two sequences).
    pub fn release(&mut self, pages: &[u32]) -> Result<()> {
        for (i, &p) in pages.iter().enumerate() {
            if p >= self.total || self.free.contains(&p) || pages[..i].contains(&p) {
                return Err(Error::invalid(
                    "kv pages",
                    format!("page {p} is not an allocated page of this pool"),
                ));
            }
        }
        self.free.extend_from_slice(pages);
        Ok(())
    }
}

/// One sequence's pages, in position order, and how many positions are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockTable {
    pages: Vec<u32>,
    len: usize,
}

impl BlockTable {
    /// An empty table.
    pub fn new() -> BlockTable {
        BlockTable::default()
    }

    /// Positions written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pages, in order.
    pub fn pages(&self) -> &[u32] {
        &self.pages
    }

    /// Make room for `n` more positions (taking pages from `alloc` as needed) and return their
    /// slots; the table's length then includes them.
    pub fn append(&mut self, alloc: &mut PageAllocator, n: usize) -> Result<Vec<i32>> {
        let need = (self.len + n).div_ceil(PAGE);
        if need > self.pages.len() {
            let more = alloc.alloc(need - self.pages.len())?;
            self.pages.extend(more);
        }
        let slots = (self.len..self.len + n)
            .map(|p| (self.pages[p / PAGE] as usize * PAGE + p % PAGE) as i32)
            .collect();
        self.len += n;
        Ok(slots)
    }

    /// Give every page back and become empty.
    pub fn release(&mut self, alloc: &mut PageAllocator) -> Result<()> {
        alloc.release(&self.pages)?;
        self.pages.clear();
        self.len = 0;
        Ok(())
    }
}

/// Block tables of a batch as the kernels read them: `[n_seqs, max_blocks]` row-major (unused
/// tail entries are 0 and never read, since a kernel stops at the sequence's length), the
/// row width, and each sequence's length.
pub fn batch_tables(tables: &[&BlockTable]) -> (Vec<i32>, usize, Vec<i32>) {
    let width = tables.iter().map(|t| t.pages.len()).max().unwrap_or(0).max(1);
    let mut flat = vec![0i32; tables.len() * width];
    for (s, t) in tables.iter().enumerate() {
        for (i, &p) in t.pages.iter().enumerate() {
            flat[s * width + i] = p as i32;
        }
    }
    (flat, width, tables.iter().map(|t| t.len as i32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_pages_and_grow_a_page_at_a_time() {
        let mut pool = PageAllocator::new(4);
        let mut t = BlockTable::new();
        let first = t.append(&mut pool, 3).unwrap();
        assert_eq!(t.pages().len(), 1);
        let p0 = t.pages()[0] as i32;
        assert_eq!(first, vec![p0 * 16, p0 * 16 + 1, p0 * 16 + 2]);
        let more = t.append(&mut pool, 14).unwrap();
        assert_eq!(t.pages().len(), 2);
        let p1 = t.pages()[1] as i32;
        assert_eq!(more[12], p0 * 16 + 15);
        assert_eq!(more[13], p1 * 16);
        assert_eq!((t.len(), pool.free_pages()), (17, 2));
        t.release(&mut pool).unwrap();
        assert_eq!((t.len(), pool.free_pages()), (0, 4));
    }

    #[test]
    fn exhaustion_takes_nothing_and_double_free_is_refused() {
        let mut pool = PageAllocator::new(2);
        let mut a = BlockTable::new();
        a.append(&mut pool, 20).unwrap();
        let mut b = BlockTable::new();
        let e = b.append(&mut pool, 1).unwrap_err().to_string();
        assert!(e.contains("0 free, 1 asked"), "{e}");
        assert_eq!(b.len(), 0);
        let pages = a.pages().to_vec();
        a.release(&mut pool).unwrap();
        let e = pool.release(&pages).unwrap_err().to_string();
        assert!(e.contains("is not an allocated page"), "{e}");
        assert!(pool.release(&[7]).is_err());
        assert_eq!(pool.free_pages(), 2);
    }

    #[test]
    fn batch_tables_are_padded_rows() {
        let mut pool = PageAllocator::new(8);
        let (mut a, mut b) = (BlockTable::new(), BlockTable::new());
        a.append(&mut pool, 40).unwrap();
        b.append(&mut pool, 5).unwrap();
        let (flat, width, lens) = batch_tables(&[&a, &b]);
        assert_eq!(width, 3);
        assert_eq!(lens, vec![40, 5]);
        assert_eq!(&flat[..3], &a.pages().iter().map(|&p| p as i32).collect::<Vec<_>>()[..]);
        assert_eq!(&flat[3..], &[b.pages()[0] as i32, 0, 0]);
    }
}
