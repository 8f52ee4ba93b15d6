//! MULTI, EXEC, DISCARD, WATCH and UNWATCH (`src/command/multi.rs`, `src/shard/transaction.rs`).
//!
//! The replies are compared with a real `redis-server` 7 ([`common::RealRedis`]; skipped
//! without one unless `GOKV_REQUIRE_REDIS` is set): GoKV runs the same rows in Redis grammar
//! (`SELECT`) on a two-shard server, once on a partition of each shard, so that both the
//! local path and the forwarded one answer as Redis does. The GoKV halves check what Redis
//! has no counterpart for: one partition per transaction, atomicity against concurrent
//! readers, durable partitions, replicas, the bounds.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::ADMIN_PASSWORD;
use common::{array, bulk, cmd, int, poll_until, show, DataDir, RawConn, RealRedis, Server};

/// How a row's reply is compared with Redis's.
#[derive(Clone, Copy, PartialEq)]
enum Compare {
    Exact,
    /// An error whose text GoKV words its own way (an unknown command): the code only.
    Code,
}

use Compare::{Code, Exact};

/// Rows run one after the other on one connection.
fn rows() -> Vec<(Vec<&'static str>, Compare)> {
    let r = |words: &[&'static str]| (words.to_vec(), Exact);
    vec![
        r(&["MULTI"]),
        r(&["SET", "a", "1"]),
        r(&["INCR", "a"]),
        r(&["GET", "a"]),
        r(&["PING"]),
        r(&["EXEC"]),
        r(&["EXEC"]),
        r(&["DISCARD"]),
        // Nested MULTI and WATCH inside MULTI: errors that do not spoil it.
        r(&["MULTI"]),
        r(&["MULTI"]),
        r(&["WATCH", "a"]),
        r(&["INCR", "a"]),
        r(&["EXEC"]),
        // A queue-time error aborts.
        r(&["MULTI"]),
        r(&["SET", "a"]),
        r(&["INCR", "a"]),
        r(&["EXEC"]),
        r(&["GET", "a"]),
        r(&["MULTI"]),
        (vec!["NOSUCHCOMMAND", "x"], Code),
        r(&["EXEC"]),
        // A runtime error is one element; the others run.
        r(&["SET", "s", "x"]),
        r(&["MULTI"]),
        r(&["INCR", "s"]),
        r(&["SET", "t", "1"]),
        r(&["GET", "t"]),
        r(&["EXEC"]),
        // Empty, discarded, UNWATCH queued.
        r(&["MULTI"]),
        r(&["EXEC"]),
        r(&["MULTI"]),
        r(&["SET", "a", "99"]),
        r(&["DISCARD"]),
        r(&["GET", "a"]),
        r(&["MULTI"]),
        r(&["UNWATCH"]),
        r(&["ECHO", "e"]),
        r(&["EXEC"]),
        r(&["WATCH"]),
        r(&["WATCH", "a", "b"]),
        r(&["UNWATCH"]),
        r(&["MULTI"]),
        r(&["DEL", "a", "s", "t"]),
        r(&["EXEC"]),
    ]
}

/// Two STRING MEMORY partitions, one per shard.
fn partitions(server: &Server) -> [String; 2] {
    let (p0, p1) = server.raw().one_partition_per_shard();
    [p0, p1]
}

/// A connection in Redis grammar on each of `partitions`.
fn face_conns(server: &Server, partitions: &[String; 2]) -> Vec<RawConn> {
    partitions
        .iter()
        .map(|p| {
            let mut c = server.raw();
            c.call_ok(&["SELECT", p]);
            c
        })
        .collect()
}

/// The error code of an error reply, or the reply.
fn code_of(reply: &[u8]) -> Vec<u8> {
    match reply.first() {
        Some(b'-') => reply.split(|&b| b == b' ').next().unwrap_or(reply).to_vec(),
        _ => reply.to_vec(),
    }
}

#[test]
fn transaction_replies_match_redis() {
    let server = Server::start(&["--shards", "2"]);
    let mut gokv = face_conns(&server, &partitions(&server));
    let Some(redis) = RealRedis::start("transaction_replies_match_redis") else {
        return;
    };
    let mut redis = redis.conn();
    for (words, compare) in rows() {
        let want = redis.call(&words);
        for (i, c) in gokv.iter_mut().enumerate() {
            let got = c.call(&words);
            let (w, g) = match compare {
                Exact => (want.clone(), got),
                Code => (code_of(&want), code_of(&got)),
            };
            assert_eq!(
                show(&g),
                show(&w),
                "{words:?} on the partition of shard {i}: GoKV against Redis"
            );
        }
    }
}

/// Runs one WATCH scenario on `watcher` with `other` changing things, answers EXEC's reply.
fn watch_case(
    watcher: &mut dyn FnMut(&[&str]) -> Vec<u8>,
    other: &mut dyn FnMut(&[&str]) -> Vec<u8>,
    setup: &[&[&str]],
    wait_before_watch: u64,
    meanwhile: &[&[&str]],
) -> Vec<u8> {
    watcher(&["DEL", "k", "j"]);
    for c in setup {
        watcher(c);
    }
    thread::sleep(Duration::from_millis(wait_before_watch));
    assert_eq!(watcher(&["WATCH", "k"]), b"+OK\r\n");
    for c in meanwhile {
        if c[0] == "sleep" {
            thread::sleep(Duration::from_millis(c[1].parse().unwrap()));
        } else {
            other(c);
        }
    }
    watcher(&["MULTI"]);
    watcher(&["PING"]);
    watcher(&["EXEC"])
}

/// Redis 7's WATCH rule, case by case: what fails EXEC (any store into the key, a deletion
/// or expiry of a key live at WATCH, FLUSHDB of it) and what does not (no-op writes, other
/// keys, reclaiming a key already expired at WATCH), whether the change comes from another
/// connection, and on either shard's partition.
#[test]
fn watch_conflicts_match_redis() {
    type Case<'a> = (&'a str, Vec<&'a [&'a str]>, u64, Vec<&'a [&'a str]>);
    let cases: Vec<Case> = vec![
        ("untouched", vec![&["SET", "k", "v"]], 0, vec![]),
        (
            "live key expires",
            vec![&["SET", "k", "v", "PX", "100"]],
            0,
            vec![&["sleep", "250"]],
        ),
        (
            "expired, then set",
            vec![&["SET", "k", "v", "PX", "30"]],
            100,
            vec![&["SET", "k", "x"]],
        ),
        (
            "expired, then read",
            vec![&["SET", "k", "v", "PX", "30"]],
            100,
            vec![&["GET", "k"]],
        ),
        (
            "expired, then deleted",
            vec![&["SET", "k", "v", "PX", "30"]],
            100,
            vec![&["DEL", "k"]],
        ),
        ("absent, then set", vec![], 0, vec![&["SET", "k", "x"]]),
        (
            "the same value again",
            vec![&["SET", "k", "v"]],
            0,
            vec![&["SET", "k", "v"]],
        ),
        (
            "deleted and set back",
            vec![&["SET", "k", "v"]],
            0,
            vec![&["DEL", "k"], &["SET", "k", "v"]],
        ),
        ("deleted", vec![&["SET", "k", "v"]], 0, vec![&["DEL", "k"]]),
        ("absent, deleted", vec![], 0, vec![&["DEL", "k"]]),
        ("flushed", vec![&["SET", "k", "v"]], 0, vec![&["FLUSHDB"]]),
        (
            "absent, flushed",
            vec![&["SET", "j", "v"]],
            0,
            vec![&["FLUSHDB"]],
        ),
        (
            "SET NX that fails",
            vec![&["SET", "k", "v"]],
            0,
            vec![&["SET", "k", "x", "NX"]],
        ),
        (
            "EXPIRE",
            vec![&["SET", "k", "v"]],
            0,
            vec![&["EXPIRE", "k", "100"]],
        ),
        (
            "PERSIST of no deadline",
            vec![&["SET", "k", "v"]],
            0,
            vec![&["PERSIST", "k"]],
        ),
        (
            "INCR that fails",
            vec![&["SET", "k", "v"]],
            0,
            vec![&["INCR", "k"]],
        ),
        (
            "another key",
            vec![&["SET", "k", "v"]],
            0,
            vec![&["SET", "j", "v"], &["DEL", "j"]],
        ),
        (
            "EXPIRE into the past",
            vec![&["SET", "k", "v"]],
            0,
            vec![&["EXPIRE", "k", "0"]],
        ),
        (
            "APPEND",
            vec![&["SET", "k", "v"]],
            0,
            vec![&["APPEND", "k", "w"]],
        ),
        (
            "RENAME onto it",
            vec![&["SET", "j", "v"]],
            0,
            vec![&["RENAME", "j", "k"]],
        ),
    ];
    let server = Server::start(&["--shards", "2"]);
    let names = partitions(&server);
    let mut gokv = face_conns(&server, &names);
    let mut others = face_conns(&server, &names);
    let Some(redis) = RealRedis::start("watch_conflicts_match_redis") else {
        return;
    };
    let (mut rw, mut ro) = (redis.conn(), redis.conn());
    for (name, setup, wait, meanwhile) in &cases {
        let want = watch_case(
            &mut |a| rw.call(a),
            &mut |a| ro.call(a),
            setup,
            *wait,
            meanwhile,
        );
        for i in 0..2 {
            let (w, o) = (&mut gokv[i], &mut others[i]);
            let got = watch_case(
                &mut |a| w.call(a),
                &mut |a| o.call(a),
                setup,
                *wait,
                meanwhile,
            );
            assert_eq!(
                show(&got),
                show(&want),
                "{name}, on the partition of shard {i}"
            );
        }
    }
    // The watcher's own write counts too; EXEC, DISCARD and UNWATCH forget the watches.
    for (c, other) in gokv.iter_mut().zip(others.iter_mut()) {
        c.call(&["WATCH", "k"]);
        c.call(&["SET", "k", "1"]);
        c.call(&["MULTI"]);
        assert_eq!(c.call(&["EXEC"]), b"*-1\r\n");
        for forget in [&["UNWATCH"][..], &["DISCARD"]] {
            c.call(&["WATCH", "k"]);
            other.call(&["SET", "k", "2"]);
            if forget == ["DISCARD"] {
                c.call(&["MULTI"]);
            }
            c.call(forget);
            c.call(&["MULTI"]);
            assert_eq!(c.call(&["EXEC"]), b"*0\r\n", "{forget:?}");
        }
    }
}

