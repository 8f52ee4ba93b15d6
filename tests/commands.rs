//! Every command of the contract (docs/commands.md): replies, errors
//! and exact encodings, through raw bytes and through the `redis` crate. Data commands run on
//! a 1-shard server and on a 2-shard server, where one of the two partitions a connection uses
//! is always owned by another shard.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

fn start(shards: usize) -> Server {
    Server::start(&["--shards", &shards.to_string()])
}

#[track_caller]
fn create(c: &mut RawConn, name: &str, schema: &str) {
    c.expect(&cmd(&["CREATE", "PARTITION", name, schema, "MEMORY"]), OK);
}

fn nopartition(name: &str) -> Vec<u8> {
    format!("-NOPARTITION partition '{name}' does not exist\r\n").into_bytes()
}

/// An arity error: Redis's text, then GoKV's form of the command from its table row.
fn arity(name: &str) -> Vec<u8> {
    let row = gokv::command::COMMANDS
        .iter()
        .find(|row| row.name == name)
        .unwrap_or_else(|| panic!("no row {name}"));
    format!(
        "-ERR wrong number of arguments for '{name}' command (GoKV: {})\r\n",
        row.usage
    )
    .into_bytes()
}

const OVERFLOW: &[u8] = b"-ERR increment or decrement would overflow\r\n";
const DECREMENT_OVERFLOW: &[u8] = b"-ERR decrement would overflow\r\n";
const NOT_INTEGER: &[u8] = b"-ERR value is not an integer or out of range\r\n";

/// Runs `check(conn, string_partition, int_partition)` on a 1-shard and on a 2-shard server,
/// twice per server with fresh partitions and a fresh connection. On the 2-shard server the
/// STRING partition lands on shard 0 and the INT one on shard 1, so whichever shard a
/// connection is served by, one of its two partitions is remote.
fn each_layout(check: impl Fn(&mut RawConn, &str, &str)) {
    for shards in [1, 2] {
        let server = start(shards);
        for round in 0..2 {
            let mut c = server.raw();
            let s = format!("str{round}");
            let n = format!("int{round}");
            create(&mut c, &s, "STRING");
            create(&mut c, &n, "INT");
            if shards == 2 {
                assert_eq!(describe_field(&mut c, &s, "shard"), Resp::Int(0));
                assert_eq!(describe_field(&mut c, &n, "shard"), Resp::Int(1));
            }
            check(&mut c, &s, &n);
        }
    }
}

fn describe(c: &mut RawConn, p: &str) -> Vec<(Resp, Resp)> {
    c.call_value(&["DESCRIBE", "PARTITION", p]).pairs()
}

