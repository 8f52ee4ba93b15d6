//! Observability: INFO's Redis 7 sections (commandstats, errorstats, latencystats, cpu, ...)
//! counted right across shards, and their field names checked against a real `redis-server`
//! where Redis has the field ([`common::RealRedis`]; skipped with a message when it is not
//! installed, unless `GOKV_REQUIRE_REDIS` is set).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;

/// INFO's text as section name -> (field -> value), section names as written (`Server`).
fn sections(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for line in text.split("\r\n") {
        if let Some(name) = line.strip_prefix("# ") {
            out.push((name.to_string(), BTreeMap::new()));
        } else if let Some((field, value)) = line.split_once(':') {
            out.last_mut()
                .expect("a field before any section")
                .1
                .insert(field.to_string(), value.to_string());
        } else {
            assert!(line.is_empty(), "INFO line without field:value: {line:?}");
        }
    }
    out
}

/// The text of a bulk reply.
fn resp_text(reply: &[u8]) -> String {
    parse_resp(reply).unwrap().expect("a whole reply").0.text()
}

fn section(text: &str, name: &str) -> BTreeMap<String, String> {
    sections(text)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no # {name} in:\n{text}"))
        .1
}

/// `a=1,b=2` as a map.
fn attrs(value: &str) -> BTreeMap<String, String> {
    value
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn num(map: &BTreeMap<String, String>, field: &str) -> f64 {
    map.get(field)
        .unwrap_or_else(|| panic!("no {field} in {map:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{field} is not a number: {map:?}"))
}

#[test]
fn commandstats_count_calls_failures_and_rejections_across_shards() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    // Partitions on both shards, so that some GETs and SETs are forwarded.
    for p in ["a", "b", "c", "d"] {
        c.expect(&cmd(&["CREATE", "PARTITION", p, "STRING", "MEMORY"]), OK);
    }
    for p in ["a", "b", "c", "d"] {
        for i in 0..5 {
            c.expect(&cmd(&["SET", p, &format!("k{i}"), "v"]), OK);
            c.call(&["GET", p, &format!("k{i}")]);
        }
    }
    // A failed call: INCR of a value that is not an integer.
    c.expect_prefix(&cmd(&["INCR", "a", "k0"]), b"-ERR");
    // A rejected one: a user without WRITE.
    c.expect(&cmd(&["CREATE", "USER", "ro", "ro-pw"]), OK);
    c.expect(&cmd(&["GRANT", "READ", "ON", "a", "TO", "ro"]), OK);
    let mut ro = server.login("ro", "ro-pw");
    ro.expect_prefix(&cmd(&["SET", "a", "k0", "w"]), b"-NOPERM");

    let text = c.call_value(&["INFO", "commandstats"]).text();
    let stats = section(&text, "Commandstats");
    let get = attrs(&stats["cmdstat_get"]);
    assert_eq!(get["calls"], "20", "{text}");
    assert_eq!(get["failed_calls"], "0");
    assert_eq!(get["rejected_calls"], "0");
    let usec: f64 = get["usec"].parse().unwrap();
    let per_call: f64 = get["usec_per_call"].parse().unwrap();
    assert!(
        // usec is whole microseconds, usec_per_call from the nanoseconds.
        (per_call - usec / 20.0).abs() <= 1.0 / 20.0 + 0.01,
        "{text}"
    );
    let set = attrs(&stats["cmdstat_set"]);
    assert_eq!(
        (&*set["calls"], &*set["rejected_calls"]),
        ("20", "1"),
        "{text}"
    );
    let incr = attrs(&stats["cmdstat_incr"]);
    assert_eq!(
        (&*incr["calls"], &*incr["failed_calls"]),
        ("1", "1"),
        "{text}"
    );
    // Two-word commands as Redis names subcommands.
    assert_eq!(
        attrs(&stats["cmdstat_create|partition"])["calls"],
        "4",
        "{text}"
    );
    // Never-used commands are left out, as in Redis.
    assert!(!stats.contains_key("cmdstat_decrby"), "{text}");
    // Logins count too (the hasher's time is not in them).
    assert!(stats.contains_key("cmdstat_auth"), "{text}");

    let text = c.call_value(&["INFO", "latencystats"]).text();
    let latency = section(&text, "Latencystats");
    let get = attrs(&latency["latency_percentiles_usec_get"]);
    let (p50, p99, p999) = (num(&get, "p50"), num(&get, "p99"), num(&get, "p99.9"));
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999, "{text}");
    assert!(
        get["p50"].split('.').nth(1).map(str::len) == Some(3),
        "{text}"
    );
}

