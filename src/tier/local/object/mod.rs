//! The object-storage tier: containers are write-once objects in an S3
//! bucket; the index, namespace and counters live in a local RocksDB (the
//! tier's metadata directory), as in a backup appliance's cloud tier.
//!
//! Bucket layout under the tier's prefix (docs/FORMAT.md):
//! - `tier`: the tier record (identity and settings), written once;
//! - `containers/<hh>/<id:016x>.tsc`: sealed containers, byte for byte the
//!   local format, written create-only (`If-None-Match: *`); `hh` is a hash
//!   of the id that spreads sequential ids over 256 key prefixes;
//! - `namespace/<seq:016x>`: the namespace journal, one object per
//!   namespace commit, written before the commit is made locally.
//!
//! The containers rebuild the index and counters; the journal rebuilds the
//! namespace: [`ObjectTier::recover`] needs nothing but the bucket.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use rocksdb::{DB, WriteBatch};
use serde::{Deserialize, Serialize};

use super::store::{ContainerStore, NamespaceOp};
use super::{
    Alloc, CF_META, CF_NAMESPACE, KEY_ALLOC, KEY_NS_SEQ, KEY_STORE, LocalTier, META_MAGIC, META_VERSION, TierRecord,
    TierRecordV1, cf, lock, synced,
};
use crate::error::{Error, Result};
use crate::format::container::{self, HEADER_LEN};
use crate::format::durable::{self, decode_record, encode_record};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::records::FileEntryV1;
use crate::tier::local::TierConfig;
use crate::tier::{ContainerMeta, FileEntry, SegmentEntry, SourceTier, TargetTier, Tier, TierId};

const STORE_MAGIC: &[u8; 4] = b"TSST";
const STORE_VERSION: u16 = 1;
const JOURNAL_MAGIC: &[u8; 4] = b"TSNJ";
const JOURNAL_VERSION: u16 = 1;
const CHECKPOINT_MAGIC: &[u8; 4] = b"TSNC";
const CHECKPOINT_VERSION: u16 = 1;
/// Namespace entries per checkpoint part object.
const CHECKPOINT_PART: usize = 1 << 16;
/// How much of a container the first metadata read asks for: the header
/// and a table of up to 1,364 entries (a 4 MiB container of 16 KiB chunks
/// has about 256), so one ranged GET usually reads the whole table.
const META_PROBE: u64 = 64 << 10;
/// Headers remembered for segment reads (the caller holds the table, the
/// store needs the data region's offset); cleared when full.
const HEADER_CACHE: usize = 1 << 16;
/// Requests in flight when recovery reads many objects.
const RECOVER_CONCURRENCY: usize = 16;

/// Where an object tier lives and how to reach it.
///
/// [`from_env`](Self::from_env) reads the usual variables:
/// `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION` (default `us-east-1`). Requests are path-style (what Ceph
/// and MinIO expect) and plain `http://` endpoints are allowed.
#[derive(Clone, Debug)]
pub struct ObjectConfig {
    /// The bucket (it must exist).
    pub bucket: String,
    /// The key prefix the tier lives under (no leading or trailing `/`;
    /// empty for the bucket's root).
    pub prefix: String,
    /// The S3 endpoint, e.g. `http://127.0.0.1:7480`; `None` for AWS.
    pub endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// Retries of a transient failure (5xx, timeout, refused connection)
    /// before a request fails; the wait between them grows from 100 ms.
    pub max_retries: usize,
    /// No retry starts after this long since the first attempt.
    pub retry_timeout: Duration,
    /// One attempt's limit, whole response included.
    pub request_timeout: Duration,
    /// The limit on connecting.
    pub connect_timeout: Duration,
    /// Every this many namespace commits, the whole namespace is written
    /// to the bucket as a checkpoint and the journal entries before it are
    /// deleted, so recovery reads one checkpoint and a short journal
    /// (default 256; 0: never).
    pub checkpoint_every: u64,
}

impl ObjectConfig {
    /// A tier in `bucket` under `prefix`, with no endpoint or credentials
    /// (set them, or use [`from_env`](Self::from_env)).
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> ObjectConfig {
        ObjectConfig {
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_string(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            // Rides out a gateway restart of a few seconds; a dead one
            // fails a request in about 20 s rather than the client's
            // default of 3 minutes.
            max_retries: 8,
            retry_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            checkpoint_every: 256,
        }
    }

    /// Like [`new`](Self::new), with the endpoint, credentials and region
    /// from the environment (and `checkpoint_every` from
    /// `TIERSEED_CHECKPOINT_EVERY`, if set).
    pub fn from_env(bucket: impl Into<String>, prefix: impl Into<String>) -> ObjectConfig {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut c = ObjectConfig::new(bucket, prefix);
        c.endpoint = var("AWS_ENDPOINT_URL");
        c.access_key_id = var("AWS_ACCESS_KEY_ID");
        c.secret_access_key = var("AWS_SECRET_ACCESS_KEY");
        if let Some(r) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            c.region = r;
        }
        if let Some(n) = var("TIERSEED_CHECKPOINT_EVERY").and_then(|v| v.parse().ok()) {
            c.checkpoint_every = n;
        }
        c
    }

