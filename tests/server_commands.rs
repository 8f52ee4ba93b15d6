//! Server commands that must not lie: SHUTDOWN's arguments, CONFIG GET (truthful values, Redis
//! globs, ADMIN on `*`), CLIENT SETINFO's attributes, INFO's unknown sections and operator
//! fields, and the INCRBY/DECRBY increment's integer syntax.
//!
//! Where Redis is the reference, the same rows also run against a real `redis-server`
//! ([`common::RealRedis`]: a Unix socket in a temporary directory, no persistence) and the
//! replies are compared byte for byte. When `redis-server` is not installed those halves are
//! skipped with a message on stderr (unless `GOKV_REQUIRE_REDIS` is set, as CI sets it); the
//! GoKV halves still run, against the expected bytes written out here.

mod common;

use std::time::Duration;

use common::*;

fn err(text: &str) -> Vec<u8> {
    format!("-{text}\r\n").into_bytes()
}

/// A user with READ on partition `p` (created here), logged in.
fn reader(server: &Server, admin: &mut RawConn) -> RawConn {
    admin.expect(&cmd(&["CREATE", "PARTITION", "p", "INT", "MEMORY"]), OK);
    admin.expect(&cmd(&["CREATE", "USER", "reader", "reader-pw"]), OK);
    admin.expect(&cmd(&["GRANT", "READ", "ON", "p", "TO", "reader"]), OK);
    server.login("reader", "reader-pw")
}

// ------------------------------------------------------------------------------------------
// SHUTDOWN
// ------------------------------------------------------------------------------------------

/// SHUTDOWN's refusals, each answered as Redis 7 answers them; none of them shuts down.
const SHUTDOWN_REFUSALS: &[(&[&str], &str)] = &[
    (&["SHUTDOWN", "ABORT"], "ERR No shutdown in progress."),
    (&["SHUTDOWN", "abort"], "ERR No shutdown in progress."),
    (&["SHUTDOWN", "NOSAVE", "ABORT"], "ERR syntax error"),
    (&["SHUTDOWN", "NOW", "FORCE", "ABORT"], "ERR syntax error"),
    (&["SHUTDOWN", "NOSAVE", "SAVE"], "ERR syntax error"),
    (&["SHUTDOWN", "LATER"], "ERR syntax error"),
    (&["SHUTDOWN", "NOW", "please"], "ERR syntax error"),
];

#[test]
fn shutdown_refuses_what_redis_refuses_and_keeps_running() {
    let dir = DataDir::new("shutdown-args");
    let mut server = Server::start_in(&dir, &[]);
    let mut c = server.raw();
    c.expect(&cmd(&["CREATE", "PARTITION", "d", "INT", "SYNC"]), OK);
    c.expect(&cmd(&["SET", "d", "k", "41"]), OK);
    for (args, reply) in SHUTDOWN_REFUSALS {
        let got = c.call(args);
        assert_eq!(show(&got), show(&err(reply)), "{args:?}");
        c.expect(&cmd(&["PING"]), b"+PONG\r\n");
    }
    if let Some(redis) = RealRedis::start("shutdown_refuses_what_redis_refuses_and_keeps_running") {
        let mut r = redis.conn();
        for (args, _) in SHUTDOWN_REFUSALS {
            assert_eq!(
                show(&r.call(args)),
                show(&c.call(args)),
                "{args:?}: redis-server and GoKV differ"
            );
        }
    }
    // Every accepted form shuts down, and GoKV always persists: NOSAVE does not lose the
    // acknowledged write.
    c.send(&cmd(&["SHUTDOWN", "NOSAVE", "NOW", "FORCE"]));
    c.expect_closed();
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("server still running after SHUTDOWN NOSAVE NOW FORCE");
    assert!(status.success(), "exit status {status:?}");
    drop(server);
    let server = Server::start_in(&dir, &[]);
    server.raw().expect(&cmd(&["GET", "d", "k"]), &int(41));
}

// ------------------------------------------------------------------------------------------
// CONFIG
// ------------------------------------------------------------------------------------------

/// CONFIG GET's answer as (name, value) pairs.
fn config_get(c: &mut RawConn, patterns: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["CONFIG", "GET"];
    args.extend_from_slice(patterns);
    let reply = c.call_value(&args);
    let items = reply.items();
    assert!(
        items.len().is_multiple_of(2),
        "CONFIG GET {patterns:?}: {reply:?}"
    );
    items
        .chunks(2)
        .map(|kv| (kv[0].text(), kv[1].text()))
        .collect()
}

fn names(pairs: &[(String, String)]) -> Vec<String> {
    let mut names: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    names.sort();
    names
}

#[test]
fn config_get_appendonly_tells_the_truth() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    assert_eq!(
        config_get(&mut c, &["appendonly"]),
        [("appendonly".to_string(), "no".to_string())]
    );
    c.expect(&cmd(&["CREATE", "PARTITION", "d", "STRING", "SYNC"]), OK);
    let info = c.call_value(&["INFO", "persistence"]).text();
    assert!(info.contains("aof_enabled:1"), "INFO persistence:\n{info}");
    assert_eq!(
        config_get(&mut c, &["appendonly"]),
        [("appendonly".to_string(), "yes".to_string())],
        "INFO says the log is on"
    );
}