#[test]
fn a_watch_conflict_is_a_resp3_null() {
    let server = Server::start(&["--shards", "2"]);
    for mut c in face_conns(&server, &partitions(&server)) {
        c.call(&["HELLO", "3"]);
        c.call(&["WATCH", "k"]);
        c.call(&["SET", "k", "1"]);
        c.call(&["MULTI"]);
        assert_eq!(c.call(&["EXEC"]), b"_\r\n");
    }
}

/// In GoKV grammar, with the partition on the connection's shard and on the other one: the
/// data commands run there in one go; server commands join in their places.
#[test]
fn a_transaction_runs_on_either_shard_with_server_commands_in_place() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let (p0, p1) = c.one_partition_per_shard();
    for p in [&p0, &p1] {
        c.call_ok(&["MULTI"]);
        for words in [
            &["SET", p, "k", "1"][..],
            &["INCRBY", p, "k", "41"],
            &["PING", "in"],
            &["GET", p, "k"],
            &["CLIENT", "SETNAME", "tx"],
            &["DEL", p, "k"],
        ] {
            assert_eq!(c.call(words), b"+QUEUED\r\n", "{words:?}");
        }
        assert_eq!(
            c.call(&["EXEC"]),
            array(&[
                b"+OK\r\n".to_vec(),
                int(42),
                bulk(b"in"),
                bulk(b"42"),
                b"+OK\r\n".to_vec(),
                int(1)
            ]),
            "{p}"
        );
        assert_eq!(c.call(&["CLIENT", "GETNAME"]), bulk(b"tx"));
        // Only data commands: one reply built on the owner.
        c.call_ok(&["WATCH", p, "w"]);
        c.call_ok(&["MULTI"]);
        c.call(&["SET", p, "w", "x"]);
        c.call(&["GET", p, "w"]);
        assert_eq!(c.call(&["EXEC"]), array(&[b"+OK\r\n".to_vec(), bulk(b"x")]));
        // A conflict with server commands queued: nothing runs, not even them.
        c.call_ok(&["WATCH", p, "w"]);
        let mut other = server.raw();
        other.call_ok(&["SET", p, "w", "changed"]);
        c.call_ok(&["MULTI"]);
        c.call(&["CLIENT", "SETNAME", "never"]);
        c.call(&["SET", p, "w", "never"]);
        assert_eq!(c.call(&["EXEC"]), b"*-1\r\n");
        assert_eq!(c.call(&["CLIENT", "GETNAME"]), bulk(b"tx"));
        assert_eq!(c.call(&["GET", p, "w"]), bulk(b"changed"));
    }
    // Pipelined behind the transactions: everything in order.
    let replies = c.pipeline(&[
        cmd(&["SET", &p1, "n", "0"]),
        cmd(&["MULTI"]),
        cmd(&["INCR", &p1, "n"]),
        cmd(&["PING"]),
        cmd(&["EXEC"]),
        cmd(&["MULTI"]),
        cmd(&["INCR", &p1, "n"]),
        cmd(&["EXEC"]),
        cmd(&["GET", &p1, "n"]),
    ]);
    assert_eq!(replies[4], array(&[int(1), b"+PONG\r\n".to_vec()]));
    assert_eq!(replies[7], array(&[int(2)]));
    assert_eq!(replies[8], bulk(b"2"));
}

