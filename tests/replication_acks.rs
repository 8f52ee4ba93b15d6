//! Replication acknowledgements end to end, with real processes: `WAIT` (counts, timeouts, a
//! stopped replica, errors as Redis 7 words them, other clients served while one waits),
//! `--min-replicas-to-write` / `--min-replicas-max-lag`, the acked offsets and lag in INFO,
//! ROLE and the metrics, `--replica-priority` and the announced address, and a hostile
//! replica's acks.

mod common;

use common::replication::*;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::RealRedis;
use common::{cmd, poll_until, q_ok, with_metrics, RawConn, Server, ADMIN_PASSWORD};

/// `slave0`'s fields, by name.
fn slave0(con: &mut redis::Connection) -> Option<Vec<(String, String)>> {
    let line = repl_info(con, "slave0")?;
    Some(
        line.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
}

/// Waits until the primary shows one replica online.
fn online(p: &mut redis::Connection) {
    let up = poll_until(CONVERGE, || {
        let s = slave0(p)?;
        (field(&s, "state") == "online").then_some(())
    });
    assert!(
        up.is_some(),
        "the replica never came online:\n{}",
        q_ok::<String>(p, &["INFO", "replication"])
    );
}

/// A raw connection that reads for up to `secs` before giving up (WAIT parks it).
fn patient(server: &Server, secs: u64) -> RawConn {
    let c = RawConn::connect_admin(&server.addr());
    c.stream
        .set_read_timeout(Some(Duration::from_secs(secs)))
        .unwrap();
    c
}

/// WAIT counts the replica once it applied the connection's writes, on every shard; a
/// connection that never wrote counts every online replica; asking for more replicas than
/// there are waits out the timeout and answers how many did; INFO's and ROLE's offsets are
/// the acknowledged ones, equal to the primary's once it is quiet.
#[test]
fn wait_counts_the_replicas_that_applied_the_connections_writes() {
    let primary = Server::start(&["--shards", "2"]);
    let mut admin = primary.raw();
    let (a, b) = admin.one_partition_per_shard();
    let replica = start_replica(primary.port(), &["--shards", "2"]);
    let mut p = primary.client();
    online(&mut p);

    let mut c = patient(&primary, 60);
    assert_eq!(
        c.call(&["WAIT", "1", "0"]),
        b":1\r\n",
        "never wrote: online"
    );
    for i in 0..200 {
        c.call_ok(&["SET", &a, &format!("k{i}"), "v"]);
        c.call_ok(&["SET", &b, &format!("k{i}"), "w"]);
    }
    let started = Instant::now();
    assert_eq!(c.call(&["WAIT", "1", "0"]), b":1\r\n");
    assert!(started.elapsed() < Duration::from_secs(30));
    // Pipelined right behind the writes it waits for (their replies are still owed when
    // WAIT is read): the answer covers them, and replies keep their order.
    let mut pipe = Vec::new();
    pipe.extend(cmd(&["SET", &a, "last-a", "1"]));
    pipe.extend(cmd(&["SET", &b, "last-b", "2"]));
    pipe.extend(cmd(&["WAIT", "1", "0"]));
    pipe.extend(cmd(&["PING"]));
    c.send(&pipe);
    assert_eq!(c.read_reply(), b"+OK\r\n");
    assert_eq!(c.read_reply(), b"+OK\r\n");
    assert_eq!(c.read_reply(), b":1\r\n");
    assert_eq!(c.read_reply(), b"+PONG\r\n");
    let mut r = replica_client(&replica);
    let got: Option<String> = q_ok(&mut r, &["GET", &a, "last-a"]);
    assert_eq!(
        got.as_deref(),
        Some("1"),
        "WAIT answered before the replica had it"
    );
    let got: Option<String> = q_ok(&mut r, &["GET", &b, "last-b"]);
    assert_eq!(
        got.as_deref(),
        Some("2"),
        "WAIT answered before the replica had it"
    );

    // Two replicas asked for, one there: the timeout, then the count.
    let started = Instant::now();
    assert_eq!(c.call(&["WAIT", "2", "700"]), b":1\r\n");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(650), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // Quiet: the acknowledged offset is the primary's, in INFO and ROLE.
    let want = poll_until(CONVERGE, || {
        let want = repl_info(&mut p, "master_repl_offset")?;
        let s = slave0(&mut p)?;
        (field(&s, "offset") == want).then_some(want)
    })
    .expect("the replica's acknowledged offset never reached the primary's");
    assert_ne!(want, "0");
    let s = slave0(&mut p).unwrap();
    assert_eq!(field(&s, "ip"), "127.0.0.1");
    assert_eq!(field(&s, "port"), replica.port().to_string());
    assert_eq!(field(&s, "state"), "online");
    let lag: u64 = field(&s, "lag").parse().unwrap();
    assert!(lag <= 3, "acks come every second: lag {lag}");
    let role: Vec<redis::Value> = q_ok(&mut p, &["ROLE"]);
    let expected = redis::Value::Array(vec![redis::Value::Array(vec![
        redis::Value::BulkString(b"127.0.0.1".to_vec()),
        redis::Value::BulkString(replica.port().to_string().into_bytes()),
        redis::Value::BulkString(want.clone().into_bytes()),
    ])]);
    assert_eq!(role[2], expected, "{role:?}");
    assert_eq!(repl_info(&mut r, "slave_repl_offset"), Some(want));
}

/// A replica stopped with SIGSTOP acknowledges nothing: WAIT times out with 0 after its
/// timeout; a WAIT parked for ever does not stop the shard from serving other clients, nor
/// the waiting client's later requests from keeping their order; SIGCONT answers it.
#[test]
fn wait_with_a_stopped_replica_times_out_and_never_blocks_the_shard() {
    let primary = Server::start(&["--shards", "1"]);
    let mut admin = primary.raw();
    admin.call_ok(&["CREATE", "PARTITION", "s", "STRING", "MEMORY"]);
    let replica = start_replica(primary.port(), &["--shards", "1"]);
    let mut p = primary.client();
    online(&mut p);
    let mut c = patient(&primary, 60);
    c.call_ok(&["SET", "s", "k", "before"]);
    assert_eq!(c.call(&["WAIT", "1", "0"]), b":1\r\n");

    signal(replica.pid(), "-STOP");
    // Pipelined behind a write of the same pass, to a partition of the connection's own
    // shard (answered at once, framed only by the pass's commit): WAIT waits for it too,
    // although the replica acknowledged everything before it.
    let mut pipe = cmd(&["SET", "s", "k", "pipelined"]);
    pipe.extend(cmd(&["WAIT", "1", "500"]));
    c.send(&pipe);
    assert_eq!(c.read_reply(), b"+OK\r\n");
    assert_eq!(
        c.read_reply(),
        b":0\r\n",
        "counted before its write was framed"
    );
    c.call_ok(&["SET", "s", "k", "during"]);
    let started = Instant::now();
    assert_eq!(c.call(&["WAIT", "1", "1000"]), b":0\r\n");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");

    // Parked for ever, with a request behind it.
    let mut pipe = cmd(&["WAIT", "1", "0"]);
    pipe.extend(cmd(&["GET", "s", "k"]));
    c.send(&pipe);
    // The same shard serves everyone else meanwhile.
    let mut other = primary.raw();
    for i in 0..50 {
        let started = Instant::now();
        other.call_ok(&["SET", "s", &format!("o{i}"), "x"]);
        assert_eq!(other.call(&["GET", "s", "k"]), b"$6\r\nduring\r\n");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(other.call(&["WAIT", "0", "0"]), b":0\r\n", "wants none");
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = c.stream.read(&mut byte);
    assert!(early.is_err(), "WAIT answered while its replica is stopped");
    c.stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    signal(replica.pid(), "-CONT");
    assert_eq!(c.read_reply(), b":1\r\n");
    assert_eq!(c.read_reply(), b"$6\r\nduring\r\n");

    // A parked WAIT whose client goes away is forgotten; the server goes on.
    signal(replica.pid(), "-STOP");
    c.call_ok(&["SET", "s", "k", "again"]);
    let mut gone = patient(&primary, 5);
    gone.call_ok(&["SET", "s", "g", "1"]);
    gone.send(&cmd(&["WAIT", "1", "0"]));
    drop(gone);
    signal(replica.pid(), "-CONT");
    assert_eq!(other.call(&["WAIT", "1", "0"]), b":1\r\n");
    let clients: String = q_ok(&mut p, &["INFO", "clients"]);
    assert!(clients.contains("connected_clients:"), "{clients}");
}

/// WAIT's answers and errors as Redis 7 gives them, row by row against a real redis-server
/// (a primary without replicas on both sides), and its error on a replica.
#[test]
fn wait_answers_and_errors_as_redis_7() {
    let server = Server::start(&[]);
    let mut g = patient(&server, 30);
    let rows: &[&[&str]] = &[
        &["WAIT", "0", "0"],
        &["WAIT", "-1", "0"],
        &["WAIT", "1", "-1"],
        &["WAIT", "1", "x"],
        &["WAIT", "x", "1"],
        &["WAIT", "1", "1.5"],
        &["WAIT", "1", "99999999999999999999"],
        &["WAIT", "0", "100"],
        &["WAIT", "1", "150"],
    ];
    let redis = RealRedis::start("wait_answers_and_errors_as_redis_7");
    let mut reference = redis.as_ref().map(|r| r.conn());
    for row in rows {
        let started = Instant::now();
        let ours = g.call(row);
        let took = started.elapsed();
        if let Some(reference) = reference.as_mut() {
            let theirs = reference.call(row);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs),
                "{row:?}"
            );
        }
        if row == &["WAIT", "1", "150"] {
            assert_eq!(ours, b":0\r\n");
            assert!(
                took >= Duration::from_millis(140),
                "no replicas: waits {took:?}"
            );
        }
    }
    // A replica refuses WAIT, before it looks at the arguments (Redis's order).
    let replica = start_replica(server.port(), &[]);
    // Its login may race the full sync's `USERS` (the same password, the primary's hash).
    let mut r = poll_until(Duration::from_secs(30), || {
        let mut c = RawConn::connect(&replica.addr());
        (c.call(&["AUTH", "admin", ADMIN_PASSWORD]) == b"+OK\r\n").then_some(c)
    })
    .expect("a login on the replica");
    for row in [&["WAIT", "0", "0"][..], &["WAIT", "x", "y"]] {
        assert_eq!(
            String::from_utf8_lossy(&r.call(row)),
            "-ERR WAIT cannot be used with replica instances. Please also note that since \
             Redis 4.0 if a replica is configured to be writable (which is not the default) \
             writes to replicas are just local and are not propagated.\r\n",
            "{row:?}"
        );
    }
}

