//! Pub/Sub: Redis 7's replies (the same rows against a real `redis-server`, in RESP2 and
//! RESP3, subscribed-mode refusals included), delivery across shards in publish order, a
//! slow subscriber dropped while its publisher goes on, channel permissions and their
//! revocation, CLIENT LIST/KILL and INFO, PUBLISH on a replica, and redis-py's pubsub client.

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A two-shard server (the tests put connections on each shard).
fn two_shards(extra: &[&str]) -> Server {
    let mut args = vec!["--shards", "2"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A connection (logged in as admin) on shard `shard` (the acceptor deals connections
/// round-robin, so a few tries find one).
fn conn_on(server: &Server, shard: &str) -> RawConn {
    for _ in 0..16 {
        let mut c = server.raw();
        if c.shard() == shard {
            return c;
        }
    }
    panic!("no connection landed on shard {shard}");
}

/// One side of the comparison: a GoKV connection or a redis-server one.
trait Peer {
    fn send_args(&mut self, args: &[&str]);
    fn read(&mut self) -> Vec<u8>;
}

impl Peer for RawConn {
    fn send_args(&mut self, args: &[&str]) {
        self.send(&cmd(args));
    }
    fn read(&mut self) -> Vec<u8> {
        self.read_reply()
    }
}

impl Peer for RedisConn {
    fn send_args(&mut self, args: &[&str]) {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&args);
    }
    fn read(&mut self) -> Vec<u8> {
        self.read_reply()
    }
}

/// A step of the compared script: on connection `conn`, send `args` (none: only read), then
/// read `frames` replies or pushes.
type Row = (usize, &'static [&'static str], usize);

/// Connection 0: RESP2 subscriber; 1: publisher; 2: RESP3 subscriber (`HELLO 3` sent
/// before the rows, whose reply names the server and differs).
const ROWS: &[Row] = &[
    (0, &["UNSUBSCRIBE"], 1),
    (0, &["PUNSUBSCRIBE"], 1),
    (0, &["SUBSCRIBE", "app:a", "app:b"], 2),
    (0, &["SUBSCRIBE", "app:a"], 1),
    (0, &["PSUBSCRIBE", "app:*"], 1),
    (0, &["PING"], 1),
    (0, &["PING", "hi"], 1),
    // Subscribed mode in RESP2 refuses the rest, naming the command as Redis does.
    (0, &["GET", "x"], 1),
    (0, &["ECHO", "x"], 1),
    (0, &["CLIENT", "ID"], 1),
    (0, &["PUBSUB", "NUMPAT"], 1),
    (0, &["UNSUBSCRIBE", "app:never"], 1),
    // RESP3: pushes, and other commands run.
    (2, &["SUBSCRIBE", "app:a"], 1),
    (2, &["PING"], 1),
    (2, &["ECHO", "x"], 1),
    (2, &["PUBSUB", "NUMSUB", "app:a"], 1),
    (2, &["PUBSUB", "NUMPAT"], 1),
    (2, &["PUBSUB", "CHANNELS", "app:a"], 1),
    // Channel subscriber + pattern subscriber of connection 0, channel of 2.
    (1, &["PUBLISH", "app:a", "hello"], 1),
    (0, &[], 2),
    (2, &[], 1),
    (1, &["PUBLISH", "app:zzz", "m2"], 1),
    (0, &[], 1),
    (1, &["PUBLISH", "other", "m3"], 1),
    (1, &["PUBSUB", "NUMSUB", "app:a", "app:b", "nope"], 1),
    (1, &["PUBSUB", "NUMSUB"], 1),
    (1, &["PUBSUB", "CHANNELS", "app:b*"], 1),
    (1, &["PUBSUB", "NUMPAT"], 1),
    (1, &["PUBSUB", "FOO"], 1),
    (1, &["PUBSUB", "NUMPAT", "x"], 1),
    (1, &["PUBSUB", "CHANNELS", "a", "b"], 1),
    // A RESP3 subscriber publishing to itself gets its messages before the count.
    (2, &["PSUBSCRIBE", "app:a*"], 1),
    (2, &["PUBLISH", "app:a", "self"], 3),
    (0, &[], 2),
    (0, &["UNSUBSCRIBE", "app:b"], 1),
    (0, &["PUNSUBSCRIBE"], 1),
    (0, &["UNSUBSCRIBE"], 1),
    // Out of subscribed mode: anything runs again.
    (0, &["ECHO", "x"], 1),
    (2, &["UNSUBSCRIBE", "app:a"], 1),
    (2, &["PUNSUBSCRIBE", "app:a*"], 1),
    (2, &["UNSUBSCRIBE"], 1),
    (1, &["PUBLISH", "app:a", "nobody"], 1),
    (1, &["PUBSUB", "CHANNELS"], 1),
];

/// Runs [`ROWS`] and returns every reply, labelled.
fn run_rows(peers: &mut [&mut dyn Peer]) -> Vec<String> {
    let mut out = Vec::new();
    for (conn, args, frames) in ROWS {
        if !args.is_empty() {
            peers[*conn].send_args(args);
        }
        for _ in 0..*frames {
            out.push(format!("{conn} {args:?}: {}", show(&peers[*conn].read())));
        }
    }
    out
}

#[test]
fn replies_match_redis_in_resp2_and_resp3() {
    let server = two_shards(&[]);
    let mut admin = server.raw();
    admin.call_ok(&["CREATE", "PARTITION", "app", "STRING", "MEMORY"]);
    // Subscriber and publisher on different shards: the rows cross shards too.
    let mut sub2 = conn_on(&server, "0");
    let mut publisher = conn_on(&server, "1");
    let mut sub3 = conn_on(&server, "1");
    // Redis grammar, so that `GET x` is a well-formed request on both sides.
    sub2.call_ok(&["SELECT", "app"]);
    sub3.send(&cmd(&["HELLO", "3"]));
    sub3.read_reply();
    let gokv = run_rows(&mut [&mut sub2, &mut publisher, &mut sub3]);
    // What GoKV answers, as the Redis 7 rows expect (checked without Redis too).
    assert!(gokv.iter().any(|l| l.contains(
        "Can't execute 'client|id': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context"
    )));
    let Some(redis) = RealRedis::start("replies_match_redis_in_resp2_and_resp3") else {
        return;
    };
    let (mut r0, mut r1, mut r2) = (redis.conn(), redis.conn(), redis.conn());
    r2.call(&["HELLO", "3"]);
    let expected = run_rows(&mut [&mut r0, &mut r1, &mut r2]);
    for (got, want) in gokv.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    assert_eq!(gokv.len(), expected.len());
}

/// Reads `n` message frames from a subscriber: (channel or pattern, payload).
fn read_messages(c: &mut RawConn, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let frame = c.read_value();
            let items = frame.items();
            String::from_utf8_lossy(items.last().expect("a payload").bytes()).into_owned()
        })
        .collect()
}

