//! Limits, backpressure and hostile input, against the real binary: max-clients, a deep
//! pipeline, the client output limit, max-memory, the idle timeout, malformed frames.
//!
//! Each test starts its own server on port 0 (killed on drop) and talks raw RESP to it, so
//! that what is checked is exactly what goes over the wire. Access is default-deny: servers
//! start with `--admin-password` and [`Server::connect`] logs in as `admin`;
//! [`Server::connect_unauthenticated`] does not.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Long enough never to fire on a healthy server on a loaded 2-core machine, short enough
/// that a missing reply fails the test instead of hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The password of `admin` on every server here.
const ADMIN_PASSWORD: &str = "limits-test-pw";

struct Server {
    child: Child,
    port: u16,
    data_dir: std::path::PathBuf,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let data_dir = std::env::temp_dir().join(format!(
            "gokv-limits-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let mut child = Command::new(env!("CARGO_BIN_EXE_gokv-server"))
            .args(["--bind", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(&data_dir)
            .args(["--admin-password", ADMIN_PASSWORD])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("GOKV_ADMIN_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gokv-server");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        // Keep draining stderr for the server's whole life so that the pipe never fills.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
                    let port = rest.split_whitespace().next().unwrap_or("");
                    let _ = tx.send(port.parse::<u16>().expect("port number"));
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not log its address");
            }
        };
        Server {
            child,
            port,
            data_dir,
        }
    }

    /// A connection logged in as `admin`.
    fn connect(&self) -> Conn {
        let mut c = self.connect_unauthenticated();
        assert_eq!(c.call(&["AUTH", "admin", ADMIN_PASSWORD]), ok());
        c
    }

    /// A connection that has not logged in (what the acceptor's refusal reaches).
    fn connect_unauthenticated(&self) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// One INFO field, read over a fresh connection.
    fn info_field(&self, name: &str) -> u64 {
        let mut c = self.connect();
        let text = match c.call(&["INFO", "everything"]) {
            Reply::Bulk(Some(bytes)) => String::from_utf8(bytes).unwrap(),
            other => panic!("INFO answered {other:?}"),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in INFO"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

/// Encodes a request as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Conn {
    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn call(&mut self, args: &[&str]) -> Reply {
        self.send(&encode(args));
        self.read_reply().expect("a reply")
    }

    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches("\r\n").to_string()),
        }
    }

    /// The next reply, or `None` at end of stream (or reset).
    fn read_reply(&mut self) -> Option<Reply> {
        let line = self.line()?;
        let (kind, rest) = line.split_at(1);
        Some(match kind {
            "+" => Reply::Simple(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(rest.parse().unwrap()),
            "$" => {
                let len: i64 = rest.parse().unwrap();
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut data = vec![0; len as usize + 2];
                    self.reader.read_exact(&mut data).ok()?;
                    data.truncate(len as usize);
                    Reply::Bulk(Some(data))
                }
            }
            "*" => {
                let n: usize = rest.parse().unwrap();
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.read_reply()?);
                }
                Reply::Array(items)
            }
            _ => panic!("unexpected reply line {line:?}"),
        })
    }

    /// Reads until the server closes the connection; panics if it stays open too long.
    fn expect_closed(&mut self, within: Duration) {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let started = Instant::now();
        let mut sink = [0u8; 64 * 1024];
        loop {
            match self.reader.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => assert!(started.elapsed() < within, "still open after {within:?}"),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("connection still open after {within:?}")
                }
                Err(_) => return, // reset: closed too
            }
        }
    }
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

