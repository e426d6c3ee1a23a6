//! The panic boundary and the thread-local last error of the C ABI.

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::{loradock_status, of_error};
use crate::error::Error;

thread_local! {
    static LAST: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A failure at the boundary: its status and message.
pub(crate) struct Fail(pub loradock_status, pub String);

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail(of_error(&e), e.to_string())
    }
}

impl Fail {
    pub(crate) fn null(what: &str) -> Fail {
        Fail(loradock_status::LORADOCK_STATUS_NULL_ARGUMENT, format!("{what} is NULL"))
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Fail {
        Fail(loradock_status::LORADOCK_STATUS_INVALID_ARGUMENT, msg.into())
    }
}

/// Record `msg` as this thread's last error.
pub(crate) fn set_last(msg: &str) {
    LAST.with(|l| {
        let mut l = l.borrow_mut();
        l.clear();
        l.push_str(msg);
    });
}

/// This thread's last error message.
pub(crate) fn last() -> String {
    LAST.with(|l| l.borrow().clone())
}

/// Run a C entry point's body: a failure sets the last error and returns its status; a
/// panic becomes `LORADOCK_STATUS_PANIC` (never unwinds into C).
pub(crate) fn guard(name: &str, f: impl FnOnce() -> Result<(), Fail>) -> loradock_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => loradock_status::LORADOCK_STATUS_OK,
        Ok(Err(Fail(s, msg))) => {
            set_last(&msg);
            s
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last(&format!("{name}: internal panic: {what}"));
            loradock_status::LORADOCK_STATUS_PANIC
        }
    }
}

/// Borrow a required C string as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| {
        Fail(loradock_status::LORADOCK_STATUS_INVALID_UTF8, format!("{what} is not valid UTF-8"))
    })
}

/// Borrow an optional C string (NULL = `None`).
///
/// # Safety
/// As [`str_arg`].
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { str_arg(p, what) }.map(Some)
}

/// Borrow an array of `n` C strings (NULL array only when `n` is 0).
///
/// # Safety
/// `p` points to `n` pointers, each as in [`str_arg`].
pub(crate) unsafe fn str_array<'a>(
    p: *const *const c_char,
    n: usize,
    what: &str,
) -> Result<Vec<&'a str>, Fail> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: `p` points to `n` readable pointers per the contract.
    let ptrs = unsafe { std::slice::from_raw_parts(p, n) };
    ptrs.iter()
        .enumerate()
        // SAFETY: each element follows `str_arg`'s contract.
        .map(|(i, s)| unsafe { str_arg(*s, &format!("{what}[{i}]")) })
        .collect()
}

/// Check a params struct's declared size against the size of its first version.
pub(crate) fn check_size(declared: u32, first_version: usize, what: &str) -> Result<(), Fail> {
    if (declared as usize) < first_version {
        return Err(Fail(
            loradock_status::LORADOCK_STATUS_STRUCT_SIZE,
            format!(
                "{what}.struct_size is {declared}, at least {first_version} is required (use {what}_default)"
            ),
        ));
    }
    Ok(())
}
