//! Authentication and permissions, black-box: the real `gokv-server` on port 0, spoken to with
//! raw RESP (exact replies) and with the `redis` crate (a real client library).
//!
//! Servers come from tests/common (fresh data directory, killed when dropped, directory
//! removed) and log at debug level, so that the checks that no password reaches the logs see
//! everything the server might write.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

/// A start of a server for these tests: `args`, debug logs.
fn launch(args: &[&str]) -> Launch {
    Server::launch(args).env("RUST_LOG", "debug")
}

/// A server with `shards` shards (two or more, so that requests cross shards) and the admin
/// password [`ADMIN_PASSWORD`].
fn start(shards: &str) -> Server {
    launch(&["--shards", shards]).start()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
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

#[test]
fn before_login_only_open_commands_run() {
    let server = start("2");
    let mut c = server.raw_unauthenticated();
    let noauth = Resp::error("NOAUTH Authentication required.");
    assert_eq!(c.call_value(&["GET", "p", "k"]), noauth);
    assert_eq!(c.call_value(&["LIST", "PARTITIONS"]), noauth);
    assert_eq!(c.call_value(&["WHOAMI"]), noauth);
    assert_eq!(c.call_value(&["NOSUCHCOMMAND"]), noauth);
    assert_eq!(
        c.call_value(&["CREATE", "PARTITION", "p", "INT", "MEMORY"]),
        noauth
    );
    assert_eq!(c.call_value(&["PING"]), Resp::simple("PONG"));
    assert!(matches!(c.call_value(&["HELLO", "2"]), Resp::Array(_)));
    assert_eq!(c.call_value(&["QUIT"]), Resp::ok());
    c.expect_closed();
}

#[test]
fn every_login_form_works() {
    let server = start("2");
    let mut admin = server.raw();
    assert_eq!(admin.call_value(&["WHOAMI"]), Resp::bulk(b"admin"));
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "default", "dpw"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "bpw"]),
        Resp::ok()
    );

    let mut c = server.raw_unauthenticated();
    assert_eq!(c.call_value(&["LOGIN", "bob", "bpw"]), Resp::ok());
    assert_eq!(c.call_value(&["WHOAMI"]), Resp::bulk(b"bob"));
    // AUTH <password> is user `default`.
    assert_eq!(c.call_value(&["AUTH", "dpw"]), Resp::ok());
    assert_eq!(c.call_value(&["WHOAMI"]), Resp::bulk(b"default"));

    // HELLO 3 AUTH: RESP3 map on success; on failure neither login nor protocol change.
    let mut h = server.raw_unauthenticated();
    let wrongpass = Resp::error("WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(
        h.call_value(&["HELLO", "3", "AUTH", "bob", "nope"]),
        wrongpass
    );
    h.send(&cmd(&["GET", "p", "k"]));
    assert_eq!(
        h.read_value(),
        Resp::error("NOAUTH Authentication required.")
    );
    h.send(&cmd(&["HELLO", "3", "AUTH", "bob", "bpw", "SETNAME", "x"]));
    // A RESP3 map of 7 pairs.
    let first = h.read_value();
    assert!(
        matches!(first, Resp::Map(ref m) if m.len() == 7),
        "{first:?}"
    );
    assert_eq!(h.call_value(&["WHOAMI"]), Resp::bulk(b"bob"));
    assert_eq!(h.call_value(&["CLIENT", "GETNAME"]), Resp::bulk(b"x"));
    // RESP3 null proves the protocol switched.
    assert_eq!(
        admin.call_value(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["GRANT", "READ", "ON", "p", "TO", "bob"]),
        Resp::ok()
    );
    h.send(&cmd(&["GET", "p", "k"]));
    assert_eq!(h.read_value(), Resp::Null);

    // Pipelined: AUTH then a command in one write; the command runs as the new user.
    let mut p = server.raw_unauthenticated();
    let mut bytes = cmd(&["AUTH", "bob", "bpw"]);
    bytes.extend(cmd(&["WHOAMI"]));
    bytes.extend(cmd(&["SET", "p", "k", "v"]));
    p.send(&bytes);
    assert_eq!(p.read_value(), Resp::ok());
    assert_eq!(p.read_value(), Resp::bulk(b"bob"));
    assert!(p.read_value().is_error_code("NOPERM"));

    // A wrong password for a logged-in session keeps its user.
    assert_eq!(c.call_value(&["AUTH", "bob", "wrong"]), wrongpass);
    assert_eq!(c.call_value(&["WHOAMI"]), Resp::bulk(b"default"));
}