#[test]
fn errorstats_count_replies_by_code() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    c.expect_prefix(&cmd(&["NOSUCHCOMMAND"]), b"-ERR");
    c.expect_prefix(&cmd(&["NOSUCHCOMMAND"]), b"-ERR");
    c.expect_prefix(&cmd(&["GET", "nosuchpartition", "k"]), b"-NOPARTITION");
    let text = c.call_value(&["INFO", "errorstats"]).text();
    let errors = section(&text, "Errorstats");
    assert_eq!(errors["errorstat_ERR"], "count=2", "{text}");
    assert_eq!(errors["errorstat_NOPARTITION"], "count=1", "{text}");
    assert!(!errors.contains_key("errorstat_OOM"), "{text}");
    let stats = section(&c.call_value(&["INFO", "stats"]).text(), "Stats");
    assert_eq!(stats["total_error_replies"], "3");
}

/// The codes of replication and transactions count under their own names, as Redis's
/// errorstats show them (`-READONLY`, `-NOREPLICAS`, `-EXECABORT`), not under `ERR`.
#[test]
fn errorstats_name_the_replication_and_transaction_codes() {
    let server = Server::start(&["--min-replicas-to-write", "1"]);
    let mut c = server.raw();
    c.expect_prefix(
        &cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]),
        b"-NOREPLICAS",
    );
    c.call_ok(&["MULTI"]);
    c.expect_prefix(&cmd(&["NOSUCHCOMMAND"]), b"-ERR");
    c.expect_prefix(&cmd(&["EXEC"]), b"-EXECABORT");
    // A replica of a primary nobody runs: its link is down, its writes refused.
    let nobody = free_port().to_string();
    c.call_ok(&["REPLICAOF", "127.0.0.1", &nobody]);
    c.expect_prefix(&cmd(&["SET", "p", "k", "v"]), b"-READONLY");
    let text = c.call_value(&["INFO", "errorstats"]).text();
    let errors = section(&text, "Errorstats");
    for code in ["NOREPLICAS", "EXECABORT", "READONLY", "ERR"] {
        assert_eq!(errors[&format!("errorstat_{code}")], "count=1", "{text}");
    }
    c.call_ok(&["REPLICAOF", "NO", "ONE"]);
    // The same replies (no partition word) count under the same names on a real Redis.
    if let Some(redis) = RealRedis::start("errorstats_name_the_replication_and_transaction_codes") {
        let mut r = redis.conn();
        assert_eq!(r.call(&["CONFIG", "SET", "min-replicas-to-write", "1"]), OK);
        assert!(r.call(&["SET", "k", "v"]).starts_with(b"-NOREPLICAS"));
        assert_eq!(r.call(&["CONFIG", "SET", "min-replicas-to-write", "0"]), OK);
        assert_eq!(r.call(&["MULTI"]), OK);
        assert!(r.call(&["NOSUCHCOMMAND"]).starts_with(b"-ERR"));
        assert!(r.call(&["EXEC"]).starts_with(b"-EXECABORT"));
        assert_eq!(r.call(&["REPLICAOF", "127.0.0.1", &nobody]), OK);
        assert!(r.call(&["SET", "k", "v"]).starts_with(b"-READONLY"));
        let text = resp_text(&r.call(&["INFO", "errorstats"]));
        let errors = section(&text, "Errorstats");
        for code in ["NOREPLICAS", "EXECABORT", "READONLY", "ERR"] {
            assert_eq!(
                errors[&format!("errorstat_{code}")],
                "count=1",
                "redis: {text}"
            );
        }
    }
}

