//! CONFIG SET, RESETSTAT, REWRITE and HELP against the real binary: Redis 7's replies and
//! error texts (compared with a real `redis-server` where both know the parameter), all or
//! none, live on every shard at once, INFO reset but Prometheus counters never, the config
//! file rewritten.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn err(text: &str) -> Vec<u8> {
    format!("-{text}\r\n").into_bytes()
}

/// One parameter's value, by CONFIG GET.
fn config_value(c: &mut RawConn, name: &str) -> String {
    let reply = c.call_value(&["CONFIG", "GET", name]);
    let items = reply.items();
    assert_eq!(items.len(), 2, "CONFIG GET {name}: {reply:?}");
    items[1].text()
}

/// Refusals both servers answer with the same bytes (Redis 7's texts): unknown parameters,
/// wrong arities, twice the same parameter, values out of a range both share or not of the
/// parameter's type, and a bad pair after a good one (nothing is applied).
const SHARED_REFUSALS: &[&[&str]] = &[
    &["CONFIG", "SET", "foo", "bar"],
    &["CONFIG", "SET", "a"],
    &["CONFIG", "SET", "timeout", "5", "timeout"],
    &["CONFIG", "SET", "timeout", "5", "timeout", "6"],
    &["CONFIG", "SET", "timeout", "5", "TIMEOUT", "6"],
    &["CONFIG", "SET", "timeout", "5", "foo", "1"],
    &["CONFIG", "SET", "timeout", "5", "maxmemory", "x"],
    &["CONFIG", "SET", "maxmemory", "abc"],
    &["CONFIG", "SET", "maxmemory", "-1"],
    &["CONFIG", "SET", "maxmemory", "1kk"],
    &["CONFIG", "SET", "maxmemory", "10", "maxmemory", "20"],
    &["CONFIG", "SET", "timeout", "abc"],
    &["CONFIG", "SET", "timeout", "99999999999999999999"],
    &["CONFIG", "SET", "maxclients", "0"],
    &["CONFIG", "SET", "slowlog-log-slower-than", "-5"],
    &["CONFIG", "SET", "slowlog-log-slower-than", "abc"],
    &["CONFIG", "SET", "slowlog-max-len", "-1"],
    &["CONFIG", "SET", "latency-monitor-threshold", "-1"],
    &["CONFIG", "SET", "latency-monitor-threshold", "1.5"],
    &["CONFIG", "GET"],
    &["CONFIG", "RESETSTAT", "x"],
    &["CONFIG", "REWRITE"],
    &["CONFIG", "REWRITE", "x"],
    &["CONFIG", "foo"],
    &["CONFIG", "HELP"],
];