    /// Splits `s3://BUCKET/PREFIX` into bucket and prefix; `None` if `url`
    /// is not of that form.
    pub fn parse_url(url: &str) -> Option<(String, String)> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.len() < 3 || bucket.contains(['?', '#', ' ']) {
            return None;
        }
        Some((bucket.to_string(), prefix.trim_matches('/').to_string()))
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        s3_url(&self.bucket, &self.prefix)
    }
}

/// The store record kept in an object tier's local metadata: which bucket
/// and prefix it belongs to (version 1).
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct StoreRecordV1 {
    bucket: String,
    prefix: String,
}

/// A checkpoint's manifest (version 1), written after all its parts: a
/// checkpoint without one is incomplete and ignored.
#[derive(Serialize, Deserialize)]
struct CheckpointV1 {
    /// The journal entry the checkpoint includes, and every one before it.
    seq: u64,
    parts: u64,
    files: u64,
}

/// One namespace journal object (version 1).
#[derive(Serialize, Deserialize)]
enum JournalOpV1 {
    Put(FileEntryV1),
    Delete(String),
}

/// A tier whose containers are objects in an S3 bucket and whose index,
/// namespace and counters are in a local metadata directory. It is a
/// [`LocalTier`] in every other respect (it dereferences to one: ingest,
/// restore, verify, gc, info and remove work the same), and implements
/// [`SourceTier`] and [`TargetTier`].
///
/// Durability: `write_container` returns after the container's create-only
/// PUT succeeded and its index entries are synced locally; a namespace
/// change is journaled to the bucket before it is committed locally. At
/// open, containers left by a crash (PUT done, never indexed) are adopted
/// (never deleted: the metadata may be older than the bucket) and
/// journaled namespace changes never committed locally are rolled forward.
/// A lost metadata directory is rebuilt from the bucket with
/// [`recover`](Self::recover).
///
/// The tier owns a tokio runtime and blocks on it: call it from ordinary
/// threads, never from inside an async runtime (such a call fails with
/// [`Error::InvalidConfig`] rather than panicking).
pub struct ObjectTier {
    tier: LocalTier,
}

impl std::fmt::Debug for ObjectTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectTier").field("meta", &self.tier.dir).field("store", &self.tier.store.describe()).finish()
    }
}

impl std::ops::Deref for ObjectTier {
    type Target = LocalTier;
    fn deref(&self) -> &LocalTier {
        &self.tier
    }
}

/// What [`ObjectTier::recover`] rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoverReport {
    /// Containers read and indexed.
    pub containers: u64,
    /// Distinct segments indexed.
    pub segments: u64,
    /// Namespace journal entries replayed.
    pub journal_entries: u64,
    /// The checkpoint the namespace started from: the journal entry it
    /// includes (`None`: replayed from the first entry).
    pub checkpoint: Option<u64>,
    /// Files in the rebuilt namespace.
    pub files: u64,
    /// Containers that could not be read or failed their checks (each with
    /// the error); their segments are not indexed, and `verify` names the
    /// files that need them.
    pub unreadable: Vec<String>,
}

