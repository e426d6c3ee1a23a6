//! The log callback: loradock's `log` records forwarded to the host. Quiet until a host
//! sets a callback.

use std::ffi::{c_char, c_void, CString};

use parking_lot::RwLock;

use super::guard::{guard, Fail};
use super::status::loradock_status;

/// Receives one log record: `level` 1 error … 5 trace, `target` the module, `message` the
/// text (both NUL-terminated, valid during the call). Called from loradock's threads, any of
/// them, possibly at once: it must be thread-safe, must not unwind, and must not call back
/// into loradock (that could deadlock).
pub type loradock_log_callback = Option<
    unsafe extern "C" fn(level: i32, target: *const c_char, message: *const c_char, user_data: *mut c_void),
>;

/// Called once with `user_data` when the callback is replaced or removed.
pub type loradock_free_callback = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

struct Sink {
    cb: unsafe extern "C" fn(i32, *const c_char, *const c_char, *mut c_void),
    user_data: usize,
    finalizer: loradock_free_callback,
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(f) = self.finalizer {
            // SAFETY: the host's finalizer for its own user data, called once.
            unsafe { f(self.user_data as *mut c_void) };
        }
    }
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

struct Bridge;

impl log::Log for Bridge {
    fn enabled(&self, _m: &log::Metadata<'_>) -> bool {
        SINK.read().is_some()
    }

    fn log(&self, r: &log::Record<'_>) {
        let sink = SINK.read();
        let Some(s) = sink.as_ref() else { return };
        let level = r.level() as i32;
        let target = CString::new(r.target().replace('\0', " ")).unwrap_or_default();
        let msg = CString::new(r.args().to_string().replace('\0', " ")).unwrap_or_default();
        // SAFETY: the host's callback with NUL-terminated strings valid for the call.
        unsafe { (s.cb)(level, target.as_ptr(), msg.as_ptr(), s.user_data as *mut c_void) };
    }

    fn flush(&self) {}
}

static BRIDGE: Bridge = Bridge;

/// Send loradock's log records at `max_level` (1 error, 2 warn, 3 info, 4 debug, 5 trace)
/// and more severe to `callback` with `user_data`; `finalizer` (may be NULL) is called
/// with `user_data` once the callback is replaced or removed. A NULL `callback` removes the
/// current one (loradock is quiet by default); `max_level` is then ignored.
///
/// Statuses: `OK`, `INVALID_ARGUMENT` (level out of range, or another `log` logger is
/// already installed in this process by a Rust host), `PANIC`.
///
/// # Safety
/// `callback` and `finalizer` are valid functions or NULL.
#[no_mangle]
pub unsafe extern "C" fn loradock_set_log_callback(
    callback: loradock_log_callback,
    user_data: *mut c_void,
    finalizer: loradock_free_callback,
    max_level: i32,
) -> loradock_status {
    guard("loradock_set_log_callback", || {
        let filter = match (callback.is_some(), max_level) {
            (false, _) => log::LevelFilter::Off,
            (true, 1) => log::LevelFilter::Error,
            (true, 2) => log::LevelFilter::Warn,
            (true, 3) => log::LevelFilter::Info,
            (true, 4) => log::LevelFilter::Debug,
            (true, 5) => log::LevelFilter::Trace,
            (true, other) => return Err(Fail::invalid(format!("max_level {other} is not between 1 and 5"))),
        };
        // Whether our bridge is the process's logger, decided once (a Rust host may have
        // installed its own first).
        static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if !*INSTALLED.get_or_init(|| log::set_logger(&BRIDGE).is_ok()) {
            return Err(Fail::invalid("another logger is already installed in this process"));
        }
        let old = {
            let mut s = SINK.write();
            std::mem::replace(
                &mut *s,
                callback.map(|cb| Sink { cb, user_data: user_data as usize, finalizer }),
            )
        };
        // The old sink's finalizer runs outside the lock.
        drop(old);
        log::set_max_level(filter);
        Ok(())
    })
}
