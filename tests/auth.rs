//! Authentication and permissions, black-box: the real `gokv-server` on port 0, spoken to with
//! raw RESP (exact replies) and with the `redis` crate (a real client library).
//!
//! Every server gets a fresh data directory, is killed when dropped, and its directory removed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const ADMIN_PW: &str = "Adm1n-Pw-3c9f0a";

mod harness {
    use super::*;

    static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

    /// A running server; killed (and its data directory removed, unless kept) on drop.
    pub struct Server {
        child: Child,
        pub port: u16,
        pub data_dir: PathBuf,
        pub logs: Arc<Mutex<Vec<String>>>,
        keep_dir: bool,
    }

    pub fn fresh_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gokv-auth-test-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    impl Server {
        /// Two shards (so requests cross shards) and the admin password.
        pub fn start() -> Server {
            Server::start_in(
                fresh_dir(),
                &["--admin-password", ADMIN_PW, "--shards", "2"],
            )
        }

        pub fn start_in(data_dir: PathBuf, args: &[&str]) -> Server {
            let mut child = Command::new(env!("CARGO_BIN_EXE_gokv-server"))
                .args(["--bind", "127.0.0.1", "--port", "0", "--data-dir"])
                .arg(&data_dir)
                .args(args)
                .env("RUST_LOG", "debug")
                .env_remove("GOKV_ADMIN_PASSWORD")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn gokv-server");
            let logs = Arc::new(Mutex::new(Vec::new()));
            let (tx, rx) = mpsc::channel::<String>();
            for pipe in [
                Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
                Box::new(child.stdout.take().unwrap()),
            ] {
                let logs = logs.clone();
                let tx = tx.clone();
                thread::spawn(move || {
                    for line in BufReader::new(pipe).lines() {
                        let Ok(line) = line else { break };
                        logs.lock().unwrap().push(line.clone());
                        let _ = tx.send(line);
                    }
                });
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            let port = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let line = match rx.recv_timeout(left) {
                    Ok(line) => line,
                    Err(_) => {
                        let _ = child.kill();
                        panic!("server did not start: {:?}", logs.lock().unwrap());
                    }
                };
                if let Some(at) = line.find("listening on 127.0.0.1:") {
                    let rest = &line[at + "listening on 127.0.0.1:".len()..];
                    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    break digits.parse().unwrap();
                }
            };
            Server {
                child,
                port,
                data_dir,
                logs,
                keep_dir: false,
            }
        }

        /// Stops the server (SIGTERM, then wait) and keeps its data directory for a restart.
        pub fn stop_keeping_data(mut self) -> PathBuf {
            self.keep_dir = true;
            self.terminate();
            self.data_dir.clone()
        }

        fn terminate(&mut self) {
            unsafe_free_sigterm(self.child.id());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }

        pub fn log_text(&self) -> String {
            self.logs.lock().unwrap().join("\n")
        }

        /// An unauthenticated raw connection.
        pub fn raw(&self) -> Raw {
            Raw::connect(self.port)
        }

        /// A raw connection logged in as `user`.
        pub fn login(&self, user: &str, password: &str) -> Raw {
            let mut c = self.raw();
            assert_eq!(c.cmd(&["AUTH", user, password]), V::Simple("OK".into()));
            c
        }

        pub fn admin(&self) -> Raw {
            self.login("admin", ADMIN_PW)
        }
    }

