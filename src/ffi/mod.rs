//! The C ABI: the only `extern "C"` code of loradock. Every function is prefixed
//! `loradock_`, checks every pointer, catches panics (`LORADOCK_STATUS_PANIC`), returns a
//! [`status::loradock_status`] when it can fail, writes outputs only on success and leaves
//! the reason of a failure in a thread-local last error
//! (`loradock_last_error_message`), set only by failing calls. `include/loradock.h` is
//! generated from this module by cbindgen (see `cbindgen.toml` and the header test).

#![allow(non_camel_case_types)]

pub mod guard;
pub mod log;
pub mod runtime;
pub mod status;
pub mod stream;

use std::ffi::c_char;

use guard::{guard, last};
use status::loradock_status;

/// The library version, `"MAJOR.MINOR.PATCH"` (static string). Compare with the
/// `LORADOCK_VERSION_*` macros of the header the host was built with.
#[no_mangle]
pub extern "C" fn loradock_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The name of a status value (`"LORADOCK_STATUS_BUSY"`…), or `"LORADOCK_STATUS_UNKNOWN"`
/// for a value that is not one. A static string; never NULL.
#[no_mangle]
pub extern "C" fn loradock_status_str(status: i32) -> *const c_char {
    match loradock_status::from_raw(status) {
        Some(s) => s.name().as_ptr(),
        None => c"LORADOCK_STATUS_UNKNOWN".as_ptr(),
    }
}

/// Copy this thread's last error message (from the last failing loradock call on this
/// thread; empty when none failed) into `buf` of `len` bytes, NUL-terminated and truncated
/// to fit; `*written` (may be NULL) receives the full message length without the NUL.
/// With `buf` NULL and `len` 0 it only reports the length.
///
/// Statuses: `OK`; `BUFFER_TOO_SMALL` when truncated (what fit was written);
/// `NULL_ARGUMENT` when `buf` is NULL but `len` is not 0. Does not change the last error.
///
/// # Safety
/// `buf` is NULL or points to `len` writable bytes; `written` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn loradock_last_error_message(
    buf: *mut c_char,
    len: usize,
    written: *mut usize,
) -> loradock_status {
    let msg = last();
    let r = std::panic::catch_unwind(|| {
        if !written.is_null() {
            // SAFETY: writable per the contract.
            unsafe { written.write(msg.len()) };
        }
        if len == 0 {
            return if msg.is_empty() || buf.is_null() {
                loradock_status::LORADOCK_STATUS_OK
            } else {
                loradock_status::LORADOCK_STATUS_BUFFER_TOO_SMALL
            };
        }
        if buf.is_null() {
            return loradock_status::LORADOCK_STATUS_NULL_ARGUMENT;
        }
        let n = msg.len().min(len - 1);
        // SAFETY: `len` bytes are writable at `buf`; `n + 1 <= len`.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
            buf.add(n).write(0);
        }
        if n < msg.len() {
            loradock_status::LORADOCK_STATUS_BUFFER_TOO_SMALL
        } else {
            loradock_status::LORADOCK_STATUS_OK
        }
    });
    r.unwrap_or(loradock_status::LORADOCK_STATUS_PANIC)
}

/// A test hook: panics inside the guard, so hosts can check that a Rust panic becomes
/// `LORADOCK_STATUS_PANIC` and a last error rather than an abort.
#[no_mangle]
pub extern "C" fn loradock_debug_panic() -> loradock_status {
    guard("loradock_debug_panic", || panic!("requested by loradock_debug_panic"))
}
