//! Partition options against the real binary (PROTOCOL.md, "Partition configuration and
//! quotas"): CREATE/ALTER PARTITION options, all or none, shown by DESCRIBE, kept across a
//! restart; who may change a quota; `max-keys`/`max-memory` on the local and the forwarded
//! path; `default-ttl` on a durable partition; `max-ops` throttling and its statistic.

mod common;

use std::time::{Duration, Instant};

use common::{cmd, DataDir, RawConn, Resp, Server};

/// DESCRIBE PARTITION's option fields, as text: `name=value` in DESCRIBE's order.
fn options(c: &mut RawConn, p: &str) -> Vec<String> {
    let described = c.call_value(&["DESCRIBE", "PARTITION", p]);
    described
        .pairs()
        .into_iter()
        .map(|(k, v)| (k.text(), v))
        .filter(|(k, _)| {
            [
                "max-memory",
                "max-keys",
                "max-ops",
                "eviction",
                "default-ttl",
                "persist",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| match v {
            Resp::Int(n) => format!("{k}={n}"),
            v => format!("{k}={}", v.text()),
        })
        .collect()
}

#[test]
fn options_are_set_all_or_none_shown_and_kept_across_a_restart() {
    let dir = DataDir::new("options");
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "cache",
        "STRING",
        "MEMORY",
        "max-memory",
        "64mb",
        "eviction",
        "allkeys-lru",
        "default-ttl",
        "60000",
    ]);
    c.call_ok(&["CREATE", "PARTITION", "orders", "INT", "SYNC"]);
    let cache = [
        "persist=MEMORY",
        "max-memory=67108864",
        "max-keys=0",
        "max-ops=0",
        "eviction=allkeys-lru",
        "default-ttl=60000",
    ];
    assert_eq!(options(&mut c, "cache"), cache);
    // One bad pair refuses the whole request: nothing of it is applied.
    for (bad, says) in [
        (
            &["max-keys", "10", "max-memory", "99999999gb"][..],
            "'max-memory'",
        ),
        (&["max-keys", "10", "colour", "red"], "'colour'"),
        (
            &["max-keys", "10", "max-keys", "11"],
            "'max-keys' given twice",
        ),
        (&["max-keys", "-1"], "'max-keys'"),
        (&["max-keys", "10", "eviction"], "'eviction' needs a value"),
        (&["eviction", "lru"], "'eviction'"),
    ] {
        let mut words = vec!["ALTER", "PARTITION", "cache", "SET"];
        words.extend_from_slice(bad);
        let e = c.call_err(&words);
        assert!(
            e.starts_with("ERR partition option") || e.starts_with("ERR unknown"),
            "{e}"
        );
        assert!(e.contains(says), "{bad:?}: {e}");
        let mut create = vec!["CREATE", "PARTITION", "x", "STRING", "MEMORY"];
        create.extend_from_slice(bad);
        assert!(c.call_err(&create).contains(says), "CREATE {bad:?}");
    }
    assert_eq!(options(&mut c, "cache"), cache);
    assert!(c
        .call_err(&["DESCRIBE", "PARTITION", "x"])
        .starts_with("NOPARTITION"));
    assert_eq!(
        c.call_err(&["ALTER", "PARTITION", "nope", "SET", "max-keys", "1"]),
        "NOPARTITION partition 'nope' does not exist"
    );
    // A bad persist mode among good options: nothing changes.
    let e = c.call_err(&[
        "ALTER",
        "PARTITION",
        "cache",
        "SET",
        "max-keys",
        "5",
        "persist",
        "DISK",
    ]);
    assert!(e.starts_with("ERR partition option 'persist'"), "{e}");
    assert_eq!(options(&mut c, "cache"), cache);
    c.call_ok(&["ALTER", "PARTITION", "cache", "SET", "persist", "memory"]);
    c.call_ok(&[
        "ALTER",
        "PARTITION",
        "cache",
        "SET",
        "max-keys",
        "100",
        "eviction",
        "noeviction",
    ]);
    c.call_ok(&[
        "ALTER",
        "PARTITION",
        "orders",
        "set",
        "MAX-OPS",
        "1000",
        "default-ttl",
        "5000",
    ]);
    let cache = [
        "persist=MEMORY",
        "max-memory=67108864",
        "max-keys=100",
        "max-ops=0",
        "eviction=noeviction",
        "default-ttl=60000",
    ];
    let orders = [
        "persist=SYNC",
        "max-memory=0",
        "max-keys=0",
        "max-ops=1000",
        "eviction=noeviction",
        "default-ttl=5000",
    ];
    assert_eq!(options(&mut c, "cache"), cache);
    assert_eq!(options(&mut c, "orders"), orders);
    // Every shard has the new version when ALTER answers: a connection on either sees it.
    for _ in 0..4 {
        let mut other = server.raw();
        assert_eq!(options(&mut other, "cache"), cache);
    }
    drop(c);
    server.stop();
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    assert_eq!(options(&mut c, "cache"), cache);
    assert_eq!(options(&mut c, "orders"), orders);
}

