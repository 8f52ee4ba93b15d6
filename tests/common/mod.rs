//! Black-box test harness: starts the real `gokv-server` binary on an ephemeral port and talks
//! to it with the `redis` crate (typed values) or with raw bytes (exact encodings).
//!
//! Every [`Server`] gets a fresh data directory and is killed (SIGKILL) when dropped, so a
//! failing test never leaves a process or a directory behind.
//!
//! Access is default-deny, so every server starts with `--admin-password` [`ADMIN_PASSWORD`]
//! (unless the test passes its own) and every connection handed out ([`Server::client`],
//! [`Server::client_resp3`], [`Server::raw`], [`RawConn::connect_admin`]) is logged in as
//! `admin`; the `*_unauthenticated` variants are not. Each test binary includes this
//! module and uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the server may take to log its listening address. Generous: a debug build on a
/// loaded 2-core CI machine can be slow to start, and a healthy start takes milliseconds.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// Read timeout of every test connection: long enough never to fire on a healthy server,
/// short enough that a missing reply fails the test instead of hanging it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The password of `admin` on every test server (unless a test passes `--admin-password`).
/// At most 16 bytes: tests that set `--max-bulk-len 16` must still be able to log in.
pub const ADMIN_PASSWORD: &str = "gokv-test-pw";

/// Distinguishes the data directories of servers started by one test process.
static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A running `gokv-server` child process.
pub struct Server {
    child: Child,
    port: u16,
    data_dir: PathBuf,
    /// Every stderr line the server has written so far (drained by a background thread so
    /// the pipe never fills and blocks the server).
    stderr: Arc<Mutex<Vec<String>>>,
    /// Same for stdout (the server should log to stderr; kept for diagnostics).
    stdout: Arc<Mutex<Vec<String>>>,
    /// The stderr line that announced the listening address.
    startup_line: String,
}

