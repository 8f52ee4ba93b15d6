//! Replication end to end, with real processes: a primary and replicas started with
//! `--replicaof`, data of every kind of partition (INT and STRING, MEMORY and durable), the
//! catalog and users flowing, writes during a full sync, and the faults: kill -9 of the
//! primary and of a replica, a replica pointed at itself, a wrong primary password.

mod common;

use common::replication::*;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{poll_until, q, q_err, q_ok, DataDir, Server, ADMIN_PASSWORD};

/// Full sync of every kind of partition, the catalog with options and the users, then the
/// live stream: writes of every command family, a CREATE, an ALTER, a DROP, a FLUSH, an
/// expiry; reads on the replica and its `-READONLY`.
#[test]
fn full_sync_then_the_stream_carry_every_partition_catalog_and_users() {
    let primary = Server::start(&["--shards", "2"]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "mem", "STRING", "MEMORY"]);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "counts", "INT", "SYNC"]);
    q_ok::<()>(
        &mut p,
        &[
            "CREATE",
            "PARTITION",
            "logs",
            "STRING",
            "ASYNC",
            "max-keys",
            "1000",
        ],
    );
    q_ok::<()>(&mut p, &["CREATE", "USER", "app", "app-password"]);
    q_ok::<()>(&mut p, &["GRANT", "READ", "ON", "mem", "TO", "app"]);
    for i in 0..500 {
        q_ok::<()>(&mut p, &["SET", "mem", &format!("k{i}"), &format!("v{i}")]);
        q_ok::<i64>(
            &mut p,
            &["INCRBY", "counts", &format!("c{i}"), &i.to_string()],
        );
    }
    q_ok::<()>(&mut p, &["SET", "logs", "ttl", "x", "EX", "3600"]);
    q_ok::<()>(&mut p, &["SET", "mem", "short", "gone soon", "PX", "300"]);

    let replica = start_replica(primary.port(), &["--shards", "3"]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    for name in ["mem", "counts", "logs"] {
        same_partition(&mut p, &mut r, name, true);
    }
    let described: Vec<redis::Value> = q_ok(&mut r, &["DESCRIBE", "PARTITION", "logs"]);
    assert!(
        format!("{described:?}").contains("1000"),
        "the max-keys option flowed: {described:?}"
    );
    let users: Vec<String> = q_ok(&mut r, &["LIST", "USERS"]);
    assert!(users.iter().any(|u| u == "app"), "{users:?}");

    // The replica serves reads under the usual permissions, to a user of the primary.
    let mut app = replica.login("app", "app-password");
    assert_eq!(app.call(&["GET", "mem", "k7"]), b"$2\r\nv7\r\n");
    assert!(app.call_err(&["GET", "counts", "c7"]).starts_with("NOPERM"));
    // Writes of every kind are refused in Redis's words.
    for write in [
        &["SET", "mem", "k", "v"][..],
        &["INCR", "counts", "c1"],
        &["DEL", "mem", "k1"],
        &["FLUSHALL"],
        &["CREATE", "PARTITION", "x", "STRING", "MEMORY"],
        &["CREATE", "USER", "bob", "pw-bob-12345"],
    ] {
        let (code, text) = q_err(&mut r, write);
        assert_eq!(code, "READONLY", "{write:?}");
        assert_eq!(
            text, "READONLY You can't write against a read only replica.",
            "{write:?}"
        );
    }

    // The live stream: every family, and catalog changes.
    q_ok::<()>(&mut p, &["MSET", "mem", "a", "1", "b", "2"]);
    q_ok::<i64>(&mut p, &["DEL", "mem", "k1", "k2"]);
    q_ok::<i64>(&mut p, &["INCR", "counts", "c3"]);
    q_ok::<i64>(&mut p, &["APPEND", "mem", "a", "xyz"]);
    q_ok::<i64>(&mut p, &["EXPIRE", "mem", "b", "1000"]);
    q_ok::<()>(&mut p, &["RENAME", "mem", "k3", "renamed"]);
    q_ok::<()>(&mut p, &["FLUSH", "PARTITION", "logs"]);
    q_ok::<()>(&mut p, &["SET", "logs", "after-flush", "y"]);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "fresh", "INT", "MEMORY"]);
    q_ok::<i64>(&mut p, &["INCRBY", "fresh", "n", "42"]);
    q_ok::<()>(
        &mut p,
        &["ALTER", "PARTITION", "mem", "SET", "max-keys", "100000"],
    );
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "doomed", "STRING", "SYNC"]);
    q_ok::<()>(&mut p, &["SET", "doomed", "k", "v"]);
    q_ok::<()>(&mut p, &["DROP", "PARTITION", "doomed"]);
    q_ok::<()>(&mut p, &["GRANT", "READ", "ON", "fresh", "TO", "app"]);
    // The key with 300 ms to live expires on the primary: its DEL reaches the replica.
    thread::sleep(Duration::from_millis(400));
    q_ok::<()>(&mut p, &["SET", "mem", "last", "write"]);
    converge(&mut p, &mut r);
    for name in ["mem", "counts", "logs", "fresh"] {
        same_partition(&mut p, &mut r, name, true);
    }
    let listed_p: Vec<String> = q_ok(&mut p, &["LIST", "PARTITIONS"]);
    let listed_r: Vec<String> = q_ok(&mut r, &["LIST", "PARTITIONS"]);
    assert_eq!(listed_p, listed_r);
    assert!(!listed_r.iter().any(|n| n == "doomed"));
    assert_eq!(app.call(&["GET", "fresh", "n"]), b":42\r\n");
    let expired = poll_until(Duration::from_secs(10), || {
        let n: i64 = q_ok(&mut r, &["DBSIZE", "mem"]);
        let m: i64 = q_ok(&mut p, &["DBSIZE", "mem"]);
        (n == m).then_some(())
    });
    assert!(
        expired.is_some(),
        "the primary's expiry reached the replica"
    );

    // Reporting, in Redis's words.
    let role: Vec<redis::Value> = q_ok(&mut p, &["ROLE"]);
    assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()));
    let role: Vec<redis::Value> = q_ok(&mut r, &["ROLE"]);
    assert_eq!(role[0], redis::Value::BulkString(b"slave".to_vec()));
    assert_eq!(role[2], redis::Value::Int(primary.port() as i64));
    assert_eq!(role[3], redis::Value::BulkString(b"connected".to_vec()));
    assert_eq!(repl_info(&mut p, "role").as_deref(), Some("master"));
    assert_eq!(repl_info(&mut p, "connected_slaves").as_deref(), Some("1"));
    let slave0 = repl_info(&mut p, "slave0").unwrap();
    assert!(
        slave0.starts_with(&format!(
            "ip=127.0.0.1,port={},state=online,offset=",
            replica.port()
        )),
        "{slave0}"
    );
    assert_eq!(repl_info(&mut r, "role").as_deref(), Some("slave"));
    assert_eq!(
        repl_info(&mut r, "master_host").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        repl_info(&mut r, "master_port"),
        Some(primary.port().to_string())
    );
    assert_eq!(
        repl_info(&mut r, "master_sync_in_progress").as_deref(),
        Some("0")
    );
    assert_eq!(repl_info(&mut r, "slave_read_only").as_deref(), Some("1"));
    assert_eq!(repl_info(&mut r, "slave_priority").as_deref(), Some("100"));
    assert_eq!(
        repl_info(&mut r, "master_replid"),
        repl_info(&mut p, "master_replid")
    );
    let replid = repl_info(&mut p, "master_replid").unwrap();
    assert!(replid.len() == 40 && replid.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(repl_info(&mut r, "master_link_down_since_seconds").is_none());
    let acked: i64 = q_ok(&mut p, &["WAIT", "1", "0"]);
    assert_eq!(
        acked, 1,
        "the replica acknowledged this connection's writes"
    );

    // REPLICAOF NO ONE: a primary again, writes accepted, the data stays.
    q_ok::<()>(&mut r, &["REPLICAOF", "NO", "ONE"]);
    assert_eq!(repl_info(&mut r, "role").as_deref(), Some("master"));
    q_ok::<()>(&mut r, &["SET", "mem", "mine", "now"]);
    let v: String = q_ok(&mut r, &["GET", "mem", "renamed"]);
    assert_eq!(v, "v3");
}

