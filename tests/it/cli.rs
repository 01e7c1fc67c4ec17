//! The `seed` binary as an operator meets it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use tierseed::{IndexedTier, TierError};

use crate::small_config;

fn seed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seed"));
    c.env("RUST_LOG", "error").env_remove("TIERSEED_CRASH_AT");
    c
}

/// A tier of `n` small files under `dir-<k>/`, ten directories.
fn tier_of(dir: &std::path::Path, n: usize) -> (IndexedTier, Vec<(String, Vec<u8>)>) {
    let t = IndexedTier::create(dir, small_config()).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("dir-{}/file-with-a-longish-name-{i:05}.txt", i % 10), format!("content {i}").into_bytes()))
        .collect();
    t.ingest_many(files.iter().map(|(p, b)| (p.as_str(), 1_700_000_000, b.as_slice()))).unwrap();
    (t, files)
}

#[test]
fn seed_ls_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = dir.path().join("t");
    drop(tier_of(&tdir, 3000));
    // More output than a pipe buffer holds; the reader goes away after one line.
    let mut child = seed().args(["ls", "--tier"]).arg(&tdir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("dir-0/"));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn seed_ls_long_is_human_and_json_is_raw() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = dir.path().join("t");
    let (t, _) = tier_of(&tdir, 20);
    let e = t.entry("dir-3/file-with-a-longish-name-00003.txt").unwrap();
    drop(t);
    let long = seed().args(["ls", "--long", "--tier"]).arg(&tdir).arg("dir-3").output().unwrap();
    let text = String::from_utf8(long.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("2023-11-14 22:13"), "{text}");
    assert!(text.contains(&format!("{} B", e.size)), "{text}");
    let json = seed().args(["ls", "--json", "--tier"]).arg(&tdir).arg("dir-3").output().unwrap();
    let first: serde_json::Value = serde_json::from_str(String::from_utf8(json.stdout).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["path"], e.path);
    assert_eq!(first["mtime"], 1_700_000_000);
    assert_eq!(first["size"], e.size);
    assert_eq!(first["root"], e.root.to_string());
}

#[test]
fn seed_restore_of_a_directory_restores_every_file_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = dir.path().join("t");
    let (_, files) = tier_of(&tdir, 200);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let o =
        seed().args(["restore", "--threads", "3", "--tier"]).arg(&tdir).arg("dir-7/").arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("restored 20 files"));
    for (p, b) in &files {
        let restored = out.join(p);
        if p.starts_with("dir-7/") {
            assert_eq!(&std::fs::read(&restored).unwrap(), b, "{p}");
        } else {
            assert!(!restored.exists(), "{p} restored though not under dir-7");
        }
    }
    // A prefix that is neither a file nor a directory is a clear error.
    let o = seed().args(["restore", "--tier"]).arg(&tdir).arg("dir-77").arg("--out").arg(&out).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("dir-77"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn readers_work_on_both_tiers_while_a_job_runs_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = crate::synth_source(&dir.path().join("src"), 61, 2, 30, 60_000);
    let (s, d, st) = (dir.path().join("src"), dir.path().join("dst"), dir.path().join("state"));
    drop(src);
    // The job is held right after its first Copy commit (tier locks held,
    // mid-phase) for as long as we read: no race with its speed.
    let mut cmd = seed();
    cmd.args(["run", "--all", "--container-kib", "64", "--log-events", "--from"])
        .arg(&s)
        .arg("--to")
        .arg(&d)
        .arg("--state")
        .arg(&st)
        .stdout(Stdio::null());
    let mut job = crate::HeldJob::spawn(cmd, "copy.after_commit", 1);
    let run = |args: &[&str], tier: &std::path::Path| {
        let o = seed().args(args).arg("--tier").arg(tier).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    for tier in [&s, &d] {
        let (ok, _, err) = run(&["info"], tier);
        assert!(ok, "info while a job runs: {err}");
        let (ok, out, err) = run(&["verify"], tier);
        assert!(ok, "verify while a job runs: {err}{out}");
        let (ok, _, err) = run(&["ls"], tier);
        assert!(ok, "ls while a job runs: {err}");
    }
    // Restore from the source (the target's namespace fills at Switch).
    let (path, bytes) = all.iter().find(|(_, b)| !b.is_empty()).unwrap();
    let out = dir.path().join("restored");
    let o = seed().args(["restore", "--tier"]).arg(&s).arg(path).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(&std::fs::read(&out).unwrap(), bytes);
    let o = seed().args(["status", "--state"]).arg(&st).output().unwrap();
    assert!(o.status.success());
    // A second writer is still refused, clearly.
    let o = seed().args(["ingest", "--tier"]).arg(&s).arg(&out).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("locked"), "{}", String::from_utf8_lossy(&o.stderr));
    // Still held mid-Copy: nothing above raced its end.
    assert!(job.child.try_wait().unwrap().is_none(), "the held job ended while we read");
    let (status, rest) = job.finish();
    assert!(status.success(), "{}", rest.join("\n"));
    let dst = IndexedTier::open(&d).unwrap();
    crate::check_target(&dst, &all);
}

