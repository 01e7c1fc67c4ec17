//! Fuzzes every persisted-record decoder: context records, tier records,
//! namespace entries, PHV chunks, PHF blobs, recipe segments.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tierseed::fuzzing::records(data);
});
