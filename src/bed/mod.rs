//! The test bed: what `pmdswitch bench`, the benchmarks and the integration tests use to
//! stand a device under test and its peers up on one machine.

pub mod counters;
pub mod duts;
pub mod probe;
pub mod proc;
pub mod routes;
pub mod scratch;
pub mod switch;
pub mod testpmd;
pub mod vm;

/// Where the test bed's assets are (`scripts/vm.sh`, the guest tools): `PMDSWITCH_SHARE`
/// when set, else `/usr/share/pmdswitch` when a package installed them there, else the
/// build tree this binary came from (a checkout: tests and `cargo run`). So the shipped
/// binary works from any directory, and never depends on a build tree that is gone.
pub fn share_dir() -> std::path::PathBuf {
    share_dir_from(std::env::var_os("PMDSWITCH_SHARE"), std::path::Path::new("/usr/share/pmdswitch"))
}

fn share_dir_from(env: Option<std::ffi::OsString>, installed: &std::path::Path) -> std::path::PathBuf {
    if let Some(d) = env.filter(|d| !d.is_empty()) {
        return d.into();
    }
    if installed.join("scripts/vm.sh").exists() {
        return installed.to_path_buf();
    }
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The median of the finite values (None if there are none).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn share_dir_prefers_the_variable_then_the_install_then_the_tree() {
        assert_eq!(share_dir_from(Some("/opt/x".into()), Path::new("/nonexistent")), Path::new("/opt/x"));
        // An empty variable is unset.
        assert_eq!(share_dir_from(Some("".into()), Path::new("/nonexistent")), Path::new(env!("CARGO_MANIFEST_DIR")));
        // The checkout itself looks like an install (it has scripts/vm.sh).
        let tree = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(share_dir_from(None, tree), tree);
    }
}
