//! Control-plane errors built from DPDK's negative errno / `rte_errno`, with the operation
//! named. The data plane never sees these: a packet's fate is a counter, not an error.

use std::ffi::CStr;
use std::fmt;

use super::ffi;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkError {
    /// The DPDK call and its subject, e.g. `rte_eth_dev_configure(port0)`.
    pub op: String,
    /// Positive errno value (0 when DPDK gave none).
    pub errno: i32,
}

pub type Result<T> = std::result::Result<T, DpdkError>;

impl DpdkError {
    /// From a DPDK return value that is `-errno` on failure.
    pub fn from_ret(op: impl Into<String>, ret: i32) -> Self {
        DpdkError { op: op.into(), errno: ret.saturating_abs() }
    }

    /// From the calling thread's `rte_errno` (for calls that return NULL or -1).
    pub fn from_rte_errno(op: impl Into<String>) -> Self {
        DpdkError { op: op.into(), errno: rte_errno() }
    }
}

/// The calling thread's `rte_errno` (a per-lcore TLS variable, read through the C shim).
pub fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local int; no preconditions.
    unsafe { ffi::pmds_errno() }
}

/// `rte_strerror`: DPDK's own codes (above `__ELASTERROR`) and libc's.
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
    // buffer that stays valid until the next call on this thread; we copy it at once.
    unsafe {
        let p = ffi::rte_strerror(errno);
        if p.is_null() {
            return format!("errno {errno}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.errno == 0 {
            write!(f, "{} failed", self.op)
        } else {
            write!(f, "{} failed: {} (errno {})", self.op, strerror(self.errno), self.errno)
        }
    }
}

impl std::error::Error for DpdkError {}
