//! CLIENT LIST, INFO, KILL and MONITOR against the real binary (PROTOCOL.md, "Observability";
//! `src/shard/clients.rs`): fields as Redis 7 names and orders them (compared with a real
//! `redis-server` when there is one), connections of every shard listed and killed, Redis 7's
//! errors, what a user without ADMIN on `*` sees, and MONITOR across shards, without
//! passwords, dropping a monitor that does not read.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The field names of a CLIENT LIST line, in order.
fn field_names(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|f| f.split('=').next().unwrap_or_default().to_string())
        .collect()
}

/// `field=value` of a CLIENT LIST line.
fn field(line: &str, name: &str) -> String {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
        .to_string()
}

/// CLIENT LIST's lines.
fn list(c: &mut RawConn, args: &[&str]) -> Vec<String> {
    let mut words = vec!["CLIENT", "LIST"];
    words.extend_from_slice(args);
    c.call_value(&words)
        .text()
        .lines()
        .map(str::to_string)
        .collect()
}

fn id_of(c: &mut RawConn) -> String {
    c.call_value(&["CLIENT", "ID"]).int().to_string()
}

/// Admin connections until both shards of a `--shards 2` server have at least `per_shard`.
fn conns_on_both_shards(server: &Server, per_shard: usize) -> (Vec<RawConn>, Vec<RawConn>) {
    let (mut zero, mut one) = (Vec::new(), Vec::new());
    for _ in 0..64 {
        if zero.len() >= per_shard && one.len() >= per_shard {
            break;
        }
        let mut c = server.raw();
        match c.shard().as_str() {
            "0" => zero.push(c),
            _ => one.push(c),
        }
    }
    assert!(
        zero.len() >= per_shard && one.len() >= per_shard,
        "connections did not spread over both shards"
    );
    (zero, one)
}

/// Redis 7.2's CLIENT LIST fields, in its order (`catClientInfoString`).
const REDIS_7_2_FIELDS: [&str; 29] = [
    "id",
    "addr",
    "laddr",
    "fd",
    "name",
    "age",
    "idle",
    "flags",
    "db",
    "sub",
    "psub",
    "ssub",
    "multi",
    "qbuf",
    "qbuf-free",
    "argv-mem",
    "multi-mem",
    "rbs",
    "rbp",
    "obl",
    "oll",
    "omem",
    "tot-mem",
    "events",
    "cmd",
    "user",
    "redir",
    "resp",
    "lib-name",
];

