//! Black-box test harness: starts the real `gokv-server` binary on an ephemeral port and talks
//! to it with the `redis` crate (typed values) or with raw bytes (exact encodings).
//!
//! Every [`Server`] is killed (SIGKILL) when dropped. By default it gets a fresh data
//! directory, removed with it; a test that restarts a server on the same data creates a
//! [`DataDir`] and starts each server in it ([`Server::start_in`]). [`Server::launch`] covers
//! the rarer needs: an environment override, no `--admin-password`, a start expected to fail.
//!
//! Access is default-deny, so every server starts with `--admin-password` [`ADMIN_PASSWORD`]
//! (unless the test passes its own, or asks for none) and every connection handed out
//! ([`Server::client`], [`Server::client_resp3`], [`Server::raw`], [`RawConn::connect_admin`])
//! is logged in as `admin`; the `*_unauthenticated` variants are not, and [`Server::login`]
//! logs in as any user. [`RealRedis`] (in `real_redis.rs`) is a real `redis-server` to compare
//! replies with. Each test binary includes this module and uses only part of it,
//! hence the `dead_code` allowance.
#![allow(dead_code)]

mod real_redis;
pub mod replication;
#[allow(unused_imports)] // only the binaries that compare with Redis use it
pub use real_redis::{RealRedis, RedisConn};

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the server may take to log its listening address. Generous: a debug build
/// recovering a big log on a loaded 2-core CI machine can be slow to start, and a healthy
/// start takes milliseconds.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// How long [`Server::stop`] waits for the process to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// Read timeout of every test connection: long enough never to fire on a healthy server on a
/// loaded 2-core machine, short enough that a missing reply fails the test instead of hanging
/// it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The password of `admin` on every test server (unless a test passes `--admin-password`).
/// At most 16 bytes: tests that set `--max-bulk-len 16` must still be able to log in.
pub const ADMIN_PASSWORD: &str = "gokv-test-pw";

/// Distinguishes the data directories created by one test process.
static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// The server binary: this build's, or `GOKV_SERVER_BIN` if set (scripts/crash-test.sh points
/// it at a user's own build).
pub fn server_bin() -> PathBuf {
    std::env::var_os("GOKV_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gokv-server")))
}

// ------------------------------------------------------------------------------------------
// Data directories
// ------------------------------------------------------------------------------------------

/// A fresh, empty temporary directory, removed (with everything in it) on drop. Servers
/// started in it with [`Server::start_in`] leave it in place, so a test can stop or kill one
/// and start the next on the same data.
pub struct DataDir(PathBuf);

