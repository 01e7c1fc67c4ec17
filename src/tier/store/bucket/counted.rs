//! Counting the requests a bucket store makes: a decorator over the
//! `object_store` client, so what is counted is what the client is asked
//! to send (a coalesced ranged read counts once per GET it becomes, a
//! listing once per page). Retries inside the client are not counted.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, PutResult, Result,
};

use crate::tier::RequestCounts;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    puts: AtomicU64,
    gets: AtomicU64,
    lists: AtomicU64,
    deletes: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> RequestCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestCounts {
            puts: l(&self.puts),
            gets: l(&self.gets),
            lists: l(&self.lists),
            deletes: l(&self.deletes),
            bytes_up: l(&self.bytes_up),
            bytes_down: l(&self.bytes_down),
        }
    }
}

/// The client, counted. `page` is the service's listing page size (S3
/// 1,000 keys, Azure 5,000).
#[derive(Debug)]
pub(crate) struct Counted {
    pub(crate) inner: Arc<dyn ObjectStore>,
    pub(crate) counts: Arc<Counters>,
    pub(crate) page: u64,
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counted({})", self.inner)
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for Counted {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        add(&self.counts.puts, 1);
        add(&self.counts.bytes_up, payload.content_length() as u64);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        // tierseed never uploads in parts; counted as one request to start.
        add(&self.counts.puts, 1);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        add(&self.counts.gets, 1);
        let r = self.inner.get_opts(location, options).await?;
        add(&self.counts.bytes_down, r.range.end - r.range.start);
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<bytes::Bytes>> {
        // The trait's own coalescing, over this wrapper's `get_opts`: each
        // GET it sends is counted (what the S3 and Azure clients do too).
        object_store::coalesce_ranges(
            ranges,
            |range| async move {
                let r = self.get_opts(location, GetOptions { range: Some(range.into()), ..GetOptions::default() }).await?;
                r.bytes().await
            },
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let counts = self.counts.clone();
        self.inner.delete_stream(locations.inspect(move |_| add(&counts.deletes, 1)).boxed())
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let (counts, page) = (self.counts.clone(), self.page);
        add(&counts.lists, 1);
        let mut seen = 0u64;
        self.inner
            .list(prefix)
            .inspect(move |_| {
                if seen > 0 && seen.is_multiple_of(page) {
                    add(&counts.lists, 1);
                }
                seen += 1;
            })
            .boxed()
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        add(&self.counts.lists, 1);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        add(&self.counts.lists, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        add(&self.counts.puts, 1);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: object_store::RenameOptions) -> Result<()> {
        add(&self.counts.puts, 1);
        add(&self.counts.deletes, 1);
        self.inner.rename_opts(from, to, options).await
    }
}
