//! The object tier against a real 3-replica Ceph cluster with a radosgw S3
//! gateway on 127.0.0.1, which the first test to need it starts
//! (`.ci/ceph.sh start`, stopped by a watcher when this process exits).
//!
//! Without Ceph installed these tests fail, saying how to install it. Only
//! `TIERSEED_SKIP_CEPH=1` skips them, and each skipped test says so on
//! stderr. `TIERSEED_CEPH_DIR=DIR` uses a cluster already started with
//! `.ci/ceph.sh start DIR PORT` instead of starting one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use tierseed::{Error, IndexedTier, Mode, ObjectConfig, ObjectService, Outcome, Seeder, Selection, Tier, TierError};

use crate::bucket::{self, Service, kill_after_copy_commits, ok, restores_all, seed_cmd, uuid_ish};
use crate::{check_target, prefixed, run_to_end, small_config, synth_source};

const BUCKET: &str = "tierseed-test";
const ACCESS: &str = "tierseedkey";
const SECRET: &str = "tierseedsecret";

struct Cluster {
    dir: PathBuf,
    endpoint: String,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
/// Tests that kill or restart daemons hold it exclusively; the others
/// shared, so no test meets a fault injected for another one.
static FAULTS: RwLock<()> = RwLock::new(());

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/ceph.sh")
}

/// How [`start_cluster`]'s error begins when Ceph is not installed.
const NOT_INSTALLED: &str = "Ceph is not installed";

fn start_cluster() -> Result<Cluster, String> {
    if let Some(dir) = std::env::var_os("TIERSEED_CEPH_DIR") {
        let dir = PathBuf::from(dir);
        let port = std::fs::read_to_string(dir.join("port")).map_err(|e| format!("{}/port: {e}", dir.display()))?;
        return Ok(Cluster { endpoint: format!("http://127.0.0.1:{}", port.trim()), dir });
    }
    let missing: Vec<&str> = ["ceph-mon", "ceph-osd", "radosgw", "ceph"]
        .into_iter()
        .filter(|b| !Command::new("sh").arg("-c").arg(format!("command -v {b}")).output().is_ok_and(|o| o.status.success()))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{NOT_INSTALLED} ({} missing), and TIERSEED_REQUIRE_CEPH is set: the object-tier tests run against a real \
             cluster. `cargo xtask test` installs it (or `bash .ci/ceph.sh install`: apt-get install -y \
             --no-install-recommends ceph-mon ceph-osd radosgw ceph-common python3-boto3)",
            missing.join(", ")
        ));
    }
    let t0 = Instant::now();
    let (port, dir) =
        bucket::start_service(&script(), "ceph").map_err(|out| format!("starting the Ceph cluster failed: {out}"))?;
    let _ = writeln!(
        std::io::stderr(),
        "ceph: 3-OSD cluster with radosgw on 127.0.0.1:{port} started in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(Cluster { dir, endpoint: format!("http://127.0.0.1:{port}") })
}

/// The cluster, or `None` when the tests are skipped: explicitly
/// (`TIERSEED_SKIP_CEPH`), or because Ceph is not installed and nothing
/// asked for it (`cargo xtask test` and CI set `TIERSEED_REQUIRE_CEPH`,
/// which makes a missing Ceph a failure). Every skip is said on stderr,
/// past the harness's capture, with how to run the test.
fn cluster(test: &str) -> Option<&'static Cluster> {
    if std::env::var_os("TIERSEED_SKIP_CEPH").is_some() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: TIERSEED_SKIP_CEPH is set, the object-tier test against Ceph did not run"
        );
        return None;
    }
    match CLUSTER.get_or_init(start_cluster) {
        Ok(c) => Some(c),
        Err(e) if e.starts_with(NOT_INSTALLED) && std::env::var_os("TIERSEED_REQUIRE_CEPH").is_none() => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: Ceph is not installed, so this object-tier test did not run; \
                 `cargo xtask test` installs it and runs every test"
            );
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// The cluster, with the shared side of [`FAULTS`] held for the test.
fn shared(test: &str) -> Option<(&'static Cluster, std::sync::RwLockReadGuard<'static, ()>)> {
    let c = cluster(test)?;
    Some((c, FAULTS.read().unwrap_or_else(std::sync::PoisonError::into_inner)))
}

impl Service for Cluster {
    fn config(&self, name: &str) -> ObjectConfig {
        let mut c = ObjectConfig::new(BUCKET, format!("{name}-{}", uuid_ish()));
        c.endpoint = Some(self.endpoint.clone());
        c.access_key_id = Some(ACCESS.into());
        c.secret_access_key = Some(SECRET.into());
        c
    }

    fn rot(&self, key: &str, at: usize) {
        boto(
            self,
            "o=s3.get_object(Bucket=sys.argv[1],Key=sys.argv[2])['Body'].read()\n\
             i=int(sys.argv[3]);b=bytearray(o);b[i]^=1\n\
             s3.put_object(Bucket=sys.argv[1],Key=sys.argv[2],Body=bytes(b))",
            &[BUCKET, key, &at.to_string()],
        );
    }

    fn objects(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "{}pg=s3.get_paginator('list_objects_v2')\n\
                 for page in pg.paginate(Bucket=sys.argv[1],Prefix=sys.argv[2]+'/'):\n\
                 \tfor o in page.get('Contents',[]):\n\
                 \t\tprint(o['Key']+'\\t'+s3.get_object(Bucket=sys.argv[1],Key=o['Key'])['Body'].read().hex())",
                self.boto_prelude()
            ))
            .args([BUCKET, prefix])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        bucket::parse_dump(&out.stdout)
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(format!("{}s3.put_object(Bucket=sys.argv[1],Key=sys.argv[2],Body=sys.stdin.buffer.read())", self.boto_prelude()))
            .args([BUCKET, key])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        assert!(child.wait().unwrap().success(), "putting {key} failed");
    }

    fn env(&self, c: &mut Command) {
        c.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", ACCESS)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1");
    }
}

