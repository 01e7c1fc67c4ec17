//! `IndexedTier`: both tier traits over a local RocksDB and a container
//! store (a directory of container files, or a bucket: `object/`).
//!
//! Layout of a tier directory:
//! - `containers/<id:016x>.tsc`: sealed, read-only container files;
//! - `db/`: one RocksDB with column families `index` (fingerprint ->
//!   container id), `namespace` (path -> file entry) and `meta` (tier record
//!   and allocation counters);
//! - `tier.lock`: held exclusively while the tier is open.

mod apply;
mod config;
mod db;
mod ingest;
mod keys;
#[cfg(feature = "s3")]
mod object;
mod paths;
mod pins;
mod reclaim;
mod restore;
mod retire;

mod traits;

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rocksdb::{DB, IteratorMode, Options, WriteBatch};

use crate::error::{Error, Result, TierError, TierName};
use crate::format::durable::{self, encode_record};
use crate::format::fingerprint::ContainerId;
use crate::format::layout::{CREATING_SUFFIX, TIER_CONTAINERS, TIER_DB, TIER_LOCK, TIER_READERS};
use crate::format::magic;
use crate::format::records::{FileEntryV1, FileEntryV2, decode_entries};
use crate::tier::{FileEntry, TierId, lock};

use crate::tier::store::{ContainerStore, DirStore, NamespaceOp};
pub(crate) use config::TierRecord;
use config::{Alloc, AllocV1, TierRecordV1};
pub use config::{MemoryUsage, TierConfig, TierInfo};
use db::{cf, cf_options, decode_container_id, index_table, namespace_batch, scan, shared_memory, synced};
pub use ingest::{Ingest, IngestStats};
#[cfg(feature = "s3")]
pub use object::RecoverReport;
#[cfg(feature = "s3")]
pub(crate) use object::STORE_VERSION;
pub(crate) use paths::prefix_matches;
pub use paths::{MAX_PATH_LEN, validate_path};
pub(crate) use pins::PIN_VERSION;
pub(crate) use reclaim::{Dead, GcRecord};
pub use restore::{RestoreStats, VerifyReport};

/// Namespace changes committed in one batch, at most (see
/// `commit_namespace`).
const NAMESPACE_BATCH: usize = 1 << 16;
const CF_INDEX: &str = "index";
const CF_NAMESPACE: &str = "namespace";
const CF_META: &str = "meta";
const KEY_TIER: &[u8] = b"tier";
const KEY_ALLOC: &[u8] = b"alloc";
/// The next namespace journal sequence number, for a store that journals.
const KEY_NS_SEQ: &[u8] = b"nsseq";
/// Present only in the metadata of a tier whose containers are in an
/// object store: names the bucket, so a plain `open` refuses it.
pub(crate) const KEY_STORE: &[u8] = b"store";
const META_MAGIC: &[u8; 4] = magic::TIER_META;
const NS_MAGIC: &[u8; 4] = magic::NAMESPACE;
/// Version of the namespace entries: 2 added the kind (file or symlink),
/// mode, owner and the mtime's nanoseconds. Version 1 entries are still
/// read.
pub(crate) const FORMAT_VERSION: u16 = 2;
/// Version of the tier and allocation records: 2 added the compression
/// level and the raw-bytes counter. Version 1 records are still read.
pub(crate) const META_VERSION: u16 = 2;

/// Containers a pin keeps.
#[derive(Default)]
struct Pin {
    ids: std::collections::HashSet<u64>,
    from: Option<u64>,
}

impl Pin {
    fn contains(&self, id: &u64) -> bool {
        self.ids.contains(id) || self.from.is_some_and(|f| *id >= f)
    }
}

