//! The context on its own: records written by a commit read back after a
//! reopen, a second job is refused, file chunks of both versions decode,
//! and a damaged chunk is reported as such, never misread.

use super::*;
use crate::engine::{Mode, Phase, Selection, TargetFailure};
use crate::mark::phf::PhfKind;
use crate::tier::{FileAttrs, FileKind};

fn job() -> JobRecord {
    JobRecord {
        job_id: [1; 16],
        source: [2; 16],
        target: [3; 16],
        selection: Selection::all(),
        mode: Mode::Move,
        gamma: 1.7,
        phf: PhfKind::Boomphf,
        created: 5,
        more_targets: Vec::new(),
        on_failure: TargetFailure::Fail,
    }
}

fn entry(i: u64) -> FileEntry {
    FileEntry {
        path: format!("d/f{i}"),
        size: i,
        mtime: -(i as i64),
        root: crate::format::fingerprint::Fingerprint([i as u8; 32]),
        height: 1,
        attrs: FileAttrs {
            kind: if i.is_multiple_of(2) { FileKind::File } else { FileKind::Symlink },
            mode: Some(0o4755),
            owner: Some((7, 8)),
            mtime_nanos: 123,
        },
    }
}

fn create(dir: &Path) -> Context {
    Context::create(
        dir,
        &job(),
        &ProgressRecord::new(1),
        &OptionsRecord { verify: 1 },
        Some("origin"),
        Some("mon 08:00-18:00=2, *=0"),
    )
    .expect("a fresh state directory takes a job")
}

#[test]
fn records_committed_read_back_after_a_reopen() {
    let dir = tempfile::tempdir().expect("a temp dir");
    {
        let mut ctx = create(dir.path());
        let files: Vec<FileEntry> = (0..5).map(entry).collect();
        ctx.put_file_chunk(0, &files).expect("a chunk is written");
        let mut p = ProgressRecord::new(1);
        p.phase_done = Some(Phase::Select);
        p.counters.files_selected = 5;
        let mut c = Commit::default();
        c.progress(&p).snapshot(&[ContainerId(3), ContainerId(9)]).homed(&[4, 2]);
        ctx.commit_phase(c).expect("the phase commits");
    }
    let ctx = Context::open(dir.path()).expect("the job reopens");
    let r = ctx.reader();
    assert_eq!(r.progress().expect("progress").phase_done, Some(Phase::Select));
    assert_eq!(r.snapshot().expect("snapshot"), vec![ContainerId(3), ContainerId(9)]);
    assert_eq!(r.homed().expect("homed"), Some(vec![4, 2]));
    assert_eq!(r.origin().expect("origin").as_deref(), Some("origin"));
    assert_eq!(r.limit().expect("limit").as_deref(), Some("mon 08:00-18:00=2, *=0"));
    assert_eq!(r.options().expect("options").map(|o| o.verify), Some(1));
    let j = r.job().expect("job").expect("a job record");
    assert_eq!((j.job_id, j.mode, j.created), ([1; 16], Mode::Move, 5));
    // Every attribute of every entry survives the chunk.
    assert_eq!(r.file_chunk(0).expect("the chunk"), (0..5).map(entry).collect::<Vec<_>>());
    // A chunk past those written is a damaged context, named.
    assert!(r.file_chunk(1).expect_err("no chunk 1").to_string().contains("missing"));
}

#[test]
fn a_second_job_in_the_same_state_directory_is_refused() {
    let dir = tempfile::tempdir().expect("a temp dir");
    drop(create(dir.path()));
    let err = Context::create(dir.path(), &job(), &ProgressRecord::new(1), &OptionsRecord { verify: 0 }, None, None)
        .err()
        .expect("a second job is refused");
    assert!(matches!(err, Error::Job(JobError::JobExists { .. })), "{err}");
}

/// A job suspended by a build before file chunk version 2 holds version-1
/// chunks: they read as regular files without attributes.
#[test]
fn a_version_1_file_chunk_reads_with_default_attributes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let ctx = create(dir.path());
    let v1: Vec<FileEntryV1> = Vec::new();
    ctx.db.put(files_key(0), encode_record(crate::format::magic::CONTEXT, 1, &v1)).expect("a raw put");
    assert!(ctx.reader().file_chunk(0).expect("an empty v1 chunk").is_empty());
    // A v1 record of a real entry, through the record type's own layout.
    let fixture = (String::from("a/b"), 3u64, -7i64, [9u8; 32], 1u8);
    ctx.db.put(files_key(1), encode_record(crate::format::magic::CONTEXT, 1, &vec![fixture])).expect("a raw put");
    let got = ctx.reader().file_chunk(1).expect("a v1 chunk");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].path.as_str(), got[0].size, got[0].mtime, got[0].height), ("a/b", 3, -7, 1));
    assert_eq!(got[0].attrs, FileAttrs::default());
}

#[test]
fn a_damaged_file_chunk_is_reported_not_misread() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut ctx = create(dir.path());
    ctx.put_file_chunk(0, &[entry(1)]).expect("a chunk is written");
    let mut bytes = ctx.db.get(files_key(0)).expect("a get").expect("the chunk");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    ctx.db.put(files_key(0), bytes).expect("a raw put");
    let err = ctx.reader().file_chunk(0).expect_err("a flipped bit is caught");
    assert!(matches!(err, Error::Format(_)), "{err}");
    assert!(err.to_string().contains("files/"), "the message names the record: {err}");
}

#[test]
fn phases_follow_in_order_and_done_is_last() {
    assert_eq!(Phase::after(None), Phase::Select);
    for w in Phase::ALL.windows(2) {
        assert_eq!(Phase::after(Some(w[0])), w[1]);
    }
    assert_eq!(Phase::after(Some(Phase::Done)), Phase::Done);
}
