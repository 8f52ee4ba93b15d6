//! Persistence against the real binary: the catalog across restarts, DROP, SIGTERM, torn and
//! corrupt logs, compaction, and (with `--features fault-injection`) the -IOERR path.

mod common;

use std::path::{Path, PathBuf};

use common::{q_err, q_ok, DataDir, Server};

/// The only segment file of the partition with catalog id `id`.
fn segments(dir: &DataDir, id: u64) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.path().join("partitions").join(id.to_string()))
            .expect("partition dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
    files.sort();
    files
}

/// Bytes of every file under `dir`.
fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata().expect("metadata");
            total += if meta.is_dir() {
                disk_usage(&entry.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

/// A field of `INFO persistence`, summed when several lines carry it (one per shard).
fn info_field(con: &mut redis::Connection, field: &str) -> u64 {
    let text: String = q_ok(con, &["INFO", "persistence"]);
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{field}:")))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn catalog_survives_restart_and_memory_partitions_come_back_empty() {
    let dir = DataDir::new("catalog");
    let node = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = node.client();
    for (name, schema, persist) in [
        ("mem", "STRING", "MEMORY"),
        ("sync_s", "STRING", "SYNC"),
        ("async_i", "INT", "ASYNC"),
        ("sync_i", "INT", "sync"),
    ] {
        let _: () = q_ok(&mut c, &["CREATE", "PARTITION", name, schema, persist]);
    }
    let _: () = q_ok(&mut c, &["SET", "mem", "k", "gone"]);
    let _: () = q_ok(&mut c, &["SET", "sync_s", "k", "kept"]);
    let _: () = q_ok(&mut c, &["SET", "async_i", "n", "41"]);
    let _: i64 = q_ok(&mut c, &["INCR", "async_i", "n"]);
    let _: i64 = q_ok(&mut c, &["INCRBY", "sync_i", "n", "-5"]);
    let _: () = q_ok(&mut c, &["MSET", "sync_s", "a", "1", "b", "2"]);
    let _: i64 = q_ok(&mut c, &["DEL", "sync_s", "a"]);
    let before: Vec<redis::Value> = q_ok(&mut c, &["DESCRIBE", "PARTITION", "sync_i"]);
    drop(c);
    node.kill9();

    let node = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = node.client();
    let names: Vec<String> = q_ok(&mut c, &["LIST", "PARTITIONS"]);
    assert_eq!(names, ["async_i", "mem", "sync_i", "sync_s"]);
    let after: Vec<redis::Value> = q_ok(&mut c, &["DESCRIBE", "PARTITION", "sync_i"]);
    assert_eq!(before[..8], after[..8], "name, schema, persist, shard kept");
    assert_eq!(q_ok::<Option<String>>(&mut c, &["GET", "mem", "k"]), None);
    assert_eq!(q_ok::<String>(&mut c, &["GET", "sync_s", "k"]), "kept");
    assert_eq!(
        q_ok::<Option<String>>(&mut c, &["GET", "sync_s", "a"]),
        None
    );
    assert_eq!(q_ok::<String>(&mut c, &["GET", "sync_s", "b"]), "2");
    assert_eq!(q_ok::<i64>(&mut c, &["GET", "async_i", "n"]), 42);
    assert_eq!(q_ok::<i64>(&mut c, &["GET", "sync_i", "n"]), -5);
    // Schemas survive: the INT partition still refuses strings.
    let (code, _) = q_err(&mut c, &["SET", "sync_i", "n", "abc"]);
    assert_eq!(code, "WRONGTYPE");
    // A new partition after the restart never reuses an old id's files.
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "later", "STRING", "SYNC"]);
    assert_eq!(q_ok::<Option<String>>(&mut c, &["GET", "later", "k"]), None);
    // INFO persistence says what recovery did.
    assert_eq!(info_field(&mut c, "partitions_durable"), 4);
    let text: String = q_ok(&mut c, &["INFO", "persistence"]);
    assert!(text.contains("recovery_ms="), "{text}");
    assert!(text.contains("recovered_keys="), "{text}");
}

#[test]
fn drop_is_durable_and_removes_files() {
    let dir = DataDir::new("drop");
    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "doomed", "STRING", "SYNC"]);
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "kept", "STRING", "ASYNC"]);
    let _: () = q_ok(&mut c, &["SET", "doomed", "k", "v"]);
    let _: () = q_ok(&mut c, &["SET", "kept", "k", "v"]);
    let parts = dir.path().join("partitions");
    assert_eq!(std::fs::read_dir(&parts).unwrap().count(), 2);
    let _: () = q_ok(&mut c, &["DROP", "PARTITION", "doomed"]);
    // The owning shard deleted the files before the DROP was acknowledged.
    assert_eq!(std::fs::read_dir(&parts).unwrap().count(), 1);
    drop(c);
    node.kill9();

    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    let names: Vec<String> = q_ok(&mut c, &["LIST", "PARTITIONS"]);
    assert_eq!(names, ["kept"]);
    assert_eq!(q_ok::<String>(&mut c, &["GET", "kept", "k"]), "v");
    // The name is free again, and the new partition starts empty.
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "doomed", "STRING", "SYNC"]);
    assert_eq!(
        q_ok::<Option<String>>(&mut c, &["GET", "doomed", "k"]),
        None
    );
}

