//! Doors for tests, benchmarks and fuzzers: named crash and hold points
//! (compiled to nothing without the `crash-points` feature), and, behind
//! `test-util`, the conformance kit and the benchmarks' and fuzzers' doors
//! into internals, and behind `synth` (which `test-util` and `seed` turn
//! on) synthetic data. Not a stable API.

#[cfg(feature = "test-util")]
pub mod bench_api;
#[cfg(feature = "test-util")]
pub mod conformance;
pub(crate) mod crashpoint;
#[cfg(feature = "test-util")]
pub mod fuzzing;
#[cfg(feature = "synth")]
pub mod synth;