/// Each publisher's messages, in the order a subscriber got them: `P<p>-<i>` gives p's list
/// of i.
fn by_publisher(messages: &[String], publishers: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); publishers];
    for m in messages {
        let (p, i) = m
            .strip_prefix('P')
            .and_then(|rest| rest.split_once('-'))
            .unwrap_or_else(|| panic!("unexpected message {m}"));
        out[p.parse::<usize>().unwrap()].push(i.parse().unwrap());
    }
    out
}

#[test]
fn messages_reach_every_shard_once_in_publish_order() {
    let server = two_shards(&[]);
    const N: usize = 400;
    // Two channel subscribers and a pattern subscriber, spread over both shards.
    let mut subs = [
        conn_on(&server, "0"),
        conn_on(&server, "1"),
        conn_on(&server, "1"),
    ];
    for (i, s) in subs.iter_mut().enumerate() {
        let args: &[&str] = if i == 2 {
            &["PSUBSCRIBE", "app:*"]
        } else {
            &["SUBSCRIBE", "app:feed"]
        };
        s.send(&cmd(args));
        s.read_reply();
    }
    // One publisher on each shard, both at once, pipelining.
    let publishers: Vec<_> = ["0", "1"]
        .into_iter()
        .enumerate()
        .map(|(p, shard)| {
            let mut c = conn_on(&server, shard);
            thread::spawn(move || {
                let requests: Vec<Vec<u8>> = (0..N)
                    .map(|i| cmd(&["PUBLISH", "app:feed", &format!("P{p}-{i}")]))
                    .collect();
                c.pipeline(&requests)
            })
        })
        .collect();
    for handle in publishers {
        for reply in handle.join().unwrap() {
            // Every subscriber counted, on both shards.
            assert_eq!(show(&reply), show(&int(3)));
        }
    }
    for s in subs.iter_mut() {
        let got = by_publisher(&read_messages(s, 2 * N), 2);
        for list in got {
            assert_eq!(list, (0..N).collect::<Vec<_>>(), "once each, in order");
        }
    }
    // Nothing more: each message came once.
    subs[0].send(&cmd(&["PING"]));
    assert_eq!(
        subs[0].read_value(),
        Resp::Array(Some(vec![
            Resp::Bulk(Some(b"pong".to_vec())),
            Resp::Bulk(Some(Vec::new()))
        ]))
    );
}

