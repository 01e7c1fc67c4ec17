//! The bucket store, over S3 or Azure Blob (one `object_store` client
//! behind `dyn ObjectStore`): containers as objects (create-only puts,
//! ranged reads with a cache of headers), the namespace journal and its
//! checkpoints in the bucket, listing and deletion, and recovery's reads.

mod config;
mod counted;
pub(crate) mod records;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
#[cfg(feature = "azure")]
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

pub(crate) use config::bucket_url;
pub use config::{ObjectConfig, ObjectService};
use counted::{Counted, Counters};
use records::{CHECKPOINT_MAGIC, CHECKPOINT_VERSION, CheckpointV1, JOURNAL_MAGIC, JOURNAL_VERSION, JournalOpV1, JournalOpV2};

use super::{ContainerStore, Kept, NamespaceOp, NamespacePages};
use crate::error::{Error, FormatError, Result, TierError};
use crate::format::durable::{self, encode_record};
use crate::format::fingerprint::ContainerId;
use crate::format::open::{self, AnyHeader, PROBE_HEADER, Table};
use crate::format::records::{Entries, FileEntryV1, FileEntryV2, decode_entries};
use crate::format::seal::{self, OpenTable, Sealer};
use crate::tier::{ContainerMeta, FileEntry, RequestCounts, SegmentEntry};

/// Namespace entries per checkpoint part object.
const CHECKPOINT_PART: usize = 1 << 16;
/// How much of a container the first metadata read asks for: the header
/// and a table of up to 1,364 entries (a 4 MiB container of 16 KiB chunks
/// has about 256), so one ranged GET usually reads the whole table.
const META_PROBE: u64 = 64 << 10;
/// Headers remembered for segment reads (the caller holds the table, the
/// store needs the data region's offset); cleared when full.
const HEADER_CACHE: usize = 1 << 16;
/// Opened tables of sealed containers remembered for segment reads (their
/// tags); cleared when full. A sealed table of a 4 MiB container is about
/// 16 KiB, so this holds at most some 16 MiB.
const SEALED_TABLE_CACHE: usize = 1024;
/// The key slots object of an encrypted tier, under the prefix.
const KEYS_OBJECT: &str = "keys";
/// Requests in flight when recovery reads many objects.
const RECOVER_CONCURRENCY: usize = 16;

/// Containers in a bucket, over `object_store`'s S3 or Azure client.
pub(crate) struct BucketStore {
    rt: tokio::runtime::Runtime,
    client: Arc<dyn ObjectStore>,
    service: ObjectService,
    /// What `client` (a [`Counted`] decorator) was asked to send.
    counts: Arc<Counters>,
    bucket: String,
    prefix: String,
    /// Data-region offset and length per container, from headers read.
    headers: Kept<(u64, u64)>,
    /// An encrypted tier's opened tables, per container.
    tables: Kept<Arc<OpenTable>>,
    checkpoint_every: u64,
    /// An encrypted tier's key: containers, journal entries and
    /// checkpoints are sealed under it.
    sealer: Option<Arc<Sealer>>,
}

impl std::fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl BucketStore {
    pub(crate) fn connect(c: &ObjectConfig) -> Result<BucketStore> {
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
        let (key, secret) = match (&c.access_key_id, &c.secret_access_key) {
            (Some(k), Some(s)) => (k, s),
            // Without keys the client would ask an instance-metadata
            // service (or Azure's CLI) over the network for some; tierseed
            // never does.
            (None, None) => {
                return Err(bad(format!("no credentials: set {} (or the config's keys)", credential_vars(c.service))));
            }
            _ => return Err(bad(format!("give both {}", credential_vars(c.service)))),
        };
        let client: Arc<dyn ObjectStore> = match c.service {
            ObjectService::S3 => {
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(&c.bucket)
                    .with_region(&c.region)
                    .with_client_options(options)
                    .with_retry(retry)
                    .with_virtual_hosted_style_request(false)
                    .with_access_key_id(key)
                    .with_secret_access_key(secret);
                if let Some(e) = &c.endpoint {
                    b = b.with_endpoint(e);
                }
                Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
            }
            #[cfg(feature = "azure")]
            ObjectService::Azure => {
                let mut b = MicrosoftAzureBuilder::new()
                    .with_container_name(&c.bucket)
                    .with_account(key)
                    .with_access_key(secret)
                    .with_client_options(options)
                    .with_retry(retry);
                if let Some(e) = &c.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
            }
            #[cfg(not(feature = "azure"))]
            ObjectService::Azure => return Err(bad("this build has no Azure support (feature `azure`)".into())),
        };
        let counts = Arc::new(Counters::default());
        let page = match c.service {
            ObjectService::S3 => 1000,
            ObjectService::Azure => 5000,
        };
        let client: Arc<dyn ObjectStore> = Arc::new(Counted { inner: client, counts: counts.clone(), page });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tierseed-object")
            .enable_all()
            .build()
            .map_err(|e| bad(format!("cannot start its runtime: {e}")))?;
        Ok(BucketStore {
            rt,
            client,
            service: c.service,
            counts,
            bucket: c.bucket.clone(),
            prefix: c.prefix.clone(),
            headers: Kept::new(HEADER_CACHE),
            tables: Kept::new(SEALED_TABLE_CACHE),
            checkpoint_every: c.checkpoint_every,
            sealer: None,
        })
    }