#[test]
fn one_partition_per_transaction_and_what_may_not_be_queued() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let (p0, p1) = c.one_partition_per_shard();
    let only_one = b"-ERR a transaction may touch only one partition\r\n".to_vec();
    c.call_ok(&["MULTI"]);
    assert_eq!(c.call(&["SET", &p0, "k", "v"]), b"+QUEUED\r\n");
    assert_eq!(c.call(&["SET", &p1, "k", "v"]), only_one);
    assert_eq!(
        c.call(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(c.call(&["GET", &p0, "k"]), b"$-1\r\n");
    // The watched partition is the transaction's.
    c.call_ok(&["WATCH", &p0, "k"]);
    assert_eq!(c.call(&["WATCH", &p1, "k"]), only_one);
    c.call_ok(&["MULTI"]);
    assert_eq!(c.call(&["GET", &p1, "k"]), only_one);
    c.call(&["DISCARD"]);
    // UNWATCH frees it.
    c.call_ok(&["WATCH", &p1, "k"]);
    c.call_ok(&["UNWATCH"]);
    for refused in [
        &["FLUSHALL"][..],
        &["CREATE", "PARTITION", "x", "STRING", "MEMORY"],
        &["SELECT", &p0],
        &["MONITOR"],
        &["AUTH", "admin", ADMIN_PASSWORD],
    ] {
        c.call_ok(&["MULTI"]);
        let reply = c.call(refused);
        assert!(reply.starts_with(b"-ERR "), "{refused:?}: {}", show(&reply));
        assert!(c.call(&["EXEC"]).starts_with(b"-EXECABORT"), "{refused:?}");
    }
    // No permission at queue time: refused there, and the transaction aborts.
    c.call_ok(&["CREATE", "USER", "reader", "pw"]);
    c.call_ok(&["GRANT", "READ", "ON", &p0, "TO", "reader"]);
    let mut reader = server.login("reader", "pw");
    reader.call_ok(&["MULTI"]);
    assert_eq!(reader.call(&["GET", &p0, "k"]), b"+QUEUED\r\n");
    assert!(reader.call(&["SET", &p0, "k", "v"]).starts_with(b"-NOPERM"));
    assert!(reader.call(&["EXEC"]).starts_with(b"-EXECABORT"));
    assert!(reader.call(&["WATCH", &p1, "k"]).starts_with(b"-NOPERM"));
}

#[test]
fn client_list_shows_a_transaction() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let (p0, _) = c.one_partition_per_shard();
    c.call_ok(&["CLIENT", "SETNAME", "txer"]);
    let mut admin = server.raw();
    let line = |admin: &mut RawConn| {
        admin
            .call_value(&["CLIENT", "LIST"])
            .text()
            .lines()
            .find(|l| l.contains("name=txer"))
            .expect("the connection is listed")
            .to_string()
    };
    assert!(line(&mut admin).contains(" multi=-1 "));
    c.call_ok(&["MULTI"]);
    c.call(&["SET", &p0, "k", "v"]);
    c.call(&["PING"]);
    let listed = line(&mut admin);
    assert!(listed.contains(" multi=2 "), "{listed}");
    assert!(listed.contains(" flags=x "), "{listed}");
    c.call(&["EXEC"]);
    assert!(
        line(&mut admin).contains(" multi=-1 flags=N ") || line(&mut admin).contains(" flags=N ")
    );
}

