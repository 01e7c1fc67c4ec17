//! Defects found by using `seed` as an adversarial operator would (issue
//! 18), each named after what went wrong.

use std::fs;
use std::path::Path;
use std::process::Command;

use tierseed::{Error, IndexedTier, JobError, Phase, Seeder, Selection, Tier};

use crate::{run_until, small_config, synth_source};

fn seed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seed"));
    c.env("RUST_LOG", "error").env_remove("TIERSEED_CRASH_AT");
    c
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Files of the RocksDB in `ctx` whose name passes `pick`.
fn db_files(ctx: &Path, pick: impl Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(ctx)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| pick(&p.file_name().unwrap().to_string_lossy()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_damaged_job_directory_is_named_and_can_be_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 51, 2, 20, 8_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 5] = [
        ("CURRENT deleted", |ctx| fs::remove_file(ctx.join("CURRENT")).unwrap()),
        ("CURRENT truncated", |ctx| fs::write(ctx.join("CURRENT"), b"").unwrap()),
        ("MANIFEST deleted", |ctx| {
            for m in db_files(ctx, |n| n.starts_with("MANIFEST-")) {
                fs::remove_file(m).unwrap();
            }
        }),
        ("MANIFEST truncated", |ctx| {
            for m in db_files(ctx, |n| n.starts_with("MANIFEST-")) {
                let len = fs::metadata(&m).unwrap().len();
                fs::File::options().write(true).open(&m).unwrap().set_len(len / 2).unwrap();
            }
        }),
        ("WAL deleted", |ctx| {
            let logs = db_files(ctx, |n| n.ends_with(".log") && n != "LOG");
            assert!(!logs.is_empty(), "no WAL to delete");
            for l in logs {
                fs::remove_file(l).unwrap();
            }
        }),
    ];
    for (k, (what, damage)) in damages.iter().enumerate() {
        let state = dir.path().join(format!("state{k}"));
        let job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).build().unwrap();
        drop(run_until(job, &state, &src, &dst, Phase::Copy));
        let before = Seeder::status(&state).unwrap().next_phase;
        damage(&state.join(tierseed::layout::JOB_CONTEXT));
        // Never a silent restart: either the damage is named, or the job
        // resumes where it was.
        match Seeder::resume(&state, &src, &dst) {
            Err(e) => {
                assert!(matches!(e.root(), Error::Job(JobError::DamagedJob { .. } | JobError::NoJob { .. })), "{what}: {e}");
                assert!(e.to_string().contains(&state.display().to_string()), "{what}: {e}");
            }
            Ok(job) => {
                drop(job);
                let now = Seeder::status(&state).unwrap().next_phase;
                assert_eq!(now, before, "{what}: the job would restart at {now:?}, not {before:?}");
            }
        }
        if let Err(e) = Seeder::status(&state) {
            assert!(matches!(e.root(), Error::Job(JobError::DamagedJob { .. } | JobError::NoJob { .. })), "{what}: status: {e}");
        }
        Seeder::abandon(&state).unwrap_or_else(|e| panic!("{what}: abandon: {e}"));
        assert!(!Seeder::exists(&state), "{what}: the job is still there");
        // The CLI's abandon works the same, and a new job can start there.
        let o = seed().args(["abandon", "--state"]).arg(&state).output().unwrap();
        assert!(!o.status.success(), "{what}: a second abandon found a job");
        let job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).build().unwrap();
        drop(job);
        Seeder::abandon(&state).unwrap();
    }
}

#[test]
fn restore_of_long_names_rotten_files_and_a_new_out_dir() {
    let dir = tempfile::tempdir().unwrap();
    let t = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    // A 250-byte name (NAME_MAX is 255): the restore's temp name used to
    // add 31 bytes and fail with "File name too long".
    let long = format!("d/{}", "n".repeat(250));
    t.ingest_reader(&long, 0, &b"a short file with a long name"[..]).unwrap();
    let mut rng = tierseed::synth::Rng::new(7);
    let files: Vec<(String, Vec<u8>)> =
        (0..12).map(|i| (format!("d/f{i:02}"), (0..30_000).map(|_| rng.below(256) as u8).collect())).collect();
    t.ingest_many(files.iter().map(|(p, b)| (p.as_str(), 0, b.as_slice()))).unwrap();
    // One byte of rot in the largest data container (not the long name's).
    let c = crate::rot::largest_data_container(&t);
    let victim = crate::rot::rot_a_segment(&t, c);
    drop(t);
    // Through the binary: --out does not exist yet; every good file is
    // restored, each bad one named, and the exit is non-zero.
    let out = dir.path().join("new/out");
    let o = seed().args(["restore", "--tier"]).arg(dir.path().join("t")).arg("d").arg("--out").arg(&out).output().unwrap();
    let said = text(&o);
    assert!(!o.status.success(), "{said}");
    assert!(said.contains("not restored"), "{said}");
    assert_eq!(fs::read(out.join(&long)).unwrap(), b"a short file with a long name", "{said}");
    let mut good = 0;
    for (p, b) in &files {
        match fs::read(out.join(p)) {
            Ok(got) => {
                assert_eq!(&got, b, "{p}");
                good += 1;
            }
            Err(_) => assert!(said.contains(p.as_str()), "{p} neither restored nor named: {said}"),
        }
    }
    assert!(good >= 1 && good < files.len(), "{good} of {} restored: {said}", files.len());
    // The restore found rot: the tier no longer counts the bad copy.
    let t = IndexedTier::open(dir.path().join("t")).unwrap();
    assert_eq!(t.locate(&[victim]).unwrap()[0], None, "{said}");
}

