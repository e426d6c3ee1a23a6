//! The index arrays of a mixed-adapter LoRA step on the GPU (`kernels/lora.cu`): every row of
//! the batch carries its own weighted set of adapter slots; entries `(row, slot, weight)` are
//! grouped by slot so each adapter's A is read once per step for all its rows (shrink), and
//! listed per row so each output element sums its row's entries without atomics (expand). Each
//! entry's rank-vector sits at its own offset of one scratch array: no padding to a maximum rank.
//!
//! [`LoraPlan::apply_ref`] runs the same index arrays on the CPU; the GPU is checked against it
//! and it is checked here against the CPU engine's own LoRA math.

use half::f16;

use crate::error::{Error, Result};
use crate::lora::LoraPair;

/// One adapter module in the device pool: where its A (`[rank, d_in]`) and B (`[d_out, rank]`)
/// start, in f16 elements, and its scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSlot {
    /// Rank.
    pub rank: usize,
    /// The adapter's scale for this module (alpha/r or alpha/√r).
    pub scale: f32,
    /// Element offset of A.
    pub a_off: u64,
    /// Element offset of B.
    pub b_off: u64,
}

/// The f16 pool of adapter matrices for one module shape (`d_in → d_out`), as uploaded.
#[derive(Debug, Clone, Default)]
pub struct AdapterPool {
    /// Concatenated A and B matrices.
    pub data: Vec<f16>,
    /// Slots, by index.
    pub slots: Vec<PoolSlot>,
    d_in: usize,
    d_out: usize,
}

impl AdapterPool {
    /// An empty pool for modules of shape `d_in → d_out`.
    pub fn new(d_in: usize, d_out: usize) -> AdapterPool {
        AdapterPool { data: Vec::new(), slots: Vec::new(), d_in, d_out }
    }

    /// Append one module's A and B (rounded to f16); returns its slot index.
    pub fn push(&mut self, pair: &LoraPair) -> Result<usize> {
        if pair.d_in != self.d_in || pair.d_out != self.d_out {
            return Err(Error::invalid(
                "adapter pool",
                format!(
                    "a {}→{} module does not fit a pool of {}→{} modules",
                    pair.d_in, pair.d_out, self.d_in, self.d_out
                ),
            ));
        }
        if pair.rank == 0 || pair.a.len() != pair.rank * pair.d_in || pair.b.len() != pair.d_out * pair.rank {
            return Err(Error::invalid("adapter pool", format!("rank {} does not match A and B", pair.rank)));
        }
        let a_off = self.data.len() as u64;
        self.data.extend(pair.a.iter().map(|&v| f16::from_f32(v)));
        let b_off = self.data.len() as u64;
        self.data.extend(pair.b.iter().map(|&v| f16::from_f32(v)));
        self.slots.push(PoolSlot { rank: pair.rank, scale: pair.scale, a_off, b_off });
        Ok(self.slots.len() - 1)
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.d_in
    }

    /// Output width.
    pub fn d_out(&self) -> usize {
        self.d_out
    }
}

/// The index arrays of one step (all `i32` or `f32`, as the kernels take them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoraPlan {
    /// Group g's entries are `group_start[g]..group_start[g+1]`.
    pub group_start: Vec<i32>,
    /// Slot of each group.
    pub group_slot: Vec<i32>,
    /// Row of each entry.
    pub entry_row: Vec<i32>,
    /// Slot of each entry.
    pub entry_slot: Vec<i32>,
    /// Weight of each entry.
    pub entry_weight: Vec<f32>,
    /// Offset of each entry's rank-vector in the scratch array.
    pub tmp_off: Vec<i32>,
    /// Row r's entries are `row_entries[row_start[r]..row_start[r+1]]`.
    pub row_start: Vec<i32>,
    /// Entry indices, row by row.
    pub row_entries: Vec<i32>,
    /// Largest rank in the step (the shrink grid's second dimension).
    pub max_rank: usize,
    /// Length of the scratch array: the sum of the entries' ranks.
    pub tmp_len: usize,
}

