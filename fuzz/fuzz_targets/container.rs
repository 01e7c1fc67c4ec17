//! Fuzzes the container decoder (header, table, data checks).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tierseed::fuzzing::container(data);
});
