//! The test bed: what `pmdswitch bench`, the benchmarks and the integration tests use to
//! stand a device under test and its peers up on one machine.