/// A tier: its index, namespace and counters in one RocksDB in a local
/// directory, its containers in a container store: a directory of files
/// beside them ([`create`](Self::create), [`open`](Self::open)) or, with
/// feature `s3`, an S3 bucket
/// ([`create_object_tier`](Self::create_object_tier),
/// [`open_object_tier`](Self::open_object_tier)). The same type either
/// way: ingest, restore, verify, gc and info work alike. Implements
/// [`SourceTier`](crate::SourceTier) and [`TargetTier`](crate::TargetTier).
///
/// Only one `IndexedTier` may have a directory open at a time (in any
/// process); a second open fails with [`TierError::Locked`]. After a failed
/// durable write the handle is poisoned and refuses writes until reopened.
pub struct IndexedTier {
    dir: PathBuf,
    db: DB,
    /// Where the container bytes live.
    store: Box<dyn ContainerStore>,
    /// Serializes namespace writes, holding the next journal sequence
    /// number (unused for a store that keeps no journal).
    ns_seq: Mutex<u64>,
    /// Container tables kept for restores (never for presence checks).
    tables: crate::tier::read::Tables,
    id: TierId,
    config: TierConfig,
    alloc: Mutex<Alloc>,
    /// The next container id to hand out; ahead of `alloc.next_container`
    /// by the containers being written.
    reserved: Mutex<u64>,
    /// Signalled whenever a container is indexed (or the tier poisoned),
    /// for writers waiting for their turn to index.
    indexed: std::sync::Condvar,
    /// Containers kept from reclamation, by pin token: a set of ids, and
    /// optionally every id from one on.
    pins: Mutex<std::collections::HashMap<u64, Pin>>,
    next_pin: std::sync::atomic::AtomicU64,
    /// Ingest sessions hold it shared; space reclamation exclusive, so no
    /// segment it finds dead is deduplicated against meanwhile.
    gate: std::sync::RwLock<()>,
    poisoned: OnceLock<String>,
    /// An encrypted tier's data key (`None`: a plain tier).
    crypt: Option<std::sync::Arc<keys::Unlocked>>,
    /// The writer's lock; `None` for a read-only handle.
    _lock: Option<File>,
    /// A read-only handle's shared lock on the readers' lock file.
    _readers: Option<File>,
}

impl std::fmt::Debug for IndexedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexedTier")
            .field("dir", &self.dir)
            .field("store", &self.store.describe())
            .field("id", &self.id)
            .finish()
    }
}

impl IndexedTier {
    /// Creates a new, empty tier in `dir` (which must not exist, or be an
    /// empty directory).
    ///
    /// Creation is atomic: the tier is built in a sibling temp directory
    /// and renamed into place, so a crash leaves either no tier or a whole
    /// one, never a directory that neither `open` nor `create` accepts.
    pub fn create(dir: impl AsRef<Path>, config: TierConfig) -> Result<IndexedTier> {
        config.check()?;
        let dir = dir.as_ref();
        let record = TierRecord::new(*uuid::Uuid::new_v4().as_bytes(), config);
        Self::create_meta(dir, &record, None, |_, _| Ok(()))?;
        Self::open(dir)
    }