#[test]
fn client_list_fields_are_redis_7s_in_its_order() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    let line = list(&mut c, &[]).pop().unwrap();
    let ours = field_names(&line);
    let mut expected: Vec<&str> = REDIS_7_2_FIELDS.to_vec();
    expected.extend(["lib-ver", "shard"]);
    assert_eq!(ours, expected, "{line}");
    let info = c.call_value(&["CLIENT", "INFO"]).text();
    assert!(info.ends_with('\n'), "{info:?}");
    assert_eq!(field_names(&info), expected);

    // A real redis-server's fields come in the same order: each of its lines' fields is in
    // ours, in its order (a 7.0 server lacks lib-name and lib-ver; shard is GoKV's own).
    let Some(redis) = RealRedis::start("client_list_fields_are_redis_7s_in_its_order") else {
        return;
    };
    let mut r = redis.conn();
    for request in [&["CLIENT", "LIST"][..], &["CLIENT", "INFO"]] {
        let reply = r.call(request);
        let text = parse_resp(&reply).unwrap().unwrap().0.text();
        let theirs = field_names(text.lines().next().unwrap());
        let positions: Vec<usize> = theirs
            .iter()
            .map(|f| {
                ours.iter()
                    .position(|o| o == f)
                    .unwrap_or_else(|| panic!("redis's {f} missing from ours: {line}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "order differs: redis {theirs:?}, ours {ours:?}"
        );
        let (major, minor, _) = redis.version();
        if (major, minor) >= (7, 2) {
            let ours_less_shard: Vec<&String> = ours.iter().filter(|f| *f != "shard").collect();
            assert_eq!(ours_less_shard, theirs.iter().collect::<Vec<_>>());
        }
    }
}

#[test]
fn client_list_shows_the_connections_of_every_shard_with_their_state() {
    let server = Server::start(&["--shards", "2"]);
    let (mut zero, mut one) = conns_on_both_shards(&server, 2);
    let mut all_ids: Vec<String> = zero.iter_mut().chain(one.iter_mut()).map(id_of).collect();
    all_ids.sort();
    let c = &mut zero[0];
    c.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    let other = &mut one[0];
    other.expect(&cmd(&["CLIENT", "SETNAME", "worker"]), OK);
    other.expect(&cmd(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]), OK);
    other.expect(&cmd(&["SET", "p", "k", "v"]), OK);
    let other_id = id_of(other);
    other.expect(&cmd(&["GET", "p", "k"]), &bulk(b"v"));

    let lines = list(c, &[]);
    let mut listed: Vec<String> = lines.iter().map(|l| field(l, "id")).collect();
    assert!(
        all_ids.iter().all(|id| listed.contains(id)),
        "{all_ids:?} not all in {lines:#?}"
    );
    let mut sorted = listed.clone();
    sorted.sort_by_key(|id| id.parse::<u64>().unwrap());
    assert_eq!(listed, sorted, "ordered by id");
    let shards: Vec<String> = lines.iter().map(|l| field(l, "shard")).collect();
    assert!(shards.contains(&"0".into()) && shards.contains(&"1".into()));

    let line = lines
        .iter()
        .find(|l| field(l, "id") == other_id)
        .unwrap()
        .clone();
    assert_eq!(field(&line, "name"), "worker");
    assert_eq!(field(&line, "lib-name"), "redis-py");
    assert_eq!(field(&line, "cmd"), "get");
    assert_eq!(field(&line, "db"), "p");
    assert_eq!(field(&line, "user"), "admin");
    assert_eq!(field(&line, "flags"), "N");
    assert_eq!(field(&line, "shard"), "1");
    assert_eq!(
        field(&line, "addr"),
        other.stream.local_addr().unwrap().to_string()
    );
    assert_eq!(field(&line, "laddr"), server.addr());
    let mine = lines
        .iter()
        .find(|l| field(l, "id") == id_of_line(c))
        .unwrap();
    assert_eq!(field(mine, "cmd"), "client|list");

    // The filters: TYPE normal is everyone, the other types no one; ID picks.
    listed = list(c, &["TYPE", "normal"])
        .iter()
        .map(|l| field(l, "id"))
        .collect();
    assert!(all_ids.iter().all(|id| listed.contains(id)));
    for kind in ["master", "replica", "slave", "pubsub"] {
        assert!(list(c, &["TYPE", kind]).is_empty(), "{kind}");
    }
    let picked = list(c, &["ID", &other_id, "999999", "-1"]);
    assert_eq!(picked.len(), 1, "{picked:?}");
    assert_eq!(field(&picked[0], "id"), other_id);

    // Counted as any command is.
    let stats = c.call_value(&["INFO", "commandstats"]).text();
    assert!(stats.contains("cmdstat_client|list:calls="), "{stats}");

    // CLIENT INFO is the connection's own line.
    let info = other.call_value(&["CLIENT", "INFO"]).text();
    assert_eq!(field(&info, "id"), other_id);
    assert_eq!(field(&info, "cmd"), "client|info");
    assert_eq!(field(&info, "shard"), "1");
}

/// The id of `c`, read from its CLIENT INFO (the line CLIENT LIST has for it too).
fn id_of_line(c: &mut RawConn) -> String {
    field(&c.call_value(&["CLIENT", "INFO"]).text(), "id")
}

#[test]
fn client_list_and_kill_errors_are_redis_7s() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    let cases: [(&[&str], &str); 14] = [
        (&["CLIENT", "KILL", "1.2.3.4:5"], "-ERR No such client\r\n"),
        (&["CLIENT", "KILL", "ID", "999999"], ":0\r\n"),
        (
            &["CLIENT", "KILL", "ID", "abc"],
            "-ERR client-id should be greater than 0\r\n",
        ),
        (
            &["CLIENT", "KILL", "ID", "0"],
            "-ERR client-id should be greater than 0\r\n",
        ),
        (
            &["CLIENT", "KILL", "USER", "nosuch"],
            "-ERR No such user 'nosuch'\r\n",
        ),
        (
            &["CLIENT", "KILL", "TYPE", "foo"],
            "-ERR Unknown client type 'foo'\r\n",
        ),
        (
            &["CLIENT", "KILL", "SKIPME", "maybe"],
            "-ERR syntax error\r\n",
        ),
        (
            &["CLIENT", "KILL", "TYPE", "normal", "SKIPME"],
            "-ERR syntax error\r\n",
        ),
        (&["CLIENT", "KILL", "NOSUCH", "x"], "-ERR syntax error\r\n"),
        (&["CLIENT", "KILL", "ADDR", "1.2.3.4:1"], ":0\r\n"),
        (
            &["CLIENT", "LIST", "TYPE", "foo"],
            "-ERR Unknown client type 'foo'\r\n",
        ),
        (
            &["CLIENT", "LIST", "ID", "abc"],
            "-ERR Invalid client ID\r\n",
        ),
        (&["CLIENT", "LIST", "foo"], "-ERR syntax error\r\n"),
        (
            &["CLIENT", "LIST", "TYPE", "normal", "ID", "1"],
            "-ERR syntax error\r\n",
        ),
    ];
    let redis = RealRedis::start("client_list_and_kill_errors_are_redis_7s");
    let mut r = redis.as_ref().map(|r| r.conn());
    for (request, expected) in cases {
        assert_eq!(
            show(&c.call(request)),
            show(expected.as_bytes()),
            "{request:?}"
        );
        if let Some(r) = &mut r {
            assert_eq!(
                show(&r.call(request)),
                show(expected.as_bytes()),
                "redis: {request:?}"
            );
        }
    }
    // MAXAGE is Redis 7.4's; its errors are its texts.
    assert_eq!(
        c.call_err(&["CLIENT", "KILL", "MAXAGE", "x"]),
        "ERR maxage is not an integer or out of range"
    );
    assert_eq!(
        c.call_err(&["CLIENT", "KILL", "MAXAGE", "0"]),
        "ERR maxage should be greater than 0"
    );
    // Nothing was killed by any of them.
    c.expect(&cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn client_kill_by_id_addr_user_type_and_old_form_on_every_shard() {
    let server = Server::start(&["--shards", "2"]);
    let (mut zero, mut one) = conns_on_both_shards(&server, 3);
    let admin = &mut zero.remove(0);
    admin.expect(&cmd(&["CREATE", "USER", "bob", "bobpw1"]), OK);

    // By ID, a connection on the other shard: answers 1, and it closes.
    let mut victim = one.remove(0);
    let victim_id = id_of(&mut victim);
    admin.expect(&cmd(&["CLIENT", "KILL", "ID", &victim_id]), b":1\r\n");
    victim.expect_closed();
    // Killing it again finds nothing.
    admin.expect(&cmd(&["CLIENT", "KILL", "ID", &victim_id]), b":0\r\n");
    admin.expect(
        &cmd(&["CLIENT", "KILL", "ID", &victim_id, "SKIPME", "no"]),
        b":0\r\n",
    );

    // By ADDR, and the old form.
    let mut victim = one.remove(0);
    let addr = victim.stream.local_addr().unwrap().to_string();
    admin.expect(&cmd(&["CLIENT", "KILL", "ADDR", &addr]), b":1\r\n");
    victim.expect_closed();
    let mut victim = zero.remove(0);
    let addr = victim.stream.local_addr().unwrap().to_string();
    admin.expect(&cmd(&["CLIENT", "KILL", &addr]), OK);
    victim.expect_closed();
    admin.expect(&cmd(&["CLIENT", "KILL", &addr]), b"-ERR No such client\r\n");

    // By USER: bob's connections on both shards, no one else's.
    let mut bobs: Vec<RawConn> = (0..4)
        .map(|_| RawConn::connect_as(&server.addr(), "bob", "bobpw1"))
        .collect();
    let bob_shards: Vec<String> = bobs.iter_mut().map(|c| c.shard()).collect();
    admin.expect(&cmd(&["CLIENT", "KILL", "USER", "bob"]), b":4\r\n");
    for b in &mut bobs {
        b.expect_closed();
    }
    assert!(bob_shards.contains(&"0".into()) && bob_shards.contains(&"1".into()));
    // LADDR matches the server's address; MAXAGE spares young connections.
    admin.expect(
        &cmd(&["CLIENT", "KILL", "LADDR", &server.addr(), "MAXAGE", "3600"]),
        b":0\r\n",
    );

    // TYPE normal, as Sentinel sends it: everyone but the caller, on every shard.
    let mut rest: Vec<RawConn> = zero.into_iter().chain(one).collect();
    assert!(!rest.is_empty());
    let reply = admin.call(&["CLIENT", "KILL", "TYPE", "normal"]);
    assert_eq!(show(&reply), show(&int(rest.len() as i64)));
    for c in &mut rest {
        c.expect_closed();
    }
    admin.expect(&cmd(&["PING"]), b"+PONG\r\n");
    admin.expect(&cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]), b":0\r\n");
    // SKIPME no: the caller too, once its answer is written.
    admin.expect(
        &cmd(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no"]),
        b":1\r\n",
    );
    admin.expect_closed();
}

#[test]
fn a_killed_connection_answers_what_it_was_sent_then_closes() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    admin.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    let mut victim = server.raw();
    let id = id_of(&mut victim);
    // The victim's own request for its death, then more: it answers the kill, then closes
    // without running what follows.
    let mut pipeline = cmd(&["CLIENT", "KILL", "ID", &id, "SKIPME", "no"]);
    pipeline.extend(cmd(&["SET", "p", "after", "1"]));
    victim.send(&pipeline);
    assert_eq!(show(&victim.read_reply()), show(b":1\r\n"));
    victim.expect_closed();
    admin.expect(&cmd(&["GET", "p", "after"]), b"$-1\r\n");
}

