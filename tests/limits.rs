//! Limits, backpressure and hostile input, against the real binary: max-clients, a deep
//! pipeline, the client output limit, max-memory, the idle timeout, malformed frames.
//!
//! Each test starts its own server on port 0 (tests/common: killed on drop) and talks raw
//! RESP to it, so that what is checked is exactly what goes over the wire. Access is
//! default-deny: servers start with `--admin-password` and [`Server::raw`] logs in as
//! `admin`; [`Server::raw_unauthenticated`] does not.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// One INFO field of `server`, read over a fresh connection.
fn info_field(server: &Server, name: &str) -> u64 {
    let mut c = server.raw();
    let text = match c.call_value(&["INFO", "everything"]) {
        Resp::Bulk(Some(bytes)) => String::from_utf8(bytes).unwrap(),
        other => panic!("INFO answered {other:?}"),
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in INFO"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn max_clients_refuses_only_the_connection_past_the_limit() {
    let server = Server::start(&["--max-clients", "3", "--shards", "2"]);
    let mut held: Vec<RawConn> = (0..3).map(|_| server.raw()).collect();
    for c in &mut held {
        assert_eq!(c.call_value(&["PING"]), Resp::simple("PONG"));
    }
    let mut refused = server.raw_unauthenticated();
    assert_eq!(
        refused.read_value_or_close(),
        Some(Resp::Error("ERR max number of clients reached".into()))
    );
    refused.drain_until_closed(Duration::from_secs(5));
    // The others never noticed.
    for c in &mut held {
        assert_eq!(
            c.call_value(&["ECHO", "still here"]),
            Resp::Bulk(Some(b"still here".to_vec()))
        );
    }
    // A freed place can be taken again (the count drops once the shard sees the close).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = server.raw_unauthenticated();
        match c.call_value(&["PING"]) {
            Resp::Simple(s) if s == b"PONG" => break,
            other => assert!(Instant::now() < deadline, "still refused: {other:?}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A peer that keeps connecting past max-clients gets a refusal each time, but the log gets
/// about a line a second, not a line per connection (the refusal is a WARN a peer controls).
#[test]
fn refusals_at_max_clients_are_logged_a_line_a_second() {
    let server = Server::start(&["--max-clients", "1", "--shards", "1"]);
    let mut held = server.raw();
    assert_eq!(held.call_value(&["PING"]), Resp::simple("PONG"));
    const REFUSED: usize = 300;
    for _ in 0..REFUSED {
        let mut refused = server.raw_unauthenticated();
        assert_eq!(
            refused.read_value_or_close(),
            Some(Resp::Error("ERR max number of clients reached".into()))
        );
    }
    let logs = server.log_text_once_it_contains("connections refused at max-clients");
    let lines = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("max number of clients"))
        .count();
    assert!(
        logs.contains("more connections refused at max-clients"),
        "no count of the refusals not logged:\n{logs}"
    );
    assert!(lines <= 10, "{lines} lines for {REFUSED} refusals:\n{logs}");
    assert_eq!(held.call_value(&["PING"]), Resp::simple("PONG"));
}

/// Raises this test process's open-file limit to its hard limit; returns the soft limit.
fn raise_own_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct passed, which we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

#[test]
fn five_thousand_connections_with_default_settings() {
    const CLIENTS: usize = 5000;
    // The client side needs its own 5000 descriptors (the server raises its own limit).
    let fds = raise_own_fd_limit();
    if fds < CLIENTS as u64 + 200 {
        eprintln!("skipped: this process may open only {fds} files");
        return;
    }
    let server = Server::start(&[]);
    let started = Instant::now();
    let mut conns: Vec<TcpStream> = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let s = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        conns.push(s);
    }
    // Every connection is served: send a PING on all, then read every PONG.
    for s in &mut conns {
        s.write_all(b"PING\r\n").unwrap();
    }
    for s in &mut conns {
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).expect("PONG");
        assert_eq!(&buf, b"+PONG\r\n");
    }
    eprintln!("{CLIENTS} connections served in {:?}", started.elapsed());
    assert!(info_field(&server, "connected_clients") > CLIENTS as u64);
}

#[test]
fn a_deep_pipeline_gets_every_reply_in_order() {
    const DEPTH: usize = 100_000;
    // Two shards and two partitions: half the requests are forwarded, which exercises the
    // in-flight bound as well as the output high-water mark.
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    for p in ["a", "b"] {
        assert_eq!(
            c.call_value(&["CREATE", "PARTITION", p, "INT", "MEMORY"]),
            Resp::ok()
        );
    }
    let mut pipeline = Vec::with_capacity(DEPTH * 32);
    for i in 0..DEPTH {
        let p = if i % 2 == 0 { "a" } else { "b" };
        pipeline.extend_from_slice(&cmd(&["INCR", p, "n"]));
    }
    // Everything is written before anything is read.
    let forwarded_before = info_field(&server, "forwarded_requests");
    c.send(&pipeline);
    for i in 0..DEPTH {
        let expected = (i / 2 + 1) as i64;
        assert_eq!(
            c.read_value_or_close(),
            Some(Resp::Int(expected)),
            "reply {i}"
        );
    }
    assert_eq!(
        c.call_value(&["GET", "a", "n"]),
        Resp::Int(DEPTH as i64 / 2)
    );
    // "a" and "b" were placed on different shards: half the pipeline crossed over.
    let forwarded = info_field(&server, "forwarded_requests") - forwarded_before;
    assert!(
        forwarded >= DEPTH as u64 / 2,
        "only {forwarded} of {DEPTH} alternating requests were forwarded"
    );
    // A client that sends its pipeline and half-closes (`nc`, scripts) still gets every
    // reply, although reading paused with requests left in the buffer when the EOF came.
    let mut half = server.raw();
    let mut pipeline = Vec::new();
    for i in 0..20_000 {
        let p = if i % 2 == 0 { "a" } else { "b" };
        pipeline.extend_from_slice(&cmd(&["INCR", p, "m"]));
    }
    half.send(&pipeline);
    half.stream.shutdown(std::net::Shutdown::Write).unwrap();
    for i in 0..20_000 {
        assert_eq!(
            half.read_value_or_close(),
            Some(Resp::Int(i / 2 + 1)),
            "reply {i}"
        );
    }
    assert_eq!(half.read_value_or_close(), None);
}

/// Starts a client that pipelines `requests` and never reads a byte of the replies.
fn slow_reader(server: &Server, requests: &[u8]) -> RawConn {
    let mut slow = server.raw();
    slow.stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The write may stop short once the server stops reading (backpressure): fine.
    let _ = slow.stream.write_all(requests);
    slow
}

#[test]
fn a_client_that_stops_reading_is_disconnected_at_the_output_limit() {
    let server = Server::start(&["--shards", "2", "--client-output-limit", "1mb"]);
    let mut c = server.raw();
    let value = "v".repeat(256 * 1024);
    // Two partitions land on two shards: whichever shard the slow client is on, every other
    // request is forwarded, and the local replies behind it pile up in its reply queue.
    for p in ["a", "b"] {
        assert_eq!(
            c.call_value(&["CREATE", "PARTITION", p, "STRING", "MEMORY"]),
            Resp::ok()
        );
        assert_eq!(c.call_value(&["SET", p, "big", &value]), Resp::ok());
    }
    let rss_before = info_field(&server, "used_memory_rss");
    let mut requests = Vec::new();
    for _ in 0..400 {
        requests.extend_from_slice(&cmd(&["GET", "a", "big"]));
        requests.extend_from_slice(&cmd(&["GET", "b", "big"]));
    }
    // A well-behaved client keeps being served, without stalls, meanwhile.
    let port = server.port();
    let pinger = thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut worst = Duration::ZERO;
        for _ in 0..50 {
            let t = Instant::now();
            s.write_all(b"PING\r\n").unwrap();
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).unwrap();
            worst = worst.max(t.elapsed());
            thread::sleep(Duration::from_millis(10));
        }
        worst
    });
    let mut slow = slow_reader(&server, &requests);
    slow.drain_until_closed(Duration::from_secs(10));
    let worst = pinger.join().unwrap();
    assert!(worst < Duration::from_secs(1), "a PING took {worst:?}");
    assert!(info_field(&server, "client_output_limit_disconnections") >= 1);
    // 800 reads of 256 KiB were asked for (200 MiB); the server held at most a few MiB.
    let rss_after = info_field(&server, "used_memory_rss");
    assert!(
        rss_after < rss_before + 32 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after}"
    );
    // And everyone else still gets large values.
    assert_eq!(
        c.call_value(&["GET", "b", "big"]),
        Resp::Bulk(Some(value.into_bytes()))
    );
}