    /// Builds a tier's metadata directory atomically (in a sibling temp
    /// directory, renamed into place): the tier record, an empty
    /// allocation record, the store record of an object tier, and
    /// whatever `fill` writes (recovery of an object tier rebuilds its
    /// index and namespace there, so a crash leaves no half-recovered tier).
    pub(crate) fn create_meta(
        dir: &Path,
        record: &TierRecord,
        store_record: Option<Vec<u8>>,
        fill: impl FnOnce(&DB, &Path) -> Result<()>,
    ) -> Result<()> {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        // Held until the tier is renamed into place: a second creator
        // waits, then finds the tier made and is refused.
        let _creating = durable::lock_dir(&parent)?;
        if dir.join(TIER_DB).exists() {
            return Err(Error::Tier(TierError::NotATier { path: dir.to_path_buf(), reason: "already holds a tier".into() }));
        }
        if fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::Tier(TierError::NotATier { path: dir.to_path_buf(), reason: "directory is not empty".into() }));
        }
        let name = dir
            .file_name()
            .ok_or_else(|| Error::Tier(TierError::NotATier { path: dir.to_path_buf(), reason: "no directory name".into() }))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(CREATING_SUFFIX);
        let tmp = dir.with_file_name(tmp_name);
        let object = store_record.is_some();
        durable::create_dir_atomically(dir, &tmp, |tmp| {
            let containers = tmp.join(TIER_CONTAINERS);
            if !object {
                fs::create_dir_all(&containers).map_err(|e| Error::io(&containers, e))?;
            }
            {
                let db = Self::open_db(tmp, true)?;
                let meta = cf(&db, CF_META);
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, KEY_ALLOC, encode_record(META_MAGIC, META_VERSION, &Alloc::default()));
                batch.put_cf(meta, KEY_TIER, encode_record(META_MAGIC, META_VERSION, record));
                if let Some(r) = &store_record {
                    batch.put_cf(meta, KEY_STORE, r);
                }
                db.write_opt(batch, &synced()).map_err(|e| Error::db(tmp.join(TIER_DB), e))?;
                fill(&db, tmp)?;
            }
            if !object {
                durable::sync_dir(&containers)?;
            }
            crate::testing::crashpoint::hit("tier.create_before_rename");
            Ok(())
        })
    }

    /// Whether `dir` holds a tier (created, possibly not openable now).
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        dir.as_ref().join(TIER_DB).is_dir()
    }

    /// Opens an existing tier, recovering from a crash: temp files and
    /// container files that no index entry can point to (written but never
    /// indexed) are removed, with a log line naming each.
    pub fn open(dir: impl AsRef<Path>) -> Result<IndexedTier> {
        let dir = dir.as_ref();
        Self::open_writer(dir, None, |db| Self::dir_store(db, dir))
    }

    /// Refuses a directory that holds no tier (no database).
    fn require_tier(dir: &Path) -> Result<()> {
        if dir.join(TIER_DB).is_dir() {
            return Ok(());
        }
        Err(Error::Tier(TierError::NotATier { path: dir.to_path_buf(), reason: "no tier here (no db/ directory)".into() }))
    }

    /// Opens a tier for writing over the store `store` makes from the
    /// opened database, then recovers from a crash.
    pub(crate) fn open_writer(
        dir: &Path,
        cred: Option<&crate::Credential>,
        store: impl FnOnce(&DB) -> Result<Box<dyn ContainerStore>>,
    ) -> Result<IndexedTier> {
        Self::require_tier(dir)?;
        let guard = Self::take_lock(dir)?;
        let db = Self::open_db(dir, false)?;
        let mut store = store(&db)?;
        // Before recovery, which reads containers.
        let crypt = keys::unlock(&db, dir, store.as_mut(), cred)?;
        let tier = Self::assemble(dir, db, Some(guard), store, crypt)?;
        let next = lock(&tier.alloc).next_container;
        for id in tier.store.recover(next)? {
            tier.adopt(id)?;
        }
        tier.finish_pending_deletes()?;
        tier.roll_forward_journal()?;
        Ok(tier)
    }

    /// Applies the journal entries the store holds past the local
    /// sequence number: namespace changes journaled just before a crash
    /// (or a failed local commit), which a recovery from the store would
    /// apply too. After the containers are adopted, so that no entry is
    /// committed before the segments it names are indexed.
    fn roll_forward_journal(&self) -> Result<()> {
        let mut seq = lock(&self.ns_seq);
        for (s, ops) in self.store.journal_since(*seq, &self.dir)? {
            log::warn!(
                "recovery: applying namespace journal entry {s:016x} of {}, committed to the store only",
                self.store.describe()
            );
            let mut batch = namespace_batch(&self.db, &ops);
            batch.put_cf(cf(&self.db, CF_META), KEY_NS_SEQ, (s + 1).to_le_bytes());
            self.db.write_opt(batch, &synced()).map_err(|e| self.dberr(e))?;
            *seq = s + 1;
        }
        Ok(())
    }

    /// Whether the containers are in an object store, where every read
    /// waits on the network: callers keep more reads in flight than cores.
    pub fn is_remote(&self) -> bool {
        self.store.remote()
    }

    /// Indexes container `id`, found past the allocation counter at open,
    /// as if its write had just returned: its fingerprints the index lacks
    /// point to it, and the counter moves past it. One that cannot be read
    /// back is removed (it was never indexed, so nothing refers to it).
    fn adopt(&self, id: ContainerId) -> Result<()> {
        let meta = match self.store.read_meta(id) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("recovery: removing unreadable unindexed container {} ({e})", self.store.location(id).display());
                return self.store.delete(id);
            }
        };
        log::warn!("recovery: adopting {} (written, never indexed)", self.store.location(id).display());
        let mut alloc = lock(&self.alloc);
        let mut next = *alloc;
        let mut batch = index_table(&self.db, &self.db_path(), &meta, &mut next)?;
        batch.put_cf(cf(&self.db, CF_META), KEY_ALLOC, encode_record(META_MAGIC, META_VERSION, &next));
        let r = self.db.write_opt(batch, &synced()).map_err(|e| self.dberr(e));
        self.poison(r)?;
        *alloc = next;
        *lock(&self.reserved) = next.next_container;
        Ok(())
    }

    /// The directory store of a plain tier; the metadata of an object tier
    /// (which names its bucket) is refused, so it is never opened without
    /// its containers.
    fn dir_store(db: &DB, dir: &Path) -> Result<Box<dyn ContainerStore>> {
        let has_store = db.get_cf(cf(db, CF_META), KEY_STORE).map_err(|e| Error::db(dir.join(TIER_DB), e))?.is_some();
        if has_store {
            return Err(Error::Tier(TierError::NotATier {
                path: dir.to_path_buf(),
                reason:
                    "it holds the metadata of an object-storage tier: open it with IndexedTier::open_object_tier and its bucket"
                        .into(),
            }));
        }
        Ok(Box::new(DirStore::new(dir.join(TIER_CONTAINERS))))
    }

    /// Opens a tier for reading only, without its lock, so it works while
    /// another process (or handle) has the tier open for writing. The
    /// handle sees the tier as it was when opened: files, index and
    /// containers of that moment (containers are immutable, and one
    /// written later is not in its view). It runs no recovery and refuses
    /// every write with [`TierError::ReadOnly`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<IndexedTier> {
        let dir = dir.as_ref();
        Self::open_reader(dir, None, |db| Self::dir_store(db, dir))
    }

    pub(crate) fn open_reader(
        dir: &Path,
        cred: Option<&crate::Credential>,
        store: impl FnOnce(&DB) -> Result<Box<dyn ContainerStore>>,
    ) -> Result<IndexedTier> {
        Self::require_tier(dir)?;
        // A shared lock on the readers' lock file for the handle's life:
        // space reclamation in any process takes it exclusively, so it never
        // deletes a container from under an open reader.
        let readers_path = dir.join(TIER_READERS);
        let readers = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&readers_path)
            .map_err(|e| Error::io(&readers_path, e))?;
        readers.lock_shared().map_err(|e| Error::io(&readers_path, e))?;
        let path = dir.join(TIER_DB);
        let db = DB::open_cf_with_opts_for_read_only(&Options::default(), &path, cf_options(), false)
            .map_err(|e| Error::db(&path, e))?;
        let mut store = store(&db)?;
        let crypt = keys::unlock(&db, dir, store.as_mut(), cred)?;
        let mut tier = Self::assemble(dir, db, None, store, crypt)?;
        tier._readers = Some(readers);
        Ok(tier)
    }

    /// Whether this handle was opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self._lock.is_none()
    }

    fn assemble(
        dir: &Path,
        db: DB,
        lock: Option<File>,
        store: Box<dyn ContainerStore>,
        crypt: Option<std::sync::Arc<keys::Unlocked>>,
    ) -> Result<IndexedTier> {
        let record: TierRecord = Self::meta_record::<TierRecord, TierRecordV1>(&db, dir, KEY_TIER, "tier record")?;
        let alloc: Alloc = Self::meta_record::<Alloc, AllocV1>(&db, dir, KEY_ALLOC, "allocation record")?;
        let ns_seq = match db.get_cf(cf(&db, CF_META), KEY_NS_SEQ).map_err(|e| Error::db(dir.join(TIER_DB), e))? {
            None => 0,
            Some(v) => u64::from_le_bytes(<[u8; 8]>::try_from(&v[..]).map_err(|_| {
                Error::corrupt_record(format!("journal sequence in {}", dir.join(TIER_DB).display()), "not 8 bytes")
            })?),
        };
        Ok(IndexedTier {
            dir: dir.to_path_buf(),
            db,
            store,
            ns_seq: Mutex::new(ns_seq),
            tables: crate::tier::read::Tables::default(),
            id: uuid::Uuid::from_bytes(record.id),
            config: record.config(),
            alloc: Mutex::new(alloc),
            reserved: Mutex::new(alloc.next_container),
            indexed: std::sync::Condvar::new(),
            pins: Mutex::new(std::collections::HashMap::new()),
            next_pin: std::sync::atomic::AtomicU64::new(1),
            gate: std::sync::RwLock::new(()),
            _readers: None,
            poisoned: OnceLock::new(),
            crypt,
            _lock: lock,
        })
    }

    /// Reads and decodes one record of the `meta` column family; a missing
    /// one means the directory does not hold a (whole) tier.
    fn meta_record<T, V1>(db: &DB, dir: &Path, key: &[u8], what: &str) -> Result<T>
    where
        T: serde::de::DeserializeOwned,
        V1: serde::de::DeserializeOwned + Into<T>,
    {
        let dbp = dir.join(TIER_DB);
        let bytes = db
            .get_cf(cf(db, CF_META), key)
            .map_err(|e| Error::db(&dbp, e))?
            .ok_or_else(|| Error::Tier(TierError::NotATier { path: dir.to_path_buf(), reason: format!("{what} missing") }))?;
        let name = || format!("{what} in {}", dbp.display());
        Ok(match durable::decode_versioned::<T, V1>(META_MAGIC, META_VERSION, &bytes, &name)? {
            durable::Versioned::Current(r) => r,
            durable::Versioned::V1(r) => r.into(),
        })
    }

    fn take_lock(dir: &Path) -> Result<File> {
        durable::take_lock(&dir.join(TIER_LOCK), "tier", "another process or handle has this tier open")
    }

    fn open_db(dir: &Path, create: bool) -> Result<DB> {
        let mut opts = Options::default();
        opts.create_if_missing(create);
        opts.create_missing_column_families(create);
        opts.set_max_background_jobs(2);
        // Memtables of all column families of all tiers together stay
        // under one budget, so write buffers grow neither with the column
        // families nor with the tiers open.
        opts.set_write_buffer_manager(&shared_memory().1);
        let path = dir.join(TIER_DB);
        DB::open_cf_with_opts(&opts, &path, cf_options()).map_err(|e| Error::db(path, e))
    }

    /// The tier's directory (for an object tier, its metadata directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The requests this handle has made to its bucket since it was opened
    /// (`None` for a directory tier): what a job cost, and what
    /// `seed estimate`'s request counts are checked against.
    pub fn requests(&self) -> Option<crate::tier::RequestCounts> {
        self.store.requests()
    }

    /// The tier's name in errors: its directory, or its bucket's URL.
    fn name(&self) -> TierName {
        TierName::At(if self.store.remote() { self.store.describe() } else { self.dir.display().to_string() })
    }

    /// Where the tier's containers are: its `containers` directory, or
    /// `s3://bucket/prefix` for an object tier.
    pub fn store_location(&self) -> String {
        self.store.describe()
    }

    /// The settings the tier was created with.
    pub fn config(&self) -> TierConfig {
        self.config
    }

    /// Where container `id` is (or would be) stored: its file in a
    /// directory tier, its `s3://bucket/key` in an object tier.
    pub fn container_path(&self, id: ContainerId) -> PathBuf {
        self.store.location(id)
    }

    fn db_path(&self) -> PathBuf {
        self.dir.join(TIER_DB)
    }

    fn dberr(&self, e: rocksdb::Error) -> Error {
        Error::db(self.db_path(), e)
    }

    fn check_poison(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::Tier(TierError::ReadOnly { path: self.dir.clone() }));
        }
        match self.poisoned.get() {
            Some(cause) => {
                Err(Error::Tier(TierError::Poisoned { what: format!("tier {}", self.dir.display()), cause: cause.clone() }))
            }
            None => Ok(()),
        }
    }

    /// Records the first durable-write failure; every later write refuses.
    fn poison<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            let _ = self.poisoned.set(e.to_string());
        }
        r
    }

    fn namespace_value(entry: &FileEntry) -> Vec<u8> {
        encode_record(NS_MAGIC, FORMAT_VERSION, &FileEntryV2::from(entry))
    }

    fn decode_namespace(&self, key: &[u8], value: &[u8]) -> Result<FileEntry> {
        decode_entries::<FileEntry, FileEntryV2, FileEntryV1>(NS_MAGIC, FORMAT_VERSION, value, &|| {
            format!("namespace entry {:?} in {}", String::from_utf8_lossy(key), self.db_path().display())
        })
    }

    /// Removes files from the namespace: each of `paths` names a file or a
    /// directory (every file under it, by whole path components). Returns
    /// the entries removed; a path that names nothing is
    /// [`TierError::FileNotFound`] and nothing is removed. Durable on return;
    /// the removals are committed 64K at a time, so a crash part-way may
    /// leave some done (remove what remains again; a path already wholly
    /// gone is then not found).
    /// The segments stay in their containers until space is reclaimed.
    pub fn remove(&self, paths: &[&str]) -> Result<Vec<FileEntry>> {
        self.check_poison()?;
        let prefixes: Vec<&str> = paths.iter().map(|p| p.trim_end_matches('/')).collect();
        for p in &prefixes {
            validate_path(p)?;
        }
        // Each file is matched by looking its path and each of its parent
        // directories up among the prefixes: a scan costs the depth of the
        // paths, not the number of paths given (half a million paths
        // against a million files took hours one by one).
        let mut wanted: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
        for (i, p) in prefixes.iter().enumerate() {
            wanted.entry(*p).or_default().push(i);
        }
        let mut hit = vec![false; prefixes.len()];
        let mut gone = Vec::new();
        self.for_each_file(&mut |e| {
            let mut matched = false;
            let mut at = Some(e.path.as_str());
            while let Some(p) = at {
                if let Some(which) = wanted.get(p) {
                    for &i in which {
                        hit[i] = true;
                    }
                    matched = true;
                }
                at = p.rfind('/').map(|cut| &p[..cut]);
            }
            if matched {
                gone.push(e);
            }
            Ok(())
        })?;
        if let Some(i) = hit.iter().position(|h| !h) {
            return Err(Error::Tier(TierError::FileNotFound { path: prefixes[i].to_string(), tier: self.name() }));
        }
        self.commit_namespace(|| Ok(gone.iter().map(|e| NamespaceOp::Delete(e.path.clone())).collect()))?;
        Ok(gone)
    }

    /// Exclusive access for space reclamation: no ingest session may be
    /// open meanwhile (it could deduplicate against a segment found dead).
    pub(crate) fn gc_gate(&self) -> Result<(std::sync::RwLockWriteGuard<'_, ()>, File)> {
        self.check_poison()?;
        let gate = self.gate.try_write().map_err(|_| {
            Error::Tier(TierError::Locked {
                what: "tier",
                path: self.dir.clone(),
                hint: "an ingest session is open on it; reclaim space when it is finished",
            })
        })?;
        let readers = durable::take_lock(
            &self.dir.join(TIER_READERS),
            "tier readers",
            "a read-only handle (a restore, ls, verify...) has the tier open; reclaim space when it is closed",
        )?;
        Ok((gate, readers))
    }

    /// Summary figures: containers, segments, files, logical and stored bytes.
    pub fn info(&self) -> Result<TierInfo> {
        let alloc = *lock(&self.alloc);
        let mut files = 0;
        let mut logical_bytes = 0;
        self.for_each_file(&mut |e| {
            files += 1;
            logical_bytes += e.size;
            Ok(())
        })?;
        Ok(TierInfo {
            id: self.id,
            containers: alloc.containers,
            segments: alloc.segments,
            files,
            logical_bytes,
            stored_bytes: alloc.stored_bytes,
            raw_bytes: alloc.raw_bytes,
        })
    }

    pub(crate) fn for_each_file(&self, f: &mut dyn FnMut(FileEntry) -> Result<()>) -> Result<()> {
        for item in self.db.iterator_cf_opt(cf(&self.db, CF_NAMESPACE), scan(), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.dberr(e))?;
            f(self.decode_namespace(&k, &v)?)?;
        }
        Ok(())
    }
}