#[test]
fn the_redis_crate_logs_in_with_resp2_and_resp3() {
    let server = start("2");
    let mut admin = server.raw();
    assert_eq!(
        admin.call_value(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]),
        Resp::ok()
    );
    for url in [
        format!(
            "redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{}/",
            server.port()
        ),
        format!(
            "redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{}/?protocol=resp3",
            server.port()
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
    let bad = redis::Client::open(format!("redis://admin:nope@127.0.0.1:{}/", server.port()))
        .unwrap()
        .get_connection();
    assert!(bad.is_err());
}

#[test]
fn failures_are_logged_and_ten_in_a_row_close_the_connection() {
    let server = start("2");
    let mut c = server.raw_unauthenticated();
    for i in 1..=10 {
        let reply = c.call_value(&["AUTH", "admin", "Wr0ngGuess-77"]);
        assert_eq!(
            reply,
            Resp::error("WRONGPASS invalid username-password pair or user is disabled."),
            "attempt {i}"
        );
    }
    c.expect_closed();
    // An unknown user answers exactly the same.
    let mut d = server.raw_unauthenticated();
    assert_eq!(
        d.call_value(&["AUTH", "nobody", "x"]),
        Resp::error("WRONGPASS invalid username-password pair or user is disabled.")
    );
    // A success resets the count (nine failures so far with the one above).
    for _ in 0..8 {
        assert!(d
            .call_value(&["AUTH", "admin", "x"])
            .is_error_code("WRONGPASS"));
    }
    assert_eq!(d.call_value(&["AUTH", "admin", ADMIN_PASSWORD]), Resp::ok());
    assert!(d
        .call_value(&["AUTH", "admin", "x"])
        .is_error_code("WRONGPASS"));
    assert_eq!(d.call_value(&["PING"]), Resp::simple("PONG"));
    // Logged, but at most a line a second per shard: the first failure of a second in full,
    // the others as a count once the second is over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let logs = server.log_text();
        let warned: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("failed login"))
            .collect();
        let counted = warned.iter().any(|l| l.contains("more failed logins"));
        if counted {
            assert!(
                warned.iter().any(|l| l.contains("from 127.0.0.1:")),
                "{logs}"
            );
            // 20 failures, two shards: fewer lines than failures, and at most a line a second
            // per shard (a limiter's second need not start on the log's: two per shard per
            // printed second at most). Not a fixed total: on a loaded machine each argon2
            // check may take a second, and then each failure may be the first of its second.
            let fulls: Vec<&str> = warned
                .iter()
                .filter(|l| l.contains("failed login as"))
                .copied()
                .collect();
            assert!(fulls.len() < 20, "{} warnings in\n{logs}", warned.len());
            let mut per_second = std::collections::HashMap::new();
            for line in &fulls {
                *per_second
                    .entry(line.get(..21).unwrap_or(line))
                    .or_insert(0) += 1;
            }
            assert!(
                per_second.values().all(|&n| n <= 4),
                "more than a line a second per shard in\n{logs}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no count of unlogged failures in\n{logs}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The grant levels of the matrix: (user, target, permission).
const LEVELS: [(&str, &str, &str); 5] = [
    ("none", "", ""),
    ("reader", "p", "READ"),
    ("writer", "p", "WRITE"),
    ("padmin", "p", "ADMIN"),
    ("admin2", "*", "ADMIN"),
];

/// Every command, and whether each level may run it (docs/commands.md's `Permission:` lines). `ME` is the
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
    (
        "ALTER PARTITION p SET eviction allkeys-lru default-ttl 0",
        [false, false, false, true, true],
    ),
    // A quota is the operator's: the partition's own ADMIN may not change it.
    (
        "ALTER PARTITION p SET max-keys 1000000",
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
    ("CONFIG GET port", [false, false, false, false, true]),
    (
        "CONFIG SET slowlog-max-len 128",
        [false, false, false, false, true],
    ),
    ("SLOWLOG LEN", [false, false, false, false, true]),
    ("SLOWLOG GET 1", [false, false, false, false, true]),
    ("LATENCY LATEST", [false, false, false, false, true]),
    ("LATENCY HISTOGRAM", [false, false, false, false, true]),
    ("PING", [true; 5]),
    // (EXEC and DISCARD alone answer "without MULTI"; their permission is MULTI's.)
    ("MULTI", [true; 5]),
    ("WATCH p k k2", [false, true, false, true, true]),
    ("UNWATCH", [true; 5]),
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
    let server = start("2");
    let mut admin = server.raw();
    let setup = |admin: &mut RawConn| {
        let _ = admin.call_value(&["CREATE", "PARTITION", "p", "INT", "MEMORY"]);
        let _ = admin.call_value(&["CREATE", "USER", "v", "vpw"]);
        let _ = admin.call_value(&["DROP", "PARTITION", "q"]);
        let _ = admin.call_value(&["DROP", "USER", "w"]);
        for (user, target, perm) in LEVELS {
            if !perm.is_empty() {
                assert_eq!(
                    admin.call_value(&["GRANT", perm, "ON", target, "TO", user]),
                    Resp::ok()
                );
            }
        }
    };
    for (user, _, _) in LEVELS {
        assert_eq!(
            admin.call_value(&["CREATE", "USER", user, user]),
            Resp::ok()
        );
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
            let reply = c.call_value(&words);
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
    c.send(&cmd(&["SHUTDOWN"]));
    c.expect_closed();
}

#[test]
fn grants_and_revocations_reach_open_sessions_on_every_shard() {
    let server = start("4");
    let mut admin = server.raw();
    for p in ["a", "b", "c", "d"] {
        assert_eq!(
            admin.call_value(&["CREATE", "PARTITION", p, "INT", "MEMORY"]),
            Resp::ok()
        );
    }
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "bpw"]),
        Resp::ok()
    );
    // Eight sessions: dealt round-robin, two per shard; each reads all four partitions, so
    // both local and forwarded requests are checked.
    let mut sessions: Vec<RawConn> = (0..8).map(|_| server.login("bob", "bpw")).collect();
    let all_read = |sessions: &mut Vec<RawConn>, allowed: bool| {
        for s in sessions.iter_mut() {
            for p in ["a", "b", "c", "d"] {
                let reply = s.call_value(&["GET", p, "k"]);
                if allowed {
                    assert_eq!(reply, Resp::Bulk(None), "GET {p}");
                } else {
                    assert!(reply.is_error_code("NOPERM"), "GET {p}: {reply:?}");
                }
            }
        }
    };
    all_read(&mut sessions, false);
    assert_eq!(
        admin.call_value(&["GRANT", "READ", "ON", "*", "TO", "bob"]),
        Resp::ok()
    );
    all_read(&mut sessions, true);
    assert!(sessions[0]
        .call_value(&["SET", "a", "k", "1"])
        .is_error_code("NOPERM"));
    assert_eq!(
        admin.call_value(&["REVOKE", "READ", "ON", "*", "FROM", "bob"]),
        Resp::ok()
    );
    all_read(&mut sessions, false);
    // A grant on one partition, then ADMIN on it: READ and WRITE follow.
    assert_eq!(
        admin.call_value(&["GRANT", "ADMIN", "ON", "c", "TO", "bob"]),
        Resp::ok()
    );
    for s in sessions.iter_mut() {
        assert_eq!(s.call_value(&["SET", "c", "k", "7"]), Resp::ok());
        assert_eq!(s.call_value(&["GET", "c", "k"]), Resp::Int(7));
        assert!(s.call_value(&["GET", "d", "k"]).is_error_code("NOPERM"));
        assert_eq!(s.call_value(&["LIST", "PARTITIONS"]).texts(), ["c"]);
    }
    // Dropping the partition revokes the grants on it, even if it comes back.
    assert_eq!(
        sessions[1].call_value(&["DROP", "PARTITION", "c"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "PARTITION", "c", "INT", "MEMORY"]),
        Resp::ok()
    );
    for s in sessions.iter_mut() {
        assert!(s.call_value(&["GET", "c", "k"]).is_error_code("NOPERM"));
        assert_eq!(s.call_value(&["LIST", "PARTITIONS"]), Resp::array(vec![]));
    }
}

#[test]
fn drop_user_closes_its_sessions_and_a_new_user_of_that_name_is_new() {
    let server = start("3");
    let mut admin = server.raw();
    assert_eq!(
        admin.call_value(&["CREATE", "PARTITION", "p", "INT", "MEMORY"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "bpw"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "eve", "epw"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["GRANT", "READ", "ON", "p", "TO", "bob"]),
        Resp::ok()
    );
    let mut bobs: Vec<RawConn> = (0..6).map(|_| server.login("bob", "bpw")).collect();
    let mut eve = server.login("eve", "epw");
    for b in bobs.iter_mut() {
        assert_eq!(b.call_value(&["GET", "p", "k"]), Resp::Bulk(None));
    }
    assert_eq!(admin.call_value(&["DROP", "USER", "bob"]), Resp::ok());
    for b in bobs.iter_mut() {
        b.expect_closed();
    }
    // Others are untouched.
    assert_eq!(eve.call_value(&["WHOAMI"]), Resp::bulk(b"eve"));
    let mut c = server.raw_unauthenticated();
    assert!(c
        .call_value(&["AUTH", "bob", "bpw"])
        .is_error_code("WRONGPASS"));
    // Re-created: a new user, with a new password and none of the old grants.
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "new"]),
        Resp::ok()
    );
    assert!(c
        .call_value(&["AUTH", "bob", "bpw"])
        .is_error_code("WRONGPASS"));
    assert_eq!(c.call_value(&["AUTH", "bob", "new"]), Resp::ok());
    assert!(c.call_value(&["GET", "p", "k"]).is_error_code("NOPERM"));
    assert!(admin
        .call_value(&["DROP", "USER", "admin"])
        .is_error_code("ERR"));
    assert!(admin
        .call_value(&["DROP", "USER", "ghost"])
        .is_error_code("ERR"));
}