#[test]
fn seed_rm_removes_files_and_whole_directories() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = dir.path().join("t");
    let (t, files) = tier_of(&tdir, 40);
    let gone = t.remove(&["dir-3", "dir-4/file-with-a-longish-name-00004.txt"]).unwrap();
    assert_eq!(gone.len(), 4 + 1);
    assert!(t.remove(&["no-such-dir"]).is_err());
    let left = crate::namespace(&t);
    assert_eq!(left.len(), files.len() - 5);
    assert!(left.keys().all(|p| !p.starts_with("dir-3/")));
    drop(t);
    let o = seed().args(["rm", "--tier"]).arg(&tdir).arg("dir-5").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("removed 4 files"), "{}", String::from_utf8_lossy(&o.stdout));
    let t = IndexedTier::open(&tdir).unwrap();
    assert!(crate::namespace(&t).keys().all(|p| !p.starts_with("dir-5/")));
    assert!(t.verify().unwrap().is_clean());
    // A read-only handle refuses to write.
    drop(t);
    let ro = IndexedTier::open_read_only(&tdir).unwrap();
    assert!(matches!(ro.remove(&["dir-6"]).unwrap_err(), tierseed::Error::Tier(TierError::ReadOnly { .. })));
}

/// Every job file shipped in `examples/` checks and runs against a tier
/// laid out as it expects (paths relative to the working directory).
#[test]
fn every_example_job_file_checks_and_runs() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut ran = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tiers")).unwrap();
        // Backup generations dated 2023 (so older than 30 days).
        let (src, all) = crate::synth_source(&dir.path().join("tiers/active"), 91, 2, 15, 8_000);
        drop(src);
        let run = |args: &[&str]| {
            let o = seed().current_dir(dir.path()).args(args).arg("--job").arg(&file).output().unwrap();
            assert!(o.status.success(), "{} {args:?}: {}", file.display(), String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        assert!(run(&["check"]).contains(": ok;"));
        run(&["run"]);
        let spec = tierseed::JobSpec::load(&file).unwrap();
        // The PHF the file asks for is the one built: a compact blob is
        // version 2 of the envelope, a boomphf one version 1.
        let state = dir.path().join(&spec.state);
        let blob = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".bin"))
            .expect("a PHF blob");
        let version = u16::from_le_bytes(std::fs::read(&blob).unwrap()[4..6].try_into().unwrap());
        let want = if spec.phf == tierseed::PhfSpec::Compact { 2 } else { 1 };
        assert_eq!(version, want, "{}: PHF blob version", file.display());
        // Every target of the file got the selection.
        for target in &spec.targets {
            let dst = IndexedTier::open(dir.path().join(target)).unwrap();
            let ns = crate::namespace(&dst);
            assert!(!ns.is_empty(), "{}: nothing seeded to {}", file.display(), target.display());
            // What was switched restores byte for byte.
            for p in ns.keys() {
                let mut out = Vec::new();
                dst.restore(p, &mut out).unwrap();
                assert!(out == all[p], "{p}");
            }
        }
        ran += 1;
    }
    assert!(ran >= 2, "no example job files found");
}

