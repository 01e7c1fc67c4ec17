//! Fingerprints and container ids.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The BLAKE3-256 hash of a segment's bytes; it names the segment.
///
/// With serde it is a lowercase hex string in human-readable formats
/// (JSON) and the 32 raw bytes in binary ones.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

/// Byte order (a fingerprint's order is its bytes' lexicographic order,
/// which RocksDB's index and every sorted file use), compared eight bytes
/// at a time: the derived order called `memcmp` for every comparison, 10 %
/// of Copy's samples at 11M segments, where each container's keys are
/// sorted before their lookups.
impl Ord for Fingerprint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.be_words().cmp(&other.be_words())
    }
}

impl PartialOrd for Fingerprint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Hashes the first eight bytes only (the derived hash fed all 32 and a
/// length prefix). Equal fingerprints have equal first bytes, so this
/// agrees with `Eq`; the bytes are a BLAKE3 output, and sets keyed by
/// fingerprints use a randomly keyed hasher, so flooding one bucket would
/// need many fingerprints sharing 64 bits: about 2^60 hashes for sixteen.
/// Nothing persisted depends on this hash (the PHF hashes `PhfKey`).
impl Hash for Fingerprint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.be_words()[0]);
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            s.serialize_newtype_struct("Fingerprint", &self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw([u8; 32]);
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(|_| serde::de::Error::custom(format!("{s:?} is not a 64-digit hex fingerprint")))
        } else {
            Raw::deserialize(d).map(|r| Fingerprint(r.0))
        }
    }
}

impl Fingerprint {
    /// Fingerprints `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Fingerprint(*blake3::hash(bytes).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a fingerprint from a 32-byte slice; `None` if the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Fingerprint)
    }

    /// The bytes as four big-endian words: their order is the bytes' order.
    fn be_words(&self) -> [u64; 4] {
        let w = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.0[i * 8..i * 8 + 8]);
            u64::from_be_bytes(b)
        };
        [w(0), w(1), w(2), w(3)]
    }

    /// The key the perfect hash function is built over: see [`PhfKey`].
    pub(crate) fn phf_key(&self) -> PhfKey {
        let mut k = [0u8; 16];
        k.copy_from_slice(&self.0[..16]);
        PhfKey(k)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The error returned when parsing a [`Fingerprint`] from text fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 64 hexadecimal digits")]
pub struct ParseFingerprintError;

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return Err(ParseFingerprintError);
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0]).ok_or(ParseFingerprintError)?;
            let lo = hex_val(pair[1]).ok_or(ParseFingerprintError)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Fingerprint(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The key the PHF is built over: the first 16 bytes of a fingerprint.
///
/// `Hash` for `[u8; 32]` feeds a native-`usize` length prefix to the hasher,
/// so a PHF keyed by it would mean different things on 32- and 64-bit
/// platforms. This newtype writes exactly 16 bytes and nothing else, so a
/// persisted PHF is portable. 128 bits keep accidental collisions
/// negligible (a collision makes the build fail cleanly, never silently).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct PhfKey(pub(crate) [u8; 16]);

impl Hash for PhfKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

/// Identifies a container within one tier. Ids are assigned in increasing
/// order as containers are sealed, so id order is write order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Debug)]
pub struct ContainerId(pub u64);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip_and_rejects_bad_input() {
        let fp = Fingerprint::of(b"hello");
        let s = fp.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(s.to_uppercase().parse::<Fingerprint>(), Ok(fp));
        assert!(s[..63].parse::<Fingerprint>().is_err());
        assert!(format!("{}g", &s[..63]).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn serde_is_hex_in_text_and_raw_bytes_in_binary_formats() {
        let fp = Fingerprint::of(b"hello");
        // Binary: exactly the 32 bytes, as the first release's records held them.
        let bin = postcard::to_stdvec(&fp).expect("encodes");
        assert_eq!(bin, fp.0.to_vec());
        assert_eq!(postcard::from_bytes::<Fingerprint>(&bin).expect("decodes"), fp);
        // Text: the hex string.
        let json = serde_json::to_string(&fp).expect("encodes");
        assert_eq!(json, format!("\"{fp}\""));
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).expect("decodes"), fp);
        assert!(serde_json::from_str::<Fingerprint>("\"zz\"").is_err());
    }

    proptest::proptest! {
        /// The word-wise order is the bytes' lexicographic order (RocksDB's
        /// and every sorted file's), ties included.
        #[test]
        fn order_is_the_bytes_order(a in proptest::array::uniform32(0u8..4), b in proptest::array::uniform32(0u8..4)) {
            proptest::prop_assert_eq!(Fingerprint(a).cmp(&Fingerprint(b)), a.cmp(&b));
            proptest::prop_assert_eq!(Fingerprint(a) == Fingerprint(b), a == b);
        }
    }

    #[test]
    fn phf_key_hash_writes_exactly_sixteen_bytes() {
        // A hasher that records what it is fed: the key must feed its 16
        // bytes and no length prefix.
        #[derive(Default)]
        struct Rec(Vec<u8>);
        impl Hasher for Rec {
            fn finish(&self) -> u64 {
                0
            }
            fn write(&mut self, bytes: &[u8]) {
                self.0.extend_from_slice(bytes);
            }
        }
        let fp = Fingerprint::of(b"x");
        let mut r = Rec::default();
        fp.phf_key().hash(&mut r);
        assert_eq!(r.0, fp.0[..16].to_vec());
    }
}