impl Cluster {
    /// Python that makes a boto3 client `s3` for this cluster.
    fn boto_prelude(&self) -> String {
        format!(
            "import sys,boto3,botocore\ns3=boto3.client('s3',endpoint_url='{}',aws_access_key_id='{ACCESS}',\
             aws_secret_access_key='{SECRET}',region_name='us-east-1',config=botocore.config.Config(s3={{'addressing_style':'path'}}))\n",
            self.endpoint
        )
    }

    fn ceph(args: &[&str]) {
        let st = Command::new("bash").arg(script()).args(args).status().unwrap();
        assert!(st.success(), "ceph.sh {args:?} failed");
    }

    /// Waits until the cluster reports all three OSDs up again.
    fn wait_osds_up(&self) {
        let conf = self.dir.join("ceph.conf");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let out = Command::new("timeout")
                .args(["10", "ceph", "-c", conf.to_str().unwrap(), "osd", "stat", "-f", "json"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("\"num_up_osds\":3") {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("OSDs did not all come back up");
    }
}

#[test]
fn object_tier_seeded_in_copy_and_move_mode_then_recalled() {
    let Some((c, _shared)) = shared("object_tier_seeded_in_copy_and_move_mode_then_recalled") else { return };
    bucket::seeded_in_copy_and_move_mode_then_recalled(c);
}

#[test]
fn seed_cli_on_an_object_tier_sigkilled_mid_copy_then_resumed() {
    let Some((c, _shared)) = shared("seed_cli_on_an_object_tier_sigkilled_mid_copy_then_resumed") else { return };
    bucket::seed_cli_sigkilled_mid_copy_then_resumed(c);
}

#[test]
fn lost_metadata_is_recovered_from_the_bucket_alone() {
    let Some((c, _shared)) = shared("lost_metadata_is_recovered_from_the_bucket_alone") else { return };
    bucket::lost_metadata_is_recovered_from_the_bucket_alone(c);
}

#[test]
fn a_bucket_of_another_tier_is_refused() {
    let Some((c, _shared)) = shared("a_bucket_of_another_tier_is_refused") else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = c.config("tier-a");
    let b = c.config("tier-b");
    drop(IndexedTier::create_object_tier(dir.path().join("meta-a"), &a, small_config()).unwrap());
    drop(IndexedTier::create_object_tier(dir.path().join("meta-b"), &b, small_config()).unwrap());

    // A's metadata with B's bucket prefix.
    let err = IndexedTier::open_object_tier(dir.path().join("meta-a"), &b).unwrap_err();
    assert!(matches!(err, Error::Tier(TierError::ForeignBucket { .. })), "{err}");
    assert!(err.to_string().contains(&a.url()), "{err}");
    // A new tier where one already lives (and holds something: an empty
    // one is a creation that stopped half way, which `create` finishes).
    let a_tier = IndexedTier::open_object_tier(dir.path().join("meta-a"), &a).unwrap();
    a_tier.ingest_reader("x", 0, &b"x"[..]).unwrap();
    drop(a_tier);
    let err = IndexedTier::create_object_tier(dir.path().join("meta-c"), &a, small_config()).unwrap_err();
    assert!(err.to_string().contains("already holds a tier"), "{err}");
    assert!(!dir.path().join("meta-c").join("db").exists(), "nothing created locally");
    // A prefix with no tier at all.
    let empty = c.config("nothing-here");
    let err = IndexedTier::recover_object_tier(dir.path().join("meta-d"), &empty).unwrap_err();
    assert!(err.to_string().contains("holds no tier"), "{err}");
    // A directory tier opened as an object tier, and the reverse.
    IndexedTier::create(dir.path().join("plain"), small_config()).unwrap();
    let err = IndexedTier::open_object_tier(dir.path().join("plain"), &a).unwrap_err();
    assert!(err.to_string().contains("directory tier"), "{err}");
    let err = IndexedTier::open(dir.path().join("meta-a")).unwrap_err();
    assert!(err.to_string().contains("object-storage tier"), "{err}");
    // Metadata whose bucket now holds another tier (the prefix was wiped
    // and reused): the identities differ.
    let wiped = c.config("reused");
    drop(IndexedTier::create_object_tier(dir.path().join("old"), &wiped, small_config()).unwrap());
    delete_prefix(c, &wiped);
    drop(IndexedTier::create_object_tier(dir.path().join("new"), &wiped, small_config()).unwrap());
    let err = IndexedTier::open_object_tier(dir.path().join("old"), &wiped).unwrap_err();
    assert!(matches!(err, Error::Tier(TierError::ForeignBucket { .. })) && err.to_string().contains("holds tier"), "{err}");
}

/// Runs a few lines of Python with a boto3 client `s3` on the test
/// cluster (the test's own client, beside the tier's), with `args` as
/// `sys.argv[1:]`.
fn boto(c: &Cluster, script: &str, args: &[&str]) {
    let out = Command::new("python3").arg("-c").arg(format!("{}{script}", c.boto_prelude())).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Deletes every object under a config's prefix.
fn delete_prefix(c: &Cluster, cfg: &ObjectConfig) {
    boto(
        c,
        "for o in s3.list_objects_v2(Bucket=sys.argv[1],Prefix=sys.argv[2]+'/').get('Contents',[]):\n s3.delete_object(Bucket=sys.argv[1],Key=o['Key'])",
        &[BUCKET, &cfg.prefix],
    );
}

#[test]
fn wrong_credentials_give_a_clear_error() {
    let Some((c, _shared)) = shared("wrong_credentials_give_a_clear_error") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = c.config("creds");
    cfg.secret_access_key = Some("not-the-secret".into());
    let t0 = Instant::now();
    let err = IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Tier(TierError::Object { status: Some(403), transient: false, .. })), "{text}");
    assert!(text.contains("s3://tierseed-test/") && text.contains("/tier") && text.contains("HTTP 403"), "{text}");
    assert!(t0.elapsed() < Duration::from_secs(10), "a refusal is not retried: {:?}", t0.elapsed());
    assert!(!dir.path().join("meta").join("db").exists());

    // And through the CLI, with the message on stderr.
    let url = cfg.url();
    let out = seed_cmd(c)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .args(["ingest", "--tier", &url, "--meta", dir.path().join("m2").to_str().unwrap(), "Cargo.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("HTTP 403"), "{stderr}");
}

#[test]
fn crash_leftovers_in_the_bucket_are_removed_or_rolled_forward() {
    let Some((c, _shared)) = shared("crash_leftovers_in_the_bucket_are_removed_or_rolled_forward") else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = c.config("leftovers");
    let meta = dir.path().join("meta");
    drop(IndexedTier::create_object_tier(&meta, &cfg, small_config()).unwrap());
    let file = dir.path().join("f.bin");
    let mut bytes = vec![0u8; 300 << 10];
    tierseed::synth::Rng::new(5).fill(&mut bytes);
    std::fs::write(&file, &bytes).unwrap();
    let ingest = |crash: &str| {
        seed_cmd(c)
            .env("TIERSEED_CRASH_AT", crash)
            .args(["ingest", "--tier", &cfg.url(), "--meta", meta.to_str().unwrap(), file.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // A container PUT but never indexed: open adopts it (indexes it), as
    // if its write had returned; nothing names it, so gc may reclaim it.
    let out = ingest("tier.sealed_not_indexed:1");
    assert!(!out.status.success(), "the crash point was not reached");
    let t = IndexedTier::open_object_tier(&meta, &cfg).unwrap();
    assert!(t.verify().unwrap().is_clean());
    assert_eq!(t.info().unwrap().files, 0);
    drop(t);
    // A namespace change journaled to the bucket, not committed locally:
    // open rolls it forward, as a recovery from the bucket would.
    let out = ingest("object.journaled_not_committed:1");
    assert!(!out.status.success(), "the crash point was not reached");
    let t = IndexedTier::open_object_tier(&meta, &cfg).unwrap();
    let files = t.all_files().unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut got = Vec::new();
    t.restore(&files[0].path, &mut got).unwrap();
    assert_eq!(got, std::fs::read(&file).unwrap());
    assert!(t.verify().unwrap().is_clean());
    // And the next namespace commit takes the next journal number.
    t.ingest_reader("after.txt", 0, &b"after"[..]).unwrap();
    drop(t);
    std::fs::remove_dir_all(&meta).unwrap();
    let (t, r) = IndexedTier::recover_object_tier(&meta, &cfg).unwrap();
    assert_eq!(r.files, 2, "{r:?}");
    assert!(t.verify().unwrap().is_clean());
}

/// Runs a throttled job to the object tier and calls `fault` from inside
/// the job's 4th `ContainerCopied` event, so the fault lands mid-Copy
/// however loaded the machine; returns the job's first outcome.
fn job_under_fault(
    c: &Cluster,
    name: &str,
    fault: impl FnOnce() + Send,
) -> (tempfile::TempDir, ObjectConfig, BTreeMap<String, Vec<u8>>, Result<Outcome, Error>) {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 21, 2, 60, 32 << 10);
    let cfg = c.config(name);
    let cloud = IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap();
    let copied = std::sync::atomic::AtomicU64::new(0);
    let fault = std::sync::Mutex::new(Some(fault));
    let mut job = Seeder::builder(&src, &cloud, dir.path().join("state"))
        .selection(Selection::all())
        .limit_bytes_per_sec(3 << 20)
        .observer(|e: &tierseed::Event| {
            if matches!(e, tierseed::Event::ContainerCopied { .. })
                && copied.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == 4
                && let Some(f) = fault.lock().unwrap().take()
            {
                f();
            }
        })
        .build()
        .unwrap();
    let outcome = job.run();
    assert!(fault.lock().unwrap().is_none(), "the job ended before the fault was injected");
    drop(job);
    drop(cloud);
    drop(src);
    (dir, cfg, all, outcome)
}

#[test]
fn an_osd_killed_mid_job_and_a_gateway_restarted_mid_job() {
    let Some(c) = cluster("an_osd_killed_mid_job_and_a_gateway_restarted_mid_job") else { return };
    let _g = FAULTS.write().unwrap();
    let dir_s = c.dir.to_str().unwrap().to_string();

    // One OSD of three SIGKILLed: the pools keep min_size 2, the job
    // completes without an error and every file restores.
    let (dir, cfg, all, outcome) = job_under_fault(c, "osdkill", || Cluster::ceph(&["kill-osd", &dir_s, "1"]));
    let outcome = outcome.expect("the job survives one OSD down");
    assert!(matches!(outcome, Outcome::Completed(_)));
    let cloud = IndexedTier::open_object_tier(dir.path().join("meta"), &cfg).unwrap();
    check_target(&cloud, &all);
    drop(cloud);
    Cluster::ceph(&["start-osd", &dir_s, "1"]);
    c.wait_osds_up();

    // The gateway restarted: the client's retries ride it out, or the job
    // fails cleanly with a transient error; a resume then completes.
    let (dir, cfg, all, outcome) = job_under_fault(c, "rgwrestart", || Cluster::ceph(&["restart-rgw", &dir_s]));
    let src = IndexedTier::open(dir.path().join("src")).unwrap();
    match outcome {
        Ok(Outcome::Completed(_)) => eprintln!("gateway restart: the job rode it out"),
        Ok(Outcome::Suspended(p)) => panic!("suspended without being asked: {p:?}"),
        Err(e) => {
            eprintln!("gateway restart: the job failed cleanly: {e}");
            assert!(e.is_transient(), "a gateway restart is a transient failure: {e}");
            let cloud = IndexedTier::open_object_tier(dir.path().join("meta"), &cfg).unwrap();
            let mut job = Seeder::resume(dir.path().join("state"), &src, &cloud).unwrap();
            run_to_end(&mut job);
        }
    }
    let cloud = IndexedTier::open_object_tier(dir.path().join("meta"), &cfg).unwrap();
    check_target(&cloud, &all);
}

/// One crash-then-resume trial of `seed run` into the object tier, with
/// the process aborted at the `n`-th arrival at `point`; returns whether
/// it crashed there (false: the job completed before the `n`-th arrival).
fn object_crash_trial(c: &Cluster, base: &Path, want: &BTreeMap<String, Vec<u8>>, point: &str, n: u64, mv: bool) -> bool {
    let dir = base.join(format!("{}-{n}", point.replace(['.', ' '], "_")));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("src");
    let st = Command::new("cp").arg("-a").arg(base.join("src")).arg(&src).status().unwrap();
    assert!(st.success());
    let cfg = c.config("crash");
    let url = cfg.url();
    let (from, meta, state) = (src.to_str().unwrap(), dir.join("meta"), dir.join("state"));
    let (meta, state) = (meta.to_str().unwrap(), state.to_str().unwrap());
    let mut args = vec!["run", "--from", from, "--to", &url, "--meta", meta, "--state", state, "--all", "--container-kib", "64"];
    if mv {
        args.push("--move");
    }
    let o = seed_cmd(c).args(&args).env("TIERSEED_CRASH_AT", format!("{point}:{n}")).output().unwrap();
    let crashed = !o.status.success();
    if crashed {
        assert!(String::from_utf8_lossy(&o.stderr).contains("crash point"), "{point}:{n} failed: {o:?}");
        let resume =
            seed_cmd(c).args(["resume", "--from", from, "--to", &url, "--meta", meta, "--state", state]).output().unwrap();
        if !resume.status.success() {
            // Killed before the job context existed: an operator runs it again.
            let err = String::from_utf8_lossy(&resume.stderr);
            assert!(err.contains("no job in") || err.contains("no tier here"), "{point}:{n}: resume: {err}");
            ok(seed_cmd(c).args(&args));
        }
    }
    let cloud = IndexedTier::open_object_tier(meta, &cfg).unwrap();
    let src_tier = IndexedTier::open(&src).unwrap();
    check_target(&cloud, want);
    if mv {
        assert!(src_tier.all_files().unwrap().is_empty(), "{point}:{n}: moved files left in the source");
    }
    // Nothing in the bucket but what the index points to.
    assert_eq!(crate::stored_segment_entries(&cloud), crate::index_fingerprints(&cloud).len() as u64);
    drop(cloud);
    std::fs::remove_dir_all(&dir).unwrap();
    crashed
}

#[test]
fn crash_points_while_seeding_into_the_object_tier_then_resume() {
    let Some((c, _shared)) = shared("crash_points_while_seeding_into_the_object_tier_then_resume") else { return };
    let base = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&base.path().join("src"), 41, 2, 24, 16 << 10);
    drop(src);
    let mut crashes = 0;
    // The container windows at every arrival until the job completes
    // first; the namespace windows at their first arrivals, in move mode.
    for point in ["tier.sealed_not_indexed", "copy.sealed_before_commit", "copy.after_commit"] {
        for n in 1..200 {
            if !object_crash_trial(c, base.path(), &all, point, n, false) {
                assert!(n > 1, "{point} never reached");
                break;
            }
            crashes += 1;
        }
    }
    for point in
        ["object.journaled_not_committed", "switch.between_batches", "switch.before_source_removal", "phase.after_commit"]
    {
        for n in [1, 2, 5] {
            if object_crash_trial(c, base.path(), &all, point, n, true) {
                crashes += 1;
            }
        }
    }
    let _ = writeln!(std::io::stderr(), "object tier: {crashes} crashes at crash points, each resumed to a complete target");
    assert!(crashes >= 20, "only {crashes} crashes");
}

/// Deletes one object of the test bucket.
fn delete_object(c: &Cluster, key: &str) {
    boto(c, "s3.delete_object(Bucket=sys.argv[1],Key=sys.argv[2])", &[BUCKET, key]);
}

#[test]
fn a_bucket_that_lost_containers_is_caught_and_healed_by_the_next_job() {
    let Some((c, _shared)) = shared("a_bucket_that_lost_containers_is_caught_and_healed_by_the_next_job") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 51, 2, 30, 20 << 10);
    let cfg = c.config("lost");
    let cloud = IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap();
    let first = prefixed(&all, &["gen-000/"]);
    run_to_end(
        &mut Seeder::builder(&src, &cloud, dir.path().join("s1")).selection(Selection::new().prefix("gen-000")).build().unwrap(),
    );
    // The store loses a data and a meta container behind the tier's back.
    let kinds: Vec<(tierseed::ContainerId, tierseed::ContainerKind)> =
        Tier::container_ids(&cloud).unwrap().into_iter().map(|id| (id, cloud.read_metadata(id).unwrap().kind)).collect();
    let mut lost = Vec::new();
    for kind in [tierseed::ContainerKind::Data, tierseed::ContainerKind::Meta] {
        let id = kinds.iter().find(|(_, k)| *k == kind).unwrap().0;
        let url = cloud.container_path(id).to_string_lossy().into_owned();
        let key = url.strip_prefix(&format!("s3://{BUCKET}/")).unwrap().to_string();
        delete_object(c, &key);
        lost.push(id);
    }
    // The scrub names them.
    let report = cloud.verify().unwrap();
    assert!(!report.is_clean());
    for id in &lost {
        assert!(report.problems.iter().any(|p| p.contains(&id.to_string())), "{id} not named: {:?}", report.problems);
    }
    // The next job copies their segments again, and everything restores.
    let sel = Selection::new().prefix("gen-000").prefix("gen-001");
    run_to_end(&mut Seeder::builder(&src, &cloud, dir.path().join("s2")).selection(sel).build().unwrap());
    for (p, b) in &all {
        let mut out = Vec::new();
        cloud.restore(p, &mut out).unwrap_or_else(|e| panic!("restore {p}: {e}"));
        assert!(out == *b, "{p}");
    }
    assert!(first.keys().all(|p| all.contains_key(p)));
}

#[test]
fn write_faults_on_the_object_tier_fail_the_job_cleanly_and_a_resume_completes() {
    use tierseed::{Fault, FaultKind, FaultyTier};
    let Some((c, _shared)) = shared("write_faults_on_the_object_tier_fail_the_job_cleanly_and_a_resume_completes") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 52, 2, 24, 16 << 10);
    let mut injected = 0;
    for (kind, after_effect) in [
        (FaultKind::WriteContainer, false),
        (FaultKind::WriteContainer, true),
        (FaultKind::UpsertFiles, false),
        (FaultKind::UpsertFiles, true),
    ] {
        // 48 files: one namespace batch, several containers.
        let calls: &[u64] = if kind == FaultKind::UpsertFiles { &[1] } else { &[1, 3] };
        for &n in calls {
            let cfg = c.config("wfault");
            let meta = dir.path().join(format!("m-{injected}"));
            let st = dir.path().join(format!("s-{injected}"));
            {
                let cloud = IndexedTier::create_object_tier(&meta, &cfg, small_config()).unwrap();
                let fault = if after_effect { Fault::fail_after_effect(kind, n) } else { Fault::fail(kind, n) };
                let faulty = FaultyTier::new(&cloud, vec![fault]);
                let mut job = Seeder::builder(&src, &faulty, &st).selection(Selection::all()).build().unwrap();
                match job.run() {
                    Err(e) => assert!(e.to_string().contains("injected fault"), "{kind:?}:{n}: {e}"),
                    Ok(o) => panic!("{kind:?} call {n} failed but the job returned {o:?}"),
                }
            }
            // Reopened (recovery runs: unindexed objects adopted, journal
            // entries rolled forward), resumed, complete.
            let cloud = IndexedTier::open_object_tier(&meta, &cfg).unwrap();
            run_to_end(&mut Seeder::resume(&st, &src, &cloud).unwrap());
            check_target(&cloud, &all);
            injected += 1;
        }
    }
    assert_eq!(injected, 6);
}

#[test]
fn seed_into_the_object_tier_sigkilled_at_random_instants_in_move_mode() {
    let Some((c, _shared)) = shared("seed_into_the_object_tier_sigkilled_at_random_instants_in_move_mode") else { return };
    let base = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&base.path().join("src0"), 61, 2, 40, 24 << 10);
    drop(src);
    let seed = std::env::var("TIERSEED_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    let _ = writeln!(std::io::stderr(), "object tier kills: TIERSEED_KILL_SEED={seed}");
    let mut rng = tierseed::synth::Rng::new(seed);
    let mut killed = 0;
    for trial in 0..6 {
        let dir = base.path().join(format!("t{trial}"));
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("cp").arg("-a").arg(base.path().join("src0")).arg(dir.join("src")).status().unwrap();
        assert!(st.success());
        let cfg = c.config("kills");
        let url = cfg.url();
        let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
        let (from, meta, state) = (p("src"), p("meta"), p("state"));
        let run = ["run", "--from", &from, "--to", &url, "--meta", &meta, "--state", &state, "--all", "--move"];
        let resume = ["resume", "--from", &from, "--to", &url, "--meta", &meta, "--state", &state];
        // Kill the run, then up to two resumes, each at a random instant
        // of its first 1.5 s (the throttled job takes several seconds).
        for attempt in 0..3 {
            let args: &[&str] = if attempt == 0 { &run } else { &resume };
            let mut child = seed_cmd(c)
                .args(args)
                .args(["--limit", "0.3", "--container-kib", "64"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(1500)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                killed += 1;
            }
            child.wait().unwrap();
        }
        // Finish as an operator would: resume, or run again if the job
        // context was never created.
        let out = seed_cmd(c).args(resume).output().unwrap();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("no job in") || err.contains("no tier here"), "trial {trial}: {err}");
            ok(seed_cmd(c).args(run));
        }
        let cloud = IndexedTier::open_object_tier(&meta, &cfg).unwrap();
        check_target(&cloud, &all);
        assert!(IndexedTier::open(dir.join("src")).unwrap().all_files().unwrap().is_empty(), "trial {trial}: source kept files");
    }
    assert!(killed >= 6, "only {killed} kills landed");
}

#[test]
fn a_job_killed_while_creating_its_object_target_can_run_again() {
    let Some((c, _shared)) = shared("a_job_killed_while_creating_its_object_target_can_run_again") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 62, 1, 10, 8 << 10);
    drop(src);
    let cfg = c.config("halfmade");
    let url = cfg.url();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let run = ["run", "--from", &p("src"), "--to", &url, "--meta", &p("meta"), "--state", &p("state"), "--all"];
    // The tier record is in the bucket; the local metadata never made it.
    let out = seed_cmd(c).args(run).env("TIERSEED_CRASH_AT", "tier.create_before_rename:1").output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("crash point"));
    assert!(!dir.path().join("meta").join("db").exists());
    // Running the job again finishes the creation and the job.
    ok(seed_cmd(c).args(run));
    check_target(&IndexedTier::open_object_tier(p("meta"), &cfg).unwrap(), &all);
}

