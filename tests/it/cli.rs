//! The `seed` binary as an operator meets it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use tierseed::LocalTier;

use crate::small_config;

fn seed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_seed"));
    c.env("RUST_LOG", "error").env_remove("TIERSEED_CRASH_AT");
    c
}

/// A tier of `n` small files under `dir-<k>/`, ten directories.
fn tier_of(dir: &std::path::Path, n: usize) -> (LocalTier, Vec<(String, Vec<u8>)>) {
    let t = LocalTier::create(dir, small_config()).unwrap();
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