impl ObjectTier {
    /// Creates a new, empty tier in the bucket and its metadata in `meta`
    /// (which must not exist, or be an empty directory). The bucket's
    /// prefix must hold no tier.
    pub fn create(meta: impl AsRef<Path>, object: &ObjectConfig, config: TierConfig) -> Result<ObjectTier> {
        config.check()?;
        let meta = meta.as_ref();
        if LocalTier::exists(meta) || std::fs::read_dir(meta).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::NotATier {
                path: meta.to_path_buf(),
                reason: "not empty: the metadata directory of a new tier must be".into(),
            });
        }
        let store = S3Store::connect(object)?;
        let record = TierRecord::new(*uuid::Uuid::new_v4().as_bytes(), config);
        // The bucket first: a crash before the local metadata exists
        // leaves a tier record alone, which `create` (or `recover`)
        // completes when it is called again.
        let bytes = encode_record(META_MAGIC, META_VERSION, &record);
        let record = match store.put_create(&store.key("tier"), bytes.clone()) {
            Ok(()) => record,
            Err(Error::Object { status: Some(412), .. }) => {
                // A tier record and nothing else: a creation that stopped
                // (a crash or kill) between the bucket and the local
                // metadata. Finishing it is what `recover` would do; the
                // bug "a job killed while creating its object target could
                // never be run again" needed it. Anything more in the
                // bucket is a tier in use, never adopted by `create`.
                if !store.list()?.is_empty() || !store.journal_seqs()?.is_empty() {
                    return Err(Error::ForeignBucket {
                        location: object.url(),
                        reason: "already holds a tier: open it with its metadata directory, or rebuild that with recover".into(),
                    });
                }
                let existing = store.tier_record()?;
                log::warn!(
                    "{}: finishing the creation of tier {} (its record is in the bucket, it holds nothing yet)",
                    object.url(),
                    uuid::Uuid::from_bytes(existing.id)
                );
                existing
            }
            Err(e) => return Err(e),
        };
        LocalTier::create_meta(meta, &record, Some(store_record(object)), |_, _| Ok(()))?;
        Self::open(meta, object)
    }

    /// Opens the tier whose metadata is in `meta` and containers in the
    /// bucket, recovering from a crash. The bucket must hold this tier:
    /// another tier's bucket is refused with [`Error::ForeignBucket`].
    pub fn open(meta: impl AsRef<Path>, object: &ObjectConfig) -> Result<ObjectTier> {
        let meta = meta.as_ref();
        let tier = LocalTier::open_writer(meta, |db| Self::store_for(db, meta, object))?;
        let t = ObjectTier { tier };
        t.roll_forward_journal()?;
        Ok(t)
    }

    /// Opens the tier for reading only (see [`LocalTier::open_read_only`]).
    pub fn open_read_only(meta: impl AsRef<Path>, object: &ObjectConfig) -> Result<ObjectTier> {
        let meta = meta.as_ref();
        let tier = LocalTier::open_reader(meta, |db| Self::store_for(db, meta, object))?;
        Ok(ObjectTier { tier })
    }

    /// Whether `meta` holds an object tier's metadata.
    pub fn exists(meta: impl AsRef<Path>) -> bool {
        LocalTier::exists(meta)
    }

    /// Rebuilds a lost metadata directory from the bucket alone: the tier
    /// record, the index and counters from every container's table (a
    /// fingerprint listed by several containers is indexed in the first,
    /// as ingest and copy index it), and the namespace from its journal.
    /// `meta` must not exist, or be empty; it is built in a sibling temp
    /// directory and renamed into place, so a crash leaves nothing half
    /// recovered. Then opens the tier.
    pub fn recover(meta: impl AsRef<Path>, object: &ObjectConfig) -> Result<(ObjectTier, RecoverReport)> {
        let meta = meta.as_ref();
        let store = S3Store::connect(object)?;
        let record = store.tier_record()?;
        let mut report = RecoverReport::default();
        LocalTier::create_meta(meta, &record, Some(store_record(object)), |db, tmp| rebuild(&store, db, tmp, &mut report))?;
        let t = Self::open(meta, object)?;
        Ok((t, report))
    }

    /// The underlying tier (also reachable through `Deref`).
    pub fn tier(&self) -> &LocalTier {
        &self.tier
    }

    fn store_for(db: &DB, meta: &Path, object: &ObjectConfig) -> Result<Box<dyn ContainerStore>> {
        let dbp = meta.join(crate::format::layout::TIER_DB);
        let bytes = db.get_cf(cf(db, CF_META), KEY_STORE).map_err(|e| Error::db(&dbp, e))?.ok_or_else(|| Error::NotATier {
            path: meta.to_path_buf(),
            reason: "it holds a directory tier, not an object tier's metadata: name the directory itself as the tier".into(),
        })?;
        let have: StoreRecordV1 =
            decode_record(STORE_MAGIC, STORE_VERSION, &bytes, &|| format!("store record in {}", dbp.display()))?;
        let want = StoreRecordV1 { bucket: object.bucket.clone(), prefix: object.prefix.clone() };
        if have != want {
            return Err(Error::ForeignBucket {
                location: object.url(),
                reason: format!(
                    "the metadata in {} belongs to the tier in {}",
                    meta.display(),
                    s3_url(&have.bucket, &have.prefix)
                ),
            });
        }
        let store = S3Store::connect(object)?;
        let local: TierRecord = LocalTier::meta_record::<TierRecord, TierRecordV1>(db, meta, super::KEY_TIER, "tier record")?;
        let remote = store.tier_record()?;
        if remote.id != local.id {
            return Err(Error::ForeignBucket {
                location: object.url(),
                reason: format!(
                    "holds tier {}, but the metadata in {} is tier {}",
                    uuid::Uuid::from_bytes(remote.id),
                    meta.display(),
                    uuid::Uuid::from_bytes(local.id)
                ),
            });
        }
        Ok(Box::new(store))
    }

    /// Applies journal entries the bucket has past the local sequence
    /// number: changes journaled just before a crash (or a failed local
    /// commit), which a recovery from the bucket would apply too.
    fn roll_forward_journal(&self) -> Result<()> {
        let Some(store) = self.s3() else { return Ok(()) };
        let mut seq = lock(&self.tier.ns_seq);
        let (journal, checkpoints, _) = store.namespace_objects()?;
        if let Some(&c) = checkpoints.last()
            && c >= *seq
        {
            // The bucket checkpointed (and pruned) past what this metadata
            // has: it is older than the bucket by more than the journal
            // still holds.
            return Err(Error::ForeignBucket {
                location: store.describe(),
                reason: format!(
                    "the metadata in {} is behind the bucket (its namespace is at journal entry {:016x}, the bucket's checkpoint at {c:016x}): rebuild it from the bucket with recover, into a new directory",
                    self.tier.dir.display(),
                    *seq
                ),
            });
        }
        let pending: Vec<u64> = journal.into_iter().filter(|s| *s >= *seq).collect();
        for s in pending {
            if s != *seq {
                return Err(Error::corrupt_record(
                    format!("namespace journal of {}", store.describe()),
                    format!("entry {s:016x} follows {:016x}: an entry is missing", *seq),
                ));
            }
            log::warn!(
                "recovery: applying namespace journal entry {s:016x} of {}, committed to the bucket only",
                store.describe()
            );
            let ops = store.read_journal(s)?;
            let mut batch = super::namespace_batch(&self.tier.db, &ops);
            batch.put_cf(cf(&self.tier.db, CF_META), KEY_NS_SEQ, (s + 1).to_le_bytes());
            self.tier.db.write_opt(batch, &synced()).map_err(|e| self.tier.dberr(e))?;
            *seq = s + 1;
        }
        Ok(())
    }

    fn s3(&self) -> Option<&S3Store> {
        self.tier.store.as_any().downcast_ref::<S3Store>()
    }
}

