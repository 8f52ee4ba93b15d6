//! SLOWLOG and LATENCY against the real binary: Redis 7's reply shapes and refusals (compared
//! byte for byte with a real `redis-server` where both answer the same), slow commands on
//! every shard merged newest first, passwords never logged, the thresholds live on every
//! shard, LATENCY HISTOGRAM from the per-command statistics.

mod common;

use std::time::Duration;

use common::*;

/// Refusals and empty answers both servers give the same bytes.
const SHARED_ROWS: &[&[&str]] = &[
    &["SLOWLOG", "GET", "-5"],
    &["SLOWLOG", "GET", "-2"],
    &["SLOWLOG", "GET", "abc"],
    &["SLOWLOG", "GET", "1", "2"],
    &["SLOWLOG", "LEN", "x"],
    &["SLOWLOG", "RESET", "x"],
    &["SLOWLOG", "foo"],
    &["SLOWLOG", "HELP"],
    &["SLOWLOG", "HELP", "x"],
    &["LATENCY", "foo"],
    &["LATENCY", "LATEST", "x"],
    &["LATENCY", "HISTORY"],
    &["LATENCY", "HISTORY", "a", "b"],
    &["LATENCY", "HISTORY", "nosuch"],
    &["LATENCY", "HELP", "x"],
    &["LATENCY", "RESET", "nosuch"],
    &["LATENCY", "HISTOGRAM", "nosuch"],
];

#[test]
fn refusals_and_empty_answers_are_redis_7_s() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    for (args, reply) in [
        (
            &["SLOWLOG", "GET", "-5"][..],
            "-ERR count should be greater than or equal to -1\r\n",
        ),
        (
            &["SLOWLOG", "GET", "x"],
            "-ERR count should be greater than or equal to -1\r\n",
        ),
        (
            &["SLOWLOG", "foo"],
            "-ERR unknown subcommand 'foo'. Try SLOWLOG HELP.\r\n",
        ),
        (
            &["SLOWLOG", "LEN", "x"],
            "-ERR wrong number of arguments for 'slowlog|len' command\r\n",
        ),
        (
            &["LATENCY", "DOCTOR"],
            "-ERR unknown subcommand 'DOCTOR'. Try LATENCY HELP.\r\n",
        ),
        (&["LATENCY", "HISTORY", "nosuch"], "*0\r\n"),
        (&["LATENCY", "RESET", "nosuch"], ":0\r\n"),
        (&["LATENCY", "LATEST"], "*0\r\n"),
    ] {
        assert_eq!(show(&c.call(args)), show(reply.as_bytes()), "{args:?}");
    }
    // A bad count changed nothing and reset nothing: the log still answers.
    c.call_ok(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    c.call(&["PING"]);
    assert!(c.call_value(&["SLOWLOG", "LEN"]).int() >= 1);

    let Some(redis) = RealRedis::start("refusals_and_empty_answers_are_redis_7_s") else {
        return;
    };
    let mut r = redis.conn();
    for args in SHARED_ROWS {
        assert_eq!(
            show(&r.call(args)),
            show(&c.call(args)),
            "{args:?}: redis-server and GoKV differ"
        );
    }
}

/// A connection the acceptor put on another shard than `shard` (it deals them round-robin).
fn on_another_shard(server: &Server, shard: &str) -> RawConn {
    for _ in 0..8 {
        let mut conn = server.raw();
        if conn.shard() != shard {
            return conn;
        }
    }
    panic!("no connection on a shard other than {shard}");
}

/// One SLOWLOG GET entry, checked for Redis 7's shape.
#[derive(Debug)]
struct Entry {
    id: i64,
    time: i64,
    micros: i64,
    args: Vec<String>,
    client: String,
    name: String,
}

