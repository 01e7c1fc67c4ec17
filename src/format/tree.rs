//! Segment trees: the recipe segments that describe a file.
//!
//! A recipe at level `L >= 1` lists its children (level `L - 1`) as
//! (fingerprint, logical length) pairs. Every file's root is a recipe, so an
//! empty file is a level-1 recipe with no children and a one-chunk file is
//! a level-1 recipe with one child: one shape for every file.

use crate::error::{Error, Result, TierError};
use crate::format::fingerprint::Fingerprint;
use crate::format::magic;

const RECIPE_VERSION: u8 = 1;
const RECIPE_HEADER: usize = 9;
const CHILD_LEN: usize = 40;
/// The most children a recipe may have, whatever the configuration; it bounds
/// a recipe segment to about 160 KiB.
pub(crate) const MAX_FANOUT: usize = 4096;
/// The tallest tree accepted from disk.
pub(crate) const MAX_HEIGHT: u8 = 16;

/// A child reference inside a recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Child {
    pub(crate) fingerprint: Fingerprint,
    /// Logical bytes under this child.
    pub(crate) len: u64,
}

/// A decoded recipe segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Recipe {
    pub(crate) level: u8,
    pub(crate) children: Vec<Child>,
}

impl Recipe {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECIPE_HEADER + CHILD_LEN * self.children.len());
        out.extend_from_slice(magic::RECIPE);
        out.push(RECIPE_VERSION);
        out.push(self.level);
        out.extend_from_slice(&(self.children.len() as u32).to_le_bytes());
        for c in &self.children {
            out.extend_from_slice(&c.fingerprint.0);
            out.extend_from_slice(&c.len.to_le_bytes());
        }
        out
    }

    /// Decodes a recipe whose bytes were already verified against `fp`.
    /// The expected level comes from the parent (or the namespace entry), so
    /// a recipe that claims another level is rejected as corrupt.
    pub(crate) fn decode(bytes: &[u8], fp: &Fingerprint, expected_level: u8) -> Result<Recipe> {
        let bad = |reason: &str| Error::corrupt_record(format!("recipe segment {fp}"), reason.to_string());
        if bytes.len() < RECIPE_HEADER || &bytes[..3] != magic::RECIPE {
            return Err(bad("not a recipe segment"));
        }
        if bytes[3] != RECIPE_VERSION {
            return Err(bad("unknown recipe version"));
        }
        let level = bytes[4];
        if level != expected_level || level == 0 {
            return Err(bad(&format!("level {level}, expected {expected_level}")));
        }
        let count = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
        if count > MAX_FANOUT || bytes.len() != RECIPE_HEADER + CHILD_LEN * count {
            return Err(bad("child count does not match the segment length"));
        }
        let children = bytes[RECIPE_HEADER..]
            .chunks_exact(CHILD_LEN)
            .map(|c| {
                let mut len = [0u8; 8];
                len.copy_from_slice(&c[32..40]);
                Child {
                    fingerprint: Fingerprint::from_slice(&c[..32]).expect(
                        "chunks_exact(CHILD_LEN) yields CHILD_LEN-byte chunks, and a fingerprint is their first 32 bytes",
                    ),
                    len: u64::from_le_bytes(len),
                }
            })
            .collect();
        Ok(Recipe { level, children })
    }
}

/// Builds the recipe levels above a file's L0 chunks. `emit` receives each
/// recipe segment (fingerprint, bytes) bottom-up; returns (root, height).
pub(crate) fn build_tree(
    leaves: Vec<Child>,
    fanout: usize,
    emit: &mut dyn FnMut(Fingerprint, Vec<u8>) -> Result<()>,
) -> Result<(Fingerprint, u8)> {
    let mut level = 1u8;
    let mut current = leaves;
    loop {
        let mut next = Vec::with_capacity(current.len() / fanout + 1);
        // An empty file still gets one (empty) level-1 recipe.
        let groups: Vec<&[Child]> = if current.is_empty() { vec![&[][..]] } else { current.chunks(fanout).collect() };
        for group in groups {
            let recipe = Recipe { level, children: group.to_vec() };
            let bytes = recipe.encode();
            let fp = Fingerprint::of(&bytes);
            let len = group.iter().map(|c| c.len).sum();
            emit(fp, bytes)?;
            next.push(Child { fingerprint: fp, len });
        }
        if next.len() == 1 {
            return Ok((next[0].fingerprint, level));
        }
        if level == MAX_HEIGHT {
            // The caller names the file (it knows the path).
            return Err(Error::Tier(TierError::TreeTooTall { path: String::new(), max_height: MAX_HEIGHT }));
        }
        current = next;
        level += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_roundtrip_and_level_check() {
        let r = Recipe { level: 2, children: vec![Child { fingerprint: Fingerprint::of(b"a"), len: 5 }] };
        let b = r.encode();
        let fp = Fingerprint::of(&b);
        assert_eq!(Recipe::decode(&b, &fp, 2).unwrap(), r);
        assert!(Recipe::decode(&b, &fp, 1).is_err());
        assert!(Recipe::decode(&b[..b.len() - 1], &fp, 2).is_err());
    }

    #[test]
    fn tree_heights() {
        let leaves: Vec<Child> = (0..10u8).map(|i| Child { fingerprint: Fingerprint::of(&[i]), len: 1 }).collect();
        let mut n = 0;
        let (_, h) = build_tree(leaves.clone(), 3, &mut |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        // 10 leaves, fanout 3: 4 L1, 2 L2, 1 L3.
        assert_eq!((h, n), (3, 7));
        let (_, h) = build_tree(vec![], 3, &mut |_, _| Ok(())).unwrap();
        assert_eq!(h, 1);
    }
}