#[test]
fn a_slow_subscriber_is_dropped_and_its_publisher_keeps_going() {
    let server = two_shards(&["--client-output-limit", "1048576"]);
    let mut slow = conn_on(&server, "0");
    slow.send(&cmd(&["SUBSCRIBE", "app:big"]));
    slow.read_reply();
    let mut fast = conn_on(&server, "1");
    fast.send(&cmd(&["SUBSCRIBE", "app:big"]));
    fast.read_reply();
    const N: usize = 2000;
    let payload = "x".repeat(16 * 1024);
    // The fast one reads everything as it comes, counting what it has read.
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = received.clone();
    let reader = thread::spawn(move || {
        for i in 0..N {
            let frame = fast.read_value();
            let items = frame.items();
            assert_eq!(items[2].bytes().len(), 16 * 1024, "message {i}");
            counted.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        }
        fast
    });
    let mut publisher = conn_on(&server, "1");
    let started = Instant::now();
    let requests: Vec<Vec<u8>> = (0..N)
        .map(|_| cmd(&["PUBLISH", "app:big", &payload]))
        .collect();
    // Eight messages (128 KiB) at a time, and never more than 32 (512 KiB) ahead of what the
    // fast subscriber has read, so that it stays under the limit even when its reader thread
    // is slow to be scheduled on a loaded machine.
    let mut last = Vec::new();
    for (k, chunk) in requests.chunks(8).enumerate() {
        let read_enough = poll_until(Duration::from_secs(30), || {
            (received.load(std::sync::atomic::Ordering::Relaxed) + 32 >= k * 8).then_some(())
        });
        assert!(read_enough.is_some(), "the fast subscriber stopped reading");
        last = publisher.pipeline(chunk).pop().unwrap();
    }
    // 32 MiB to a subscriber that reads none of it: the publisher is answered throughout,
    // and once the slow one is gone only the fast one counts.
    assert_eq!(show(&last), show(&int(1)));
    assert!(started.elapsed() < Duration::from_secs(60));
    let mut fast = reader.join().unwrap();
    slow.drain_until_closed(Duration::from_secs(10));
    let info = publisher.call_value(&["INFO", "stats"]).text();
    assert!(
        info.contains("client_output_limit_disconnections:1\r\n"),
        "{info}"
    );
    // The fast subscriber is still subscribed, alone.
    fast.send(&cmd(&["PING", "still"]));
    assert_eq!(fast.read_value().items()[1].bytes(), b"still");
    assert_eq!(
        publisher.call_value(&["PUBLISH", "app:big", "m"]),
        Resp::Int(1)
    );
}