    /// `kill -TERM pid` through the `kill` program: no libc needed in the tests.
    fn unsafe_free_sigterm(pid: u32) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if !self.keep_dir {
                let _ = std::fs::remove_dir_all(&self.data_dir);
            }
        }
    }

    /// A decoded reply.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum V {
        Simple(String),
        Error(String),
        Int(i64),
        Bulk(Vec<u8>),
        Null,
        Array(Vec<V>),
    }

    impl V {
        pub fn is_error_code(&self, code: &str) -> bool {
            matches!(self, V::Error(e) if e.split(' ').next() == Some(code))
        }

        pub fn bulk_text(&self) -> String {
            match self {
                V::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("expected a bulk string, got {other:?}"),
            }
        }

        pub fn texts(&self) -> Vec<String> {
            match self {
                V::Array(items) => items.iter().map(V::bulk_text).collect(),
                other => panic!("expected an array, got {other:?}"),
            }
        }
    }

    pub struct Raw {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Raw {
        pub fn connect(port: u16) -> Raw {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            Raw {
                writer: stream.try_clone().unwrap(),
                reader: BufReader::new(stream),
            }
        }

        pub fn encode(args: &[&str]) -> Vec<u8> {
            let mut out = format!("*{}\r\n", args.len()).into_bytes();
            for a in args {
                out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
            }
            out
        }

        pub fn send(&mut self, args: &[&str]) {
            self.writer.write_all(&Raw::encode(args)).unwrap();
        }

        pub fn send_bytes(&mut self, bytes: &[u8]) {
            self.writer.write_all(bytes).unwrap();
        }

        pub fn cmd(&mut self, args: &[&str]) -> V {
            self.send(args);
            self.read()
        }

        pub fn read(&mut self) -> V {
            self.try_read().expect("connection closed")
        }

        /// `None` when the server closed the connection.
        pub fn try_read(&mut self) -> Option<V> {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
            let line = line.trim_end_matches("\r\n");
            let (kind, rest) = line.split_at(1);
            Some(match kind {
                "+" => V::Simple(rest.into()),
                "-" => V::Error(rest.into()),
                ":" => V::Int(rest.parse().unwrap()),
                "_" => V::Null,
                "$" | "=" => {
                    let n: i64 = rest.parse().unwrap();
                    if n < 0 {
                        return Some(V::Null);
                    }
                    let mut buf = vec![0u8; n as usize + 2];
                    self.reader.read_exact(&mut buf).unwrap();
                    buf.truncate(n as usize);
                    V::Bulk(buf)
                }
                "*" | "~" | "%" => {
                    let mut n: i64 = rest.parse().unwrap();
                    if n < 0 {
                        return Some(V::Null);
                    }
                    if kind == "%" {
                        n *= 2;
                    }
                    V::Array((0..n).map(|_| self.read()).collect())
                }
                other => panic!("unexpected reply type {other:?} in {line:?}"),
            })
        }

        /// True when the server closes the connection within a few seconds.
        pub fn closed_by_server(&mut self) -> bool {
            self.reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut byte = [0u8; 1];
            matches!(self.reader.read(&mut byte), Ok(0))
                || matches!(self.reader.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
        }
    }

    /// Every file under `dir`, recursively.
    pub fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    out.extend(files_under(&path));
                } else {
                    out.push(path);
                }
            }
        }
        out
    }
}

use harness::{files_under, Raw, Server, V};

fn ok() -> V {
    V::Simple("OK".into())
}

#[test]
fn before_login_only_open_commands_run() {
    let server = Server::start();
    let mut c = server.raw();
    let noauth = V::Error("NOAUTH Authentication required.".into());
    assert_eq!(c.cmd(&["GET", "p", "k"]), noauth);
    assert_eq!(c.cmd(&["LIST", "PARTITIONS"]), noauth);
    assert_eq!(c.cmd(&["WHOAMI"]), noauth);
    assert_eq!(c.cmd(&["NOSUCHCOMMAND"]), noauth);
    assert_eq!(
        c.cmd(&["CREATE", "PARTITION", "p", "INT", "MEMORY"]),
        noauth
    );
    assert_eq!(c.cmd(&["PING"]), V::Simple("PONG".into()));
    assert!(matches!(c.cmd(&["HELLO", "2"]), V::Array(_)));
    assert_eq!(c.cmd(&["QUIT"]), ok());
    assert!(c.closed_by_server());
}