impl LoraPlan {
    /// Build the arrays for `rows[r]` = that row's `(slot, weight)` set (empty for a base-only
    /// row). Refuses unknown slots, a slot twice in one row and non-finite weights.
    pub fn build(rows: &[Vec<(usize, f32)>], slots: &[PoolSlot]) -> Result<LoraPlan> {
        let mut entries: Vec<(usize, usize, f32)> = Vec::new(); // (slot, row, weight)
        for (r, set) in rows.iter().enumerate() {
            for (i, &(slot, w)) in set.iter().enumerate() {
                if slot >= slots.len() {
                    return Err(Error::invalid(
                        "lora plan",
                        format!("row {r}: slot {slot} is not in the pool"),
                    ));
                }
                if !w.is_finite() {
                    return Err(Error::invalid("lora plan", format!("row {r}: weight {w} is not finite")));
                }
                if set[..i].iter().any(|&(s, _)| s == slot) {
                    return Err(Error::invalid("lora plan", format!("row {r}: slot {slot} is listed twice")));
                }
                entries.push((slot, r, w));
            }
        }
        // Stable by slot: rows stay in order within a group.
        entries.sort_by_key(|e| e.0);
        let mut plan = LoraPlan::default();
        let mut off = 0usize;
        for (e, &(slot, row, w)) in entries.iter().enumerate() {
            if e == 0 || entries[e - 1].0 != slot {
                plan.group_start.push(e as i32);
                plan.group_slot.push(slot as i32);
            }
            plan.entry_row.push(row as i32);
            plan.entry_slot.push(slot as i32);
            plan.entry_weight.push(w);
            plan.tmp_off.push(off as i32);
            off += slots[slot].rank;
            plan.max_rank = plan.max_rank.max(slots[slot].rank);
        }
        plan.group_start.push(entries.len() as i32);
        plan.tmp_len = off;
        if off > i32::MAX as usize {
            return Err(Error::invalid("lora plan", "the step's rank vectors exceed 2^31 elements"));
        }
        let mut per_row: Vec<Vec<i32>> = vec![Vec::new(); rows.len()];
        for (e, &r) in plan.entry_row.iter().enumerate() {
            per_row[r as usize].push(e as i32);
        }
        plan.row_start.push(0);
        for list in per_row {
            plan.row_entries.extend(list);
            plan.row_start.push(plan.row_entries.len() as i32);
        }
        Ok(plan)
    }

    /// Number of groups (distinct slots in the step).
    pub fn n_groups(&self) -> usize {
        self.group_slot.len()
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.row_start.len() - 1
    }