/// Patterns and the GoKV parameters each must match (Redis's glob: `*`, `?`, `[...]`,
/// `[^...]`, ranges, `\` escapes, case-insensitive; a pattern without `[*?` is a name).
const CONFIG_GLOBS: &[(&[&str], &[&str])] = &[
    (&["p?rt"], &["port"]),
    (
        &["*ort"],
        &[
            "metrics-port",
            "port",
            "replica-announce-port",
            "slave-announce-port",
        ],
    ),
    (&["[pq]ort"], &["port"]),
    (&["[^q]ort"], &["port"]),
    (&["[o-q]ort"], &["port"]),
    // A name (no `[*?`) is looked up ignoring case and answered as given.
    (&["PORT"], &["PORT"]),
    (
        &["max*"],
        &[
            "max-args",
            "max-bulk-len",
            "max-clients",
            "max-inline-len",
            "max-key-len",
            "max-keys-reply",
            "max-memory",
            "maxclients",
            "maxmemory",
        ],
    ),
    (&["maxmemory", "port"], &["maxmemory", "port"]),
    // Several patterns naming one parameter still list it once.
    (
        &["port", "p*", "*t"],
        &[
            "client-output-limit",
            "metrics-port",
            "port",
            "proto-max-bulk-len",
            "replica-announce-port",
            "slave-announce-port",
            "timeout",
        ],
    ),
    (&["sav\\e"], &[]),
    (&["sav[\\e]"], &["save"]),
    (&["nosuch*"], &[]),
];

#[test]
fn config_get_matches_redis_globs() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    for (patterns, expected) in CONFIG_GLOBS {
        assert_eq!(
            names(&config_get(&mut c, patterns)),
            expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "CONFIG GET {patterns:?}"
        );
    }
    let all = names(&config_get(&mut c, &["*"]));
    assert!(all.len() >= 10, "CONFIG GET *: {all:?}");

    let Some(redis) = RealRedis::start("config_get_matches_redis_globs") else {
        return;
    };
    // On the parameters both servers know, the same patterns pick the same ones.
    let mut r = redis.conn();
    let redis_all: Vec<String> = match parse_resp(&r.call(&["CONFIG", "GET", "*"])) {
        Ok(Some((reply, _))) => reply.items().chunks(2).map(|kv| kv[0].text()).collect(),
        other => panic!("redis CONFIG GET *: {other:?}"),
    };
    let shared: Vec<&String> = all.iter().filter(|n| redis_all.contains(n)).collect();
    assert!(shared.len() >= 8, "parameters both know: {shared:?}");
    for (patterns, _) in CONFIG_GLOBS {
        let mut args = vec!["CONFIG", "GET"];
        args.extend_from_slice(patterns);
        let redis_names: Vec<String> = match parse_resp(&r.call(&args)) {
            Ok(Some((reply, _))) => reply
                .items()
                .chunks(2)
                .map(|kv| kv[0].text().to_ascii_lowercase())
                .collect(),
            other => panic!("redis {args:?}: {other:?}"),
        };
        let mut from_redis: Vec<&String> = shared
            .iter()
            .copied()
            .filter(|n| redis_names.contains(n))
            .collect();
        from_redis.sort();
        from_redis.dedup();
        let mut gokv: Vec<String> = names(&config_get(&mut c, patterns))
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        gokv.sort();
        let from_gokv: Vec<&String> = gokv.iter().filter(|n| shared.contains(n)).collect();
        assert_eq!(from_gokv, from_redis, "CONFIG GET {patterns:?}");
    }
}

#[test]
fn config_needs_admin_on_all() {
    let server = Server::start(&[]);
    let mut admin = server.raw();
    let mut c = reader(&server, &mut admin);
    for args in [&["CONFIG", "GET", "dir"][..], &["CONFIG", "GET", "*"]] {
        let reply = c.call_value(args);
        assert!(
            reply.is_error_code("NOPERM"),
            "{args:?} as a READ user: {reply:?}"
        );
    }
    assert_eq!(names(&config_get(&mut admin, &["dir"])), ["dir"]);
}

// ------------------------------------------------------------------------------------------
// CLIENT SETINFO
// ------------------------------------------------------------------------------------------