#[test]
fn every_login_form_works() {
    let server = Server::start();
    let mut admin = server.admin();
    assert_eq!(admin.cmd(&["WHOAMI"]), V::Bulk(b"admin".to_vec()));
    assert_eq!(admin.cmd(&["CREATE", "USER", "default", "dpw"]), ok());
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", "bpw"]), ok());

    let mut c = server.raw();
    assert_eq!(c.cmd(&["LOGIN", "bob", "bpw"]), ok());
    assert_eq!(c.cmd(&["WHOAMI"]), V::Bulk(b"bob".to_vec()));
    // AUTH <password> is user `default`.
    assert_eq!(c.cmd(&["AUTH", "dpw"]), ok());
    assert_eq!(c.cmd(&["WHOAMI"]), V::Bulk(b"default".to_vec()));

    // HELLO 3 AUTH: RESP3 map on success; on failure neither login nor protocol change.
    let mut h = server.raw();
    let wrongpass =
        V::Error("WRONGPASS invalid username-password pair or user is disabled.".into());
    assert_eq!(h.cmd(&["HELLO", "3", "AUTH", "bob", "nope"]), wrongpass);
    h.send(&["GET", "p", "k"]);
    assert_eq!(h.read(), V::Error("NOAUTH Authentication required.".into()));
    h.send_bytes(&Raw::encode(&[
        "HELLO", "3", "AUTH", "bob", "bpw", "SETNAME", "x",
    ]));
    // A RESP3 map of 7 pairs (the reader flattens it).
    let first = h.read();
    assert!(
        matches!(first, V::Array(ref a) if a.len() == 14),
        "{first:?}"
    );
    assert_eq!(h.cmd(&["WHOAMI"]), V::Bulk(b"bob".to_vec()));
    assert_eq!(h.cmd(&["CLIENT", "GETNAME"]), V::Bulk(b"x".to_vec()));
    // RESP3 null proves the protocol switched.
    assert_eq!(
        admin.cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]),
        ok()
    );
    assert_eq!(admin.cmd(&["GRANT", "READ", "ON", "p", "TO", "bob"]), ok());
    h.send(&["GET", "p", "k"]);
    assert_eq!(h.read(), V::Null);

    // Pipelined: AUTH then a command in one write; the command runs as the new user.
    let mut p = server.raw();
    let mut bytes = Raw::encode(&["AUTH", "bob", "bpw"]);
    bytes.extend(Raw::encode(&["WHOAMI"]));
    bytes.extend(Raw::encode(&["SET", "p", "k", "v"]));
    p.send_bytes(&bytes);
    assert_eq!(p.read(), ok());
    assert_eq!(p.read(), V::Bulk(b"bob".to_vec()));
    assert!(p.read().is_error_code("NOPERM"));

    // A wrong password for a logged-in session keeps its user.
    assert_eq!(c.cmd(&["AUTH", "bob", "wrong"]), wrongpass);
    assert_eq!(c.cmd(&["WHOAMI"]), V::Bulk(b"default".to_vec()));
}

#[test]
fn the_redis_crate_logs_in_with_resp2_and_resp3() {
    let server = Server::start();
    let mut admin = server.admin();
    assert_eq!(
        admin.cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]),
        ok()
    );
    for url in [
        format!("redis://admin:{ADMIN_PW}@127.0.0.1:{}/", server.port),
        format!(
            "redis://admin:{ADMIN_PW}@127.0.0.1:{}/?protocol=resp3",
            server.port
        ),
    ] {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut con = client.get_connection().unwrap();
        let _: () = redis::cmd("SET")
            .arg("p")
            .arg("k")
            .arg("v")
            .query(&mut con)
            .unwrap();
        let v: String = redis::cmd("GET").arg("p").arg("k").query(&mut con).unwrap();
        assert_eq!(v, "v");
        let me: String = redis::cmd("WHOAMI").query(&mut con).unwrap();
        assert_eq!(me, "admin");
    }
    let bad = redis::Client::open(format!("redis://admin:nope@127.0.0.1:{}/", server.port))
        .unwrap()
        .get_connection();
    assert!(bad.is_err());
}