#[test]
fn info_sections_come_in_redis_order_and_default_leaves_out_the_long_ones() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    let heads = |text: &str| -> Vec<String> { sections(text).into_iter().map(|s| s.0).collect() };
    let default = heads(&c.call_value(&["INFO"]).text());
    let expected_default = [
        "Server",
        "Clients",
        "Memory",
        "Persistence",
        "Stats",
        "Replication",
        "CPU",
        "Modules",
        "Errorstats",
        "Cluster",
        "Keyspace",
        "Shards",
    ];
    assert_eq!(default, expected_default);
    assert_eq!(
        heads(&c.call_value(&["INFO", "default"]).text()),
        expected_default
    );
    let all = heads(&c.call_value(&["INFO", "all"]).text());
    assert_eq!(
        all,
        [
            "Server",
            "Clients",
            "Memory",
            "Persistence",
            "Stats",
            "Replication",
            "CPU",
            "Modules",
            "Commandstats",
            "Errorstats",
            "Latencystats",
            "Cluster",
            "Keyspace",
            "Shards",
        ]
    );
    assert_eq!(heads(&c.call_value(&["INFO", "everything"]).text()), all);
    // Asked out of order, and ignoring case: still Redis's order.
    assert_eq!(
        heads(
            &c.call_value(&["INFO", "CPU", "server", "commandstats"])
                .text()
        ),
        ["Server", "CPU", "Commandstats"]
    );
    if let Some(redis) = RealRedis::start("info_sections_come_in_redis_order") {
        let mut r = redis.conn();
        let mut redis_heads = |args: &[&str]| heads(&resp_text(&r.call(args)));
        let without_shards = |h: &[String]| -> Vec<String> {
            h.iter().filter(|h| *h != "Shards").cloned().collect()
        };
        assert_eq!(without_shards(&default), redis_heads(&["INFO"]));
        assert_eq!(without_shards(&all), redis_heads(&["INFO", "everything"]));
        assert_eq!(
            redis_heads(&["INFO", "CPU", "server", "commandstats"]),
            ["Server", "CPU", "Commandstats"]
        );
    }
}

/// The fields GoKV answers under Redis's names: each must be a field of a real redis-server's
/// INFO of the same section (so a typo or an invented name fails).
const REDIS_FIELDS: &[(&str, &[&str])] = &[
    (
        "Server",
        &[
            "redis_version",
            "redis_mode",
            "os",
            "arch_bits",
            "multiplexing_api",
            "process_id",
            "run_id",
            "tcp_port",
            "server_time_usec",
            "uptime_in_seconds",
            "uptime_in_days",
            "executable",
            "config_file",
        ],
    ),
    (
        "Clients",
        &[
            "connected_clients",
            "cluster_connections",
            "maxclients",
            "blocked_clients",
            "tracking_clients",
        ],
    ),
    (
        "Memory",
        &[
            "used_memory",
            "used_memory_human",
            "used_memory_rss",
            "used_memory_rss_human",
            "total_system_memory",
            "total_system_memory_human",
            "maxmemory",
            "maxmemory_human",
            "maxmemory_policy",
            "mem_fragmentation_ratio",
            "mem_allocator",
        ],
    ),
    (
        "Persistence",
        &["loading", "aof_enabled", "rdb_bgsave_in_progress"],
    ),
    (
        "Stats",
        &[
            "total_connections_received",
            "total_commands_processed",
            "instantaneous_ops_per_sec",
            "rejected_connections",
            "sync_full",
            "sync_partial_ok",
            "sync_partial_err",
            "expired_keys",
            "evicted_keys",
            "keyspace_hits",
            "keyspace_misses",
            "total_error_replies",
            "pubsub_channels",
            "pubsub_patterns",
        ],
    ),
    (
        "Replication",
        &[
            // A primary's (a replica's are checked in tests/replication.rs).
            "role",
            "connected_slaves",
            "master_failover_state",
            "master_replid",
            "master_replid2",
            "master_repl_offset",
            "second_repl_offset",
            "repl_backlog_active",
            "repl_backlog_size",
            "repl_backlog_first_byte_offset",
            "repl_backlog_histlen",
        ],
    ),
    (
        "CPU",
        &[
            "used_cpu_sys",
            "used_cpu_user",
            "used_cpu_sys_children",
            "used_cpu_user_children",
        ],
    ),
    ("Cluster", &["cluster_enabled"]),
];

/// GoKV's own fields (no Redis counterpart), per section.
const GOKV_FIELDS: &[(&str, &[&str])] = &[
    ("Server", &["gokv_version", "shards"]),
    // `pubsub_clients`: Redis 7.2's name, not a field of the 7.0 this is compared with.
    (
        "Clients",
        &["client_output_limit", "timeout", "pubsub_clients"],
    ),
    (
        "Persistence",
        &[
            "partitions_durable",
            "log_bytes",
            "log_commits",
            "fsyncs",
            "io_errors",
            "compactions",
        ],
    ),
    (
        "Stats",
        &[
            "forwarded_requests",
            "forwarded_batches",
            "client_output_limit_disconnections",
            "idle_timeout_disconnections",
            "oom_rejected_writes",
        ],
    ),
];

