//! The object tier's behaviour over any bucket service: the tests that
//! run against both Ceph's S3 gateway (`object.rs`) and Azurite's Azure
//! Blob API (`azure.rs`), each given the service to run on.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use tierseed::{Error, FormatError, IndexedTier, Mode, ObjectConfig, Seeder, Selection, Tier};

use crate::{check_target, prefixed, run_to_end, small_config, synth_source};

/// Starts a service with `script start DIR PORT OWNER_PID` on a free
/// loopback port, in a temp directory named after `name` and this process
/// (the script's watcher stops it when this process exits). Returns the
/// port and directory, or the script's output as the error.
pub fn start_service(script: &Path, name: &str) -> Result<(u16, std::path::PathBuf), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let dir = std::env::temp_dir().join(format!("tierseed-{name}-{}", std::process::id()));
    let out = Command::new("bash")
        .arg(script)
        .args(["start", dir.to_str().unwrap(), &port.to_string(), &std::process::id().to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    }
    Ok((port, dir))
}

/// A running bucket service the tests can use.
pub trait Service: Sync {
    /// A config for a fresh prefix of the test bucket (or container).
    fn config(&self, name: &str) -> ObjectConfig;
    /// Flips one bit at byte `at` of the object under `key`, behind the
    /// tier's back (the service's own client rewrites it): rot.
    fn rot(&self, key: &str, at: usize);
    /// Sets the endpoint and credentials on a `seed` command, as an
    /// operator sets them: environment variables.
    fn env(&self, cmd: &mut Command);
    /// Every object under `prefix/`, with its bytes (the service's own
    /// client reads them, as anyone with the bucket's credentials could).
    fn objects(&self, prefix: &str) -> Vec<(String, Vec<u8>)>;
    /// Writes `bytes` under `key`, replacing what is there, behind the
    /// tier's back (an attacker with write access).
    fn put(&self, key: &str, bytes: &[u8]);
}

/// Parses `KEY<TAB>HEX` lines, as the services' dump scripts print them.
pub fn parse_dump(out: &[u8]) -> Vec<(String, Vec<u8>)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, hex)| {
            let bytes = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
            (k.to_string(), bytes)
        })
        .collect()
}

pub fn uuid_ish() -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}", t, std::process::id())
}

pub fn seed_cmd(c: &dyn Service) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seed"));
    cmd.env_remove("TIERSEED_CRASH_AT").env("RUST_LOG", "error");
    c.env(&mut cmd);
    cmd
}

pub fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    text
}

/// Runs `seed` with `args` and SIGKILLs it while it is held right after
/// its `n`-th Copy commit: mid-Copy for certain, however loaded the machine.
pub fn kill_after_copy_commits(c: &dyn Service, args: &[&str], n: u64) {
    let mut cmd = seed_cmd(c);
    cmd.args(args).stdout(Stdio::null());
    crate::HeldJob::spawn(cmd, "copy.after_commit", n).kill();
}

pub fn restores_all(t: &IndexedTier, expected: &BTreeMap<String, Vec<u8>>) {
    for (path, bytes) in expected {
        let mut out = Vec::new();
        t.restore(path, &mut out).unwrap_or_else(|e| panic!("restore {path}: {e}"));
        assert!(out == *bytes, "{path}: restored bytes differ");
    }
}