#[test]
fn failures_are_logged_and_ten_in_a_row_close_the_connection() {
    let server = Server::start();
    let mut c = server.raw();
    for i in 1..=10 {
        let reply = c.cmd(&["AUTH", "admin", "Wr0ngGuess-77"]);
        assert_eq!(
            reply,
            V::Error("WRONGPASS invalid username-password pair or user is disabled.".into()),
            "attempt {i}"
        );
    }
    assert!(c.closed_by_server());
    // An unknown user answers exactly the same.
    let mut d = server.raw();
    assert_eq!(
        d.cmd(&["AUTH", "nobody", "x"]),
        V::Error("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    // A success resets the count (nine failures so far with the one above).
    for _ in 0..8 {
        assert!(d.cmd(&["AUTH", "admin", "x"]).is_error_code("WRONGPASS"));
    }
    assert_eq!(d.cmd(&["AUTH", "admin", ADMIN_PW]), ok());
    assert!(d.cmd(&["AUTH", "admin", "x"]).is_error_code("WRONGPASS"));
    assert_eq!(d.cmd(&["PING"]), V::Simple("PONG".into()));
    let logs = server.log_text();
    let warned = logs
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("failed login") && l.contains("127.0.0.1:"))
        .count();
    assert!(warned >= 21, "{warned} warnings in\n{logs}");
    assert!(logs.contains("10 failed logins in a row"));
}

/// The grant levels of the matrix: (user, target, permission).
const LEVELS: [(&str, &str, &str); 5] = [
    ("none", "", ""),
    ("reader", "p", "READ"),
    ("writer", "p", "WRITE"),
    ("padmin", "p", "ADMIN"),
    ("admin2", "*", "ADMIN"),
];

/// Every command, and whether each level may run it (PROTOCOL.md's tables). `ME` is the
/// caller's own name, `v` another user.
const MATRIX: &[(&str, [bool; 5])] = &[
    ("GET p k", [false, true, false, true, true]),
    ("MGET p k k2", [false, true, false, true, true]),
    ("EXISTS p k", [false, true, false, true, true]),
    ("DESCRIBE PARTITION p", [false, true, false, true, true]),
    ("STATS PARTITION p", [false, true, false, true, true]),
    ("SET p k 1", [false, false, true, true, true]),
    ("MSET p k 1 k2 2", [false, false, true, true, true]),
    ("DEL p k2", [false, false, true, true, true]),
    ("INCR p k", [false, false, true, true, true]),
    ("DECR p k", [false, false, true, true, true]),
    ("INCRBY p k 2", [false, false, true, true, true]),
    ("DECRBY p k 2", [false, false, true, true, true]),
    ("GRANT READ ON p TO v", [false, false, false, true, true]),
    ("REVOKE READ ON p FROM v", [false, false, false, true, true]),
    ("GRANT READ ON * TO v", [false, false, false, false, true]),
    (
        "REVOKE READ ON * FROM v",
        [false, false, false, false, true],
    ),
    (
        "CREATE PARTITION q INT MEMORY",
        [false, false, false, false, true],
    ),
    ("CREATE USER w pw", [false, false, false, false, true]),
    ("DROP USER v", [false, false, false, false, true]),
    ("LIST USERS", [false, false, false, false, true]),
    (
        "ALTER USER v PASSWORD x",
        [false, false, false, false, true],
    ),
    ("DESCRIBE USER v", [false, false, false, false, true]),
    ("ALTER USER ME PASSWORD ME", [true; 5]),
    ("DESCRIBE USER ME", [true; 5]),
    ("LIST PARTITIONS", [true; 5]),
    ("WHOAMI", [true; 5]),
    ("ECHO hi", [true; 5]),
    ("INFO server", [true; 5]),
    ("COMMAND COUNT", [true; 5]),
    ("CLIENT ID", [true; 5]),
    ("CONFIG GET port", [true; 5]),
    ("PING", [true; 5]),
    ("HELLO 2", [true; 5]),
    ("AUTH v vpw", [true; 5]),
    ("LOGIN v vpw", [true; 5]),
    ("QUIT", [true; 5]),
    // Last: they destroy what the rows above need (and SHUTDOWN is only tried denied).
    ("DROP PARTITION p", [false, false, false, true, true]),
    ("SHUTDOWN", [false, false, false, false, true]),
];

#[test]
fn permission_matrix_every_command_by_grant_level() {
    let server = Server::start();
    let mut admin = server.admin();
    let setup = |admin: &mut Raw| {
        let _ = admin.cmd(&["CREATE", "PARTITION", "p", "INT", "MEMORY"]);
        let _ = admin.cmd(&["CREATE", "USER", "v", "vpw"]);
        let _ = admin.cmd(&["DROP", "PARTITION", "q"]);
        let _ = admin.cmd(&["DROP", "USER", "w"]);
        for (user, target, perm) in LEVELS {
            if !perm.is_empty() {
                assert_eq!(admin.cmd(&["GRANT", perm, "ON", target, "TO", user]), ok());
            }
        }
    };
    for (user, _, _) in LEVELS {
        assert_eq!(admin.cmd(&["CREATE", "USER", user, user]), ok());
    }
    setup(&mut admin);
    for (line, expected) in MATRIX {
        for (level, (user, _, _)) in LEVELS.iter().enumerate() {
            let allowed = expected[level];
            if *line == "SHUTDOWN" && allowed {
                continue;
            }
            let words: Vec<&str> = line
                .split(' ')
                .map(|w| if w == "ME" { *user } else { w })
                .collect();
            // A fresh session per cell: QUIT, AUTH and HELLO change the session.
            let mut c = server.login(user, user);
            let reply = c.cmd(&words);
            let denied = reply.is_error_code("NOPERM");
            assert_eq!(
                !denied,
                allowed,
                "{line} as {user}: expected {}, got {reply:?}",
                if allowed { "allowed" } else { "NOPERM" }
            );
            if allowed {
                assert!(
                    !reply.is_error_code("NOAUTH") && !reply.is_error_code("ERR"),
                    "{line} as {user}: {reply:?}"
                );
                setup(&mut admin);
            }
        }
    }
    // ADMIN on * may SHUTDOWN.
    let mut c = server.login("admin2", "admin2");
    c.send(&["SHUTDOWN"]);
    assert!(c.closed_by_server());
}

#[test]
fn grants_and_revocations_reach_open_sessions_on_every_shard() {
    let server = Server::start_in(
        harness::fresh_dir(),
        &["--admin-password", ADMIN_PW, "--shards", "4"],
    );
    let mut admin = server.admin();
    for p in ["a", "b", "c", "d"] {
        assert_eq!(
            admin.cmd(&["CREATE", "PARTITION", p, "INT", "MEMORY"]),
            ok()
        );
    }
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", "bpw"]), ok());
    // Eight sessions: dealt round-robin, two per shard; each reads all four partitions, so
    // both local and forwarded requests are checked.
    let mut sessions: Vec<Raw> = (0..8).map(|_| server.login("bob", "bpw")).collect();
    let all_read = |sessions: &mut Vec<Raw>, allowed: bool| {
        for s in sessions.iter_mut() {
            for p in ["a", "b", "c", "d"] {
                let reply = s.cmd(&["GET", p, "k"]);
                if allowed {
                    assert_eq!(reply, V::Null, "GET {p}");
                } else {
                    assert!(reply.is_error_code("NOPERM"), "GET {p}: {reply:?}");
                }
            }
        }
    };
    all_read(&mut sessions, false);
    assert_eq!(admin.cmd(&["GRANT", "READ", "ON", "*", "TO", "bob"]), ok());
    all_read(&mut sessions, true);
    assert!(sessions[0]
        .cmd(&["SET", "a", "k", "1"])
        .is_error_code("NOPERM"));
    assert_eq!(
        admin.cmd(&["REVOKE", "READ", "ON", "*", "FROM", "bob"]),
        ok()
    );
    all_read(&mut sessions, false);
    // A grant on one partition, then ADMIN on it: READ and WRITE follow.
    assert_eq!(admin.cmd(&["GRANT", "ADMIN", "ON", "c", "TO", "bob"]), ok());
    for s in sessions.iter_mut() {
        assert_eq!(s.cmd(&["SET", "c", "k", "7"]), ok());
        assert_eq!(s.cmd(&["GET", "c", "k"]), V::Int(7));
        assert!(s.cmd(&["GET", "d", "k"]).is_error_code("NOPERM"));
        assert_eq!(s.cmd(&["LIST", "PARTITIONS"]).texts(), ["c"]);
    }
    // Dropping the partition revokes the grants on it, even if it comes back.
    assert_eq!(sessions[1].cmd(&["DROP", "PARTITION", "c"]), ok());
    assert_eq!(
        admin.cmd(&["CREATE", "PARTITION", "c", "INT", "MEMORY"]),
        ok()
    );
    for s in sessions.iter_mut() {
        assert!(s.cmd(&["GET", "c", "k"]).is_error_code("NOPERM"));
        assert_eq!(s.cmd(&["LIST", "PARTITIONS"]), V::Array(vec![]));
    }
}

#[test]
fn drop_user_closes_its_sessions_and_a_new_user_of_that_name_is_new() {
    let server = Server::start_in(
        harness::fresh_dir(),
        &["--admin-password", ADMIN_PW, "--shards", "3"],
    );
    let mut admin = server.admin();
    assert_eq!(
        admin.cmd(&["CREATE", "PARTITION", "p", "INT", "MEMORY"]),
        ok()
    );
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", "bpw"]), ok());
    assert_eq!(admin.cmd(&["CREATE", "USER", "eve", "epw"]), ok());
    assert_eq!(admin.cmd(&["GRANT", "READ", "ON", "p", "TO", "bob"]), ok());
    let mut bobs: Vec<Raw> = (0..6).map(|_| server.login("bob", "bpw")).collect();
    let mut eve = server.login("eve", "epw");
    for b in bobs.iter_mut() {
        assert_eq!(b.cmd(&["GET", "p", "k"]), V::Null);
    }
    assert_eq!(admin.cmd(&["DROP", "USER", "bob"]), ok());
    for b in bobs.iter_mut() {
        assert!(b.closed_by_server());
    }
    // Others are untouched.
    assert_eq!(eve.cmd(&["WHOAMI"]), V::Bulk(b"eve".to_vec()));
    let mut c = server.raw();
    assert!(c.cmd(&["AUTH", "bob", "bpw"]).is_error_code("WRONGPASS"));
    // Re-created: a new user, with a new password and none of the old grants.
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", "new"]), ok());
    assert!(c.cmd(&["AUTH", "bob", "bpw"]).is_error_code("WRONGPASS"));
    assert_eq!(c.cmd(&["AUTH", "bob", "new"]), ok());
    assert!(c.cmd(&["GET", "p", "k"]).is_error_code("NOPERM"));
    assert!(admin.cmd(&["DROP", "USER", "admin"]).is_error_code("ERR"));
    assert!(admin.cmd(&["DROP", "USER", "ghost"]).is_error_code("ERR"));
}

#[test]
fn missing_partitions_do_not_leak_their_names() {
    let server = Server::start();
    let mut admin = server.admin();
    assert_eq!(
        admin.cmd(&["CREATE", "PARTITION", "mine", "INT", "MEMORY"]),
        ok()
    );
    assert_eq!(
        admin.cmd(&["CREATE", "PARTITION", "secret", "INT", "MEMORY"]),
        ok()
    );
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", "bpw"]), ok());
    assert_eq!(admin.cmd(&["CREATE", "USER", "rall", "rpw"]), ok());
    assert_eq!(
        admin.cmd(&["GRANT", "READ", "ON", "mine", "TO", "bob"]),
        ok()
    );
    assert_eq!(admin.cmd(&["GRANT", "READ", "ON", "*", "TO", "rall"]), ok());
    let mut bob = server.login("bob", "bpw");
    let strip = |v: V, name: &str| match v {
        V::Error(e) => e.replace(name, "NAME"),
        other => panic!("{other:?}"),
    };
    for cmd in [
        &["GET", "NAME", "k"][..],
        &["SET", "NAME", "k", "1"],
        &["DESCRIBE", "PARTITION", "NAME"],
        &["STATS", "PARTITION", "NAME"],
        &["DROP", "PARTITION", "NAME"],
        &["GRANT", "READ", "ON", "NAME", "TO", "bob"],
    ] {
        let existing: Vec<&str> = cmd
            .iter()
            .map(|w| if *w == "NAME" { "secret" } else { w })
            .collect();
        let missing: Vec<&str> = cmd
            .iter()
            .map(|w| if *w == "NAME" { "nosuch" } else { w })
            .collect();
        let a = strip(bob.cmd(&existing), "secret");
        let b = strip(bob.cmd(&missing), "nosuch");
        assert!(a.starts_with("NOPERM"), "{a}");
        assert_eq!(a, b, "{cmd:?}");
    }
    assert_eq!(bob.cmd(&["LIST", "PARTITIONS"]).texts(), ["mine"]);
    // Holding something on *, one may know: NOPARTITION.
    let mut rall = server.login("rall", "rpw");
    assert!(rall
        .cmd(&["GET", "nosuch", "k"])
        .is_error_code("NOPARTITION"));
    assert!(rall
        .cmd(&["SET", "nosuch", "k", "1"])
        .is_error_code("NOPARTITION"));
    assert!(rall
        .cmd(&["SET", "secret", "k", "1"])
        .is_error_code("NOPERM"));
    assert_eq!(
        rall.cmd(&["LIST", "PARTITIONS"]).texts(),
        ["mine", "secret"]
    );
    assert!(admin
        .cmd(&["GET", "nosuch", "k"])
        .is_error_code("NOPARTITION"));
}

#[test]
fn users_and_grants_survive_a_restart() {
    let server = Server::start();
    let mut admin = server.admin();
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", "bpw"]), ok());
    assert_eq!(admin.cmd(&["CREATE", "USER", "carol", "cpw"]), ok());
    assert_eq!(
        admin.cmd(&["GRANT", "WRITE", "ON", "orders", "TO", "bob"]),
        ok()
    );
    assert_eq!(admin.cmd(&["GRANT", "READ", "ON", "*", "TO", "bob"]), ok());
    assert_eq!(
        admin.cmd(&["ALTER", "USER", "carol", "PASSWORD", "cpw2"]),
        ok()
    );
    assert_eq!(admin.cmd(&["DROP", "USER", "carol"]), ok());
    drop(admin);
    let dir = server.stop_keeping_data();

    // No admin password this time: the stored one stays.
    let server = Server::start_in(dir, &["--shards", "2"]);
    let mut bob = server.login("bob", "bpw");
    assert_eq!(
        bob.cmd(&["DESCRIBE", "USER", "bob"]),
        V::Array(vec![
            V::Bulk(b"name".to_vec()),
            V::Bulk(b"bob".to_vec()),
            V::Bulk(b"grants".to_vec()),
            V::Array(vec![
                V::Bulk(b"*:READ".to_vec()),
                V::Bulk(b"orders:WRITE".to_vec())
            ]),
        ])
    );
    let mut admin = server.admin();
    assert_eq!(admin.cmd(&["LIST", "USERS"]).texts(), ["admin", "bob"]);
    assert_eq!(
        admin.cmd(&["CREATE", "PARTITION", "orders", "INT", "MEMORY"]),
        ok()
    );
    assert_eq!(bob.cmd(&["SET", "orders", "k", "1"]), ok());
    assert!(!server.data_dir.join("admin-password").exists());
}

#[test]
fn no_plaintext_password_on_disk_or_in_logs() {
    let user_pw = "Us3r-Plain-9d81e2";
    let new_pw = "N3w-Plain-44ab07";
    let wrong_pw = "Wr0ng-Plain-c5f3a9";
    let server = Server::start();
    let mut admin = server.admin();
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", user_pw]), ok());
    let mut bob = server.login("bob", user_pw);
    assert!(bob
        .cmd(&["AUTH", "bob", wrong_pw])
        .is_error_code("WRONGPASS"));
    assert_eq!(bob.cmd(&["ALTER", "USER", "bob", "PASSWORD", new_pw]), ok());
    let mut hello = server.raw();
    hello.send(&["HELLO", "3", "AUTH", "bob", new_pw]);
    let _ = hello.read();
    let logs = server.log_text();
    let dir = server.data_dir.clone();
    let files = files_under(&dir);
    assert!(!files.is_empty());
    for pw in [ADMIN_PW, user_pw, new_pw, wrong_pw] {
        assert!(!logs.contains(pw), "password {pw} in the logs");
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(pw), "password {pw} in {}", file.display());
        }
    }
    let users = std::fs::read_to_string(dir.join("users.json")).unwrap();
    assert!(users.contains("$argon2id$"));
}