#[test]
fn sigterm_flushes_async_writes() {
    let dir = DataDir::new("sigterm");
    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "a", "INT", "ASYNC"]);
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("INCR")
            .arg("a")
            .arg(format!("k{}", i % 10))
            .ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    drop(c);
    let status = node.stop();
    assert!(status.success(), "{status:?}");

    let node = Server::start_in(&dir, &[]);
    let mut c = node.client();
    for i in 0..10 {
        assert_eq!(q_ok::<i64>(&mut c, &["GET", "a", &format!("k{i}")]), 200);
    }
    drop(c);
    assert!(node.stop().success());
}

/// ASYNC: acknowledged at `write`, fsync'd by the shard's timer within the second.
#[test]
fn async_writes_are_fsynced_within_a_second() {
    let dir = DataDir::new("async-timer");
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "a", "STRING", "ASYNC"]);
    assert_eq!(info_field(&mut c, "fsyncs"), 0);
    let _: () = q_ok(&mut c, &["SET", "a", "k", "v"]);
    // No fsync at the reply (that is SYNC's cost), one soon after.
    let started = std::time::Instant::now();
    while info_field(&mut c, "fsyncs") == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "no fsync within a second of an ASYNC write"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(info_field(&mut c, "log_commits"), 1);
}

#[test]
fn torn_tail_is_truncated_and_corruption_before_it_stops_startup() {
    let dir = DataDir::new("torn");
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "s", "STRING", "SYNC"]);
    for i in 0..10 {
        let _: () = q_ok(
            &mut c,
            &["SET", "s", &format!("k{i}"), &format!("value-{i}")],
        );
    }
    drop(c);
    node.kill9();
    let seg = segments(&dir, 1).pop().expect("a segment");
    let original = std::fs::read(&seg).unwrap();

    // Cut the last record in half: it was never acknowledged as far as recovery can know.
    std::fs::write(&seg, &original[..original.len() - 7]).unwrap();
    let node = Server::start_in(&dir, &["--shards", "1"]);
    assert!(
        node.stderr_text().contains("torn tail"),
        "{}",
        node.stderr_text()
    );
    let mut c = node.client();
    assert_eq!(q_ok::<Option<String>>(&mut c, &["GET", "s", "k9"]), None);
    assert_eq!(q_ok::<String>(&mut c, &["GET", "s", "k8"]), "value-8");
    // The truncation was made durable: the file ends at the last whole record.
    let _: () = q_ok(&mut c, &["SET", "s", "k9", "again"]);
    drop(c);
    node.kill9();
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.client();
    assert_eq!(q_ok::<String>(&mut c, &["GET", "s", "k9"]), "again");
    drop(c);
    node.kill9();

    // A flipped byte in the first record, with valid records after it: not a torn write.
    let mut bytes = std::fs::read(&seg).unwrap();
    let first_record = gokv::persist::record::SEGMENT_HEADER;
    bytes[first_record + 12] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let failed = Server::launch(&["--shards", "1"])
        .data_dir(&dir)
        .try_start()
        .err()
        .expect("must not start");
    assert!(!failed.status.success());
    let seg_name = seg.display().to_string();
    assert!(
        failed.stderr.contains(&seg_name)
            && failed.stderr.contains(&format!("offset {first_record}")),
        "{}",
        failed.stderr
    );
}

/// Cutting the last segment in half drops acknowledged SYNC writes: the server refuses to
/// start and says which file, where, and which flag accepts the loss; with the flag it starts
/// with what is left, and later starts need no flag.
#[test]
fn a_log_cut_into_acknowledged_writes_refuses_to_start() {
    let dir = DataDir::new("cut-acked");
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "s", "STRING", "SYNC"]);
    for i in 0..20 {
        let _: () = q_ok(&mut c, &["SET", "s", &format!("k{i}"), "acknowledged"]);
    }
    drop(c);
    node.kill9();
    let seg = segments(&dir, 1).pop().expect("a segment");
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() / 2]).unwrap();
    let failed = Server::launch(&["--shards", "1"])
        .data_dir(&dir)
        .try_start()
        .err()
        .expect("started without half of its acknowledged writes");
    assert!(!failed.status.success());
    assert!(
        failed.stderr.contains(&seg.display().to_string())
            && failed.stderr.contains("offset")
            && failed.stderr.contains("--accept-data-loss"),
        "{}",
        failed.stderr
    );
    let node = Server::start_in(&dir, &["--shards", "1", "--accept-data-loss"]);
    let mut c = node.client();
    assert_eq!(q_ok::<String>(&mut c, &["GET", "s", "k0"]), "acknowledged");
    assert_eq!(q_ok::<Option<String>>(&mut c, &["GET", "s", "k19"]), None);
    drop(c);
    node.kill9();
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.client();
    assert_eq!(q_ok::<String>(&mut c, &["GET", "s", "k0"]), "acknowledged");
}