fn s3_url(bucket: &str, prefix: &str) -> String {
    if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") }
}

fn store_record(object: &ObjectConfig) -> Vec<u8> {
    encode_record(STORE_MAGIC, STORE_VERSION, &StoreRecordV1 { bucket: object.bucket.clone(), prefix: object.prefix.clone() })
}

/// Fills a fresh metadata database from the bucket (recovery).
fn rebuild(store: &S3Store, db: &DB, tmp: &Path, report: &mut RecoverReport) -> Result<()> {
    let dbp = tmp.join(crate::format::layout::TIER_DB);
    let dberr = |e: rocksdb::Error| Error::db(&dbp, e);
    let ids = store.list()?;
    let mut alloc = Alloc::default();
    // Tables are read in parallel, indexed in id order: the first
    // container listing a fingerprint is its home.
    for chunk in ids.chunks(256) {
        let metas = store.read_metas(chunk);
        for (id, meta) in chunk.iter().zip(metas) {
            alloc.next_container = alloc.next_container.max(id.0 + 1);
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    log::warn!("recovery: container {id} unreadable, not indexed: {e}");
                    report.unreadable.push(e.to_string());
                    continue;
                }
            };
            report.containers += 1;
            let batch = super::index_table(db, &dbp, &meta, &mut alloc)?;
            db.write(batch).map_err(dberr)?;
        }
    }
    report.segments = alloc.segments;
    // The namespace: the latest complete checkpoint, then the journal
    // entries after it, in order.
    let (seqs, checkpoints, _) = store.namespace_objects()?;
    let ns = cf(db, CF_NAMESPACE);
    let mut next_seq = 0;
    if let Some(&c) = checkpoints.last() {
        for chunk in store.read_checkpoint(c)?.chunks(4096) {
            let mut batch = WriteBatch::default();
            for e in chunk {
                batch.put_cf(ns, e.path.as_bytes(), LocalTier::namespace_value(e));
            }
            db.write(batch).map_err(dberr)?;
        }
        report.checkpoint = Some(c);
        next_seq = c + 1;
    }
    let seqs: Vec<u64> = seqs.into_iter().filter(|s| *s >= next_seq).collect();
    for chunk in seqs.chunks(256) {
        for (s, ops) in chunk.iter().zip(store.read_journals(chunk)) {
            if *s != next_seq {
                return Err(Error::corrupt_record(
                    format!("namespace journal of {}", store.describe()),
                    format!("entry {s:016x} follows {next_seq:016x}: an entry is missing"),
                ));
            }
            db.write(super::namespace_batch(db, &ops?)).map_err(dberr)?;
            next_seq = s + 1;
            report.journal_entries += 1;
        }
    }
    report.files = db.iterator_cf(ns, rocksdb::IteratorMode::Start).count() as u64;
    let mut batch = WriteBatch::default();
    batch.put_cf(cf(db, CF_META), KEY_ALLOC, encode_record(META_MAGIC, META_VERSION, &alloc));
    batch.put_cf(cf(db, CF_META), KEY_NS_SEQ, next_seq.to_le_bytes());
    db.write_opt(batch, &synced()).map_err(dberr)?;
    db.flush().map_err(dberr)
}

/// Containers in a bucket, over `object_store`'s S3 client.
pub(crate) struct S3Store {
    rt: tokio::runtime::Runtime,
    s3: AmazonS3,
    bucket: String,
    prefix: String,
    /// Data-region offset and length per container, from headers read.
    headers: Mutex<HashMap<u64, (u64, u64)>>,
    checkpoint_every: u64,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl S3Store {
    fn connect(c: &ObjectConfig) -> Result<S3Store> {
        let bad = |m: String| Error::InvalidConfig(format!("object tier {}: {m}", c.url()));
        if c.bucket.len() < 3 {
            return Err(bad("a bucket name has at least 3 characters".into()));
        }
        let options = ClientOptions::new()
            // Every client option is replaced by this set: keep plain
            // http allowed here, or each request fails with "builder error".
            .with_allow_http(true)
            .with_timeout(c.request_timeout)
            .with_connect_timeout(c.connect_timeout);
        let retry = RetryConfig {
            backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(4), base: 2.0 },
            max_retries: c.max_retries,
            retry_timeout: c.retry_timeout,
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&c.bucket)
            .with_region(&c.region)
            .with_client_options(options)
            .with_retry(retry)
            .with_virtual_hosted_style_request(false);
        if let Some(e) = &c.endpoint {
            b = b.with_endpoint(e);
        }
        match (&c.access_key_id, &c.secret_access_key) {
            (Some(k), Some(s)) => b = b.with_access_key_id(k).with_secret_access_key(s),
            // Without keys the client would ask an instance-metadata
            // service over the network for some; tierseed never does.
            (None, None) => {
                return Err(bad("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the config's keys)".into()));
            }
            _ => return Err(bad("give both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into())),
        }
        let s3 = b.build().map_err(|e| bad(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tierseed-s3")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start its runtime: {e}")))?;
        Ok(S3Store {
            rt,
            s3,
            bucket: c.bucket.clone(),
            prefix: c.prefix.clone(),
            headers: Mutex::new(HashMap::new()),
            checkpoint_every: c.checkpoint_every,
        })
    }

    fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() { rest.to_string() } else { format!("{}/{rest}", self.prefix) }
    }

