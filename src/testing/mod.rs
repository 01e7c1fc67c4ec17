//! Doors for tests, benchmarks and fuzzers: named crash and hold points
//! (compiled to nothing without the `crash-points` feature), and, behind
//! `test-util`, synthetic data, the benchmarks' and fuzzers' doors into
//! internals. Not a stable API.

#[cfg(feature = "test-util")]
pub mod bench_api;
#[cfg(feature = "test-util")]
pub mod conformance;
pub(crate) mod crashpoint;
#[cfg(feature = "test-util")]
pub mod fuzzing;
#[cfg(feature = "test-util")]
pub mod synth;