/// A reader running MGET (one command, atomic on its shard) or its own MULTI never sees one
/// of two INCRs of a transaction without the other, whichever shard each connection lives on.
#[test]
fn concurrent_readers_never_see_half_a_transaction() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let (p0, p1) = c.one_partition_per_shard();
    for p in [p0, p1] {
        // Both keys exist before the first reader runs, so a nil (one key without the
        // other) is a half-applied transaction too, not a reader that came first.
        c.call_ok(&["SET", &p, "x", "0"]);
        c.call_ok(&["SET", &p, "y", "0"]);
        let done = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let mut w = server.raw();
                let p = p.clone();
                thread::spawn(move || {
                    for _ in 0..300 {
                        let replies = w.pipeline(&[
                            cmd(&["MULTI"]),
                            cmd(&["INCR", &p, "x"]),
                            cmd(&["INCR", &p, "y"]),
                            cmd(&["EXEC"]),
                        ]);
                        assert!(replies[3].starts_with(b"*2\r\n"), "{}", show(&replies[3]));
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..2)
            .map(|i| {
                let mut r = server.raw();
                let (p, done) = (p.clone(), done.clone());
                thread::spawn(move || {
                    let mut checks = 0;
                    while !done.load(Ordering::Relaxed) || checks < 50 {
                        let values = if i == 0 {
                            r.call_value(&["MGET", &p, "x", "y"])
                        } else {
                            r.call_ok(&["MULTI"]);
                            r.call(&["GET", &p, "x"]);
                            r.call(&["GET", &p, "y"]);
                            r.call_value(&["EXEC"])
                        };
                        let values = values.items();
                        assert_eq!(values[0], values[1], "a half-applied transaction");
                        checks += 1;
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().expect("reader");
        }
        assert_eq!(c.call(&["GET", &p, "x"]), bulk(b"600"));
    }
}

/// EXEC's reply on a SYNC partition waits for the fsync: a kill -9 right after it loses
/// nothing; a failed fsync answers -IOERR and keeps nothing.
#[test]
fn a_sync_partition_s_exec_survives_kill_9_and_a_failed_fsync_answers_ioerr() {
    let dir = DataDir::new("tx-sync");
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    for p in ["s0", "s1", "s2"] {
        c.call_ok(&["CREATE", "PARTITION", p, "STRING", "SYNC"]);
    }
    for p in ["s0", "s1", "s2"] {
        c.call_ok(&["MULTI"]);
        for i in 0..20 {
            c.call(&["SET", p, &format!("k{i}"), &format!("v{i}")]);
        }
        c.call(&["INCR", p, "n"]);
        let reply = c.call(&["EXEC"]);
        assert!(reply.starts_with(b"*21\r\n"), "{}", show(&reply));
    }
    drop(c);
    server.kill9();
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    for p in ["s0", "s1", "s2"] {
        assert_eq!(c.call(&["GET", p, "k19"]), bulk(b"v19"), "{p}");
        assert_eq!(c.call(&["GET", p, "n"]), bulk(b"1"), "{p}");
    }
    for p in ["s0", "s1", "s2"] {
        c.call_ok(&["DEBUG", "FAIL-FSYNC", "1"]);
        c.call_ok(&["MULTI"]);
        c.call(&["SET", p, "lost", "x"]);
        c.call(&["INCR", p, "n"]);
        let reply = c.call(&["EXEC"]);
        assert!(show(&reply).contains("IOERR"), "{p}: {}", show(&reply));
        assert_eq!(c.call(&["GET", p, "lost"]), b"$-1\r\n", "{p}");
        assert_eq!(c.call(&["GET", p, "n"]), bulk(b"1"), "{p}");
    }
}

#[test]
fn a_transaction_reaches_a_replica_whole_and_writes_in_multi_on_a_replica_are_readonly() {
    let primary = Server::start(&["--shards", "2"]);
    let mut c = primary.raw();
    c.call_ok(&["CREATE", "PARTITION", "m", "STRING", "MEMORY"]);
    c.call_ok(&["CREATE", "PARTITION", "d", "STRING", "SYNC"]);
    let replica = Server::start(&[
        "--shards",
        "2",
        "--replicaof",
        &format!("127.0.0.1:{}", primary.port()),
        "--primary-user",
        "admin",
        "--primary-password",
        ADMIN_PASSWORD,
    ]);
    // (Its users are the primary's once the first sync installed them.)
    let mut r = poll_until(Duration::from_secs(60), || {
        let mut r = RawConn::connect(&replica.addr());
        let ok = r.call(&["AUTH", "admin", ADMIN_PASSWORD]) == b"+OK\r\n";
        ok.then_some(r)
    })
    .expect("a login on the replica");
    poll_until(Duration::from_secs(60), || {
        (r.call(&["EXISTS", "d", "none"]) == int(0)).then_some(())
    })
    .expect("the replica has the partitions");
    for p in ["m", "d"] {
        for round in 0..50 {
            c.call_ok(&["MULTI"]);
            c.call(&["INCR", p, "x"]);
            c.call(&["INCR", p, "y"]);
            c.call(&["EXEC"]);
            // A reader on the replica sees both or neither.
            let values = r.call_value(&["MGET", p, "x", "y"]);
            let values: Vec<String> = values.items().iter().map(|v| format!("{v:?}")).collect();
            assert_eq!(values[0], values[1], "{p}, round {round}");
        }
        let caught_up = poll_until(Duration::from_secs(30), || {
            (r.call(&["GET", p, "y"]) == bulk(b"50")).then_some(())
        });
        assert!(
            caught_up.is_some(),
            "{p}: the replica did not get every transaction"
        );
    }
    // As Redis's replica: a write in MULTI is READONLY at queue time, and EXEC aborts.
    r.call_ok(&["MULTI"]);
    assert!(r.call(&["SET", "m", "k", "v"]).starts_with(b"-READONLY"));
    assert_eq!(r.call(&["GET", "m", "x"]), b"+QUEUED\r\n");
    assert!(r.call(&["EXEC"]).starts_with(b"-EXECABORT"));
    // Reads run, and WATCH sees the primary's writes.
    r.call_ok(&["WATCH", "m", "x"]);
    c.call(&["INCR", "m", "x"]);
    poll_until(Duration::from_secs(30), || {
        (r.call(&["GET", "m", "x"]) == bulk(b"51")).then_some(())
    })
    .expect("the write reaches the replica");
    r.call_ok(&["MULTI"]);
    r.call(&["GET", "m", "x"]);
    assert_eq!(r.call(&["EXEC"]), b"*-1\r\n");
}

#[test]
fn the_queue_and_the_watched_keys_are_bounded() {
    let server = Server::start(&["--shards", "2", "--client-output-limit", "1mb"]);
    let mut c = server.raw();
    let (p0, p1) = c.one_partition_per_shard();
    let value = "v".repeat(100 * 1024);
    c.call_ok(&["MULTI"]);
    let mut refused = None;
    for i in 0..20 {
        let reply = c.call(&["SET", &p1, &format!("k{i}"), &value]);
        if reply != b"+QUEUED\r\n" {
            refused = Some((i, reply));
            break;
        }
    }
    let (i, reply) = refused.expect("the queue is bounded");
    assert!((9..=10).contains(&i), "refused at command {i}");
    assert!(
        show(&reply).contains("transaction too large"),
        "{}",
        show(&reply)
    );
    assert!(c.call(&["EXEC"]).starts_with(b"-EXECABORT"));
    assert_eq!(c.call(&["EXISTS", &p1, "k0"]), int(0));
    // Watched keys: at most 1 MiB a connection, checked where they are kept.
    let key = "w".repeat(60 * 1024);
    let mut refused = None;
    for i in 0..40 {
        let reply = c.call(&["WATCH", &p1, &format!("{key}{i}")]);
        if reply != b"+OK\r\n" {
            refused = Some(reply);
            break;
        }
    }
    let reply = refused.expect("watched keys are bounded");
    assert!(
        show(&reply).contains("too many watched keys"),
        "{}",
        show(&reply)
    );
    c.call_ok(&["UNWATCH"]);
    c.call_ok(&["WATCH", &p1, &key]);
    // A connection closed with watches leaves none behind: a new one watches as much.
    drop(c);
    let mut c = server.raw();
    for i in 0..10 {
        c.call_ok(&["WATCH", &p1, &format!("{key}{i}")]);
    }
    // EXEC's reply counts against the output limit as a whole: three reads of 400 KiB pass
    // 1 MiB, and the connection is closed rather than answered, on either shard.
    let mut admin = server.raw();
    let (q0, q1) = (p0, p1.clone());
    let big = "b".repeat(400 * 1024);
    for p in [&q0, &q1] {
        admin.call_ok(&["SET", p, "big", &big]);
        let mut c = server.raw();
        c.call_ok(&["MULTI"]);
        for _ in 0..3 {
            c.call(&["GET", p, "big"]);
        }
        c.send(&cmd(&["EXEC"]));
        c.expect_closed();
    }
}

/// redis-py's transactions, unchanged, on the Redis face: `pipeline(transaction=True)` and the
/// WATCH / MULTI / EXEC retry loop, with a conflict raising `WatchError`.
const REDIS_PY: &str = r#"
import sys
import redis
port, password, db = int(sys.argv[1]), sys.argv[2], sys.argv[3]
r = redis.Redis(host="127.0.0.1", port=port, username="admin", password=password, db=db)
other = redis.Redis(host="127.0.0.1", port=port, username="admin", password=password, db=db)
p = r.pipeline(transaction=True)
p.set("x", "1").incr("x").get("x").delete("x")
assert p.execute() == [True, 2, b"2", 1], "pipeline"
p = r.pipeline(transaction=True)
p.set("s", "x").incr("s").set("t", "1")
out = p.execute(raise_on_error=False)
assert out[0] is True and isinstance(out[1], redis.ResponseError) and out[2] is True, out
r.set("balance", 10)
def spend(pipe):
    v = int(pipe.get("balance"))
    pipe.multi()
    pipe.set("balance", v - 1)
assert r.transaction(spend, "balance") == [True]
assert r.get("balance") == b"9"
with r.pipeline() as pipe:
    pipe.watch("balance")
    other.set("balance", 100)
    pipe.multi()
    pipe.set("balance", 0)
    try:
        pipe.execute()
        raise SystemExit("no WatchError")
    except redis.WatchError:
        pass
assert r.get("balance") == b"100"
print("ok")
"#;

#[test]
fn redis_py_transactions_run_unchanged_on_the_redis_face() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let (p0, p1) = c.one_partition_per_shard();
    let probe = Command::new("python3")
        .args(["-c", "import redis"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => {
            if std::env::var_os("GOKV_REQUIRE_REDIS").is_some() {
                panic!("GOKV_REQUIRE_REDIS is set but python3 with redis-py cannot run: {other:?}");
            }
            eprintln!(
                "redis_py_transactions_run_unchanged_on_the_redis_face: skipping: no redis-py"
            );
            return;
        }
    }
    for p in [p0, p1] {
        let out = Command::new("python3")
            .args([
                "-c",
                REDIS_PY,
                &server.port().to_string(),
                ADMIN_PASSWORD,
                &p,
            ])
            .output()
            .expect("python3 ran a moment ago");
        assert!(
            out.status.success(),
            "redis-py on {p}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Sentinel's failover, as `sentinel.c` sends it: server commands only, on the connection's
/// shard, one element each; the caller survives its own CLIENT KILL.
#[test]
fn sentinel_s_failover_transaction_answers_one_element_per_command() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    c.call_ok(&["MULTI"]);
    for words in [
        &["SLAVEOF", "NO", "ONE"][..],
        &["CONFIG", "REWRITE"],
        &["CLIENT", "KILL", "TYPE", "normal"],
        &["CLIENT", "KILL", "TYPE", "pubsub"],
    ] {
        assert_eq!(c.call(words), b"+QUEUED\r\n", "{words:?}");
    }
    let reply = c.call_value(&["EXEC"]);
    assert_eq!(reply.items().len(), 4, "{reply:?}");
    assert_eq!(reply.items()[0], common::Resp::Simple(b"OK".to_vec()));
    assert_eq!(c.call(&["PING"]), b"+PONG\r\n");
}

/// As Redis 7, permissions are checked again when EXEC runs: a command whose permission was
/// revoked after it queued answers NOPERM in its place, the others run.
#[test]
fn a_revoke_between_queue_and_exec_refuses_that_command_only() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    let [p0, p1] = partitions(&server);
    admin.call_ok(&["CREATE", "USER", "app", "pw"]);
    for p in [&p0, &p1] {
        admin.call_ok(&["GRANT", "READ", "ON", p, "TO", "app"]);
        admin.call_ok(&["GRANT", "WRITE", "ON", p, "TO", "app"]);
    }
    for p in [&p0, &p1] {
        for mut app in [server.login("app", "pw"), server.login("app", "pw")] {
            admin.call_ok(&["GRANT", "WRITE", "ON", p, "TO", "app"]);
            app.call_ok(&["MULTI"]);
            app.call(&["SET", p, "k", "v"]);
            app.call(&["GET", p, "k"]);
            admin.call_ok(&["REVOKE", "WRITE", "ON", p, "FROM", "app"]);
            let reply = app.call_value(&["EXEC"]);
            let items = reply.items();
            assert!(items[0].is_error_code("NOPERM"), "{p}: {reply:?}");
            assert_eq!(items[1], common::Resp::Bulk(None), "{p}");
        }
    }
}
