//! The object tier over Azure Blob Storage, against Azurite (Microsoft's
//! emulator, npm package `azurite`) on 127.0.0.1, which the first test to
//! need it starts (`.ci/azurite.sh start`, stopped by a watcher when this
//! process exits). The same behaviour tests as on Ceph's S3 gateway
//! (`bucket.rs`): seeding in copy and move mode and recalling, the CLI
//! killed mid-copy and resumed, recovery from the container alone, read
//! faults, create-only writes between two writers, and the conformance kit.
//!
//! Without Azurite installed these tests say SKIPPED on stderr and pass,
//! unless `TIERSEED_REQUIRE_AZURITE` is set (`cargo xtask test` and CI set
//! it, and install Azurite first); `TIERSEED_SKIP_AZURITE=1` skips them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use tierseed::{IndexedTier, ObjectConfig, ObjectService};

use crate::bucket::{self, Service, uuid_ish};

const CONTAINER: &str = "tierseed-test";
/// Azurite's well-known development account (public, in Microsoft's docs).
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

struct Azurite {
    /// The account's URL: `http://127.0.0.1:PORT/devstoreaccount1`.
    endpoint: String,
}

static AZURITE: OnceLock<Result<Azurite, String>> = OnceLock::new();

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/azurite.sh")
}

/// How [`start`]'s error begins when Azurite is not installed.
const NOT_INSTALLED: &str = "Azurite is not installed";

fn start() -> Result<Azurite, String> {
    let t0 = Instant::now();
    let (port, _dir) = bucket::start_service(&script(), "azurite").map_err(|out| {
        if out.contains(NOT_INSTALLED) {
            format!(
                "{NOT_INSTALLED}, and TIERSEED_REQUIRE_AZURITE is set: the Azure tests run against it. \
                 `cargo xtask test` installs it (or `bash .ci/azurite.sh install`, which needs npm)"
            )
        } else {
            format!("starting Azurite failed: {out}")
        }
    })?;
    let _ =
        writeln!(std::io::stderr(), "azurite: blob service on 127.0.0.1:{port} started in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(Azurite { endpoint: format!("http://127.0.0.1:{port}/{ACCOUNT}") })
}

/// Azurite, or `None` when the tests are skipped (said on stderr, past the
/// harness's capture).
fn azurite(test: &str) -> Option<&'static Azurite> {
    if std::env::var_os("TIERSEED_SKIP_AZURITE").is_some() {
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: TIERSEED_SKIP_AZURITE is set, the Azure test did not run");
        return None;
    }
    match AZURITE.get_or_init(start) {
        Ok(a) => Some(a),
        Err(e) if e.starts_with(NOT_INSTALLED) && std::env::var_os("TIERSEED_REQUIRE_AZURITE").is_none() => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: Azurite is not installed, so this Azure test did not run; \
                 `cargo xtask test` installs it and runs every test"
            );
            None
        }
        Err(e) => panic!("{e}"),
    }
}

impl Azurite {
    /// `node -e SCRIPT` with the Azure SDK the harness installed.
    fn node(script: &str) -> Command {
        let home = std::env::var_os("TIERSEED_AZURITE_HOME").map_or_else(
            || Path::new(&std::env::var_os("HOME").expect("HOME is set")).join(".cache/tierseed-azurite"),
            PathBuf::from,
        );
        let mut c = Command::new("node");
        c.env("NODE_PATH", home.join("node_modules")).args(["-e", script]);
        c
    }
}

impl Service for Azurite {
    fn config(&self, name: &str) -> ObjectConfig {
        let mut c = ObjectConfig::for_service(ObjectService::Azure, CONTAINER, format!("{name}-{}", uuid_ish()));
        c.endpoint = Some(self.endpoint.clone());
        c.access_key_id = Some(ACCOUNT.into());
        c.secret_access_key = Some(KEY.into());
        c
    }

    fn rot(&self, key: &str, at: usize) {
        let script = r#"
            const { BlobServiceClient, StorageSharedKeyCredential } = require("@azure/storage-blob");
            const [url, account, key, container, blob, at] = process.argv.slice(1);
            const b = new BlobServiceClient(url, new StorageSharedKeyCredential(account, key))
                .getContainerClient(container).getBlockBlobClient(blob);
            (async () => { const buf = await b.downloadToBuffer(); buf[Number(at)] ^= 1; await b.uploadData(buf); })()
                .catch((e) => { console.error(e.message); process.exit(1); });
        "#;
        let st = Self::node(script).args([&self.endpoint, ACCOUNT, KEY, CONTAINER, key, &at.to_string()]).status().unwrap();
        assert!(st.success(), "rotting {key} in Azurite failed");
    }