#[track_caller]
fn entries(reply: &Resp) -> Vec<Entry> {
    reply
        .items()
        .iter()
        .map(|e| {
            let f = e.items();
            assert_eq!(f.len(), 6, "an entry is 6 fields: {e:?}");
            assert!(matches!(f[0], Resp::Int(_)) && matches!(f[1], Resp::Int(_)));
            assert!(matches!(f[2], Resp::Int(_)) && matches!(f[3], Resp::Array(_)));
            assert!(matches!(f[4], Resp::Bulk(_)) && matches!(f[5], Resp::Bulk(_)));
            Entry {
                id: f[0].int(),
                time: f[1].int(),
                micros: f[2].int(),
                args: f[3].texts(),
                client: f[4].text(),
                name: f[5].text(),
            }
        })
        .collect()
}

#[test]
fn slow_commands_of_every_shard_are_merged_newest_first() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let (local, remote) = {
        let (a, b) = c.one_partition_per_shard();
        let mine = c.shard();
        if c.partition_shard(&a) == mine {
            (a, b)
        } else {
            (b, a)
        }
    };
    c.call_ok(&["CLIENT", "SETNAME", "observer"]);
    // Nothing is slow by default (10 ms).
    c.call_ok(&["SET", &local, "k", "v"]);
    assert_eq!(c.call_value(&["SLOWLOG", "LEN"]).int(), 0);
    // Live on both shards: every command from now on.
    c.call_ok(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    c.call_ok(&["SET", &local, "k1", "v1"]);
    c.call_ok(&["SET", &remote, "k2", "v2"]);
    // Another connection, wherever it lives, is logged too.
    let mut other = server.raw();
    other.call_ok(&["SET", &remote, "k3", "v3"]);
    let got = entries(&c.call_value(&["SLOWLOG", "GET", "-1"]));
    let find = |args: &[&str]| {
        got.iter().find(|e| e.args == args).unwrap_or_else(|| {
            panic!(
                "no entry {args:?} in {:?}",
                got.iter().map(|e| &e.args).collect::<Vec<_>>()
            )
        })
    };
    let l = find(&["SET", &local, "k1", "v1"]);
    let r = find(&["SET", &remote, "k2", "v2"]);
    let o = find(&["SET", &remote, "k3", "v3"]);
    // Newest first, ids global and increasing across shards.
    assert!(o.id > r.id && r.id > l.id, "ids {} {} {}", l.id, r.id, o.id);
    for pair in got.windows(2) {
        assert!(pair[0].id > pair[1].id, "not newest first");
    }
    // The client is the connection whose request ran here; a forwarded one has none.
    assert!(l.client.starts_with("127.0.0.1:"), "{}", l.client);
    assert_eq!(l.name, "observer");
    assert_eq!((r.client.as_str(), r.name.as_str()), ("", ""));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - l.time).abs() < 60, "time {} now {now}", l.time);
    assert!(l.micros >= 0);
    // LEN sums the shards, GET n takes the newest n, RESET empties all.
    let len = c.call_value(&["SLOWLOG", "LEN"]).int();
    assert!(len >= got.len() as i64 - 1, "{len} vs {}", got.len());
    let two = entries(&c.call_value(&["SLOWLOG", "GET", "2"]));
    assert_eq!(two.len(), 2);
    assert!(two[0].id > two[1].id);
    assert_eq!(c.call_value(&["SLOWLOG", "GET", "0"]).items().len(), 0);
    // Default count: 10.
    for i in 0..12 {
        c.call_ok(&["SET", &remote, &format!("n{i}"), "v"]);
    }
    assert_eq!(c.call_value(&["SLOWLOG", "GET"]).items().len(), 10);
    c.call_ok(&["SLOWLOG", "RESET"]);
    c.call_ok(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
    assert_eq!(c.call_value(&["SLOWLOG", "LEN"]).int(), 0);
    other.call_ok(&["SET", &remote, "k4", "v4"]);
    c.call_ok(&["SET", &local, "k4", "v4"]);
    assert_eq!(
        c.call_value(&["SLOWLOG", "LEN"]).int(),
        0,
        "-1 logs nothing"
    );
    // slowlog-max-len is live and per shard.
    c.call_ok(&[
        "CONFIG",
        "SET",
        "slowlog-log-slower-than",
        "0",
        "slowlog-max-len",
        "2",
    ]);
    for i in 0..5 {
        c.call_ok(&["SET", &local, &format!("m{i}"), "v"]);
        c.call_ok(&["SET", &remote, &format!("m{i}"), "v"]);
    }
    let len = c.call_value(&["SLOWLOG", "LEN"]).int();
    assert!(len <= 4, "at most 2 per shard: {len}");
}