fn describe_field(c: &mut RawConn, p: &str, field: &str) -> Resp {
    describe(c, p)
        .into_iter()
        .find(|(k, _)| k.bytes() == field.as_bytes())
        .unwrap_or_else(|| panic!("DESCRIBE {p} has no field {field}"))
        .1
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ------------------------------------------------------------------------------------------
// Connection commands
// ------------------------------------------------------------------------------------------

#[test]
fn ping_and_echo() {
    let server = start(1);
    let mut c = server.raw();
    c.expect(&cmd(&["PING"]), b"+PONG\r\n");
    c.expect(&cmd(&["ping"]), b"+PONG\r\n");
    c.expect(&cmd(&["PING", "hello world"]), b"$11\r\nhello world\r\n");
    c.expect(&cmd(&["ECHO", "hi"]), b"$2\r\nhi\r\n");
    c.expect(
        &cmd_bytes(&[b"ECHO", b"\x00\r\n\xff"]),
        b"$4\r\n\x00\r\n\xff\r\n",
    );
    c.expect(&cmd(&["ECHO", ""]), b"$0\r\n\r\n");
    c.expect(&cmd(&["ECHO"]), &arity("echo"));

    let mut con = server.client();
    assert_eq!(q::<String>(&mut con, &["PING"]).unwrap(), "PONG");
    assert_eq!(q::<String>(&mut con, &["ECHO", "typed"]).unwrap(), "typed");
}

#[test]
fn quit_replies_ok_then_closes() {
    let server = start(1);
    let mut c = server.raw();
    c.expect(&cmd(&["QUIT"]), OK);
    c.expect_closed();

    // Requests pipelined behind QUIT are not executed.
    let mut c = server.raw();
    c.send(&[cmd(&["PING"]), cmd(&["QUIT"]), cmd(&["PING"])].concat());
    assert_eq!(show(&c.read_reply()), show(b"+PONG\r\n"));
    assert_eq!(show(&c.read_reply()), show(OK));
    c.expect_closed();

    // The server is still there for everyone else.
    server.raw().expect(&cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn unknown_command_is_an_error_naming_it() {
    let server = start(1);
    let mut c = server.raw();
    c.expect(&cmd(&["foo"]), b"-ERR unknown command 'foo'\r\n");
    c.expect(&cmd(&["foo", "a", "b"]), b"-ERR unknown command 'foo'\r\n");
    // The connection stays usable after an error reply.
    c.expect(&cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn unknown_command_is_named_as_sent() {
    let server = start(1);
    let mut c = server.raw();
    c.expect(&cmd(&["FooBar"]), b"-ERR unknown command 'FooBar'\r\n");
}

#[test]
fn wrong_arity_names_the_command_in_lowercase() {
    let server = start(1);
    let mut c = server.raw();
    create(&mut c, "s", "STRING");
    create(&mut c, "n", "INT");
    let cases: &[(&[&str], &str)] = &[
        (&["GET", "s"], "get"),
        (&["GeT", "s"], "get"),
        (&["GET", "s", "k", "extra"], "get"),
        (&["SET", "s", "k"], "set"),
        (&["SETEX", "s", "k", "10"], "setex"),
        (&["GETDEL", "s", "k", "extra"], "getdel"),
        (&["EXPIRE", "s", "k"], "expire"),
        (&["TTL", "s", "k", "extra"], "ttl"),
        (&["DEL", "s"], "del"),
        (&["EXISTS", "s"], "exists"),
        (&["MGET", "s"], "mget"),
        (&["MSET", "s"], "mset"),
        (&["MSET", "s", "k"], "mset"),
        (&["MSET", "s", "k", "v", "k2"], "mset"),
        (&["INCR", "n"], "incr"),
        (&["INCR", "n", "k", "1"], "incr"),
        (&["DECR", "n"], "decr"),
        (&["INCRBY", "n", "k"], "incrby"),
        (&["DecrBy", "n", "k"], "decrby"),
    ];
    for (args, name) in cases {
        c.expect(&cmd(args), &arity(name));
    }
    // Nothing was written by the rejected requests.
    c.expect(&cmd(&["EXISTS", "s", "k", "k2"]), &int(0));
    c.expect(&cmd(&["EXISTS", "n", "k"]), &int(0));
}

#[test]
fn client_info_names_id_protocol_and_shard() {
    let server = start(2);
    let mut a = server.raw();
    let mut b = server.raw();
    let id = a.call_value(&["CLIENT", "ID"]).int();
    a.expect(&cmd(&["CLIENT", "SETNAME", "w1"]), OK);
    let line_a = a.call_value(&["CLIENT", "INFO"]).text();
    assert!(line_a.starts_with(&format!("id={id} addr=")), "{line_a}");
    assert!(
        line_a.contains(" name=w1 ") && line_a.contains(" resp=2 "),
        "{line_a}"
    );
    let line_b = b.call_value(&["CLIENT", "INFO"]).text();
    let shard = |line: &str| line.trim_end().rsplit("shard=").next().map(str::to_owned);
    // Connections are dealt round-robin: two in a row land on different shards.
    assert_ne!(shard(&line_a), shard(&line_b), "{line_a} / {line_b}");
}

#[test]
fn client_id_name_and_setinfo() {
    let server = start(2);
    let mut a = server.raw();
    let mut b = server.raw();
    let id_a = a.call_value(&["CLIENT", "ID"]).int();
    let id_b = b.call_value(&["CLIENT", "ID"]).int();
    assert_ne!(id_a, id_b, "two connections share a CLIENT ID");
    assert_eq!(
        a.call_value(&["client", "id"]).int(),
        id_a,
        "CLIENT ID changed"
    );

    a.expect(&cmd(&["CLIENT", "GETNAME"]), NULL2);
    a.expect(&cmd(&["CLIENT", "SETNAME", "worker-1"]), OK);
    a.expect(&cmd(&["CLIENT", "GETNAME"]), &bulk(b"worker-1"));
    // Names are per connection.
    b.expect(&cmd(&["CLIENT", "GETNAME"]), NULL2);
    a.expect(&cmd(&["CLIENT", "SETINFO", "lib-name", "x"]), OK);
    a.expect(&cmd(&["CLIENT", "SETINFO", "LIB-VER", "1.2.3"]), OK);

    let mut con = server.client();
    assert!(q::<i64>(&mut con, &["CLIENT", "ID"]).is_ok());
    q::<()>(&mut con, &["CLIENT", "SETNAME", "typed"]).unwrap();
    assert_eq!(
        q::<Option<String>>(&mut con, &["CLIENT", "GETNAME"]).unwrap(),
        Some("typed".to_string())
    );
}

#[test]
fn command_count_docs_and_info() {
    let server = start(1);
    let mut c = server.raw();
    let count = c.call_value(&["COMMAND", "COUNT"]).int();
    assert!(count > 0, "COMMAND COUNT = {count}");
    c.expect(&cmd(&["COMMAND", "DOCS"]), b"*0\r\n");

    let info = c.call_value(&["COMMAND", "INFO", "get"]);
    let entries = info.items();
    assert_eq!(entries.len(), 1, "COMMAND INFO get: {info:?}");
    let get = entries[0].items();
    assert_eq!(get[0].bytes(), b"get", "{get:?}");
    assert_eq!(get[1], Resp::Int(3), "arity of get: {get:?}");
    assert_eq!(
        (&get[3], &get[4], &get[5]),
        (&Resp::Int(1), &Resp::Int(1), &Resp::Int(1)),
        "first key, last key, step of get: {get:?}"
    );

    // Every data command names its partition as its one routing key.
    for name in [
        "set", "get", "del", "exists", "incr", "decr", "incrby", "decrby", "mget", "mset",
    ] {
        let info = c.call_value(&["COMMAND", "INFO", name]);
        let entry = info.items()[0].items().to_vec();
        assert_eq!(entry[0].bytes(), name.as_bytes(), "{entry:?}");
        assert_eq!(
            (&entry[3], &entry[4], &entry[5]),
            (&Resp::Int(1), &Resp::Int(1), &Resp::Int(1)),
            "first key, last key, step of {name}: {entry:?}"
        );
    }
}

#[test]
fn command_lists_as_many_entries_as_command_count() {
    let server = start(1);
    let mut c = server.raw();
    let count = c.call_value(&["COMMAND", "COUNT"]).int();
    let all = c.call_value(&["COMMAND"]);
    let names: Vec<String> = all.items().iter().map(|e| e.items()[0].text()).collect();
    assert_eq!(names.len() as i64, count, "COMMAND lists {names:?}");
    for name in ["get", "set", "ping"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
}

#[test]
fn info_has_server_and_shards_sections() {
    let server = start(2);
    let mut c = server.raw();
    let text = c.call_value(&["INFO"]).text();
    assert!(text.contains("# Server"), "INFO:\n{text}");
    assert!(text.contains("# Shards"), "INFO:\n{text}");
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        assert!(
            line.contains(':'),
            "INFO line without field:value: {line:?}"
        );
    }

    let text = c.call_value(&["INFO", "server"]).text();
    assert!(text.contains("# Server"), "INFO server:\n{text}");
    assert!(
        !text.contains("# Shards"),
        "INFO server shows other sections:\n{text}"
    );

    let mut con = server.client();
    let info: String = q(&mut con, &["INFO"]).unwrap();
    assert!(info.contains("# Shards"));
}

#[test]
fn config_get_answers_what_clients_probe() {
    let server = start(1);
    let mut c = server.raw();
    c.expect(
        &cmd(&["CONFIG", "GET", "save"]),
        b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n",
    );
    c.expect(
        &cmd(&["CONFIG", "GET", "appendonly"]),
        b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
    );
}

// ------------------------------------------------------------------------------------------
// Partition commands
// ------------------------------------------------------------------------------------------

#[test]
fn missing_partition_is_nopartition() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut c = server.raw();
        // An existing partition elsewhere must not change the answer.
        create(&mut c, "present", "INT");
        let requests: &[&[&str]] = &[
            &["GET", "nope", "k"],
            &["SET", "nope", "k", "v"],
            &["DEL", "nope", "k"],
            &["EXISTS", "nope", "k"],
            &["INCR", "nope", "k"],
            &["DECR", "nope", "k"],
            &["INCRBY", "nope", "k", "2"],
            &["DECRBY", "nope", "k", "2"],
            &["MGET", "nope", "k", "j"],
            &["MSET", "nope", "k", "1"],
            &["DESCRIBE", "PARTITION", "nope"],
            &["STATS", "PARTITION", "nope"],
            &["DROP", "PARTITION", "nope"],
        ];
        for args in requests {
            c.expect(&cmd(args), &nopartition("nope"));
        }
        // Partition names are case-sensitive.
        c.expect(&cmd(&["GET", "PRESENT", "k"]), &nopartition("PRESENT"));

        let mut con = server.client();
        let (code, _) = q_err(&mut con, &["GET", "nope", "k"]);
        assert_eq!(code, "NOPARTITION");
    }
}

#[test]
fn create_replies_ok_and_rejects_duplicates() {
    let server = start(2);
    let mut c = server.raw();
    create(&mut c, "orders", "INT");
    c.expect(
        &cmd(&["CREATE", "PARTITION", "orders", "INT", "MEMORY"]),
        b"-ERR partition 'orders' already exists\r\n",
    );
    c.expect(
        &cmd(&["CREATE", "PARTITION", "orders", "STRING", "MEMORY"]),
        b"-ERR partition 'orders' already exists\r\n",
    );
    // Keywords are case-insensitive; names are case-sensitive.
    c.expect(
        &cmd(&["create", "partition", "Orders", "string", "memory"]),
        OK,
    );
    c.expect(
        &cmd(&["Create", "Partition", "ORDERS", "Int", "Memory"]),
        OK,
    );
    assert_eq!(
        describe_field(&mut c, "Orders", "schema"),
        Resp::Bulk(Some(b"STRING".to_vec()))
    );
    assert_eq!(
        describe_field(&mut c, "ORDERS", "schema"),
        Resp::Bulk(Some(b"INT".to_vec()))
    );
    // The duplicate attempt did not change the original's schema.
    assert_eq!(
        describe_field(&mut c, "orders", "schema"),
        Resp::Bulk(Some(b"INT".to_vec()))
    );

    let mut con = server.client();
    q::<()>(
        &mut con,
        &["CREATE", "PARTITION", "typed", "STRING", "MEMORY"],
    )
    .unwrap();
    let (code, text) = q_err(
        &mut con,
        &["CREATE", "PARTITION", "typed", "STRING", "MEMORY"],
    );
    assert_eq!(code, "ERR", "{text}");
}

#[test]
fn create_rejects_invalid_names() {
    let server = start(1);
    let mut c = server.raw();
    let long_ok = "a".repeat(64);
    let too_long = "b".repeat(65);
    let bad: Vec<&[u8]> = vec![
        b"",
        too_long.as_bytes(),
        b"a b",
        b"a/b",
        b"a:b",
        b"*",
        b"a*",
        b"caf\xc3\xa9",
        b"a\x00",
        b"a\r\nb",
        b"{x}",
    ];
    for name in &bad {
        c.expect_prefix(
            &cmd_bytes(&[b"CREATE", b"PARTITION", name, b"STRING", b"MEMORY"]),
            b"-ERR invalid partition name",
        );
    }
    for name in [long_ok.as_str(), "Az09_.-", "-", ".", "_"] {
        create(&mut c, name, "STRING");
    }
    let mut expected: Vec<&str> = vec![long_ok.as_str(), "Az09_.-", "-", ".", "_"];
    expected.sort();
    let listed: Vec<String> = c
        .call_value(&["LIST", "PARTITIONS"])
        .items()
        .iter()
        .map(Resp::text)
        .collect();
    assert_eq!(listed, expected, "only the valid names were created");
}

#[test]
fn create_rejects_bad_schema_and_persist_words() {
    let server = start(1);
    let mut c = server.raw();
    for schema in ["FLOAT", "INTEGER", "STR", ""] {
        c.expect_prefix(
            &cmd(&["CREATE", "PARTITION", "p", schema, "MEMORY"]),
            b"-ERR syntax error",
        );
    }
    for persist in ["DISK", "MEM", "NONE", ""] {
        c.expect_prefix(
            &cmd(&["CREATE", "PARTITION", "p", "INT", persist]),
            b"-ERR syntax error",
        );
    }
    c.expect(&cmd(&["GET", "p", "k"]), &nopartition("p"));
    c.expect(&cmd(&["LIST", "PARTITIONS"]), b"*0\r\n");
}

#[test]
fn create_accepts_every_persist_mode_case_insensitively() {
    let server = start(2);
    let mut c = server.raw();
    for (name, persist, shown) in [
        ("a", "ASYNC", "ASYNC"),
        ("b", "SYNC", "SYNC"),
        ("c", "sync", "SYNC"),
        ("d", "Async", "ASYNC"),
        ("e", "memory", "MEMORY"),
    ] {
        c.expect(&cmd(&["CREATE", "PARTITION", name, "STRING", persist]), OK);
        c.expect(&cmd(&["SET", name, "k", "v"]), OK);
        assert_eq!(
            describe_field(&mut c, name, "persist"),
            Resp::Bulk(Some(shown.as_bytes().to_vec()))
        );
    }
    c.expect_prefix(
        &cmd(&["CREATE", "PARTITION", "f", "STRING", "DISK"]),
        b"-ERR syntax error: persist mode must be MEMORY, ASYNC or SYNC",
    );
}

#[test]
fn describe_lists_fields_in_order() {
    let server = start(2);
    let mut c = server.raw();
    let before = now_ms();
    create(&mut c, "first", "INT");
    create(&mut c, "second", "STRING");
    let after = now_ms();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        c.expect(&cmd(&["SET", "second", k, v]), OK);
    }

    for (name, schema, shard, keys) in [("first", "INT", 0, 0), ("second", "STRING", 1, 3)] {
        let reply = c.call(&["DESCRIBE", "PARTITION", name]);
        let mut prefix = Vec::new();
        for (field, value) in [
            ("name", bulk(name.as_bytes())),
            ("schema", bulk(schema.as_bytes())),
            ("persist", bulk(b"MEMORY")),
            ("shard", int(shard)),
            ("keys", int(keys)),
        ] {
            prefix.extend(bulk(field.as_bytes()));
            prefix.extend(value);
        }
        prefix.extend(bulk(b"created_ms"));
        let value = parse_resp(&reply).unwrap().unwrap().0;
        let items = value.items();
        assert!(items.len() >= 12, "DESCRIBE {name}: {}", show(&reply));
        let header = format!("*{}\r\n", items.len()).into_bytes();
        assert!(
            reply.starts_with(&[header, prefix].concat()),
            "DESCRIBE {name}: {}",
            show(&reply)
        );
        let created = items[11].int();
        assert!(
            (before - 1000..=after + 1000).contains(&created),
            "created_ms {created} not within [{before}, {after}]"
        );
    }

    // Keyword case does not matter.
    assert_eq!(
        c.call_value(&["describe", "partition", "first"]).items()[1].bytes(),
        b"first"
    );

    // The same through the redis crate, as a typed map.
    let mut con = server.client();
    let map: HashMap<String, redis::Value> =
        q(&mut con, &["DESCRIBE", "PARTITION", "second"]).unwrap();
    assert_eq!(map["name"], redis::Value::BulkString(b"second".to_vec()));
    assert_eq!(map["keys"], redis::Value::Int(3));
    assert_eq!(map["shard"], redis::Value::Int(1));
}

#[test]
fn partitions_go_to_the_shard_with_fewest_ties_to_lowest() {
    let server = start(2);
    let mut c = server.raw();
    for (name, shard) in [("a", 0), ("b", 1), ("c", 0), ("d", 1)] {
        create(&mut c, name, "STRING");
        assert_eq!(
            describe_field(&mut c, name, "shard"),
            Resp::Int(shard),
            "{name}"
        );
    }
    // Shard 1 now holds one partition, shard 0 two: the next goes to shard 1.
    c.expect(&cmd(&["DROP", "PARTITION", "b"]), OK);
    create(&mut c, "e", "INT");
    assert_eq!(describe_field(&mut c, "e", "shard"), Resp::Int(1));
    // Two each again: tie, lowest shard wins.
    create(&mut c, "f", "INT");
    assert_eq!(describe_field(&mut c, "f", "shard"), Resp::Int(0));

    let server = start(1);
    let mut c = server.raw();
    for name in ["x", "y", "z"] {
        create(&mut c, name, "INT");
        assert_eq!(describe_field(&mut c, name, "shard"), Resp::Int(0));
    }
}

/// Polls STATS until the first six fields equal `expected` (stats may trail by an instant).
#[track_caller]
fn assert_stats(c: &mut RawConn, p: &str, expected: [(&str, i64); 6]) {
    let mut last = Vec::new();
    let ok = poll_until(Duration::from_secs(1), || {
        last = c.call_value(&["STATS", "PARTITION", p]).pairs();
        let got: Vec<(Vec<u8>, Resp)> = last
            .iter()
            .take(6)
            .map(|(k, v)| (k.bytes().to_vec(), v.clone()))
            .collect();
        let want: Vec<(Vec<u8>, Resp)> = expected
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), Resp::Int(*v)))
            .collect();
        (got == want).then_some(())
    });
    assert!(
        ok.is_some(),
        "STATS {p}: expected {expected:?}, got {last:?}"
    );
}