#[test]
fn a_first_start_without_a_password_generates_one_in_a_private_file() {
    let dir = harness::fresh_dir();
    let server = Server::start_in(dir.clone(), &["--shards", "1"]);
    let path = dir.join("admin-password");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let password = std::fs::read_to_string(&path).unwrap();
    let password = password.trim_end();
    assert!(password.len() >= 16);
    let logs = server.log_text();
    assert!(logs.contains(&path.display().to_string()), "{logs}");
    assert!(!logs.contains(password));
    let mut admin = server.login("admin", password);
    assert_eq!(admin.cmd(&["WHOAMI"]), V::Bulk(b"admin".to_vec()));
    // The environment variable works too, and replaces it (removing the stale file).
    drop(admin);
    let dir = server.stop_keeping_data();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gokv-server"))
        .args(["--port", "0", "--shards", "1", "--data-dir"])
        .arg(&dir)
        .env("GOKV_ADMIN_PASSWORD", "from-env-pw")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut port = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(at) = line.find("listening on 127.0.0.1:") {
            let rest = &line[at + "listening on 127.0.0.1:".len()..];
            port = rest
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse::<u16>()
                .ok();
            break;
        }
    }
    let mut c = Raw::connect(port.unwrap());
    assert_eq!(c.cmd(&["AUTH", "admin", "from-env-pw"]), ok());
    assert!(!path.exists());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_changed_password_is_not_served_from_the_login_cache() {
    let server = Server::start_in(
        harness::fresh_dir(),
        &["--admin-password", ADMIN_PW, "--shards", "1"],
    );
    let mut admin = server.admin();
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", "old"]), ok());
    // Several logins: the first is checked by argon2, the rest come from the caches.
    for _ in 0..5 {
        let mut c = server.login("bob", "old");
        assert_eq!(c.cmd(&["WHOAMI"]), V::Bulk(b"bob".to_vec()));
    }
    assert_eq!(
        admin.cmd(&["ALTER", "USER", "bob", "PASSWORD", "new"]),
        ok()
    );
    let mut c = server.raw();
    assert!(c.cmd(&["AUTH", "bob", "old"]).is_error_code("WRONGPASS"));
    assert_eq!(c.cmd(&["AUTH", "bob", "new"]), ok());
    // Dropped and re-created with the old password: a new user, logged in afresh.
    assert_eq!(admin.cmd(&["DROP", "USER", "bob"]), ok());
    assert!(c.closed_by_server());
    let mut d = server.raw();
    assert!(d.cmd(&["AUTH", "bob", "new"]).is_error_code("WRONGPASS"));
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", "old"]), ok());
    assert!(d.cmd(&["AUTH", "bob", "new"]).is_error_code("WRONGPASS"));
    assert_eq!(d.cmd(&["AUTH", "bob", "old"]), ok());
}