#[test]
fn a_slow_command_is_logged_at_the_default_threshold() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    c.call_ok(&["DEBUG", "SLEEP", "0.05"]);
    let got = entries(&c.call_value(&["SLOWLOG", "GET"]));
    assert_eq!(got.len(), 1, "only the sleep is past 10 ms");
    assert_eq!(got[0].args, ["DEBUG", "SLEEP", "0.05"]);
    assert!(got[0].micros >= 50_000, "{} us", got[0].micros);
    assert!(got[0].client.starts_with("127.0.0.1:"));
    // On the other shard too (a connection there).
    let mine = c.shard();
    let mut other = on_another_shard(&server, &mine);
    other.call_ok(&["DEBUG", "SLEEP", "0.03"]);
    assert_eq!(c.call_value(&["SLOWLOG", "LEN"]).int(), 2);
    assert_eq!(
        show(&c.call(&["DEBUG", "SLEEP", "61"])),
        show(b"-ERR DEBUG SLEEP takes seconds from 0 to 60, got '61'\r\n")
    );
}

#[test]
fn long_commands_are_cut_as_redis_cuts_them() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.call_ok(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]);
    c.call_ok(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    let value = "x".repeat(200);
    let mut mset = vec!["MSET", "p"];
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    for k in &keys {
        mset.push(k);
        mset.push(&value);
    }
    c.call_ok(&mset);
    let got = entries(&c.call_value(&["SLOWLOG", "GET", "1"]));
    let args = &got[0].args;
    assert_eq!(args.len(), 32);
    assert_eq!(args[0], "MSET");
    assert_eq!(
        args[31],
        format!("... ({} more arguments)", mset.len() - 31)
    );
    assert_eq!(args[3], format!("{}... (72 more bytes)", "x".repeat(128)));

    // redis-server cuts the same command the same way.
    let Some(redis) = RealRedis::start("long_commands_are_cut_as_redis_cuts_them") else {
        return;
    };
    let mut r = redis.conn();
    r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    let mut redis_mset = vec!["MSET"];
    redis_mset.extend_from_slice(&mset[2..]);
    r.call(&redis_mset);
    let reply = match parse_resp(&r.call(&["SLOWLOG", "GET", "1"])) {
        Ok(Some((reply, _))) => reply,
        other => panic!("redis SLOWLOG GET: {other:?}"),
    };
    let theirs = entries(&reply);
    assert_eq!(theirs[0].args.len(), 32);
    assert_eq!(theirs[0].args[2], args[3], "an argument cut the same way");
    assert_eq!(
        theirs[0].args[31],
        format!("... ({} more arguments)", redis_mset.len() - 31)
    );
}