#[test]
fn namespace_checkpoints_bound_the_journal_and_recovery_uses_them() {
    let Some((c, _shared)) = shared("namespace_checkpoints_bound_the_journal_and_recovery_uses_them") else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = c.config("ckpt");
    cfg.checkpoint_every = 3;
    let meta = dir.path().join("meta");
    let cloud = IndexedTier::create_object_tier(&meta, &cfg, small_config()).unwrap();
    let mut want = BTreeMap::new();
    // Ten namespace commits: checkpoints after entries 2, 5 and 8.
    // Each with attributes (one a symlink), which the checkpoint keeps.
    let attrs = |i: i64| tierseed::FileAttrs {
        kind: if i == 3 { tierseed::FileKind::Symlink } else { tierseed::FileKind::File },
        mode: (i != 3).then_some(0o600 + i as u32),
        owner: Some((1000 + i as u32, 100)),
        mtime_nanos: i as u32 * 7,
    };
    for i in 0..9 {
        let body = format!("file {i}").into_bytes();
        let mut s = cloud.ingest_session();
        s.add_reader_with(&format!("f/{i}"), -i, attrs(i), &mut &body[..]).unwrap();
        s.finish().unwrap();
        want.insert(format!("f/{i}"), body);
    }
    cloud.remove(&["f/4"]).unwrap();
    want.remove("f/4");
    drop(cloud);
    // The journal holds only the entry after the last checkpoint.
    let keys = list_keys(c, &cfg.prefix);
    let journal: Vec<&String> = keys.iter().filter(|k| k.split('/').nth(2).is_some_and(|n| n.len() == 16)).collect();
    assert_eq!(journal.len(), 1, "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("namespace/ckpt-0000000000000008/manifest")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("ckpt-0000000000000005")), "an older checkpoint was kept: {keys:?}");

    std::fs::remove_dir_all(&meta).unwrap();
    let (cloud, r) = IndexedTier::recover_object_tier(&meta, &cfg).unwrap();
    assert_eq!(r.checkpoint, Some(8), "{r:?}");
    assert_eq!(r.journal_entries, 1, "{r:?}");
    check_target(&cloud, &want);
    for i in (0..9).filter(|i| *i != 4) {
        let e = cloud.entry(&format!("f/{i}")).unwrap();
        assert_eq!((e.mtime, e.attrs), (-i, attrs(i)), "f/{i} as recovered from the checkpoint");
    }

    // A checkpoint cut short (parts written, no manifest) is ignored: the
    // journal it would have pruned is still whole.
    drop(cloud);
    let ingest = |name: &str, crash: Option<&str>| {
        let file = dir.path().join(name);
        std::fs::write(&file, name.as_bytes()).unwrap();
        let mut cmd = seed_cmd(c);
        cmd.env("TIERSEED_CHECKPOINT_EVERY", "3")
            .args(["ingest", "--tier", &cfg.url(), "--meta", meta.to_str().unwrap()])
            .arg(&file);
        if let Some(point) = crash {
            cmd.env("TIERSEED_CRASH_AT", point);
        }
        cmd.output().unwrap()
    };
    // Entries 10 and 11; the checkpoint due after 11 stops before its manifest.
    assert!(ingest("one.txt", None).status.success());
    let out = ingest("two.txt", Some("object.checkpoint_before_manifest:1"));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("crash point"), "{out:?}");
    std::fs::remove_dir_all(&meta).unwrap();
    let (cloud, r) = IndexedTier::recover_object_tier(&meta, &cfg).unwrap();
    assert_eq!(r.checkpoint, Some(8), "the cut-short checkpoint was used: {r:?}");
    assert_eq!(r.journal_entries, 3, "{r:?}");
    let names: Vec<String> = cloud.all_files().unwrap().into_iter().map(|e| e.path).collect();
    assert!(names.contains(&"one.txt".to_string()) && names.contains(&"two.txt".to_string()), "{names:?}");
    assert_eq!(names.len(), want.len() + 2, "{names:?}");
    // The next checkpoint completes and prunes the cut-short one.
    for i in 0..3 {
        cloud.ingest_reader(&format!("g/{i}"), 0, &b"g"[..]).unwrap();
    }
    drop(cloud);
    let keys = list_keys(c, &cfg.prefix);
    assert!(keys.iter().any(|k| k.contains("namespace/ckpt-000000000000000e/manifest")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains("ckpt-000000000000000b") || k.contains("ckpt-0000000000000008")), "{keys:?}");
}