#[test]
fn stats_count_ops_reads_writes_keys_hits_misses() {
    let server = start(2);
    let mut c = server.raw();
    create(&mut c, "filler", "STRING");
    create(&mut c, "st", "STRING");
    create(&mut c, "it", "INT");
    assert_eq!(describe_field(&mut c, "st", "shard"), Resp::Int(1));
    assert_stats(
        &mut c,
        "st",
        [
            ("ops", 0),
            ("reads", 0),
            ("writes", 0),
            ("keys", 0),
            ("hits", 0),
            ("misses", 0),
        ],
    );

    c.expect(&cmd(&["SET", "st", "k1", "a"]), OK); // write
    c.expect(&cmd(&["SET", "st", "k2", "b"]), OK); // write
    c.expect(&cmd(&["GET", "st", "k1"]), &bulk(b"a")); // read, hit
    c.expect(&cmd(&["GET", "st", "nope"]), NULL2); // read, miss
    c.expect(
        &cmd(&["MGET", "st", "k1", "k2", "nope"]),
        &array(&[bulk(b"a"), bulk(b"b"), NULL2.to_vec()]),
    ); // read, 2 hits, 1 miss
    c.expect(&cmd(&["EXISTS", "st", "k1", "nope"]), &int(1)); // read, no hit/miss counting
    c.expect(&cmd(&["DEL", "st", "k2"]), &int(1)); // write
    c.expect(&cmd(&["MSET", "st", "k3", "c", "k4", "d"]), OK); // write
    assert_stats(
        &mut c,
        "st",
        [
            ("ops", 8),
            ("reads", 4),
            ("writes", 4),
            ("keys", 3),
            ("hits", 3),
            ("misses", 2),
        ],
    );

    c.expect(&cmd(&["INCR", "it", "x"]), &int(1));
    c.expect(&cmd(&["INCRBY", "it", "x", "5"]), &int(6));
    c.expect(&cmd(&["DECR", "it", "x"]), &int(5));
    c.expect(&cmd(&["DECRBY", "it", "x", "2"]), &int(3));
    c.expect(&cmd(&["GET", "it", "x"]), &int(3));
    assert_stats(
        &mut c,
        "it",
        [
            ("ops", 5),
            ("reads", 1),
            ("writes", 4),
            ("keys", 1),
            ("hits", 1),
            ("misses", 0),
        ],
    );
    // Stats are per partition.
    assert_stats(
        &mut c,
        "filler",
        [
            ("ops", 0),
            ("reads", 0),
            ("writes", 0),
            ("keys", 0),
            ("hits", 0),
            ("misses", 0),
        ],
    );
}