#[test]
fn passwords_never_reach_the_slow_log() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.call_ok(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    c.call_ok(&["CREATE", "USER", "alice", "alice-secret-1"]);
    c.call_ok(&["ALTER", "USER", "alice", "PASSWORD", "alice-secret-2"]);
    let mut a = server.raw_unauthenticated();
    a.call_ok(&["AUTH", "alice", "alice-secret-2"]);
    let mut h = server.raw_unauthenticated();
    let hello = h.call_value(&["HELLO", "2", "AUTH", "alice", "alice-secret-2"]);
    assert!(!matches!(hello, Resp::Error(_)), "{hello:?}");
    let mut bad = server.raw_unauthenticated();
    bad.call_err(&["AUTH", "alice", "wrong-secret-3"]);
    let raw = c.call(&["SLOWLOG", "GET", "-1"]);
    let text = String::from_utf8_lossy(&raw);
    for secret in [
        "alice-secret-1",
        "alice-secret-2",
        "wrong-secret-3",
        ADMIN_PASSWORD,
    ] {
        assert!(!text.contains(secret), "{secret} in the slow log:\n{text}");
    }
    let got = entries(&parse_resp(&raw).unwrap().unwrap().0);
    let args: Vec<&Vec<String>> = got.iter().map(|e| &e.args).collect();
    for expected in [
        &["CREATE", "USER", "alice", "(redacted)"][..],
        &["ALTER", "USER", "alice", "PASSWORD", "(redacted)"],
        &["AUTH", "(redacted)", "(redacted)"],
        &["HELLO", "2", "AUTH", "(redacted)", "(redacted)"],
    ] {
        assert!(
            args.iter().any(|a| a.as_slice() == expected),
            "no {expected:?} in {args:?}"
        );
    }
}

#[test]
fn latency_events_are_kept_past_the_threshold_only() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    // Off by default: nothing is kept.
    c.call_ok(&["DEBUG", "SLEEP", "0.03"]);
    assert_eq!(c.call_value(&["LATENCY", "LATEST"]).items().len(), 0);
    c.call_ok(&["CONFIG", "SET", "latency-monitor-threshold", "200"]);
    // Far below the threshold, so that a loaded machine's scheduling delay cannot lift it
    // past.
    c.call_ok(&["DEBUG", "SLEEP", "0.01"]);
    assert_eq!(
        c.call_value(&["LATENCY", "HISTORY", "command"])
            .items()
            .len(),
        0
    );
    c.call_ok(&["DEBUG", "SLEEP", "0.25"]);
    let latest = c.call_value(&["LATENCY", "LATEST"]);
    let command = latest
        .items()
        .iter()
        .find(|e| e.items()[0].text() == "command")
        .unwrap_or_else(|| panic!("no command event: {latest:?}"));
    let f = command.items();
    assert_eq!(f.len(), 4, "[event, time, latest, max]: {command:?}");
    assert!(f[2].int() >= 250 && f[3].int() >= f[2].int(), "{command:?}");
    let history = c.call_value(&["LATENCY", "HISTORY", "COMMAND"]);
    let samples = history.items();
    assert!(!samples.is_empty());
    assert_eq!(samples[0].items().len(), 2, "[time, ms]: {history:?}");
    assert!(samples.last().unwrap().items()[1].int() >= 250);
    // The other shard's events are merged in: a sleep on a connection there.
    let mine = c.shard();
    let mut other = on_another_shard(&server, &mine);
    std::thread::sleep(Duration::from_millis(1100));
    other.call_ok(&["DEBUG", "SLEEP", "0.4"]);
    let latest = c.call_value(&["LATENCY", "LATEST"]);
    let command = latest
        .items()
        .iter()
        .find(|e| e.items()[0].text() == "command")
        .unwrap()
        .items()
        .to_vec();
    assert!(command[3].int() >= 400, "max over both shards: {command:?}");
    assert!(
        c.call_value(&["LATENCY", "HISTORY", "command"])
            .items()
            .len()
            >= 2,
        "a sample a second, from both shards"
    );
    // RESET counts the events it emptied.
    assert_eq!(
        c.call_value(&["LATENCY", "RESET", "command", "fsync"])
            .int(),
        1
    );
    assert_eq!(
        c.call_value(&["LATENCY", "HISTORY", "command"])
            .items()
            .len(),
        0
    );
}