/// Every key under a prefix of the test bucket.
fn list_keys(c: &Cluster, prefix: &str) -> Vec<String> {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import sys,boto3,botocore\ns3=boto3.client('s3',endpoint_url='{}',aws_access_key_id='{ACCESS}',aws_secret_access_key='{SECRET}',\
                 region_name='us-east-1',config=botocore.config.Config(s3={{'addressing_style':'path'}}))\n\
                 for o in s3.list_objects_v2(Bucket='{BUCKET}',Prefix=sys.argv[1]+'/').get('Contents',[]): print(o['Key'])",
                c.endpoint
            ),
            prefix,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn an_object_tier_without_credentials_is_refused_before_any_request() {
    // No cluster needed: the refusal comes before the first request (the
    // client would otherwise ask an instance-metadata address for keys).
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ObjectConfig::new(BUCKET, "nokeys");
    cfg.endpoint = Some("http://127.0.0.1:9".into());
    let err = IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(ref m) if m.contains("no credentials")), "{err}");
    cfg.access_key_id = Some(ACCESS.into());
    let err = IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap_err();
    assert!(err.to_string().contains("give both"), "{err}");
    assert!(ObjectConfig::parse_url("s3://ab/x").is_none(), "a 2-character bucket");
    assert_eq!(ObjectConfig::parse_url("s3://bucket/a/b/"), Some((ObjectService::S3, "bucket".into(), "a/b".into())));
    assert_eq!(ObjectConfig::parse_url("s3://bucket"), Some((ObjectService::S3, "bucket".into(), String::new())));
    assert!(ObjectConfig::parse_url("/local/dir").is_none());
    assert_eq!(ObjectConfig::parse_url("az://container/p/"), Some((ObjectService::Azure, "container".into(), "p".into())));
    assert!(ObjectConfig::parse_url("gs://bucket/p").is_none(), "a scheme tierseed does not speak");
}