#[test]
fn list_partitions_is_sorted_bytewise() {
    let server = start(2);
    let mut c = server.raw();
    c.expect(&cmd(&["LIST", "PARTITIONS"]), b"*0\r\n");
    for name in ["b", "a.b", "B", "_x", "a", "0", "-z"] {
        create(&mut c, name, "STRING");
    }
    c.expect(
        &cmd(&["list", "partitions"]),
        &array(&[
            bulk(b"-z"),
            bulk(b"0"),
            bulk(b"B"),
            bulk(b"_x"),
            bulk(b"a"),
            bulk(b"a.b"),
            bulk(b"b"),
        ]),
    );
    let mut con = server.client();
    let names: Vec<String> = q(&mut con, &["LIST", "PARTITIONS"]).unwrap();
    assert_eq!(names, ["-z", "0", "B", "_x", "a", "a.b", "b"]);
}

#[test]
fn drop_partition_removes_it_and_its_data() {
    for shards in [1, 2] {
        let server = start(shards);
        let mut c = server.raw();
        create(&mut c, "keep", "STRING");
        create(&mut c, "gone", "STRING");
        c.expect(&cmd(&["SET", "gone", "k", "v"]), OK);
        c.expect(&cmd(&["SET", "keep", "k", "v"]), OK);
        c.expect(&cmd(&["DROP", "PARTITION", "gone"]), OK);
        c.expect(&cmd(&["GET", "gone", "k"]), &nopartition("gone"));
        c.expect(&cmd(&["DROP", "PARTITION", "gone"]), &nopartition("gone"));
        c.expect(&cmd(&["LIST", "PARTITIONS"]), &array(&[bulk(b"keep")]));
        c.expect(&cmd(&["GET", "keep", "k"]), &bulk(b"v"));

        // Re-created, possibly with another schema, it starts empty.
        create(&mut c, "gone", "INT");
        c.expect(&cmd(&["GET", "gone", "k"]), NULL2);
        c.expect(&cmd(&["EXISTS", "gone", "k"]), &int(0));
        assert_eq!(describe_field(&mut c, "gone", "keys"), Resp::Int(0));
        assert_eq!(
            describe_field(&mut c, "gone", "schema"),
            Resp::Bulk(Some(b"INT".to_vec()))
        );
        c.expect(&cmd(&["INCR", "gone", "k"]), &int(1));
    }
}

