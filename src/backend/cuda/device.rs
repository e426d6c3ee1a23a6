//! One GPU: its context, a compute stream and a copy stream (adapters dock by async copies
//! while decoding goes on; cudarc's event tracking orders a buffer's first use after its copy),
//! the embedded kernels, and allocations that are always reserved against the device's
//! [`Ledger`] first — so the red line holds on the GPU exactly as on the CPU.
//!
//! Every kernel wrapper checks the lengths of the buffers it is given against the shapes it is
//! told, because a kernel cannot; a driver failure becomes [`Error::Device`] naming the device
//! and the operation. A CUDA error poisons the context: the owner drops this device and opens
//! it again (see `ARCHITECTURE.md`).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, DriverError, LaunchConfig, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;
use half::{bf16, f16};

use super::pack::{Packed, PackedMatrix};
use super::probe::{probe, Probe};
use super::ptx::MODULES;
use crate::error::{Error, Result};
use crate::memory::{Category, Ledger, Reservation};

/// Positions per KV page (the CPU runtime's page).
pub const PAGE: usize = crate::kv::PAGE;

/// Device memory holding `len` values of `T`, with the ledger reservation that pays for it.
#[derive(Debug)]
pub struct DeviceBuffer<T> {
    pub(super) slice: CudaSlice<T>,
    len: usize,
    _held: Reservation,
}

impl<T> DeviceBuffer<T> {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A weight matrix on the device, in one of the kernels' layouts.
#[derive(Debug)]
pub enum GpuWeights {
    /// Row-major halves.
    F16(DeviceBuffer<f16>),
    /// Row-major bfloat16.
    Bf16(DeviceBuffer<bf16>),
    /// Q8_0 quants and scales.
    Q8_0(DeviceBuffer<i8>, DeviceBuffer<f16>),
    /// Q4_0 nibbles and scales.
    Q4_0(DeviceBuffer<u8>, DeviceBuffer<f16>),
    /// Q4_1 nibbles, scales and mins.
    Q4_1(DeviceBuffer<u8>, DeviceBuffer<f16>, DeviceBuffer<f16>),
}

/// A `[rows, cols]` weight matrix on the device.
#[derive(Debug)]
pub struct GpuMatrix {
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    /// The data.
    pub weights: GpuWeights,
    /// Device bytes of the weights (what a matrix-vector product reads).
    pub bytes: u64,
}

/// One usable GPU with its kernels loaded.
pub struct CudaDevice {
    ordinal: usize,
    _ctx: Arc<CudaContext>,
    pub(super) stream: Arc<CudaStream>,
    copy_stream: Arc<CudaStream>,
    funcs: HashMap<&'static str, CudaFunction>,
    ledger: Ledger,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice(cuda:{})", self.ordinal)
    }
}

pub(super) fn launch_cfg(grid: (u32, u32, u32), block: (u32, u32, u32)) -> LaunchConfig {
    LaunchConfig { grid_dim: grid, block_dim: block, shared_mem_bytes: 0 }
}

pub(super) fn blocks(n: usize, per: usize) -> u32 {
    n.div_ceil(per).max(1) as u32
}

pub(super) fn need(what: &str, got: usize, want: usize) -> Result<()> {
    if got < want {
        return Err(Error::invalid(what, format!("{got} values, {want} needed")));
    }
    Ok(())
}

pub(super) fn int(name: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::invalid(name, format!("{v} does not fit a 32-bit kernel argument")))
}

impl CudaDevice {
    /// Open GPU `ordinal`, with allocations charged to `ledger` (its budget is the red line
    /// for this device). Fails with a clear reason when there is no usable GPU.
    pub fn open(ordinal: usize, ledger: Ledger) -> Result<CudaDevice> {
        let label = format!("cuda:{ordinal}");
        match probe() {
            Probe::Unavailable(why) => return Err(Error::device(label, why)),
            Probe::Available { devices, .. } if !devices.iter().any(|d| d.ordinal == ordinal) => {
                return Err(Error::device(
                    label,
                    format!("no usable device with this ordinal ({} found)", devices.len()),
                ))
            }
            Probe::Available { .. } => {}
        }
        match catch_unwind(AssertUnwindSafe(|| Self::open_inner(ordinal, ledger))) {
            Ok(r) => r,
            Err(_) => Err(Error::device(label, "the driver library panicked while opening the device")),
        }
    }