#[test]
fn max_clients_refuses_only_the_connection_past_the_limit() {
    let server = Server::start(&["--max-clients", "3", "--shards", "2"]);
    let mut held: Vec<Conn> = (0..3).map(|_| server.connect()).collect();
    for c in &mut held {
        assert_eq!(c.call(&["PING"]), Reply::Simple("PONG".into()));
    }
    let mut refused = server.connect_unauthenticated();
    assert_eq!(
        refused.read_reply(),
        Some(Reply::Error("ERR max number of clients reached".into()))
    );
    refused.expect_closed(Duration::from_secs(5));
    // The others never noticed.
    for c in &mut held {
        assert_eq!(
            c.call(&["ECHO", "still here"]),
            Reply::Bulk(Some(b"still here".to_vec()))
        );
    }
    // A freed place can be taken again (the count drops once the shard sees the close).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = server.connect_unauthenticated();
        match c.call(&["PING"]) {
            Reply::Simple(s) if s == "PONG" => break,
            other => assert!(Instant::now() < deadline, "still refused: {other:?}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
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
        let s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
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
    assert!(server.info_field("connected_clients") > CLIENTS as u64);
}

#[test]
fn a_deep_pipeline_gets_every_reply_in_order() {
    const DEPTH: usize = 100_000;
    // Two shards and two partitions: half the requests are forwarded, which exercises the
    // in-flight bound as well as the output high-water mark.
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.connect();
    for p in ["a", "b"] {
        assert_eq!(c.call(&["CREATE", "PARTITION", p, "INT", "MEMORY"]), ok());
    }
    let mut pipeline = Vec::with_capacity(DEPTH * 32);
    for i in 0..DEPTH {
        let p = if i % 2 == 0 { "a" } else { "b" };
        pipeline.extend_from_slice(&encode(&["INCR", p, "n"]));
    }
    // Everything is written before anything is read.
    c.send(&pipeline);
    for i in 0..DEPTH {
        let expected = (i / 2 + 1) as i64;
        assert_eq!(c.read_reply(), Some(Reply::Int(expected)), "reply {i}");
    }
    assert_eq!(c.call(&["GET", "a", "n"]), Reply::Int(DEPTH as i64 / 2));
    // A client that sends its pipeline and half-closes (`nc`, scripts) still gets every
    // reply, although reading paused with requests left in the buffer when the EOF came.
    let mut half = server.connect();
    let mut pipeline = Vec::new();
    for i in 0..20_000 {
        let p = if i % 2 == 0 { "a" } else { "b" };
        pipeline.extend_from_slice(&encode(&["INCR", p, "m"]));
    }
    half.send(&pipeline);
    half.stream.shutdown(std::net::Shutdown::Write).unwrap();
    for i in 0..20_000 {
        assert_eq!(half.read_reply(), Some(Reply::Int(i / 2 + 1)), "reply {i}");
    }
    assert_eq!(half.read_reply(), None);
}

/// Starts a client that pipelines `requests` and never reads a byte of the replies.
fn slow_reader(server: &Server, requests: &[u8]) -> Conn {
    let mut slow = server.connect();
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
    let mut c = server.connect();
    let value = "v".repeat(256 * 1024);
    // Two partitions land on two shards: whichever shard the slow client is on, every other
    // request is forwarded, and the local replies behind it pile up in its reply queue.
    for p in ["a", "b"] {
        assert_eq!(
            c.call(&["CREATE", "PARTITION", p, "STRING", "MEMORY"]),
            ok()
        );
        assert_eq!(c.call(&["SET", p, "big", &value]), ok());
    }
    let rss_before = server.info_field("used_memory_rss");
    let mut requests = Vec::new();
    for _ in 0..400 {
        requests.extend_from_slice(&encode(&["GET", "a", "big"]));
        requests.extend_from_slice(&encode(&["GET", "b", "big"]));
    }
    // A well-behaved client keeps being served, without stalls, meanwhile.
    let port = server.port;
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
    slow.expect_closed(Duration::from_secs(10));
    let worst = pinger.join().unwrap();
    assert!(worst < Duration::from_secs(1), "a PING took {worst:?}");
    assert!(server.info_field("client_output_limit_disconnections") >= 1);
    // 800 reads of 256 KiB were asked for (200 MiB); the server held at most a few MiB.
    let rss_after = server.info_field("used_memory_rss");
    assert!(
        rss_after < rss_before + 32 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after}"
    );
    // And everyone else still gets large values.
    assert_eq!(
        c.call(&["GET", "b", "big"]),
        Reply::Bulk(Some(value.into_bytes()))
    );
}

#[test]
fn a_read_larger_than_the_output_limit_is_never_built() {
    let server = Server::start(&["--client-output-limit", "1mb"]);
    let mut c = server.connect();
    let value = "v".repeat(300 * 1024);
    assert_eq!(
        c.call(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]),
        ok()
    );
    assert_eq!(c.call(&["SET", "p", "k", &value]), ok());
    assert!(matches!(c.call(&["MGET", "p", "k", "k", "k"]), Reply::Array(a) if a.len() == 3));
    // Four copies pass 1 MiB: the connection is closed instead of answered.
    let mut greedy = server.connect();
    greedy.send(&encode(&["MGET", "p", "k", "k", "k", "k"]));
    assert_eq!(greedy.read_reply(), None);
    assert_eq!(c.call(&["PING"]), Reply::Simple("PONG".into()));
}