// ------------------------------------------------------------------------------------------
// Data commands
// ------------------------------------------------------------------------------------------

#[test]
fn string_set_get_is_binary_safe() {
    each_layout(|c, s, _| {
        c.expect(&cmd(&["GET", s, "k"]), NULL2);
        c.expect(&cmd(&["SET", s, "k", "v1"]), OK);
        c.expect(&cmd(&["GET", s, "k"]), &bulk(b"v1"));
        c.expect(&cmd(&["SET", s, "k", "second value"]), OK);
        c.expect(&cmd(&["GET", s, "k"]), &bulk(b"second value"));
        // Keys are case-sensitive.
        c.expect(&cmd(&["GET", s, "K"]), NULL2);
        // Binary keys and values, empty values.
        let value: &[u8] = b"\x00\r\n\xff$-1\r\n*2";
        c.expect(
            &cmd_bytes(&[b"SET", s.as_bytes(), b"\x00bin\xfe", value]),
            OK,
        );
        c.expect(
            &cmd_bytes(&[b"GET", s.as_bytes(), b"\x00bin\xfe"]),
            &bulk(value),
        );
        c.expect(&cmd(&["SET", s, "empty", ""]), OK);
        c.expect(&cmd(&["GET", s, "empty"]), b"$0\r\n\r\n");
        c.expect(&cmd(&["EXISTS", s, "empty"]), &int(1));
        // Integer-looking text stays text in a STRING partition.
        c.expect(&cmd(&["SET", s, "num", "42"]), OK);
        c.expect(&cmd(&["GET", s, "num"]), &bulk(b"42"));
        // Command names are case-insensitive.
        c.expect(&cmd(&["set", s, "lower", "x"]), OK);
        c.expect(&cmd(&["gEt", s, "lower"]), &bulk(b"x"));
    });
}