#[test]
fn a_partition_admin_cannot_change_its_own_quotas() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    admin.call_ok(&[
        "CREATE",
        "PARTITION",
        "tenant",
        "STRING",
        "MEMORY",
        "max-keys",
        "2",
    ]);
    admin.call_ok(&["CREATE", "USER", "bob", "bobpw"]);
    admin.call_ok(&["GRANT", "ADMIN", "ON", "tenant", "TO", "bob"]);
    let mut bob = server.login("bob", "bobpw");
    bob.call_ok(&[
        "ALTER",
        "PARTITION",
        "tenant",
        "SET",
        "default-ttl",
        "1000",
        "eviction",
        "allkeys-lfu",
    ]);
    for quota in ["max-keys", "max-memory", "max-ops"] {
        for value in ["0", "1"] {
            let e = bob.call_err(&["ALTER", "PARTITION", "tenant", "SET", quota, value]);
            assert_eq!(
                e,
                "NOPERM user 'bob' has no ADMIN permission on '*', which changing max-memory, \
                 max-keys or max-ops needs",
                "{quota} {value}"
            );
        }
    }
    // Not even hidden behind an option bob may change.
    assert!(bob
        .call_err(&[
            "ALTER",
            "PARTITION",
            "tenant",
            "SET",
            "eviction",
            "noeviction",
            "max-keys",
            "100"
        ])
        .starts_with("NOPERM"));
    // Nor by creating a partition (that needs ADMIN on * whatever its options).
    assert!(bob
        .call_err(&["CREATE", "PARTITION", "mine", "STRING", "MEMORY"])
        .starts_with("NOPERM"));
    let described = options(&mut admin, "tenant");
    assert!(
        described.contains(&"max-keys=2".to_string()),
        "{described:?}"
    );
    assert!(
        described.contains(&"eviction=allkeys-lfu".to_string()),
        "{described:?}"
    );
    // The operator may.
    admin.call_ok(&["ALTER", "PARTITION", "tenant", "SET", "max-keys", "0"]);
}

