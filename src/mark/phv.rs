//! The perfect hash vector: one bit per PHF slot, persisted as raw
//! little-endian u64 words in fixed-size chunks.

use bitvec::prelude::*;

use crate::error::{Error, Result};
use crate::format::durable::{open_envelope, seal_envelope};
use crate::format::magic;

/// Words per persisted chunk (128 bytes). PHF slots are random with
/// respect to container order, so clearing one container's worth of
/// segments (about 256) touches about one chunk per segment: small chunks
/// keep each commit small (about 40 KB per target container here, against
/// 135 KB with 64-word chunks), at the price of more keys (12.5 MB of PHV at
/// 100M slots is 98K chunks, loaded in one scan at resume).
pub(crate) const CHUNK_WORDS: usize = 16;
pub(crate) const PHV_VERSION: u16 = 1;

#[derive(Clone)]
pub(crate) struct Phv {
    bits: BitVec<u64, Lsb0>,
    /// One bit per chunk changed since the last commit. (A set here was
    /// measured at 52 ns per `set`; a bit costs a few.)
    dirty: BitVec<u64, Lsb0>,
}

impl Phv {
    pub(crate) fn zeroed(slots: u64) -> Phv {
        let chunks = (slots as usize).div_ceil(64).div_ceil(CHUNK_WORDS);
        Phv { bits: bitvec![u64, Lsb0; 0; slots as usize], dirty: bitvec![u64, Lsb0; 0; chunks] }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.bits.len() as u64
    }

    pub(crate) fn get(&self, slot: u64) -> bool {
        self.bits.get(slot as usize).is_some_and(|b| *b)
    }

    pub(crate) fn set(&mut self, slot: u64) {
        if let Some(mut b) = self.bits.get_mut(slot as usize) {
            *b = true;
        }
        self.mark_dirty(slot);
    }

    fn mark_dirty(&mut self, slot: u64) {
        if let Some(mut d) = self.dirty.get_mut(slot as usize / (64 * CHUNK_WORDS)) {
            *d = true;
        }
    }

    pub(crate) fn clear(&mut self, slot: u64) {
        if let Some(mut b) = self.bits.get_mut(slot as usize) {
            *b = false;
        }
        self.mark_dirty(slot);
    }

    pub(crate) fn count_ones(&self) -> u64 {
        self.bits.count_ones() as u64
    }

    pub(crate) fn chunk_count(&self) -> usize {
        self.bits.as_raw_slice().len().div_ceil(CHUNK_WORDS)
    }

    /// Marks every chunk dirty, so the next commit writes the whole vector.
    pub(crate) fn mark_all_dirty(&mut self) {
        self.dirty.fill(true);
    }

    /// Encoded dirty chunks (index, bytes); clears the dirty set.
    pub(crate) fn take_dirty(&mut self) -> Vec<(usize, Vec<u8>)> {
        let out = self.dirty.iter_ones().map(|i| (i, self.encode_chunk(i))).collect();
        self.dirty.fill(false);
        out
    }

    fn encode_chunk(&self, i: usize) -> Vec<u8> {
        let words = self.bits.as_raw_slice();
        let end = ((i + 1) * CHUNK_WORDS).min(words.len());
        let mut payload = Vec::with_capacity(12 + CHUNK_WORDS * 8);
        payload.extend_from_slice(&(i as u64).to_le_bytes());
        for w in &words[i * CHUNK_WORDS..end] {
            payload.extend_from_slice(&w.to_le_bytes());
        }
        seal_envelope(magic::PHV, PHV_VERSION, &payload)
    }

    /// Loads chunk `i` from its encoded bytes.
    pub(crate) fn load_chunk(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        let what = || format!("PHV chunk {i}");
        let payload = open_envelope(magic::PHV, PHV_VERSION, bytes, &what)?;
        let words = self.bits.as_raw_slice().len();
        let start = i * CHUNK_WORDS;
        let expected = words.saturating_sub(start).min(CHUNK_WORDS);
        if i >= self.chunk_count() || payload.len() != 8 + expected * 8 {
            return Err(Error::corrupt_record(what(), format!("{} payload bytes, expected {}", payload.len(), 8 + expected * 8)));
        }
        if u64::from_le_bytes(payload[..8].try_into().unwrap_or_default()) != i as u64 {
            return Err(Error::corrupt_record(what(), "chunk holds another index"));
        }
        let raw = self.bits.as_raw_mut_slice();
        for (k, w) in payload[8..].chunks_exact(8).enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            raw[start + k] = u64::from_le_bytes(a);
        }
        Ok(())
    }

    /// Iterates set slots.
    pub(crate) fn ones(&self) -> impl Iterator<Item = u64> + '_ {
        self.bits.iter_ones().map(|i| i as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_roundtrip_and_flips_are_detected() {
        let bits = 64 * CHUNK_WORDS as u64;
        let mut p = Phv::zeroed(bits * 2 + 5);
        for s in [0, 7, bits, 2 * bits - 1, 2 * bits + 4] {
            p.set(s);
        }
        let chunks = p.take_dirty();
        assert_eq!(chunks.len(), 3);
        let mut q = Phv::zeroed(p.len());
        for (i, b) in &chunks {
            q.load_chunk(*i, b).unwrap();
        }
        assert_eq!(q.ones().collect::<Vec<_>>(), vec![0, 7, bits, 2 * bits - 1, 2 * bits + 4]);
        let (i, b) = &chunks[1];
        for bit in 0..b.len() * 8 {
            let mut bad = b.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(q.load_chunk(*i, &bad).is_err(), "flip {bit} undetected");
        }
    }
}