    /// `lora_shrink` then `lora_expand` on the CPU with the same arrays and f16 pool:
    /// `y[r] += Σ_e w_e · s · B(A · x[r])`.
    pub fn apply_ref(&self, pool: &AdapterPool, x: &[f32], y: &mut [f32]) {
        let (din, dout) = (pool.d_in, pool.d_out);
        let at = |o: u64, i: usize| pool.data[o as usize + i].to_f32();
        let mut tmp = vec![0f32; self.tmp_len];
        for g in 0..self.n_groups() {
            let slot = pool.slots[self.group_slot[g] as usize];
            for e in self.group_start[g] as usize..self.group_start[g + 1] as usize {
                let xr = &x[self.entry_row[e] as usize * din..][..din];
                for j in 0..slot.rank {
                    tmp[self.tmp_off[e] as usize + j] =
                        (0..din).map(|c| at(slot.a_off, j * din + c) * xr[c]).sum();
                }
            }
        }
        for r in 0..self.n_rows() {
            for o in 0..dout {
                let mut acc = 0f32;
                for &e in &self.row_entries[self.row_start[r] as usize..self.row_start[r + 1] as usize] {
                    let e = e as usize;
                    let slot = pool.slots[self.entry_slot[e] as usize];
                    let t = &tmp[self.tmp_off[e] as usize..][..slot.rank];
                    let dot: f32 = (0..slot.rank).map(|j| at(slot.b_off, o * slot.rank + j) * t[j]).sum();
                    acc += self.entry_weight[e] * slot.scale * dot;
                }
                y[r * dout + o] += acc;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::{Kernels, ThreadPool};
    use crate::lora::apply::apply_lora;

    fn pair(rank: usize, d_in: usize, d_out: usize, seed: usize) -> LoraPair {
        // Values that are exact in f16, so the CPU engine's f32 math sees the same numbers.
        let v = |i: usize| (((i * 37 + seed * 11) % 17) as f32 - 8.0) / 64.0;
        LoraPair {
            rank,
            d_in,
            d_out,
            a: (0..rank * d_in).map(v).collect(),
            b: (0..d_out * rank).map(|i| v(i + 5)).collect(),
            scale: 0.5 + seed as f32 / 4.0,
        }
    }

    #[test]
    fn grouped_by_slot_listed_by_row_without_padding() {
        let (din, dout) = (8, 6);
        let mut pool = AdapterPool::new(din, dout);
        for (i, r) in [4, 16, 2].into_iter().enumerate() {
            pool.push(&pair(r, din, dout, i)).unwrap();
        }
        let rows = vec![vec![(1, 1.0)], vec![], vec![(0, 0.5), (2, 2.0)], vec![(1, -1.0), (0, 1.0)]];
        let plan = LoraPlan::build(&rows, &pool.slots).unwrap();
        assert_eq!(plan.group_slot, vec![0, 1, 2]);
        assert_eq!(plan.group_start, vec![0, 2, 4, 5]);
        assert_eq!(plan.entry_row, vec![2, 3, 0, 3, 2]);
        // Ranks 4, 4, 16, 16, 2: offsets are prefix sums, the scratch their total.
        assert_eq!(plan.tmp_off, vec![0, 4, 8, 24, 40]);
        assert_eq!(plan.tmp_len, 42);
        assert_eq!(plan.max_rank, 16);
        assert_eq!(plan.row_start, vec![0, 1, 1, 3, 5]);
        assert_eq!(plan.row_entries, vec![2, 0, 4, 1, 3]);
    }

    #[test]
    fn reference_equals_the_cpu_engine_per_row() {
        let (din, dout) = (64, 48);
        let pairs: Vec<LoraPair> =
            [8, 16, 4, 2].iter().enumerate().map(|(i, &r)| pair(r, din, dout, i)).collect();
        let mut pool = AdapterPool::new(din, dout);
        for p in &pairs {
            pool.push(p).unwrap();
        }
        let rows =
            vec![vec![(3, 1.0)], vec![(0, 0.25), (1, 0.75)], vec![], vec![(2, 1.0), (0, -0.5), (3, 2.0)]];
        let x: Vec<f32> = (0..rows.len() * din).map(|i| ((i % 13) as f32 - 6.0) / 8.0).collect();
        let base: Vec<f32> = (0..rows.len() * dout).map(|i| i as f32 / 100.0).collect();
        let mut got = base.clone();
        LoraPlan::build(&rows, &pool.slots).unwrap().apply_ref(&pool, &x, &mut got);
        // The CPU engine: one apply_lora call per adapter over its (row, weight) list.
        let mut want = base;
        let (tp, k) = (ThreadPool::new(1), Kernels::detect());
        for (s, p) in pairs.iter().enumerate() {
            let list: Vec<(usize, f32)> = rows
                .iter()
                .enumerate()
                .filter_map(|(r, set)| set.iter().find(|e| e.0 == s).map(|e| (r, e.1)))
                .collect();
            if !list.is_empty() {
                apply_lora(&tp, &k, p, &list, &x, din, &mut want, dout, &mut Vec::new());
            }
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "element {i}: {g} vs {w}");
        }
        assert_eq!(
            &got[2 * dout..3 * dout],
            &(2 * dout..3 * dout).map(|i| i as f32 / 100.0).collect::<Vec<_>>()[..]
        );
    }

    #[test]
    fn bad_sets_are_refused_with_the_row_named() {
        let mut pool = AdapterPool::new(8, 8);
        pool.push(&pair(2, 8, 8, 0)).unwrap();
        let e = LoraPlan::build(&[vec![(0, 1.0), (0, 1.0)]], &pool.slots).unwrap_err().to_string();
        assert!(e.contains("row 0: slot 0 is listed twice"), "{e}");
        let e = LoraPlan::build(&[vec![], vec![(3, 1.0)]], &pool.slots).unwrap_err().to_string();
        assert!(e.contains("row 1: slot 3 is not in the pool"), "{e}");
        let e = LoraPlan::build(&[vec![(0, f32::NAN)]], &pool.slots).unwrap_err().to_string();
        assert!(e.contains("not finite"), "{e}");
        let e = pool.push(&pair(2, 16, 8, 0)).unwrap_err().to_string();
        assert!(e.contains("16→8 module does not fit a pool of 8→8"), "{e}");
        let empty = LoraPlan::build(&[vec![], vec![]], &pool.slots).unwrap();
        assert_eq!((empty.n_groups(), empty.n_rows(), empty.tmp_len), (0, 2, 0));
    }
}