#[test]
fn a_job_file_is_checked_named_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = crate::synth_source(&dir.path().join("active"), 92, 1, 10, 5_000);
    drop(src);
    let file = dir.path().join("job.toml");
    // A misspelt field is an error naming the file, the line and the field.
    std::fs::write(
        &file,
        "source = \"active\"\ntargets = [\"archive\"]\nstate = \"st\"\nmod = \"move\"\n[selection]\nall = true\n",
    )
    .unwrap();
    let o = seed().current_dir(dir.path()).args(["check", "--job"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("job.toml:4") && err.contains("mod"), "{err}");
    // A good file runs; a resume from a changed file is refused.
    std::fs::write(
        &file,
        "source = \"active\"\ntargets = [\"archive\"]\nstate = \"st\"\nmode = \"move\"\n[selection]\nall = true\n",
    )
    .unwrap();
    let o = seed().current_dir(dir.path()).args(["run", "--job"]).arg(&file).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("move mode"), "{}", String::from_utf8_lossy(&o.stdout));
    let lib = tierseed::JobSpec::load(&file).unwrap();
    assert_eq!(lib.mode(), tierseed::Mode::Move);
    // The same file resumes (the job is done: it reports its outcome).
    let o = seed().current_dir(dir.path()).args(["resume", "--job"]).arg(&file).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(
        &file,
        "source = \"active\"\ntargets = [\"archive\"]\nstate = \"st\"\nmode = \"copy\"\n[selection]\nall = true\n",
    )
    .unwrap();
    let o = seed().current_dir(dir.path()).args(["resume", "--job"]).arg(&file).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has changed since the job started"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn seed_seeds_several_targets_and_resumes_without_a_lost_site_under_drop() {
    let dir = tempfile::tempdir().unwrap();
    let (tier, all) = crate::synth_source(&dir.path().join("src"), 93, 2, 12, 6_000);
    drop(tier);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (src, site_a, site_b, site_c) = (path("src"), path("a"), path("b"), path("c"));
    let text =
        |o: &std::process::Output| format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    for (policy, state) in [("fail", path("st-fail")), ("drop", path("st-drop"))] {
        // Three targets; the switch is deferred, so the job suspends there.
        let out = seed()
            .args(["run", "--from", &src, "--to", &site_a, "--to", &site_b, "--to", &site_c, "--state", &state, "--all"])
            .args(["--on-target-failure", policy, "--switch-after", "2999-01-01T00:00"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("--to {site_a} --to {site_b} --to {site_c}")),
            "the resume hint names every target: {}",
            text(&out)
        );
        // Site c is gone.
        let out = seed()
            .args([
                "resume",
                "--from",
                &src,
                "--to",
                &site_a,
                "--to",
                &site_b,
                "--to",
                &site_c,
                "--state",
                &state,
                "--skip-target",
                &site_c,
            ])
            .output()
            .unwrap();
        if policy == "fail" {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert!(text(&out).contains("the job's policy is fail"), "{}", text(&out));
            continue;
        }
        assert_eq!(out.status.code(), Some(4), "completed without a target: exit 4: {}", text(&out));
        let shown = text(&out);
        assert!(shown.contains("target 3") && shown.contains("DROPPED") && shown.contains("not given"), "{shown}");
        let status = seed().args(["status", "--state", &state]).output().unwrap();
        assert!(text(&status).contains("DROPPED"), "{}", text(&status));
    }
    // a and b hold every file (from the drop job; the fail job never switched).
    for t in [&site_a, &site_b] {
        let dst = IndexedTier::open(t).unwrap();
        let ns = crate::namespace(&dst);
        assert_eq!(ns.len(), all.len());
        for (file, bytes) in &all {
            let mut restored = Vec::new();
            dst.restore(file, &mut restored).unwrap();
            assert!(restored == *bytes, "{file}");
        }
    }
    assert!(crate::namespace(&IndexedTier::open(&site_c).unwrap()).is_empty());
    // The same target twice is refused before anything runs.
    let out = seed()
        .args(["run", "--from", &src, "--to", &site_a, "--to", &site_a, "--state", &path("st-twice"), "--all"])
        .output()
        .unwrap();
    assert!(!out.status.success() && text(&out).contains("given twice"), "{}", text(&out));
}