#[test]
fn metadata_older_than_its_bucket_deletes_nothing_and_catches_up() {
    let Some((c, _shared)) = shared("metadata_older_than_its_bucket_deletes_nothing_and_catches_up") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 63, 3, 20, 16 << 10);
    let cfg = c.config("stale");
    let meta = dir.path().join("meta");
    let cloud = IndexedTier::create_object_tier(&meta, &cfg, small_config()).unwrap();
    run_to_end(
        &mut Seeder::builder(&src, &cloud, dir.path().join("s1")).selection(Selection::new().prefix("gen-000")).build().unwrap(),
    );
    drop(cloud);
    // The appliance's metadata disk is snapshotted here...
    let st = Command::new("cp").arg("-a").arg(&meta).arg(dir.path().join("snapshot")).status().unwrap();
    assert!(st.success());
    // ...then more is seeded into the bucket...
    let cloud = IndexedTier::open_object_tier(&meta, &cfg).unwrap();
    run_to_end(
        &mut Seeder::builder(&src, &cloud, dir.path().join("s2")).selection(Selection::new().prefix("gen-001")).build().unwrap(),
    );
    let containers = Tier::container_ids(&cloud).unwrap().len();
    drop(cloud);
    // ...and the disk is rolled back to the snapshot.
    std::fs::remove_dir_all(&meta).unwrap();
    std::fs::rename(dir.path().join("snapshot"), &meta).unwrap();
    // Open must not take the bucket's newer containers for crash leftovers:
    // it adopts them, and rolls the journal forward.
    let cloud = IndexedTier::open_object_tier(&meta, &cfg).unwrap();
    assert_eq!(Tier::container_ids(&cloud).unwrap().len(), containers, "containers were deleted");
    check_target(&cloud, &prefixed(&all, &["gen-000/", "gen-001/"]));
    drop(cloud);

    // Metadata older than the bucket's last namespace checkpoint cannot
    // catch up (the journal it would need is pruned): open says to recover.
    let mut cfg = cfg;
    cfg.checkpoint_every = 2;
    let st = Command::new("cp").arg("-a").arg(&meta).arg(dir.path().join("snapshot2")).status().unwrap();
    assert!(st.success());
    let cloud = IndexedTier::open_object_tier(&meta, &cfg).unwrap();
    for i in 0..4 {
        cloud.ingest_reader(&format!("late/{i}"), 0, &b"late"[..]).unwrap();
    }
    drop(cloud);
    std::fs::remove_dir_all(&meta).unwrap();
    std::fs::rename(dir.path().join("snapshot2"), &meta).unwrap();
    let err = IndexedTier::open_object_tier(&meta, &cfg).unwrap_err();
    assert!(
        matches!(err, Error::Tier(TierError::ForeignBucket { .. })) && err.to_string().contains("behind the bucket"),
        "{err}"
    );
    std::fs::remove_dir_all(&meta).unwrap();
    let (cloud, _) = IndexedTier::recover_object_tier(&meta, &cfg).unwrap();
    assert_eq!(cloud.all_files().unwrap().iter().filter(|e| e.path.starts_with("late/")).count(), 4);
}