/// `--min-replicas-to-write`: writes answer Redis's `-NOREPLICAS` (nothing done, reads
/// served) until a replica is online and acknowledging, again once it stops for longer than
/// `--min-replicas-max-lag`, and not after it comes back; live with CONFIG SET.
#[test]
fn min_replicas_refuse_writes_until_enough_good_replicas() {
    let primary = Server::start(&[
        "--shards",
        "2",
        "--min-replicas-to-write",
        "1",
        "--min-replicas-max-lag",
        "2",
    ]);
    let mut c = primary.raw();
    let refused = b"-NOREPLICAS Not enough good replicas to write.\r\n".to_vec();
    // A catalog change is a write too (it is replicated): refused, until the setting is
    // turned off (live).
    assert_eq!(
        c.call(&["CREATE", "PARTITION", "s", "STRING", "MEMORY"]),
        refused
    );
    c.call_ok(&["CONFIG", "SET", "min-replicas-to-write", "0"]);
    c.call_ok(&["CREATE", "PARTITION", "s", "STRING", "MEMORY"]);
    c.call_ok(&["CONFIG", "SET", "min-replicas-to-write", "1"]);
    assert_eq!(c.call(&["SET", "s", "k", "v"]), refused);
    assert_eq!(c.call(&["INCR", "s", "n"]), refused);
    assert_eq!(c.call(&["GET", "s", "k"]), b"$-1\r\n", "nothing was done");
    assert_eq!(c.call(&["DBSIZE", "s"]), b":0\r\n", "reads are served");
    let mut p = primary.client();
    assert_eq!(
        repl_info(&mut p, "min_slaves_good_slaves").as_deref(),
        Some("0")
    );
    if let Some(redis) = RealRedis::start("min_replicas_refuse_writes_until_enough_good_replicas") {
        let mut r = redis.conn();
        assert_eq!(
            r.call(&["CONFIG", "SET", "min-replicas-to-write", "1"]),
            b"+OK\r\n"
        );
        assert_eq!(r.call(&["SET", "k", "v"]), refused, "Redis's own words");
    }

    let replica = start_replica(primary.port(), &[]);
    let accepted = poll_until(CONVERGE, || {
        (c.call(&["SET", "s", "k", "v"]) == b"+OK\r\n").then_some(())
    });
    assert!(
        accepted.is_some(),
        "writes stayed refused with a good replica"
    );
    assert_eq!(
        repl_info(&mut p, "min_slaves_good_slaves").as_deref(),
        Some("1")
    );

    signal(replica.pid(), "-STOP");
    let started = Instant::now();
    let refusing = poll_until(Duration::from_secs(30), || {
        (c.call(&["SET", "s", "k", "v2"]) == refused).then_some(())
    });
    assert!(
        refusing.is_some(),
        "a stopped replica still counted as good"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "refused before the replica's lag passed 2 s: {:?}",
        started.elapsed()
    );
    // Off while it is stopped: accepted.
    c.call_ok(&["CONFIG", "SET", "min-replicas-to-write", "0"]);
    c.call_ok(&["SET", "s", "while-off", "1"]);
    c.call_ok(&["CONFIG", "SET", "min-replicas-to-write", "1"]);
    assert_eq!(c.call(&["SET", "s", "k", "v3"]), refused);
    assert_ne!(
        c.call(&["GET", "s", "k"]),
        b"$2\r\nv3\r\n",
        "a refused write did nothing"
    );
    signal(replica.pid(), "-CONT");
    let back = poll_until(CONVERGE, || {
        (c.call(&["SET", "s", "k", "v4"]) == b"+OK\r\n").then_some(())
    });
    assert!(
        back.is_some(),
        "writes stayed refused after the replica came back"
    );
    // CONFIG GET shows both, under Redis's names too.
    let got = c.call(&["CONFIG", "GET", "min-replicas-*"]);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("min-replicas-to-write\r\n$1\r\n1\r\n"),
        "{text}"
    );
    assert!(
        text.contains("min-replicas-max-lag\r\n$1\r\n2\r\n"),
        "{text}"
    );
    let got = c.call(&["CONFIG", "GET", "min-slaves-max-lag"]);
    assert!(String::from_utf8_lossy(&got).contains("$1\r\n2\r\n"));
    assert!(c
        .call_err(&["CONFIG", "SET", "min-replicas-to-write", "-1"])
        .contains("argument must be between 0 and 2147483647 inclusive"));
}

