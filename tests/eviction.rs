//! Eviction against the real binary (PROTOCOL.md, "Partition configuration and quotas"): a
//! partition at its `max-keys`/`max-memory` with a policy evicts its own keys to make room,
//! on the local and the forwarded path; `noeviction`, and `volatile-*` with no key with a
//! deadline, answer `-OOM`; no partition loses a key because of another's writes, under its
//! own quota or the server-wide `--max-memory`; a durable partition's evictions are logged.

mod common;

use common::{DataDir, RawConn, Resp, Server};

fn dbsize(c: &mut RawConn, p: &str) -> i64 {
    c.call_value(&["DBSIZE", p]).int()
}

fn exists(c: &mut RawConn, p: &str, key: &str) -> bool {
    c.call_value(&["EXISTS", p, key]).int() == 1
}

#[test]
fn a_partition_at_max_keys_with_lru_keeps_its_hot_keys() {
    let server = Server::start(&["--shards", "1"]);
    let mut c = server.raw();
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "cache",
        "STRING",
        "MEMORY",
        "max-keys",
        "100",
        "eviction",
        "allkeys-lru",
    ]);
    for i in 0..10 {
        c.call_ok(&["SET", "cache", &format!("hot{i}"), "v"]);
    }
    for i in 0..2000 {
        c.call_ok(&["SET", "cache", &format!("cold{i}"), "v"]);
        if i % 20 == 0 {
            for h in 0..10 {
                assert!(
                    c.call_value(&["GET", "cache", &format!("hot{h}")]).bytes() == b"v",
                    "hot{h} evicted after cold{i}"
                );
            }
        }
    }
    assert_eq!(dbsize(&mut c, "cache"), 100);
    assert_eq!(c.stat("cache", "evicted_keys"), 2010 - 100);
    assert_eq!(c.stat("cache", "keys"), 100);
    // The most recent cold keys are mostly there, the oldest ones gone.
    let recent = (1950..2000)
        .filter(|i| exists(&mut c, "cache", &format!("cold{i}")))
        .count();
    let old = (0..50)
        .filter(|i| exists(&mut c, "cache", &format!("cold{i}")))
        .count();
    assert!(recent > 40 && old < 5, "recent {recent}, old {old}");
    // INFO counts them too.
    let info = c.call_value(&["INFO", "stats"]).text();
    assert!(info.contains("evicted_keys:1910\r\n"), "{info}");
}

#[test]
fn noeviction_and_volatile_without_deadlines_answer_oom_and_change_nothing() {
    let server = Server::start(&["--shards", "1"]);
    let mut c = server.raw();
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "plain",
        "STRING",
        "MEMORY",
        "max-keys",
        "3",
    ]);
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "vol",
        "STRING",
        "MEMORY",
        "max-keys",
        "3",
        "eviction",
        "volatile-lru",
    ]);
    for p in ["plain", "vol"] {
        for k in ["a", "b", "c"] {
            c.call_ok(&["SET", p, k, "v"]);
        }
        let e = c.call_err(&["SET", p, "d", "v"]);
        assert!(
            e.starts_with("OOM ") && e.contains("'max-keys'"),
            "{p}: {e}"
        );
        assert_eq!(dbsize(&mut c, p), 3);
        assert_eq!(c.stat(p, "evicted_keys"), 0);
        // Overwrites add no key: still allowed.
        c.call_ok(&["SET", p, "a", "w"]);
    }
    // A key with a deadline is what volatile-lru may evict, and only that one.
    c.call_ok(&["SET", "vol", "b", "v", "EX", "1000"]);
    c.call_ok(&["SET", "vol", "d", "v"]);
    assert!(!exists(&mut c, "vol", "b"));
    assert!(exists(&mut c, "vol", "a") && exists(&mut c, "vol", "c"));
    assert_eq!(c.stat("vol", "evicted_keys"), 1);
    assert!(c.call_err(&["SET", "vol", "e", "v"]).starts_with("OOM "));
    // An MSET of more new keys than the quota can ever hold evicts nothing.
    c.call_ok(&[
        "ALTER",
        "PARTITION",
        "vol",
        "SET",
        "eviction",
        "allkeys-random",
    ]);
    assert!(c
        .call_err(&["MSET", "vol", "x", "1", "y", "2", "z", "3", "w", "4"])
        .starts_with("OOM "));
    assert_eq!(dbsize(&mut c, "vol"), 3);
    c.call_ok(&["MSET", "vol", "x", "1", "y", "2"]);
    assert_eq!(dbsize(&mut c, "vol"), 3);
    assert!(exists(&mut c, "vol", "x") && exists(&mut c, "vol", "y"));
}