#[test]
fn read_faults_on_the_object_tier_as_a_source_fail_a_recall_cleanly() {
    let Some((c, _shared)) = shared("read_faults_on_the_object_tier_as_a_source_fail_a_recall_cleanly") else { return };
    bucket::read_faults_on_the_object_tier_as_a_source_fail_a_recall_cleanly(c);
}

#[test]
fn two_metadata_directories_writing_one_bucket_never_overwrite_each_other() {
    let Some((c, _shared)) = shared("two_metadata_directories_writing_one_bucket_never_overwrite_each_other") else { return };
    bucket::two_metadata_directories_writing_one_bucket_never_overwrite_each_other(c);
}

#[test]
fn one_pass_to_a_local_and_an_object_target_sigkilled_mid_copy_then_resumed() {
    let Some((c, _shared)) = shared("one_pass_to_a_local_and_an_object_target_sigkilled_mid_copy_then_resumed") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 14, 2, 60, 32 << 10);
    drop(src);
    let cfg = c.config("twotargets");
    let url = cfg.url();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (srcp, local, meta, state) = (p("src"), p("archive"), p("meta"), p("state"));
    // The local target runs ahead of the bucket; the kill lands in Copy
    // with the two at different places.
    let args = [
        "run",
        "--from",
        &srcp,
        "--to",
        &local,
        "--to",
        &url,
        "--meta",
        &meta,
        "--state",
        &state,
        "--all",
        "--container-kib",
        "64",
    ];
    kill_after_copy_commits(c, &args, 5);
    let status = Seeder::status(&state).unwrap();
    assert_eq!(status.next_phase, tierseed::Phase::Copy, "killed in {:?}", status.next_phase);
    let out = ok(seed_cmd(c).args(["resume", "--from", &srcp, "--to", &local, "--to", &url, "--meta", &meta, "--state", &state]));
    assert!(out.contains("target 2") && !out.contains("DROPPED"), "{out}");
    check_target(&IndexedTier::open(&local).unwrap(), &all);
    check_target(&IndexedTier::open_object_tier(&meta, &cfg).unwrap(), &all);
}