/// `--replica-priority` is the replica's `slave_priority` (live), and
/// `--replica-announce-ip` / `--replica-announce-port` are what its primary shows for it.
#[test]
fn priority_and_the_announced_address_are_shown() {
    let primary = Server::start(&[]);
    let replica = start_replica(
        primary.port(),
        &[
            "--replica-priority",
            "7",
            "--replica-announce-ip",
            "10.1.2.3",
            "--replica-announce-port",
            "6000",
        ],
    );
    let mut p = primary.client();
    online(&mut p);
    let s = slave0(&mut p).unwrap();
    assert_eq!(field(&s, "ip"), "10.1.2.3");
    assert_eq!(field(&s, "port"), "6000");
    let role: Vec<redis::Value> = q_ok(&mut p, &["ROLE"]);
    let redis::Value::Array(replicas) = &role[2] else {
        panic!("{role:?}")
    };
    let redis::Value::Array(first) = &replicas[0] else {
        panic!("{role:?}")
    };
    assert_eq!(first[0], redis::Value::BulkString(b"10.1.2.3".to_vec()));
    assert_eq!(first[1], redis::Value::BulkString(b"6000".to_vec()));
    let mut r = replica_client(&replica);
    assert_eq!(repl_info(&mut r, "slave_priority").as_deref(), Some("7"));
    q_ok::<()>(&mut r, &["CONFIG", "SET", "replica-priority", "3"]);
    assert_eq!(repl_info(&mut r, "slave_priority").as_deref(), Some("3"));
    let got: Vec<String> = q_ok(&mut r, &["CONFIG", "GET", "slave-priority"]);
    assert_eq!(got, ["slave-priority", "3"]);
    let got: Vec<String> = q_ok(&mut r, &["CONFIG", "GET", "replica-announce-ip"]);
    assert_eq!(got, ["replica-announce-ip", "10.1.2.3"]);
    // A bad announced address is refused by the primary's REPLCONF.
    let mut raw = primary.raw();
    assert!(raw
        .call_err(&["REPLCONF", "ip-address", "a,b"])
        .contains("printable"));
    assert!(raw
        .call_err(&["REPLCONF", "listening-port", "1"])
        .contains("unknown REPLCONF option"));
}