#[test]
fn a_read_larger_than_the_output_limit_is_never_built() {
    let server = Server::start(&["--client-output-limit", "1mb"]);
    let mut c = server.raw();
    let value = "v".repeat(300 * 1024);
    assert_eq!(
        c.call_value(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]),
        Resp::ok()
    );
    assert_eq!(c.call_value(&["SET", "p", "k", &value]), Resp::ok());
    assert!(
        matches!(c.call_value(&["MGET", "p", "k", "k", "k"]), Resp::Array(Some(a)) if a.len() == 3)
    );
    // Four copies pass 1 MiB: the connection is closed instead of answered.
    let mut greedy = server.raw();
    greedy.send(&cmd(&["MGET", "p", "k", "k", "k", "k"]));
    assert_eq!(greedy.read_value_or_close(), None);
    assert_eq!(c.call_value(&["PING"]), Resp::simple("PONG"));
}

#[test]
fn max_memory_refuses_growing_writes_but_serves_reads_and_deletes() {
    let server = Server::start(&["--shards", "2", "--max-memory", "1mb"]);
    let mut c = server.raw();
    for p in ["a", "b"] {
        assert_eq!(
            c.call_value(&["CREATE", "PARTITION", p, "STRING", "MEMORY"]),
            Resp::ok()
        );
    }
    assert_eq!(
        c.call_value(&["CREATE", "PARTITION", "n", "INT", "MEMORY"]),
        Resp::ok()
    );
    let value = "x".repeat(10 * 1024);
    let mut stored = 0;
    let refusal = loop {
        let p = if stored % 2 == 0 { "a" } else { "b" };
        match c.call_value(&["SET", p, &format!("k{stored}"), &value]) {
            Resp::Simple(_) => stored += 1,
            other => break other,
        }
        assert!(stored < 200, "1 MiB never filled");
    };
    assert_eq!(
        refusal,
        Resp::Error("OOM command not allowed when used memory > 'max-memory'".into())
    );
    // About 1 MiB of 10 KiB values went in (the estimate counts keys and overhead too).
    assert!((95..=102).contains(&stored), "stored {stored}");
    let p = if stored % 2 == 0 { "a" } else { "b" };
    // Nothing was written by the refused SET; reads work.
    assert_eq!(
        c.call_value(&["GET", p, &format!("k{stored}")]),
        Resp::Bulk(None)
    );
    assert_eq!(
        c.call_value(&["GET", "a", "k0"]),
        Resp::Bulk(Some(value.clone().into_bytes()))
    );
    let mset = c.call_value(&["MSET", "a", "x", &value, "y", &value]);
    assert!(
        matches!(&mset, Resp::Error(e) if e.starts_with(b"OOM")),
        "{mset:?}"
    );
    assert_eq!(c.call_value(&["EXISTS", "a", "x", "y"]), Resp::Int(0));
    // Fill what is left with small entries (4-byte key, empty value: 52 bytes estimated).
    let mut small = 0;
    while c.call_value(&["SET", "a", &format!("f{:03}", small), ""]) == Resp::ok() {
        small += 1;
        assert!(small < 1000);
    }
    // Now even a new counter (57 bytes estimated) does not fit.
    let incr = c.call_value(&["INCR", "n", "c"]);
    assert!(
        matches!(&incr, Resp::Error(e) if e.starts_with(b"OOM")),
        "{incr:?}"
    );
    // Overwriting with a value no longer than the old one does not grow: allowed.
    assert_eq!(c.call_value(&["SET", "a", "k0", "short"]), Resp::ok());
    let used = info_field(&server, "used_memory");
    assert_eq!(info_field(&server, "maxmemory"), 1024 * 1024);
    assert!(used <= 1024 * 1024, "used_memory {used}");
    // Deletes always work and make room again.
    assert_eq!(c.call_value(&["DEL", "a", "k2", "k4"]), Resp::Int(2));
    assert!(info_field(&server, "used_memory") < used);
    assert_eq!(c.call_value(&["SET", p, "again", &value]), Resp::ok());
    assert_eq!(c.call_value(&["INCR", "n", "c"]), Resp::Int(1));
    // Dropping a partition gives its memory back.
    let before = info_field(&server, "used_memory");
    assert_eq!(c.call_value(&["DROP", "PARTITION", "b"]), Resp::ok());
    assert!(info_field(&server, "used_memory") < before / 2 + 64 * 1024);
}

