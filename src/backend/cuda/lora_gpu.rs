//! Multi-adapter LoRA on a GPU: an [`AdapterPool`] uploaded as one f16 array with its slot
//! tables, a [`LoraPlan`]'s index arrays uploaded per step, and the shrink/expand kernels.

use half::f16;

use super::device::{blocks, int, need, CudaDevice, DeviceBuffer};
use super::lora_plan::{AdapterPool, LoraPlan, PoolSlot};
use crate::error::Result;
use crate::memory::Category;

/// An adapter pool on the device.
#[derive(Debug)]
pub struct GpuPool {
    data: DeviceBuffer<f16>,
    a_off: DeviceBuffer<i64>,
    b_off: DeviceBuffer<i64>,
    rank: DeviceBuffer<i32>,
    scale: DeviceBuffer<f32>,
    /// The slots (host copy).
    pub slots: Vec<PoolSlot>,
    d_in: usize,
    d_out: usize,
}

impl GpuPool {
    /// Upload `pool` on the copy stream (docking goes on beside decoding), charged to the
    /// device's ledger as adapters.
    pub fn upload(dev: &CudaDevice, pool: &AdapterPool) -> Result<GpuPool> {
        let c = Category::Adapters;
        let a: Vec<i64> = pool.slots.iter().map(|s| s.a_off as i64).collect();
        let b: Vec<i64> = pool.slots.iter().map(|s| s.b_off as i64).collect();
        let r: Vec<i32> = pool.slots.iter().map(|s| s.rank as i32).collect();
        let sc: Vec<f32> = pool.slots.iter().map(|s| s.scale).collect();
        Ok(GpuPool {
            data: dev.upload_async(c, &pool.data)?,
            a_off: dev.upload_async(c, &a)?,
            b_off: dev.upload_async(c, &b)?,
            rank: dev.upload_async(c, &r)?,
            scale: dev.upload_async(c, &sc)?,
            slots: pool.slots.clone(),
            d_in: pool.d_in(),
            d_out: pool.d_out(),
        })
    }
}

/// One step's plan on the device, with its scratch.
#[derive(Debug)]
pub struct GpuLoraPlan {
    group_start: DeviceBuffer<i32>,
    group_slot: DeviceBuffer<i32>,
    entry_row: DeviceBuffer<i32>,
    entry_slot: DeviceBuffer<i32>,
    entry_weight: DeviceBuffer<f32>,
    tmp_off: DeviceBuffer<i32>,
    row_start: DeviceBuffer<i32>,
    row_entries: DeviceBuffer<i32>,
    tmp: DeviceBuffer<f32>,
    n_groups: usize,
    n_rows: usize,
    max_rank: usize,
}

impl GpuLoraPlan {
    /// Upload `plan` (scratch reserved on the ledger).
    pub fn upload(dev: &CudaDevice, plan: &LoraPlan) -> Result<GpuLoraPlan> {
        let c = Category::Scratch;
        Ok(GpuLoraPlan {
            group_start: dev.upload(c, &plan.group_start)?,
            group_slot: dev.upload(c, &plan.group_slot)?,
            entry_row: dev.upload(c, &plan.entry_row)?,
            entry_slot: dev.upload(c, &plan.entry_slot)?,
            entry_weight: dev.upload(c, &plan.entry_weight)?,
            tmp_off: dev.upload(c, &plan.tmp_off)?,
            row_start: dev.upload(c, &plan.row_start)?,
            row_entries: dev.upload(c, &plan.row_entries)?,
            tmp: dev.zeros(c, plan.tmp_len)?,
            n_groups: plan.n_groups(),
            n_rows: plan.n_rows(),
            max_rank: plan.max_rank,
        })
    }
}

impl CudaDevice {
    /// `y[r] += Σ_e w_e · s · B(A · x[r])` for the plan's rows (`x`: `[n_rows, d_in]`, `y`:
    /// `[n_rows, d_out]`); nothing to do for a plan without entries.
    pub fn lora(
        &self,
        pool: &GpuPool,
        plan: &mut GpuLoraPlan,
        x: &DeviceBuffer<f32>,
        y: &mut DeviceBuffer<f32>,
    ) -> Result<()> {
        if plan.n_groups == 0 {
            return Ok(());
        }
        need("lora x", x.len(), plan.n_rows * pool.d_in)?;
        need("lora y", y.len(), plan.n_rows * pool.d_out)?;
        let (din, dout) = (int("d_in", pool.d_in)?, int("d_out", pool.d_out)?);
        launch!(
            self,
            "lora_shrink",
            (plan.n_groups as u32, plan.max_rank as u32, 1),
            (256, 1, 1),
            [
                &x.slice,
                &din,
                &pool.data.slice,
                &pool.a_off.slice,
                &pool.rank.slice,
                &plan.group_start.slice,
                &plan.group_slot.slice,
                &plan.entry_row.slice,
                &plan.tmp_off.slice,
                &mut plan.tmp.slice
            ]
        )?;
        launch!(
            self,
            "lora_expand",
            (blocks(pool.d_out, 256), plan.n_rows as u32, 1),
            (256, 1, 1),
            [
                &plan.tmp.slice,
                &pool.data.slice,
                &pool.b_off.slice,
                &pool.rank.slice,
                &pool.scale.slice,
                &plan.row_start.slice,
                &plan.row_entries.slice,
                &plan.entry_slot.slice,
                &plan.entry_weight.slice,
                &plan.tmp_off.slice,
                &mut y.slice,
                &dout
            ]
        )
    }
}
