//! Commands under `/pmdswitch/` in DPDK's telemetry library, so that Debian's
//! `dpdk-telemetry.py -f PREFIX` (or any client of the telemetry socket) can read
//! pmdswitch's ports, workers and drop causes.
//!
//! The library's callbacks carry only the command name, so handlers live in a
//! process-wide table keyed by it. They run on DPDK's telemetry thread and only read
//! counters. DPDK 22.11 dictionaries hold scalars or arrays (no nested dictionaries) and
//! keys of letters, digits, `_` and `/`: hence one command per object, as ethdev does
//! (`/ethdev/list`, `/ethdev/stats,ID`).

use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use super::error::{DpdkError, Result};
use super::ffi;

/// A scalar in a telemetry dictionary.
pub enum Val {
    U64(u64),
    Str(String),
}

/// What a command answers.
pub enum Reply {
    Dict(Vec<(String, Val)>),
    Strings(Vec<String>),
    U64s(Vec<u64>),
    /// Bad parameters: the client sees `null`.
    Invalid,
}

type Handler = Box<dyn Fn(&str) -> Reply + Send + Sync>;

static HANDLERS: Mutex<Vec<(String, Handler)>> = Mutex::new(Vec::new());

/// Keys must be letters, digits, `_` or `/` (22.11 rejects the rest).
pub fn key(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '/' { c } else { '_' }).collect()
}

/// Registers `cmd` (e.g. `/pmdswitch/ports`) with the telemetry library, or replaces
/// its handler if registered before.
///
/// # Errors
/// `rte_telemetry_register_cmd` failed (bad name, table full).
pub fn register(cmd: &str, help: &str, h: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Result<()> {
    let mut table = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(slot) = table.iter_mut().find(|(c, _)| c == cmd) {
        slot.1 = Box::new(h);
        return Ok(());
    }
    let (c, hp) = (CString::new(cmd), CString::new(help));
    let (Ok(c), Ok(hp)) = (c, hp) else { return Err(DpdkError::from_ret("telemetry command name", -libc::EINVAL)) };
    // SAFETY: both strings are valid for the call (the library copies them); dispatch is
    // a plain extern "C" fn that lives for the program.
    let ret = unsafe { ffi::rte_telemetry_register_cmd(c.as_ptr(), Some(dispatch), hp.as_ptr()) };
    if ret < 0 {
        return Err(DpdkError::from_ret(format!("rte_telemetry_register_cmd({cmd})"), ret));
    }
    table.push((cmd.to_owned(), Box::new(h)));
    Ok(())
}

/// Drops every handler (and what it captured); the commands then answer `null`. Call
/// before the objects the handlers read go away.
pub fn clear() {
    HANDLERS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

extern "C" fn dispatch(cmd: *const c_char, params: *const c_char, d: *mut ffi::rte_tel_data) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the library passes NUL-terminated strings (params may be NULL) and a
        // valid data object, all alive for this call.
        let cmd = unsafe { CStr::from_ptr(cmd) }.to_string_lossy().into_owned();
        let params = if params.is_null() {
            String::new()
        } else {
            // SAFETY: non-NULL params is a NUL-terminated string alive for this call.
            unsafe { CStr::from_ptr(params) }.to_string_lossy().into_owned()
        };
        let reply = {
            let table = HANDLERS.lock().unwrap_or_else(|e| e.into_inner());
            match table.iter().find(|(c, _)| *c == cmd) {
                Some((_, h)) => h(params.trim()),
                None => Reply::Invalid,
            }
        };
        fill(d, reply)
    }))
    .unwrap_or(-1)
}

fn fill(d: *mut ffi::rte_tel_data, reply: Reply) -> c_int {
    // SAFETY: d is the library's data object for this callback; names and values are
    // copied by the library before each call returns.
    unsafe {
        match reply {
            Reply::Invalid => return -libc::EINVAL,
            Reply::Dict(kv) => {
                ffi::rte_tel_data_start_dict(d);
                for (k, v) in kv {
                    let Ok(k) = CString::new(key(&k)) else { continue };
                    match v {
                        Val::U64(n) => {
                            ffi::rte_tel_data_add_dict_u64(d, k.as_ptr(), n);
                        }
                        Val::Str(s) => {
                            if let Ok(s) = CString::new(s) {
                                ffi::rte_tel_data_add_dict_string(d, k.as_ptr(), s.as_ptr());
                            }
                        }
                    }
                }
            }
            Reply::Strings(v) => {
                ffi::rte_tel_data_start_array(d, ffi::rte_tel_value_type_RTE_TEL_STRING_VAL);
                for s in v {
                    if let Ok(s) = CString::new(s) {
                        ffi::rte_tel_data_add_array_string(d, s.as_ptr());
                    }
                }
            }
            Reply::U64s(v) => {
                ffi::rte_tel_data_start_array(d, ffi::rte_tel_value_type_RTE_TEL_U64_VAL);
                for n in v {
                    ffi::rte_tel_data_add_array_u64(d, n);
                }
            }
        }
    }
    0
}