/// Redis 7.2's answers (src/networking.c, clientSetinfoCommand): only LIB-NAME and LIB-VER, any
/// case; a value of printable ASCII without spaces (empty clears it). The installed redis-server
/// may predate 7.2 (no SETINFO at all), so these bytes are written out rather than compared.
const SETINFO_ROWS: &[(&[&str], &str)] = &[
    (&["lib-name", "redis-py"], "+OK"),
    (&["LIB-VER", "5.0.1"], "+OK"),
    (&["Lib-Name", ""], "+OK"),
    (&["lib-name", "x(y)"], "+OK"),
    (&["color", "blue"], "-ERR Unrecognized option 'color'"),
    (&["lib-name ", "x"], "-ERR Unrecognized option 'lib-name '"),
    (
        &["lib-name", "a b"],
        "-ERR lib-name cannot contain spaces, newlines or special characters.",
    ),
    (
        &["LIB-VER", "1\n2"],
        "-ERR LIB-VER cannot contain spaces, newlines or special characters.",
    ),
    (
        &["lib-ver", "caf\u{e9}"],
        "-ERR lib-ver cannot contain spaces, newlines or special characters.",
    ),
];

#[test]
fn client_setinfo_accepts_only_redis_attributes() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    for (args, reply) in SETINFO_ROWS {
        let mut words = vec!["CLIENT", "SETINFO"];
        words.extend_from_slice(args);
        assert_eq!(
            show(&c.call(&words)),
            show(format!("{reply}\r\n").as_bytes()),
            "{words:?}"
        );
    }
    let reply = c.call_value(&["CLIENT", "SETINFO", "lib-name"]);
    assert!(reply.is_error_code("ERR"), "{reply:?}");
}

// ------------------------------------------------------------------------------------------
// INFO
// ------------------------------------------------------------------------------------------

#[test]
fn info_unknown_section_is_empty_as_in_redis() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.expect(&cmd(&["INFO", "nosuchsection"]), b"$0\r\n\r\n");
    if let Some(redis) = RealRedis::start("info_unknown_section_is_empty_as_in_redis") {
        assert_eq!(
            show(&redis.conn().call(&["INFO", "nosuchsection"])),
            show(b"$0\r\n\r\n")
        );
    }
}

#[test]
fn info_keeps_operator_facts_for_admins() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    let mut c = reader(&server, &mut admin);
    admin.expect(&cmd(&["CREATE", "PARTITION", "d", "INT", "SYNC"]), OK);
    let full = admin.call_value(&["INFO"]).text();
    for field in [
        "# Shards",
        "partitions=",
        "durable_partitions=",
        "partitions_durable:",
    ] {
        assert!(full.contains(field), "admin INFO lacks {field}:\n{full}");
    }
    for request in [
        &["INFO"][..],
        &["INFO", "everything"],
        &["INFO", "shards"],
        &["INFO", "persistence"],
    ] {
        let text = c.call_value(request).text();
        for field in [
            "# Shards",
            "partitions=",
            "durable_partitions=",
            "partitions_durable:",
        ] {
            assert!(
                !text.contains(field),
                "{request:?} as a READ user shows {field}:\n{text}"
            );
        }
    }
    // The rest of INFO is still there for everyone.
    let text = c.call_value(&["INFO"]).text();
    assert!(
        text.contains("# Server") && text.contains("# Persistence"),
        "{text}"
    );
}

// ------------------------------------------------------------------------------------------
// INCRBY / DECRBY
// ------------------------------------------------------------------------------------------

/// Increments and whether Redis 7 takes them (its string2ll: no leading zeros, no sign but one
/// `-`, no spaces, nothing past i64).
const INCREMENTS: &[(&str, bool)] = &[
    ("0", true),
    ("7", true),
    ("-7", true),
    ("9223372036854775807", true),
    ("-9223372036854775807", true),
    ("01", false),
    ("-01", false),
    ("00", false),
    ("-0", false),
    ("+1", false),
    (" 1", false),
    ("1 ", false),
    ("", false),
    ("-", false),
    ("1.0", false),
    ("0x1", false),
    ("1e3", false),
    ("9223372036854775808", false),
    ("-9223372036854775809", false),
];

#[test]
fn increment_parses_as_redis_parses_it() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.expect(&cmd(&["CREATE", "PARTITION", "n", "INT", "MEMORY"]), OK);
    let mut redis = RealRedis::start("increment_parses_as_redis_parses_it");
    let mut r = redis.as_mut().map(|redis| redis.conn());
    for (i, (delta, valid)) in INCREMENTS.iter().enumerate() {
        for command in ["INCRBY", "DECRBY"] {
            let key = format!("{command}{i}");
            let got = c.call(&[command, "n", &key, delta]);
            let expected = if *valid {
                let n: i64 = delta.parse().unwrap();
                int(if command == "INCRBY" { n } else { -n })
            } else {
                b"-ERR value is not an integer or out of range\r\n".to_vec()
            };
            assert_eq!(show(&got), show(&expected), "{command} n {key} {delta:?}");
            // Refused means nothing was written.
            if !valid {
                c.expect(&cmd(&["EXISTS", "n", &key]), &int(0));
            }
            if let Some(r) = r.as_mut() {
                assert_eq!(
                    show(&r.call(&[command, &key, delta])),
                    show(&got),
                    "{command} {key} {delta:?}: redis-server and GoKV differ"
                );
            }
        }
    }
}