#[test]
fn max_memory_refuses_growing_writes_but_serves_reads_and_deletes() {
    let server = Server::start(&["--shards", "2", "--max-memory", "1mb"]);
    let mut c = server.connect();
    for p in ["a", "b"] {
        assert_eq!(
            c.call(&["CREATE", "PARTITION", p, "STRING", "MEMORY"]),
            ok()
        );
    }
    assert_eq!(c.call(&["CREATE", "PARTITION", "n", "INT", "MEMORY"]), ok());
    let value = "x".repeat(10 * 1024);
    let mut stored = 0;
    let refusal = loop {
        let p = if stored % 2 == 0 { "a" } else { "b" };
        match c.call(&["SET", p, &format!("k{stored}"), &value]) {
            Reply::Simple(_) => stored += 1,
            other => break other,
        }
        assert!(stored < 200, "1 MiB never filled");
    };
    assert_eq!(
        refusal,
        Reply::Error("OOM command not allowed when used memory > 'max-memory'".into())
    );
    // About 1 MiB of 10 KiB values went in (the estimate counts keys and overhead too).
    assert!((95..=102).contains(&stored), "stored {stored}");
    let p = if stored % 2 == 0 { "a" } else { "b" };
    // Nothing was written by the refused SET; reads work.
    assert_eq!(
        c.call(&["GET", p, &format!("k{stored}")]),
        Reply::Bulk(None)
    );
    assert_eq!(
        c.call(&["GET", "a", "k0"]),
        Reply::Bulk(Some(value.clone().into_bytes()))
    );
    let mset = c.call(&["MSET", "a", "x", &value, "y", &value]);
    assert!(
        matches!(&mset, Reply::Error(e) if e.starts_with("OOM")),
        "{mset:?}"
    );
    assert_eq!(c.call(&["EXISTS", "a", "x", "y"]), Reply::Int(0));
    // Fill what is left with small entries (4-byte key, empty value: 52 bytes estimated).
    let mut small = 0;
    while c.call(&["SET", "a", &format!("f{:03}", small), ""]) == ok() {
        small += 1;
        assert!(small < 1000);
    }
    // Now even a new counter (57 bytes estimated) does not fit.
    let incr = c.call(&["INCR", "n", "c"]);
    assert!(
        matches!(&incr, Reply::Error(e) if e.starts_with("OOM")),
        "{incr:?}"
    );
    // Overwriting with a value no longer than the old one does not grow: allowed.
    assert_eq!(c.call(&["SET", "a", "k0", "short"]), ok());
    let used = server.info_field("used_memory");
    assert_eq!(server.info_field("maxmemory"), 1024 * 1024);
    assert!(used <= 1024 * 1024, "used_memory {used}");
    // Deletes always work and make room again.
    assert_eq!(c.call(&["DEL", "a", "k2", "k4"]), Reply::Int(2));
    assert!(server.info_field("used_memory") < used);
    assert_eq!(c.call(&["SET", p, "again", &value]), ok());
    assert_eq!(c.call(&["INCR", "n", "c"]), Reply::Int(1));
    // Dropping a partition gives its memory back.
    let before = server.info_field("used_memory");
    assert_eq!(c.call(&["DROP", "PARTITION", "b"]), ok());
    assert!(server.info_field("used_memory") < before / 2 + 64 * 1024);
}

#[test]
fn idle_connections_are_closed_after_the_timeout() {
    let server = Server::start(&["--timeout", "1"]);
    let mut idle = server.connect();
    let mut busy = server.connect();
    assert_eq!(idle.call(&["PING"]), Reply::Simple("PONG".into()));
    let started = Instant::now();
    // The busy one talks every 200 ms for 2.5 s and must stay open throughout.
    while started.elapsed() < Duration::from_millis(2500) {
        assert_eq!(busy.call(&["PING"]), Reply::Simple("PONG".into()));
        thread::sleep(Duration::from_millis(200));
    }
    idle.expect_closed(Duration::from_secs(5));
    assert!(server.info_field("idle_timeout_disconnections") >= 1);
    assert_eq!(busy.call(&["PING"]), Reply::Simple("PONG".into()));
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
            vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01],
            "NUL byte",
        ),
    ];
    for (name, bytes, message) in cases {
        let mut c = server.connect();
        c.send(&bytes);
        match c.read_reply() {
            Some(Reply::Error(e)) => {
                assert!(e.starts_with("ERR Protocol error: "), "{name}: {e}");
                assert!(e.contains(message), "{name}: {e}");
            }
            other => panic!("{name}: got {other:?}"),
        }
        c.expect_closed(Duration::from_secs(5));
    }
    // Bulk strings stay binary-safe: NUL inside RESP is data.
    let mut c = server.connect();
    c.send(b"*2\r\n$4\r\nECHO\r\n$3\r\na\0b\r\n");
    assert_eq!(c.read_reply(), Some(Reply::Bulk(Some(b"a\0b".to_vec()))));
}

#[test]
fn claimed_sizes_are_not_allocated() {
    let server = Server::start(&["--shards", "1"]);
    let rss_before = server.info_field("used_memory_rss");
    // Headers within the limits, announcing 1M arguments and a 512 MiB bulk, then nothing:
    // the server must wait for the bytes, not reserve room for them.
    let mut held = Vec::new();
    for header in [
        &b"*1048576\r\n$3\r\nSET\r\n"[..],
        b"*3\r\n$3\r\nSET\r\n$1\r\np\r\n$536870912\r\n",
        b"*1\r\n$536870912\r\nabc",
    ] {
        for _ in 0..4 {
            let mut c = server.connect();
            c.send(header);
            held.push(c);
        }
    }
    thread::sleep(Duration::from_millis(300));
    let rss_after = server.info_field("used_memory_rss");
    assert!(
        rss_after < rss_before + 16 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after}"
    );
    // The connections are still waiting, not broken; the server still answers.
    let mut c = server.connect();
    assert_eq!(c.call(&["PING"]), Reply::Simple("PONG".into()));
}