#[test]
fn int_partition_accepts_only_canonical_integers() {
    each_layout(|c, _, n| {
        for v in [
            "0",
            "42",
            "-12",
            "9223372036854775807",
            "-9223372036854775808",
            "1000000",
        ] {
            c.expect(&cmd(&["SET", n, "k", v]), OK);
            c.expect(&cmd(&["GET", n, "k"]), format!(":{v}\r\n").as_bytes());
        }
        c.expect(&cmd(&["SET", n, "k", "7"]), OK);
        for bad in [
            "abc",
            "01",
            "+1",
            "1.0",
            " 1",
            "1 ",
            "-0",
            "",
            "-",
            "0x10",
            "1e3",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
        ] {
            c.expect_prefix(&cmd(&["SET", n, "k", bad]), b"-WRONGTYPE");
            c.expect_prefix(&cmd(&["SET", n, "fresh", bad]), b"-WRONGTYPE");
        }
        c.expect(&cmd(&["GET", n, "k"]), &int(7));
        c.expect(&cmd(&["EXISTS", n, "fresh"]), &int(0));
    });
}

#[test]
fn int_partition_through_the_redis_crate() {
    let server = start(2);
    let mut con = server.client();
    q::<()>(&mut con, &["CREATE", "PARTITION", "pad", "INT", "MEMORY"]).unwrap();
    q::<()>(&mut con, &["CREATE", "PARTITION", "n", "INT", "MEMORY"]).unwrap();
    q::<()>(&mut con, &["SET", "n", "a", "-5"]).unwrap();
    assert_eq!(q::<i64>(&mut con, &["GET", "n", "a"]).unwrap(), -5);
    assert_eq!(
        q::<Option<i64>>(&mut con, &["GET", "n", "zz"]).unwrap(),
        None
    );
    assert_eq!(q::<i64>(&mut con, &["INCR", "n", "a"]).unwrap(), -4);
    assert_eq!(
        q::<i64>(&mut con, &["INCRBY", "n", "a", "100"]).unwrap(),
        96
    );
    assert_eq!(q::<i64>(&mut con, &["DECRBY", "n", "a", "6"]).unwrap(), 90);
    assert_eq!(
        q::<Vec<Option<i64>>>(&mut con, &["MGET", "n", "a", "zz"]).unwrap(),
        vec![Some(90), None]
    );
    let (code, _) = q_err(&mut con, &["SET", "n", "a", "x"]);
    assert_eq!(code, "WRONGTYPE");
    assert_eq!(q::<i64>(&mut con, &["GET", "n", "a"]).unwrap(), 90);
}

#[test]
fn incr_family_on_int_partition() {
    each_layout(|c, _, n| {
        c.expect(&cmd(&["INCR", n, "k"]), &int(1));
        c.expect(&cmd(&["INCR", n, "k"]), &int(2));
        c.expect(&cmd(&["INCRBY", n, "k", "10"]), &int(12));
        c.expect(&cmd(&["DECR", n, "k"]), &int(11));
        c.expect(&cmd(&["DECRBY", n, "k", "20"]), &int(-9));
        c.expect(&cmd(&["INCRBY", n, "k", "-5"]), &int(-14));
        c.expect(&cmd(&["DECRBY", n, "k", "-14"]), &int(0));
        c.expect(&cmd(&["GET", n, "k"]), &int(0));
        // Absent counts as zero for every member of the family.
        c.expect(&cmd(&["DECR", n, "d"]), &int(-1));
        c.expect(&cmd(&["INCRBY", n, "i", "7"]), &int(7));
        c.expect(&cmd(&["DECRBY", n, "j", "7"]), &int(-7));
        c.expect(&cmd(&["incr", n, "lower"]), &int(1));
        // INCR on a key set with SET.
        c.expect(&cmd(&["SET", n, "s", "41"]), OK);
        c.expect(&cmd(&["INCR", n, "s"]), &int(42));
        c.expect(&cmd(&["GET", n, "s"]), &int(42));
    });
}

