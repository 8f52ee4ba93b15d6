//! Harness for the persistence tests: a data directory that outlives server processes, and
//! servers started on it, killed (SIGKILL) or stopped (SIGTERM), then started again.
//!
//! Every [`Node`] is killed when dropped and every [`DataDir`] removed, so a failing test
//! leaves neither a process nor a directory behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A healthy start takes milliseconds; a debug build recovering a big log on a loaded 2-core
/// machine takes longer.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// Read timeout of test connections: a missing reply fails the test instead of hanging it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// Access is default deny: every server here starts with this admin password, and every
/// client logs in as `admin`.
pub const ADMIN_PASSWORD: &str = "persist-tests-admin-pw";

/// The server binary: this build's, or `GOKV_SERVER_BIN` (scripts/crash-test.sh points it at
/// a user's own build).
pub fn server_bin() -> PathBuf {
    std::env::var_os("GOKV_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_gokv-server")))
}

/// A temporary data directory, removed on drop.
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(tag: &str) -> DataDir {
        let dir = std::env::temp_dir().join(format!(
            "gokv-persist-{tag}-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create data dir");
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

/// A running server on a data directory.
pub struct Node {
    child: Child,
    pub port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// How a start that was expected to fail ended.
pub struct Failed {
    pub status: ExitStatus,
    pub stderr: String,
}

fn spawn(dir: &Path, args: &[&str]) -> (Child, Arc<Mutex<Vec<String>>>, mpsc::Receiver<String>) {
    let mut child = Command::new(server_bin())
        .args(["--bind", "127.0.0.1", "--port", "0", "--data-dir"])
        .arg(dir)
        .args(["--admin-password", ADMIN_PASSWORD])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gokv-server");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let pipe = child.stderr.take().expect("stderr piped");
    let sink = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    (child, lines, rx)
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("listening on 127.0.0.1:")? + "listening on 127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl Node {
    /// Starts a server on `dir` and waits for its listening line.
    pub fn start(dir: &DataDir, args: &[&str]) -> Node {
        match Node::try_start(dir, args) {
            Ok(node) => node,
            Err(f) => panic!("server did not start ({:?}):\n{}", f.status, f.stderr),
        }
    }

    /// Starts a server; `Err` with its stderr if it exits before listening.
    pub fn try_start(dir: &DataDir, args: &[&str]) -> Result<Node, Failed> {
        let (mut child, stderr, rx) = spawn(dir.path(), args);
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(port) = listening_port(&line) {
                        return Ok(Node {
                            child,
                            port,
                            stderr,
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().expect("wait");
                    thread::sleep(Duration::from_millis(20));
                    let text = stderr.lock().unwrap().join("\n");
                    return Err(Failed {
                        status,
                        stderr: text,
                    });
                }
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                thread::sleep(Duration::from_millis(50));
                let text = stderr.lock().unwrap().join("\n");
                return Err(Failed {
                    status,
                    stderr: text,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().expect("wait");
                let text = stderr.lock().unwrap().join("\n");
                return Err(Failed {
                    status,
                    stderr: text,
                });
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The URL of a client logged in as admin.
    pub fn url(&self) -> String {
        format!("redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{}/", self.port)
    }

    /// A `redis` crate connection, logged in as admin.
    pub fn client(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("url");
        let con = client
            .get_connection_with_timeout(READ_TIMEOUT)
            .expect("connect");
        con.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        con.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        con
    }

    /// SIGKILL: the process dies at once, mid-write or not.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) -> ExitStatus {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command, panicking with the command on error.
pub fn q<T: redis::FromRedisValue>(con: &mut redis::Connection, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(con)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// Runs a command that must fail; returns (code, message).
pub fn q_err(con: &mut redis::Connection, args: &[&str]) -> (String, String) {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    match c.query::<redis::Value>(con) {
        Ok(v) => panic!("{args:?} succeeded with {v:?}, expected an error"),
        Err(e) => (
            e.code().unwrap_or("").to_string(),
            e.detail().unwrap_or("").to_string(),
        ),
    }
}

/// Bytes of every file under `dir`.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata().expect("metadata");
            total += if meta.is_dir() {
                disk_usage(&entry.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

/// A field of `INFO persistence`, summed when several lines carry it.
pub fn info_field(con: &mut redis::Connection, field: &str) -> u64 {
    let text: String = q(con, &["INFO", "persistence"]);
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("{field}:")))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum()
}