    /// `SCHEME://bucket/key`, for messages.
    fn url_of(&self, key: &str) -> String {
        format!("{}://{}/{key}", self.service.scheme(), self.bucket)
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
        Error::Tier(TierError::Object {
            op,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            status,
            transient,
            source: Box::new(e),
        })
    }

    /// The chosen segments' bytes as stored in container `id` (still
    /// sealed in an encrypted tier), from the header's data region, by
    /// ranged GETs the client coalesces.
    fn fetch_ranges(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Bytes>> {
        let cached = self.headers.get(id);
        let (start, data_len) = if let Some(h) = cached {
            h
        } else {
            let (probe, size) =
                self.get_with_size(&self.container_key(id), Some(0..PROBE_HEADER as u64)).map_err(|e| self.missing(id, e))?;
            let header = self.sized_header(id, &probe, size)?;
            self.headers.keep(id, (header.data_start(), header.data_len()));
            (header.data_start(), header.data_len())
        };
        let mut ranges = Vec::with_capacity(which.len());
        for e in which {
            let end = u64::from(e.offset) + u64::from(e.len);
            if end > data_len {
                return Err(Error::Format(FormatError::CorruptContainer {
                    id,
                    path: Some(self.location(id)),
                    reason: format!("segment {} ends at {end}, past the data region ({data_len} bytes)", e.fingerprint),
                }));
            }
            ranges.push(start + u64::from(e.offset)..start + end);
        }
        let key = self.container_key(id);
        let path = parse_key(&key)?;
        // Coalesced by the client into few ranged GETs.
        self.block(self.client.get_ranges(&path, &ranges))?.map_err(|e| self.missing(id, self.err("GET", &key, e)))
    }

    fn put_create(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let path = parse_key(key)?;
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        // The payload owns the bytes; a clone of it shares them (the
        // client may resend it on a retry, and a refusal compares with it).
        let payload = PutPayload::from(bytes);
        match self.block(self.client.put_opts(&path, payload.clone(), opts))? {
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
                    _ => Err(Error::Tier(TierError::Object {
                        op: "PUT",
                        bucket: self.bucket.clone(),
                        key: key.to_string(),
                        status: Some(412),
                        transient: false,
                        source: "an object with other content already exists under this key (write-once)".into(),
                    })),
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
            let res = self.client.get_opts(&path, opts).await?;
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
        let r = self.block(self.client.list(Some(&path)).map_ok(|m| m.location.to_string()).try_collect::<Vec<String>>())?;
        r.map_err(|e| self.err("LIST", &prefix, e))
    }

    /// Writes the tier record (create-only): `tier` under the prefix.
    pub(crate) fn put_tier_record(&self, bytes: Vec<u8>) -> Result<()> {
        self.put_create(&self.key("tier"), bytes)
    }

    /// The tier record's bytes, and a name for it in errors; a prefix
    /// without one holds no tier ([`TierError::ForeignBucket`]).
    pub(crate) fn tier_record_bytes(&self) -> Result<(Vec<u8>, String)> {
        let key = self.key("tier");
        match self.get(&key, None) {
            Err(Error::Tier(TierError::Object { status: Some(404), .. })) => Err(Error::Tier(TierError::ForeignBucket {
                location: self.describe(),
                reason: "holds no tier (no tier record): create one, or check the bucket and prefix".into(),
            })),
            r => Ok((r?, format!("tier record {}", self.url_of(&key)))),
        }
    }

    /// Parses a container's header from the first bytes of its object,
    /// and checks the object's size against it (truncation, without
    /// reading the data).
    fn sized_header(&self, id: ContainerId, probe: &[u8], size: u64) -> Result<AnyHeader> {
        let header = open::parse_header(probe, id, &self.location(id), self.sealer.as_deref())?;
        if size != header.file_len() {
            return Err(Error::Format(FormatError::CorruptContainer {
                id,
                path: Some(self.location(id)),
                reason: format!("object is {size} bytes, header implies {}", header.file_len()),
            }));
        }
        Ok(header)
    }

    fn parse_meta(&self, id: ContainerId, probe: &[u8], size: u64) -> Result<ContainerMeta> {
        let loc = self.location(id);
        let header = self.sized_header(id, probe, size)?;
        let (table_start, start) = (header.table_start(), header.data_start());
        let table = if start <= probe.len() as u64 {
            probe[table_start as usize..start as usize].to_vec()
        } else {
            self.get(&self.container_key(id), Some(table_start..start))?
        };
        let table = open::parse_table(&header, &table, &loc, self.sealer.as_deref())?;
        self.headers.keep(id, (start, header.data_len()));
        Ok(match table {
            Table::Plain(m) => m,
            Table::Sealed(t) => {
                let meta = t.meta.clone();
                self.tables.keep(id, Arc::new(t));
                meta
            }
        })
    }

    /// Seals a journal entry or checkpoint part of an encrypted tier,
    /// bound to its key under the prefix.
    fn seal_record(&self, key: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
        match &self.sealer {
            Some(s) => seal::seal_object(s, self.relative(key), &bytes),
            None => Ok(bytes),
        }
    }

    /// Opens what [`seal_record`](Self::seal_record) sealed.
    fn open_record(&self, key: &str, bytes: Vec<u8>) -> Result<Vec<u8>> {
        match &self.sealer {
            Some(s) => seal::open_object(s, self.relative(key), &bytes, &|| format!("sealed object {}", self.url_of(key))),
            None => Ok(bytes),
        }
    }

    fn relative<'k>(&self, key: &'k str) -> &'k str {
        key.strip_prefix(&self.prefix).map_or(key, |k| k.trim_start_matches('/'))
    }

