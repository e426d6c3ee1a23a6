//! The byte ledger of one device (or of host RAM): a budget that is never crossed (the red
//! line), reservations taken before every allocation and released when dropped, bytes by
//! category, and a high-water mark.
//!
//! A reservation that does not fit fails with [`Error::OverBudget`] naming the category, the
//! bytes asked for and the bytes free; the caller (the runtime's evictor) may free unleased
//! adapters and try again, or refuse the work. Nothing is ever partially reserved.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// What the bytes are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Base model weights.
    BaseWeights,
    /// KV cache pages.
    KvPages,
    /// Docked adapters (and materialized composites).
    Adapters,
    /// Scratch buffers of the compute path.
    Scratch,
}

impl Category {
    /// All categories, in index order.
    pub const ALL: [Category; 4] =
        [Category::BaseWeights, Category::KvPages, Category::Adapters, Category::Scratch];

    /// Lower-case name (`base_weights`, `kv_pages`, `adapters`, `scratch`).
    pub fn name(self) -> &'static str {
        ["base_weights", "kv_pages", "adapters", "scratch"][self as usize]
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug)]
struct State {
    used: u64,
    by_category: [u64; 4],
    high_water: u64,
    reservations: u64,
}

#[derive(Debug)]
struct Inner {
    name: String,
    budget: u64,
    state: Mutex<State>,
}

/// A byte budget shared by everything that allocates on one device. Cheap to clone (shared).
/// Thread safety: `Send + Sync`; every operation takes one short lock.
#[derive(Debug, Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

/// A snapshot of a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerStats {
    /// The budget (red line) in bytes.
    pub budget_bytes: u64,
    /// Bytes reserved now.
    pub used_bytes: u64,
    /// The most ever reserved at once.
    pub high_water_bytes: u64,
    /// Bytes reserved now, by [`Category`] index.
    pub by_category: [u64; 4],
    /// Live reservations.
    pub reservations: u64,
}

impl Ledger {
    /// A ledger called `name` (for messages: "cpu", "cuda:0", "host") with `budget_bytes`.
    pub fn new(name: impl Into<String>, budget_bytes: u64) -> Ledger {
        Ledger {
            inner: Arc::new(Inner {
                name: name.into(),
                budget: budget_bytes,
                state: Mutex::new(State { used: 0, by_category: [0; 4], high_water: 0, reservations: 0 }),
            }),
        }
    }

    /// Reserve `bytes` for `category`, or fail without reserving anything.
    pub fn try_reserve(&self, category: Category, bytes: u64) -> Result<Reservation> {
        self.take(category, bytes)?;
        self.inner.state.lock().reservations += 1;
        Ok(Reservation { ledger: self.clone(), category, bytes })
    }

    fn take(&self, category: Category, bytes: u64) -> Result<()> {
        let mut s = self.inner.state.lock();
        let free = self.inner.budget - s.used;
        if bytes > free {
            return Err(Error::OverBudget {
                ledger: self.inner.name.clone(),
                category: category.name(),
                requested: bytes,
                free,
                budget: self.inner.budget,
            });
        }
        s.used += bytes;
        s.by_category[category as usize] += bytes;
        s.high_water = s.high_water.max(s.used);
        debug_assert_eq!(s.by_category.iter().sum::<u64>(), s.used, "categories must add up to the total");
        assert!(s.used <= self.inner.budget, "the ledger crossed its budget");
        Ok(())
    }

    fn give_back(&self, category: Category, bytes: u64) {
        let mut s = self.inner.state.lock();
        assert!(
            s.by_category[category as usize] >= bytes && s.used >= bytes,
            "releasing more {category} bytes than reserved"
        );
        s.used -= bytes;
        s.by_category[category as usize] -= bytes;
    }

    /// The ledger's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The budget in bytes.
    pub fn budget(&self) -> u64 {
        self.inner.budget
    }

