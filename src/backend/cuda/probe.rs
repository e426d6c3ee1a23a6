//! Finding a usable NVIDIA GPU without ever panicking: no driver library, no device, a driver
//! older than the PTX needs, or a symbol missing from an odd driver each become a clear reason,
//! and the caller runs on the CPU.

use std::panic::{catch_unwind, AssertUnwindSafe};

use cudarc::driver::{result, sys, CudaContext};

/// The oldest driver API version the embedded PTX loads on: CUDA 13.0 (`13000`), driver 580.
pub const MIN_DRIVER_VERSION: i32 = 13000;

/// One GPU the driver reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Device ordinal (`cuda:N`).
    pub ordinal: usize,
    /// Marketing name ("NVIDIA H100 80GB HBM3").
    pub name: String,
    /// Compute capability (major, minor); the PTX targets 9.0 and later.
    pub compute_capability: (i32, i32),
    /// Device memory in bytes.
    pub total_memory: u64,
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The driver loaded and reported these devices (at least one).
    Available {
        /// Driver API version (`13000` = CUDA 13.0).
        driver_version: i32,
        /// The devices, by ordinal.
        devices: Vec<GpuInfo>,
    },
    /// No GPU can be used; the reason in words (the runtime falls back to the CPU).
    Unavailable(String),
}

impl Probe {
    /// The devices, or none.
    pub fn devices(&self) -> &[GpuInfo] {
        match self {
            Probe::Available { devices, .. } => devices,
            Probe::Unavailable(_) => &[],
        }
    }

    /// One line for logs and the CLI.
    pub fn describe(&self) -> String {
        match self {
            Probe::Available { driver_version, devices } => {
                let names: Vec<String> = devices
                    .iter()
                    .map(|d| {
                        format!(
                            "cuda:{} {} (sm_{}{}, {:.1} GiB)",
                            d.ordinal,
                            d.name,
                            d.compute_capability.0,
                            d.compute_capability.1,
                            d.total_memory as f64 / (1u64 << 30) as f64
                        )
                    })
                    .collect();
                format!("CUDA driver {}: {}", version_string(*driver_version), names.join(", "))
            }
            Probe::Unavailable(why) => format!("no usable GPU: {why}"),
        }
    }
}

/// `13000` → `"13.0"`.
pub fn version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// Look for usable GPUs. `LORADOCK_CUDA=off` turns the GPU off without asking the driver.
/// Never panics: a missing library or symbol is caught and reported as the reason.
pub fn probe() -> Probe {
    probe_with(std::env::var("LORADOCK_CUDA").ok().as_deref())
}

/// [`probe`] with the value of `LORADOCK_CUDA` given.
fn probe_with(setting: Option<&str>) -> Probe {
    if matches!(setting, Some("off" | "0")) {
        return Probe::Unavailable("turned off by LORADOCK_CUDA".into());
    }
    // SAFETY: only tries to open the driver library by its usual names; no symbol is called.
    if !unsafe { sys::is_culib_present() } {
        return Probe::Unavailable(
            "the NVIDIA driver library (libcuda.so) was not found; is this a machine with an NVIDIA GPU and driver?"
                .into(),
        );
    }
    // cudarc panics when a symbol is missing from the library it loaded (an old or odd driver):
    // that becomes a reason, not a crash.
    match catch_unwind(AssertUnwindSafe(probe_driver)) {
        Ok(p) => p,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Probe::Unavailable(format!("the NVIDIA driver library could not be used: {what}"))
        }
    }
}

fn probe_driver() -> Probe {
    if let Err(e) = result::init() {
        return Probe::Unavailable(format!("cuInit failed: {e}"));
    }
    let mut version = 0i32;
    // SAFETY: cuDriverGetVersion writes one int through a valid pointer.
    let rc = unsafe { sys::cuDriverGetVersion(&mut version) };
    if rc != sys::CUresult::CUDA_SUCCESS {
        return Probe::Unavailable(format!("cuDriverGetVersion failed: {rc:?}"));
    }
    if version < MIN_DRIVER_VERSION {
        return Probe::Unavailable(format!(
            "the driver supports CUDA {} but loradock's kernels need CUDA {} (driver 580 or later)",
            version_string(version),
            version_string(MIN_DRIVER_VERSION)
        ));
    }
    let count = match CudaContext::device_count() {
        Ok(n) => n.max(0) as usize,
        Err(e) => return Probe::Unavailable(format!("cuDeviceGetCount failed: {e}")),
    };
    if count == 0 {
        return Probe::Unavailable(format!("CUDA driver {} reports no devices", version_string(version)));
    }
    let mut devices = Vec::with_capacity(count);
    for ordinal in 0..count {
        match device_info(ordinal) {
            Ok(d) if d.compute_capability.0 >= 9 => devices.push(d),
            Ok(d) => log::warn!(
                "cuda:{ordinal} {} is sm_{}{}; loradock's PTX targets sm_90 and later, skipping it",
                d.name,
                d.compute_capability.0,
                d.compute_capability.1
            ),
            Err(e) => log::warn!("cuda:{ordinal}: {e}; skipping it"),
        }
    }
    if devices.is_empty() {
        return Probe::Unavailable(format!("none of the {count} CUDA devices is sm_90 or later"));
    }
    Probe::Available { driver_version: version, devices }
}

fn device_info(ordinal: usize) -> Result<GpuInfo, String> {
    let dev = result::device::get(ordinal as i32).map_err(|e| format!("cuDeviceGet: {e}"))?;
    let name = result::device::get_name(dev).map_err(|e| format!("cuDeviceGetName: {e}"))?;
    let attr = |a| {
        // SAFETY: `dev` is a device handle the driver just returned; the attribute is a plain query.
        unsafe { result::device::get_attribute(dev, a) }.map_err(|e| format!("cuDeviceGetAttribute: {e}"))
    };
    let major = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    // SAFETY: as above.
    let total = unsafe { result::device::total_mem(dev) }.map_err(|e| format!("cuDeviceTotalMem: {e}"))?;
    Ok(GpuInfo { ordinal, name, compute_capability: (major, minor), total_memory: total as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_panics_and_explains_itself() {
        let p = probe();
        let line = p.describe();
        assert!(!line.is_empty());
        if let Probe::Unavailable(why) = &p {
            assert!(!why.is_empty(), "an unavailable probe must say why");
        }
    }

    #[test]
    fn can_be_turned_off() {
        let off = Probe::Unavailable("turned off by LORADOCK_CUDA".into());
        assert_eq!(probe_with(Some("off")), off);
        assert_eq!(probe_with(Some("0")), off);
    }

    #[test]
    fn versions_read_as_cuda_releases() {
        assert_eq!(version_string(13000), "13.0");
        assert_eq!(version_string(12040), "12.4");
    }
}
