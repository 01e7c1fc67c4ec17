//! Entry points for the fuzzers in `fuzz/` (hidden from the docs; not a
//! stable API). Each must never panic, whatever the input.

use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::tree::Recipe;
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;

/// Decodes `data` as a container (whole-file decoder and metadata parser).
pub fn container(data: &[u8]) -> bool {
    crate::format::container::decode_container(data, ContainerId(0)).is_ok()
}

/// Decodes `data` as every record type the project persists: context
/// records, tier records (the reclamation cursor and job holds included),
/// namespace entries, PHV chunks, PHF blobs and recipe segments. Returns how many decoders accepted it.
pub fn records(data: &[u8]) -> usize {
    let mut ok = crate::engine::context::fuzz_decode(data) + crate::tier::indexed::fuzz_decode(data);
    let mut phv = Phv::zeroed(64 * 64 * 3 + 7);
    for i in 0..3 {
        ok += usize::from(phv.load_chunk(i, data).is_ok());
    }
    ok += usize::from(Phf::decode(data, "fuzz input", 0).is_ok());
    let fp = Fingerprint::of(data);
    for level in 1..=3 {
        ok += usize::from(Recipe::decode(data, &fp, level).is_ok());
    }
    ok
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::format::durable::seal_envelope;

    proptest! {
        // The fuzz targets' twins, run by `cargo test`.
        #[test]
        fn record_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            records(&data);
        }

        #[test]
        fn record_decoders_never_panic_on_valid_envelopes(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            magic in 0usize..9,
            version in 1u16..4,
        ) {
            // A valid envelope around garbage reaches the postcard
            // decoders, at every version some record has.
            use crate::format::magic as m;
            let m = [m::CONTEXT, m::TIER_META, m::NAMESPACE, m::PHV, m::PHF, m::STORE, m::JOURNAL, m::CHECKPOINT, m::KEYS][magic];
            records(&seal_envelope(m, version, &payload));
        }

        #[test]
        fn container_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            container(&data);
        }
    }
}