/// `max-keys` and `max-memory` on a partition owned by the connection's shard and on one
/// owned by the other shard (requests forwarded): the same exact refusals, nothing written,
/// and the other partition unaffected.
#[test]
fn quotas_hold_on_the_local_and_the_forwarded_path() {
    let server = Server::start(&["--shards", "2", "--migrate-connections", "false"]);
    let mut c = server.raw();
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "a",
        "STRING",
        "MEMORY",
        "max-keys",
        "3",
    ]);
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "b",
        "STRING",
        "SYNC",
        "max-keys",
        "3",
    ]);
    c.call_ok(&["CREATE", "PARTITION", "free", "STRING", "MEMORY"]);
    assert_ne!(c.partition_shard("a"), c.partition_shard("b"));
    for p in ["a", "b"] {
        c.call_ok(&["MSET", p, "k1", "v", "k2", "v"]);
        let full =
            format!("OOM command not allowed when keys > 'max-keys' of partition '{p}' (3 keys)");
        assert_eq!(c.call_err(&["MSET", p, "k3", "v", "k4", "v"]), full);
        assert_eq!(c.call_value(&["EXISTS", p, "k3", "k4"]).int(), 0, "{p}");
        c.call_ok(&["SET", p, "k3", "v"]);
        assert_eq!(c.call_err(&["SET", p, "k4", "v"]), full);
        assert_eq!(c.call_err(&["INCR", p, "n"]), full);
        c.call_ok(&["SET", p, "k1", "overwritten, and longer"]);
        assert_eq!(c.call_value(&["DEL", p, "k2"]).int(), 1);
        c.call_ok(&["SET", p, "k4", "v"]);
        assert_eq!(c.call_value(&["DBSIZE", p]).int(), 3);
        // Lifted live: the next write sees it.
        c.call_ok(&[
            "ALTER",
            "PARTITION",
            p,
            "SET",
            "max-keys",
            "0",
            "max-memory",
            "1kb",
        ]);
        c.call_ok(&["SET", p, "k5", "v"]);
        let memory = c.stat(p, "memory");
        assert!(memory > 0 && memory < 1024, "{memory}");
        let big = "x".repeat(1024);
        let e = c.call_err(&["SET", p, "big", &big]);
        assert_eq!(
            e,
            format!("OOM command not allowed when used memory > 'max-memory' of partition '{p}' (1024 bytes)")
        );
        assert_eq!(c.stat(p, "memory"), memory, "nothing written");
        c.call_ok(&["SET", p, "small", "v"]);
    }
    // Another partition's writes are never refused by these quotas.
    for i in 0..20 {
        c.call_ok(&["SET", "free", &format!("k{i}"), "v"]);
    }
    // INFO counts -OOM replies: four a partition, and some of them were forwarded.
    let info = c.call_value(&["INFO", "stats"]).text();
    assert!(info.contains("oom_rejected_writes:8\r\n"), "{info}");
    assert!(!info.contains("forwarded_requests:0\r\n"), "{info}");
}

/// A durable partition's default TTL is logged with each key: a restart (even after kill -9)
/// finds the deadline, and TTL/PTTL show it.
#[test]
fn default_ttl_is_logged_on_a_durable_partition() {
    let dir = DataDir::new("default-ttl");
    let server = Server::start_in(&dir, &[]);
    let mut c = server.raw();
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "s",
        "STRING",
        "SYNC",
        "default-ttl",
        "100000",
    ]);
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "n",
        "INT",
        "ASYNC",
        "default-ttl",
        "100000",
    ]);
    c.call_ok(&["SET", "s", "plain", "v"]);
    c.call_ok(&["SET", "s", "explicit", "v", "EX", "1000"]);
    assert_eq!(c.call_value(&["INCR", "n", "counter"]).int(), 1);
    c.call_ok(&["SET", "s", "persisted", "v"]);
    assert_eq!(c.call_value(&["PERSIST", "s", "persisted"]).int(), 1);
    let pttl = c.call_value(&["PTTL", "s", "plain"]).int();
    assert!((99_000..=100_000).contains(&pttl), "{pttl}");
    assert!((99..=100).contains(&c.call_value(&["TTL", "n", "counter"]).int()));
    // Written to the OS before the reply (ASYNC); give the fsync a moment, then crash.
    std::thread::sleep(Duration::from_millis(1500));
    drop(c);
    server.kill9();
    let server = Server::start_in(&dir, &[]);
    let mut c = server.raw();
    let pttl = c.call_value(&["PTTL", "s", "plain"]).int();
    assert!(
        (90_000..=100_000).contains(&pttl),
        "after the restart: {pttl}"
    );
    assert!((900..=1000).contains(&c.call_value(&["TTL", "s", "explicit"]).int()));
    assert!((90..=100).contains(&c.call_value(&["TTL", "n", "counter"]).int()));
    assert_eq!(c.call_value(&["TTL", "s", "persisted"]).int(), -1);
}