/// GoKV's answers to the rows above, and to its own parameters' refusals.
const REFUSALS: &[(&[&str], &str)] = &[
    (
        &["CONFIG", "SET", "foo", "bar"],
        "ERR Unknown option or number of arguments for CONFIG SET - 'foo'",
    ),
    (
        &["CONFIG", "SET", "a"],
        "ERR wrong number of arguments for 'config|set' command",
    ),
    (
        &["CONFIG", "SET", "timeout", "5", "timeout", "6"],
        "ERR CONFIG SET failed (possibly related to argument 'timeout') - duplicate parameter",
    ),
    (
        &["CONFIG", "SET", "timeout", "5", "foo", "1"],
        "ERR Unknown option or number of arguments for CONFIG SET - 'foo'",
    ),
    (
        &["CONFIG", "SET", "timeout", "5", "maxmemory", "x"],
        "ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a \
         memory value",
    ),
    (
        &["CONFIG", "SET", "slowlog-log-slower-than", "-5"],
        "ERR CONFIG SET failed (possibly related to argument 'slowlog-log-slower-than') - \
         argument must be between -1 and 9223372036854775807 inclusive",
    ),
    (
        &["CONFIG", "SET", "timeout", "-1"],
        "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument must be \
         between 0 and 3153600000 inclusive",
    ),
    // Read once at start.
    (
        &["CONFIG", "SET", "port", "1"],
        "ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config",
    ),
    (
        &["CONFIG", "SET", "timeout", "5", "dir", "/tmp"],
        "ERR CONFIG SET failed (possibly related to argument 'dir') - can't set immutable config",
    ),
    (
        &["CONFIG", "SET", "appendonly", "yes"],
        "ERR CONFIG SET failed (possibly related to argument 'appendonly') - can't set \
         immutable config",
    ),
    (
        &["CONFIG", "SET", "shards", "4"],
        "ERR CONFIG SET failed (possibly related to argument 'shards') - can't set immutable \
         config",
    ),
    (
        &["CONFIG", "SET", "tls-cert-file", "/etc/cert.pem"],
        "ERR CONFIG SET failed (possibly related to argument 'tls-cert-file') - TLS is off: the \
         certificates can only be set with a --tls-port",
    ),
    (
        &["CONFIG", "SET", "max-key-len", "0"],
        "ERR CONFIG SET failed (possibly related to argument 'max-key-len') - argument must be \
         between 1 and 4294967295 inclusive",
    ),
    (
        &["CONFIG", "SET", "client-output-limit", "0"],
        "ERR CONFIG SET failed (possibly related to argument 'client-output-limit') - argument \
         must be a memory value of at least 1 byte",
    ),
    (
        &["CONFIG", "SET", "migrate-connections", "maybe"],
        "ERR CONFIG SET failed (possibly related to argument 'migrate-connections') - argument \
         must be 'yes' or 'no'",
    ),
    (
        &["CONFIG", "SET", "idle-poll-us", "1001"],
        "ERR CONFIG SET failed (possibly related to argument 'idle-poll-us') - argument must be \
         between 0 and 1000 inclusive",
    ),
    (
        &["CONFIG", "SET", "max-clients", "99999999999"],
        "ERR CONFIG SET failed (possibly related to argument 'max-clients') - argument must be \
         between 1 and 4294967295 inclusive",
    ),
    (
        &["CONFIG", "REWRITE"],
        "ERR The server is running without a config file",
    ),
    (
        &["CONFIG", "foo"],
        "ERR unknown subcommand 'foo'. Try CONFIG HELP.",
    ),
];

#[test]
fn config_set_refuses_as_redis_7_and_changes_nothing() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    let before = c.call(&["CONFIG", "GET", "*"]);
    for (args, reply) in REFUSALS {
        assert_eq!(show(&c.call(args)), show(&err(reply)), "{args:?}");
    }
    for args in SHARED_REFUSALS {
        let got = c.call(args);
        assert!(
            got.starts_with(b"-ERR ") || args[1] == "HELP",
            "{args:?}: {}",
            show(&got)
        );
    }
    // All or none: the good pairs before a bad one were not applied either.
    assert_eq!(
        show(&c.call(&["CONFIG", "GET", "*"])),
        show(&before),
        "a refused CONFIG SET changed something"
    );
    assert_eq!(config_value(&mut c, "timeout"), "0");

    let Some(redis) = RealRedis::start("config_set_refuses_as_redis_7_and_changes_nothing") else {
        return;
    };
    let mut r = redis.conn();
    for args in SHARED_REFUSALS {
        assert_eq!(
            show(&r.call(args)),
            show(&c.call(args)),
            "{args:?}: redis-server and GoKV differ"
        );
    }
}

#[test]
fn config_set_takes_several_pairs_and_both_names() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.call_ok(&[
        "CONFIG",
        "SET",
        "timeout",
        "300",
        "maxmemory",
        "64mb",
        "slowlog-max-len",
        "7",
    ]);
    assert_eq!(config_value(&mut c, "timeout"), "300");
    assert_eq!(config_value(&mut c, "maxmemory"), (64 << 20).to_string());
    assert_eq!(config_value(&mut c, "max-memory"), (64 << 20).to_string());
    assert_eq!(config_value(&mut c, "slowlog-max-len"), "7");
    c.call_ok(&["CONFIG", "SET", "MAX-MEMORY", "0", "maxclients", "50"]);
    assert_eq!(config_value(&mut c, "maxmemory"), "0");
    assert_eq!(config_value(&mut c, "max-clients"), "50");
    c.call_ok(&[
        "CONFIG",
        "SET",
        "migrate-connections",
        "no",
        "latency-monitor-threshold",
        "5",
        "slowlog-log-slower-than",
        "-1",
    ]);
    assert_eq!(config_value(&mut c, "migrate-connections"), "no");
    assert_eq!(config_value(&mut c, "latency-monitor-threshold"), "5");
    assert_eq!(config_value(&mut c, "slowlog-log-slower-than"), "-1");
    // INFO follows.
    let info = c.call_value(&["INFO", "clients"]).text();
    assert!(info.contains("maxclients:50\r\n"), "{info}");
    assert!(info.contains("timeout:300\r\n"), "{info}");
    // CONFIG HELP is Redis's text.
    let help = c.call_value(&["CONFIG", "HELP"]).texts();
    assert_eq!(
        help[0],
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    );
    assert!(help.iter().any(|l| l == "RESETSTAT"), "{help:?}");
}