pub fn seeded_in_copy_and_move_mode_then_recalled(c: &dyn Service) {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 11, 3, 40, 24 << 10);
    let cfg = c.config("copymove");
    let cloud = IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap();

    // Copy mode: one generation.
    let first = prefixed(&all, &["gen-000/"]);
    let mut job =
        Seeder::builder(&src, &cloud, dir.path().join("s1")).selection(Selection::new().prefix("gen-000")).build().unwrap();
    let r = run_to_end(&mut job);
    assert_eq!(r.counters.files_selected, first.len() as u64);
    drop(job);
    check_target(&cloud, &first);

    // Move mode: the next generation leaves the source.
    let second = prefixed(&all, &["gen-001/"]);
    let mut job = Seeder::builder(&src, &cloud, dir.path().join("s2"))
        .selection(Selection::new().prefix("gen-001"))
        .mode(Mode::Move)
        .build()
        .unwrap();
    run_to_end(&mut job);
    drop(job);
    let mut both = first.clone();
    both.extend(second.clone());
    check_target(&cloud, &both);
    assert!(src.all_files().unwrap().iter().all(|e| !e.path.starts_with("gen-001/")), "moved files left the source");

    // Recall: object tier -> a new local tier, and the data is the same.
    let back = IndexedTier::create(dir.path().join("back"), small_config()).unwrap();
    let mut job = Seeder::builder(&cloud, &back, dir.path().join("s3")).selection(Selection::all()).build().unwrap();
    run_to_end(&mut job);
    drop(job);
    check_target(&back, &both);

    // A reopened object tier (and a read-only one) sees the same.
    drop(cloud);
    let cloud = IndexedTier::open_object_tier_read_only(dir.path().join("meta"), &cfg).unwrap();
    restores_all(&cloud, &both);
}

pub fn seed_cli_sigkilled_mid_copy_then_resumed(c: &dyn Service) {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 12, 2, 60, 32 << 10);
    drop(src);
    let cfg = c.config("sigkill");
    let url = cfg.url();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let (srcp, meta, state) = (p("src"), p("meta"), p("state"));
    let args = ["run", "--from", &srcp, "--to", &url, "--meta", &meta, "--state", &state, "--all", "--container-kib", "64"];
    kill_after_copy_commits(c, &args, 3);
    let status = Seeder::status(&state).unwrap();
    assert_eq!(status.next_phase, tierseed::Phase::Copy, "killed in {:?}", status.next_phase);

    let out = ok(seed_cmd(c).args(["resume", "--from", &srcp, "--to", &url, "--meta", &meta, "--state", &state]));
    assert!(out.contains("copy mode"), "{out}");
    let cloud = IndexedTier::open_object_tier(&meta, &cfg).unwrap();
    check_target(&cloud, &all);
    // The CLI reads the object tier too.
    drop(cloud);
    let ls = ok(seed_cmd(c).args(["ls", "--tier", &url, "--meta", &meta]));
    assert_eq!(ls.lines().count(), all.len());
    ok(seed_cmd(c).args(["verify", "--tier", &url, "--meta", &meta]));
    let info = ok(seed_cmd(c).args(["info", "--tier", &url, "--meta", &meta]));
    assert!(info.contains(&format!("files       {}", all.len())), "{info}");
}

pub fn lost_metadata_is_recovered_from_the_bucket_alone(c: &dyn Service) {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 13, 3, 30, 24 << 10);
    let cfg = c.config("recover");
    let meta = dir.path().join("meta");
    let cloud = IndexedTier::create_object_tier(&meta, &cfg, small_config()).unwrap();
    let mut job = Seeder::builder(&src, &cloud, dir.path().join("s")).selection(Selection::all()).build().unwrap();
    run_to_end(&mut job);
    drop(job);
    // Namespace changes after the seed: a removal and a direct ingest.
    let removed = cloud.remove(&["gen-000"]).unwrap();
    assert!(!removed.is_empty());
    cloud.ingest_reader("direct/new.txt", 7, &b"ingested straight into the cloud tier"[..]).unwrap();
    // A symlink with its attributes, kept by the journal alone.
    let link = tierseed::FileAttrs {
        kind: tierseed::FileKind::Symlink,
        mode: None,
        owner: Some((1000, 1000)),
        mtime_nanos: 999_999_999,
    };
    let mut s = cloud.ingest_session();
    s.add_reader_with("direct/link", -86_400, link, &mut &b"new.txt"[..]).unwrap();
    s.finish().unwrap();
    // Space reclaimed in the bucket: containers deleted and compacted.
    let gc = cloud.gc(tierseed::GcOptions::default().threshold(1.0), &tierseed::SuspendHandle::default()).unwrap();
    assert!(gc.containers_deleted + gc.containers_compacted > 0, "{gc:?}");
    let mut expected: BTreeMap<String, Vec<u8>> =
        all.into_iter().filter(|(p, _)| !removed.iter().any(|e| &e.path == p)).collect();
    expected.insert("direct/new.txt".into(), b"ingested straight into the cloud tier".to_vec());
    expected.insert("direct/link".into(), b"new.txt".to_vec());
    let before = cloud.info().unwrap();
    drop(cloud);

    std::fs::remove_dir_all(&meta).unwrap();
    let url = cfg.url();
    let out = ok(seed_cmd(c).args(["recover", "--tier", &url, "--meta", meta.to_str().unwrap()]));
    assert!(out.contains(&format!("{} files", expected.len())), "{out}");
    let cloud = IndexedTier::open_object_tier(&meta, &cfg).unwrap();
    let after = cloud.info().unwrap();
    assert_eq!(after, before, "recovered figures differ");
    check_target(&cloud, &expected);
    let e = cloud.entry("direct/link").unwrap();
    assert_eq!((e.mtime, e.attrs), (-86_400, link), "the link as recovered from the journal");

    // Recovering into a directory that holds a tier is refused.
    drop(cloud);
    let err = IndexedTier::recover_object_tier(&meta, &cfg).unwrap_err();
    assert!(err.to_string().contains("already holds a tier"), "{err}");
}