    /// Bytes free now.
    pub fn free(&self) -> u64 {
        self.inner.budget - self.inner.state.lock().used
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> LedgerStats {
        let s = self.inner.state.lock();
        LedgerStats {
            budget_bytes: self.inner.budget,
            used_bytes: s.used,
            high_water_bytes: s.high_water,
            by_category: s.by_category,
            reservations: s.reservations,
        }
    }
}

/// Bytes held against a [`Ledger`]; released when dropped. Not `Clone`: one owner.
#[derive(Debug)]
pub struct Reservation {
    ledger: Ledger,
    category: Category,
    bytes: u64,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The category.
    pub fn category(&self) -> Category {
        self.category
    }

    /// Hold `more` bytes in addition, or fail and keep holding what it held.
    pub fn grow(&mut self, more: u64) -> Result<()> {
        self.ledger.take(self.category, more)?;
        self.bytes += more;
        Ok(())
    }

    /// Give back all but `bytes` (no-op when it holds no more than that).
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.ledger.give_back(self.category, self.bytes - bytes);
            self.bytes = bytes;
        }
    }

    /// Split off `bytes` into a reservation of their own (same ledger and category).
    pub fn split(&mut self, bytes: u64) -> Result<Reservation> {
        if bytes > self.bytes {
            return Err(Error::invalid(
                "bytes",
                format!("cannot split {bytes} bytes off a reservation of {}", self.bytes),
            ));
        }
        self.bytes -= bytes;
        self.ledger.inner.state.lock().reservations += 1;
        Ok(Reservation { ledger: self.ledger.clone(), category: self.category, bytes })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.ledger.give_back(self.category, self.bytes);
        self.ledger.inner.state.lock().reservations -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_released_on_drop_and_never_cross_the_budget() {
        let l = Ledger::new("cpu", 1000);
        let a = l.try_reserve(Category::BaseWeights, 600).unwrap();
        let mut b = l.try_reserve(Category::KvPages, 300).unwrap();
        let e = l.try_reserve(Category::Adapters, 200).unwrap_err().to_string();
        assert!(
            e.contains("cpu") && e.contains("adapters") && e.contains("200") && e.contains("100 free"),
            "{e}"
        );
        assert!(b.grow(200).is_err());
        assert_eq!(b.bytes(), 300, "a failed grow keeps what it held");
        b.grow(100).unwrap();
        assert_eq!(l.free(), 0);
        let s = l.stats();
        assert_eq!((s.used_bytes, s.high_water_bytes, s.reservations), (1000, 1000, 2));
        assert_eq!(s.by_category, [600, 400, 0, 0]);
        b.shrink_to(50);
        let c = b.split(20).unwrap();
        assert_eq!((b.bytes(), c.bytes(), l.stats().used_bytes), (30, 20, 650));
        drop((a, b, c));
        let s = l.stats();
        assert_eq!((s.used_bytes, s.by_category, s.reservations, s.high_water_bytes), (0, [0; 4], 0, 1000));
    }

    #[test]
    fn concurrent_reservations_stay_under_the_line() {
        let l = Ledger::new("cpu", 10_000);
        std::thread::scope(|sc| {
            for t in 0..4u64 {
                let l = l.clone();
                sc.spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..2000u64 {
                        if let Ok(r) = l
                            .try_reserve(Category::ALL[(t as usize + i as usize) % 4], 1 + (i * 37 + t) % 700)
                        {
                            held.push(r);
                        }
                        if held.len() > 5 {
                            held.remove(0);
                        }
                    }
                });
            }
        });
        let s = l.stats();
        assert!(s.high_water_bytes <= 10_000);
        assert_eq!((s.used_bytes, s.reservations), (0, 0), "everything came back");
    }

    #[test]
    fn splitting_more_than_held_is_refused() {
        let l = Ledger::new("host", 10);
        let mut r = l.try_reserve(Category::Scratch, 5).unwrap();
        assert!(r.split(6).is_err());
        assert_eq!(l.stats().used_bytes, 5);
    }
}