impl Server {
    /// Starts the server with `--bind 127.0.0.1 --port 0 --data-dir <fresh dir>
    /// --admin-password <ADMIN_PASSWORD>` plus `args`, and waits (up to 10 s) for its
    /// `listening on 127.0.0.1:<PORT>` line.
    pub fn start(args: &[&str]) -> Server {
        let data_dir = std::env::temp_dir().join(format!(
            "gokv-test-{}-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&data_dir).expect("create temp data dir");

        let mut child = Command::new(env!("CARGO_BIN_EXE_gokv-server"))
            .args(["--bind", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(&data_dir)
            .args(if args.contains(&"--admin-password") {
                &[][..]
            } else {
                &["--admin-password", ADMIN_PASSWORD][..]
            })
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("GOKV_ADMIN_PASSWORD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gokv-server");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (line_tx, line_rx) = mpsc::channel::<String>();
        {
            let pipe = child.stderr.take().expect("stderr piped");
            let sink = Arc::clone(&stderr);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line.clone());
                    // The receiver goes away once the startup line is found; later lines
                    // are only kept in `sink`.
                    let _ = line_tx.send(line);
                }
            });
        }
        {
            let pipe = child.stdout.take().expect("stdout piped");
            let sink = Arc::clone(&stdout);
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
        }

        let deadline = Instant::now() + STARTUP_DEADLINE;
        let mut found = None;
        while found.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = parse_listening_port(&line) {
                        found = Some((port, line));
                    }
                }
                Err(_) => break,
            }
        }
        let Some((port, startup_line)) = found else {
            let _ = child.kill();
            let status = child.wait();
            // Give the drain threads a moment to collect the last lines for the message.
            thread::sleep(Duration::from_millis(50));
            let _ = std::fs::remove_dir_all(&data_dir);
            panic!(
                "gokv-server {:?} did not log 'listening on 127.0.0.1:<PORT>' on stderr within \
                 {:?} (exit: {:?})\nstderr:\n{}\nstdout:\n{}",
                args,
                STARTUP_DEADLINE,
                status,
                stderr.lock().unwrap().join("\n"),
                stdout.lock().unwrap().join("\n"),
            );
        };

        Server {
            child,
            port,
            data_dir,
            stderr,
            stdout,
            startup_line,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr line that announced the listening address.
    pub fn startup_line(&self) -> &str {
        &self.startup_line
    }

    /// A snapshot of every stderr line logged so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// A `redis` crate connection speaking RESP2, logged in as `admin`.
    pub fn client(&self) -> redis::Connection {
        self.client_url(&format!(
            "redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{}/",
            self.port
        ))
    }

    /// A `redis` crate connection that negotiated RESP3 (`HELLO 3 AUTH ...`) on connect,
    /// logged in as `admin`.
    pub fn client_resp3(&self) -> redis::Connection {
        self.client_url(&format!(
            "redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{}/?protocol=resp3",
            self.port
        ))
    }

    /// A `redis` crate connection that has not logged in.
    pub fn client_unauthenticated(&self) -> redis::Connection {
        self.client_url(&format!("redis://127.0.0.1:{}/", self.port))
    }

    fn client_url(&self, url: &str) -> redis::Connection {
        let client = redis::Client::open(url).expect("redis client url");
        let con = client
            .get_connection_with_timeout(READ_TIMEOUT)
            .expect("redis connection");
        con.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        con.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        con
    }

    /// A raw TCP connection for exact-byte tests, logged in as `admin` (its `+OK` consumed).
    pub fn raw(&self) -> RawConn {
        RawConn::connect_admin(&self.addr())
    }

    /// A raw TCP connection that has not logged in.
    pub fn raw_unauthenticated(&self) -> RawConn {
        RawConn::connect(&self.addr())
    }

    /// Sends SIGTERM to the server process.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed: {status:?}");
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Finds `listening on 127.0.0.1:<PORT>` in a log line.
fn parse_listening_port(line: &str) -> Option<u16> {
    let needle = "listening on 127.0.0.1:";
    let at = line.find(needle)? + needle.len();
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

// ------------------------------------------------------------------------------------------
// Raw connections
// ------------------------------------------------------------------------------------------

/// A plain TCP connection that sends bytes and reads whole RESP replies.
pub struct RawConn {
    pub stream: TcpStream,
    /// Bytes read from the socket; `buf[pos..]` belongs to replies not yet returned.
    buf: Vec<u8>,
    pos: usize,
}

impl RawConn {
    pub fn connect(addr: &str) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect to server");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Connects and logs in as `admin` (the `+OK` is consumed).
    pub fn connect_admin(addr: &str) -> RawConn {
        let mut c = RawConn::connect(addr);
        let password = ADMIN_PASSWORD.as_bytes();
        let mut auth = b"*3\r\n$4\r\nAUTH\r\n$5\r\nadmin\r\n".to_vec();
        auth.extend_from_slice(format!("${}\r\n", password.len()).as_bytes());
        auth.extend_from_slice(password);
        auth.extend_from_slice(b"\r\n");
        c.expect(&auth, b"+OK\r\n");
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to server");
    }

    /// Reads exactly one complete RESP2/RESP3 reply and returns its bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        match self.try_read_reply() {
            Ok(Some(reply)) => reply,
            Ok(None) => panic!("server closed the connection instead of replying"),
            Err(e) => panic!(
                "reading a reply failed: {e} (partial bytes: {})",
                show(&self.buf[self.pos..])
            ),
        }
    }

    /// Reads one reply; `Ok(None)` if the server closed the connection cleanly at a reply
    /// boundary. A close in the middle of a reply is an error.
    pub fn try_read_reply(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            match parse_resp(&self.buf[self.pos..]) {
                Ok(Some((_, used))) => {
                    let reply = self.buf[self.pos..self.pos + used].to_vec();
                    self.pos += used;
                    if self.pos == self.buf.len() {
                        self.buf.clear();
                        self.pos = 0;
                    }
                    return Ok(Some(reply));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("malformed reply ({e}): {}", show(&self.buf[self.pos..])),
                    ))
                }
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed mid-reply: {}", show(&self.buf)),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads one reply and parses it.
    pub fn read_value(&mut self) -> Resp {
        let bytes = self.read_reply();
        parse_resp(&bytes).unwrap().unwrap().0
    }

    /// Sends `request` and asserts the next reply is exactly `reply`.
    #[track_caller]
    pub fn expect(&mut self, request: &[u8], reply: &[u8]) {
        self.send(request);
        let got = self.read_reply();
        assert_eq!(
            show(&got),
            show(reply),
            "request {} got the wrong reply",
            show(request)
        );
    }

    /// Sends `request` and asserts the next reply starts with `prefix`; returns the reply.
    #[track_caller]
    pub fn expect_prefix(&mut self, request: &[u8], prefix: &[u8]) -> Vec<u8> {
        self.send(request);
        let got = self.read_reply();
        assert!(
            got.starts_with(prefix),
            "request {} got {} (expected a reply starting with {})",
            show(request),
            show(&got),
            show(prefix)
        );
        got
    }

    /// Sends `cmd(args)` and returns the reply bytes.
    pub fn call(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&cmd(args));
        self.read_reply()
    }

    /// Sends `cmd(args)` and returns the parsed reply.
    /// The shard this connection lives on, as `CLIENT INFO` reports it.
    #[allow(dead_code)]
    pub fn shard(&mut self) -> String {
        let line = self.call_value(&["CLIENT", "INFO"]).text();
        line.trim_end()
            .rsplit("shard=")
            .next()
            .unwrap_or_default()
            .to_string()
    }

    pub fn call_value(&mut self, args: &[&str]) -> Resp {
        self.send(&cmd(args));
        self.read_value()
    }

    /// Asserts the server closes the connection (EOF or reset) without sending more bytes.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        assert!(
            self.pos == self.buf.len(),
            "unread bytes before close: {}",
            show(&self.buf[self.pos..])
        );
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => panic!(
                "expected the server to close the connection, got {}",
                show(&chunk[..n])
            ),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => panic!("expected the server to close the connection, got error {e}"),
        }
    }

    /// Writes all of `requests` from a separate thread (so neither side's buffers can
    /// deadlock the pipeline) while reading `requests.len()` replies in order.
    pub fn pipeline(&mut self, requests: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut all = Vec::with_capacity(requests.iter().map(Vec::len).sum());
        for r in requests {
            all.extend_from_slice(r);
        }
        let mut writer = self.stream.try_clone().expect("clone stream");
        let handle = thread::spawn(move || writer.write_all(&all));
        let mut replies = Vec::with_capacity(requests.len());
        for i in 0..requests.len() {
            match self.try_read_reply() {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => panic!(
                    "server closed the connection after {i} of {} pipelined replies",
                    requests.len()
                ),
                Err(e) => panic!(
                    "reading pipelined reply {i} of {} (to {}) failed: {e}; partial bytes: {}",
                    requests.len(),
                    show(&requests[i]),
                    show(&self.buf[self.pos..])
                ),
            }
        }
        handle
            .join()
            .expect("writer thread")
            .expect("write pipeline");
        replies
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Encodes a command as a RESP array of bulk strings.
pub fn cmd(args: &[&str]) -> Vec<u8> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    cmd_bytes(&args)
}