pub fn read_faults_on_the_object_tier_as_a_source_fail_a_recall_cleanly(c: &dyn Service) {
    use tierseed::{Fault, FaultKind, FaultyTier};
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 64, 2, 24, 16 << 10);
    let cfg = c.config("rfault");
    let cloud = IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap();
    run_to_end(&mut Seeder::builder(&src, &cloud, dir.path().join("s0")).selection(Selection::all()).build().unwrap());
    let mut injected = 0;
    for (kind, corrupt) in [
        (FaultKind::ReadMetadata, false),
        (FaultKind::ReadSegments, false),
        (FaultKind::ReadSegments, true),
        (FaultKind::Fingerprints, false),
        (FaultKind::ListFiles, false),
    ] {
        let fault = if corrupt { Fault::corrupt_read(2) } else { Fault::fail(kind, 2) };
        let faulty = FaultyTier::new(&cloud, vec![fault]);
        let back = IndexedTier::create(dir.path().join(format!("back-{injected}")), small_config()).unwrap();
        let st = dir.path().join(format!("st-{injected}"));
        let mut job = Seeder::builder(&faulty, &back, &st).selection(Selection::all()).build().unwrap();
        match job.run() {
            Err(e) if corrupt => assert!(matches!(e.root(), Error::Format(FormatError::CorruptSegment { .. })), "{kind:?}: {e}"),
            Err(e) => assert!(e.to_string().contains("injected fault"), "{kind:?}: {e}"),
            Ok(o) => panic!("{kind:?} call 2 failed but the recall returned {o:?}"),
        }
        drop(job);
        // Nothing corrupt reached the target; the same job then completes.
        run_to_end(&mut Seeder::resume(&st, &cloud, &back).unwrap());
        check_target(&back, &all);
        injected += 1;
    }
    assert_eq!(injected, 5);
}

pub fn two_metadata_directories_writing_one_bucket_never_overwrite_each_other(c: &dyn Service) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = c.config("splitbrain");
    let a = IndexedTier::create_object_tier(dir.path().join("a"), &cfg, small_config()).unwrap();
    a.ingest_reader("first", 0, &b"written by a"[..]).unwrap();
    // A second appliance rebuilds its own metadata from the same bucket
    // while the first is still writing: split brain.
    let (b, _) = IndexedTier::recover_object_tier(dir.path().join("b"), &cfg).unwrap();
    a.ingest_reader("from-a", 0, &b"a's second file, a container of its own"[..]).unwrap();
    // b allocates the same container id and journal number a just used:
    // the create-only PUT refuses, b fails loudly and stops writing.
    let err = b.ingest_reader("from-b", 0, &b"b's file, other bytes under the same id"[..]).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(b.ingest_reader("again", 0, &b"x"[..]).is_err(), "a poisoned handle kept writing");
    drop(b);
    drop(a);
    // What a wrote is intact, in the bucket and through a fresh recovery.
    std::fs::remove_dir_all(dir.path().join("a")).unwrap();
    let (a, _) = IndexedTier::recover_object_tier(dir.path().join("a"), &cfg).unwrap();
    for (p, want) in [("first", &b"written by a"[..]), ("from-a", &b"a's second file, a container of its own"[..])] {
        let mut out = Vec::new();
        a.restore(p, &mut out).unwrap();
        assert_eq!(out, want);
    }
    assert!(a.verify().unwrap().is_clean());
}

