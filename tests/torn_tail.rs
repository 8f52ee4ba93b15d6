//! Recovery policy against damaged logs, at the library level so that every offset can be
//! tried quickly: cut the last segment at every offset, flip bytes in the last record and in
//! earlier ones, append garbage.

use std::path::Path;
use std::sync::Arc;

use gokv::catalog::PartitionMeta;
use gokv::persist::{partition_dir, recovery, PartitionLog};
use gokv::store::{Partition, PersistMode, Schema, ValueRef};

fn meta(id: u64) -> PartitionMeta {
    PartitionMeta {
        name: format!("p{id}"),
        id,
        shard: 0,
        schema: Schema::String,
        persist: PersistMode::Sync,
        created_ms: 0,
        options: Default::default(),
        stats: Arc::default(),
    }
}

fn recover(dir: &Path, id: u64) -> Result<(Partition, u64), String> {
    recover_with(dir, id, false)
}

/// `accept`: as with `--accept-data-loss`.
fn recover_with(dir: &Path, id: u64, accept: bool) -> Result<(Partition, u64), String> {
    let m = meta(id);
    let mut p = Partition::new(Schema::String, m.stats.clone());
    let (_, loaded) =
        recovery::recover_partition(dir, &m, &mut p, accept).map_err(|e| e.to_string())?;
    Ok((p, loaded.truncated))
}