#[test]
fn a_user_without_admin_sees_and_kills_only_its_own_connections() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    let admin_id = id_of(&mut admin);
    admin.expect(&cmd(&["CREATE", "USER", "bob", "bobpw1"]), OK);
    admin.expect(&cmd(&["CREATE", "USER", "eve", "evepw1"]), OK);
    let mut bob = RawConn::connect_as(&server.addr(), "bob", "bobpw1");
    let mut bob2 = RawConn::connect_as(&server.addr(), "bob", "bobpw1");
    let bob2_id = id_of(&mut bob2);
    let mut eve = RawConn::connect_as(&server.addr(), "eve", "evepw1");
    let eve_id = id_of(&mut eve);

    let users: Vec<String> = list(&mut bob, &[])
        .iter()
        .map(|l| field(l, "user"))
        .collect();
    assert_eq!(users, ["bob", "bob"]);
    assert!(list(&mut bob, &["ID", &admin_id, &eve_id]).is_empty());
    // Others' connections never match: not killed, not found.
    bob.expect(&cmd(&["CLIENT", "KILL", "ID", &admin_id]), b":0\r\n");
    bob.expect(&cmd(&["CLIENT", "KILL", "TYPE", "normal"]), b":1\r\n");
    bob2.expect_closed();
    let eve_addr = eve.stream.local_addr().unwrap().to_string();
    bob.expect(
        &cmd(&["CLIENT", "KILL", &eve_addr]),
        b"-ERR No such client\r\n",
    );
    assert_eq!(
        bob.call_err(&["CLIENT", "KILL", "USER", "eve"]),
        "NOPERM user 'bob' may run 'client kill' only on itself (or needs ADMIN on '*')"
    );
    // Refused before the name is looked up: bob does not learn which users exist.
    assert!(bob
        .call_err(&["CLIENT", "KILL", "USER", "nosuch"])
        .starts_with("NOPERM"));
    bob.expect(
        &cmd(&["CLIENT", "KILL", "USER", "bob", "ID", &admin_id]),
        b":0\r\n",
    );
    assert!(bob.call_err(&["MONITOR"]).starts_with("NOPERM"));
    eve.expect(&cmd(&["PING"]), b"+PONG\r\n");
    admin.expect(&cmd(&["PING"]), b"+PONG\r\n");
    // The admin sees them all, and bob2 is gone.
    let ids: Vec<String> = list(&mut admin, &[])
        .iter()
        .map(|l| field(l, "id"))
        .collect();
    assert!(ids.contains(&eve_id) && !ids.contains(&bob2_id), "{ids:?}");
}