/// The tier conformance kit against the S3 tier on Ceph: a writable handle
/// reopened between checks, and a read-only one.
pub fn passes_the_conformance_kit(c: &dyn Service) {
    struct OnService {
        meta: std::path::PathBuf,
        cfg: ObjectConfig,
    }
    impl tierseed::conformance::Harness for OnService {
        fn open(&self) -> tierseed::Result<Box<dyn tierseed::conformance::Tested + '_>> {
            Ok(Box::new(IndexedTier::open_object_tier(&self.meta, &self.cfg)?))
        }
        fn open_read_only(&self) -> Option<tierseed::Result<Box<dyn tierseed::conformance::Tested + '_>>> {
            Some(
                IndexedTier::open_object_tier_read_only(&self.meta, &self.cfg)
                    .map(|t| Box::new(t) as Box<dyn tierseed::conformance::Tested>),
            )
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = c.config("conformance");
    IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap();
    let report = tierseed::conformance::run(&OnService { meta: dir.path().join("meta"), cfg });
    report.assert_ok();
    assert_eq!(report.passed.len(), 11, "{report:?}");
}

/// `Estimate::requests` foresees what a seed into the bucket and a recall
/// out of it then ask of the store, within 5 % of the requests the store
/// counted (and of the bytes each way), at 1 MiB containers, with either
/// verify level.
pub fn estimated_requests_match_what_a_seed_and_a_recall_make(c: &dyn Service) {
    let dir = tempfile::tempdir().unwrap();
    let (src, _all) = synth_source(&dir.path().join("src"), 5, 2, 1500, 24 << 10);
    let config = tierseed::TierConfig { container_size: 1 << 20, ..small_config() };
    let within = |what: &str, est: u64, real: u64| {
        let off = (est as f64 - real as f64).abs() / (real.max(1) as f64);
        eprintln!("{what}: estimated {est}, made {real} ({:.1} % off)", off * 100.0);
        assert!(off <= 0.05, "{what}: estimated {est}, the job made {real}");
    };
    let mut clouds = Vec::new();
    for (name, verify) in [("seed", tierseed::VerifyLevel::Metadata), ("seed-full", tierseed::VerifyLevel::Full)] {
        let cloud = IndexedTier::create_object_tier(dir.path().join(format!("meta-{name}")), &c.config(name), config).unwrap();
        let est = Seeder::estimate(&src, &cloud, &Selection::all()).unwrap();
        let want = est.requests(verify, Mode::Copy).target;
        let before = cloud.requests().unwrap();
        let mut job =
            Seeder::builder(&src, &cloud, dir.path().join(name)).selection(Selection::all()).verify(verify).build().unwrap();
        let r = run_to_end(&mut job);
        drop(job);
        let after = cloud.requests().unwrap();
        eprintln!("{name}: {est:?}\n{want:?}\nmade {before:?} -> {after:?}; wrote {} containers", r.counters.target_containers);
        within(&format!("{name} requests"), want.total(), after.total() - before.total());
        within(&format!("{name} PUTs"), want.puts, after.puts - before.puts);
        within(&format!("{name} GETs"), want.gets, after.gets - before.gets);
        within(&format!("{name} bytes up"), want.bytes_up, after.bytes_up - before.bytes_up);
        within(&format!("{name} bytes down"), want.bytes_down, after.bytes_down - before.bytes_down);
        clouds.push(cloud);
    }
    let cloud = &clouds[0];
    // A recall of half the files: the source side.
    let back = IndexedTier::create(dir.path().join("back"), small_config()).unwrap();
    let sel = Selection::new().prefix("gen-001");
    let est = Seeder::estimate(cloud, &back, &sel).unwrap();
    let want = est.requests(tierseed::VerifyLevel::Metadata, Mode::Copy).source;
    let before = cloud.requests().unwrap();
    let mut job = Seeder::builder(cloud, &back, dir.path().join("recall")).selection(sel).build().unwrap();
    run_to_end(&mut job);
    drop(job);
    let after = cloud.requests().unwrap();
    eprintln!("recall: {est:?}\n{want:?}\nmade {before:?} -> {after:?}");
    within("recall requests", want.total(), after.total() - before.total());
    within("recall GETs", want.gets, after.gets - before.gets);
    within("recall bytes down", want.bytes_down, after.bytes_down - before.bytes_down);

    // A recall in move mode: the files leave the bucket's namespace too.
    let back = IndexedTier::create(dir.path().join("back-move"), small_config()).unwrap();
    let sel = Selection::new().prefix("gen-000");
    let est = Seeder::estimate(cloud, &back, &sel).unwrap();
    let want = est.requests(tierseed::VerifyLevel::Metadata, Mode::Move).source;
    let before = cloud.requests().unwrap();
    let mut job = Seeder::builder(cloud, &back, dir.path().join("recall-move")).selection(sel).mode(Mode::Move).build().unwrap();
    run_to_end(&mut job);
    drop(job);
    let after = cloud.requests().unwrap();
    eprintln!("move recall: {want:?}\nmade {before:?} -> {after:?}");
    within("move recall requests", want.total(), after.total() - before.total());
    within("move recall PUTs", want.puts, after.puts - before.puts);
    within("move recall bytes up", want.bytes_up, after.bytes_up - before.bytes_up);
}