/// The Prometheus endpoint: `gokv_connected_slaves` and each replica's
/// `gokv_replication_lag_seconds` on a primary; `gokv_master_link_up` and
/// `gokv_master_last_io_seconds_ago` on a replica.
#[test]
fn replication_metrics_are_exported() {
    let (primary, metrics) = with_metrics(&[]);
    let scraped = scrape(metrics);
    assert!(scraped.contains("\ngokv_connected_slaves 0\n"), "{scraped}");
    assert!(
        !scraped.contains("gokv_master_link_up"),
        "a primary has no link"
    );
    let (replica, replica_metrics) = with_metrics(
        &replica_args(primary.port(), &[])
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    );
    let mut p = primary.client();
    online(&mut p);
    let scraped = scrape(metrics);
    assert!(scraped.contains("\ngokv_connected_slaves 1\n"), "{scraped}");
    let lag = scraped
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "gokv_replication_lag_seconds{{replica=\"127.0.0.1:{}\",state=\"online\"}} ",
                replica.port()
            ))
        })
        .unwrap_or_else(|| panic!("{scraped}"));
    let lag: f64 = lag.rsplit_once(' ').unwrap().1.parse().unwrap();
    assert!((0.0..5.0).contains(&lag), "{lag}");
    let up = poll_until(CONVERGE, || {
        scrape(replica_metrics)
            .contains("\ngokv_master_link_up 1\n")
            .then_some(())
    });
    assert!(up.is_some(), "{}", scrape(replica_metrics));
    assert!(scrape(replica_metrics).contains("\ngokv_master_last_io_seconds_ago "));
}