#[test]
fn live_settings_apply_on_every_shard_at_once() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let (a, b) = c.one_partition_per_shard();
    // A second connection, so that both a local and a forwarded path see each change.
    let mut d = server.raw();
    for p in [&a, &b] {
        c.call_ok(&["SET", p, "k", "v"]);
    }
    // max-key-len: every shard refuses a longer key from the next request on.
    c.call_ok(&["CONFIG", "SET", "max-key-len", "4"]);
    for conn in [&mut c, &mut d] {
        for p in [&a, &b] {
            let e = conn.call_err(&["SET", p, "12345", "v"]);
            assert!(e.contains("key"), "{p}: {e}");
            conn.call_ok(&["SET", p, "1234", "v"]);
        }
    }
    c.call_ok(&["CONFIG", "SET", "max-key-len", "64kb"]);
    // max-memory: every shard's writes refused with -OOM, then allowed again.
    c.call_ok(&["CONFIG", "SET", "maxmemory", "1"]);
    for conn in [&mut c, &mut d] {
        for p in [&a, &b] {
            let e = conn.call_err(&["SET", p, "other", "value"]);
            assert!(e.starts_with("OOM"), "{p}: {e}");
        }
    }
    c.call_ok(&["CONFIG", "SET", "maxmemory", "0"]);
    for p in [&a, &b] {
        d.call_ok(&["SET", p, "other", "value"]);
    }
    // max-keys-reply: KEYS on either shard.
    c.call_ok(&["CONFIG", "SET", "max-keys-reply", "1"]);
    for p in [&a, &b] {
        let e = d.call_err(&["KEYS", p, "*"]);
        assert!(e.contains("SCAN"), "{p}: {e}");
    }
    c.call_ok(&["CONFIG", "SET", "max-keys-reply", "100000"]);
    // client-output-limit: a reply past the new limit closes its connection, on either shard.
    let big = "x".repeat(8192);
    for p in [&a, &b] {
        c.call_ok(&["SET", p, "big", &big]);
    }
    c.call_ok(&["CONFIG", "SET", "client-output-limit", "4kb"]);
    for p in [&a, &b] {
        let mut reader = server.raw();
        reader.send(&cmd(&["GET", p, "big"]));
        reader.drain_until_closed(Duration::from_secs(20));
    }
    c.call_ok(&["CONFIG", "SET", "client-output-limit", "64mb"]);
    assert_eq!(d.call_value(&["GET", &b, "big"]).text(), big);
    // max-clients: the acceptor refuses the connection past a lowered limit.
    let open = c
        .call_value(&["INFO", "clients"])
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .map(|n| n.trim().parse::<usize>().unwrap())
        .unwrap();
    c.call_ok(&["CONFIG", "SET", "max-clients", &open.to_string()]);
    let mut refused = server.raw_unauthenticated();
    assert_eq!(
        refused.read_value_or_close(),
        Some(Resp::Error("ERR max number of clients reached".into()))
    );
    c.call_ok(&["CONFIG", "SET", "max-clients", "10000"]);
    assert_eq!(server.raw().call_value(&["PING"]), Resp::simple("PONG"));
    // timeout: idle connections on both shards are closed, though the shards were asleep
    // (no timer for the sweep while it was off).
    let mut idle: Vec<RawConn> = (0..4).map(|_| server.raw()).collect();
    let shards: Vec<String> = idle.iter_mut().map(|i| i.shard()).collect();
    assert!(
        shards.contains(&"0".to_string()) && shards.contains(&"1".to_string()),
        "idle connections on both shards: {shards:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    c.call_ok(&["CONFIG", "SET", "timeout", "1"]);
    let started = Instant::now();
    for conn in &mut idle {
        conn.drain_until_closed(Duration::from_secs(20));
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let mut c = server.raw();
    c.call_ok(&["CONFIG", "SET", "timeout", "0"]);
    let info = c.call_value(&["INFO", "stats"]).text();
    assert!(
        !info.contains("idle_timeout_disconnections:0\r\n"),
        "{info}"
    );
}

/// The value of one sample line of `/metrics` (`name{labels}`), 0 when absent.
fn metric(port: u16, sample: &str) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[test]
fn resetstat_resets_info_but_never_the_prometheus_counters() {
    let (server, metrics_port) = with_metrics(&[]);
    let mut c = server.raw();
    c.call_ok(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]);
    for _ in 0..20 {
        c.call_ok(&["SET", "p", "k", "v"]);
        c.call_value(&["GET", "p", "k"]);
    }
    c.call_err(&["GET", "nosuch", "k"]);
    let info = c.call_value(&["INFO", "everything"]).text();
    assert!(info.contains("cmdstat_set:calls=20,"), "{info}");
    assert!(info.contains("errorstat_NOPARTITION:count=1"), "{info}");
    assert!(info.contains("latency_percentiles_usec_get:"), "{info}");
    c.call_ok(&["CONFIG", "RESETSTAT"]);
    let info = c.call_value(&["INFO", "everything"]).text();
    for gone in [
        "cmdstat_set:",
        "cmdstat_get:",
        "errorstat_NOPARTITION",
        "latency_percentiles_usec_set:",
        "keyspace_hits:20",
    ] {
        assert!(!info.contains(gone), "{gone} after RESETSTAT:\n{info}");
    }
    assert!(info.contains("keyspace_hits:0\r\n"), "{info}");
    assert!(info.contains("total_error_replies:0\r\n"), "{info}");
    // Counting goes on from zero.
    c.call_ok(&["SET", "p", "k", "v"]);
    let info = c.call_value(&["INFO", "commandstats"]).text();
    assert!(info.contains("cmdstat_set:calls=1,"), "{info}");
    // The endpoint's counters went on growing through the reset.
    assert_eq!(
        metric(metrics_port, "gokv_commands_total{cmd=\"set\"}"),
        21.0
    );
    assert_eq!(
        metric(metrics_port, "gokv_errors_total{err=\"NOPARTITION\"}"),
        1.0
    );
}