/// `seed estimate` into a bucket says the requests and transfer the job
/// would make, and with `--price` what they cost; a price file with a
/// negative price is refused, naming it.
pub fn seed_estimate_prices_the_requests_of_an_object_target(c: &dyn Service) {
    let dir = tempfile::tempdir().unwrap();
    drop(synth_source(&dir.path().join("src"), 21, 1, 40, 16 << 10));
    let url = c.config("price").url();
    let prices = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices/aws-s3-standard.toml");
    let base = |cmd: &mut Command| {
        cmd.arg("estimate")
            .arg("--from")
            .arg(dir.path().join("src"))
            .args(["--to", &url, "--meta"])
            .arg(dir.path().join("meta"))
            .arg("--all");
    };
    let mut cmd = seed_cmd(c);
    base(&mut cmd);
    let out = ok(cmd.arg("--price").arg(&prices));
    assert!(out.contains("does not exist yet"), "{out}");
    let line = out.lines().find(|l| l.starts_with("requests")).unwrap_or_else(|| panic!("no requests line: {out}"));
    assert!(line.contains("PUT") && line.contains("GET"), "{line}");
    assert!(out.lines().any(|l| l.starts_with("cost") && l.contains("USD")), "{out}");

    let mut cmd = seed_cmd(c);
    base(&mut cmd);
    let json: serde_json::Value = serde_json::from_str(&ok(cmd.arg("--json").arg("--price").arg(&prices))).unwrap();
    let puts = json["requests"]["puts"].as_u64().unwrap();
    assert!(puts > json["target_containers"].as_u64().unwrap() && puts > 1, "a PUT per container and the journal: {json}");
    let cost = &json["cost"];
    let (r, t, total) = (cost["requests"].as_f64().unwrap(), cost["transfer"].as_f64().unwrap(), cost["total"].as_f64().unwrap());
    assert!(r > 0.0 && (r + t - total).abs() < 1e-12, "{cost}");
    assert!(
        (r - puts as f64 / 1000.0 * 0.005
            - json["requests"]["gets"].as_f64().unwrap() / 1000.0 * 0.0004
            - json["requests"]["lists"].as_f64().unwrap() / 1000.0 * 0.005)
            .abs()
            < 1e-12,
        "{cost}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "currency = \"USD\"\nget_per_1000 = -1.0\n").unwrap();
    let mut cmd = seed_cmd(c);
    base(&mut cmd);
    let o = cmd.arg("--price").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("get_per_1000") && err.contains("not a price"), "{err}");
}