/// The operator's kit: completion scripts that their shells accept and
/// that know every command, a manual page that `man` renders, and
/// `--version` naming the on-disk formats the library says it writes.
#[test]
fn seed_completions_man_page_and_version_name_every_command_and_format() {
    let commands = ["ingest", "ls", "restore", "rm", "gc", "check", "verify", "info", "run", "resume", "status", "estimate"];
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = seed().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8(out.stdout).unwrap();
        for c in commands {
            assert!(script.contains(c), "{shell} completions lack {c}");
        }
        if shell == "bash" {
            let path = dir.path().join("seed.bash");
            std::fs::write(&path, &script).unwrap();
            let st = Command::new("bash").arg("-n").arg(&path).status().unwrap();
            assert!(st.success(), "bash rejects the completion script");
        }
    }
    let bad = seed().args(["completions", "cmd.exe"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");

    let man = seed().arg("man").output().unwrap();
    assert!(man.status.success());
    let roff = String::from_utf8(man.stdout).unwrap();
    assert!(roff.contains(".TH seed 1"), "not a section-1 page: {}", &roff[..roff.len().min(200)]);
    for c in commands {
        assert!(roff.contains(c), "the manual page lacks {c}");
    }

    let v = seed().arg("--version").output().unwrap();
    assert!(v.status.success());
    let text = String::from_utf8(v.stdout).unwrap();
    assert!(text.starts_with(&format!("seed {}", env!("CARGO_PKG_VERSION"))), "{text}");
    let formats = tierseed::format_versions();
    assert!(formats.iter().any(|f| f.what == "container file" && f.writes == 2 && f.reads_from == 1));
    for f in formats {
        let line =
            text.lines().find(|l| l.trim_start().starts_with(f.what)).unwrap_or_else(|| panic!("{} not in {text}", f.what));
        assert!(line.ends_with(&format!("v{} / v{}", f.writes, f.reads_from)), "{line}");
    }
}

/// A name with a newline, a tab, an escape byte and a backslash: `seed ls`
/// shows each name on one line with them escaped, `-0` and `--json` give
/// the exact names.
#[test]
fn seed_ls_escapes_control_characters_and_null_and_json_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = dir.path().join("t");
    let names = ["a\nb.txt", "tab\there", "esc\u{1b}[31mred", "back\\slash", "plain"];
    {
        let t = IndexedTier::create(&tdir, small_config()).unwrap();
        t.ingest_many(names.iter().map(|p| (*p, 0, b"x".as_slice()))).unwrap();
    }
    let out = seed().args(["ls", "--tier"]).arg(&tdir).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, ["a\\nb.txt", "back\\\\slash", "esc\\x1b[31mred", "plain", "tab\\there"], "{text:?}");
    let null = seed().args(["ls", "-0", "--tier"]).arg(&tdir).output().unwrap();
    let mut exact: Vec<&[u8]> = null.stdout.split(|b| *b == 0).collect();
    assert_eq!(exact.pop(), Some(&b""[..]), "every name ends with a NUL");
    let mut want: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
    want.sort();
    assert_eq!(exact, want);
    let json = seed().args(["ls", "--json", "--tier"]).arg(&tdir).output().unwrap();
    let paths: Vec<String> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths.len(), names.len());
    assert!(paths.iter().any(|p| p == "a\nb.txt"));
    let both = seed().args(["ls", "-0", "--long", "--tier"]).arg(&tdir).output().unwrap();
    assert_eq!(both.status.code(), Some(2), "-0 with --long is a usage error");
}

/// `--limit` takes a schedule by time of day; the job keeps it, and
/// `seed status` shows it with the limit in force; a malformed one is
/// refused before anything runs, naming the rule.
#[test]
fn seed_run_limit_by_time_of_day_is_kept_and_shown_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let (s, d, st) = (dir.path().join("src"), dir.path().join("dst"), dir.path().join("state"));
    drop(tier_of(&s, 40));
    let schedule = "sat-sun 00:00-06:00=300, *=400";
    let run = |state: &std::path::Path, limit: &str| {
        seed()
            .args(["run", "--all", "--from"])
            .arg(&s)
            .arg("--to")
            .arg(&d)
            .arg("--state")
            .arg(state)
            .args(["--limit", limit])
            .output()
            .unwrap()
    };
    let o = run(&st, schedule);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = seed().args(["status", "--state"]).arg(&st).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains(&format!("(schedule {schedule})")), "{text}");
    assert!(text.contains("MiB/s now"), "{text}");
    let o = seed().args(["status", "--json", "--state"]).arg(&st).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["limit"], schedule);

    let o = run(&dir.path().join("st2"), "mon-fri 8-18=20");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("not a time HH:MM") && err.contains("mon-fri 8-18"), "{err}");
    assert!(!dir.path().join("st2").exists(), "a refused limit left a job behind");
}

/// `--encrypt` on a target that already exists in plaintext is refused (it
/// used to be opened and written in plaintext), and a key operation on a
/// plain tier says it has no keys.
#[test]
fn seed_encrypt_refuses_an_existing_plain_target() {
    let dir = tempfile::tempdir().unwrap();
    let (s, d, key) = (dir.path().join("src"), dir.path().join("dst"), dir.path().join("key"));
    drop(tier_of(&s, 10));
    drop(tier_of(&d, 5));
    assert!(seed().args(["key", "generate"]).arg(&key).status().unwrap().success());
    let out = seed()
        .args(["run", "--all", "--encrypt", "--from"])
        .arg(&s)
        .arg("--to")
        .arg(&d)
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--key-file")
        .arg(&key)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("exists and is not encrypted"), "{err}");
    assert!(!dir.path().join("state").exists() || tierseed::Seeder::status(dir.path().join("state")).is_err());
    let out = seed().args(["key", "list", "--tier"]).arg(&d).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is not encrypted"), "{err}");
}