#[test]
fn idle_connections_are_closed_after_the_timeout() {
    let server = Server::start(&["--timeout", "1"]);
    let mut idle = server.raw();
    let mut busy = server.raw();
    assert_eq!(idle.call_value(&["PING"]), Resp::simple("PONG"));
    let started = Instant::now();
    // The busy one talks every 200 ms for 2.5 s and must stay open throughout.
    while started.elapsed() < Duration::from_millis(2500) {
        assert_eq!(busy.call_value(&["PING"]), Resp::simple("PONG"));
        thread::sleep(Duration::from_millis(200));
    }
    idle.drain_until_closed(Duration::from_secs(5));
    assert!(info_field(&server, "idle_timeout_disconnections") >= 1);
    assert_eq!(busy.call_value(&["PING"]), Resp::simple("PONG"));
}

#[test]
fn hostile_frames_get_an_error_and_a_close() {
    let server = Server::start(&[]);
    let long_inline = vec![b'A'; 70 * 1024];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "absurd count",
            b"*99999999999\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "count past max-args",
            b"*2000000\r\n".to_vec(),
            "more than 1048576",
        ),
        (
            "absurd bulk",
            b"*1\r\n$99999999999\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "negative bulk",
            b"*1\r\n$-5\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "nested array",
            b"*2\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
            "expected '$'",
        ),
        (
            "non-numeric count",
            b"*two\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "non-numeric bulk",
            b"*1\r\n$four\r\nPING\r\n".to_vec(),
            "invalid bulk length",
        ),
        ("oversize inline", long_inline, "too big inline request"),
        ("NUL in inline", b"PING\0\r\n".to_vec(), "NUL byte"),
        (
            "binary garbage",
            vec![0x17, 0x02, 0x01, 0x00, 0xa5, 0x01],
            "NUL byte",
        ),
        // The start of a TLS ClientHello: a TLS client pointed at the plain port.
        (
            "a TLS ClientHello",
            vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01],
            "TLS handshake on a plain-text port",
        ),
    ];
    for (name, bytes, message) in cases {
        let mut c = server.raw();
        c.send(&bytes);
        match c.read_value_or_close() {
            Some(Resp::Error(e)) => {
                let e = String::from_utf8_lossy(&e);
                assert!(e.starts_with("ERR Protocol error: "), "{name}: {e}");
                assert!(e.contains(message), "{name}: {e}");
            }
            other => panic!("{name}: got {other:?}"),
        }
        c.drain_until_closed(Duration::from_secs(5));
    }
    // Bulk strings stay binary-safe: NUL inside RESP is data.
    let mut c = server.raw();
    c.send(b"*2\r\n$4\r\nECHO\r\n$3\r\na\0b\r\n");
    assert_eq!(
        c.read_value_or_close(),
        Some(Resp::Bulk(Some(b"a\0b".to_vec())))
    );
}

