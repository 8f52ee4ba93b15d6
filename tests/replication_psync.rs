//! Partial resync, end to end with real processes: a replica whose link broke resumes each
//! partition from the primary's backlog (`--repl-backlog`) and gets only the partitions the
//! backlog no longer holds sent whole; `sync_full`, `sync_partial_ok` and
//! `sync_partial_err` count what happened; a primary restarted on its data directory (same
//! replication id, new run) is never resumed; REPLSYNC's resume request is checked whole.
//!
//! The link is broken with `CLIENT KILL TYPE replica` on the primary while the replica is
//! stopped (SIGSTOP), so that the writes made meanwhile are certainly made with no replica
//! attached, and reach it only through the backlog.

mod common;

use common::replication::*;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{poll_until, q_ok, DataDir, Server};

fn stat(con: &mut redis::Connection, field: &str) -> u64 {
    info_field(con, "stats", field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO stats has no {field}"))
}

/// The sync counters of a primary: (sync_full, sync_partial_ok, sync_partial_err).
fn syncs(con: &mut redis::Connection) -> (u64, u64, u64) {
    (
        stat(con, "sync_full"),
        stat(con, "sync_partial_ok"),
        stat(con, "sync_partial_err"),
    )
}

/// Waits until the primary's sync counters are `want`.
fn syncs_become(con: &mut redis::Connection, want: (u64, u64, u64)) {
    let got = poll_until(CONVERGE, || (syncs(con) == want).then_some(()));
    assert!(
        got.is_some(),
        "sync counters {:?}, expected {want:?}",
        syncs(con)
    );
}

/// Stops the replica, breaks its link on the primary and waits until the primary has no
/// replica attached: what is written next is written with none.
fn break_link(primary: &mut redis::Connection, replica_pid: u32) {
    signal(replica_pid, "-STOP");
    let killed: i64 = q_ok(primary, &["CLIENT", "KILL", "TYPE", "replica"]);
    assert_eq!(
        killed, 1,
        "CLIENT KILL TYPE replica kills the replica's link"
    );
    let gone = poll_until(CONVERGE, || {
        (info_field(primary, "replication", "connected_slaves").as_deref() == Some("0"))
            .then_some(())
    });
    assert!(gone.is_some(), "the replica is still attached");
}

/// A broken link resumes every partition (MEMORY and durable, on every shard): no full sync,
/// `sync_partial_ok` counts it, the writes made while no replica was attached arrive, and a
/// writer running through the outage and the resume leaves both sides equal (the replay and
/// the live stream come in order, nothing missing).
#[test]
fn a_broken_link_resumes_every_partition_without_a_full_sync() {
    let primary = Server::start(&["--shards", "2"]);
    let mut p = primary.client();
    let mut raw = primary.raw();
    let (a, b) = raw.one_partition_per_shard();
    q_ok::<()>(
        &mut p,
        &["CREATE", "PARTITION", "durable", "STRING", "SYNC"],
    );
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "counts", "INT", "MEMORY"]);
    for i in 0..200 {
        q_ok::<()>(&mut p, &["SET", &a, &format!("k{i}"), &format!("v{i}")]);
        q_ok::<()>(&mut p, &["SET", &b, &format!("k{i}"), &format!("v{i}")]);
    }
    let replica = start_replica(primary.port(), &["--shards", "2"]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    syncs_become(&mut p, (1, 0, 0));
    assert_eq!(
        info_field(&mut p, "replication", "repl_backlog_active").as_deref(),
        Some("1")
    );

    // A writer through the outage and the resume: overwrites, deletes, counters.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let (a, b) = (a.clone(), b.clone());
        let mut con = primary.client();
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                q_ok::<()>(
                    &mut con,
                    &["SET", &a, &format!("k{}", i % 300), &i.to_string()],
                );
                q_ok::<i64>(&mut con, &["DEL", &b, &format!("k{}", i % 250)]);
                q_ok::<()>(&mut con, &["SET", "durable", &format!("d{}", i % 100), "x"]);
                q_ok::<i64>(&mut con, &["INCR", "counts", &format!("c{}", i % 10)]);
                i += 1;
                thread::sleep(Duration::from_millis(2));
            }
            i
        })
    };
    thread::sleep(Duration::from_millis(200));
    break_link(&mut p, replica.pid());
    // Written with no replica attached: only the backlog can bring these.
    q_ok::<()>(&mut p, &["SET", &a, "during-outage", "1"]);
    q_ok::<()>(&mut p, &["SET", "durable", "during-outage", "2"]);
    q_ok::<i64>(&mut p, &["INCRBY", "counts", "outage", "3"]);
    let histlen: u64 = info_field(&mut p, "replication", "repl_backlog_histlen")
        .unwrap()
        .parse()
        .unwrap();
    assert!(histlen > 0, "the backlog holds the stream");
    thread::sleep(Duration::from_millis(300));
    signal(replica.pid(), "-CONT");
    syncs_become(&mut p, (1, 1, 0));
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 10, "the writer ran");
    converge(&mut p, &mut r);
    for name in [a.as_str(), b.as_str(), "durable", "counts"] {
        same_partition(&mut p, &mut r, name, false);
    }
    let v: String = q_ok(&mut r, &["GET", &a, "during-outage"]);
    assert_eq!(v, "1");
    let v: i64 = q_ok(&mut r, &["GET", "counts", "outage"]);
    assert_eq!(v, 3);
    assert_eq!(syncs(&mut p), (1, 1, 0), "no full sync");
    let partitions: Vec<String> = q_ok(&mut p, &["LIST", "PARTITIONS"]);
    let n = partitions.len();
    let log = replica.log_text_once_it_contains(&format!("{n} partitions resumed, 0 sent whole"));
    assert!(
        log.contains(&format!("partial resync (of up to {n} partitions)")),
        "{log}"
    );
}