/// A peer that logs in as a replica and then sends anything but `ACK` frames, or a frame
/// that claims more than the reader holds, is dropped; the primary goes on.
#[test]
fn a_hostile_replica_is_dropped_for_bad_acks() {
    let primary = Server::start(&[]);
    let mut p = primary.client();
    for (n, garbage) in [
        (1, b"*1\r\n$4\r\nPING\r\n".to_vec()),
        (2, {
            let mut huge = b"*3\r\n$3\r\nACK\r\n$1\r\n0\r\n$999999999\r\n".to_vec();
            huge.extend(std::iter::repeat_n(b'9', 80 << 10));
            huge
        }),
        (3, b"*3\r\n$3\r\nACK\r\n$2\r\n77\r\n$1\r\n1\r\n".to_vec()),
    ] {
        let mut fake = RawConn::connect_admin(&primary.addr());
        fake.send(&cmd(&["REPLSYNC", "1", &"0".repeat(40)]));
        let hello = fake.read_reply();
        assert!(hello.starts_with(b"+FULLSYNC "), "{hello:?}");
        // The first frames arrive: the connection is a feed now.
        let mut first = [0u8; 64];
        let read = fake.stream.read(&mut first).unwrap();
        assert!(read > 0);
        let _ = fake.stream.write_all(&garbage);
        let log = primary.log_text_once_it_contains(&format!("dropping replica {}", n - 1));
        assert!(
            log.contains("a bad acknowledgement") || log.contains("longer than"),
            "{log}"
        );
        let gone = poll_until(Duration::from_secs(20), || {
            (repl_info(&mut p, "connected_slaves").as_deref() == Some("0")).then_some(())
        });
        assert!(gone.is_some(), "the hostile replica is still attached");
    }
    let log = primary.log_text();
    assert!(log.contains("longer than 65536 bytes"), "{log}");
    assert!(log.contains("shard 77"), "{log}");
    let pong: String = q_ok(&mut p, &["PING"]);
    assert_eq!(pong, "PONG");
}

/// The body of `GET /metrics`.
fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let (_, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    body.to_string()
}

/// A `WAIT` parked for ever does not hold up a shutdown: the drain answers it with the
/// count it has (0 without replicas) and the server exits well within its drain deadline.
#[test]
fn a_parked_wait_is_answered_by_the_shutdown() {
    let mut server = Server::start(&[]);
    let mut c = patient(&server, 30);
    c.call_ok(&["CREATE", "PARTITION", "s", "STRING", "MEMORY"]);
    c.call_ok(&["SET", "s", "k", "v"]);
    c.send(&cmd(&["WAIT", "1", "0"]));
    // Parked: no answer while the server runs.
    c.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        c.stream.read(&mut byte).is_err(),
        "WAIT 1 0 answered at once"
    );
    c.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    server.sigterm();
    assert_eq!(c.read_reply(), b":0\r\n");
    let exited = server.wait_exit(Duration::from_secs(30));
    assert!(exited.is_some(), "the server did not exit");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the drain waited for the parked WAIT: {:?}",
        started.elapsed()
    );
}
