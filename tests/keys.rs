//! The keys family against the real binary, for what the differential table
//! (tests/keyspace.rs) cannot show: SCAN's guarantee under concurrent writes and across
//! connections, KEYS past `--max-keys-reply`, FLUSH PARTITION's durability and rollback,
//! FLUSH PARTITION while compaction writes a snapshot, the expiry counters of STATS PARTITION
//! and INFO, and the permissions of each command.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::*;

/// `MSET <p> <prefix>0 v ... ` in batches of 1000 keys, pipelined.
fn fill(c: &mut RawConn, p: &str, prefix: &str, n: usize) {
    let requests: Vec<Vec<u8>> = (0..n)
        .step_by(1000)
        .map(|from| {
            let mut words = vec!["MSET".to_string(), p.to_string()];
            for i in from..(from + 1000).min(n) {
                words.push(format!("{prefix}{i}"));
                words.push("v".into());
            }
            cmd(&words.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .collect();
    for reply in c.pipeline(&requests) {
        assert_eq!(reply, OK, "{}", show(&reply));
    }
}

/// One SCAN call: (next cursor, keys).
fn scan_once(c: &mut RawConn, p: &str, cursor: &str, extra: &[&str]) -> (String, Vec<String>) {
    let mut args = vec!["SCAN", p, cursor];
    args.extend_from_slice(extra);
    let reply = c.call_value(&args);
    let parts = reply.items();
    assert_eq!(parts.len(), 2, "SCAN reply: {reply:?}");
    (parts[0].text(), parts[1].texts())
}

fn dbsize(c: &mut RawConn, p: &str) -> i64 {
    c.call_value(&["DBSIZE", p]).int()
}

/// A field of a flat (RESP2) map reply.
fn field(reply: &Resp, name: &str) -> i64 {
    reply
        .pairs()
        .into_iter()
        .find(|(k, _)| k.text() == name)
        .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
        .1
        .int()
}

/// The partitions `a` and `b` of a 2-shard server, one on each shard, and a connection on
/// the shard that owns `b` (so `a` is forwarded).
fn two_shards(server: &Server, persist: &str) -> RawConn {
    let mut c = server.raw();
    for p in ["a", "b"] {
        c.expect(&cmd(&["CREATE", "PARTITION", p, "STRING", persist]), OK);
    }
    assert_ne!(c.partition_shard("a"), c.partition_shard("b"));
    let owner = c.partition_shard("b");
    loop {
        let mut conn = server.raw();
        if conn.shard() == owner {
            return conn;
        }
    }
}

#[test]
fn scan_returns_every_key_present_throughout_while_others_write_and_delete() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = two_shards(&server, "MEMORY");
    // Partition `a` lives on the other shard: every SCAN is forwarded.
    const STABLE: usize = 100_000;
    fill(&mut c, "a", "s", STABLE);
    fill(&mut c, "a", "d", 20_000);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = done.clone();
        let mut w = server.raw();
        thread::spawn(move || {
            // Grows the table (so it drains an old index during the walk) and deletes keys
            // the walk may or may not see.
            let mut round = 0;
            while !done.load(Ordering::Relaxed) && round < 200 {
                let from = round * 1000;
                let mut mset = vec!["MSET".to_string(), "a".into()];
                let mut del = vec!["DEL".to_string(), "a".into()];
                for i in from..from + 1000 {
                    mset.push(format!("n{i}"));
                    mset.push("v".into());
                    if i < 20_000 {
                        del.push(format!("d{i}"));
                    }
                }
                let strs = |v: &Vec<String>| cmd(&v.iter().map(String::as_str).collect::<Vec<_>>());
                let mut requests = vec![strs(&mset)];
                if del.len() > 2 {
                    requests.push(strs(&del));
                }
                w.pipeline(&requests);
                round += 1;
            }
            round
        })
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let (next, keys) = scan_once(&mut c, "a", &cursor, &["COUNT", "500"]);
        seen.extend(keys);
        calls += 1;
        cursor = next;
        if cursor == "0" {
            break;
        }
        assert!(calls < 100_000, "the walk does not end");
    }
    done.store(true, Ordering::Relaxed);
    let rounds = writer.join().expect("writer");
    assert!(rounds > 0, "the writer never ran during the walk");
    let missing: Vec<usize> = (0..STABLE)
        .filter(|i| !seen.contains(&format!("s{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} keys present throughout were not returned ({} calls, {rounds} writer rounds), \
         e.g. s{}",
        missing.len(),
        calls,
        missing[0]
    );
}

#[test]
fn a_cursor_handed_to_another_connection_continues_the_walk() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = two_shards(&server, "MEMORY");
    fill(&mut c, "a", "k", 5_000);
    fill(&mut c, "b", "k", 5_000);
    for p in ["a", "b"] {
        // Two connections, one on each shard: they take turns, each going on from the
        // cursor the other got.
        let mut conns = [server.raw(), server.raw()];
        while conns[0].shard() == conns[1].shard() {
            conns[1] = server.raw();
        }
        let mut seen = HashSet::new();
        let mut cursor = "0".to_string();
        let mut turn = 0;
        loop {
            let (next, keys) = scan_once(&mut conns[turn % 2], p, &cursor, &["COUNT", "100"]);
            seen.extend(keys);
            cursor = next;
            turn += 1;
            if cursor == "0" {
                break;
            }
        }
        assert!(turn > 10, "{p}: the walk took only {turn} calls");
        assert_eq!(seen.len(), 5_000, "{p}: keys returned by the shared walk");
    }
}

#[test]
fn scan_options_filter_what_a_call_collected() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.expect(&cmd(&["CREATE", "PARTITION", "p", "INT", "MEMORY"]), OK);
    c.expect(&cmd(&["MSET", "p", "a1", "1", "a2", "2", "b1", "3"]), OK);
    // INT values are Redis strings too.
    let (cursor, mut keys) = scan_once(&mut c, "p", "0", &["TYPE", "string", "COUNT", "100"]);
    keys.sort();
    assert_eq!(
        (cursor.as_str(), keys),
        ("0", vec!["a1".into(), "a2".into(), "b1".into()])
    );
    let (_, keys) = scan_once(&mut c, "p", "0", &["TYPE", "hash", "COUNT", "100"]);
    assert!(keys.is_empty());
    let (_, mut keys) = scan_once(&mut c, "p", "0", &["MATCH", "a*", "COUNT", "100"]);
    keys.sort();
    assert_eq!(keys, ["a1", "a2"]);
    // The cursor is a bulk string, under RESP3 too.
    c.expect_prefix(&cmd(&["HELLO", "3"]), b"%");
    c.expect_prefix(
        &cmd(&["SCAN", "p", "0", "COUNT", "100"]),
        b"*2\r\n$1\r\n0\r\n*3\r\n",
    );
    c.expect(&cmd(&["SCAN", "p", "nope"]), b"-ERR invalid cursor\r\n");
    c.expect(
        &cmd(&["SCAN", "p", "0", "COUNT", "0"]),
        b"-ERR syntax error\r\n",
    );
    c.expect(
        &cmd(&["SCAN", "nosuch", "0"]),
        b"-NOPARTITION partition 'nosuch' does not exist\r\n",
    );
}

#[test]
fn keys_past_max_keys_reply_is_an_error_that_says_to_scan() {
    let server = Server::start(&["--max-keys-reply", "100", "--shards", "2"]);
    let mut c = two_shards(&server, "MEMORY");
    for p in ["a", "b"] {
        fill(&mut c, p, "k", 150);
        let reply = c.call(&["KEYS", p, "*"]);
        assert_eq!(
            reply,
            b"-ERR KEYS would return more than 100 keys (max-keys-reply); use SCAN to iterate \
              the partition\r\n",
            "{p}: {}",
            show(&reply)
        );
        // No partial reply came before the error: the connection answers the next command.
        c.expect(&cmd(&["PING"]), b"+PONG\r\n");
        // The limit counts matches: k1, k10..k19, k100..k149 are 61.
        assert_eq!(c.call_value(&["KEYS", p, "k1*"]).items().len(), 61);
        assert_eq!(c.call_value(&["KEYS", p, "nomatch"]).items().len(), 0);
        c.expect(&cmd(&["DEL", p, "k0"]), b":1\r\n");
        for i in 100..150 {
            c.expect(&cmd(&["DEL", p, &format!("k{i}")]), b":1\r\n");
        }
        // 99 keys left: all of them.
        assert_eq!(c.call_value(&["KEYS", p, "*"]).items().len(), 99);
    }
}

#[test]
fn flush_partition_on_sync_survives_a_restart_and_keeps_grants() {
    let dir = DataDir::new("keys-flush");
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = two_shards(&server, "SYNC");
    c.expect(&cmd(&["CREATE", "USER", "bob", "bpw"]), OK);
    for p in ["a", "b"] {
        c.expect(&cmd(&["GRANT", "READ", "ON", p, "TO", "bob"]), OK);
        fill(&mut c, p, "old", 2_000);
        c.expect(&cmd(&["FLUSH", "PARTITION", p]), OK);
        assert_eq!(dbsize(&mut c, p), 0);
        c.expect(&cmd(&["GET", p, "old1"]), NULL2);
        c.expect(&cmd(&["MSET", p, "new1", "x", "old7", "y"]), OK);
        // Flushing an empty partition is fine too.
        c.expect(&cmd(&["FLUSH", "PARTITION", "a"]), OK);
        c.expect(&cmd(&["MSET", "a", "late", "z"]), OK);
    }
    let stats = c.call_value(&["STATS", "PARTITION", "b"]);
    assert_eq!(field(&stats, "keys"), 2);
    assert!(field(&stats, "memory") > 0);
    server.kill9();
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    assert_eq!(c.call_value(&["LIST", "PARTITIONS"]).texts(), ["a", "b"]);
    assert_eq!(
        dbsize(&mut c, "a"),
        1,
        "only the key written after the last flush"
    );
    c.expect(&cmd(&["GET", "a", "late"]), &bulk(b"z"));
    assert_eq!(dbsize(&mut c, "b"), 2);
    c.expect(&cmd(&["GET", "b", "old1"]), NULL2);
    c.expect(&cmd(&["GET", "b", "old7"]), &bulk(b"y"));
    c.expect(&cmd(&["GET", "b", "new1"]), &bulk(b"x"));
    // The grants survived the flush (and the restart).
    let mut bob = server.login("bob", "bpw");
    bob.expect(&cmd(&["GET", "b", "new1"]), &bulk(b"x"));
}

#[test]
fn a_flush_whose_commit_fails_keeps_every_key() {
    let dir = DataDir::new("keys-flush-fail");
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = two_shards(&server, "SYNC");
    for p in ["a", "b"] {
        fill(&mut c, p, "k", 3_000);
        c.expect(&cmd(&["DEBUG", "FAIL-WRITE", "1"]), OK);
        let reply = c.call_value(&["FLUSH", "PARTITION", p]);
        assert!(reply.is_error_code("IOERR"), "{p}: {reply:?}");
        assert_eq!(dbsize(&mut c, p), 3_000, "{p}: the flush was rolled back");
        c.expect(&cmd(&["GET", p, "k2999"]), &bulk(b"v"));
        // A pass with writes before and after the flush: all undone, newest first.
        c.expect(&cmd(&["DEBUG", "FAIL-WRITE", "1"]), OK);
        let replies = c.pipeline(&[
            cmd(&["SET", p, "k1", "changed"]),
            cmd(&["FLUSH", "PARTITION", p]),
            cmd(&["SET", p, "k2", "after"]),
            cmd(&["SET", p, "fresh", "after"]),
        ]);
        for reply in &replies {
            assert!(reply.starts_with(b"-IOERR"), "{p}: {}", show(reply));
        }
        assert_eq!(dbsize(&mut c, p), 3_000);
        c.expect(&cmd(&["GET", p, "k1"]), &bulk(b"v"));
        c.expect(&cmd(&["GET", p, "k2"]), &bulk(b"v"));
        c.expect(&cmd(&["GET", p, "fresh"]), NULL2);
        let keys = c.call_value(&["KEYS", p, "*"]).items().len();
        assert_eq!(keys, 3_000);
    }
    // Nothing of the failed flushes reached the log.
    server.kill9();
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    for p in ["a", "b"] {
        assert_eq!(dbsize(&mut c, p), 3_000, "{p} after a restart");
        c.expect(&cmd(&["GET", p, "k1"]), &bulk(b"v"));
    }
}

#[test]
fn stats_describe_and_info_show_the_keyspace() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    for p in ["p", "q"] {
        c.expect(&cmd(&["CREATE", "PARTITION", p, "STRING", "MEMORY"]), OK);
    }
    c.expect(&cmd(&["MSET", "p", "a", "1", "b", "2", "c", "3"]), OK);
    for command in ["STATS", "DESCRIBE"] {
        let reply = c.call_value(&[command, "PARTITION", "p"]);
        assert_eq!(field(&reply, "keys"), 3, "{command}");
        for counter in ["expires", "expired_keys", "evicted_keys"] {
            assert_eq!(field(&reply, counter), 0, "{command} {counter}");
        }
    }
    let info = c.call_value(&["INFO"]).text();
    assert!(info.contains("\r\nexpired_keys:0\r\n"), "{info}");
    assert!(info.contains("\r\nevicted_keys:0\r\n"), "{info}");
    let keyspace = c.call_value(&["INFO", "keyspace"]).text();
    assert_eq!(
        keyspace,
        "# Keyspace\r\np:keys=3,expires=0,avg_ttl=0\r\nq:keys=0,expires=0,avg_ttl=0\r\n"
    );
    assert!(info.contains(&keyspace), "INFO has the keyspace section");
    // Each caller sees the partitions it may READ.
    c.expect(&cmd(&["CREATE", "USER", "bob", "bpw"]), OK);
    c.expect(&cmd(&["GRANT", "READ", "ON", "q", "TO", "bob"]), OK);
    c.expect(&cmd(&["GRANT", "WRITE", "ON", "p", "TO", "bob"]), OK);
    let mut bob = server.login("bob", "bpw");
    assert_eq!(
        bob.call_value(&["INFO", "keyspace"]).text(),
        "# Keyspace\r\nq:keys=0,expires=0,avg_ttl=0\r\n"
    );
    c.expect(&cmd(&["FLUSH", "PARTITION", "p"]), OK);
    assert!(c
        .call_value(&["INFO", "keyspace"])
        .text()
        .contains("\r\np:keys=0,expires=0,avg_ttl=0\r\n"));
}

