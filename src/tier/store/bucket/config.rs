//! How an object tier is reached: the service (S3 or Azure Blob), the
//! bucket, prefix, endpoint, credentials, and the client's retry and
//! timeout settings.

use std::time::Duration;

/// The object-storage API a tier's bucket is reached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ObjectService {
    /// Amazon S3 and what speaks its API (Ceph's radosgw, MinIO):
    /// `s3://BUCKET/PREFIX`.
    S3,
    /// Azure Blob Storage (and Azurite, its emulator):
    /// `az://CONTAINER/PREFIX`. Needs the `azure` feature.
    Azure,
}

impl ObjectService {
    /// The URL scheme that names it: `s3` or `az`.
    pub fn scheme(self) -> &'static str {
        match self {
            ObjectService::S3 => "s3",
            ObjectService::Azure => "az",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            ObjectService::S3 => 1,
            ObjectService::Azure => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<ObjectService> {
        match code {
            1 => Some(ObjectService::S3),
            2 => Some(ObjectService::Azure),
            _ => None,
        }
    }
}

/// Where an object tier lives and how to reach it.
///
/// [`from_env`](Self::from_env) reads the usual variables of the service.
/// For S3: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` (default `us-east-1`); requests
/// are path-style (what Ceph and MinIO expect). For Azure:
/// `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY` and
/// `AZURE_STORAGE_ENDPOINT` (the account's URL, e.g. Azurite's
/// `http://127.0.0.1:10000/devstoreaccount1`; default
/// `https://ACCOUNT.blob.core.windows.net`). Plain `http://` endpoints are
/// allowed for both.
#[derive(Clone, Debug)]
pub struct ObjectConfig {
    /// The API the bucket is reached through.
    pub service: ObjectService,
    /// The bucket (Azure: the container); it must exist.
    pub bucket: String,
    /// The key prefix the tier lives under (no leading or trailing `/`;
    /// empty for the bucket's root).
    pub prefix: String,
    /// The endpoint: for S3 e.g. `http://127.0.0.1:7480` (`None`: AWS);
    /// for Azure the account's URL (`None`: Azure's public cloud).
    pub endpoint: Option<String>,
    /// The region (S3 only).
    pub region: String,
    /// S3: the access key id. Azure: the storage account's name.
    pub access_key_id: Option<String>,
    /// S3: the secret access key. Azure: the storage account's key.
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
    /// A tier in S3 bucket `bucket` under `prefix`, with no endpoint or
    /// credentials (set them, or use [`from_env`](Self::from_env)).
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> ObjectConfig {
        ObjectConfig::for_service(ObjectService::S3, bucket, prefix)
    }

    /// A tier reached through `service`, in `bucket` under `prefix`, with
    /// no endpoint or credentials.
    pub fn for_service(service: ObjectService, bucket: impl Into<String>, prefix: impl Into<String>) -> ObjectConfig {
        ObjectConfig {
            service,
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

    /// Like [`for_service`](Self::for_service), with the endpoint,
    /// credentials and region from the service's usual environment
    /// variables (and `checkpoint_every` from `TIERSEED_CHECKPOINT_EVERY`,
    /// if set).
    pub fn from_env(service: ObjectService, bucket: impl Into<String>, prefix: impl Into<String>) -> ObjectConfig {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut c = ObjectConfig::for_service(service, bucket, prefix);
        match service {
            ObjectService::S3 => {
                c.endpoint = var("AWS_ENDPOINT_URL");
                c.access_key_id = var("AWS_ACCESS_KEY_ID");
                c.secret_access_key = var("AWS_SECRET_ACCESS_KEY");
                if let Some(r) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
                    c.region = r;
                }
            }
            ObjectService::Azure => {
                c.endpoint = var("AZURE_STORAGE_ENDPOINT");
                c.access_key_id = var("AZURE_STORAGE_ACCOUNT_NAME");
                c.secret_access_key = var("AZURE_STORAGE_ACCOUNT_KEY");
            }
        }
        if let Some(n) = var("TIERSEED_CHECKPOINT_EVERY").and_then(|v| v.parse().ok()) {
            c.checkpoint_every = n;
        }
        c
    }

    /// Splits `s3://BUCKET/PREFIX` or `az://CONTAINER/PREFIX` into the
    /// service, bucket and prefix; `None` if `url` is of neither form.
    pub fn parse_url(url: &str) -> Option<(ObjectService, String, String)> {
        let (service, rest) = if let Some(rest) = url.strip_prefix("s3://") {
            (ObjectService::S3, rest)
        } else {
            (ObjectService::Azure, url.strip_prefix("az://")?)
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.len() < 3 || bucket.contains(['?', '#', ' ']) {
            return None;
        }
        Some((service, bucket.to_string(), prefix.trim_matches('/').to_string()))
    }

    /// `s3://bucket/prefix` (or `az://...`).
    pub fn url(&self) -> String {
        bucket_url(self.service, &self.bucket, &self.prefix)
    }
}

/// `SCHEME://bucket/prefix`.
pub(crate) fn bucket_url(service: ObjectService, bucket: &str, prefix: &str) -> String {
    let scheme = service.scheme();
    if prefix.is_empty() { format!("{scheme}://{bucket}") } else { format!("{scheme}://{bucket}/{prefix}") }
}