#[test]
fn config_rewrite_writes_the_live_values_into_the_config_file() {
    let dir = DataDir::new("config-rewrite");
    let file = dir.path().join("gokv.toml");
    std::fs::write(
        &file,
        "# mine\nmax-args = 5000\ntimeout = 30 # seconds idle\n",
    )
    .unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let server = Server::start(&["--config", &file_arg]);
    let mut c = server.raw();
    assert_eq!(config_value(&mut c, "timeout"), "30");
    assert_eq!(config_value(&mut c, "max-args"), "5000");
    c.call_ok(&["CONFIG", "SET", "timeout", "7", "slowlog-max-len", "9"]);
    c.call_ok(&["CONFIG", "REWRITE"]);
    let text = std::fs::read_to_string(&file).unwrap();
    // Comments and the other keys are kept.
    assert!(text.starts_with("# mine\n"), "{text}");
    assert!(text.contains("timeout = 7 # seconds idle\n"), "{text}");
    assert!(!text.contains("replicaof"), "{text}");
    assert!(text.contains("slowlog-max-len = 9\n"), "{text}");
    assert!(text.contains("max-args = 5000\n"), "{text}");
    drop(server);
    // The next start reads what was rewritten.
    let server = Server::start(&["--config", &file_arg]);
    let mut c = server.raw();
    assert_eq!(config_value(&mut c, "timeout"), "7");
    assert_eq!(config_value(&mut c, "slowlog-max-len"), "9");
    let info = c.call_value(&["INFO", "server"]).text();
    assert!(
        info.contains(&format!("config_file:{file_arg}\r\n")),
        "{info}"
    );
}

/// Every setting CONFIG SET takes, under its name and Redis's aliases, with a value that is
/// not its default; `config_rewrite_keeps_every_live_setting_across_a_restart` fails when a
/// new live setting is missing here (add it, with a value it takes).
const LIVE_SETTINGS: &[(&str, &str, &[&str])] = &[
    ("timeout", "123", &[]),
    ("max-clients", "777", &["maxclients"]),
    ("client-output-limit", "12345678", &[]),
    ("max-memory", "987654321", &["maxmemory"]),
    ("max-key-len", "4096", &[]),
    ("max-keys-reply", "4321", &[]),
    ("migrate-connections", "no", &[]),
    ("idle-poll-us", "7", &[]),
    ("slowlog-log-slower-than", "2345", &[]),
    ("slowlog-max-len", "77", &[]),
    ("latency-monitor-threshold", "55", &[]),
    ("min-replicas-to-write", "2", &["min-slaves-to-write"]),
    ("min-replicas-max-lag", "17", &["min-slaves-max-lag"]),
    ("replica-priority", "42", &["slave-priority"]),
];