/// Encodes a command with binary arguments as a RESP array of bulk strings.
pub fn cmd_bytes(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `$<len>\r\n<bytes>\r\n`
pub fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

/// `:<n>\r\n`
pub fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

/// `*<n>\r\n` followed by the given encoded elements.
pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for i in items {
        out.extend_from_slice(i);
    }
    out
}

pub const OK: &[u8] = b"+OK\r\n";
pub const NULL2: &[u8] = b"$-1\r\n";
pub const NULL3: &[u8] = b"_\r\n";

/// Bytes shown as an escaped string, so failures print readable diffs.
pub fn show(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('"');
    for &c in b.iter().take(2000) {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(c as char),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    if b.len() > 2000 {
        let _ = write!(s, "... ({} bytes)", b.len());
    }
    s.push('"');
    s
}

/// Polls `f` until it returns `Some`, up to `timeout`; returns the last `None`-or-value.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ------------------------------------------------------------------------------------------
// RESP reply parsing
// ------------------------------------------------------------------------------------------

/// A parsed RESP2/RESP3 reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Resp {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    /// `$<n>` bulk string; `None` is the RESP2 null bulk `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*<n>` array; `None` is the RESP2 null array `*-1`.
    Array(Option<Vec<Resp>>),
    /// RESP3 `_`.
    Null,
    Bool(bool),
    Double(Vec<u8>),
    BigNumber(Vec<u8>),
    BulkError(Vec<u8>),
    Verbatim(Vec<u8>),
    Map(Vec<(Resp, Resp)>),
    Set(Vec<Resp>),
    Push(Vec<Resp>),
}

impl Resp {
    /// The elements of an array, set or push reply.
    pub fn items(&self) -> &[Resp] {
        match self {
            Resp::Array(Some(v)) | Resp::Set(v) | Resp::Push(v) => v,
            other => panic!("expected an array reply, got {other:?}"),
        }
    }