/// Writes `n` records, one commit each; returns the segment's path and every record's end.
fn write_log(dir: &Path, id: u64, n: usize) -> (std::path::PathBuf, Vec<u64>) {
    PartitionLog::create_files(dir, id).unwrap();
    let (mut p, _) = recover(dir, id).unwrap();
    let m = meta(id);
    let (mut log, _) = recovery::recover_partition(dir, &m, &mut p, false).unwrap();
    let seg = partition_dir(dir, id).join("seg-0000000000000001.log");
    let mut ends = vec![std::fs::metadata(&seg).unwrap().len()];
    for i in 0..n {
        log.journal.set_str(
            &mut p,
            format!("key{i}").as_bytes(),
            format!("value{i}").as_bytes(),
            gokv::store::Expiry::Clear,
        );
        log.commit().unwrap();
        ends.push(std::fs::metadata(&seg).unwrap().len());
    }
    (seg, ends)
}

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("gokv-torn-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_cut_recovers_the_whole_records_before_it() {
    let dir = tmp("cut");
    let (seg, ends) = write_log(&dir, 1, 8);
    let original = std::fs::read(&seg).unwrap();
    // Every commit but the last is known durable (the next commit's fsync recorded it), so
    // only a cut inside the last record can be a torn write.
    let durable = ends[ends.len() - 2];
    for cut in ends[0]..=*ends.last().unwrap() {
        std::fs::write(&seg, &original[..cut as usize]).unwrap();
        if cut < durable {
            let e = recover(&dir, 1)
                .err()
                .unwrap_or_else(|| panic!("cut {cut} into durable bytes was accepted"));
            assert!(e.contains("--accept-data-loss"), "cut {cut}: {e}");
            continue;
        }
        let (p, truncated) = recover(&dir, 1).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
        assert_eq!(p.len(), whole, "cut at {cut}");
        let boundary = ends[whole];
        assert_eq!(truncated, cut - boundary, "cut at {cut}");
        // The torn bytes are gone from the file, so the next append starts clean.
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), boundary);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_flip_in_the_last_record_is_a_torn_tail_and_earlier_is_an_error() {
    let dir = tmp("flip");
    let (seg, ends) = write_log(&dir, 2, 6);
    let original = std::fs::read(&seg).unwrap();
    let last_start = ends[ends.len() - 2] as usize;
    for at in ends[0] as usize..original.len() {
        let mut bytes = original.clone();
        bytes[at] ^= 0x10;
        std::fs::write(&seg, &bytes).unwrap();
        let result = recover(&dir, 2);
        if at >= last_start {
            let (p, _) = result.unwrap_or_else(|e| panic!("flip at {at}: {e}"));
            assert_eq!(p.len(), 5, "flip at {at}");
        } else {
            let e = result
                .err()
                .unwrap_or_else(|| panic!("flip at {at} was accepted"));
            let record_start = ends.iter().rfind(|&&e| e as usize <= at).unwrap();
            assert!(e.contains(&seg.display().to_string()), "{e}");
            assert!(
                e.contains(&format!("offset {record_start}")),
                "flip at {at}: {e}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_and_zeros_after_the_last_record_are_truncated() {
    let dir = tmp("garbage");
    let (seg, ends) = write_log(&dir, 3, 4);
    let original = std::fs::read(&seg).unwrap();
    for tail in [
        vec![0u8; 4096],
        b"\x07\x00\x00\x00garbage!".to_vec(),
        vec![0xff; 3],
    ] {
        let mut bytes = original.clone();
        bytes.extend_from_slice(&tail);
        std::fs::write(&seg, &bytes).unwrap();
        let (p, truncated) = recover(&dir, 3).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!(truncated, tail.len() as u64);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            *ends.last().unwrap()
        );
        assert_eq!(p.get(b"key3"), Some(ValueRef::Str(b"value3")));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- durable length, missing segments, framing, header hints (issue 18, items 7 to 9) ----

/// A copy of `from` (one directory level of partitions, as the tests build them).
fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.metadata().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn seg_path(dir: &Path, id: u64, seq: u64) -> std::path::PathBuf {
    partition_dir(dir, id).join(format!("seg-{seq:016}.log"))
}

/// Cutting the last segment in half removes records whose commit was fsync'd (and so
/// acknowledged): that is not a torn write, and startup must say so instead of dropping them.
#[test]
fn a_cut_into_durable_bytes_refuses_to_start() {
    let dir = tmp("cut-durable");
    let (seg, ends) = write_log(&dir, 4, 10);
    let original = std::fs::read(&seg).unwrap();
    let half = (ends[0] + (ends[10] - ends[0]) / 2) as usize;
    std::fs::write(&seg, &original[..half]).unwrap();
    let e = recover(&dir, 4)
        .err()
        .expect("a cut into durable bytes was accepted");
    assert!(e.contains(&seg.display().to_string()), "{e}");
    assert!(e.contains("offset"), "{e}");
    assert!(e.contains("--accept-data-loss"), "{e}");
    assert!(!e.contains("not at the tail"), "{e}");
    // The flag starts it with the whole records before the cut, and leaves a directory that
    // starts without the flag afterwards.
    let whole = ends.iter().filter(|&&e| e <= half as u64).count() - 1;
    let (p, _) = recover_with(&dir, 4, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.len(), whole);
    let (p, _) = recover(&dir, 4).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.len(), whole);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A zeroed tail that reaches into fsync'd records refuses; zeros only past the durable
/// length (the last commit, never known to be durable) are a torn write, truncated as before.
#[test]
fn a_zeroed_tail_refuses_unless_it_is_past_the_durable_length() {
    let dir = tmp("zero-durable");
    let (seg, ends) = write_log(&dir, 5, 10);
    let original = std::fs::read(&seg).unwrap();
    let mut zeroed = original.clone();
    for b in &mut zeroed[ends[5] as usize..] {
        *b = 0;
    }
    std::fs::write(&seg, &zeroed).unwrap();
    let e = recover(&dir, 5)
        .err()
        .expect("zeros over durable records were accepted");
    assert!(e.contains(&seg.display().to_string()), "{e}");
    assert!(e.contains(&format!("offset {}", ends[5])), "{e}");
    assert!(e.contains("--accept-data-loss"), "{e}");

    let mut torn = original.clone();
    for b in &mut torn[ends[9] as usize + 3..] {
        *b = 0;
    }
    std::fs::write(&seg, &torn).unwrap();
    let (p, truncated) = recover(&dir, 5).unwrap();
    assert_eq!(p.len(), 9);
    assert_eq!(truncated, ends[10] - ends[9]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Segments 1, 2 and 3 of partition `id`, no snapshot (two compactions that never finished).
fn three_segments(dir: &Path, id: u64) {
    let m = meta(id);
    PartitionLog::create_files(dir, id).unwrap();
    for round in 0..3 {
        let mut p = Partition::new(Schema::String, m.stats.clone());
        let (mut log, _) = recovery::recover_partition(dir, &m, &mut p, false).unwrap();
        for i in 0..5 {
            let key = format!("r{round}k{i}");
            log.journal
                .set_str(&mut p, key.as_bytes(), b"v", gokv::store::Expiry::Clear);
            log.commit().unwrap();
        }
        if round < 2 {
            // Starts the next segment; the snapshot is never finished (a crash).
            log.start_compaction(&mut p).unwrap();
        }
    }
}

#[test]
fn a_missing_segment_refuses_to_start() {
    let base = tmp("missing-seg");
    three_segments(&base, 6);
    let (p, _) = recover(&base, 6).unwrap();
    assert_eq!(p.len(), 15);
    for gone in 1..=3 {
        let dir = tmp(&format!("missing-seg-{gone}"));
        copy_tree(&base, &dir);
        let path = seg_path(&dir, 6, gone);
        std::fs::remove_file(&path).unwrap();
        let e = recover(&dir, 6)
            .err()
            .unwrap_or_else(|| panic!("started without segment {gone}"));
        assert!(
            e.contains(&path.display().to_string()),
            "segment {gone}: {e}"
        );
        assert!(e.contains("--accept-data-loss"), "segment {gone}: {e}");
        let (p, _) = recover_with(&dir, 6, true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.len(), 10, "segment {gone}");
        let (p, _) = recover(&dir, 6).unwrap_or_else(|e| panic!("segment {gone}: {e}"));
        assert_eq!(p.len(), 10, "segment {gone}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// After a complete compaction the snapshot holds the keys of the deleted segments: without
/// it the partition cannot start whole.
#[test]
fn a_missing_snapshot_refuses_to_start() {
    let dir = tmp("missing-snap");
    let m = meta(7);
    PartitionLog::create_files(&dir, 7).unwrap();
    let mut p = Partition::new(Schema::String, m.stats.clone());
    let (mut log, _) = recovery::recover_partition(&dir, &m, &mut p, false).unwrap();
    for i in 0..20 {
        log.journal.set_str(
            &mut p,
            format!("k{i}").as_bytes(),
            b"v",
            gokv::store::Expiry::Clear,
        );
        log.commit().unwrap();
    }
    log.start_compaction(&mut p).unwrap();
    while log.compaction_step(&mut p, 1 << 20).unwrap().is_none() {}
    log.journal
        .set_str(&mut p, b"after", b"v", gokv::store::Expiry::Clear);
    log.commit().unwrap();
    drop(log);
    let snap = partition_dir(&dir, 7).join(format!("snap-{:016}.snap", 2));
    assert!(snap.exists());
    assert_eq!(recover(&dir, 7).unwrap().0.len(), 21);
    std::fs::remove_file(&snap).unwrap();
    let e = recover(&dir, 7)
        .err()
        .expect("started without its snapshot");
    assert!(e.contains("--accept-data-loss"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A crash in the middle of writing a record whose value happens to hold an encoded record:
/// the record framing says the damaged record runs to the end of the file, so it is the torn
/// tail, whatever its payload bytes look like.
#[test]
fn a_torn_record_whose_value_embeds_a_record_is_a_torn_tail() {
    use gokv::persist::record::{encode, Record};
    let dir = tmp("embedded");
    let (seg, _) = write_log(&dir, 8, 3);
    let mut inner = Vec::new();
    encode(
        &Record::SetStr {
            key: b"inner",
            value: b"looks valid",
            deadline: None,
        },
        &mut inner,
    );
    let mut value = b"prefix".to_vec();
    value.extend_from_slice(&inner);
    value.extend_from_slice(&[b'z'; 64]);
    {
        let m = meta(8);
        let mut p = Partition::new(Schema::String, m.stats.clone());
        let (mut log, _) = recovery::recover_partition(&dir, &m, &mut p, false).unwrap();
        log.journal
            .set_str(&mut p, b"big", &value, gokv::store::Expiry::Clear);
        log.commit().unwrap();
    }
    let bytes = std::fs::read(&seg).unwrap();
    // Cut after the embedded record, before the end of the outer one.
    std::fs::write(&seg, &bytes[..bytes.len() - 20]).unwrap();
    let (p, truncated) = recover(&dir, 8).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.len(), 3);
    assert!(p.get(b"inner").is_none());
    assert!(truncated > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A snapshot header's record-count hint is only a hint: one claiming four billion entries
/// in a file of a few hundred bytes must not size the table by it (that aborted the process).
#[test]
fn a_snapshot_header_hint_is_bounded_by_the_file_size() {
    use gokv::persist::record::{FileHeader, FILE_HEADER};
    let dir = tmp("hint");
    let m = meta(9);
    PartitionLog::create_files(&dir, 9).unwrap();
    let mut p = Partition::new(Schema::String, m.stats.clone());
    let (mut log, _) = recovery::recover_partition(&dir, &m, &mut p, false).unwrap();
    for i in 0..10 {
        log.journal.set_str(
            &mut p,
            format!("k{i}").as_bytes(),
            b"v",
            gokv::store::Expiry::Clear,
        );
        log.commit().unwrap();
    }
    log.start_compaction(&mut p).unwrap();
    while log.compaction_step(&mut p, 1 << 20).unwrap().is_none() {}
    drop(log);
    let snap = partition_dir(&dir, 9).join(format!("snap-{:016}.snap", 2));
    let mut bytes = std::fs::read(&snap).unwrap();
    let mut header = FileHeader::decode(&bytes).unwrap();
    header.hint = u32::MAX;
    bytes[..FILE_HEADER].copy_from_slice(&header.encode());
    std::fs::write(&snap, &bytes).unwrap();
    let (p, _) = recover(&dir, 9).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.len(), 10);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A data directory of the first release (version-1 segments, records at byte 32) starts:
/// its records load, and new writes go to a version-2 segment after it.
#[test]
fn a_version_one_segment_still_starts() {
    use gokv::persist::record::{encode, Record, FILE_HEADER};
    let dir = tmp("v1");
    let pdir = partition_dir(&dir, 10);
    std::fs::create_dir_all(&pdir).unwrap();
    let mut bytes = vec![0u8; FILE_HEADER];
    bytes[..8].copy_from_slice(b"GOKVLOG\x01");
    bytes[8..16].copy_from_slice(&10u64.to_le_bytes());
    bytes[16..24].copy_from_slice(&1u64.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
    for i in 0..5 {
        let key = format!("old{i}");
        encode(
            &Record::SetStr {
                key: key.as_bytes(),
                value: b"v1",
                deadline: None,
            },
            &mut bytes,
        );
    }
    std::fs::write(seg_path(&dir, 10, 1), &bytes).unwrap();
    let m = meta(10);
    let mut p = Partition::new(Schema::String, m.stats.clone());
    let (mut log, _) = recovery::recover_partition(&dir, &m, &mut p, false).unwrap();
    assert_eq!(p.len(), 5);
    log.journal
        .set_str(&mut p, b"new", b"v2", gokv::store::Expiry::Clear);
    log.commit().unwrap();
    drop(log);
    assert!(seg_path(&dir, 10, 2).exists());
    let (p, _) = recover(&dir, 10).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.len(), 6);
    assert_eq!(p.get(b"old4"), Some(ValueRef::Str(b"v1")));
    assert_eq!(p.get(b"new"), Some(ValueRef::Str(b"v2")));
    std::fs::remove_dir_all(&dir).unwrap();
}