    fn open_inner(ordinal: usize, ledger: Ledger) -> Result<CudaDevice> {
        let label = || format!("cuda:{ordinal}");
        let d = |op: &'static str| move |e: DriverError| Error::device(label(), format!("{op}: {e}"));
        let ctx = CudaContext::new(ordinal).map_err(d("creating the context"))?;
        let stream = ctx.new_stream().map_err(d("creating the compute stream"))?;
        let copy_stream = ctx.new_stream().map_err(d("creating the copy stream"))?;
        let mut funcs = HashMap::new();
        for (module, ptx, kernels) in MODULES {
            let m = ctx
                .load_module(Ptx::from_src(ptx))
                .map_err(|e| Error::device(label(), format!("loading kernels/ptx/{module}.ptx: {e}")))?;
            for &k in kernels {
                let f = m.load_function(k).map_err(|e| Error::device(label(), format!("kernel {k}: {e}")))?;
                funcs.insert(k, f);
            }
        }
        Ok(CudaDevice { ordinal, _ctx: ctx, stream, copy_stream, funcs, ledger })
    }

    /// The device's ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// `cuda:N`.
    pub fn label(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }

    pub(super) fn fail(&self, op: &str, e: DriverError) -> Error {
        Error::device(self.label(), format!("{op}: {e}"))
    }

    pub(super) fn func(&self, name: &str) -> Result<&CudaFunction> {
        self.funcs
            .get(name)
            .ok_or_else(|| Error::device(self.label(), format!("kernel {name} is not loaded")))
    }