/// Writes that go on while the full sync runs are all on the replica afterwards.
#[test]
fn writes_during_the_full_sync_are_not_lost() {
    let primary = Server::start(&["--shards", "2"]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "big", "STRING", "MEMORY"]);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "n", "INT", "ASYNC"]);
    // Enough keys that the walk takes many passes.
    mset_load(&mut p, "big", 40, &"x".repeat(32), |chunk, i| {
        format!("key{}", chunk * 1000 + i)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let mut con = primary.client();
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Overwrites of keys the walk has or has not reached yet, new keys, deletes
                // and counters.
                let k = format!("key{}", (i * 7919) % 40_000);
                q_ok::<()>(&mut con, &["SET", "big", &k, &format!("new{i}")]);
                q_ok::<()>(&mut con, &["SET", "big", &format!("during{i}"), "d"]);
                if i.is_multiple_of(3) {
                    q_ok::<i64>(
                        &mut con,
                        &["DEL", "big", &format!("key{}", (i * 31) % 40_000)],
                    );
                }
                q_ok::<i64>(&mut con, &["INCR", "n", &format!("c{}", i % 50)]);
                i += 1;
                written.store(i, Ordering::Relaxed);
            }
        })
    };
    // Let the writer run before, during and after the sync.
    thread::sleep(Duration::from_millis(200));
    let replica = start_replica(primary.port(), &["--shards", "2"]);
    let mut r = replica_client(&replica);
    let synced = poll_until(CONVERGE, || {
        (repl_info(&mut r, "master_link_status").as_deref() == Some("up")).then_some(())
    });
    assert!(synced.is_some(), "the full sync did not finish");
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(written.load(Ordering::Relaxed) > 10, "the writer ran");
    converge(&mut p, &mut r);
    same_partition(&mut p, &mut r, "big", true);
    same_partition(&mut p, &mut r, "n", true);
}