#[test]
fn each_command_needs_its_permission() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = two_shards(&server, "MEMORY");
    for (user, perm) in [("reader", "READ"), ("writer", "WRITE"), ("owner", "ADMIN")] {
        admin.expect(&cmd(&["CREATE", "USER", user, "pw"]), OK);
        for p in ["a", "b"] {
            admin.expect(&cmd(&["GRANT", perm, "ON", p, "TO", user]), OK);
        }
    }
    let read: &[&[&str]] = &[
        &["SCAN", "0"],
        &["KEYS", "*"],
        &["TYPE", "k"],
        &["DBSIZE"],
        &["TOUCH", "k"],
        &["EXISTS", "k"],
    ];
    let write: &[&[&str]] = &[
        &["RENAME", "k", "j"],
        &["RENAMENX", "j", "k"],
        &["UNLINK", "k"],
    ];
    for p in ["a", "b"] {
        let with_partition = |words: &[&str]| -> Vec<String> {
            let mut v = vec![words[0].to_string(), p.to_string()];
            v.extend(words[1..].iter().map(|w| w.to_string()));
            v
        };
        for (user, may_read, may_write, may_flush) in [
            ("reader", true, false, false),
            ("writer", false, true, false),
            ("owner", true, true, true),
        ] {
            let mut c = server.login(user, "pw");
            admin.expect(&cmd(&["SET", p, "k", "v"]), OK);
            for (commands, allowed) in [(read, may_read), (write, may_write)] {
                for words in commands {
                    let words = with_partition(words);
                    let words: Vec<&str> = words.iter().map(String::as_str).collect();
                    let reply = c.call_value(&words);
                    assert_eq!(
                        !reply.is_error_code("NOPERM"),
                        allowed,
                        "{user} {words:?}: {reply:?}"
                    );
                    assert!(
                        !matches!(reply, Resp::Error(_)) || !allowed,
                        "{user} {words:?}: {reply:?}"
                    );
                }
            }
            admin.expect(&cmd(&["SET", p, "k", "v"]), OK);
            let reply = c.call_value(&["FLUSH", "PARTITION", p]);
            if may_flush {
                assert_eq!(reply, Resp::ok(), "{user}");
                assert_eq!(dbsize(&mut admin, p), 0);
            } else {
                assert!(reply.is_error_code("NOPERM"), "{user}: {reply:?}");
                assert_eq!(
                    dbsize(&mut admin, p),
                    1,
                    "{user}: a refused flush removed keys"
                );
            }
        }
    }
}