/// The bug "--skip-target of an s3:// target leaves its --meta unmatched":
/// the resume was refused with "more --meta directories than s3:// tiers".
#[test]
fn resume_skipping_an_object_target_takes_its_meta_with_it() {
    let Some((c, _shared)) = shared("resume_skipping_an_object_target_takes_its_meta_with_it") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 15, 1, 20, 8 << 10);
    drop(src);
    let url = c.config("skip").url();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (srcp, local, meta, state) = (p("src"), p("archive"), p("meta"), p("state"));
    let out = seed_cmd(c)
        .args(["run", "--from", &srcp, "--to", &local, "--to", &url, "--meta", &meta, "--state", &state, "--all"])
        .args(["--on-target-failure", "drop", "--switch-after", "2999-01-01T00:00"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let out = seed_cmd(c)
        .args(["resume", "--from", &srcp, "--to", &local, "--to", &url, "--meta", &meta, "--state", &state])
        .args(["--skip-target", &url])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(text.contains("DROPPED (switch: not given to the resume"), "{text}");
    let archive = IndexedTier::open(&local).unwrap();
    restores_all(&archive, &all);
}

/// Issue 18 on the object tier: rot in a bucket object must not let a move
/// delete the only good copy; the move reads back what the bucket had,
/// retires the rotten copy and writes good bytes.
#[test]
fn rot_in_a_bucket_object_never_lets_a_move_delete_the_only_good_copy() {
    let Some((c, _shared)) = shared("rot_in_a_bucket_object_never_lets_a_move_delete_the_only_good_copy") else { return };
    bucket::rot_in_a_bucket_object_never_lets_a_move_delete_the_only_good_copy(c);
}

/// Issue 18 on an object source: a suspended recall job's snapshot is
/// held durably in the object tier, so gc of the bucket in the meantime
/// deletes nothing the resume reads.
#[test]
fn gc_of_an_object_source_while_a_recall_is_suspended_keeps_its_snapshot() {
    let Some((c, _shared)) = shared("gc_of_an_object_source_while_a_recall_is_suspended_keeps_its_snapshot") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 63, 2, 20, 16 << 10);
    let cfg = c.config("gcsrc");
    let cloud = IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap();
    run_to_end(&mut Seeder::builder(&src, &cloud, dir.path().join("s1")).selection(Selection::all()).build().unwrap());
    drop(src);
    let back = IndexedTier::create(dir.path().join("back"), small_config()).unwrap();
    let state = dir.path().join("s2");
    let job = Seeder::builder(&cloud, &back, &state).selection(Selection::all()).mode(Mode::Move).build().unwrap();
    drop(crate::run_until(job, &state, &cloud, &back, tierseed::Phase::Copy));
    cloud.remove(&["gen-000", "gen-001"]).unwrap();
    let r = cloud.gc(tierseed::GcOptions::default().threshold(1.0), &tierseed::SuspendHandle::default()).unwrap();
    assert!(r.containers_pinned > 0 && r.containers_deleted + r.containers_compacted == 0, "{r:?}");
    run_to_end(&mut Seeder::resume(&state, &cloud, &back).unwrap());
    check_target(&back, &all);
    let r = cloud.gc(tierseed::GcOptions::default().threshold(1.0), &tierseed::SuspendHandle::default()).unwrap();
    assert!(r.containers_deleted > 0, "{r:?}");
}

