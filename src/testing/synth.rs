//! Deterministic synthetic backup data with realistic deduplication: a
//! file tree backed up generation after generation, a few percent of it
//! changing each time. Used by `seed demo`, the tests and the benches.

/// A small, fast, seeded generator (xorshift64*): the same seed always
/// gives the same data, on every platform.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value, zero included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// One synthetic file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthFile {
    /// Namespace path.
    pub path: String,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// A file tree that changes a little between backup generations.
#[derive(Clone, Debug)]
pub struct SynthTree {
    rng: Rng,
    files: Vec<(String, Vec<u8>)>,
    generation: u32,
    change_per_mille: u64,
}

fn random_bytes(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    rng.fill(&mut bytes);
    bytes
}

/// `size` bytes of log-like lines: timestamps, a few hosts and services,
/// words from a small vocabulary, numbers.
fn log_text(rng: &mut Rng, size: usize) -> Vec<u8> {
    const HOSTS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];
    const SERVICES: [&str; 5] = ["sshd", "cron", "kernel", "backupd", "nginx"];
    const WORDS: [&str; 12] =
        ["accepted", "connection", "from", "session", "opened", "closed", "for", "user", "backup", "job", "completed", "error"];
    let mut out = Vec::with_capacity(size + 128);
    while out.len() < size {
        let t = 1_700_000_000 + rng.below(86_400 * 30);
        let line = format!(
            "{t} {} {}[{}]: {} {} {} {}\n",
            HOSTS[rng.below(4) as usize],
            SERVICES[rng.below(5) as usize],
            rng.below(65_536),
            WORDS[rng.below(12) as usize],
            WORDS[rng.below(12) as usize],
            WORDS[rng.below(12) as usize],
            rng.below(1_000_000)
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(size);
    out
}

impl SynthTree {
    /// A tree of `files` files averaging `avg_size` bytes (sizes spread
    /// from empty to 2x the average, a few exactly empty), of which about
    /// `change_percent` percent change per generation.
    pub fn new(seed: u64, files: usize, avg_size: usize, change_percent: f64) -> SynthTree {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(files);
        for i in 0..files {
            let size = if i % 17 == 5 { 0 } else { rng.below(2 * avg_size as u64 + 1) as usize };
            // Directories are contiguous, as a backup walks a tree, so a
            // container mostly holds files of one directory.
            let dir = ["home/alice", "home/bob", "projects/db", "projects/web", "var/log"][i * 5 / files.max(1)];
            // Logs are text (compressible, about 4x with zstd); the rest is
            // random (incompressible), so both codecs are exercised.
            let bytes = if dir == "var/log" { log_text(&mut rng, size) } else { random_bytes(&mut rng, size) };
            out.push((format!("{dir}/file-{i:05}.bin"), bytes));
        }
        SynthTree { rng, files: out, generation: 0, change_per_mille: (change_percent * 10.0).round() as u64 }
    }

    /// Advances one generation (changing a few files: an overwritten
    /// region, an append, a truncation) and returns the whole tree as it is
    /// now, under `gen-NNN/`. mtimes are one day apart per generation.
    pub fn next_generation(&mut self) -> Vec<SynthFile> {
        if self.generation > 0 {
            for (_, bytes) in &mut self.files {
                if self.rng.below(1000) >= self.change_per_mille {
                    continue;
                }
                match self.rng.below(3) {
                    0 if !bytes.is_empty() => {
                        let at = self.rng.below(bytes.len() as u64) as usize;
                        let len = (self.rng.below(8192) as usize).min(bytes.len() - at);
                        self.rng.fill(&mut bytes[at..at + len]);
                    }
                    1 => {
                        let mut extra = vec![0u8; self.rng.below(20_000) as usize];
                        self.rng.fill(&mut extra);
                        bytes.extend_from_slice(&extra);
                    }
                    _ => {
                        let keep = self.rng.below(bytes.len() as u64 + 1) as usize;
                        bytes.truncate(keep);
                    }
                }
            }
        }
        let g = self.generation;
        self.generation += 1;
        let mtime = 1_700_000_000 + i64::from(g) * 86_400;
        self.files.iter().map(|(p, b)| SynthFile { path: format!("gen-{g:03}/{p}"), mtime, bytes: b.clone() }).collect()
    }
}

use std::collections::HashMap;

use rayon::prelude::*;

use crate::error::{Error, FormatError, Result, TierError};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::tree::{Child, Recipe};
use crate::tier::{Codec, ContainerKind, ContainerMeta, SegmentEntry};
use crate::tier::{FileAttrs, FileEntry, SourceTier, Tier, TierId};

/// Marker in bytes 8..16 of a synthetic data fingerprint.
const DATA_MARK: &[u8; 8] = b"TSsynthD";

/// A [`SourceTier`] that presents a very large index and its containers'
/// metadata without storing data, so that BuildPhf and Mark can be
/// measured at 100M fingerprints.
///
/// Data segment `i` has a made-up fingerprint (its index big-endian, then a
/// marker) and no bytes: reading it is an error. Recipes are real recipe
/// segments, built at construction and kept in memory (about 40 bytes per
/// leaf at fanout 1024), so Mark reads and verifies them as usual.
pub struct SynthSource {
    id: TierId,
    leaves: u64,
    per_data_container: u64,
    data_containers: u64,
    files: Vec<FileEntry>,
    /// Recipe fingerprint -> (container, how to rebuild its bytes).
    recipes: HashMap<Fingerprint, (ContainerId, RecipeDesc)>,
    /// Recipe fingerprints per meta container, in order.
    meta_containers: Vec<Vec<Fingerprint>>,
}

/// Enough to rebuild a recipe's bytes on demand: storing the bytes would
/// cost 40 bytes per leaf (4 GB at 100M leaves).
#[derive(Clone)]
enum RecipeDesc {
    /// A level-1 recipe over data segments `start .. start + count`.
    Leaves { start: u64, count: u32 },
    /// A higher recipe, with its children.
    Inner { level: u8, children: Vec<Child> },
}

impl RecipeDesc {
    fn bytes(&self) -> Vec<u8> {
        match self {
            RecipeDesc::Leaves { start, count } => Recipe {
                level: 1,
                children: (*start..*start + u64::from(*count))
                    .map(|i| Child { fingerprint: SynthSource::data_fp(i), len: u64::from(SEGMENT_LEN) })
                    .collect(),
            }
            .encode(),
            RecipeDesc::Inner { level, children } => Recipe { level: *level, children: children.clone() }.encode(),
        }
    }

    fn len(&self) -> usize {
        9 + 40
            * match self {
                RecipeDesc::Leaves { count, .. } => *count as usize,
                RecipeDesc::Inner { children, .. } => children.len(),
            }
    }
}

/// Logical size of a synthetic data segment.
const SEGMENT_LEN: u32 = 16 << 10;

impl SynthSource {
    /// `leaves` data segments, `per_container` per data container, grouped
    /// into files of `leaves_per_file` segments each, with recipes of
    /// `fanout` children.
    pub fn new(leaves: u64, per_container: u64, leaves_per_file: u64, fanout: usize) -> SynthSource {
        let per_container = per_container.max(1);
        let leaves_per_file = leaves_per_file.max(1);
        let fanout = fanout.clamp(2, crate::format::tree::MAX_FANOUT);
        let data_containers = leaves.div_ceil(per_container);
        let n_files = leaves.div_ceil(leaves_per_file);
        // Build every file's tree in parallel; each yields its recipes.
        let built: Vec<(FileEntry, Vec<(Fingerprint, RecipeDesc)>)> = (0..n_files)
            .into_par_iter()
            .map(|f| {
                let start = f * leaves_per_file;
                let end = (start + leaves_per_file).min(leaves);
                let mut level: Vec<Child> =
                    (start..end).map(|i| Child { fingerprint: Self::data_fp(i), len: u64::from(SEGMENT_LEN) }).collect();
                let mut recipes = Vec::new();
                let mut height = 1u8;
                loop {
                    let mut next = Vec::new();
                    for (g, group) in level.chunks(fanout).enumerate() {
                        let desc = if height == 1 {
                            RecipeDesc::Leaves { start: start + (g * fanout) as u64, count: group.len() as u32 }
                        } else {
                            RecipeDesc::Inner { level: height, children: group.to_vec() }
                        };
                        let fp = Fingerprint::of(&desc.bytes());
                        next.push(Child { fingerprint: fp, len: group.iter().map(|c| c.len).sum() });
                        recipes.push((fp, desc));
                    }
                    if next.len() == 1 {
                        break;
                    }
                    level = next;
                    height += 1;
                }
                let root = recipes.last().map_or(Fingerprint([0; 32]), |r| r.0);
                let entry = FileEntry {
                    path: format!("f/{f:09}"),
                    size: (end - start) * u64::from(SEGMENT_LEN),
                    mtime: 1_700_000_000,
                    root,
                    height,
                    attrs: FileAttrs::default(),
                };
                (entry, recipes)
            })
            .collect();
        let mut files = Vec::with_capacity(built.len());
        let mut recipes = HashMap::new();
        let mut meta_containers: Vec<Vec<Fingerprint>> = vec![Vec::new()];
        let mut meta_bytes = 0usize;
        for (entry, rs) in built {
            files.push(entry);
            for (fp, desc) in rs {
                if meta_bytes + desc.len() > 4 << 20 {
                    meta_containers.push(Vec::new());
                    meta_bytes = 0;
                }
                meta_bytes += desc.len();
                let cid = ContainerId(data_containers + meta_containers.len() as u64 - 1);
                if recipes.insert(fp, (cid, desc)).is_none()
                    && let Some(m) = meta_containers.last_mut()
                {
                    m.push(fp);
                }
            }
        }
        SynthSource {
            id: uuid::Uuid::from_u128(0x7469_6572_7365_6564_0000_0000_0000_0001),
            leaves,
            per_data_container: per_container,
            data_containers,
            files,
            recipes,
            meta_containers,
        }
    }

    /// The fingerprint of data segment `i`.
    pub fn data_fp(i: u64) -> Fingerprint {
        let mut f = [0u8; 32];
        f[..8].copy_from_slice(&i.to_be_bytes());
        f[8..16].copy_from_slice(DATA_MARK);
        Fingerprint(f)
    }

    fn data_index(fp: &Fingerprint) -> Option<u64> {
        (&fp.0[8..16] == DATA_MARK).then(|| u64::from_be_bytes(fp.0[..8].try_into().unwrap_or_default()))
    }

    /// Number of fingerprints in the index (data and recipes).
    pub fn keys(&self) -> u64 {
        self.leaves + self.recipes.len() as u64
    }
}

impl Tier for SynthSource {
    fn tier_id(&self) -> Result<TierId> {
        Ok(self.id)
    }
    fn locate(&self, fingerprints: &[Fingerprint]) -> Result<Vec<Option<ContainerId>>> {
        Ok(fingerprints
            .iter()
            .map(|fp| match Self::data_index(fp) {
                Some(i) if i < self.leaves => Some(ContainerId(i / self.per_data_container)),
                Some(_) => None,
                None => self.recipes.get(fp).map(|r| r.0),
            })
            .collect())
    }
    fn list_files(&self, after: Option<&str>, limit: usize) -> Result<Vec<FileEntry>> {
        let start = after.map_or(0, |a| self.files.partition_point(|f| f.path.as_str() <= a));
        Ok(self.files.iter().skip(start).take(limit).cloned().collect())
    }
    fn file_entries(&self, paths: &[String]) -> Result<Vec<Option<FileEntry>>> {
        Ok(paths
            .iter()
            .map(|p| self.files.binary_search_by(|f| f.path.as_str().cmp(p)).ok().map(|i| self.files[i].clone()))
            .collect())
    }
    fn container_ids(&self) -> Result<Vec<ContainerId>> {
        Ok((0..self.data_containers + self.meta_containers.len() as u64).map(ContainerId).collect())
    }
    fn read_metadata(&self, id: ContainerId) -> Result<ContainerMeta> {
        if id.0 < self.data_containers {
            let start = id.0 * self.per_data_container;
            let end = (start + self.per_data_container).min(self.leaves);
            let segments = (start..end)
                .map(|i| SegmentEntry {
                    fingerprint: Self::data_fp(i),
                    offset: ((i - start) as u32) * SEGMENT_LEN,
                    len: SEGMENT_LEN,
                    raw_len: SEGMENT_LEN,
                    codec: Codec::Raw,
                })
                .collect();
            return Ok(ContainerMeta {
                id,
                kind: ContainerKind::Data,
                segments,
                data_len: (end - start) * u64::from(SEGMENT_LEN),
            });
        }
        let m = self
            .meta_containers
            .get((id.0 - self.data_containers) as usize)
            .ok_or_else(|| Error::Tier(TierError::MissingContainer { id, context: " (synthetic tier)".into() }))?;
        let mut offset = 0u32;
        let segments = m
            .iter()
            .map(|fp| {
                let len = self.recipes.get(fp).map_or(0, |r| r.1.len()) as u32;
                let e = SegmentEntry { fingerprint: *fp, offset, len, raw_len: len, codec: Codec::Raw };
                offset += len;
                e
            })
            .collect();
        Ok(ContainerMeta { id, kind: ContainerKind::Meta, segments, data_len: u64::from(offset) })
    }
    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>> {
        which
            .iter()
            .map(|e| match self.recipes.get(&e.fingerprint) {
                Some((c, d)) if *c == id => Ok(d.bytes()),
                _ => Err(Error::Format(FormatError::CorruptContainer {
                    id,
                    path: None,
                    reason: "the synthetic tier stores no data segments".into(),
                })),
            })
            .collect()
    }
}

impl SourceTier for SynthSource {
    fn fingerprint_count(&self) -> Result<u64> {
        Ok(self.keys())
    }
    fn fingerprints(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        // Order: data segments by index, then recipes by meta container.
        let mut out = Vec::with_capacity(limit.min(1 << 16));
        let (mut i, mut m, mut k) = match after {
            None => (0, 0, 0),
            Some(fp) => {
                if let Some(i) = Self::data_index(fp) {
                    (i + 1, 0, 0)
                } else {
                    let (cid, _) =
                        self.recipes.get(fp).ok_or_else(|| Error::corrupt_record("synthetic paging", "unknown cursor"))?;
                    let m = (cid.0 - self.data_containers) as usize;
                    let k = self.meta_containers[m].iter().position(|x| x == fp).map_or(0, |p| p + 1);
                    (self.leaves, m, k)
                }
            }
        };
        while out.len() < limit && i < self.leaves {
            out.push((Self::data_fp(i), ContainerId(i / self.per_data_container)));
            i += 1;
        }
        while out.len() < limit && m < self.meta_containers.len() {
            if k < self.meta_containers[m].len() {
                out.push((self.meta_containers[m][k], ContainerId(self.data_containers + m as u64)));
                k += 1;
            } else {
                m += 1;
                k = 0;
            }
        }
        Ok(out)
    }
    fn remove_files(&self, _entries: &[FileEntry]) -> Result<Vec<bool>> {
        Err(Error::InvalidConfig("the synthetic tier is read-only".into()))
    }
}