/// FLUSH PARTITION among writes while compaction snapshots the partition a slice per pass
/// (the flush takes the table, and the snapshot walk with it): after kill -9 and a restart
/// the partition is exactly what the client last saw.
#[test]
fn flushes_during_compaction_lose_nothing_and_resurrect_nothing() {
    let dir = DataDir::new("keys-flush-compaction");
    let server = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = server.raw();
    c.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "SYNC"]), OK);
    // 2 KiB values: 5000 keys make a snapshot of 10 MiB, written 1 MiB a pass, so the
    // pipelined writes and flushes below land while one is being written.
    let value = "v".repeat(2048);
    let mut model = std::collections::BTreeMap::new();
    let mut state = 777u64;
    for cycle in 0..4 {
        let mut requests = Vec::new();
        for step in 0..15_000 {
            if step == 10_000 {
                requests.push(cmd(&["FLUSH", "PARTITION", "p"]));
                model.clear();
                continue;
            }
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = format!("k{}", (state >> 33) % 5_000);
            let v = format!("{value}{cycle}-{step}");
            requests.push(cmd(&["SET", "p", &key, &v]));
            model.insert(key, v);
        }
        for reply in c.pipeline(&requests) {
            assert_eq!(reply, OK, "{}", show(&reply));
        }
    }
    let info = c.call_value(&["INFO", "persistence"]).text();
    assert!(
        !info.contains("\r\ncompactions:0\r\n"),
        "no compaction ran:\n{info}"
    );
    server.kill9();
    let server = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = server.raw();
    assert_eq!(dbsize(&mut c, "p"), model.len() as i64);
    let keys: HashSet<String> = c
        .call_value(&["KEYS", "p", "*"])
        .texts()
        .into_iter()
        .collect();
    let expected: HashSet<String> = model.keys().cloned().collect();
    assert!(keys == expected, "keys differ after the restart");
    for (k, v) in model.iter().step_by(11) {
        c.expect(&cmd(&["GET", "p", k]), &bulk(v.as_bytes()));
    }
}