#[test]
fn a_bare_number_as_an_age_is_refused() {
    let e = tierseed::parse_age("30").unwrap_err();
    assert!(e.to_string().contains("30d"), "{e}");
    assert_eq!(tierseed::parse_age("30d").unwrap(), 30 * 86_400);
    assert_eq!(tierseed::parse_age("45s").unwrap(), 45);
    let dir = tempfile::tempdir().unwrap();
    drop(synth_source(&dir.path().join("src"), 53, 1, 5, 4_000));
    let o = seed()
        .args(["estimate", "--older-than", "30", "--from"])
        .arg(dir.path().join("src"))
        .arg("--to")
        .arg(dir.path().join("dst"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("no unit"), "{}", text(&o));
}

#[test]
fn operator_refusals_and_estimates_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 57, 1, 10, 4_000);
    drop(src);
    let s = dir.path().join("src");
    // The same tier as source and target: said so, not "locked".
    let o = seed()
        .args(["run", "--all", "--from"])
        .arg(&s)
        .arg("--to")
        .arg(&s)
        .arg("--state")
        .arg(dir.path().join("j"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("same tier"), "{}", text(&o));
    // An estimate into a target that does not exist yet: everything would
    // be copied; into two targets: one block each.
    let o = seed().args(["estimate", "--all", "--from"]).arg(&s).arg("--to").arg(dir.path().join("new")).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("does not exist yet") && text(&o).contains("already on target   0 segments"), "{}", text(&o));
    let o = seed()
        .args(["estimate", "--all", "--from"])
        .arg(&s)
        .arg("--to")
        .arg(dir.path().join("a"))
        .arg("--to")
        .arg(dir.path().join("b"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches("would copy").count(), 2, "{}", text(&o));
    assert!(!dir.path().join("new").exists(), "an estimate created the target");
    // A completed job's state directory: said so.
    let (d, st) = (dir.path().join("dst"), dir.path().join("state"));
    let run = || seed().args(["run", "--all", "--from"]).arg(&s).arg("--to").arg(&d).arg("--state").arg(&st).output().unwrap();
    assert!(run().status.success());
    let o = run();
    assert!(!o.status.success());
    assert!(text(&o).contains("finished job"), "{}", text(&o));
    // Times that do not exist are refused.
    for bad in ["2026-13-01T00:00", "2026-02-30T00:00", "2026-01-01T99:00", "2026-01-01T10:61"] {
        let o = seed()
            .args(["run", "--all", "--switch-after", bad, "--from"])
            .arg(&s)
            .arg("--to")
            .arg(&d)
            .arg("--state")
            .arg(dir.path().join("t2"))
            .output()
            .unwrap();
        assert!(!o.status.success() && text(&o).contains("no such date"), "{bad}: {}", text(&o));
    }
}

#[test]
fn ingest_follows_a_symlink_argument_and_skips_a_path_over_path_max() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    for i in 0..5 {
        fs::write(data.join(format!("sub/f{i}")), format!("file {i}")).unwrap();
    }
    std::os::unix::fs::symlink(&data, dir.path().join("link")).unwrap();
    let t = dir.path().join("t");
    let o = seed().args(["ingest", "--tier"]).arg(&t).arg(dir.path().join("link")).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("ingested 5 files"), "{}", text(&o));
    // A directory too deep for PATH_MAX (4096): skipped and named, the
    // rest kept. Built one component at a time, as no path reaches it.
    let script = "import os,sys\nos.chdir(sys.argv[1])\nos.mkdir('deep');os.chdir('deep')\n\
                  for _ in range(22):\n    os.mkdir('d'*200);os.chdir('d'*200)\n\
                  open('f','w').write('x')\n";
    assert!(Command::new("python3").arg("-c").arg(script).arg(&data).status().unwrap().success());
    let t2 = dir.path().join("t2");
    let o = seed().args(["ingest", "--tier"]).arg(&t2).arg(&data).output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("not ingested"), "{}", text(&o));
    let tier = IndexedTier::open(&t2).unwrap();
    assert_eq!(crate::namespace(&tier).len(), 5, "the readable files were not stored");
}

#[test]
fn a_suspended_job_file_job_is_resumed_with_its_job_file_and_the_gate_sees_its_targets() {
    let dir = tempfile::tempdir().unwrap();
    drop(synth_source(&dir.path().join("src"), 59, 1, 10, 4_000));
    let job = dir.path().join("job.toml");
    fs::write(&job, "source = \"src\"\ntargets = [\"dst\"]\nstate = \"state\"\n[selection]\nall = true\n").unwrap();
    // Deferred at the switch: suspended, and the hint names the job file.
    let o =
        seed().current_dir(dir.path()).args(["run", "--switch-after", "2999-01-01T00:00", "--job"]).arg(&job).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains(&format!("seed resume --job {}", job.display())), "{}", text(&o));
    let o = seed().current_dir(dir.path()).args(["resume", "--job"]).arg(&job).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // The gate is told which targets the files go to.
    let src = IndexedTier::open(dir.path().join("src")).unwrap();
    let dst = IndexedTier::create(dir.path().join("dst2"), small_config()).unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let mut job = Seeder::builder(&src, &dst, dir.path().join("st2"))
        .selection(Selection::all())
        .switch_gate(|r: &tierseed::SwitchRequest| {
            seen.lock().unwrap().push(r.targets.clone());
            tierseed::GateAnswer::Approve
        })
        .build()
        .unwrap();
    crate::run_to_end(&mut job);
    drop(job);
    assert_eq!(*seen.lock().unwrap(), vec![vec![dst.tier_id().unwrap().to_string()]]);
}