/// A full sync finishes in bounded time while clients keep the primary's only shard busy
/// (the walk rests after each step taken while clients are served, and still moves on), and
/// the writes among them are all on the replica afterwards.
#[test]
fn a_full_sync_finishes_while_clients_hammer_the_primary() {
    let primary = Server::start(&["--shards", "1"]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "big", "STRING", "MEMORY"]);
    // ~10 MiB of records: about 150 walk steps, each followed by a rest.
    mset_load(&mut p, "big", 60, &"x".repeat(160), |chunk, i| {
        format!("key{}", chunk * 1000 + i)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let (stop, served) = (stop.clone(), served.clone());
            let mut con = primary.client();
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Pipelines of reads, and a write in each, back to back.
                    let mut pipe = redis::pipe();
                    for j in 0..32 {
                        pipe.cmd("GET")
                            .arg("big")
                            .arg(format!("key{}", (i * 32 + j) % 60_000));
                    }
                    pipe.cmd("SET")
                        .arg("big")
                        .arg(format!("key{}", (i * 7919 + c) % 60_000))
                        .arg(format!("new{c}-{i}"))
                        .ignore();
                    let got: Vec<Option<String>> = pipe.query(&mut con).unwrap();
                    assert!(got.iter().all(Option::is_some), "a loaded key went missing");
                    i += 1;
                    served.fetch_add(33, Ordering::Relaxed);
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let began = Instant::now();
    let at_start = served.load(Ordering::Relaxed);
    let replica = start_replica(primary.port(), &["--shards", "1"]);
    let mut r = replica_client(&replica);
    let synced = poll_until(Duration::from_secs(30), || {
        (repl_info(&mut r, "master_link_status").as_deref() == Some("up")).then_some(())
    });
    let took = began.elapsed();
    let during = served.load(Ordering::Relaxed) - at_start;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        synced.is_some(),
        "the full sync did not finish in 30 s under load"
    );
    assert!(
        during > 1000,
        "the clients were served during the sync ({during} requests)"
    );
    eprintln!("full sync under load: {took:?}, {during} requests served meanwhile");
    converge(&mut p, &mut r);
    same_partition(&mut p, &mut r, "big", false);
}