/// Issue 18 on the object tier: rot in a bucket object must not let a move
/// delete the only good copy; the move reads back what the bucket had,
/// retires the rotten copy and writes good bytes.
pub fn rot_in_a_bucket_object_never_lets_a_move_delete_the_only_good_copy(c: &dyn Service) {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 61, 2, 30, 20 << 10);
    let cfg = c.config("rot");
    let cloud = IndexedTier::create_object_tier(dir.path().join("meta"), &cfg, small_config()).unwrap();
    run_to_end(
        &mut Seeder::builder(&src, &cloud, dir.path().join("s1")).selection(Selection::new().prefix("gen-000")).build().unwrap(),
    );
    let id = Tier::container_ids(&cloud)
        .unwrap()
        .into_iter()
        .find(|id| cloud.read_metadata(*id).unwrap().kind == tierseed::ContainerKind::Data)
        .unwrap();
    let meta = cloud.read_metadata(id).unwrap();
    let victim = *meta.segments.iter().find(|s| s.codec == tierseed::Codec::Raw).expect("random data is stored raw");
    let url = cloud.container_path(id).to_string_lossy().into_owned();
    // SCHEME://BUCKET/KEY
    let key = url.splitn(4, '/').nth(3).expect("a container's URL names its key").to_string();
    c.rot(&key, 48 + 48 * meta.segments.len() + victim.offset as usize + victim.len as usize / 2);
    let mut job =
        Seeder::builder(&src, &cloud, dir.path().join("s2")).selection(Selection::all()).mode(Mode::Move).build().unwrap();
    run_to_end(&mut job);
    drop(job);
    assert!(src.all_files().unwrap().is_empty(), "the move left files in the source");
    let home = cloud.locate(&[victim.fingerprint]).unwrap()[0];
    assert!(home.is_some_and(|h| h != id), "{home:?}");
    restores_all(&cloud, &all);
}

/// The key of an object under its bucket, from the URL a tier names it by
/// (`SCHEME://BUCKET/KEY`).
fn key_of(url: &std::path::Path) -> String {
    url.to_string_lossy().splitn(4, '/').nth(3).expect("an object's URL names its key").to_string()
}

