//! A real `redis-server` to compare GoKV with: started on a Unix socket in a temporary
//! directory (no TCP port, no persistence), killed and removed on drop.
//!
//! When the binary is missing, [`RealRedis::start`] says so on stderr and returns `None`, so a
//! developer without Redis still runs the GoKV halves of a test. Where a skip would hide a
//! regression (CI, whose `.ci/run` installs redis-server and sets `GOKV_REQUIRE_REDIS=1`), a
//! missing or broken binary fails the test instead. `REDIS_SERVER_BIN` picks another binary
//! (a 7.2 build, say).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{cmd_bytes, parse_resp, poll_until, DataDir, READ_TIMEOUT};

/// A running `redis-server`.
pub struct RealRedis {
    child: Child,
    socket: PathBuf,
    /// Holds the socket; removed after the process is killed.
    _dir: DataDir,
}

impl RealRedis {
    /// Starts one, or `None` with a message naming `test` and why its comparison is skipped.
    /// Panics instead of skipping when `GOKV_REQUIRE_REDIS` is set.
    pub fn start(test: &str) -> Option<RealRedis> {
        let bin = std::env::var_os("REDIS_SERVER_BIN").unwrap_or_else(|| "redis-server".into());
        let dir = DataDir::new("redis-ref");
        let socket = dir.path().join("redis.sock");
        let child = Command::new(&bin)
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if std::env::var_os("GOKV_REQUIRE_REDIS").is_some() => {
                panic!("{test}: GOKV_REQUIRE_REDIS is set but {bin:?} cannot run: {e}")
            }
            Err(e) => {
                // Straight to the process's stderr: the test harness would capture (and, for
                // a passing test, hide) eprintln!'s line.
                let _ = writeln!(
                    std::io::stderr(),
                    "{test}: skipping the redis-server comparison: cannot run {bin:?}: {e} \
                     (set GOKV_REQUIRE_REDIS=1 to make this a failure)"
                );
                return None;
            }
        };
        let mut redis = RealRedis {
            child,
            socket,
            _dir: dir,
        };
        let up = poll_until(Duration::from_secs(20), || {
            UnixStream::connect(&redis.socket).ok().map(|_| ())
        });
        if up.is_none() {
            let _ = redis.child.kill();
            panic!("{test}: redis-server did not open {:?}", redis.socket);
        }
        Some(redis)
    }

    /// A new connection (RESP2 until it sends `HELLO 3`).
    pub fn conn(&self) -> RedisConn {
        RedisConn {
            stream: self.socket(),
            buf: Vec::new(),
        }
    }

    /// A bare socket to it (for what a connection does, not what it is answered: a close).
    pub fn socket(&self) -> UnixStream {
        let stream = UnixStream::connect(&self.socket).expect("connect to redis-server");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream
    }

    /// `redis_version` from `INFO server`, as (major, minor, patch).
    pub fn version(&self) -> (u32, u32, u32) {
        let reply = self.conn().call(&["INFO", "server"]);
        let text = match parse_resp(&reply) {
            Ok(Some((value, _))) => value.text(),
            other => panic!("redis INFO server: {other:?}"),
        };
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or_else(|| panic!("no redis_version in INFO server:\n{text}"));
        let mut parts = line
            .trim()
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        )
    }
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection to a [`RealRedis`].
pub struct RedisConn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl RedisConn {
    /// Sends one command and returns its reply's exact bytes.
    pub fn call(&mut self, args: &[&str]) -> Vec<u8> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call_bytes(&args)
    }

    /// Same, with binary arguments.
    pub fn call_bytes(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(args);
        self.read_reply()
    }

    /// Sends one command without waiting for its reply.
    pub fn send(&mut self, args: &[&[u8]]) {
        self.stream
            .write_all(&cmd_bytes(args))
            .expect("send to redis");
    }

    /// Reads the next reply or push, as its exact bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        loop {
            if let Ok(Some((_, used))) = parse_resp(&self.buf) {
                return self.buf.drain(..used).collect();
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read from redis");
            assert!(n > 0, "redis-server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