#[test]
fn compaction_keeps_300k_overwrites_of_100_keys_to_a_few_mb() {
    let dir = DataDir::new("compact");
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "hot", "STRING", "ASYNC"]);
    let value = "v".repeat(32);
    for round in 0..300 {
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            let key = format!("key{}", i % 100);
            pipe.cmd("SET")
                .arg("hot")
                .arg(key)
                .arg(format!("{value}{round:04}-{i:03}"))
                .ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
    }
    // 300k records of ~60 bytes would be ~18 MB without compaction.
    let used = disk_usage(dir.path());
    assert!(used < 5 << 20, "{used} bytes on disk after 300k overwrites");
    assert!(info_field(&mut c, "compactions") >= 2);
    drop(c);
    node.kill9();

    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.client();
    for i in 0..100 {
        let got: String = q_ok(&mut c, &["GET", "hot", &format!("key{i}")]);
        assert_eq!(got, format!("{value}0299-{:03}", 900 + i));
    }
}

/// Compaction while keys are added, overwritten and deleted between its steps: after a
/// restart the partition is exactly what the client last saw.
#[test]
fn compaction_under_concurrent_writes_loses_nothing() {
    let dir = DataDir::new("compact-mix");
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.client();
    let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "p", "INT", "SYNC"]);
    let mut model = std::collections::BTreeMap::new();
    let mut state = 12345u64;
    for _ in 0..60 {
        let mut pipe = redis::pipe();
        for _ in 0..2000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (state >> 33) % 20_000;
            let key = format!("k{k}");
            if (state >> 20).is_multiple_of(5) {
                pipe.cmd("DEL").arg("p").arg(&key).ignore();
                model.remove(&key);
            } else {
                let v = (state >> 40) as i64;
                pipe.cmd("SET").arg("p").arg(&key).arg(v).ignore();
                model.insert(key, v);
            }
        }
        let _: () = pipe.query(&mut c).unwrap();
    }
    assert!(info_field(&mut c, "compactions") >= 1);
    drop(c);
    node.kill9();
    let node = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = node.client();
    let desc: Vec<redis::Value> = q_ok(&mut c, &["STATS", "PARTITION", "p"]);
    let keys = match &desc[7] {
        redis::Value::Int(n) => *n as usize,
        other => panic!("{other:?}"),
    };
    assert_eq!(keys, model.len());
    for (k, v) in model.iter().step_by(7) {
        assert_eq!(q_ok::<i64>(&mut c, &["GET", "p", k]), *v, "{k}");
    }
}

#[cfg(feature = "fault-injection")]
mod faults {
    use super::*;