#[test]
fn missing_partitions_do_not_leak_their_names() {
    let server = start("2");
    let mut admin = server.raw();
    assert_eq!(
        admin.call_value(&["CREATE", "PARTITION", "mine", "INT", "MEMORY"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "PARTITION", "secret", "INT", "MEMORY"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "bpw"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "rall", "rpw"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["GRANT", "READ", "ON", "mine", "TO", "bob"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["GRANT", "READ", "ON", "*", "TO", "rall"]),
        Resp::ok()
    );
    let mut bob = server.login("bob", "bpw");
    let strip = |v: Resp, name: &str| match v {
        Resp::Error(e) => String::from_utf8_lossy(&e).replace(name, "NAME"),
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
        let a = strip(bob.call_value(&existing), "secret");
        let b = strip(bob.call_value(&missing), "nosuch");
        assert!(a.starts_with("NOPERM"), "{a}");
        assert_eq!(a, b, "{cmd:?}");
    }
    assert_eq!(bob.call_value(&["LIST", "PARTITIONS"]).texts(), ["mine"]);
    // Holding something on *, one may know: NOPARTITION.
    let mut rall = server.login("rall", "rpw");
    assert!(rall
        .call_value(&["GET", "nosuch", "k"])
        .is_error_code("NOPARTITION"));
    assert!(rall
        .call_value(&["SET", "nosuch", "k", "1"])
        .is_error_code("NOPARTITION"));
    assert!(rall
        .call_value(&["SET", "secret", "k", "1"])
        .is_error_code("NOPERM"));
    assert_eq!(
        rall.call_value(&["LIST", "PARTITIONS"]).texts(),
        ["mine", "secret"]
    );
    assert!(admin
        .call_value(&["GET", "nosuch", "k"])
        .is_error_code("NOPARTITION"));
}

#[test]
fn users_and_grants_survive_a_restart() {
    let dir = DataDir::new("auth");
    let server = launch(&["--shards", "2"]).data_dir(&dir).start();
    let mut admin = server.raw();
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "bpw"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "carol", "cpw"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["GRANT", "WRITE", "ON", "orders", "TO", "bob"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["GRANT", "READ", "ON", "*", "TO", "bob"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["ALTER", "USER", "carol", "PASSWORD", "cpw2"]),
        Resp::ok()
    );
    assert_eq!(admin.call_value(&["DROP", "USER", "carol"]), Resp::ok());
    drop(admin);
    server.stop();

    // No admin password this time: the stored one stays.
    let server = launch(&["--shards", "2"])
        .data_dir(&dir)
        .without_admin_password()
        .start();
    let mut bob = server.login("bob", "bpw");
    assert_eq!(
        bob.call_value(&["DESCRIBE", "USER", "bob"]),
        Resp::array(vec![
            Resp::bulk(b"name"),
            Resp::bulk(b"bob"),
            Resp::bulk(b"grants"),
            Resp::array(vec![Resp::bulk(b"*:READ"), Resp::bulk(b"orders:WRITE")]),
            Resp::bulk(b"default"),
            Resp::Bulk(None),
        ])
    );
    let mut admin = server.raw();
    assert_eq!(
        admin.call_value(&["LIST", "USERS"]).texts(),
        ["admin", "bob"]
    );
    assert_eq!(
        admin.call_value(&["CREATE", "PARTITION", "orders", "INT", "MEMORY"]),
        Resp::ok()
    );
    assert_eq!(bob.call_value(&["SET", "orders", "k", "1"]), Resp::ok());
    assert!(!server.data_dir().join("admin-password").exists());
}

#[test]
fn no_plaintext_password_on_disk_or_in_logs() {
    let user_pw = "Us3r-Plain-9d81e2";
    let new_pw = "N3w-Plain-44ab07";
    let wrong_pw = "Wr0ng-Plain-c5f3a9";
    let server = start("2");
    let mut admin = server.raw();
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", user_pw]),
        Resp::ok()
    );
    let mut bob = server.login("bob", user_pw);
    assert!(bob
        .call_value(&["AUTH", "bob", wrong_pw])
        .is_error_code("WRONGPASS"));
    assert_eq!(
        bob.call_value(&["ALTER", "USER", "bob", "PASSWORD", new_pw]),
        Resp::ok()
    );
    let mut hello = server.raw_unauthenticated();
    hello.send(&cmd(&["HELLO", "3", "AUTH", "bob", new_pw]));
    let _ = hello.read_value();
    let logs = server.log_text();
    let dir = server.data_dir();
    let files = files_under(dir);
    assert!(!files.is_empty());
    for pw in [ADMIN_PASSWORD, user_pw, new_pw, wrong_pw] {
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
    let dir = DataDir::new("auth");
    let server = launch(&["--shards", "1"])
        .data_dir(&dir)
        .without_admin_password()
        .start();
    let path = dir.path().join("admin-password");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let password = std::fs::read_to_string(&path).unwrap();
    let password = password.trim_end();
    assert!(password.len() >= 16);
    let logs = server.log_text();
    assert!(logs.contains(&path.display().to_string()), "{logs}");
    assert!(!logs.contains(password));
    let mut admin = server.login("admin", password);
    assert_eq!(admin.call_value(&["WHOAMI"]), Resp::bulk(b"admin"));
    // The environment variable works too, and replaces it (removing the stale file).
    drop(admin);
    server.stop();
    let server = launch(&["--shards", "1"])
        .data_dir(&dir)
        .without_admin_password()
        .env("GOKV_ADMIN_PASSWORD", "from-env-pw")
        .start();
    let mut c = server.raw_unauthenticated();
    assert_eq!(c.call_value(&["AUTH", "admin", "from-env-pw"]), Resp::ok());
    assert!(!path.exists());
}

/// The generated password file goes away once `admin` gets another password at run time:
/// a password that no longer works must not lie around in plain text.
#[test]
fn altering_the_admin_password_removes_the_generated_file() {
    let dir = DataDir::new("auth");
    let server = launch(&["--shards", "2"])
        .data_dir(&dir)
        .without_admin_password()
        .start();
    let path = dir.path().join("admin-password");
    let password = std::fs::read_to_string(&path).unwrap();
    let mut admin = server.login("admin", password.trim_end());
    // Another user's password change leaves it alone.
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "b"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["ALTER", "USER", "bob", "PASSWORD", "b2"]),
        Resp::ok()
    );
    assert!(path.exists());
    assert_eq!(
        admin.call_value(&["ALTER", "USER", "admin", "PASSWORD", "chosen-pw"]),
        Resp::ok()
    );
    assert!(!path.exists(), "the stale password file is still there");
    let mut c = server.login("admin", "chosen-pw");
    assert_eq!(c.call_value(&["WHOAMI"]), Resp::bulk(b"admin"));
}