/// kill -9 of the primary: the replica keeps serving reads and says its link is down.
#[test]
fn a_dead_primary_leaves_the_replica_serving_reads() {
    let primary = Server::start(&[]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "s", "STRING", "MEMORY"]);
    q_ok::<()>(&mut p, &["SET", "s", "k", "v"]);
    let replica = start_replica(primary.port(), &[]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    // A key that expires after the primary is gone (its sweep never sends the DEL).
    q_ok::<()>(&mut p, &["SET", "s", "ttl", "t", "PX", "800"]);
    converge(&mut p, &mut r);
    primary.kill9();
    let down = poll_until(Duration::from_secs(20), || {
        (repl_info(&mut r, "master_link_status").as_deref() == Some("down")).then_some(())
    });
    assert!(down.is_some(), "the link never went down");
    let v: String = q_ok(&mut r, &["GET", "s", "k"]);
    assert_eq!(v, "v");
    let since: i64 = repl_info(&mut r, "master_link_down_since_seconds")
        .unwrap()
        .parse()
        .unwrap();
    assert!(since >= 0);
    // Past its deadline the key is hidden, but the replica does not expire it by itself.
    thread::sleep(Duration::from_millis(1200));
    let gone: Option<String> = q_ok(&mut r, &["GET", "s", "ttl"]);
    assert_eq!(gone, None);
    let held: i64 = q_ok(&mut r, &["DBSIZE", "s"]);
    assert_eq!(held, 2, "hidden, still held until the primary's DEL");
    let role: Vec<redis::Value> = q_ok(&mut r, &["ROLE"]);
    assert_ne!(role[3], redis::Value::BulkString(b"connected".to_vec()));
}

/// kill -9 of a replica in the middle of the stream: restarted on its data directory, it
/// syncs again and converges.
#[test]
fn a_replica_killed_mid_stream_comes_back_and_converges() {
    let primary = Server::start(&["--shards", "2"]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "d", "STRING", "SYNC"]);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "m", "INT", "MEMORY"]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut con = primary.client();
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                q_ok::<()>(
                    &mut con,
                    &["SET", "d", &format!("k{}", i % 2000), &i.to_string()],
                );
                q_ok::<i64>(&mut con, &["INCR", "m", &format!("c{}", i % 100)]);
                i += 1;
            }
        })
    };
    let dir = DataDir::new("replica");
    let args = replica_args(primary.port(), &[]);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let replica = Server::start_in(&dir, &args);
    let mut r = replica_client(&replica);
    let up = poll_until(CONVERGE, || {
        (repl_info(&mut r, "master_link_status").as_deref() == Some("up")).then_some(())
    });
    assert!(up.is_some());
    thread::sleep(Duration::from_millis(300));
    replica.kill9();
    thread::sleep(Duration::from_millis(300));
    let replica = Server::start_in(&dir, &args);
    let mut r = replica_client(&replica);
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    converge(&mut p, &mut r);
    same_partition(&mut p, &mut r, "d", true);
    same_partition(&mut p, &mut r, "m", true);
}

/// A replica killed with SIGKILL in the middle of its full sync (the primary's shards still
/// walking their snapshots) comes back, syncs again from the start and converges; the
/// primary drops the dead feed and keeps serving throughout.
#[test]
fn a_replica_killed_mid_full_sync_comes_back_and_converges() {
    let primary = Server::start(&["--shards", "2"]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "big", "STRING", "MEMORY"]);
    mset_load(&mut p, "big", 300, &"v".repeat(100), |batch, i| {
        format!("key:{batch}:{i}")
    });
    let dir = DataDir::new("replica");
    let args = replica_args(primary.port(), &[]);
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let replica = Server::start_in(&dir, &args);
    // Caught while the snapshot is on its way: the primary shows the replica in
    // `wait_bgsave` until every shard sent its partitions whole.
    let mid_sync = poll_until(CONVERGE, || {
        let text: String = q_ok(&mut p, &["INFO", "replication"]);
        text.contains("state=wait_bgsave").then_some(())
    });
    assert!(
        mid_sync.is_some(),
        "the full sync of 300k keys was never seen in progress"
    );
    replica.kill9();
    // The primary goes on serving while its feed to the dead replica goes away.
    q_ok::<()>(&mut p, &["SET", "big", "after", "1"]);
    let replica = Server::start_in(&dir, &args);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    let keys: i64 = q_ok(&mut r, &["DBSIZE", "big"]);
    assert_eq!(keys, 300_001);
    let after: Option<String> = q_ok(&mut r, &["GET", "big", "after"]);
    assert_eq!(after.as_deref(), Some("1"));
    assert_eq!(repl_info(&mut p, "connected_slaves").as_deref(), Some("1"));
}