    fn objects(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let script = r#"
            const { BlobServiceClient, StorageSharedKeyCredential } = require("@azure/storage-blob");
            const [url, account, key, container, prefix] = process.argv.slice(1);
            const c = new BlobServiceClient(url, new StorageSharedKeyCredential(account, key)).getContainerClient(container);
            (async () => {
                for await (const b of c.listBlobsFlat({ prefix: prefix + "/" })) {
                    const buf = await c.getBlockBlobClient(b.name).downloadToBuffer();
                    process.stdout.write(b.name + "\t" + buf.toString("hex") + "\n");
                }
            })().catch((e) => { console.error(e.message); process.exit(1); });
        "#;
        let out = Self::node(script).args([&self.endpoint, ACCOUNT, KEY, CONTAINER, prefix]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        bucket::parse_dump(&out.stdout)
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        use std::io::Write;
        let script = r#"
            const { BlobServiceClient, StorageSharedKeyCredential } = require("@azure/storage-blob");
            const [url, account, key, container, blob] = process.argv.slice(1);
            const b = new BlobServiceClient(url, new StorageSharedKeyCredential(account, key))
                .getContainerClient(container).getBlockBlobClient(blob);
            b.uploadData(require("fs").readFileSync(0)).catch((e) => { console.error(e.message); process.exit(1); });
        "#;
        let mut child = Self::node(script)
            .args([&self.endpoint, ACCOUNT, KEY, CONTAINER, key])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        assert!(child.wait().unwrap().success(), "putting {key} in Azurite failed");
    }

    fn env(&self, c: &mut Command) {
        c.env("AZURE_STORAGE_ENDPOINT", &self.endpoint)
            .env("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
            .env("AZURE_STORAGE_ACCOUNT_KEY", KEY);
    }
}

#[test]
fn azure_tier_seeded_in_copy_and_move_mode_then_recalled() {
    let Some(a) = azurite("azure_tier_seeded_in_copy_and_move_mode_then_recalled") else { return };
    bucket::seeded_in_copy_and_move_mode_then_recalled(a);
}

#[test]
fn seed_cli_on_an_azure_tier_sigkilled_mid_copy_then_resumed() {
    let Some(a) = azurite("seed_cli_on_an_azure_tier_sigkilled_mid_copy_then_resumed") else { return };
    bucket::seed_cli_sigkilled_mid_copy_then_resumed(a);
}

#[test]
fn azure_lost_metadata_is_recovered_from_the_container_alone() {
    let Some(a) = azurite("azure_lost_metadata_is_recovered_from_the_container_alone") else { return };
    bucket::lost_metadata_is_recovered_from_the_bucket_alone(a);
}

#[test]
fn read_faults_on_the_azure_tier_as_a_source_fail_a_recall_cleanly() {
    let Some(a) = azurite("read_faults_on_the_azure_tier_as_a_source_fail_a_recall_cleanly") else { return };
    bucket::read_faults_on_the_object_tier_as_a_source_fail_a_recall_cleanly(a);
}

#[test]
fn two_metadata_directories_writing_one_azure_container_never_overwrite_each_other() {
    let Some(a) = azurite("two_metadata_directories_writing_one_azure_container_never_overwrite_each_other") else { return };
    bucket::two_metadata_directories_writing_one_bucket_never_overwrite_each_other(a);
}

#[test]
fn the_azure_tier_passes_the_conformance_kit() {
    let Some(a) = azurite("the_azure_tier_passes_the_conformance_kit") else { return };
    bucket::passes_the_conformance_kit(a);
}

/// The same bucket name over S3 is another tier: metadata made for the
/// Azure container refuses an `s3://` config of the same name and prefix
/// before any request (the store record names the service).
#[test]
fn azure_metadata_refuses_an_s3_config_of_the_same_name() {
    let Some(a) = azurite("azure_metadata_refuses_an_s3_config_of_the_same_name") else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = a.config("service");
    IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, crate::small_config()).unwrap();
    let mut s3 = ObjectConfig::new(CONTAINER, cfg.prefix.clone());
    s3.endpoint = Some("http://127.0.0.1:9".into());
    s3.access_key_id = Some("k".into());
    s3.secret_access_key = Some("s".into());
    let err = IndexedTier::open_object_tier(dir.path().join("meta"), &s3).unwrap_err();
    assert!(matches!(err, tierseed::Error::Tier(tierseed::TierError::ForeignBucket { .. })), "{err}");
    assert!(err.to_string().contains(&format!("az://{CONTAINER}/")), "{err}");
}

#[test]
fn estimated_requests_match_what_a_seed_and_a_recall_make_on_azure() {
    let Some(a) = azurite("estimated_requests_match_what_a_seed_and_a_recall_make_on_azure") else { return };
    bucket::estimated_requests_match_what_a_seed_and_a_recall_make(a);
}

#[test]
fn seed_estimate_prices_the_requests_of_an_azure_target() {
    let Some(a) = azurite("seed_estimate_prices_the_requests_of_an_azure_target") else { return };
    bucket::seed_estimate_prices_the_requests_of_an_object_target(a);
}

#[test]
fn rot_in_an_azure_object_never_lets_a_move_delete_the_only_good_copy() {
    let Some(a) = azurite("rot_in_an_azure_object_never_lets_a_move_delete_the_only_good_copy") else { return };
    bucket::rot_in_a_bucket_object_never_lets_a_move_delete_the_only_good_copy(a);
}

#[test]
fn an_encrypted_azure_container_holds_no_name_byte_or_fingerprint_and_tampering_is_caught() {
    let Some(a) = azurite("an_encrypted_azure_container_holds_no_name_byte_or_fingerprint_and_tampering_is_caught") else {
        return;
    };
    bucket::an_encrypted_bucket_holds_no_name_byte_or_fingerprint_and_tampering_is_caught(a);
}
