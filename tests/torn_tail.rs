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
        stats: Arc::default(),
    }
}

fn recover(dir: &Path, id: u64) -> Result<(Partition, u64), String> {
    let m = meta(id);
    let mut p = Partition::new(Schema::String, m.stats.clone());
    let (_, loaded) = recovery::recover_partition(dir, &m, &mut p).map_err(|e| e.to_string())?;
    Ok((p, loaded.truncated))
}

/// Writes `n` records, one commit each; returns the segment's path and every record's end.
fn write_log(dir: &Path, id: u64, n: usize) -> (std::path::PathBuf, Vec<u64>) {
    PartitionLog::create_files(dir, id).unwrap();
    let (mut p, _) = recover(dir, id).unwrap();
    let m = meta(id);
    let (mut log, _) = recovery::recover_partition(dir, &m, &mut p).unwrap();
    let seg = partition_dir(dir, id).join("seg-0000000000000001.log");
    let mut ends = vec![std::fs::metadata(&seg).unwrap().len()];
    for i in 0..n {
        log.journal.set_str(
            &mut p,
            format!("key{i}").as_bytes(),
            format!("value{i}").as_bytes(),
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
    for cut in ends[0]..=*ends.last().unwrap() {
        std::fs::write(&seg, &original[..cut as usize]).unwrap();
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