#[test]
fn a_changed_password_is_not_served_from_the_login_cache() {
    let server = start("1");
    let mut admin = server.raw();
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "old"]),
        Resp::ok()
    );
    // Several logins: the first is checked by argon2, the rest come from the caches.
    for _ in 0..5 {
        let mut c = server.login("bob", "old");
        assert_eq!(c.call_value(&["WHOAMI"]), Resp::bulk(b"bob"));
    }
    assert_eq!(
        admin.call_value(&["ALTER", "USER", "bob", "PASSWORD", "new"]),
        Resp::ok()
    );
    let mut c = server.raw_unauthenticated();
    assert!(c
        .call_value(&["AUTH", "bob", "old"])
        .is_error_code("WRONGPASS"));
    assert_eq!(c.call_value(&["AUTH", "bob", "new"]), Resp::ok());
    // Dropped and re-created with the old password: a new user, logged in afresh.
    assert_eq!(admin.call_value(&["DROP", "USER", "bob"]), Resp::ok());
    c.expect_closed();
    let mut d = server.raw_unauthenticated();
    assert!(d
        .call_value(&["AUTH", "bob", "new"])
        .is_error_code("WRONGPASS"));
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "old"]),
        Resp::ok()
    );
    assert!(d
        .call_value(&["AUTH", "bob", "new"])
        .is_error_code("WRONGPASS"));
    assert_eq!(d.call_value(&["AUTH", "bob", "old"]), Resp::ok());
}