/// A STRING partition holds Redis strings: the INCR family works on a value that is a
/// canonical integer's text, stores the result back as text, and refuses anything else with
/// Redis's error (this replaced the earlier `-WRONGTYPE`).
#[test]
fn incr_family_on_string_partition_works_as_redis() {
    each_layout(|c, s, _| {
        c.expect(&cmd(&["SET", s, "k", "5"]), OK);
        c.expect(&cmd(&["INCR", s, "k"]), &int(6));
        c.expect(&cmd(&["DECR", s, "k"]), &int(5));
        c.expect(&cmd(&["INCRBY", s, "k", "10"]), &int(15));
        c.expect(&cmd(&["DECRBY", s, "k", "20"]), &int(-5));
        c.expect(&cmd(&["GET", s, "k"]), &bulk(b"-5"));
        c.expect(&cmd(&["INCRBY", s, "absent", "2"]), &int(2));
        c.expect(&cmd(&["GET", s, "absent"]), &bulk(b"2"));
        for bad in ["abc", "01", " 1", ""] {
            c.expect(&cmd(&["SET", s, "bad", bad]), OK);
            c.expect(
                &cmd(&["INCR", s, "bad"]),
                b"-ERR value is not an integer or out of range\r\n",
            );
            c.expect(&cmd(&["GET", s, "bad"]), &bulk(bad.as_bytes()));
        }
    });
}

#[test]
fn incrby_with_a_non_integer_amount_is_an_error() {
    each_layout(|c, _, n| {
        c.expect(&cmd(&["SET", n, "k", "3"]), OK);
        for amount in [
            "abc",
            "1.5",
            "",
            "1e3",
            "99999999999999999999",
            "9223372036854775808",
        ] {
            c.expect(&cmd(&["INCRBY", n, "k", amount]), NOT_INTEGER);
            c.expect(&cmd(&["DECRBY", n, "k", amount]), NOT_INTEGER);
            c.expect(&cmd(&["INCRBY", n, "absent", amount]), NOT_INTEGER);
        }
        c.expect(&cmd(&["GET", n, "k"]), &int(3));
        c.expect(&cmd(&["EXISTS", n, "absent"]), &int(0));
    });
}

#[test]
fn overflow_is_an_error_and_changes_nothing() {
    each_layout(|c, _, n| {
        let max = i64::MAX.to_string();
        let min = i64::MIN.to_string();
        c.expect(&cmd(&["SET", n, "hi", &max]), OK);
        c.expect(&cmd(&["INCR", n, "hi"]), OVERFLOW);
        c.expect(&cmd(&["INCRBY", n, "hi", "1"]), OVERFLOW);
        c.expect(&cmd(&["DECRBY", n, "hi", "-1"]), OVERFLOW);
        c.expect(&cmd(&["INCRBY", n, "hi", &max]), OVERFLOW);
        c.expect(&cmd(&["GET", n, "hi"]), &int(i64::MAX));
        c.expect(&cmd(&["DECR", n, "hi"]), &int(i64::MAX - 1));

        c.expect(&cmd(&["SET", n, "lo", &min]), OK);
        c.expect(&cmd(&["DECR", n, "lo"]), OVERFLOW);
        c.expect(&cmd(&["DECRBY", n, "lo", "1"]), OVERFLOW);
        c.expect(&cmd(&["INCRBY", n, "lo", "-1"]), OVERFLOW);
        c.expect(&cmd(&["INCRBY", n, "lo", &min]), OVERFLOW);
        c.expect(&cmd(&["GET", n, "lo"]), &int(i64::MIN));
        c.expect(&cmd(&["INCR", n, "lo"]), &int(i64::MIN + 1));

        // 0 - i64::MIN does not fit either; the absent key stays absent. Redis 7.2's own
        // text for an amount that cannot be negated.
        c.expect(&cmd(&["DECRBY", n, "absent", &min]), DECREMENT_OVERFLOW);
        c.expect(&cmd(&["EXISTS", n, "absent"]), &int(0));
        // DECRBY by i64::MIN is refused even where the result would fit, as in Redis: the
        // amount cannot be negated.
        c.expect(&cmd(&["SET", n, "neg", "-1"]), OK);
        c.expect(&cmd(&["DECRBY", n, "neg", &min]), DECREMENT_OVERFLOW);
        c.expect(&cmd(&["GET", n, "neg"]), &int(-1));
        // Reaching the bounds exactly is fine.
        c.expect(&cmd(&["INCRBY", n, "edge", &max]), &int(i64::MAX));
        c.expect(&cmd(&["DECRBY", n, "edge2", &max]), &int(-i64::MAX));
        c.expect(&cmd(&["DECR", n, "edge2"]), &int(i64::MIN));
    });
}