    fn container_key(&self, id: ContainerId) -> String {
        // A multiplicative hash of the id: sequential ids land on
        // different prefixes, which object stores shard by.
        let hh = (id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
        self.key(&format!("containers/{hh:02x}/{}", crate::format::layout::container_file(id)))
    }

    fn journal_key(&self, seq: u64) -> String {
        self.key(&format!("namespace/{seq:016x}"))
    }

    /// Runs a request on the store's runtime.
    fn block<F: std::future::Future>(&self, f: F) -> Result<F::Output> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::InvalidConfig(format!(
                "object tier {}: called from inside an async runtime; call it from an ordinary thread",
                self.describe()
            )));
        }
        Ok(self.rt.block_on(f))
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        use object_store::Error as E;
        let (status, transient) = match &e {
            E::NotFound { .. } => (Some(404), false),
            E::AlreadyExists { .. } | E::Precondition { .. } => (Some(412), false),
            E::PermissionDenied { .. } => (Some(403), false),
            E::Unauthenticated { .. } => (Some(401), false),
            E::NotModified { .. } => (Some(304), false),
            _ => {
                let s = status_in_chain(&e);
                (s, s.is_none_or(|s| s >= 500 || s == 408 || s == 429))
            }
        };
        Error::Object { op, bucket: self.bucket.clone(), key: key.to_string(), status, transient, source: Box::new(e) }
    }

    fn put_create(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = parse_key(key)?;
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        // The payload owns the bytes; a clone of it shares them (the
        // client may resend it on a retry, and a refusal compares with it).
        let payload = PutPayload::from(bytes);
        match self.block(self.s3.put_opts(&path, payload.clone(), opts))? {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                // A retry of a PUT whose first attempt landed finds its own
                // object; anything else under the key is someone else's.
                let same = |existing: &[u8]| {
                    existing.len() == payload.content_length()
                        && payload
                            .iter()
                            .scan(0, |at, part| {
                                let here = &existing[*at..*at + part.len()];
                                *at += part.len();
                                Some(here == &part[..])
                            })
                            .all(|eq| eq)
                };
                match self.get(key, None) {
                    Ok(existing) if same(&existing) => Ok(()),
                    _ => Err(Error::Object {
                        op: "PUT",
                        bucket: self.bucket.clone(),
                        key: key.to_string(),
                        status: Some(412),
                        transient: false,
                        source: "an object with other content already exists under this key (write-once)".into(),
                    }),
                }
            }
            Err(e) => Err(self.err("PUT", key, e)),
        }
    }

    /// The object's bytes (or a range of them), and its whole size.
    fn get_with_size(&self, key: &str, range: Option<Range<u64>>) -> Result<(Vec<u8>, u64)> {
        let path = parse_key(key)?;
        let opts = GetOptions { range: range.map(GetRange::Bounded), ..GetOptions::default() };
        let r = self.block(async {
            let res = self.s3.get_opts(&path, opts).await?;
            let size = res.meta.size;
            let bytes = res.bytes().await?;
            Ok::<_, object_store::Error>((bytes.to_vec(), size))
        })?;
        r.map_err(|e| self.err("GET", key, e))
    }

    fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Vec<u8>> {
        self.get_with_size(key, range).map(|(b, _)| b)
    }

    fn list_keys(&self, under: &str) -> Result<Vec<String>> {
        let prefix = self.key(under);
        let path = parse_key(&prefix)?;
        let r = self.block(self.s3.list(Some(&path)).map_ok(|m| m.location.to_string()).try_collect::<Vec<String>>())?;
        r.map_err(|e| self.err("LIST", &prefix, e))
    }

    fn tier_record(&self) -> Result<TierRecord> {
        let key = self.key("tier");
        let bytes = match self.get(&key, None) {
            Err(Error::Object { status: Some(404), .. }) => {
                return Err(Error::ForeignBucket {
                    location: self.describe(),
                    reason: "holds no tier (no tier record): create one, or check the bucket and prefix".into(),
                });
            }
            r => r?,
        };
        let what = || format!("tier record s3://{}/{key}", self.bucket);
        Ok(match durable::decode_versioned::<TierRecord, TierRecordV1>(META_MAGIC, META_VERSION, &bytes, &what)? {
            durable::Versioned::Current(r) => r,
            durable::Versioned::V1(r) => r.into(),
        })
    }

    /// Parses a container's header from the first bytes of its object,
    /// and checks the object's size against it (truncation, without
    /// reading the data).
    fn sized_header(&self, id: ContainerId, probe: &[u8], size: u64) -> Result<container::Header> {
        let header = container::parse_header(probe, id, &self.location(id))?;
        if size != header.file_len() {
            return Err(Error::CorruptContainer {
                id,
                path: Some(self.location(id)),
                reason: format!("object is {size} bytes, header implies {}", header.file_len()),
            });
        }
        Ok(header)
    }

    fn parse_meta(&self, id: ContainerId, probe: &[u8], size: u64) -> Result<ContainerMeta> {
        let loc = self.location(id);
        let header = self.sized_header(id, probe, size)?;
        let start = header.data_start();
        let table = if start <= probe.len() as u64 {
            probe[HEADER_LEN..start as usize].to_vec()
        } else {
            self.get(&self.container_key(id), Some(HEADER_LEN as u64..start))?
        };
        let meta = container::parse_table(&header, &table, &loc)?;
        self.remember(id, start, header.data_len);
        Ok(meta)
    }

    fn remember(&self, id: ContainerId, start: u64, data_len: u64) {
        let mut h = lock(&self.headers);
        if h.len() >= HEADER_CACHE {
            h.clear();
        }
        h.insert(id.0, (start, data_len));
    }

    /// Several objects (or their first `limit` bytes) and their sizes, with
    /// requests in flight together.
    fn get_many(&self, keys: Vec<String>, limit: Option<u64>) -> Vec<Result<(Vec<u8>, u64)>> {
        let n = keys.len();
        let got = self.block(
            futures::stream::iter(keys.into_iter().map(|key| async move {
                let path = parse_key(&key)?;
                let opts = GetOptions { range: limit.map(|l| GetRange::Bounded(0..l)), ..GetOptions::default() };
                let res = self.s3.get_opts(&path, opts).await.map_err(|e| self.err("GET", &key, e))?;
                let size = res.meta.size;
                let bytes = res.bytes().await.map_err(|e| self.err("GET", &key, e))?;
                Ok::<_, Error>((bytes.to_vec(), size))
            }))
            .buffered(RECOVER_CONCURRENCY)
            .collect::<Vec<_>>(),
        );
        match got {
            Ok(g) => g,
            Err(e) => (0..n).map(|_| Err(Error::internal(e.to_string()))).collect(),
        }
    }

    /// Several containers' metadata, with requests in flight together.
    fn read_metas(&self, ids: &[ContainerId]) -> Vec<Result<ContainerMeta>> {
        let probes = self.get_many(ids.iter().map(|id| self.container_key(*id)).collect(), Some(META_PROBE));
        ids.iter().zip(probes).map(|(id, r)| r.and_then(|(b, size)| self.parse_meta(*id, &b, size))).collect()
    }

    fn journal_seqs(&self) -> Result<Vec<u64>> {
        Ok(self.namespace_objects()?.0)
    }

    /// The journal entries and the complete checkpoints (by the entry each
    /// includes) under `namespace/`, each ascending; also every checkpoint
    /// key prefix seen, complete or not (for pruning).
    fn namespace_objects(&self) -> Result<(Vec<u64>, Vec<u64>, Vec<u64>)> {
        let (mut seqs, mut complete, mut any) = (Vec::new(), Vec::new(), Vec::new());
        let base = self.key("namespace/");
        for k in self.list_keys("namespace")? {
            let rest = k.strip_prefix(&base).unwrap_or(&k);
            let hex16 = |t: &str| (t.len() == 16).then(|| u64::from_str_radix(t, 16).ok()).flatten();
            if let Some(s) = hex16(rest) {
                seqs.push(s);
            } else if let Some((dir, file)) = rest.split_once('/')
                && let Some(s) = dir.strip_prefix("ckpt-").and_then(hex16)
            {
                any.push(s);
                if file == "manifest" {
                    complete.push(s);
                }
            } else {
                log::warn!("{}: unexpected object {k:?} under namespace/ left alone", self.describe());
            }
        }
        for v in [&mut seqs, &mut complete, &mut any] {
            v.sort_unstable();
            v.dedup();
        }
        Ok((seqs, complete, any))
    }

    fn checkpoint_key(&self, seq: u64, file: &str) -> String {
        self.key(&format!("namespace/ckpt-{seq:016x}/{file}"))
    }

    /// The namespace entries of the complete checkpoint at `seq`.
    fn read_checkpoint(&self, seq: u64) -> Result<Vec<FileEntry>> {
        let what = |k: &str| format!("namespace checkpoint s3://{}/{k}", self.bucket);
        let key = self.checkpoint_key(seq, "manifest");
        let m: CheckpointV1 = decode_record(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, &self.get(&key, None)?, &|| what(&key))?;
        if m.seq != seq {
            return Err(Error::corrupt_record(what(&key), format!("names entry {:016x}", m.seq)));
        }
        let mut out = Vec::with_capacity(m.files.min(1 << 24) as usize);
        for part in 0..m.parts {
            let key = self.checkpoint_key(seq, &format!("part-{part:08x}"));
            let entries: Vec<FileEntryV1> =
                decode_record(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, &self.get(&key, None)?, &|| what(&key))?;
            out.extend(entries.into_iter().map(FileEntry::from));
        }
        if out.len() as u64 != m.files {
            return Err(Error::corrupt_record(
                what(&key),
                format!("{} entries in its parts, the manifest says {}", out.len(), m.files),
            ));
        }
        Ok(out)
    }

    /// Deletes every object of the checkpoint at `seq`, complete or not.
    fn delete_checkpoint(&self, seq: u64) -> Result<()> {
        let prefix = format!("namespace/ckpt-{seq:016x}");
        for k in self.list_keys(&prefix)? {
            self.delete_key(&k)?;
        }
        Ok(())
    }

    fn decode_journal(&self, seq: u64, bytes: &[u8]) -> Result<Vec<NamespaceOp>> {
        let key = self.journal_key(seq);
        let ops: Vec<JournalOpV1> =
            decode_record(JOURNAL_MAGIC, JOURNAL_VERSION, bytes, &|| format!("namespace journal s3://{}/{key}", self.bucket))?;
        Ok(ops
            .into_iter()
            .map(|op| match op {
                JournalOpV1::Put(e) => NamespaceOp::Put(FileEntry::from(e)),
                JournalOpV1::Delete(p) => NamespaceOp::Delete(p),
            })
            .collect())
    }

    fn read_journal(&self, seq: u64) -> Result<Vec<NamespaceOp>> {
        let bytes = self.get(&self.journal_key(seq), None)?;
        self.decode_journal(seq, &bytes)
    }

    fn read_journals(&self, seqs: &[u64]) -> Vec<Result<Vec<NamespaceOp>>> {
        let got = self.get_many(seqs.iter().map(|s| self.journal_key(*s)).collect(), None);
        seqs.iter().zip(got).map(|(s, r)| r.and_then(|(b, _)| self.decode_journal(*s, &b))).collect()
    }

    /// Deletes one object (a missing one is not an error on S3).
    fn delete_key(&self, key: &str) -> Result<()> {
        let path = parse_key(key)?;
        self.block(self.s3.delete(&path))?.map_err(|e| self.err("DELETE", key, e))
    }

    fn missing(&self, id: ContainerId, e: Error) -> Error {
        match e {
            Error::Object { status: Some(404), .. } => {
                Error::MissingContainer { id, context: format!(" (expected at {})", self.location(id).display()) }
            }
            e => e,
        }
    }
}