#[test]
fn latency_histogram_answers_from_the_command_statistics() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.call_ok(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]);
    for i in 0..40 {
        c.call_ok(&["SET", "p", &format!("k{i}"), "v"]);
    }
    c.call_value(&["GET", "p", "k1"]);
    let reply = c.call_value(&["LATENCY", "HISTOGRAM", "set", "GET", "nosuch"]);
    let pairs = reply.pairs();
    let names: Vec<String> = pairs.iter().map(|(k, _)| k.text()).collect();
    assert_eq!(names, ["get", "set"], "table order, asked ones only");
    let (_, set) = &pairs[1];
    let fields = set.pairs();
    assert_eq!(fields[0].0.text(), "calls");
    assert_eq!(fields[0].1.int(), 40);
    assert_eq!(fields[1].0.text(), "histogram_usec");
    let points = fields[1].1.pairs();
    assert!(!points.is_empty());
    let mut previous = (0, 0);
    for (usec, count) in &points {
        let (usec, count) = (usec.int(), count.int());
        assert!(usec > previous.0 && count > previous.1, "{points:?}");
        // Redis's points: a power of two of nanoseconds from 1024, in microseconds.
        assert!(
            (10..40).any(|k| (1i64 << k) / 1000 == usec),
            "{usec} is no power-of-two bucket"
        );
        previous = (usec, count);
    }
    assert_eq!(previous.1, 40, "the last bucket counts every call");
    // All commands without arguments; nothing after a RESETSTAT.
    let all = c.call_value(&["LATENCY", "HISTOGRAM"]);
    assert!(all.pairs().len() >= 3, "{all:?}");
    c.call_ok(&["CONFIG", "RESETSTAT"]);
    let after = c.call_value(&["LATENCY", "HISTOGRAM", "set", "get"]);
    assert!(after.pairs().is_empty(), "{after:?}");

    // redis-server's shape for the same request.
    let Some(redis) = RealRedis::start("latency_histogram_answers_from_the_command_statistics")
    else {
        return;
    };
    let mut r = redis.conn();
    r.call(&["SET", "k", "v"]);
    let theirs = match parse_resp(&r.call(&["LATENCY", "HISTOGRAM", "set"])) {
        Ok(Some((reply, _))) => reply,
        other => panic!("redis LATENCY HISTOGRAM: {other:?}"),
    };
    let theirs = theirs.pairs();
    assert_eq!(theirs[0].0.text(), "set");
    let fields: Vec<String> = theirs[0].1.pairs().iter().map(|(k, _)| k.text()).collect();
    assert_eq!(fields, ["calls", "histogram_usec"]);
}

/// GET and SET leave their clock to the statistics' sample (one call in 8) when the slow log
/// watches only for calls of a millisecond or more, since on small values they cannot take
/// that long; one that moves a big value is still timed: a SET by the size of its request,
/// a GET by the size of its reply. Each is the second call of its command here, so the
/// sample (the first call) does not time it.
#[test]
fn bounded_commands_on_big_values_are_still_logged() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.call_ok(&["CONFIG", "SET", "slowlog-log-slower-than", "1000"]);
    c.call_ok(&["CREATE", "PARTITION", "s", "STRING", "MEMORY"]);
    c.call_ok(&["SET", "s", "small", "v"]);
    assert_eq!(c.call(&["GET", "s", "small"]), bulk(b"v"));
    let big = "x".repeat(40 << 20);
    c.call_ok(&["SET", "s", "big", &big]);
    let reply = c.call(&["GET", "s", "big"]);
    assert_eq!(reply.len(), big.len() + 13, "the 40 MiB value comes back");
    let got = entries(&c.call_value(&["SLOWLOG", "GET", "-1"]));
    let logged = |command: &str| {
        got.iter()
            .any(|e| e.args.first().map(String::as_str) == Some(command) && e.args[2] == "big")
    };
    assert!(logged("SET"), "the 40 MiB SET is in the slow log: {got:?}");
    assert!(logged("GET"), "the 40 MiB GET is in the slow log: {got:?}");
}