impl DataDir {
    /// Creates `<tmp>/gokv-test-<tag>-<pid>-<n>`, emptying any leftover of that name.
    pub fn new(tag: &str) -> DataDir {
        let dir = std::env::temp_dir().join(format!(
            "gokv-test-{tag}-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp data dir");
        DataDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ------------------------------------------------------------------------------------------
// Servers
// ------------------------------------------------------------------------------------------

/// How to start a server: built by [`Server::launch`], run by [`Launch::start`] or
/// [`Launch::try_start`].
pub struct Launch {
    args: Vec<String>,
    /// `None`: a fresh directory owned by the server.
    data_dir: Option<PathBuf>,
    admin_password: bool,
    env: Vec<(String, String)>,
}

impl Launch {
    /// Runs the server in `dir` instead of a fresh directory; `dir` outlives the server.
    pub fn data_dir(mut self, dir: &DataDir) -> Launch {
        self.data_dir = Some(dir.path().to_path_buf());
        self
    }

    /// Passes no `--admin-password` (a first start that must generate one, a restart that
    /// keeps the stored one, or a password from `GOKV_ADMIN_PASSWORD`).
    pub fn without_admin_password(mut self) -> Launch {
        self.admin_password = false;
        self
    }

    /// Sets an environment variable of the server process, over the harness's defaults
    /// (`RUST_LOG=info`, `GOKV_ADMIN_PASSWORD` removed).
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts the server and waits for its listening line; panics with its output if it
    /// does not get there.
    pub fn start(self) -> Server {
        let args = self.args.clone();
        match self.try_start() {
            Ok(server) => server,
            Err(failed) => panic!(
                "gokv-server {args:?} did not log 'listening on 127.0.0.1:<PORT>' on stderr \
                 within {STARTUP_DEADLINE:?} (exit: {:?})\nstderr:\n{}\nstdout:\n{}",
                failed.status, failed.stderr, failed.stdout,
            ),
        }
    }

    /// Starts the server and waits (up to 30 s) for its `listening on 127.0.0.1:<PORT>` line;
    /// `Err` with its exit status and output if it exits first or does not get there in time
    /// (it is then killed).
    pub fn try_start(self) -> Result<Server, StartFailure> {
        let (data_dir, owned_dir) = match self.data_dir {
            Some(path) => (path, None),
            None => {
                let dir = DataDir::new("server");
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let give_password =
            self.admin_password && !self.args.iter().any(|a| a == "--admin-password");
        // Tests start many servers at once: none takes the default metrics port (9379) unless
        // it asks for a port itself.
        let metrics_off = !self.args.iter().any(|a| a == "--metrics-port");
        // `--port 0` (a free port) unless the test names a port itself: with a TLS port,
        // `--port 0` means no plain port at all.
        let port_given = self.args.iter().any(|a| a == "--port");
        let mut command = Command::new(server_bin());
        command
            .args(["--bind", "127.0.0.1"])
            .args(if port_given {
                &[][..]
            } else {
                &["--port", "0"][..]
            })
            .arg("--data-dir")
            .arg(&data_dir)
            .args(if give_password {
                &["--admin-password", ADMIN_PASSWORD][..]
            } else {
                &[][..]
            })
            .args(if metrics_off {
                &["--metrics-port", "0"][..]
            } else {
                &[][..]
            })
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env_remove("GOKV_ADMIN_PASSWORD");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command
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
                // Disconnected: stderr closed, so the process is exiting. Timeout: it hangs.
                Err(_) => break,
            }
        }
        let Some((port, startup_line)) = found else {
            let _ = child.kill();
            let status = child.wait().expect("wait for gokv-server");
            // Give the drain threads a moment to collect the last lines.
            thread::sleep(Duration::from_millis(50));
            let stderr = stderr.lock().unwrap().join("\n");
            let stdout = stdout.lock().unwrap().join("\n");
            return Err(StartFailure {
                status,
                stderr,
                stdout,
            });
        };

        Ok(Server {
            child,
            port,
            data_dir,
            stderr,
            stdout,
            startup_line,
            _owned_dir: owned_dir,
        })
    }
}

/// How a start that did not reach the listening line ended.
pub struct StartFailure {
    pub status: ExitStatus,
    /// Everything the process wrote to stderr, lines joined with `\n`.
    pub stderr: String,
    /// Same for stdout.
    pub stdout: String,
}

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
    /// The fresh data directory of a server not started in a [`DataDir`] of the test's;
    /// dropped (removed) after the process is killed.
    _owned_dir: Option<DataDir>,
}

impl Server {
    /// Starts the server with `--bind 127.0.0.1 --port 0 --data-dir <fresh dir>
    /// --admin-password <ADMIN_PASSWORD>` plus `args`, and waits (up to 30 s) for its
    /// `listening on 127.0.0.1:<PORT>` line.
    pub fn start(args: &[&str]) -> Server {
        Server::launch(args).start()
    }

    /// Like [`Server::start`], with `dir` as the data directory (kept when the server goes).
    pub fn start_in(dir: &DataDir, args: &[&str]) -> Server {
        Server::launch(args).data_dir(dir).start()
    }

    /// A start with options beyond `args`; finish it with [`Launch::start`] or
    /// [`Launch::try_start`].
    pub fn launch(args: &[&str]) -> Launch {
        Launch {
            args: args.iter().map(|a| a.to_string()).collect(),
            data_dir: None,
            admin_password: true,
            env: Vec::new(),
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

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The stderr line that announced the listening address.
    pub fn startup_line(&self) -> &str {
        &self.startup_line
    }

    /// A snapshot of every stderr line logged so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// Every stderr line logged so far, joined with `\n`.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Everything the process has written so far, stderr lines then stdout lines, joined
    /// with `\n`: what must (or must not) show up in its logs.
    pub fn log_text(&self) -> String {
        let mut lines = self.stderr_lines();
        lines.extend(self.stdout.lock().unwrap().iter().cloned());
        lines.join("\n")
    }

    /// Waits up to 10 s for `needle` to show up in the logs, and returns the logs either
    /// way. The harness reads the server's output on threads of its own, so a line the
    /// server wrote before its last reply may reach `log_text` a moment after that reply.
    pub fn log_text_once_it_contains(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.log_text();
            if text.contains(needle) || Instant::now() >= deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `redis` crate URL of a RESP2 connection logged in as `admin`.
    pub fn url(&self) -> String {
        format!("redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{}/", self.port)
    }

    /// A `redis` crate connection speaking RESP2, logged in as `admin`.
    pub fn client(&self) -> redis::Connection {
        self.client_url(&self.url())
    }

    /// A `redis` crate connection that negotiated RESP3 (`HELLO 3 AUTH ...`) on connect,
    /// logged in as `admin`.
    pub fn client_resp3(&self) -> redis::Connection {
        self.client_url(&format!("{}?protocol=resp3", self.url()))
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

    /// A raw TCP connection logged in as `user` (`AUTH user password` must answer `+OK`).
    #[track_caller]
    pub fn login(&self, user: &str, password: &str) -> RawConn {
        RawConn::connect_as(&self.addr(), user, password)
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

    /// A clean stop: SIGTERM, then waits (up to 20 s, else panics) for the exit.
    #[track_caller]
    pub fn stop(mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit(STOP_DEADLINE)
            .unwrap_or_else(|| panic!("server did not exit within {STOP_DEADLINE:?} of SIGTERM"))
    }

    /// A crash: SIGKILL, so the process dies at once, mid-write or not.
    pub fn kill9(self) {
        // Drop kills and reaps it.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now (for flags with no "pick one" value: `--tls-port`,
/// `--metrics-port`, a node restarted at its address). Another process may take it before
/// the server binds it: callers that can, retry (see [`with_metrics`]).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server started with `args` and its metrics on a free port, and that port (a lost race
/// for the port is retried).
pub fn with_metrics(args: &[&str]) -> (Server, u16) {
    for _ in 0..5 {
        let port = free_port();
        let port_text = port.to_string();
        let mut all = vec!["--metrics-port", &port_text];
        all.extend_from_slice(args);
        if let Ok(server) = Server::launch(&all).try_start() {
            return (server, port);
        }
    }
    panic!("no server with a metrics port after 5 tries");
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
/// How [`RawConn::replies_until_closed`] stopped reading.
#[derive(Debug, PartialEq)]
pub enum ReadEnd {
    Closed,
    StillOpen,
    Malformed(String),
}

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
    #[track_caller]
    pub fn connect_admin(addr: &str) -> RawConn {
        RawConn::connect_as(addr, "admin", ADMIN_PASSWORD)
    }

    /// Connects and logs in as `user` with `AUTH user password` (the `+OK` is consumed).
    #[track_caller]
    pub fn connect_as(addr: &str, user: &str, password: &str) -> RawConn {
        let mut c = RawConn::connect(addr);
        c.expect(&cmd(&["AUTH", user, password]), OK);
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

    /// Reads and parses one reply; `None` if the server closed the connection (EOF at a
    /// reply boundary, or a reset) instead. Anything else, a timeout included, panics.
    pub fn read_value_or_close(&mut self) -> Option<Resp> {
        match self.try_read_reply() {
            Ok(Some(bytes)) => Some(parse_resp(&bytes).unwrap().unwrap().0),
            Ok(None) => None,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                None
            }
            Err(e) => panic!("reading a reply failed: {e}"),
        }
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

    /// The shard this connection lives on, as `CLIENT INFO` reports it.
    pub fn shard(&mut self) -> String {
        let line = self.call_value(&["CLIENT", "INFO"]).text();
        line.trim_end()
            .rsplit("shard=")
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// Two new STRING MEMORY partitions, one on each of a two-shard server's shards (created
    /// as `p0`, `p1`, ... until both shards have one): their names, the first made first.
    pub fn one_partition_per_shard(&mut self) -> (String, String) {
        let mut by_shard: Vec<(String, String)> = Vec::new();
        for i in 0..16 {
            let name = format!("p{i}");
            self.call_ok(&["CREATE", "PARTITION", &name, "STRING", "MEMORY"]);
            let shard = self.partition_shard(&name);
            if !by_shard.iter().any(|(s, _)| *s == shard) {
                by_shard.push((shard, name));
            }
            if by_shard.len() == 2 {
                break;
            }
        }
        assert_eq!(
            by_shard.len(),
            2,
            "no partition on each shard: {by_shard:?}"
        );
        (by_shard[0].1.clone(), by_shard[1].1.clone())
    }

    /// The shard that owns partition `name`, as DESCRIBE PARTITION says (the form
    /// [`RawConn::shard`] gives a connection's shard in).
    pub fn partition_shard(&mut self, name: &str) -> String {
        let described = self.call_value(&["DESCRIBE", "PARTITION", name]);
        let (_, shard) = described
            .pairs()
            .into_iter()
            .find(|(k, _)| k.text() == "shard")
            .expect("DESCRIBE PARTITION has a shard field");
        shard.int().to_string()
    }

    /// Sends `cmd(args)` and returns the parsed reply.
    pub fn call_value(&mut self, args: &[&str]) -> Resp {
        self.send(&cmd(args));
        self.read_value()
    }

    /// Sends `cmd(args)` and asserts the reply is `+OK`.
    #[track_caller]
    pub fn call_ok(&mut self, args: &[&str]) {
        assert_eq!(self.call_value(args), Resp::ok(), "{args:?}");
    }

    /// Sends `cmd(args)`, asserts the reply is an error, and returns its text.
    #[track_caller]
    pub fn call_err(&mut self, args: &[&str]) -> String {
        match self.call_value(args) {
            Resp::Error(e) => String::from_utf8_lossy(&e).into_owned(),
            other => panic!("{args:?} should fail, got {other:?}"),
        }
    }

    /// One integer field of `STATS PARTITION <partition>`.
    #[track_caller]
    pub fn stat(&mut self, partition: &str, field: &str) -> i64 {
        let pairs = self.call_value(&["STATS", "PARTITION", partition]).pairs();
        match pairs.iter().find(|(k, _)| k.bytes() == field.as_bytes()) {
            Some((_, Resp::Int(n))) => *n,
            other => panic!("STATS {partition} {field}: {other:?} in {pairs:?}"),
        }
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

    /// Every reply the server still sends until it closes the connection, and how the
    /// reading ended: the close (EOF or reset), a read that waited `within` for a byte
    /// (still open), or a malformed reply.
    pub fn replies_until_closed(&mut self, within: Duration) -> (Vec<Vec<u8>>, ReadEnd) {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut replies = Vec::new();
        loop {
            match self.try_read_reply() {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => return (replies, ReadEnd::Closed),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return (replies, ReadEnd::Malformed(e.to_string()))
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return (replies, ReadEnd::StillOpen)
                }
                Err(_) => return (replies, ReadEnd::Closed), // reset: closed too
            }
        }
    }

    /// Discards whatever the server still sends until it closes the connection (EOF or
    /// reset); panics if it is still open after `within`.
    #[track_caller]
    pub fn drain_until_closed(&mut self, within: Duration) {
        self.buf.clear();
        self.pos = 0;
        self.stream.set_read_timeout(Some(within)).unwrap();
        let started = Instant::now();
        let mut sink = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut sink) {
                Ok(0) => return,
                Ok(_) => assert!(started.elapsed() < within, "still open after {within:?}"),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("connection still open after {within:?}")
                }
                Err(_) => return, // reset: closed too
            }
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

    /// The texts of an array (set, push) of strings.
    pub fn texts(&self) -> Vec<String> {
        self.items().iter().map(Resp::text).collect()
    }

    /// Whether this is an error reply whose first word (its code) is `code`.
    pub fn is_error_code(&self, code: &str) -> bool {
        matches!(self, Resp::Error(e) if e.split(|&b| b == b' ').next() == Some(code.as_bytes()))
    }

    /// `+OK`.
    pub fn ok() -> Resp {
        Resp::simple("OK")
    }

    /// A simple string reply, `+<s>`.
    pub fn simple(s: &str) -> Resp {
        Resp::Simple(s.as_bytes().to_vec())
    }

    /// An error reply, `-<s>`.
    pub fn error(s: &str) -> Resp {
        Resp::Error(s.as_bytes().to_vec())
    }

    /// A (non-null) bulk string reply.
    pub fn bulk(b: &[u8]) -> Resp {
        Resp::Bulk(Some(b.to_vec()))
    }

    /// A (non-null) RESP2 array reply.
    pub fn array(items: Vec<Resp>) -> Resp {
        Resp::Array(Some(items))
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

/// Runs one command given as words; panics (naming the command) if it fails.
#[track_caller]
pub fn q_ok<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    q(con, args).unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
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

/// `redis-cli --stat -i 0.2` against `port` as admin for 1.5 s: its rows (at least one,
/// asserted), each split into words (`keys mem clients blocked requests connections`), and
/// its whole output for messages. `Err`: `stdbuf` (which line-buffers redis-cli's piped
/// stdout, so that rows arrive before it is killed) cannot run.
#[allow(dead_code)]
pub fn redis_cli_stat(port: u16) -> Result<(Vec<Vec<String>>, String), String> {
    let mut child = Command::new("stdbuf")
        .args(["-oL", "redis-cli", "-p", &port.to_string()])
        .args([
            "--user",
            "admin",
            "--pass",
            ADMIN_PASSWORD,
            "--no-auth-warning",
        ])
        .args(["--stat", "-i", "0.2"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .filter(|r: &Vec<String>| r.len() >= 5)
        .collect();
    assert!(!rows.is_empty(), "no --stat rows:\n{text}");
    Ok((rows, text))
}