/// A backlog too small for the outage: the partition whose records it lost is sent whole,
/// the one that wrote nothing meanwhile is resumed; the link counts `sync_full` and
/// `sync_partial_err`, and the data converges.
#[test]
fn a_backlog_too_small_for_the_outage_resends_only_what_it_lost() {
    let primary = Server::start(&["--shards", "1", "--repl-backlog", "64kb"]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "busy", "STRING", "MEMORY"]);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "quiet", "STRING", "ASYNC"]);
    for i in 0..50 {
        q_ok::<()>(&mut p, &["SET", "quiet", &format!("q{i}"), "v"]);
        q_ok::<()>(&mut p, &["SET", "busy", &format!("old{i}"), "v"]);
    }
    let replica = start_replica(primary.port(), &[]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    // Streamed after the full sync, so that both partitions have offsets to resume from.
    q_ok::<()>(&mut p, &["SET", "quiet", "streamed", "1"]);
    q_ok::<()>(&mut p, &["SET", "busy", "streamed", "1"]);
    converge(&mut p, &mut r);
    syncs_become(&mut p, (1, 0, 0));
    assert_eq!(
        info_field(&mut p, "replication", "repl_backlog_size").as_deref(),
        Some("65536")
    );

    break_link(&mut p, replica.pid());
    // Far more than the backlog holds.
    let value = "x".repeat(1000);
    for i in 0..300 {
        q_ok::<()>(&mut p, &["SET", "busy", &format!("new{i}"), &value]);
    }
    q_ok::<i64>(&mut p, &["DEL", "busy", "old7"]);
    let histlen: u64 = info_field(&mut p, "replication", "repl_backlog_histlen")
        .unwrap()
        .parse()
        .unwrap();
    assert!(histlen <= 65536, "the backlog is bounded: {histlen}");
    signal(replica.pid(), "-CONT");
    syncs_become(&mut p, (2, 0, 1));
    converge(&mut p, &mut r);
    same_partition(&mut p, &mut r, "busy", false);
    same_partition(&mut p, &mut r, "quiet", false);
    let gone: Option<String> = q_ok(&mut r, &["GET", "busy", "old7"]);
    assert_eq!(gone, None);
    let log = replica.log_text_once_it_contains("1 partitions resumed, 1 sent whole");
    assert!(log.contains("partial resync"), "{log}");
    let log = primary.log_text();
    assert!(log.contains("cannot resume from offset"), "{log}");
}

/// A replica that stops reading (SIGSTOP) is dropped by the primary past `--repl-buffer`;
/// on SIGCONT it reconnects and asks to resume: the partition written meanwhile lost more
/// than the backlog holds (at most half the buffer) and is sent whole, the quiet one is
/// resumed.
#[test]
fn a_replica_dropped_for_a_full_buffer_resumes_what_the_backlog_still_holds() {
    let primary = Server::start(&["--shards", "1", "--repl-buffer", "1mb"]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "busy", "STRING", "MEMORY"]);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "quiet", "INT", "MEMORY"]);
    let replica = start_replica(primary.port(), &[]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    q_ok::<i64>(&mut p, &["INCRBY", "quiet", "n", "5"]);
    q_ok::<()>(&mut p, &["SET", "busy", "before", "1"]);
    converge(&mut p, &mut r);
    assert_eq!(
        info_field(&mut p, "replication", "repl_backlog_size").as_deref(),
        Some("524288"),
        "the backlog is at most half of --repl-buffer"
    );
    signal(replica.pid(), "-STOP");
    let value = "v".repeat(1000);
    for i in 0..30_000 {
        q_ok::<()>(&mut p, &["SET", "busy", &format!("k{i}"), &value]);
    }
    let log = primary.log_text_once_it_contains("dropping replica");
    assert!(log.contains("past --repl-buffer"), "{log}");
    signal(replica.pid(), "-CONT");
    syncs_become(&mut p, (2, 0, 1));
    converge(&mut p, &mut r);
    same_partition(&mut p, &mut r, "busy", false);
    same_partition(&mut p, &mut r, "quiet", false);
    let log = replica.log_text_once_it_contains("1 partitions resumed, 1 sent whole");
    assert!(log.contains("partial resync"), "{log}");
}