/// A replica pointed at itself gets a clear error, at once for REPLICAOF and from the
/// handshake when the address does not look like its own.
#[test]
fn a_replica_pointed_at_itself_is_refused() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    let port = server.port().to_string();
    let e = c.call_err(&["REPLICAOF", "127.0.0.1", &port]);
    assert!(e.contains("this server itself"), "{e}");
    let e = c.call_err(&["REPLICAOF", "localhost", &port]);
    assert!(e.contains("this server itself"), "{e}");
    assert!(c
        .call_err(&["REPLICAOF", "127.0.0.1", "notaport"])
        .contains("Invalid master port"));
    // Still a primary that takes writes.
    c.call_ok(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]);
    c.call_ok(&["SET", "p", "k", "v"]);
    // The handshake's own check: the primary refuses its own replication id.
    let mut raw = server.raw();
    let replid = {
        let mut con = server.client();
        repl_info(&mut con, "master_replid").unwrap()
    };
    let e = raw.call_err(&["REPLSYNC", "1234", &replid]);
    assert!(e.contains("cannot replicate from itself"), "{e}");
}

/// A wrong `--primary-password` is logged clearly and retried with a growing back-off.
#[test]
fn a_wrong_primary_password_is_logged_and_retried_with_backoff() {
    let primary = Server::start(&[]);
    let replica = Server::start(&[
        "--replicaof",
        &format!("127.0.0.1:{}", primary.port()),
        "--primary-user",
        "admin",
        "--primary-password",
        "not-the-password",
    ]);
    let started = Instant::now();
    let log = replica.log_text_once_it_contains("retrying in 2 s");
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused this replica"))
        .collect();
    assert!(refusals.len() >= 2, "{log}");
    assert!(
        refusals[0].contains("the login of --primary-user 'admin' failed"),
        "{}",
        refusals[0]
    );
    assert!(refusals[0].contains("WRONGPASS"), "{}", refusals[0]);
    assert!(refusals[0].contains("retrying in 1 s"), "{}", refusals[0]);
    assert!(refusals[1].contains("retrying in 2 s"), "{}", refusals[1]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "no tight loop"
    );
    let mut r = replica_client(&replica);
    assert_eq!(
        repl_info(&mut r, "master_link_status").as_deref(),
        Some("down")
    );
    // A replica cannot serve as a primary for another (chained replication).
    let mut raw = replica.raw();
    let e = raw.call_err(&["REPLSYNC", "1", &"0".repeat(40)]);
    assert!(e.contains("chained replication"), "{e}");
    let _ = q::<()>(&mut r, &["REPLICAOF", "NO", "ONE"]);
}

/// A replica that stops reading (SIGSTOP) never slows the primary: past `--repl-buffer`
/// its feed is dropped, and once it runs again (SIGCONT) it syncs again and converges.
#[test]
fn a_stopped_replica_is_dropped_past_its_buffer_and_resyncs() {
    let primary = Server::start(&["--repl-buffer", "1mb"]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "s", "STRING", "MEMORY"]);
    q_ok::<()>(&mut p, &["SET", "s", "before", "1"]);
    let replica = start_replica(primary.port(), &[]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    signal(replica.pid(), "-STOP");
    // Far more than the bound and the sockets' buffers together.
    let value = "v".repeat(1000);
    let started = Instant::now();
    for i in 0..30_000 {
        q_ok::<()>(&mut p, &["SET", "s", &format!("k{i}"), &value]);
    }
    let took = started.elapsed();
    let log = primary.log_text_once_it_contains("dropping replica");
    assert!(log.contains("past --repl-buffer"), "{log}");
    let dropped = poll_until(Duration::from_secs(10), || {
        (repl_info(&mut p, "connected_slaves").as_deref() == Some("0")).then_some(())
    });
    assert!(dropped.is_some(), "the stopped replica is still attached");
    assert!(took < Duration::from_secs(60), "writes stalled: {took:?}");
    signal(replica.pid(), "-CONT");
    converge(&mut p, &mut r);
    same_partition(&mut p, &mut r, "s", true);
    // It asked to resume; the backlog (at most half of --repl-buffer) no longer held what
    // it lacked.
    let syncs = replica.log_text_once_it_contains("0 partitions resumed, 1 sent whole");
    assert!(syncs.contains("partial resync"), "{syncs}");
    let stats: String = q_ok(&mut p, &["INFO", "stats"]);
    assert!(stats.contains("sync_partial_err:1\r\n"), "{stats}");
}