    /// Several objects (or their first `limit` bytes) and their sizes, with
    /// requests in flight together.
    fn get_many(&self, keys: Vec<String>, limit: Option<u64>) -> Vec<Result<(Vec<u8>, u64)>> {
        let n = keys.len();
        let got = self.block(
            futures::stream::iter(keys.into_iter().map(|key| async move {
                let path = parse_key(&key)?;
                let opts = GetOptions { range: limit.map(|l| GetRange::Bounded(0..l)), ..GetOptions::default() };
                let res = self.client.get_opts(&path, opts).await.map_err(|e| self.err("GET", &key, e))?;
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
    pub(crate) fn read_metas(&self, ids: &[ContainerId]) -> Vec<Result<ContainerMeta>> {
        let probes = self.get_many(ids.iter().map(|id| self.container_key(*id)).collect(), Some(META_PROBE));
        ids.iter().zip(probes).map(|(id, r)| r.and_then(|(b, size)| self.parse_meta(*id, &b, size))).collect()
    }

    pub(crate) fn journal_seqs(&self) -> Result<Vec<u64>> {
        Ok(self.namespace_objects()?.0)
    }

    /// The journal entries and the complete checkpoints (by the entry each
    /// includes) under `namespace/`, each ascending; also every checkpoint
    /// key prefix seen, complete or not (for pruning).
    pub(crate) fn namespace_objects(&self) -> Result<(Vec<u64>, Vec<u64>, Vec<u64>)> {
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
    pub(crate) fn read_checkpoint(&self, seq: u64) -> Result<Vec<FileEntry>> {
        let what = |k: &str| format!("namespace checkpoint {}", self.url_of(k));
        let key = self.checkpoint_key(seq, "manifest");
        // The manifest's layout is the same at both versions.
        let m = match durable::decode_versioned::<CheckpointV1, CheckpointV1>(
            CHECKPOINT_MAGIC,
            CHECKPOINT_VERSION,
            &self.open_record(&key, self.get(&key, None)?)?,
            &|| what(&key),
        )? {
            durable::Versioned::Current(m) | durable::Versioned::V1(m) => m,
        };
        if m.seq != seq {
            return Err(Error::corrupt_record(what(&key), format!("names entry {:016x}", m.seq)));
        }
        let mut out = Vec::with_capacity(m.files.min(1 << 24) as usize);
        for part in 0..m.parts {
            let key = self.checkpoint_key(seq, &format!("part-{part:08x}"));
            let Entries(entries) = decode_entries::<Entries, Vec<FileEntryV2>, Vec<FileEntryV1>>(
                CHECKPOINT_MAGIC,
                CHECKPOINT_VERSION,
                &self.open_record(&key, self.get(&key, None)?)?,
                &|| what(&key),
            )?;
            out.extend(entries);
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

    fn decode_journal(&self, seq: u64, bytes: Vec<u8>) -> Result<Vec<NamespaceOp>> {
        let key = self.journal_key(seq);
        let what = || format!("namespace journal {}", self.url_of(&key));
        let bytes = self.open_record(&key, bytes)?;
        Ok(
            match durable::decode_versioned::<Vec<JournalOpV2>, Vec<JournalOpV1>>(JOURNAL_MAGIC, JOURNAL_VERSION, &bytes, &what)?
            {
                durable::Versioned::Current(ops) => ops
                    .into_iter()
                    .map(|op| match op {
                        JournalOpV2::Put(e) => NamespaceOp::Put(FileEntry::from(e)),
                        JournalOpV2::Delete(p) => NamespaceOp::Delete(p),
                    })
                    .collect(),
                durable::Versioned::V1(ops) => ops
                    .into_iter()
                    .map(|op| match op {
                        JournalOpV1::Put(e) => NamespaceOp::Put(FileEntry::from(e)),
                        JournalOpV1::Delete(p) => NamespaceOp::Delete(p),
                    })
                    .collect(),
            },
        )
    }

    fn read_journal(&self, seq: u64) -> Result<Vec<NamespaceOp>> {
        let bytes = self.get(&self.journal_key(seq), None)?;
        self.decode_journal(seq, bytes)
    }

    pub(crate) fn read_journals(&self, seqs: &[u64]) -> Vec<Result<Vec<NamespaceOp>>> {
        let got = self.get_many(seqs.iter().map(|s| self.journal_key(*s)).collect(), None);
        seqs.iter().zip(got).map(|(s, r)| r.and_then(|(b, _)| self.decode_journal(*s, b))).collect()
    }

    /// Deletes one object (a missing one is not an error on S3).
    fn delete_key(&self, key: &str) -> Result<()> {
        let path = parse_key(key)?;
        self.block(self.client.delete(&path))?.map_err(|e| self.err("DELETE", key, e))
    }

    fn missing(&self, id: ContainerId, e: Error) -> Error {
        match e {
            Error::Tier(TierError::Object { status: Some(404), .. }) => Error::Tier(TierError::MissingContainer {
                id,
                context: format!(" (expected at {})", self.location(id).display()),
            }),
            e => e,
        }
    }
}

/// The environment variables that carry `service`'s credentials.
fn credential_vars(service: ObjectService) -> &'static str {
    match service {
        ObjectService::S3 => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ObjectService::Azure => "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
    }
}

/// A key built by tierseed, taken as is: `Path::from` would percent-encode
/// it (twice, if applied again), and a later delete would silently miss.
pub(crate) fn parse_key(key: &str) -> Result<Key> {
    Key::parse(key).map_err(|e| Error::InvalidConfig(format!("object key {key:?}: {e}")))
}

/// The HTTP status an `object_store` error carries in its message chain
/// ("... status code: 503 Service Unavailable ..."), if any: the client
/// does not expose its retry error type.
pub(crate) fn status_in_chain(e: &(dyn std::error::Error + 'static)) -> Option<u16> {
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

impl ContainerStore for BucketStore {
    fn location(&self, id: ContainerId) -> PathBuf {
        PathBuf::from(self.url_of(&self.container_key(id)))
    }

    fn put(&self, id: ContainerId, bytes: Vec<u8>) -> Result<()> {
        let bytes = match &self.sealer {
            Some(s) => seal::seal_container(s, &bytes, id)?,
            None => bytes,
        };
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
        let sealed = match &self.sealer {
            Some(_) => {
                // The segments' tags are in the table: read it unless an
                // earlier read left it here.
                if self.tables.get(id).is_none() {
                    self.read_meta(id)?;
                }
                self.tables.get(id)
            }
            None => None,
        };
        let mut got: Vec<Vec<u8>> = self.fetch_ranges(id, which)?.into_iter().map(|b| b.to_vec()).collect();
        if let (Some(s), Some(t)) = (&self.sealer, sealed) {
            t.open_segments(s, which, &mut got, &self.location(id))?;
        }
        Ok(got)
    }

    fn read_segments_shared(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Bytes>> {
        if self.sealer.is_some() {
            // Opened segment by segment, each into its own vector.
            return Ok(super::shared(self.read_segments(id, which)?));
        }
        // The client's answers are slices of the bodies it received.
        self.fetch_ranges(id, which)
    }

    fn scrub(&self, id: ContainerId) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
        let bytes = self.get(&self.container_key(id), None).map_err(|e| self.missing(id, e))?;
        open::decode(&bytes, id, &self.location(id), self.sealer.as_deref())
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
        self.headers.forget(id);
        self.tables.forget(id);
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
        let record: Vec<JournalOpV2> = ops
            .iter()
            .map(|op| match op {
                NamespaceOp::Put(e) => JournalOpV2::Put(FileEntryV2::from(e)),
                NamespaceOp::Delete(p) => JournalOpV2::Delete(p.clone()),
            })
            .collect();
        let key = self.journal_key(seq);
        self.put_create(&key, self.seal_record(&key, encode_record(JOURNAL_MAGIC, JOURNAL_VERSION, &record))?)?;
        crate::testing::crashpoint::hit("object.journaled_not_committed");
        Ok(())
    }

    fn journals(&self) -> bool {
        true
    }

    fn checkpoint_due(&self, seq: u64) -> bool {
        self.checkpoint_every > 0 && (seq + 1).is_multiple_of(self.checkpoint_every)
    }

    fn checkpoint(&self, seq: u64, page: &mut NamespacePages<'_>) -> Result<()> {
        // Parts first, the manifest last: only a manifest makes it count.
        let mut after: Option<String> = None;
        let (mut parts, mut files) = (0u64, 0u64);
        loop {
            let entries = page(after.as_deref(), CHECKPOINT_PART)?;
            let Some(last) = entries.last() else { break };
            after = Some(last.path.clone());
            files += entries.len() as u64;
            let record: Vec<FileEntryV2> = entries.iter().map(FileEntryV2::from).collect();
            let key = self.checkpoint_key(seq, &format!("part-{parts:08x}"));
            self.put_create(&key, self.seal_record(&key, encode_record(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, &record))?)?;
            parts += 1;
        }
        crate::testing::crashpoint::hit("object.checkpoint_before_manifest");
        let manifest = CheckpointV1 { seq, parts, files };
        let key = self.checkpoint_key(seq, "manifest");
        self.put_create(&key, self.seal_record(&key, encode_record(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, &manifest))?)?;
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
        bucket_url(self.service, &self.bucket, &self.prefix)
    }

    fn remote(&self) -> bool {
        true
    }

    fn set_sealer(&mut self, sealer: Arc<Sealer>) {
        self.sealer = Some(sealer);
    }

    fn key_slots(&self) -> Result<Option<Vec<u8>>> {
        match self.get(&self.key(KEYS_OBJECT), None) {
            Ok(b) => Ok(Some(b)),
            Err(Error::Tier(TierError::Object { status: Some(404), .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn put_key_slots(&self, bytes: &[u8], create: bool) -> Result<()> {
        let key = self.key(KEYS_OBJECT);
        if create {
            return self.put_create(&key, bytes.to_vec());
        }
        // The one object that is replaced: a PUT is atomic, readers see
        // the old record or the new one.
        let path = parse_key(&key)?;
        self.block(self.client.put(&path, PutPayload::from(bytes.to_vec())))?.map(|_| ()).map_err(|e| self.err("PUT", &key, e))
    }

    fn requests(&self) -> Option<RequestCounts> {
        Some(self.counts.snapshot())
    }

    fn journal_since(&self, seq: u64, dir: &Path) -> Result<Vec<(u64, Vec<NamespaceOp>)>> {
        let (journal, checkpoints, _) = self.namespace_objects()?;
        if let Some(&c) = checkpoints.last()
            && c >= seq
        {
            // The bucket checkpointed (and pruned) past what this metadata
            // has: it is older than the bucket by more than the journal
            // still holds.
            return Err(Error::Tier(TierError::ForeignBucket {
                location: self.describe(),
                reason: format!(
                    "the metadata in {} is behind the bucket (its namespace is at journal entry {seq:016x}, the bucket's checkpoint at {c:016x}): rebuild it from the bucket with recover, into a new directory",
                    dir.display(),
                ),
            }));
        }
        let mut out = Vec::new();
        let mut next = seq;
        for s in journal.into_iter().filter(|s| *s >= seq) {
            if s != next {
                return Err(Error::corrupt_record(
                    format!("namespace journal of {}", self.describe()),
                    format!("entry {s:016x} follows {next:016x}: an entry is missing"),
                ));
            }
            out.push((s, self.read_journal(s)?));
            next = s + 1;
        }
        Ok(out)
    }
}