/// One `kB` field of `/proc/<pid>/status` (`VmSize`, `VmRSS`), in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// Headers within the limits claim 1M arguments and 512 MiB bulks, then nothing more: the
/// server must wait for the bytes, not reserve room for them. Measured by the server's
/// `VmSize` (every mapping it holds, touched or not), not by RSS: a reservation of the claimed
/// size maps 512 MiB that nobody writes, which RSS never sees. The parser alone is held to the
/// same rule by a counting allocator in `tests/claimed_sizes.rs`.
#[test]
fn claimed_sizes_are_not_allocated() {
    let server = Server::start(&["--shards", "1"]);
    let headers = [
        &b"*1048576\r\n$3\r\nSET\r\n"[..],
        b"*3\r\n$3\r\nSET\r\n$1\r\np\r\n$536870912\r\n",
        b"*1\r\n$536870912\r\nabc",
    ];
    // Logged in and served once before the baseline: their buffers, the login's hashing (its
    // memory and the hasher threads' malloc arenas) are already in it.
    let mut held: Vec<RawConn> = (0..headers.len() * 4).map(|_| server.raw()).collect();
    for c in &mut held {
        assert_eq!(c.call_value(&["PING"]), Resp::simple("PONG"));
    }
    let vm_before = proc_status_bytes(server.pid(), "VmSize");
    let rss_before = proc_status_bytes(server.pid(), "VmRSS");
    for (c, header) in held.iter_mut().zip(headers.iter().cycle()) {
        c.send(header);
    }
    // Until the server has read them all (or longer, if it is slow to: then the VmSize
    // check below is only weaker, never wrong).
    thread::sleep(Duration::from_millis(500));
    let vm_after = proc_status_bytes(server.pid(), "VmSize");
    let rss_after = proc_status_bytes(server.pid(), "VmRSS");
    // 12 connections' read buffers are a few hundred KiB; one reserved bulk is 512 MiB.
    assert!(
        vm_after < vm_before + 16 * 1024 * 1024,
        "VmSize grew from {vm_before} to {vm_after} (RSS from {rss_before} to {rss_after}): \
         room was reserved for sizes the clients only claimed"
    );
    assert!(
        rss_after < rss_before + 16 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after}"
    );
    // The connections are still waiting, not broken; the server still answers.
    let mut c = server.raw();
    assert_eq!(c.call_value(&["PING"]), Resp::simple("PONG"));
    for c in &mut held {
        c.stream.set_nonblocking(true).unwrap();
        match c.stream.peek(&mut [0u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a connection with a partial request got {other:?}"),
        }
    }
}