#[test]
fn max_memory_with_lfu_evicts_until_the_write_fits_on_the_forwarded_path_too() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let here = c.shard();
    // One partition on this connection's shard, one on the other.
    let mut names = Vec::new();
    for i in 0..4 {
        let name = format!("m{i}");
        c.call_ok(&[
            "CREATE",
            "PARTITION",
            &name,
            "STRING",
            "MEMORY",
            "max-memory",
            "20000",
            "eviction",
            "allkeys-lfu",
        ]);
        names.push(name);
    }
    let local = names
        .iter()
        .find(|p| c.partition_shard(p) == here)
        .cloned()
        .expect("a local partition");
    let remote = names
        .iter()
        .find(|p| c.partition_shard(p) != here)
        .cloned()
        .expect("a forwarded partition");
    let value = "x".repeat(100);
    for p in [&local, &remote] {
        for i in 0..1000 {
            c.call_ok(&["SET", p, &format!("k{i}"), &value]);
            // k0 is read often: LFU keeps it.
            assert_eq!(c.call_value(&["GET", p, "k0"]).bytes(), value.as_bytes());
        }
        let memory = c.stat(p, "memory");
        assert!(memory <= 20000 && memory > 15000, "{p}: {memory}");
        assert!(c.stat(p, "evicted_keys") > 800, "{p}");
        // A value larger than the whole quota can never fit: -OOM, nothing evicted.
        let before = dbsize(&mut c, p);
        assert!(c
            .call_err(&["SET", p, "huge", &"y".repeat(30000)])
            .starts_with("OOM "));
        assert_eq!(dbsize(&mut c, p), before);
    }
}

#[test]
fn no_partition_loses_a_key_because_of_another_partitions_writes() {
    let server = Server::start(&["--shards", "1", "--max-memory", "200kb"]);
    let mut c = server.raw();
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "small",
        "STRING",
        "MEMORY",
        "max-keys",
        "50",
        "eviction",
        "allkeys-lru",
    ]);
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "lru",
        "STRING",
        "MEMORY",
        "eviction",
        "allkeys-lru",
    ]);
    c.call_ok(&["CREATE", "PARTITION", "strict", "STRING", "MEMORY"]);
    for i in 0..50 {
        c.call_ok(&["SET", "small", &format!("s{i}"), "v"]);
    }
    let value = "x".repeat(200);
    // `strict` (noeviction) fills most of the server, then is refused.
    let mut strict = 0;
    loop {
        match c.call_value(&["SET", "strict", &format!("k{strict}"), &value]) {
            Resp::Simple(_) => strict += 1,
            Resp::Error(e) => {
                let e = String::from_utf8_lossy(&e).into_owned();
                assert!(e.starts_with("OOM ") && e.contains("'max-memory'"), "{e}");
                break;
            }
            other => panic!("{other:?}"),
        }
        assert!(strict < 10_000, "max-memory never reached");
    }
    // `lru` has no key: it cannot make room, and answers -OOM too.
    assert!(c.call_err(&["SET", "lru", "a", &value]).starts_with("OOM "));
    // Room made by DEL in `strict`, taken by `lru`; then `lru` evicts its own keys to go on
    // writing, and `strict` and `small` keep every key.
    for i in 0..100 {
        assert_eq!(c.call_value(&["DEL", "strict", &format!("k{i}")]).int(), 1);
    }
    for i in 0..2000 {
        c.call_ok(&["SET", "lru", &format!("l{i}"), &value]);
    }
    assert!(c.stat("lru", "evicted_keys") > 1000);
    assert_eq!(c.stat("strict", "evicted_keys"), 0);
    assert_eq!(dbsize(&mut c, "strict"), strict - 100);
    assert_eq!(dbsize(&mut c, "small"), 50);
    assert_eq!(c.stat("small", "evicted_keys"), 0);
    for i in 100..strict {
        assert!(exists(&mut c, "strict", &format!("k{i}")), "strict k{i}");
    }
    assert!(c
        .call_err(&["SET", "strict", "more", &value])
        .starts_with("OOM "));
}

#[test]
fn a_durable_partitions_evictions_are_logged_and_survive_a_restart() {
    let dir = DataDir::new("eviction");
    let kept: Vec<String> = {
        let server = Server::start_in(&dir, &["--shards", "1"]);
        let mut c = server.raw();
        c.call_ok(&[
            "CREATE",
            "PARTITION",
            "d",
            "STRING",
            "SYNC",
            "max-keys",
            "10",
            "eviction",
            "allkeys-random",
        ]);
        for i in 0..50 {
            c.call_ok(&["SET", "d", &format!("k{i}"), "v"]);
        }
        assert_eq!(dbsize(&mut c, "d"), 10);
        let kept = (0..50)
            .map(|i| format!("k{i}"))
            .filter(|k| exists(&mut c, "d", k))
            .collect();
        server.kill9();
        kept
    };
    let server = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = server.raw();
    assert_eq!(dbsize(&mut c, "d"), 10, "replay evicted what was evicted");
    for k in &kept {
        assert!(exists(&mut c, "d", k), "{k} lost");
    }
}