#[test]
fn del_and_exists_count_keys() {
    each_layout(|c, s, n| {
        c.expect(&cmd(&["MSET", s, "a", "1", "b", "2", "c", "3"]), OK);
        c.expect(&cmd(&["EXISTS", s, "a"]), &int(1));
        c.expect(&cmd(&["EXISTS", s, "a", "b", "zz"]), &int(2));
        // A key named twice counts twice.
        c.expect(&cmd(&["EXISTS", s, "a", "a", "a", "zz"]), &int(3));
        c.expect(&cmd(&["DEL", s, "a", "b", "zz"]), &int(2));
        c.expect(&cmd(&["DEL", s, "a"]), &int(0));
        c.expect(&cmd(&["EXISTS", s, "a", "b", "c"]), &int(1));
        c.expect(&cmd(&["GET", s, "a"]), NULL2);
        c.expect(&cmd(&["GET", s, "c"]), &bulk(b"3"));

        c.expect(&cmd(&["INCR", n, "x"]), &int(1));
        c.expect(&cmd(&["EXISTS", n, "x", "x"]), &int(2));
        c.expect(&cmd(&["DEL", n, "x"]), &int(1));
        c.expect(&cmd(&["INCR", n, "x"]), &int(1));
    });
}

#[test]
fn mget_returns_values_and_nulls_in_order() {
    each_layout(|c, s, n| {
        c.expect(&cmd(&["SET", s, "a", "1"]), OK);
        c.expect(&cmd(&["SET", s, "c", ""]), OK);
        c.expect(
            &cmd(&["MGET", s, "a", "b", "c", "a"]),
            &array(&[bulk(b"1"), NULL2.to_vec(), bulk(b""), bulk(b"1")]),
        );
        c.expect(&cmd(&["MGET", s, "zz"]), &array(&[NULL2.to_vec()]));
        c.expect(&cmd(&["SET", n, "a", "-3"]), OK);
        c.expect(
            &cmd(&["MGET", n, "zz", "a"]),
            &array(&[NULL2.to_vec(), int(-3)]),
        );
    });
}

#[test]
fn mset_sets_every_pair() {
    each_layout(|c, s, n| {
        c.expect(&cmd(&["SET", s, "a", "old"]), OK);
        c.expect(&cmd(&["MSET", s, "a", "1", "b", "2"]), OK);
        c.expect(
            &cmd(&["MGET", s, "a", "b"]),
            &array(&[bulk(b"1"), bulk(b"2")]),
        );
        c.expect(&cmd(&["MSET", n, "x", "10", "y", "-20"]), OK);
        c.expect(&cmd(&["MGET", n, "x", "y"]), &array(&[int(10), int(-20)]));
        c.expect(&cmd(&["INCR", n, "y"]), &int(-19));
    });
}

#[test]
fn mset_in_int_partition_is_all_or_nothing() {
    each_layout(|c, _, n| {
        c.expect(&cmd(&["SET", n, "k1", "5"]), OK);
        c.expect_prefix(
            &cmd(&["MSET", n, "k1", "7", "k2", "8", "k3", "x", "k4", "9"]),
            b"-WRONGTYPE",
        );
        c.expect_prefix(&cmd(&["MSET", n, "k1", "01", "k2", "8"]), b"-WRONGTYPE");
        c.expect_prefix(&cmd(&["MSET", n, "k2", "8", "k1", "1.5"]), b"-WRONGTYPE");
        c.expect(
            &cmd(&["MGET", n, "k1", "k2", "k3", "k4"]),
            &array(&[int(5), NULL2.to_vec(), NULL2.to_vec(), NULL2.to_vec()]),
        );
        c.expect(&cmd(&["EXISTS", n, "k2", "k3", "k4"]), &int(0));
    });
}

#[test]
fn data_commands_through_the_redis_crate_on_two_shards() {
    let server = start(2);
    let mut a = server.client();
    let mut b = server.client();
    q::<()>(&mut a, &["CREATE", "PARTITION", "s", "STRING", "MEMORY"]).unwrap();
    q::<()>(&mut a, &["CREATE", "PARTITION", "n", "INT", "MEMORY"]).unwrap();
    for con in [&mut a, &mut b] {
        q::<()>(con, &["SET", "s", "k", "v"]).unwrap();
        assert_eq!(
            q::<Option<String>>(con, &["GET", "s", "k"])
                .unwrap()
                .as_deref(),
            Some("v")
        );
        assert_eq!(
            q::<Option<Vec<u8>>>(con, &["GET", "s", "nope"]).unwrap(),
            None
        );
        q::<()>(con, &["MSET", "s", "a", "1", "b", "2"]).unwrap();
        assert_eq!(
            q::<Vec<Option<String>>>(con, &["MGET", "s", "a", "x", "b"]).unwrap(),
            vec![Some("1".into()), None, Some("2".into())]
        );
        assert_eq!(q::<i64>(con, &["EXISTS", "s", "a", "b", "x"]).unwrap(), 2);
        assert_eq!(q::<i64>(con, &["DEL", "s", "a", "b"]).unwrap(), 2);
        // "v" is no integer (a STRING partition's INCR is Redis's).
        let (code, text) = q_err(con, &["INCR", "s", "k"]);
        assert_eq!(code, "ERR", "{text}");
        q::<()>(con, &["DEL", "n", "c"]).unwrap();
        assert_eq!(q::<i64>(con, &["INCR", "n", "c"]).unwrap(), 1);
        assert_eq!(q::<i64>(con, &["DECRBY", "n", "c", "3"]).unwrap(), -2);
        let (code, text) = q_err(con, &["INCRBY", "n", "c", "x"]);
        assert_eq!(code, "ERR", "{text}");
        let (code, text) = q_err(con, &["GET", "s"]);
        assert_eq!(code, "ERR", "{text}");
    }
}