/// Reads MONITOR lines from `m` until one contains `needle`; every line read is returned.
fn monitor_until(m: &mut RawConn, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let line = String::from_utf8_lossy(&m.read_reply()).into_owned();
        let found = line.contains(needle);
        lines.push(line);
        if found {
            return lines;
        }
    }
    panic!("no MONITOR line with {needle:?} in {lines:#?}");
}

/// MONITOR needs ADMIN on `*`, and only while it is held: a REVOKE closes the monitors of
/// that user on every shard before it answers, so no later command's line reaches them.
#[test]
fn a_monitor_is_closed_when_its_user_loses_admin_on_all() {
    let server = Server::start(&["--shards", "2"]);
    let (mut zero, mut one) = conns_on_both_shards(&server, 1);
    let monitor = &mut zero[0];
    let worker = &mut one[0];
    worker.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    worker.expect(&cmd(&["CREATE", "USER", "mon", "mon-pw"]), OK);
    worker.expect(&cmd(&["GRANT", "ADMIN", "ON", "*", "TO", "mon"]), OK);
    monitor.expect(&cmd(&["AUTH", "mon", "mon-pw"]), OK);
    monitor.expect(&cmd(&["MONITOR"]), OK);
    worker.expect(&cmd(&["SET", "p", "k", "before"]), OK);
    monitor_until(monitor, "\"before\"");

    worker.expect(&cmd(&["REVOKE", "ADMIN", "ON", "*", "FROM", "mon"]), OK);
    worker.expect(&cmd(&["SET", "p", "k", "after-revoke"]), OK);
    let (lines, end) = monitor.replies_until_closed(Duration::from_secs(10));
    let seen: Vec<String> = lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert_eq!(
        end,
        ReadEnd::Closed,
        "the monitor is still open after the REVOKE; it saw {seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("after-revoke")),
        "a line after the REVOKE reached the monitor: {seen:?}"
    );
    // An ACL change that leaves a monitor's user its ADMIN on `*` leaves the monitor be.
    worker.expect(&cmd(&["MONITOR"]), OK);
    let mut other = server.raw();
    other.expect(&cmd(&["GRANT", "READ", "ON", "p", "TO", "mon"]), OK);
    other.expect(&cmd(&["ECHO", "still-here"]), &bulk(b"still-here"));
    monitor_until(worker, "still-here");
}

