//! Compaction after a failed segment creation (issue 18, item 6), at the library level: the
//! injected fault is process-wide, so this file holds one test and nothing else that writes.

#![cfg(feature = "fault-injection")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gokv::catalog::PartitionMeta;
use gokv::persist::fault::{self, Fault};
use gokv::persist::{partition_dir, recovery, PartitionLog};
use gokv::store::{Partition, PersistMode, Schema, ValueRef};

fn meta() -> PartitionMeta {
    PartitionMeta {
        name: "p".into(),
        id: 1,
        shard: 0,
        schema: Schema::String,
        persist: PersistMode::Sync,
        created_ms: 0,
        options: Default::default(),
        stats: Arc::default(),
    }
}

/// A disk-full error on the new segment's header write must not leave that segment behind:
/// today the file stays, every retry fails with "File exists" and the log grows forever.
#[test]
fn a_failed_segment_header_write_does_not_block_later_compactions() {
    let dir = std::env::temp_dir().join(format!("gokv-compact-fault-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let m = meta();
    PartitionLog::create_files(&dir, 1).unwrap();
    let mut p = Partition::new(Schema::String, m.stats.clone());
    let (mut log, _) = recovery::recover_partition(&dir, &m, &mut p, false).unwrap();
    // 3 MiB of overwrites of four keys: past the compaction floor, a tiny snapshot.
    let value = vec![b'x'; 64 << 10];
    for i in 0..48 {
        log.journal.set_str(
            &mut p,
            format!("k{}", i % 4).as_bytes(),
            &value,
            gokv::store::Expiry::Clear,
        );
        log.commit().unwrap();
    }
    let grown = log.disk_bytes();
    assert!(log.wants_compaction(Instant::now()));

    fault::arm(Fault::Write, 1);
    assert!(
        log.start_compaction(&mut p).is_err(),
        "the armed write did not fail"
    );
    let pdir = partition_dir(&dir, 1);
    let files: Vec<String> = std::fs::read_dir(&pdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "left behind by the failed start: {files:?}");

    // The retry (after its back-off) must succeed and shrink the log.
    let later = Instant::now() + Duration::from_secs(3600);
    assert!(log.wants_compaction(later));
    log.start_compaction(&mut p)
        .unwrap_or_else(|e| panic!("the retry failed: {e}"));
    while log.compaction_step(&mut p, 1 << 20).unwrap().is_none() {}
    assert!(
        log.disk_bytes() * 4 < grown,
        "{} bytes after compaction, {grown} before",
        log.disk_bytes()
    );
    drop(log);
    let mut p = Partition::new(Schema::String, m.stats.clone());
    recovery::recover_partition(&dir, &m, &mut p, false).unwrap();
    assert_eq!(p.len(), 4);
    assert_eq!(p.get(b"k3"), Some(ValueRef::Str(&value)));
    std::fs::remove_dir_all(&dir).unwrap();
}
