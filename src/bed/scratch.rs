//! A fresh directory for one test's or one benchmark's sockets and outputs, with names
//! (tags, EAL file prefixes) unique to it, so that runs can go in parallel and after a
//! crashed one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A directory under /tmp, removed on drop.
pub struct Scratch {
    pub dir: PathBuf,
    pub tag: String,
}

impl Scratch {
    /// # Panics
    /// When /tmp is not writable (a test bed without it cannot run).
    pub fn new(name: &str) -> Scratch {
        let tag = format!("{name}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let dir = PathBuf::from("/tmp").join(format!("pmds-t-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory under /tmp");
        Scratch { dir, tag }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    pub fn sock(&self, f: &str) -> String {
        self.path(f).to_string_lossy().into_owned()
    }

    /// A unique EAL file prefix.
    pub fn prefix(&self, who: &str) -> String {
        format!("pmdst-{who}-{}", self.tag)
    }

    /// A number unique in this process (for file names).
    pub fn seq() -> usize {
        SEQ.fetch_add(1, Ordering::SeqCst)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