#[test]
fn channel_permissions_follow_partitions_and_die_with_revocation() {
    let server = two_shards(&[]);
    let mut admin = server.raw();
    admin.call_ok(&["CREATE", "PARTITION", "app", "STRING", "MEMORY"]);
    for (user, perm) in [("reader", "READ"), ("writer", "WRITE")] {
        admin.call_ok(&["CREATE", "USER", user, "pw"]);
        admin.call_ok(&["GRANT", perm, "ON", "app", "TO", user]);
    }
    let mut reader = server.login("reader", "pw");
    assert_eq!(
        reader.call_err(&["SUBSCRIBE", "app:x", "news"]),
        "NOPERM user 'reader' has no ADMIN permission on '*'"
    );
    // A refused request subscribed to nothing: still out of subscribed mode.
    assert_eq!(reader.call_value(&["PING"]), Resp::Simple(b"PONG".to_vec()));
    assert_eq!(
        reader.call_err(&["PSUBSCRIBE", "ap*:x"]),
        "NOPERM user 'reader' has no ADMIN permission on '*'"
    );
    assert_eq!(
        reader.call_err(&["PUBLISH", "app:x", "m"]),
        "NOPERM user 'reader' has no WRITE permission on 'app'"
    );
    reader.send(&cmd(&["SUBSCRIBE", "app:x"]));
    reader.read_reply();
    reader.send(&cmd(&["PSUBSCRIBE", "app:*"]));
    reader.read_reply();
    let mut writer = server.login("writer", "pw");
    assert_eq!(
        writer.call_err(&["SUBSCRIBE", "app:x"]),
        "NOPERM user 'writer' has no READ permission on 'app'"
    );
    assert_eq!(
        writer.call_err(&["PUBLISH", "other", "m"]),
        "NOPERM user 'writer' has no ADMIN permission on '*'"
    );
    assert_eq!(writer.call_value(&["PUBLISH", "app:x", "hi"]), Resp::Int(2));
    assert_eq!(read_messages(&mut reader, 2), ["hi", "hi"]);
    // Another connection of the reader, not subscribed, is left alone by the revocation. It
    // sees only the channels it could subscribe to (no partition name leaks).
    let mut idle = server.login("reader", "pw");
    let mut secret = server.raw();
    secret.send(&cmd(&["SUBSCRIBE", "hidden:x"]));
    secret.read_reply();
    assert_eq!(idle.call_value(&["PUBSUB", "CHANNELS"]).texts(), ["app:x"]);
    assert_eq!(
        idle.call_value(&["PUBSUB", "NUMSUB", "hidden:x", "app:x"]),
        Resp::Array(Some(vec![
            Resp::Bulk(Some(b"hidden:x".to_vec())),
            Resp::Int(0),
            Resp::Bulk(Some(b"app:x".to_vec())),
            Resp::Int(1),
        ]))
    );
    admin.call_ok(&["REVOKE", "READ", "ON", "app", "FROM", "reader"]);
    reader.drain_until_closed(Duration::from_secs(10));
    assert_eq!(writer.call_value(&["PUBLISH", "app:x", "m"]), Resp::Int(0));
    assert_eq!(idle.call_value(&["PING"]), Resp::Simple(b"PONG".to_vec()));
    assert_eq!(
        idle.call_err(&["SUBSCRIBE", "app:x"]),
        "NOPERM user 'reader' has no READ permission on 'app'"
    );
}