/// A durable write whose commit fails (`-IOERR`, rolled back) never reaches the replica.
#[test]
fn a_rolled_back_write_is_not_replicated() {
    let primary = Server::start(&[]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "d", "STRING", "SYNC"]);
    let replica = start_replica(primary.port(), &[]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    q_ok::<()>(&mut p, &["DEBUG", "FAIL-WRITE", "1"]);
    let (code, _) = q_err(&mut p, &["SET", "d", "lost", "x"]);
    assert_eq!(code, "IOERR");
    q_ok::<()>(&mut p, &["SET", "d", "kept", "y"]);
    converge(&mut p, &mut r);
    let lost: Option<String> = q_ok(&mut r, &["GET", "d", "lost"]);
    assert_eq!(lost, None);
    let kept: String = q_ok(&mut r, &["GET", "d", "kept"]);
    assert_eq!(kept, "y");
    same_partition(&mut p, &mut r, "d", true);
}

/// A DEL of a key whose deadline passed (reclaimed on the primary without a visible
/// change) reaches the replica, which holds such keys until the primary says so.
#[test]
fn a_key_reclaimed_by_a_write_is_deleted_on_the_replica() {
    let primary = Server::start(&[]);
    let mut p = primary.client();
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "m", "STRING", "MEMORY"]);
    let replica = start_replica(primary.port(), &[]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    q_ok::<()>(&mut p, &["SET", "m", "t", "v", "PX", "50"]);
    thread::sleep(Duration::from_millis(150));
    // (Reclaimed by this DEL, unless the primary's sweep got there first: a DEL either way.)
    q_ok::<i64>(&mut p, &["DEL", "m", "t"]);
    q_ok::<()>(&mut p, &["SET", "m", "other", "x"]);
    converge(&mut p, &mut r);
    let held: i64 = q_ok(&mut r, &["DBSIZE", "m"]);
    assert_eq!(held, 1, "the expired key is gone from the replica too");
}

/// A primary restarted with an empty data directory under the same address has a new
/// replication id: the replica syncs fully from it and keeps nothing of the old history.
#[test]
fn a_new_primary_at_the_same_address_is_a_new_history() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first_dir = DataDir::new("primary-a");
    let first = FixedPrimary::start(port, &first_dir);
    let mut p = FixedPrimary::client(port);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "old", "STRING", "SYNC"]);
    q_ok::<()>(&mut p, &["SET", "old", "k", "from the first primary"]);
    let old_id = repl_info(&mut p, "master_replid").unwrap();
    let replica = Server::start(&[
        "--replicaof",
        &format!("127.0.0.1:{port}"),
        "--primary-user",
        "admin",
        "--primary-password",
        ADMIN_PASSWORD,
    ]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);
    let v: String = q_ok(&mut r, &["GET", "old", "k"]);
    assert_eq!(v, "from the first primary");
    drop(first);
    let second_dir = DataDir::new("primary-b");
    let _second = FixedPrimary::start(port, &second_dir);
    let mut p = FixedPrimary::client(port);
    // Its first partition gets the id the old one had: a replica that merged the two
    // histories would find the old partition's log under it.
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "new", "STRING", "SYNC"]);
    q_ok::<()>(&mut p, &["SET", "new", "k2", "from the second primary"]);
    let new_id = repl_info(&mut p, "master_replid").unwrap();
    assert_ne!(old_id, new_id, "a new data directory, a new replication id");
    let switched = poll_until(CONVERGE, || {
        (repl_info(&mut r, "master_replid").as_deref() == Some(new_id.as_str())).then_some(())
    });
    assert!(
        switched.is_some(),
        "the replica never synced from the new primary"
    );
    converge(&mut p, &mut r);
    // It asked to resume the old history: denied, a full sync.
    let stats: String = q_ok(&mut p, &["INFO", "stats"]);
    assert!(
        stats.contains("sync_full:1\r\n") && stats.contains("sync_partial_err:1\r\n"),
        "{stats}"
    );
    let listed: Vec<String> = q_ok(&mut r, &["LIST", "PARTITIONS"]);
    assert_eq!(
        listed,
        vec!["new".to_string()],
        "nothing of the old history stays"
    );
    same_partition(&mut p, &mut r, "new", true);
    let keys: i64 = q_ok(&mut r, &["DBSIZE", "new"]);
    assert_eq!(keys, 1, "nothing of the old partition's log");
}