    /// Wait for all work queued on the compute stream.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| self.fail("synchronize", e))
    }

    fn reserve<T>(&self, category: Category, len: usize) -> Result<Reservation> {
        self.ledger.try_reserve(category, (len.max(1) * std::mem::size_of::<T>()) as u64)
    }

    /// Copy `host` to the device on the compute stream, reserving its bytes first.
    pub fn upload<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        category: Category,
        host: &[T],
    ) -> Result<DeviceBuffer<T>> {
        self.upload_on(&self.stream, category, host)
    }

    /// Copy `host` to the device on the copy stream (adapter docking): returns at once; kernels
    /// that later read the buffer on the compute stream wait for the copy, nothing else does.
    pub fn upload_async<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        category: Category,
        host: &[T],
    ) -> Result<DeviceBuffer<T>> {
        self.upload_on(&self.copy_stream, category, host)
    }

    fn upload_on<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        stream: &Arc<CudaStream>,
        category: Category,
        host: &[T],
    ) -> Result<DeviceBuffer<T>> {
        let held = self.reserve::<T>(category, host.len())?;
        let slice = if host.is_empty() { stream.alloc_zeros::<T>(1) } else { stream.clone_htod(host) }
            .map_err(|e| self.fail("copy to device", e))?;
        Ok(DeviceBuffer { slice, len: host.len(), _held: held })
    }

    /// `len` zeros on the device, reserved first.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        category: Category,
        len: usize,
    ) -> Result<DeviceBuffer<T>> {
        let held = self.reserve::<T>(category, len)?;
        let slice = self.stream.alloc_zeros::<T>(len.max(1)).map_err(|e| self.fail("allocate", e))?;
        Ok(DeviceBuffer { slice, len, _held: held })
    }

    /// Overwrite the start of `buf` with `host` (same stream order as kernels).
    pub fn write<T: DeviceRepr>(&self, buf: &mut DeviceBuffer<T>, host: &[T]) -> Result<()> {
        need("device buffer", buf.len, host.len())?;
        if host.is_empty() {
            return Ok(());
        }
        let mut view = buf.slice.slice_mut(0..host.len());
        self.stream.memcpy_htod(host, &mut view).map_err(|e| self.fail("copy to device", e))
    }

    /// Copy `buf` back to the host (waits for the work queued before it).
    pub fn download<T: DeviceRepr>(&self, buf: &DeviceBuffer<T>) -> Result<Vec<T>> {
        let mut v = self.stream.clone_dtoh(&buf.slice).map_err(|e| self.fail("copy to host", e))?;
        v.truncate(buf.len);
        Ok(v)
    }

    /// Device-to-device copy bandwidth in GB/s (bytes read plus bytes written, per second) over
    /// `reps` copies of a `bytes` buffer: the memory-bandwidth bound benchmarks compare with.
    pub fn copy_bandwidth(&self, bytes: usize, reps: usize) -> Result<f64> {
        let src = self.zeros::<u8>(Category::Scratch, bytes)?;
        let mut dst = self.zeros::<u8>(Category::Scratch, bytes)?;
        let copy = |dst: &mut DeviceBuffer<u8>| {
            self.stream.memcpy_dtod(&src.slice, &mut dst.slice).map_err(|e| self.fail("copy", e))
        };
        copy(&mut dst)?;
        self.synchronize()?;
        let t = std::time::Instant::now();
        for _ in 0..reps {
            copy(&mut dst)?;
        }
        self.synchronize()?;
        Ok(2.0 * (bytes * reps) as f64 / t.elapsed().as_secs_f64() / 1e9)
    }

    /// Upload a packed weight matrix, reserved as `category`.
    pub fn upload_matrix(&self, category: Category, m: &PackedMatrix) -> Result<GpuMatrix> {
        m.check()?;
        let weights = match &m.data {
            Packed::F16(w) => GpuWeights::F16(self.upload(category, w)?),
            Packed::Bf16(w) => GpuWeights::Bf16(self.upload(category, w)?),
            Packed::Q8_0 { qs, d } => GpuWeights::Q8_0(self.upload(category, qs)?, self.upload(category, d)?),
            Packed::Q4_0 { qs, d } => GpuWeights::Q4_0(self.upload(category, qs)?, self.upload(category, d)?),
            Packed::Q4_1 { qs, d, m } => GpuWeights::Q4_1(
                self.upload(category, qs)?,
                self.upload(category, d)?,
                self.upload(category, m)?,
            ),
        };
        Ok(GpuMatrix { rows: m.rows, cols: m.cols, weights, bytes: m.device_bytes() })
    }

    /// `y[t] = W · x[t]` for `n_tokens` rows, 8 tokens per launch.
    pub fn matvec(
        &self,
        w: &GpuMatrix,
        x: &DeviceBuffer<f32>,
        y: &mut DeviceBuffer<f32>,
        n_tokens: usize,
    ) -> Result<()> {
        need("matvec x", x.len, n_tokens * w.cols)?;
        need("matvec y", y.len, n_tokens * w.rows)?;
        let (rows, cols) = (int("rows", w.rows)?, int("cols", w.cols)?);
        let grid = (blocks(w.rows, 4), 1, 1);
        let block = (32, 4, 1);
        for t0 in (0..n_tokens).step_by(8) {
            let nt = (n_tokens - t0).min(8) as i32;
            let xv = x.slice.slice(t0 * w.cols..);
            let mut yv = y.slice.slice_mut(t0 * w.rows..);
            match &w.weights {
                GpuWeights::F16(a) => {
                    launch!(self, "matvec_f16", grid, block, [&a.slice, &xv, &mut yv, &rows, &cols, &nt])?
                }
                GpuWeights::Bf16(a) => {
                    launch!(self, "matvec_bf16", grid, block, [&a.slice, &xv, &mut yv, &rows, &cols, &nt])?
                }
                GpuWeights::Q8_0(q, d) => launch!(
                    self,
                    "matvec_q8_0",
                    grid,
                    block,
                    [&q.slice, &d.slice, &xv, &mut yv, &rows, &cols, &nt]
                )?,
                GpuWeights::Q4_0(q, d) => launch!(
                    self,
                    "matvec_q4_0",
                    grid,
                    block,
                    [&q.slice, &d.slice, &xv, &mut yv, &rows, &cols, &nt]
                )?,
                GpuWeights::Q4_1(q, d, m) => launch!(
                    self,
                    "matvec_q4_1",
                    grid,
                    block,
                    [&q.slice, &d.slice, &m.slice, &xv, &mut yv, &rows, &cols, &nt]
                )?,
            }
        }
        Ok(())
    }

    /// RMSNorm of `n_tokens` rows of width `w.len()`.
    pub fn rmsnorm(
        &self,
        x: &DeviceBuffer<f32>,
        w: &DeviceBuffer<f32>,
        y: &mut DeviceBuffer<f32>,
        n_tokens: usize,
        eps: f32,
    ) -> Result<()> {
        let dim = int("dim", w.len)?;
        need("rmsnorm x", x.len, n_tokens * w.len)?;
        need("rmsnorm y", y.len, n_tokens * w.len)?;
        launch!(
            self,
            "rmsnorm",
            (n_tokens as u32, 1, 1),
            (256, 1, 1),
            [&x.slice, &w.slice, &mut y.slice, &dim, &eps]
        )
    }

    /// Rotary embedding in place on `[n_tokens, n_heads, head_dim]`.
    pub fn rope(
        &self,
        x: &mut DeviceBuffer<f32>,
        positions: &DeviceBuffer<i32>,
        inv_freq: &DeviceBuffer<f32>,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<()> {
        let n_tokens = positions.len;
        need("rope x", x.len, n_tokens * n_heads * head_dim)?;
        need("rope inv_freq", inv_freq.len, head_dim / 2)?;
        let (nh, hd) = (int("heads", n_heads)?, int("head_dim", head_dim)?);
        launch!(
            self,
            "rope",
            (n_tokens as u32, n_heads as u32, 1),
            ((head_dim / 2) as u32, 1, 1),
            [&mut x.slice, &positions.slice, &inv_freq.slice, &nh, &hd]
        )
    }

    /// `out[i] = silu(gate[i]) · up[i]` for the first `n` values.
    pub fn silu_mul(
        &self,
        gate: &DeviceBuffer<f32>,
        up: &DeviceBuffer<f32>,
        out: &mut DeviceBuffer<f32>,
        n: usize,
    ) -> Result<()> {
        need("silu gate", gate.len, n)?;
        need("silu up", up.len, n)?;
        need("silu out", out.len, n)?;
        let nn = n as i64;
        launch!(
            self,
            "silu_mul",
            (blocks(n, 256), 1, 1),
            (256, 1, 1),
            [&gate.slice, &up.slice, &mut out.slice, &nn]
        )
    }

    /// `y[i] += x[i]` for the first `n` values.
    pub fn add(&self, y: &mut DeviceBuffer<f32>, x: &DeviceBuffer<f32>, n: usize) -> Result<()> {
        need("add y", y.len, n)?;
        need("add x", x.len, n)?;
        let nn = n as i64;
        launch!(self, "add_inplace", (blocks(n, 256), 1, 1), (256, 1, 1), [&mut y.slice, &x.slice, &nn])
    }

    /// `y[t·w + i] += bias[i]` for `n_tokens` rows (Qwen2's q/k/v biases).
    pub fn add_rows(
        &self,
        y: &mut DeviceBuffer<f32>,
        bias: &DeviceBuffer<f32>,
        n_tokens: usize,
    ) -> Result<()> {
        let w = bias.len;
        need("bias y", y.len, n_tokens * w)?;
        let nn = w as i64;
        for t in 0..n_tokens {
            let mut yv = y.slice.slice_mut(t * w..(t + 1) * w);
            launch!(self, "add_inplace", (blocks(w, 256), 1, 1), (256, 1, 1), [&mut yv, &bias.slice, &nn])?;
        }
        Ok(())
    }

    /// Embedding rows of `ids` from an f16 or Q8_0 table `[vocab, dim]`.
    pub fn embed(
        &self,
        table: &GpuMatrix,
        ids: &DeviceBuffer<i32>,
        out: &mut DeviceBuffer<f32>,
    ) -> Result<()> {
        need("embed out", out.len, ids.len * table.cols)?;
        let dim = int("dim", table.cols)?;
        let grid = (ids.len as u32, 1, 1);
        match &table.weights {
            GpuWeights::F16(t) => {
                launch!(self, "embed_f16", grid, (256, 1, 1), [&t.slice, &ids.slice, &mut out.slice, &dim])
            }
            GpuWeights::Q8_0(q, d) => {
                launch!(
                    self,
                    "embed_q8_0",
                    grid,
                    (256, 1, 1),
                    [&q.slice, &d.slice, &ids.slice, &mut out.slice, &dim]
                )
            }
            _ => Err(Error::unsupported(self.label(), "embedding tables are uploaded as f16 or Q8_0")),
        }
    }

    /// Greedy ids and their logits, one per row of `[n_rows, vocab]`.
    pub fn argmax(&self, logits: &DeviceBuffer<f32>, vocab: usize) -> Result<(Vec<i32>, Vec<f32>)> {
        let n_rows = logits.len / vocab.max(1);
        let mut ids = self.zeros::<i32>(Category::Scratch, n_rows)?;
        let mut vals = self.zeros::<f32>(Category::Scratch, n_rows)?;
        let v = int("vocab", vocab)?;
        launch!(
            self,
            "argmax_rows",
            (n_rows as u32, 1, 1),
            (1024, 1, 1),
            [&logits.slice, &v, &mut ids.slice, &mut vals.slice]
        )?;
        Ok((self.download(&ids)?, self.download(&vals)?))
    }
}