/// `max-ops`: a burst of one second's worth, then the rate; a refused command does nothing and
/// is counted; a partition without `max-ops` on the same shard is never refused. Multi-key
/// commands cost one token per key; DESCRIBE and STATS cost none.
#[test]
fn max_ops_throttles_counts_and_spares_other_partitions() {
    let server = Server::start(&["--shards", "1"]);
    let mut c = server.raw();
    c.call_ok(&[
        "CREATE",
        "PARTITION",
        "slow",
        "STRING",
        "MEMORY",
        "max-ops",
        "100",
    ]);
    c.call_ok(&["CREATE", "PARTITION", "fast", "STRING", "MEMORY"]);
    // Pipelined: 300 SETs to `slow`, each followed by one to `fast`, in one write.
    let mut batch = Vec::new();
    for i in 0..300 {
        batch.extend_from_slice(&cmd(&["SET", "slow", &format!("k{i}"), "v"]));
        batch.extend_from_slice(&cmd(&["SET", "fast", &format!("k{i}"), "v"]));
    }
    let started = Instant::now();
    c.send(&batch);
    let mut throttled = 0;
    for i in 0..600 {
        match c.read_value() {
            Resp::Simple(s) if s == b"OK" => {}
            Resp::Error(e) if i % 2 == 0 => {
                assert_eq!(e, b"THROTTLED partition slow is over max-ops");
                throttled += 1;
            }
            other => panic!("reply {i}: {other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The burst (100) plus what refilled meanwhile (100/s), generously.
    let served = 300 - throttled;
    let most = 100.0 + 100.0 * elapsed + 5.0;
    assert!(
        served >= 100 && (served as f64) <= most,
        "{served} served in {elapsed:.3} s"
    );
    assert_eq!(c.call_value(&["DBSIZE", "fast"]).int(), 300);
    assert_eq!(c.stat("fast", "throttled"), 0);
    // Only the served SETs ran (DBSIZE and STATS themselves may be throttled or free).
    for _ in 0..3 {
        assert_eq!(c.stat("slow", "throttled"), throttled, "STATS is free");
        let _ = c.call_value(&["DESCRIBE", "PARTITION", "slow"]);
    }
    // Refilled: an MSET of 3 keys costs 3 tokens.
    std::thread::sleep(Duration::from_millis(1100));
    c.call_ok(&["ALTER", "PARTITION", "slow", "SET", "max-ops", "3"]);
    c.call_ok(&["MSET", "slow", "m1", "v", "m2", "v", "m3", "v"]);
    assert_eq!(
        c.call_err(&["GET", "slow", "m1"]),
        "THROTTLED partition slow is over max-ops"
    );
    c.call_ok(&["ALTER", "PARTITION", "slow", "SET", "max-ops", "0"]);
    assert_eq!(c.call_value(&["EXISTS", "slow", "m1", "m2", "m3"]).int(), 3);
    assert_eq!(c.call_value(&["DBSIZE", "slow"]).int(), served + 3);
}

/// `ALTER PARTITION <p> SET persist MEMORY` of a durable partition: its files are gone when
/// ALTER answers, its keys stay and it keeps serving; after a restart it is a MEMORY partition
/// (empty). Files a crash left behind (the catalog says MEMORY, the shard had not removed
/// them yet) do not stop the next start and are removed.
#[test]
fn durable_to_memory_removes_the_files_and_keeps_the_keys() {
    let dir = DataDir::new("to-memory");
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    c.call_ok(&["CREATE", "PARTITION", "d", "STRING", "SYNC"]);
    c.call_ok(&["CREATE", "PARTITION", "kept", "STRING", "SYNC"]);
    c.call_ok(&["SET", "d", "k", "v"]);
    c.call_ok(&["SET", "kept", "k", "v"]);
    let partitions = dir.path().join("partitions");
    let count = || std::fs::read_dir(&partitions).unwrap().count();
    assert_eq!(count(), 2);
    // A copy of d's files, as a crash right after the catalog write would leave them.
    let before: Vec<_> = std::fs::read_dir(&partitions)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    for p in &before {
        let to = saved.join(p.file_name().unwrap());
        std::fs::create_dir(&to).unwrap();
        for f in std::fs::read_dir(p).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    // A SET pipelined right behind the ALTER, and one before it, on the same connection.
    let mut batch = cmd(&["SET", "d", "before", "v"]);
    batch.extend_from_slice(&cmd(&[
        "ALTER",
        "PARTITION",
        "d",
        "SET",
        "persist",
        "MEMORY",
    ]));
    batch.extend_from_slice(&cmd(&["SET", "d", "after", "v"]));
    c.send(&batch);
    for _ in 0..3 {
        assert_eq!(c.read_value(), Resp::ok());
    }
    assert_eq!(count(), 1, "d's files are gone when ALTER answers");
    assert!(options(&mut c, "d").contains(&"persist=MEMORY".to_string()));
    assert_eq!(
        c.call_value(&["EXISTS", "d", "k", "before", "after"]).int(),
        3
    );
    c.call_ok(&["SET", "d", "more", "v"]);
    drop(c);
    server.stop();
    // Put d's old files back: the crash case.
    let left: Vec<_> = std::fs::read_dir(&partitions)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for p in std::fs::read_dir(&saved).unwrap() {
        let p = p.unwrap().path();
        if !left.contains(&p.file_name().unwrap().to_os_string()) {
            let to = partitions.join(p.file_name().unwrap());
            std::fs::create_dir(&to).unwrap();
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    assert_eq!(count(), 2);
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    assert_eq!(count(), 1, "the leftover files were removed at startup");
    assert_eq!(
        c.call_value(&["DBSIZE", "d"]).int(),
        0,
        "a MEMORY partition starts empty"
    );
    assert_eq!(c.call_value(&["GET", "kept", "k"]), Resp::bulk(b"v"));
    assert!(options(&mut c, "d").contains(&"persist=MEMORY".to_string()));
}

/// MEMORY -> SYNC and ASYNC -> SYNC live: ALTER answers once every key is durable, so a
/// `kill -9` right after the `+OK` loses nothing, deadlines included; later writes are logged.
#[test]
fn memory_to_durable_is_durable_when_alter_answers() {
    let dir = DataDir::new("to-durable");
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    c.call_ok(&["CREATE", "PARTITION", "m", "STRING", "MEMORY"]);
    c.call_ok(&["CREATE", "PARTITION", "a", "INT", "ASYNC"]);
    for i in 0..2000 {
        c.call_ok(&["SET", "m", &format!("k{i}"), &format!("v{i}")]);
    }
    c.call_ok(&["SET", "m", "dying", "v", "EX", "1000"]);
    c.call_ok(&["SET", "a", "n", "7"]);
    c.call_ok(&["ALTER", "PARTITION", "m", "SET", "persist", "SYNC"]);
    c.call_ok(&["ALTER", "PARTITION", "a", "SET", "persist", "SYNC"]);
    assert!(options(&mut c, "m").contains(&"persist=SYNC".to_string()));
    // Written after: logged as any SYNC write.
    c.call_ok(&["SET", "m", "after", "v"]);
    drop(c);
    server.kill9();
    let server = Server::start_in(&dir, &["--shards", "2"]);
    let mut c = server.raw();
    assert_eq!(c.call_value(&["DBSIZE", "m"]).int(), 2002);
    assert_eq!(c.call_value(&["GET", "m", "k1999"]), Resp::bulk(b"v1999"));
    assert_eq!(c.call_value(&["GET", "m", "after"]), Resp::bulk(b"v"));
    let ttl = c.call_value(&["TTL", "m", "dying"]).int();
    assert!((900..=1000).contains(&ttl), "{ttl}");
    assert_eq!(c.call_value(&["GET", "a", "n"]).int(), 7);
    assert!(options(&mut c, "a").contains(&"persist=SYNC".to_string()));
    // And back: the files go, the keys stay.
    c.call_ok(&["ALTER", "PARTITION", "m", "SET", "persist", "MEMORY"]);
    assert_eq!(c.call_value(&["DBSIZE", "m"]).int(), 2002);
}