/// A key built by tierseed, taken as is: `Path::from` would percent-encode
/// it (twice, if applied again), and a later delete would silently miss.
fn parse_key(key: &str) -> Result<Key> {
    Key::parse(key).map_err(|e| Error::InvalidConfig(format!("object key {key:?}: {e}")))
}

/// The HTTP status an `object_store` error carries in its message chain
/// ("... status code: 503 Service Unavailable ..."), if any: the client
/// does not expose its retry error type.
fn status_in_chain(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if let Some(i) = text.find("status code: ") {
            let digits: String = text[i + 13..].chars().take_while(char::is_ascii_digit).collect();
            if let Ok(s) = digits.parse() {
                return Some(s);
            }
        }
        cur = err.source();
    }
    None
}

impl ContainerStore for S3Store {
    fn location(&self, id: ContainerId) -> PathBuf {
        PathBuf::from(format!("s3://{}/{}", self.bucket, self.container_key(id)))
    }

    fn put(&self, id: ContainerId, bytes: Vec<u8>) -> Result<()> {
        self.put_create(&self.container_key(id), bytes)?;
        crate::testing::crashpoint::step("put", &crate::format::layout::container_file(id));
        Ok(())
    }

    fn read_meta(&self, id: ContainerId) -> Result<ContainerMeta> {
        // Always from the store, never from a cache: Copy's check that an
        // indexed target container still exists, and Verify at the
        // metadata level, rest on this read (the bug "a bucket that lost a
        // container passed Verify from a cached table").
        let (probe, size) = self.get_with_size(&self.container_key(id), Some(0..META_PROBE)).map_err(|e| self.missing(id, e))?;
        self.parse_meta(id, &probe, size)
    }

    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>> {
        let cached = lock(&self.headers).get(&id.0).copied();
        let (start, data_len) = if let Some(h) = cached {
            h
        } else {
            let (probe, size) =
                self.get_with_size(&self.container_key(id), Some(0..HEADER_LEN as u64)).map_err(|e| self.missing(id, e))?;
            let header = self.sized_header(id, &probe, size)?;
            self.remember(id, header.data_start(), header.data_len);
            (header.data_start(), header.data_len)
        };
        let mut ranges = Vec::with_capacity(which.len());
        for e in which {
            let end = u64::from(e.offset) + u64::from(e.len);
            if end > data_len {
                return Err(Error::CorruptContainer {
                    id,
                    path: Some(self.location(id)),
                    reason: format!("segment {} ends at {end}, past the data region ({data_len} bytes)", e.fingerprint),
                });
            }
            ranges.push(start + u64::from(e.offset)..start + end);
        }
        let key = self.container_key(id);
        let path = parse_key(&key)?;
        // Coalesced by the client into few ranged GETs.
        let got = self.block(self.s3.get_ranges(&path, &ranges))?.map_err(|e| self.missing(id, self.err("GET", &key, e)))?;
        Ok(got.into_iter().map(|b| b.to_vec()).collect())
    }