/// Decodes `bytes` as each tier record type; for the fuzzers.
#[cfg(feature = "test-util")]
pub(crate) fn fuzz_decode(bytes: &[u8]) -> usize {
    let what = || "fuzz input".to_string();
    [
        durable::decode_record::<TierRecord>(META_MAGIC, META_VERSION, bytes, &what).is_ok(),
        durable::decode_record::<TierRecordV1>(META_MAGIC, 1, bytes, &what).is_ok(),
        durable::decode_record::<Alloc>(META_MAGIC, META_VERSION, bytes, &what).is_ok(),
        durable::decode_record::<AllocV1>(META_MAGIC, 1, bytes, &what).is_ok(),
        durable::decode_record::<FileEntryV1>(NS_MAGIC, 1, bytes, &what).is_ok(),
        durable::decode_record::<FileEntryV2>(NS_MAGIC, FORMAT_VERSION, bytes, &what).is_ok(),
        durable::decode_record::<GcRecord>(META_MAGIC, 1, bytes, &what).is_ok(),
        pins::fuzz_decode(bytes),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
        + object_fuzz_decode(bytes)
}

#[cfg(all(feature = "test-util", feature = "s3"))]
fn object_fuzz_decode(bytes: &[u8]) -> usize {
    object::fuzz_decode(bytes)
}

#[cfg(all(feature = "test-util", not(feature = "s3")))]
fn object_fuzz_decode(_bytes: &[u8]) -> usize {
    0
}