#[test]
fn info_fields_are_redis_fields_or_listed_as_gokvs_own() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let text = c.call_value(&["INFO", "everything"]).text();
    let mine = sections(&text);
    for (name, fields) in &mine {
        if matches!(
            name.as_str(),
            "Commandstats" | "Errorstats" | "Latencystats" | "Keyspace" | "Shards" | "Modules"
        ) {
            continue;
        }
        let redis_names: BTreeSet<&str> = REDIS_FIELDS
            .iter()
            .filter(|(s, _)| s == name)
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        let own: BTreeSet<&str> = GOKV_FIELDS
            .iter()
            .filter(|(s, _)| s == name)
            .flat_map(|(_, f)| f.iter().copied())
            .collect();
        for field in fields.keys() {
            // Per-shard persistence lines are GoKV's own, one per shard.
            if field.starts_with("shard") && field.ends_with("_persistence") {
                continue;
            }
            assert!(
                redis_names.contains(field.as_str()) || own.contains(field.as_str()),
                "# {name} field {field} is in neither list"
            );
        }
        for field in &redis_names {
            assert!(fields.contains_key(*field), "# {name} lacks {field}");
        }
    }
    // Values that must be what they say.
    let server_section = section(&text, "Server");
    assert_eq!(server_section["process_id"], server.pid().to_string());
    assert_eq!(server_section["run_id"].len(), 40);
    assert_eq!(server_section["arch_bits"], "64");
    // `uname -s -r -m`, as Redis prints it.
    if let Ok(out) = std::process::Command::new("uname")
        .args(["-s", "-r", "-m"])
        .output()
    {
        assert_eq!(
            server_section["os"],
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    let cpu = section(&text, "CPU");
    assert!(
        num(&cpu, "used_cpu_user") + num(&cpu, "used_cpu_sys") > 0.0,
        "{cpu:?}"
    );
    assert!(cpu["used_cpu_sys"].split('.').nth(1).map(str::len) == Some(6));
    let clients = section(&text, "Clients");
    assert_eq!(clients["connected_clients"], "1");
    let memory = section(&text, "Memory");
    assert!(num(&memory, "used_memory_rss") > 0.0);
    assert_eq!(section(&text, "Replication")["role"], "master");

    if let Some(redis) = RealRedis::start("info_fields_are_redis_fields") {
        let theirs = sections(&resp_text(&redis.conn().call(&["INFO", "everything"])));
        for (name, fields) in REDIS_FIELDS {
            let (_, redis_fields) = theirs
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("redis-server has no # {name}"));
            for field in *fields {
                assert!(
                    redis_fields.contains_key(*field),
                    "# {name}: {field} is not a field of redis-server's INFO"
                );
            }
            // And GoKV's own names are not Redis's.
            for (_, own) in GOKV_FIELDS.iter().filter(|(s, _)| s == name) {
                for field in *own {
                    assert!(!redis_fields.contains_key(*field), "{field} is Redis's");
                }
            }
        }
    }
}

#[test]
fn stats_count_hits_misses_and_ops_per_second() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    c.expect(&cmd(&["SET", "p", "k", "v"]), OK);
    c.call(&["GET", "p", "k"]);
    c.call(&["GET", "p", "k"]);
    c.call(&["GET", "p", "nokey"]);
    let stats = section(&c.call_value(&["INFO", "stats"]).text(), "Stats");
    assert_eq!(stats["keyspace_hits"], "2");
    assert_eq!(stats["keyspace_misses"], "1");
    // A burst of commands between two readings shows as a rate.
    std::thread::sleep(std::time::Duration::from_millis(150));
    let mut pipeline = Vec::new();
    for _ in 0..2000 {
        pipeline.extend_from_slice(&cmd(&["PING"]));
    }
    c.send(&pipeline);
    for _ in 0..2000 {
        c.read_reply();
    }
    let stats = section(&c.call_value(&["INFO", "stats"]).text(), "Stats");
    assert!(num(&stats, "instantaneous_ops_per_sec") > 0.0, "{stats:?}");
}
