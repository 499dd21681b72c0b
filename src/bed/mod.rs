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