/// A primary restarted on its own data directory keeps its replication id but not its
/// offsets or backlog (a new run id): the replica's resume request is refused and every
/// partition is sent whole. Its MEMORY partition, empty after the restart and at offset 0
/// as the replica's is (its keys came with the full sync, which moves no offset), would be
/// "resumed" with nothing to send, keeping keys the primary lost, if the run were not part
/// of the history the replica names.
#[test]
fn a_primary_restarted_on_its_data_dir_is_synced_fully() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = DataDir::new("primary");
    let first = FixedPrimary::start(port, &dir);
    let mut p = FixedPrimary::client(port);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "mem", "STRING", "MEMORY"]);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "disk", "STRING", "SYNC"]);
    q_ok::<()>(&mut p, &["SET", "mem", "lost-at-restart", "1"]);
    q_ok::<()>(&mut p, &["SET", "disk", "kept", "1"]);
    let replid = info_field(&mut p, "replication", "master_replid").unwrap();
    let run = info_field(&mut p, "server", "run_id").unwrap();
    let replica = start_replica(port, &[]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    let v: String = q_ok(&mut r, &["GET", "mem", "lost-at-restart"]);
    assert_eq!(v, "1");
    drop(first);
    let _second = FixedPrimary::start(port, &dir);
    let mut p = FixedPrimary::client(port);
    assert_eq!(
        info_field(&mut p, "replication", "master_replid"),
        Some(replid),
        "the same data directory, the same replication id"
    );
    assert_ne!(info_field(&mut p, "server", "run_id"), Some(run));
    syncs_become(&mut p, (1, 0, 1));
    q_ok::<()>(&mut p, &["SET", "disk", "after", "2"]);
    converge(&mut p, &mut r);
    same_partition(&mut p, &mut r, "mem", false);
    same_partition(&mut p, &mut r, "disk", false);
    let gone: Option<String> = q_ok(&mut r, &["GET", "mem", "lost-at-restart"]);
    assert_eq!(
        gone, None,
        "the replica holds no key the restarted primary lost"
    );
}

/// REPLSYNC's resume request is checked whole, with a clear error for what is not one;
/// offsets of another history are answered with a full sync (counted as a denied resume).
#[test]
fn replsync_resume_requests_are_checked_whole() {
    let primary = Server::start(&[]);
    let mut p = primary.client();
    let mut c = primary.raw();
    let ours = "0".repeat(40);
    let other = "ab".repeat(20);
    for (args, want) in [
        (
            vec![other.as_str()],
            "expected <primary-replid> <primary-run-id>",
        ),
        (vec!["short", other.as_str()], "40 hex digits"),
        (
            vec![other.as_str(), other.as_str(), "7"],
            "'7' is not <partition-id>:<offset>",
        ),
        (
            vec![other.as_str(), other.as_str(), "1:x"],
            "is not <partition-id>:<offset>",
        ),
        (
            vec![other.as_str(), other.as_str(), "-1:5"],
            "is not <partition-id>:<offset>",
        ),
        (
            vec![other.as_str(), other.as_str(), "1:5", "1:6"],
            "partition 1 named twice",
        ),
    ] {
        let mut full = vec!["REPLSYNC", "1234", ours.as_str()];
        full.extend(args);
        let e = c.call_err(&full);
        assert!(e.contains(want), "{full:?}: {e}");
    }
    // Still a client: nothing was taken from the bad requests.
    c.call_ok(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]);
    // Offsets of a history that is not this server's: a full sync.
    let mut feed = primary.raw();
    let reply = feed.call(&["REPLSYNC", "1234", &ours, &other, &other, "1:5"]);
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert!(reply.starts_with("+FULLSYNC "), "{reply}");
    syncs_become(&mut p, (1, 0, 1));
}