#[test]
fn client_list_kill_info_and_reset_know_subscribers() {
    let server = two_shards(&[]);
    let mut admin = server.raw();
    let mut sub = server.raw();
    sub.send(&cmd(&["SUBSCRIBE", "app:a", "app:b"]));
    sub.read_reply();
    sub.read_reply();
    sub.send(&cmd(&["PSUBSCRIBE", "app:*"]));
    sub.read_reply();
    let list = admin
        .call_value(&["CLIENT", "LIST", "TYPE", "pubsub"])
        .text();
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(
        list.contains(" flags=P ") && list.contains(" sub=2 psub=1 "),
        "{list}"
    );
    let info = admin.call_value(&["INFO", "stats"]).text();
    assert!(
        info.contains("pubsub_channels:2\r\npubsub_patterns:1\r\n"),
        "{info}"
    );
    let info = admin.call_value(&["INFO", "clients"]).text();
    assert!(info.contains("pubsub_clients:1\r\n"), "{info}");
    // RESET ends every subscription (and, as Redis's, logs out).
    sub.expect(&cmd(&["RESET"]), b"+RESET\r\n");
    let list = admin
        .call_value(&["CLIENT", "LIST", "TYPE", "pubsub"])
        .text();
    assert_eq!(list, "");
    assert_eq!(admin.call_value(&["PUBLISH", "app:a", "m"]), Resp::Int(0));
    // CLIENT KILL TYPE pubsub closes the subscribed connections, and only those.
    let mut victims: Vec<RawConn> = (0..3).map(|_| server.raw()).collect();
    for v in &mut victims {
        v.send(&cmd(&["SUBSCRIBE", "app:a"]));
        v.read_reply();
    }
    // TYPE normal leaves them alone (it closes `sub`, not subscribed since RESET).
    assert_eq!(
        admin.call_value(&["CLIENT", "KILL", "TYPE", "normal"]),
        Resp::Int(1)
    );
    sub.drain_until_closed(Duration::from_secs(10));
    assert_eq!(admin.call_value(&["PUBLISH", "app:a", "m"]), Resp::Int(3));
    assert_eq!(
        admin.call_value(&["CLIENT", "KILL", "TYPE", "pubsub"]),
        Resp::Int(3)
    );
    for v in &mut victims {
        v.drain_until_closed(Duration::from_secs(10));
    }
    assert_eq!(admin.call_value(&["PUBLISH", "app:a", "m"]), Resp::Int(0));
    let info = admin.call_value(&["INFO", "stats"]).text();
    assert!(
        info.contains("pubsub_channels:0\r\npubsub_patterns:0\r\n"),
        "{info}"
    );
}

/// A replica of `primary` (with `extra` flags), once its link is up: the full sync's users
/// are in, so logins from here on check the primary's hashes.
fn synced_replica(primary: &Server, extra: &[&str]) -> Server {
    let primary_addr = format!("127.0.0.1:{}", primary.port());
    let mut args = vec![
        "--replicaof",
        &primary_addr,
        "--primary-user",
        "admin",
        "--primary-password",
        ADMIN_PASSWORD,
    ];
    args.extend_from_slice(extra);
    let replica = Server::start(&args);
    poll_until(Duration::from_secs(30), || {
        let info = replica_login(&replica, None)
            .call_value(&["INFO", "replication"])
            .text();
        info.contains("master_link_status:up").then_some(())
    })
    .expect("the replica's link comes up");
    replica
}

/// A connection to `replica` logged in as admin, on `shard` when one is given. A login may
/// race the full sync's users (the same password, the primary's hash): retried.
fn replica_login(replica: &Server, shard: Option<&str>) -> RawConn {
    poll_until(Duration::from_secs(30), || {
        let mut c = RawConn::connect(&replica.addr());
        c.send(&cmd(&["AUTH", "admin", ADMIN_PASSWORD]));
        (c.read_reply() == OK && shard.is_none_or(|s| c.shard() == s)).then_some(c)
    })
    .expect("log in to the replica")
}

/// A PUBLISH on a primary reaches its replica's subscribers too, on every replica shard,
/// channel and pattern alike, in publish order, as Redis propagates PUBLISH to its
/// replicas; the primary's reply counts its own receivers only, as Redis's does.
#[test]
fn a_publish_on_the_primary_reaches_the_replicas_subscribers() {
    let primary = two_shards(&[]);
    let replica = synced_replica(&primary, &["--shards", "2"]);
    let mut on_channel = replica_login(&replica, Some("0"));
    on_channel.send(&cmd(&["SUBSCRIBE", "app:news"]));
    on_channel.read_reply();
    let mut on_pattern = replica_login(&replica, Some("1"));
    on_pattern.send(&cmd(&["PSUBSCRIBE", "app:*"]));
    on_pattern.read_reply();
    let mut here = conn_on(&primary, "1");
    here.send(&cmd(&["SUBSCRIBE", "app:news"]));
    here.read_reply();
    let mut publisher = conn_on(&primary, "0");
    assert_eq!(
        publisher.call_value(&["PUBLISH", "app:news", "hello"]),
        Resp::Int(1)
    );
    assert_eq!(read_messages(&mut here, 1), ["hello"]);
    assert_eq!(read_messages(&mut on_channel, 1), ["hello"]);
    assert_eq!(read_messages(&mut on_pattern, 1), ["hello"]);
    // A pipeline of messages arrives whole and in order, beside writes.
    let mut requests = Vec::new();
    for i in 0..200 {
        requests.push(cmd(&["PUBLISH", "app:news", &format!("m{i}")]));
        if i % 10 == 0 {
            requests.push(cmd(&["PING"]));
        }
    }
    publisher.pipeline(&requests);
    let expected: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(read_messages(&mut on_channel, 200), expected);
    assert_eq!(read_messages(&mut on_pattern, 200), expected);
}

