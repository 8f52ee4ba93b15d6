//! What the server's memory costs, read from its RSS (Linux `/proc`): idle, and per key.
//!
//! The bounds sit between what the layout costs now and what the layout before it cost, so a
//! change back to either old layout fails here; exact figures for the benchmarks come from
//! `scripts/bench-vs-redis.sh --memory-only` on a release build.

mod common;

use std::time::Duration;

use common::*;

/// VmRSS of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// Writes `SET <partition> <key i> <value i>` for `i` in `0..n`, pipelined in batches.
fn load(c: &mut RawConn, partition: &str, n: usize, entry: impl Fn(usize) -> (String, String)) {
    const BATCH: usize = 1000;
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let mut bytes = Vec::new();
        for i in start..end {
            let (key, value) = entry(i);
            bytes.extend_from_slice(&cmd(&["SET", partition, &key, &value]));
        }
        c.send(&bytes);
        for _ in start..end {
            assert_eq!(c.read_reply(), OK);
        }
    }
}

/// Bytes of RSS growth per key after loading `n` keys into a new partition of `schema`.
fn bytes_per_key(schema: &str, n: usize, entry: impl Fn(usize) -> (String, String)) -> f64 {
    let server = Server::start(&["--shards", "1"]);
    let mut c = server.raw();
    c.expect(&cmd(&["CREATE", "PARTITION", "mem", schema, "MEMORY"]), OK);
    // Warm the connection's buffers with one batch, then measure from there.
    load(&mut c, "mem", 1000, |i| entry(n + i));
    std::thread::sleep(Duration::from_millis(100));
    let before = rss(server.pid());
    load(&mut c, "mem", n, &entry);
    std::thread::sleep(Duration::from_millis(100));
    let after = rss(server.pid());
    (after.saturating_sub(before)) as f64 / n as f64
}

/// An idle server, logged into, holds a few MiB. It held 42 MiB when glibc kept the two login
/// hasher threads' argon2 work areas (19 MiB each) resident after the bootstrap hashes. A
/// hash still running holds its 19 MiB until it ends, which on a loaded machine can be after
/// the login's reply: the RSS is read until it settles (within 5 s), and what it settles at
/// is what must be small.
#[test]
fn idle_server_is_small() {
    let server = Server::start(&["--shards", "1"]);
    let mut c = server.raw();
    c.expect(&cmd(&["PING"]), b"+PONG\r\n");
    let mut last = 0;
    let small = poll_until(Duration::from_secs(5), || {
        last = rss(server.pid());
        (last < 20 << 20).then_some(())
    });
    assert!(small.is_some(), "idle RSS {} MiB", last >> 20);
}

/// 200k 16-byte keys with 32-byte values: 52 bytes of arena and ~8 of index per key, 61 in
/// all when measured. (One allocation per entry and 17-byte slots measured 86.)
#[test]
fn string_keys_cost_little_more_than_their_bytes() {
    let per_key = bytes_per_key("STRING", 200_000, |i| {
        (format!("key:{i:012}"), "x".repeat(32))
    });
    assert!(per_key < 75.0, "{per_key:.1} bytes per key");
    assert!(
        per_key > 48.0,
        "{per_key:.1} bytes per key: below the data itself?"
    );
}

/// 200k 16-byte keys holding counters: 28 bytes of arena and ~8 of index per key, 37 in all
/// when measured. (One allocation per entry and 17-byte slots measured 70.)
#[test]
fn int_counters_cost_little_more_than_their_bytes() {
    let per_key = bytes_per_key("INT", 200_000, |i| {
        (format!("ctr:{i:012}"), (1_000_000 + 7 * i).to_string())
    });
    assert!(per_key < 50.0, "{per_key:.1} bytes per key");
    assert!(
        per_key > 24.0,
        "{per_key:.1} bytes per key: below the data itself?"
    );
}