/// The tier conformance kit against the S3 tier on Ceph: a writable handle
/// reopened between checks, and a read-only one.
#[test]
fn the_object_tier_passes_the_conformance_kit() {
    let Some((c, _shared)) = shared("the_object_tier_passes_the_conformance_kit") else { return };
    bucket::passes_the_conformance_kit(c);
}

/// A namespace change larger than one batch (70,000 upserts, then 70,000
/// removals) is journaled as several entries in order; a metadata
/// directory lost afterwards is recovered from the bucket with exactly the
/// files that remain.
#[test]
fn a_namespace_change_larger_than_a_batch_is_journaled_in_steps_and_recovered() {
    let Some((c, _shared)) = shared("a_namespace_change_larger_than_a_batch_is_journaled_in_steps_and_recovered") else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = c.config("bigns");
    let meta = dir.path().join("meta");
    let cloud = IndexedTier::create_object_tier(&meta, &cfg, small_config()).unwrap();
    let body = b"one shared body".to_vec();
    cloud.ingest_reader("keep/only", 1, &body[..]).unwrap();
    let root = cloud.entry("keep/only").unwrap();
    let many: Vec<tierseed::FileEntry> =
        (0..70_000).map(|i| tierseed::FileEntry { path: format!("big/f{i:06}"), ..root.clone() }).collect();
    tierseed::TargetTier::upsert_files(&cloud, &many).unwrap();
    assert_eq!(cloud.remove(&["big"]).unwrap().len(), 70_000);
    tierseed::TargetTier::upsert_files(&cloud, &many[..10]).unwrap();
    drop(cloud);
    let journal = list_keys(c, &cfg.prefix).into_iter().filter(|k| k.split('/').nth(2).is_some_and(|n| n.len() == 16)).count();
    assert!(journal >= 5, "70,000 upserts and removals in batches of 64K make at least 5 journal entries, found {journal}");
    std::fs::remove_dir_all(&meta).unwrap();
    let (cloud, _) = IndexedTier::recover_object_tier(&meta, &cfg).unwrap();
    let names: Vec<String> = cloud.all_files().unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(names.len(), 11, "{:?}", &names[..names.len().min(20)]);
    assert!(names.contains(&"keep/only".to_string()) && names.contains(&"big/f000009".to_string()));
    let mut out = Vec::new();
    cloud.restore("big/f000003", &mut out).unwrap();
    assert_eq!(out, body);
}

/// `Estimate::requests` foresees what a seed into the bucket and a recall
/// out of it then ask of the store, within 5 % of the requests the store
/// counted (and of the bytes each way), at 1 MiB containers, with either
/// verify level.
#[test]
fn estimated_requests_match_what_a_seed_and_a_recall_make() {
    let Some((c, _shared)) = shared("estimated_requests_match_what_a_seed_and_a_recall_make") else { return };
    bucket::estimated_requests_match_what_a_seed_and_a_recall_make(c);
}

/// `seed estimate` into a bucket says the requests and transfer the job
/// would make, and with `--price` what they cost; a price file with a
/// negative price is refused, naming it.
#[test]
fn seed_estimate_prices_the_requests_of_an_object_target() {
    let Some((c, _shared)) = shared("seed_estimate_prices_the_requests_of_an_object_target") else { return };
    bucket::seed_estimate_prices_the_requests_of_an_object_target(c);
}

#[test]
fn an_encrypted_bucket_holds_no_name_byte_or_fingerprint_and_tampering_is_caught() {
    let Some((c, _shared)) = shared("an_encrypted_bucket_holds_no_name_byte_or_fingerprint_and_tampering_is_caught") else {
        return;
    };
    bucket::an_encrypted_bucket_holds_no_name_byte_or_fingerprint_and_tampering_is_caught(c);
}