    fn scrub(&self, id: ContainerId) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
        let bytes = self.get(&self.container_key(id), None).map_err(|e| self.missing(id, e))?;
        container::decode_container(&bytes, id).map_err(|e| match e {
            Error::CorruptContainer { id, reason, .. } => Error::CorruptContainer { id, path: Some(self.location(id)), reason },
            e => e,
        })
    }

    fn list(&self) -> Result<Vec<ContainerId>> {
        let mut ids = Vec::new();
        for k in self.list_keys("containers")? {
            let name = k.rsplit('/').next().unwrap_or_default();
            match crate::format::layout::parse_container_file(name) {
                // Only where this store would put it: a copy under another
                // hash prefix is not a container of this tier.
                Some(id) if self.container_key(id) == k => ids.push(id),
                _ => log::warn!("{}: unexpected object {k:?} under containers/ left alone", self.describe()),
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn delete(&self, id: ContainerId) -> Result<()> {
        lock(&self.headers).remove(&id.0);
        self.delete_key(&self.container_key(id))
    }

    fn recover(&self, next_container: u64) -> Result<Vec<ContainerId>> {
        // Adopted, never deleted: the metadata directory is apart from the
        // bucket and can be older than it (restored from a backup or a
        // snapshot); deleting "unindexed" containers would then destroy
        // data the bucket's namespace needs. Adopting the last run's one
        // or two costs only their space until gc.
        Ok(self.list()?.into_iter().filter(|id| id.0 >= next_container).collect())
    }

    fn journal(&self, seq: u64, ops: &[NamespaceOp]) -> Result<()> {
        let record: Vec<JournalOpV1> = ops
            .iter()
            .map(|op| match op {
                NamespaceOp::Put(e) => JournalOpV1::Put(FileEntryV1::from(e)),
                NamespaceOp::Delete(p) => JournalOpV1::Delete(p.clone()),
            })
            .collect();
        self.put_create(&self.journal_key(seq), encode_record(JOURNAL_MAGIC, JOURNAL_VERSION, &record))?;
        crate::testing::crashpoint::hit("object.journaled_not_committed");
        Ok(())
    }

    fn journals(&self) -> bool {
        true
    }

    fn checkpoint_due(&self, seq: u64) -> bool {
        self.checkpoint_every > 0 && (seq + 1).is_multiple_of(self.checkpoint_every)
    }

    fn checkpoint(&self, seq: u64, page: &mut super::store::NamespacePages<'_>) -> Result<()> {
        // Parts first, the manifest last: only a manifest makes it count.
        let mut after: Option<String> = None;
        let (mut parts, mut files) = (0u64, 0u64);
        loop {
            let entries = page(after.as_deref(), CHECKPOINT_PART)?;
            let Some(last) = entries.last() else { break };
            after = Some(last.path.clone());
            files += entries.len() as u64;
            let record: Vec<FileEntryV1> = entries.iter().map(FileEntryV1::from).collect();
            let key = self.checkpoint_key(seq, &format!("part-{parts:08x}"));
            self.put_create(&key, encode_record(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, &record))?;
            parts += 1;
        }
        crate::testing::crashpoint::hit("object.checkpoint_before_manifest");
        let manifest = CheckpointV1 { seq, parts, files };
        self.put_create(&self.checkpoint_key(seq, "manifest"), encode_record(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, &manifest))?;
        // Now the entries it includes, and older checkpoints, are redundant.
        let (seqs, _, checkpoints) = self.namespace_objects()?;
        for s in seqs.into_iter().filter(|s| *s <= seq) {
            self.delete_key(&self.journal_key(s))?;
        }
        for c in checkpoints.into_iter().filter(|c| *c < seq) {
            self.delete_checkpoint(c)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        s3_url(&self.bucket, &self.prefix)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Tier for ObjectTier {
    fn tier_id(&self) -> Result<TierId> {
        self.tier.tier_id()
    }
    fn pin(&self, ids: &[ContainerId], and_after: Option<ContainerId>) -> Result<u64> {
        self.tier.pin(ids, and_after)
    }
    fn unpin(&self, token: u64) {
        self.tier.unpin(token);
    }
    fn hold(&self, hold: &crate::tier::JobHold) -> Result<()> {
        self.tier.hold(hold)
    }
    fn release_hold(&self, job: &uuid::Uuid) -> Result<()> {
        self.tier.release_hold(job)
    }
    fn locate(&self, fingerprints: &[Fingerprint]) -> Result<Vec<Option<ContainerId>>> {
        self.tier.locate(fingerprints)
    }
    fn list_files(&self, after: Option<&str>, limit: usize) -> Result<Vec<FileEntry>> {
        self.tier.list_files(after, limit)
    }
    fn file_entries(&self, paths: &[String]) -> Result<Vec<Option<FileEntry>>> {
        self.tier.file_entries(paths)
    }
    fn container_ids(&self) -> Result<Vec<ContainerId>> {
        self.tier.container_ids()
    }
    fn read_metadata(&self, id: ContainerId) -> Result<ContainerMeta> {
        self.tier.read_metadata(id)
    }
    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>> {
        self.tier.read_segments(id, which)
    }
}

impl SourceTier for ObjectTier {
    fn fingerprint_count(&self) -> Result<u64> {
        self.tier.fingerprint_count()
    }
    fn fingerprints(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        self.tier.fingerprints(after, limit)
    }
    fn remove_files(&self, entries: &[FileEntry]) -> Result<Vec<bool>> {
        self.tier.remove_files(entries)
    }
}

impl TargetTier for ObjectTier {
    fn container_target_size(&self) -> u64 {
        self.tier.container_target_size()
    }
    fn write_container(
        &self,
        kind: crate::tier::ContainerKind,
        segments: &[crate::tier::StoredSegment<'_>],
    ) -> Result<ContainerId> {
        self.tier.write_container(kind, segments)
    }
    fn upsert_files(&self, entries: &[FileEntry]) -> Result<()> {
        self.tier.upsert_files(entries)
    }
    fn retire_segments(&self, suspects: &[(Fingerprint, ContainerId)]) -> Result<u64> {
        self.tier.retire_segments(suspects)
    }
    fn sorted_index_len(&self) -> Result<Option<u64>> {
        self.tier.sorted_index_len()
    }
    fn sorted_index_page(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        self.tier.sorted_index_page(after, limit)
    }
}