/// CONFIG REWRITE writes every setting CONFIG SET may change, not a hand-kept list: each one
/// set live comes back from the rewritten file after a restart. The settings are found by
/// asking the server (every name CONFIG GET lists that CONFIG SET takes with its own value),
/// so a live setting added later without being rewritten fails here.
#[test]
fn config_rewrite_keeps_every_live_setting_across_a_restart() {
    let dir = DataDir::new("config-rewrite-all");
    let file = dir.path().join("gokv.toml");
    std::fs::write(&file, "# every live setting\nmax-args = 5000\n").unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let server = Server::start(&["--config", &file_arg]);
    let mut c = server.raw();
    let all = c.call_value(&["CONFIG", "GET", "*"]);
    let known: Vec<&str> = LIVE_SETTINGS
        .iter()
        .flat_map(|(name, _, aliases)| std::iter::once(*name).chain(aliases.iter().copied()))
        .collect();
    let mut live = 0;
    for (name, value) in all.pairs() {
        let (name, value) = (name.text(), value.text());
        let reply = c.call_value(&["CONFIG", "SET", &name, &value]);
        if matches!(reply, Resp::Error(_)) {
            continue; // immutable, or a TLS file on a server without TLS (tests/tls.rs)
        }
        live += 1;
        assert!(
            known.contains(&name.as_str()),
            "{name} is live but missing from LIVE_SETTINGS"
        );
    }
    assert_eq!(live, known.len(), "a setting of LIVE_SETTINGS is not live");
    for (name, value, _) in LIVE_SETTINGS {
        c.call_ok(&["CONFIG", "SET", name, value]);
    }
    c.call_ok(&["CONFIG", "REWRITE"]);
    drop(server);
    let server = Server::start(&["--config", &file_arg]);
    let mut c = server.raw();
    for (name, value, aliases) in LIVE_SETTINGS {
        for name in std::iter::once(name).chain(aliases.iter()) {
            assert_eq!(
                &config_value(&mut c, name),
                value,
                "{name} after the restart"
            );
        }
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("# every live setting\nmax-args = 5000\n"),
        "{text}"
    );
}

/// CONFIG REWRITE writes the role too (Sentinel rewrites each node's after a failover): the
/// primary a replica follows as `replicaof`, removed again once it is a primary; the next
/// start follows what the file says.
#[test]
fn config_rewrite_writes_replicaof_and_removes_it_after_replicaof_no_one() {
    let primary = Server::start(&[]);
    let dir = DataDir::new("config-rewrite-role");
    let file = dir.path().join("gokv.toml");
    std::fs::write(&file, "# node b\ntimeout = 0\n").unwrap();
    let file_arg = file.to_str().unwrap().to_string();
    let login = [
        "--primary-user",
        "admin",
        "--primary-password",
        ADMIN_PASSWORD,
    ];
    let mut args = vec!["--config", &file_arg];
    args.extend(login);
    let server = Server::start(&args);
    let mut c = server.raw();
    let at = format!("127.0.0.1:{}", primary.port());
    c.call_ok(&["REPLICAOF", "127.0.0.1", &primary.port().to_string()]);
    c.call_ok(&["CONFIG", "REWRITE"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# node b\n"), "{text}");
    assert!(text.contains(&format!("replicaof = \"{at}\"\n")), "{text}");
    drop(c);
    drop(server);
    let server = Server::start(&args);
    // A login may race the full sync's USERS (the same password under the primary's hash):
    // retried.
    let url = server.url();
    let mut c = poll_until(Duration::from_secs(20), || {
        redis::Client::open(url.as_str())
            .ok()?
            .get_connection()
            .ok()
    })
    .expect("a login on the replica");
    let role: String = q_ok(&mut c, &["INFO", "replication"]);
    assert!(role.contains("role:slave\r\n"), "{role}");
    assert!(
        role.contains(&format!("master_port:{}\r\n", primary.port())),
        "{role}"
    );
    q_ok::<()>(&mut c, &["REPLICAOF", "NO", "ONE"]);
    q_ok::<()>(&mut c, &["CONFIG", "REWRITE"]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("replicaof"), "{text}");
    assert!(text.contains("timeout = 0\n"), "{text}");
}