pub fn an_encrypted_bucket_holds_no_name_byte_or_fingerprint_and_tampering_is_caught(c: &dyn Service) {
    use tierseed::{Credential, TierError};
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 71, 2, 30, 20 << 10);
    let key = Credential::generate_key_file(dir.path().join("key")).unwrap();
    let mut cfg = c.config("sealed");
    cfg.checkpoint_every = 3;
    let meta = dir.path().join("meta");
    let cloud = IndexedTier::create_object_tier_encrypted(&meta, &cfg, small_config(), &key).unwrap();
    run_to_end(&mut Seeder::builder(&src, &cloud, dir.path().join("s1")).selection(Selection::all()).build().unwrap());
    // Namespace changes until a checkpoint and at least two journal
    // entries after it are in the bucket.
    let mut expected = all.clone();
    let journal_keys = |objs: &[(String, Vec<u8>)]| -> Vec<String> {
        objs.iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k.rsplit('/').next().is_some_and(|n| n.len() == 16) && k.contains("/namespace/"))
            .collect()
    };
    let mut objs = c.objects(&cfg.prefix);
    while journal_keys(&objs).len() < 2 || !objs.iter().any(|(k, _)| k.ends_with("/manifest")) {
        let victim = expected.keys().next().unwrap().clone();
        cloud.remove(&[victim.as_str()]).unwrap();
        expected.remove(&victim);
        objs = c.objects(&cfg.prefix);
    }
    check_target(&cloud, &expected);

    // The same data in a plaintext bucket: the grep finds names, bytes
    // and fingerprints there, so it can find them at all.
    let plain_cfg = c.config("plainctl");
    let plain = IndexedTier::create_object_tier(dir.path().join("plainmeta"), &plain_cfg, small_config()).unwrap();
    run_to_end(&mut Seeder::builder(&src, &plain, dir.path().join("s2")).selection(Selection::all()).build().unwrap());
    let needles = crate::encrypt::needles(&src, &all);
    let seen = crate::encrypt::found(&c.objects(&plain_cfg.prefix), &needles);
    for kind in ["file name", "bytes of", "fingerprint"] {
        assert!(seen.iter().any(|s| s.starts_with(kind)), "the control grep found no {kind}: {seen:?}");
    }
    // In the encrypted bucket: containers, journal entries, a checkpoint,
    // the key slots and the tier record, and none of them.
    for part in ["/containers/", "/manifest", "/part-", "/keys", "/tier"] {
        assert!(
            objs.iter().any(|(k, _)| k.contains(part)),
            "no {part} object in {:?}",
            objs.iter().map(|o| &o.0).collect::<Vec<_>>()
        );
    }
    assert_eq!(crate::encrypt::found(&objs, &needles), Vec::<String>::new());

    // Opened only with its key; a wrong one is refused before any
    // container is read.
    drop(cloud);
    let e = IndexedTier::open_object_tier(&meta, &cfg).unwrap_err();
    assert!(matches!(e, Error::Tier(TierError::KeyRequired { .. })), "{e}");
    let wrong = Credential::generate_key_file(dir.path().join("wrong")).unwrap();
    let e = IndexedTier::open_object_tier_read_only_with_key(&meta, &cfg, &wrong).unwrap_err();
    assert!(matches!(e, Error::Tier(TierError::WrongKey { .. })), "{e}");
    // The bucket and the key alone rebuild the tier.
    let (rebuilt, report) = IndexedTier::recover_object_tier_with_key(dir.path().join("meta2"), &cfg, &key).unwrap();
    assert!(report.checkpoint.is_some() && report.journal_entries >= 2, "{report:?}");
    check_target(&rebuilt, &expected);
    assert!(matches!(
        IndexedTier::recover_object_tier(dir.path().join("meta3"), &cfg),
        Err(Error::Tier(TierError::KeyRequired { .. }))
    ));

    // An older journal entry replayed under a later entry's key: caught
    // and named, never applied.
    let journal = journal_keys(&objs);
    let (older, later) = (&journal[journal.len() - 2], &journal[journal.len() - 1]);
    let older_bytes = &objs.iter().find(|(k, _)| k == older).unwrap().1;
    c.put(later, older_bytes);
    let e = IndexedTier::recover_object_tier_with_key(dir.path().join("meta4"), &cfg, &key).unwrap_err();
    let later_name = later.rsplit('/').next().unwrap();
    assert!(e.to_string().contains(later_name) && e.to_string().contains("fails authentication"), "{e}");

    // One container's object in place of another's: caught and named.
    let ids = Tier::container_ids(&rebuilt).unwrap();
    let (a, b) = (ids[0], ids[1]);
    let a_bytes = &objs.iter().find(|(k, _)| *k == key_of(&rebuilt.container_path(a))).unwrap().1;
    c.put(&key_of(&rebuilt.container_path(b)), a_bytes);
    let e = rebuilt.read_metadata(b).unwrap_err();
    assert!(matches!(e, Error::Format(FormatError::CorruptContainer { id, .. }) if id == b), "{e}");
    // A flipped bit in a container's data region: the scrub names it, and
    // no file restores wrong bytes.
    let c_id = ids[ids.len() - 1];
    let c_key = key_of(&rebuilt.container_path(c_id));
    let size = objs.iter().find(|(k, _)| *k == c_key).unwrap().1.len();
    c.rot(&c_key, size - 10);
    let report = rebuilt.verify().unwrap();
    assert!(report.problems.iter().any(|p| p.contains(&c_id.to_string())), "{:?}", report.problems);
    for (path, bytes) in &expected {
        let mut out = Vec::new();
        if rebuilt.restore(path, &mut out).is_ok() {
            assert!(out == *bytes, "{path} restored wrong bytes");
        }
    }
}
