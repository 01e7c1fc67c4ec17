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

impl SynthTree {
    /// A tree of `files` files averaging `avg_size` bytes (sizes spread
    /// from empty to 2x the average, a few exactly empty), of which about
    /// `change_percent` percent change per generation.
    pub fn new(seed: u64, files: usize, avg_size: usize, change_percent: f64) -> SynthTree {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(files);
        for i in 0..files {
            let size = if i % 17 == 5 { 0 } else { rng.below(2 * avg_size as u64 + 1) as usize };
            let mut bytes = vec![0u8; size];
            rng.fill(&mut bytes);
            // Directories are contiguous, as a backup walks a tree, so a
            // container mostly holds files of one directory.
            let dir = ["home/alice", "home/bob", "projects/db", "projects/web", "var/log"][i * 5 / files.max(1)];
            out.push((format!("{dir}/file-{i:05}.bin"), bytes));
        }
        SynthTree { rng, files: out, generation: 0, change_per_mille: (change_percent * 10.0).round() as u64 }
    }

    /// Advances one generation (changing a few files: an overwritten
    /// region, an append, a truncation) and returns the whole tree as it is
    /// now, under `gen-NNN/`. mtimes are one day apart per generation.
    pub fn next_generation(&mut self) -> Vec<SynthFile> {
        if self.generation > 0 {
            for (_, bytes) in self.files.iter_mut() {
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