#[test]
fn a_migrated_connection_keeps_its_user_and_grants() {
    let server = start("2");
    let mut admin = server.raw();
    // Placement fills shards in turn: one partition per shard.
    assert_eq!(
        admin.call_value(&["CREATE", "PARTITION", "p0", "INT", "MEMORY"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "PARTITION", "p1", "INT", "MEMORY"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["CREATE", "USER", "bob", "bpw"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["GRANT", "READ", "ON", "p0", "TO", "bob"]),
        Resp::ok()
    );
    assert_eq!(
        admin.call_value(&["GRANT", "READ", "ON", "p1", "TO", "bob"]),
        Resp::ok()
    );
    let mut bob = server.login("bob", "bpw");
    let home = bob.shard();
    // Read only the partition on the other shard until the connection moves there.
    let other = if home == "0" { "p1" } else { "p0" };
    let mut moved = false;
    for _ in 0..500 {
        assert_eq!(bob.call_value(&["GET", other, "k"]), Resp::Bulk(None));
        if bob.shard() != home {
            moved = true;
            break;
        }
    }
    assert!(moved, "the connection never moved off shard {home}");
    assert_eq!(bob.call_value(&["WHOAMI"]), Resp::bulk(b"bob"));
    assert!(bob
        .call_value(&["SET", other, "k", "1"])
        .is_error_code("NOPERM"));
    assert_eq!(
        admin.call_value(&["REVOKE", "READ", "ON", other, "FROM", "bob"]),
        Resp::ok()
    );
    assert!(bob.call_value(&["GET", other, "k"]).is_error_code("NOPERM"));
    assert_eq!(admin.call_value(&["DROP", "USER", "bob"]), Resp::ok());
    bob.expect_closed();
}