    /// A failed fsync (SYNC) or write (ASYNC) answers -IOERR, the write is not applied,
    /// reads keep working, and the next write succeeds; after a restart only acknowledged
    /// writes are there. Both paths: the partition's own shard, and forwarded.
    #[test]
    fn failed_write_or_fsync_is_ioerr_and_not_applied() {
        let dir = DataDir::new("ioerr");
        let node = Server::start_in(&dir, &["--shards", "2"]);
        let mut admin = node.client();
        let _: () = q_ok(&mut admin, &["CREATE", "PARTITION", "s", "STRING", "SYNC"]);
        let _: () = q_ok(&mut admin, &["CREATE", "PARTITION", "n", "INT", "ASYNC"]);
        // Connections go to shards round-robin: two clients cover the local and the
        // forwarded path for each partition.
        let mut clients = [node.client(), node.client()];
        for (i, c) in clients.iter_mut().enumerate() {
            let key = format!("k{i}");
            let _: () = q_ok(c, &["SET", "s", &key, "good"]);
            let _: () = q_ok(c, &["DEBUG", "FAIL-FSYNC", "1"]);
            let (code, msg) = q_err(c, &["SET", "s", &key, "bad"]);
            assert_eq!(code, "IOERR", "{msg}");
            assert!(msg.contains("fsync"), "{msg}");
            assert_eq!(q_ok::<String>(c, &["GET", "s", &key]), "good");

            let _: i64 = q_ok(c, &["INCRBY", "n", &key, "10"]);
            let _: () = q_ok(c, &["DEBUG", "FAIL-WRITE", "1"]);
            let (code, msg) = q_err(c, &["INCR", "n", &key]);
            assert_eq!(code, "IOERR", "{msg}");
            assert_eq!(q_ok::<i64>(c, &["GET", "n", &key]), 10);
            // The disk "recovers": writes work again.
            assert_eq!(q_ok::<i64>(c, &["INCR", "n", &key]), 11);
            let _: () = q_ok(c, &["SET", "s", &format!("{key}b"), "after"]);
        }
        // A pipelined pass: every write of the failed commit is rolled back, in order.
        let c = &mut clients[0];
        // Four: should the pipeline arrive in two passes, both commits fail (each failed
        // commit also fsyncs its truncation, which takes an armed failure too).
        let _: () = q_ok(c, &["DEBUG", "FAIL-FSYNC", "4"]);
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg("s").arg("p1").arg("x");
        pipe.cmd("SET").arg("s").arg("p1").arg("y");
        pipe.cmd("DEL").arg("s").arg("k0");
        let results: Vec<redis::RedisResult<redis::Value>> = pipe
            .cmd("GET")
            .arg("s")
            .arg("k1")
            .query::<Vec<redis::Value>>(c)
            .map(|v| v.into_iter().map(Ok).collect())
            .unwrap_or_else(|e| vec![Err(e)]);
        assert!(!results.is_empty());
        assert_eq!(q_ok::<Option<String>>(c, &["GET", "s", "p1"]), None);
        assert_eq!(q_ok::<String>(c, &["GET", "s", "k0"]), "good");
        assert!(info_field(c, "io_errors") >= 3);
        drop(clients);
        drop(admin);
        node.kill9();

        let node = Server::start_in(&dir, &["--shards", "2"]);
        let mut c = node.client();
        for i in 0..2 {
            let key = format!("k{i}");
            assert_eq!(q_ok::<String>(&mut c, &["GET", "s", &key]), "good");
            assert_eq!(
                q_ok::<String>(&mut c, &["GET", "s", &format!("{key}b")]),
                "after"
            );
            assert_eq!(q_ok::<i64>(&mut c, &["GET", "n", &key]), 11);
        }
        assert_eq!(q_ok::<Option<String>>(&mut c, &["GET", "s", "p1"]), None);
    }

    /// A failed commit's truncation is fsync'd (it takes the second armed fsync failure, so
    /// the next write succeeds); when that fsync fails too, the segment is cut again, durably,
    /// before the next write, and only acknowledged writes survive a restart.
    #[test]
    fn a_failed_commit_is_truncated_durably() {
        let dir = DataDir::new("trunc");
        let node = Server::start_in(&dir, &["--shards", "1"]);
        let mut c = node.client();
        let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "s", "STRING", "SYNC"]);
        let _: () = q_ok(&mut c, &["SET", "s", "k", "good"]);
        // The commit's fsync fails, then the truncation's.
        let _: () = q_ok(&mut c, &["DEBUG", "FAIL-FSYNC", "2"]);
        let (code, msg) = q_err(&mut c, &["SET", "s", "k", "bad"]);
        assert_eq!(code, "IOERR", "{msg}");
        assert_eq!(q_ok::<String>(&mut c, &["GET", "s", "k"]), "good");
        // Nothing armed is left for this write.
        let _: () = q_ok(&mut c, &["SET", "s", "k2", "after"]);
        let logs = node.log_text_once_it_contains("cannot truncate durably");
        assert!(logs.contains("cannot truncate durably"), "{logs}");
        drop(c);
        node.kill9();
        let node = Server::start_in(&dir, &["--shards", "1"]);
        let mut c = node.client();
        assert_eq!(q_ok::<String>(&mut c, &["GET", "s", "k"]), "good");
        assert_eq!(q_ok::<String>(&mut c, &["GET", "s", "k2"]), "after");
    }

    /// CREATE of a durable partition whose files cannot be made durable is refused.
    #[test]
    fn create_that_cannot_persist_is_ioerr() {
        let dir = DataDir::new("ioerr-create");
        let node = Server::start_in(&dir, &[]);
        let mut c = node.client();
        let _: () = q_ok(&mut c, &["DEBUG", "FAIL-FSYNC", "1"]);
        let (code, _) = q_err(&mut c, &["CREATE", "PARTITION", "p", "STRING", "SYNC"]);
        assert_eq!(code, "IOERR");
        let names: Vec<String> = q_ok(&mut c, &["LIST", "PARTITIONS"]);
        assert!(names.is_empty());
        let _: () = q_ok(&mut c, &["CREATE", "PARTITION", "p", "STRING", "SYNC"]);
        let _: () = q_ok(&mut c, &["SET", "p", "k", "v"]);
    }
}