/// The shard a connection lives on, from `CLIENT INFO`.
fn shard_of(c: &mut Raw) -> String {
    let line = c.cmd(&["CLIENT", "INFO"]).bulk_text();
    line.trim_end()
        .rsplit("shard=")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_migrated_connection_keeps_its_user_and_grants() {
    let server = Server::start_in(
        harness::fresh_dir(),
        &["--admin-password", ADMIN_PW, "--shards", "2"],
    );
    let mut admin = server.admin();
    // Placement fills shards in turn: one partition per shard.
    assert_eq!(
        admin.cmd(&["CREATE", "PARTITION", "p0", "INT", "MEMORY"]),
        ok()
    );
    assert_eq!(
        admin.cmd(&["CREATE", "PARTITION", "p1", "INT", "MEMORY"]),
        ok()
    );
    assert_eq!(admin.cmd(&["CREATE", "USER", "bob", "bpw"]), ok());
    assert_eq!(admin.cmd(&["GRANT", "READ", "ON", "p0", "TO", "bob"]), ok());
    assert_eq!(admin.cmd(&["GRANT", "READ", "ON", "p1", "TO", "bob"]), ok());
    let mut bob = server.login("bob", "bpw");
    let home = shard_of(&mut bob);
    // Read only the partition on the other shard until the connection moves there.
    let other = if home == "0" { "p1" } else { "p0" };
    let mut moved = false;
    for _ in 0..500 {
        assert_eq!(bob.cmd(&["GET", other, "k"]), V::Null);
        if shard_of(&mut bob) != home {
            moved = true;
            break;
        }
    }
    assert!(moved, "the connection never moved off shard {home}");
    assert_eq!(bob.cmd(&["WHOAMI"]), V::Bulk(b"bob".to_vec()));
    assert!(bob.cmd(&["SET", other, "k", "1"]).is_error_code("NOPERM"));
    assert_eq!(
        admin.cmd(&["REVOKE", "READ", "ON", other, "FROM", "bob"]),
        ok()
    );
    assert!(bob.cmd(&["GET", other, "k"]).is_error_code("NOPERM"));
    assert_eq!(admin.cmd(&["DROP", "USER", "bob"]), ok());
    assert!(bob.closed_by_server());
}