/// A replica's link lives only while its user may replicate. A REVOKE of the user's ADMIN on
/// `*`, or DROP USER, ends the feed on the primary before it answers: nothing written or
/// changed after that (data, users) reaches the replica, whose attempts to link again are
/// refused until the user may replicate again.
#[test]
fn a_revoked_or_dropped_replication_user_loses_its_link() {
    let primary = Server::start(&[]);
    let mut p = primary.client();
    let grant_repl = |p: &mut redis::Connection| {
        q_ok::<()>(p, &["GRANT", "ADMIN", "ON", "*", "TO", "repl"]);
    };
    q_ok::<()>(&mut p, &["CREATE", "USER", "repl", "repl-pw"]);
    grant_repl(&mut p);
    q_ok::<()>(&mut p, &["CREATE", "PARTITION", "p", "STRING", "MEMORY"]);
    q_ok::<()>(&mut p, &["SET", "p", "k", "1"]);
    let replica = Server::start(&[
        "--replicaof",
        &format!("127.0.0.1:{}", primary.port()),
        "--primary-user",
        "repl",
        "--primary-password",
        "repl-pw",
    ]);
    let mut r = replica_client(&replica);
    converge(&mut p, &mut r);

    // Cuts the link with `cut`, checks that a write and a new user made after it stay on the
    // primary, then lets the user replicate again with `restore` and checks the replica
    // catches up.
    let mut round = 1;
    let mut check_cut = |p: &mut redis::Connection,
                         r: &mut redis::Connection,
                         cut: &dyn Fn(&mut redis::Connection),
                         restore: &dyn Fn(&mut redis::Connection)| {
        let refusals = || {
            let log = replica.log_text();
            log.lines()
                .filter(|l| l.contains("refused this replica"))
                .count()
        };
        let refused_before = refusals();
        cut(p);
        let gone = poll_until(Duration::from_secs(10), || {
            (repl_info(p, "connected_slaves").as_deref() == Some("0")).then_some(())
        });
        assert!(gone.is_some(), "the replica's link outlived the revocation");
        round += 1;
        let value = round.to_string();
        let later = format!("later{round}");
        q_ok::<()>(p, &["SET", "p", "k", &value]);
        q_ok::<()>(p, &["CREATE", "USER", &later, "later-pw"]);
        // Past the replica's first retry (1 s): it is refused, not merely slow.
        thread::sleep(Duration::from_millis(2500));
        assert_eq!(repl_info(r, "master_link_status").as_deref(), Some("down"));
        assert_eq!(
            q::<String>(r, &["GET", "p", "k"]).unwrap(),
            (round - 1).to_string(),
            "a write after the revocation reached the replica"
        );
        let mut login = replica.raw_unauthenticated();
        let e = login.call_err(&["AUTH", &later, "later-pw"]);
        assert!(
            e.starts_with("WRONGPASS"),
            "a user made after it reached the replica: {e}"
        );
        assert!(refusals() > refused_before, "{}", replica.log_text());
        restore(p);
        converge(p, r);
        assert_eq!(q::<String>(r, &["GET", "p", "k"]).unwrap(), value);
    };
    check_cut(
        &mut p,
        &mut r,
        &|p| q_ok::<()>(p, &["REVOKE", "ADMIN", "ON", "*", "FROM", "repl"]),
        &grant_repl,
    );
    check_cut(
        &mut p,
        &mut r,
        &|p| q_ok::<()>(p, &["DROP", "USER", "repl"]),
        &|p| {
            q_ok::<()>(p, &["CREATE", "USER", "repl", "repl-pw"]);
            grant_repl(p);
        },
    );
}