#[test]
fn publish_runs_on_a_read_only_replica() {
    let primary = Server::start(&[]);
    let replica = synced_replica(&primary, &[]);
    let mut c = replica_login(&replica, None);
    let mut sub = replica_login(&replica, None);
    sub.send(&cmd(&["SUBSCRIBE", "__sentinel__:hello"]));
    sub.read_reply();
    assert_eq!(
        c.call_value(&["PUBLISH", "__sentinel__:hello", "hi"]),
        Resp::Int(1)
    );
    assert_eq!(read_messages(&mut sub, 1), ["hi"]);
    // A write is still refused there.
    assert!(c
        .call_err(&["CREATE", "PARTITION", "x", "STRING", "MEMORY"])
        .starts_with("READONLY"));
}

/// redis-py's PubSub object, unchanged: subscribe, psubscribe, get_message, its health-check
/// PING in subscribed mode, unsubscribe; and PUBLISH's count.
#[test]
fn redis_py_pubsub_works_unchanged() {
    let server = two_shards(&[]);
    let script = r#"
import sys, time, redis
port = int(sys.argv[1]); pw = sys.argv[2]; proto = int(sys.argv[3])
r = redis.Redis(port=port, username="admin", password=pw, protocol=proto)
p = r.pubsub()
p.subscribe("app:news")
p.psubscribe("app:*")
def next_message():
    deadline = time.time() + 10
    while time.time() < deadline:
        m = p.get_message(timeout=1.0)
        if m is not None:
            return m
    raise SystemExit("no message")
kinds = sorted([next_message()["type"], next_message()["type"]])
assert kinds == ["psubscribe", "subscribe"], kinds
publisher = redis.Redis(port=port, username="admin", password=pw, protocol=proto)
assert publisher.publish("app:news", "hello") == 2
got = sorted([(m["type"], m["data"]) for m in (next_message(), next_message())])
assert got == [("message", b"hello"), ("pmessage", b"hello")], got
p.ping("health")
m = next_message()
assert m["type"] == "pong" and m["data"] == b"health", m
assert publisher.pubsub_numsub("app:news") == [(b"app:news", 1)]
assert publisher.pubsub_numpat() == 1
p.unsubscribe("app:news")
p.punsubscribe()
kinds = sorted([next_message()["type"], next_message()["type"]])
assert kinds == ["punsubscribe", "unsubscribe"], kinds
assert publisher.publish("app:news", "gone") == 0
p.close()
print("ok")
"#;
    let probe = Command::new("python3")
        .args(["-c", "import redis"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("GOKV_REQUIRE_REDIS").is_none(),
            "GOKV_REQUIRE_REDIS is set but python3 with redis-py cannot run"
        );
        eprintln!("redis_py_pubsub_works_unchanged: skipping: no python3 with redis-py");
        return;
    }
    // RESP2 (subscribed mode) and RESP3 (pushes).
    for protocol in ["2", "3"] {
        let out = Command::new("python3")
            .args([
                "-c",
                script,
                &server.port().to_string(),
                ADMIN_PASSWORD,
                protocol,
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "redis-py (RESP{protocol}) failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
