//! Active expiry, end to end: keys past their deadline are reclaimed by the shard's sweep
//! without anyone reading them, memory comes back, a durable partition logs each as a `DEL`,
//! a restart never brings an expired key back, and a sweep of many keys never stalls the
//! shard. (What each command answers about deadlines is `tests/keyspace.rs`, against Redis.)

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Writes `SET <p> <prefix><i> <value> <options...>` for `i` in `0..n`, pipelined.
fn load(c: &mut RawConn, p: &str, prefix: &str, n: usize, options: &[&str]) {
    const BATCH: usize = 2000;
    let value = "v".repeat(32);
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let mut bytes = Vec::new();
        for i in start..end {
            let key = format!("{prefix}{i:08}");
            let mut args = vec!["SET", p, &key, &value];
            args.extend_from_slice(options);
            bytes.extend_from_slice(&cmd(&args));
        }
        c.send(&bytes);
        for _ in start..end {
            assert_eq!(c.read_reply(), OK);
        }
    }
}

/// 200k keys expire at once and nobody reads them: the sweep reclaims every one within
/// seconds (Redis's active expiry, as the issue asks), their memory is off the partition's
/// estimate, and the keys without a deadline are untouched.
#[test]
fn keys_nobody_reads_are_reclaimed_with_their_memory() {
    let server = Server::start(&["--shards", "1"]);
    let mut c = server.raw();
    c.expect(
        &cmd(&["CREATE", "PARTITION", "cache", "STRING", "MEMORY"]),
        OK,
    );
    load(&mut c, "cache", "keep:", 1000, &[]);
    let kept_memory = c.stat("cache", "memory");
    load(&mut c, "cache", "tmp:", 200_000, &["PX", "3000"]);
    // (A loaded machine may take seconds to write 200k keys: the sweep may have begun.)
    // One STATS reply for all three, so that no sweep step runs between them.
    let stats = c.call_value(&["STATS", "PARTITION", "cache"]).pairs();
    let field = |name: &str| match stats.iter().find(|(k, _)| k.bytes() == name.as_bytes()) {
        Some((_, Resp::Int(n))) => *n,
        other => panic!("STATS cache {name}: {other:?}"),
    };
    assert_eq!(field("expires") + field("expired_keys"), 200_000);
    if field("expired_keys") == 0 {
        assert!(field("memory") > kept_memory * 100);
    }
    let reclaimed = poll_until(Duration::from_secs(15), || {
        (c.stat("cache", "keys") == 1000).then_some(())
    });
    assert!(
        reclaimed.is_some(),
        "{} keys left 15 s after their deadline",
        c.stat("cache", "keys")
    );
    assert_eq!(c.stat("cache", "expires"), 0);
    assert_eq!(c.stat("cache", "expired_keys"), 200_000);
    assert_eq!(c.stat("cache", "memory"), kept_memory);
    let info = String::from_utf8_lossy(&c.call(&["INFO", "stats"])).into_owned();
    assert!(info.contains("expired_keys:200000\r\n"), "{info}");
    assert_eq!(
        c.call(&["EXISTS", "cache", "keep:00000999", "tmp:00000001"]),
        int(1)
    );
}

/// While the sweep reclaims 200k keys, another client's requests on the same shard keep
/// being answered promptly: the sweep runs a bounded slice per pass.
#[test]
fn a_storm_of_expiries_does_not_stall_the_shard() {
    let server = Server::start(&["--shards", "1"]);
    let mut c = server.raw();
    c.expect(
        &cmd(&["CREATE", "PARTITION", "cache", "STRING", "MEMORY"]),
        OK,
    );
    load(&mut c, "cache", "tmp:", 200_000, &["PX", "300"]);
    let mut probe = server.raw();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    while c.stat("cache", "keys") > 0 {
        let t = Instant::now();
        probe.expect(&cmd(&["GET", "cache", "absent"]), b"$-1\r\n");
        slowest = slowest.max(t.elapsed());
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not reclaimed in 15 s"
        );
    }
    // A 200k-key sweep at once would hold the shard for tens of milliseconds; a slice per
    // pass keeps each wait near one slice. Generous for a noisy CI machine.
    assert!(
        slowest < Duration::from_millis(100),
        "a request waited {slowest:?}"
    );
}

/// A durable partition logs each reclaimed key as a DEL (the log grows with no client
/// writing), and a restart brings back neither what the sweep reclaimed nor what expired while
/// the server was down.
#[test]
fn a_durable_partition_logs_expiries_and_a_restart_resurrects_nothing() {
    let dir = DataDir::new("expiry-durable");
    let server = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = server.raw();
    c.expect(&cmd(&["CREATE", "PARTITION", "d", "STRING", "SYNC"]), OK);
    load(&mut c, "d", "swept:", 500, &["PX", "200"]);
    load(&mut c, "d", "keep:", 10, &[]);
    let log_bytes = |c: &mut RawConn| -> u64 {
        let info = String::from_utf8_lossy(&c.call(&["INFO", "persistence"])).into_owned();
        info.lines()
            .find_map(|l| l.strip_prefix("log_bytes:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("log_bytes in INFO persistence")
    };
    let before = log_bytes(&mut c);
    assert!(
        poll_until(Duration::from_secs(10), || (c.stat("d", "keys") == 10)
            .then_some(()))
        .is_some(),
        "the sweep did not reclaim the keys"
    );
    // 500 DEL records of 8 + 1 + 4 + 14 bytes each.
    assert!(
        poll_until(Duration::from_secs(5), || (log_bytes(&mut c)
            >= before + 500 * 27)
            .then_some(()))
        .is_some(),
        "the expiries were not logged: {} -> {}",
        before,
        log_bytes(&mut c)
    );
    // Keys that expire while the server is down (killed, nothing flushed at exit).
    load(&mut c, "d", "down:", 300, &["PX", "300"]);
    server.kill9();
    std::thread::sleep(Duration::from_millis(400));
    let server = Server::start_in(&dir, &["--shards", "1"]);
    let mut c = server.raw();
    assert_eq!(
        c.stat("d", "keys"),
        10,
        "recovery drops keys past their deadline"
    );
    assert_eq!(c.call(&["GET", "d", "down:00000001"]), b"$-1\r\n");
    assert_eq!(c.call(&["GET", "d", "swept:00000001"]), b"$-1\r\n");
    assert_eq!(c.call(&["EXISTS", "d", "keep:00000009"]), int(1));
}