#[test]
fn monitor_sees_every_shard_s_commands_and_never_a_password() {
    let server = Server::start(&["--shards", "2"]);
    let (mut zero, mut one) = conns_on_both_shards(&server, 1);
    let monitor = &mut zero[0];
    let worker = &mut one[0];
    worker.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    monitor.expect(&cmd(&["MONITOR"]), OK);
    let addr = worker.stream.local_addr().unwrap().to_string();
    worker.expect(&cmd_bytes(&[b"SET", b"p", b"k", b"a\"b\\c\n\x01\xff"]), OK);
    let lines = monitor_until(monitor, "\"SET\"");
    let line = lines.last().unwrap();
    assert!(line.starts_with('+'), "{line}");
    assert!(line.ends_with("\r\n"), "{line}");
    let (stamp, rest) = line[1..].split_once(' ').unwrap();
    let (secs, micros) = stamp.split_once('.').unwrap();
    assert!(
        secs.parse::<u64>().unwrap() > 1_600_000_000 && micros.len() == 6,
        "{line}"
    );
    assert_eq!(
        rest,
        format!("[p {addr}] \"SET\" \"p\" \"k\" \"a\\\"b\\\\c\\n\\x01\\xff\"\r\n")
    );

    // Logins and user changes: no password, anywhere.
    worker.expect(&cmd(&["CREATE", "USER", "bob", "sekrit-create"]), OK);
    worker.expect(
        &cmd(&["ALTER", "USER", "bob", "PASSWORD", "sekrit-alter"]),
        OK,
    );
    worker.expect(&cmd(&["AUTH", "bob", "sekrit-alter"]), OK);
    worker.expect(
        &cmd(&["AUTH", "bob", "sekrit-wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    );
    let hello = worker.call(&["HELLO", "2", "AUTH", "bob", "sekrit-alter"]);
    assert!(hello.starts_with(b"*"), "{}", show(&hello));
    worker.expect(&cmd(&["LOGIN", "bob", "sekrit-alter"]), OK);
    worker.expect(&cmd(&["ECHO", "done"]), &bulk(b"done"));
    let lines = monitor_until(monitor, "\"done\"").join("");
    assert!(!lines.contains("sekrit"), "{lines}");
    assert!(
        !lines.contains("USER"),
        "admin commands are not shown: {lines}"
    );
    assert!(
        lines.contains("\"AUTH\" \"(redacted)\" \"(redacted)\""),
        "{lines}"
    );
    assert!(
        lines.contains("\"HELLO\" \"2\" \"AUTH\" \"(redacted)\" \"(redacted)\""),
        "{lines}"
    );
    assert!(
        lines.contains("\"LOGIN\" \"(redacted)\" \"(redacted)\""),
        "{lines}"
    );

    // The Redis face: what the client sent, not the partition GoKV inserts.
    worker.expect(&cmd(&["AUTH", "admin", ADMIN_PASSWORD]), OK);
    worker.expect(&cmd(&["SELECT", "p"]), OK);
    worker.expect(&cmd(&["GET", "k"]), &bulk(b"a\"b\\c\n\x01\xff"));
    let lines = monitor_until(monitor, "\"GET\"");
    assert!(
        lines
            .last()
            .unwrap()
            .ends_with(&format!("[p {addr}] \"GET\" \"k\"\r\n")),
        "{lines:?}"
    );
}

#[test]
fn a_monitor_may_not_touch_the_keyspace_and_reset_ends_it() {
    let server = Server::start(&[]);
    let mut m = server.raw();
    m.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    m.expect(&cmd(&["MONITOR"]), OK);
    let refused = b"-ERR Replica can't interact with the keyspace\r\n";
    m.expect(&cmd(&["SET", "p", "k", "v"]), refused);
    m.expect(&cmd(&["GET", "p", "k"]), refused);
    m.expect(&cmd(&["LIST", "PARTITIONS"]), refused);
    // Others run (and a monitor sees its own), MONITOR again is a no-op.
    m.expect(&cmd(&["PING"]), b"+PONG\r\n");
    monitor_until(&mut m, "\"PING\"");
    m.expect(&cmd(&["MONITOR"]), OK);
    let info = m.call_value(&["CLIENT", "INFO"]).text();
    assert_eq!(field(&info, "flags"), "O");
    monitor_until(&mut m, "\"CLIENT\" \"INFO\"");
    m.expect(&cmd(&["RESET"]), b"+RESET\r\n");
    m.expect(&cmd(&["AUTH", "admin", ADMIN_PASSWORD]), OK);
    m.expect(&cmd(&["SET", "p", "k", "v"]), OK);
    m.expect(&cmd(&["GET", "p", "k"]), &bulk(b"v"));
    let info = m.call_value(&["CLIENT", "INFO"]).text();
    assert_eq!(field(&info, "flags"), "N");

    // Pipelined right behind MONITOR, in the same write: refused all the same.
    let mut pipeline = cmd(&["MONITOR"]);
    pipeline.extend(cmd(&["SET", "p", "k", "after"]));
    m.send(&pipeline);
    assert_eq!(show(&m.read_reply()), show(OK));
    assert_eq!(show(&m.read_reply()), show(refused));
    m.expect(&cmd(&["RESET"]), b"+RESET\r\n");
    m.expect(&cmd(&["AUTH", "admin", ADMIN_PASSWORD]), OK);
    m.expect(&cmd(&["GET", "p", "k"]), &bulk(b"v"));
}

#[test]
fn a_monitor_that_does_not_read_is_dropped_and_others_are_served() {
    let server = Server::start(&["--shards", "2", "--client-output-limit", "65536"]);
    let (mut zero, mut one) = conns_on_both_shards(&server, 1);
    let mut monitor = zero.remove(0);
    let worker = &mut one[0];
    worker.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    monitor.expect(&cmd(&["MONITOR"]), OK);
    // The monitor reads nothing more; each SET adds about 50 KB of MONITOR line, 40 MB in
    // all: more than the socket buffers take, so it piles up in the server.
    let value = "x".repeat(50_000);
    let started = Instant::now();
    for i in 0..800 {
        worker.expect(&cmd(&["SET", "p", &format!("k{i}"), &value]), OK);
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the shard slowed down: {:?}",
        started.elapsed()
    );
    // Dropped: what it has in its socket buffers, then the close.
    monitor.drain_until_closed(Duration::from_secs(10));
    worker.expect(&cmd(&["GET", "p", "k799"]), &bulk(value.as_bytes()));
    let ids: Vec<String> = list(worker, &[])
        .iter()
        .map(|l| field(l, "flags"))
        .collect();
    assert!(!ids.contains(&"O".to_string()), "{ids:?}");
}

#[test]
fn redis_cli_monitor_works() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    if Command::new("redis-cli").arg("--version").output().is_err() {
        eprintln!("redis_cli_monitor_works: skipped, redis-cli is not installed");
        return;
    }
    // `timeout`: nothing may outlive the test, whatever redis-cli does once killed.
    let mut child = Command::new("timeout")
        .args(["30", "redis-cli", "-p", &server.port().to_string()])
        .args(["--user", "admin", "--pass", ADMIN_PASSWORD])
        .args(["--no-auth-warning", "MONITOR"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run timeout redis-cli");
    // Until redis-cli's MONITOR shows up in CLIENT LIST, then a command it must print.
    let up = poll_until(Duration::from_secs(10), || {
        list(&mut c, &[])
            .iter()
            .any(|l| field(l, "flags") == "O")
            .then_some(())
    });
    assert!(up.is_some(), "redis-cli never started monitoring");
    c.expect(&cmd(&["SET", "p", "seen-by-cli", "1"]), OK);
    std::thread::sleep(Duration::from_millis(300));
    let addr = c.stream.local_addr().unwrap().to_string();
    c.expect(&cmd(&["CLIENT", "KILL", "TYPE", "normal"]), b":1\r\n");
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    stdout.read_to_string(&mut out).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.contains(&format!("[p {addr}] \"SET\" \"p\" \"seen-by-cli\" \"1\"")),
        "{out}"
    );
}