    /// Field/value pairs of a RESP3 map, or of a RESP2 flat `[field, value, ...]` array.
    pub fn pairs(&self) -> Vec<(Resp, Resp)> {
        match self {
            Resp::Map(v) => v.clone(),
            Resp::Array(Some(v)) => {
                assert!(v.len() % 2 == 0, "odd-length flat map: {v:?}");
                v.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect()
            }
            other => panic!("expected a map reply, got {other:?}"),
        }
    }

    /// The bytes of a bulk, simple or verbatim string.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Resp::Bulk(Some(b)) | Resp::Simple(b) | Resp::Verbatim(b) => b,
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.bytes()).into_owned()
    }

    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }
}

/// Parses one reply at the start of `buf`: `Ok(None)` if it is incomplete, otherwise the
/// value and how many bytes it used.
pub fn parse_resp(buf: &[u8]) -> Result<Option<(Resp, usize)>, String> {
    let Some(line_end) = find_crlf(buf) else {
        return Ok(None);
    };
    if line_end == 0 {
        return Err("empty reply line".into());
    }
    let kind = buf[0];
    let line = &buf[1..line_end];
    let after = line_end + 2;
    let number = |line: &[u8]| -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| format!("bad number {}", show(line)))
    };
    match kind {
        b'+' => Ok(Some((Resp::Simple(line.to_vec()), after))),
        b'-' => Ok(Some((Resp::Error(line.to_vec()), after))),
        b':' => Ok(Some((Resp::Int(number(line)?), after))),
        b'_' => {
            if !line.is_empty() {
                return Err("junk after '_'".into());
            }
            Ok(Some((Resp::Null, after)))
        }
        b'#' => match line {
            b"t" => Ok(Some((Resp::Bool(true), after))),
            b"f" => Ok(Some((Resp::Bool(false), after))),
            _ => Err(format!("bad boolean {}", show(line))),
        },
        b',' => Ok(Some((Resp::Double(line.to_vec()), after))),
        b'(' => Ok(Some((Resp::BigNumber(line.to_vec()), after))),
        b'$' | b'!' | b'=' => {
            let len = number(line)?;
            if len < 0 {
                if kind == b'$' && len == -1 {
                    return Ok(Some((Resp::Bulk(None), after)));
                }
                return Err(format!("bad bulk length {len}"));
            }
            let len = len as usize;
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            if &buf[after + len..after + len + 2] != b"\r\n" {
                return Err("bulk not followed by CRLF".into());
            }
            let data = buf[after..after + len].to_vec();
            let v = match kind {
                b'$' => Resp::Bulk(Some(data)),
                b'!' => Resp::BulkError(data),
                _ => Resp::Verbatim(data),
            };
            Ok(Some((v, after + len + 2)))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = number(line)?;
            if count < 0 {
                if kind == b'*' && count == -1 {
                    return Ok(Some((Resp::Array(None), after)));
                }
                return Err(format!("bad aggregate length {count}"));
            }
            let elements = if matches!(kind, b'%' | b'|') {
                count as usize * 2
            } else {
                count as usize
            };
            let mut pos = after;
            let mut items = Vec::with_capacity(elements.min(1024));
            for _ in 0..elements {
                match parse_resp(&buf[pos..])? {
                    None => return Ok(None),
                    Some((v, used)) => {
                        items.push(v);
                        pos += used;
                    }
                }
            }
            let v = match kind {
                b'*' => Resp::Array(Some(items)),
                b'~' => Resp::Set(items),
                b'>' => Resp::Push(items),
                _ => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    if kind == b'|' {
                        // An attribute annotates the reply that follows it; return that.
                        return match parse_resp(&buf[pos..])? {
                            None => Ok(None),
                            Some((v, used)) => Ok(Some((v, pos + used))),
                        };
                    }
                    Resp::Map(pairs)
                }
            };
            Ok(Some((v, pos)))
        }
        other => Err(format!("unknown reply type byte {}", show(&[other]))),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

// ------------------------------------------------------------------------------------------
// redis-crate helpers
// ------------------------------------------------------------------------------------------

/// Runs one command given as words through a `redis` crate connection.
pub fn q<T: redis::FromRedisValue>(
    con: &mut redis::Connection,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
}

/// Runs a command that must fail and returns the server error's code and full text.
#[track_caller]
pub fn q_err(con: &mut redis::Connection, args: &[&str]) -> (String, String) {
    match q::<redis::Value>(con, args) {
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
        Err(e) => (
            e.code().unwrap_or("<no code>").to_string(),
            format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        ),
    }
}
