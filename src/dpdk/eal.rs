//! EAL: initialisation, cleanup, lcores and DPDK's log stream.

use std::ffi::{c_char, CString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::FromRawFd;

use super::error::{DpdkError, Result};
use super::ffi;

/// Proof that `rte_eal_init` succeeded in this process: only [`Eal::init`] makes one
/// (the field is private), so a function that takes it says in its signature that it
/// needs an initialised EAL, and cannot be called before. Copy and zero-sized: it goes
/// where the DPDK objects are made (pools, ports, vhost sockets).
#[derive(Debug, Clone, Copy)]
pub struct Initialized(());

/// The initialised Environment Abstraction Layer. Dropping it calls `rte_eal_cleanup`, so
/// every DPDK object must be dropped first (declare the `Eal` before them).
///
/// `rte_eal_init` works once per process: a second call fails with EALREADY even after
/// cleanup, and a failed call leaves state behind, so a process that failed must exit.
pub struct Eal {
    /// The runtime directory (`/var/run/dpdk/PREFIX`), which the EAL creates even with
    /// `--in-memory` and does not remove: we do, in Drop.
    runtime_dir: Option<std::path::PathBuf>,
}

impl Eal {
    /// `rte_eal_init` with `args` (argv[0] included). Consumes the strings: DPDK keeps
    /// pointers into argv for the life of the process, so they are leaked on purpose.
    ///
    /// # Errors
    /// The EAL's `rte_errno` (0 when EAL gave no reason, e.g. a file-prefix in use).
    pub fn init(args: &[String]) -> Result<Eal> {
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| CString::new(a.as_str()).unwrap_or_default().into_raw()).collect();
        argv.push(std::ptr::null_mut());
        let argc = args.len() as i32;
        let argv = Box::leak(argv.into_boxed_slice());
        // SAFETY: argv holds argc valid NUL-terminated strings plus a NULL, leaked so they
        // outlive the EAL, which may keep pointers into them.
        let ret = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_rte_errno("rte_eal_init"));
        }
        // SAFETY: after a successful init this returns a static NUL-terminated string.
        let dir = unsafe { std::ffi::CStr::from_ptr(ffi::rte_eal_get_runtime_dir()) };
        let dir = dir.to_string_lossy().into_owned();
        Ok(Eal { runtime_dir: (!dir.is_empty()).then(|| dir.into()) })
    }

    /// The token that functions needing an initialised EAL take.
    pub fn token(&self) -> Initialized {
        Initialized(())
    }

    /// The CPU the EAL main lcore runs on.
    pub fn main_lcore_cpu(&self) -> u32 {
        // SAFETY: EAL is initialised (self exists); both calls only read EAL config.
        unsafe { ffi::rte_lcore_to_cpu_id(ffi::rte_get_main_lcore() as i32) as u32 }
    }

    /// TSC ticks per second, as calibrated by the EAL.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: reads a value set during EAL init.
        unsafe { ffi::rte_get_tsc_hz() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: every DPDK object created after init has been dropped (field/declaration
        // order guarantees it) and no registered thread is still running.
        unsafe {
            ffi::rte_eal_cleanup();
        }
        // Leave nothing behind: the directory belongs to our file prefix, which no other
        // live process can share (the EAL refuses a prefix in use).
        if let Some(d) = &self.runtime_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Registers the calling (non-EAL) thread as an lcore so it gets a mempool cache and an
/// `rte_lcore_id()`; without it every mbuf alloc/free goes to the shared ring.
///
/// # Errors
/// When all RTE_MAX_LCORE ids are taken.
pub fn thread_register() -> Result<u32> {
    // SAFETY: no preconditions beyond EAL init, which the caller's Eal guarantees.
    let ret = unsafe { ffi::rte_thread_register() };
    if ret < 0 {
        return Err(DpdkError::from_rte_errno("rte_thread_register"));
    }
    // SAFETY: reads this thread's TLS lcore id.
    Ok(unsafe { ffi::pmds_lcore_id() })
}

/// Releases the lcore id taken by [`thread_register`].
pub fn thread_unregister() {
    // SAFETY: safe to call on a registered or unregistered thread.
    unsafe { ffi::rte_thread_unregister() }
}

/// Redirects the process's stdout and stderr (fds 1 and 2) into an anonymous temporary
/// file while it lives. The EAL's argument parser prints with getopt and `printf`
/// (usage text, "unrecognized option"), which no log stream catches; call this around
/// `rte_eal_init` only, while no other thread writes.
pub struct QuietStdio {
    saved: [i32; 2],
    tmp: File,
}

impl QuietStdio {
    pub fn start() -> Option<QuietStdio> {
        let tmp = tempfile_anon()?;
        // SAFETY: plain fd syscalls on fds we own or on 1/2; the saved copies restore them.
        unsafe {
            libc::fflush(std::ptr::null_mut());
            let saved = [libc::dup(1), libc::dup(2)];
            if saved[0] < 0 || saved[1] < 0 {
                return None;
            }
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tmp);
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            Some(QuietStdio { saved, tmp })
        }
    }

    /// Restores fds 1 and 2 and returns what was written meanwhile.
    pub fn finish(mut self) -> String {
        self.restore();
        let mut text = String::new();
        let _ = self.tmp.seek(SeekFrom::Start(0));
        let _ = self.tmp.read_to_string(&mut text);
        text
    }

    fn restore(&mut self) {
        if self.saved[0] < 0 {
            return;
        }
        // SAFETY: the saved fds are valid dups of the original 1 and 2.
        unsafe {
            libc::fflush(std::ptr::null_mut());
            libc::dup2(self.saved[0], 1);
            libc::dup2(self.saved[1], 2);
            libc::close(self.saved[0]);
            libc::close(self.saved[1]);
        }
        self.saved = [-1, -1];
    }
}

impl Drop for QuietStdio {
    fn drop(&mut self) {
        self.restore();
    }
}

fn tempfile_anon() -> Option<File> {
    // SAFETY: tmpfile returns an owned FILE* or NULL; we take a dup of its fd and close it.
    unsafe {
        let f = libc::tmpfile();
        if f.is_null() {
            return None;
        }
        let fd = libc::dup(libc::fileno(f));
        libc::fclose(f);
        (fd >= 0).then(|| File::from_raw_fd(fd))
    }
}

/// Captures DPDK's log output in an anonymous temporary file while it lives, so start-up
/// errors reach the user as one line of ours instead of screens of EAL chatter.
/// `finish` returns what was logged and restores DPDK's default stream.
pub struct LogCapture {
    file: *mut libc::FILE,
}

impl LogCapture {
    pub fn start() -> Option<LogCapture> {
        // SAFETY: tmpfile returns an owned FILE* or NULL; rte_openlog_stream only stores it
        // (valid before EAL init) and we keep it open until finish() swaps it out.
        unsafe {
            let file = libc::tmpfile();
            if file.is_null() {
                return None;
            }
            ffi::rte_openlog_stream(file.cast());
            Some(LogCapture { file })
        }
    }

    /// Stops capturing (back to DPDK's default stream) and returns the captured text.
    pub fn finish(self) -> String {
        let mut text = String::new();
        // SAFETY: self.file is the FILE* we opened; DPDK stops using it once the stream is
        // reset to NULL (its default), and we close it exactly once here.
        unsafe {
            ffi::rte_openlog_stream(std::ptr::null_mut());
            libc::fflush(self.file);
            let fd = libc::dup(libc::fileno(self.file));
            libc::fclose(self.file);
            if fd >= 0 {
                let mut f = File::from_raw_fd(fd);
                let _ = f.seek(SeekFrom::Start(0));
                let _ = f.read_to_string(&mut text);
            }
        }
        std::mem::forget(self);
        text
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        // SAFETY: as in finish(): reset DPDK's stream before closing the file.
        unsafe {
            ffi::rte_openlog_stream(std::ptr::null_mut());
            libc::fclose(self.file);
        }
    }
}
