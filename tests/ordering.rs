//! Reply order under pipelining across shards, and atomicity of INCR under concurrent
//! connections, with the partition local to some connections and remote to others.
//!
//! A test that claims to cross shards checks that it did: it reads `forwarded_requests` from
//! INFO and asserts that at least the share of requests it meant to forward was forwarded.
//! Connection migration (a connection that talks only to another shard's partitions moves
//! there) would otherwise turn a "remote" connection local after 4 requests; the tests of
//! remote connections turn it off, and the one that wants it asserts that it happened.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;

#[track_caller]
fn create_on_shard(c: &mut RawConn, name: &str, schema: &str, shard: i64) {
    c.expect(&cmd(&["CREATE", "PARTITION", name, schema, "MEMORY"]), OK);
    let describe = c.call_value(&["DESCRIBE", "PARTITION", name]).pairs();
    let placed = describe
        .iter()
        .find(|(k, _)| k.bytes() == b"shard")
        .map(|(_, v)| v.clone());
    assert_eq!(
        placed,
        Some(Resp::Int(shard)),
        "placement of {name}: {describe:?}"
    );
}

/// One `INFO` field, read over `c`.
fn info_field(c: &mut RawConn, name: &str) -> u64 {
    let text = c.call_value(&["INFO", "everything"]).text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in INFO"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name} in INFO: {e}"))
}

/// Requests forwarded to another shard so far, over all shards.
fn forwarded(c: &mut RawConn) -> u64 {
    info_field(c, "forwarded_requests")
}

/// Connections moved from one shard to another so far, summed over the per-shard lines.
fn migrated(c: &mut RawConn) -> u64 {
    let text = c.call_value(&["INFO", "everything"]).text();
    text.lines()
        .filter(|l| l.starts_with("shard"))
        .filter_map(|l| l.split(',').find_map(|f| f.strip_prefix("migrated_out=")))
        .map(|n| n.trim().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn pipeline_across_two_shards_keeps_request_order() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    create_on_shard(&mut c, "left", "INT", 0);
    create_on_shard(&mut c, "right", "INT", 1);
    create_on_shard(&mut c, "text", "STRING", 0);

    // Alternate partitions on every request; cycle SET / GET / INCR; values are unique per
    // request so a reply delivered out of order cannot match by accident.
    let mut model: HashMap<(&str, String), i64> = HashMap::new();
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for i in 0..2000i64 {
        let p = if i % 2 == 0 { "left" } else { "right" };
        let key = format!("k{}", i % 7);
        match (i / 2) % 3 {
            0 => {
                let v = i * 1000 + 17;
                requests.push(cmd(&["SET", p, &key, &v.to_string()]));
                expected.push(OK.to_vec());
                model.insert((p, key), v);
            }
            1 => {
                requests.push(cmd(&["GET", p, &key]));
                expected.push(match model.get(&(p, key)) {
                    Some(v) => int(*v),
                    None => NULL2.to_vec(),
                });
            }
            _ => {
                let v = model.entry((p, key.clone())).or_insert(0);
                *v += 1;
                requests.push(cmd(&["INCR", p, &key]));
                expected.push(int(*v));
            }
        }
        // Every 50th request also touches a STRING partition with a bulk reply.
        if i % 50 == 0 {
            let v = format!("value-{i}");
            requests.push(cmd(&["SET", "text", "t", &v]));
            expected.push(OK.to_vec());
            requests.push(cmd(&["GET", "text", "t"]));
            expected.push(bulk(v.as_bytes()));
        }
    }

    // One write for the whole pipeline; replies are read while it is being written.
    let before = forwarded(&mut c);
    let replies = c.pipeline(&requests);
    for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
        assert_eq!(
            show(got),
            show(want),
            "reply {i} to {} is out of order or wrong",
            show(&requests[i])
        );
    }
    // And nothing more follows.
    c.expect(&cmd(&["PING"]), b"+PONG\r\n");
    // Whichever shard the connection is on, "left" or "right" is remote to it.
    let sent = forwarded(&mut c) - before;
    assert!(
        sent >= 1000,
        "only {sent} of 2000 alternating requests were forwarded"
    );
}

/// 16 connections, each 1,000 INCRs on one key (`pipelined`: in batches of 100 per write).
/// The final value must be exactly 16,000 and every returned value unique: no increment is
/// lost or applied twice, whichever shard each connection is served by.
///
/// Connections are dealt to the two shards round-robin, so 8 of the 16 are on the other shard
/// than the counter. With `migrate` off they stay there, and at least their 8,000 INCRs must
/// have been forwarded (checked from INFO); with it on, they move to the counter's shard
/// while their INCRs are in flight, and at least one must have moved.
fn concurrent_incrs(partition_shard: i64, pipelined: bool, migrate: bool) {
    const CONNECTIONS: usize = 16;
    const INCRS: usize = 1000;
    let server = Server::start(&[
        "--shards",
        "2",
        "--migrate-connections",
        if migrate { "true" } else { "false" },
    ]);
    let mut admin = server.raw();
    if partition_shard == 1 {
        create_on_shard(&mut admin, "filler", "INT", 0);
    }
    create_on_shard(&mut admin, "counter", "INT", partition_shard);
    let forwarded_before = forwarded(&mut admin);

    let barrier = Arc::new(Barrier::new(CONNECTIONS));
    let addr = server.addr();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let addr = addr.clone();
            thread::spawn(move || {
                let mut c = RawConn::connect_admin(&addr);
                c.expect(&cmd(&["PING"]), b"+PONG\r\n");
                let home = c.shard();
                barrier.wait();
                let incr = cmd(&["INCR", "counter", "hits"]);
                let mut seen = Vec::with_capacity(INCRS);
                if pipelined {
                    let batch: Vec<Vec<u8>> = vec![incr; 100];
                    for _ in 0..INCRS / 100 {
                        for r in c.pipeline(&batch) {
                            seen.push(parse_resp(&r).unwrap().unwrap().0.int());
                        }
                    }
                } else {
                    for _ in 0..INCRS {
                        c.send(&incr);
                        seen.push(c.read_value().int());
                    }
                }
                (home, seen)
            })
        })
        .collect();

    let mut all = Vec::with_capacity(CONNECTIONS * INCRS);
    let mut remote = 0;
    for w in workers {
        let (home, seen) = w.join().expect("worker panicked");
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "one connection saw its INCR results go backwards"
        );
        if home != partition_shard.to_string() {
            remote += 1;
        }
        all.extend(seen);
    }
    admin.expect(
        &cmd(&["GET", "counter", "hits"]),
        &int((CONNECTIONS * INCRS) as i64),
    );
    all.sort_unstable();
    let expected: Vec<i64> = (1..=(CONNECTIONS * INCRS) as i64).collect();
    assert!(
        all == expected,
        "INCR results are not exactly 1..=16000 (duplicates or gaps)"
    );
    assert_eq!(remote, CONNECTIONS / 2, "connections not dealt round-robin");
    let sent = forwarded(&mut admin) - forwarded_before;
    if migrate {
        assert!(migrated(&mut admin) >= 1, "no remote connection moved");
    } else {
        assert!(
            sent >= (remote * INCRS) as u64,
            "only {sent} of the {} INCRs of remote connections were forwarded",
            remote * INCRS
        );
        assert_eq!(
            migrated(&mut admin),
            0,
            "a connection moved with migration off"
        );
    }
}

#[test]
fn concurrent_incr_on_shard_0() {
    concurrent_incrs(0, false, false);
}

#[test]
fn concurrent_incr_on_shard_1_half_the_connections_remote() {
    concurrent_incrs(1, false, false);
}

#[test]
fn concurrent_pipelined_incr_on_shard_1() {
    concurrent_incrs(1, true, false);
}

/// Migration on: the remote half moves to the counter's shard mid-stream, and not one INCR
/// is lost, doubled or answered out of order across the move.
#[test]
fn concurrent_pipelined_incr_while_connections_migrate() {
    concurrent_incrs(1, true, true);
}

#[test]
fn redis_crate_pipeline_across_shards() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.client();
    let mut setup = redis::pipe();
    setup
        .cmd("CREATE")
        .arg("PARTITION")
        .arg("a")
        .arg("STRING")
        .arg("MEMORY")
        .cmd("CREATE")
        .arg("PARTITION")
        .arg("b")
        .arg("INT")
        .arg("MEMORY");
    let _: () = setup.query(&mut con).unwrap();
    let mut admin = server.raw();
    let before = forwarded(&mut admin);

    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET")
            .arg("a")
            .arg(format!("k{i}"))
            .arg(format!("v{i}"));
        pipe.cmd("INCRBY").arg("b").arg("sum").arg(i);
        pipe.cmd("GET").arg("a").arg(format!("k{i}"));
    }
    let replies: Vec<redis::Value> = pipe.query(&mut con).unwrap();
    let mut sum = 0i64;
    for i in 0..500i64 {
        sum += i;
        let r = &replies[(i * 3) as usize..(i * 3 + 3) as usize];
        assert_eq!(r[0], redis::Value::Okay, "reply to SET #{i}");
        assert_eq!(r[1], redis::Value::Int(sum), "reply to INCRBY #{i}");
        assert_eq!(
            r[2],
            redis::Value::BulkString(format!("v{i}").into_bytes()),
            "reply to GET #{i}"
        );
    }
    // "a" and "b" are placed on shards 0 and 1: a third or two thirds were forwarded.
    let sent = forwarded(&mut admin) - before;
    assert!(sent >= 500, "only {sent} of 1500 requests were forwarded");
}

#[test]
fn pipelined_catalog_changes_take_effect_in_request_order() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    // All in one write: partitions are created, used, dropped and re-created with another
    // schema, each request seeing exactly the catalog the requests before it left.
    let steps: Vec<(Vec<&str>, Vec<u8>)> = vec![
        (
            vec!["CREATE", "PARTITION", "a", "STRING", "MEMORY"],
            OK.to_vec(),
        ),
        (
            vec!["CREATE", "PARTITION", "b", "INT", "MEMORY"],
            OK.to_vec(),
        ),
        (vec!["SET", "a", "k", "va"], OK.to_vec()),
        (vec!["INCR", "b", "k"], int(1)),
        (vec!["GET", "a", "k"], bulk(b"va")),
        (vec!["DROP", "PARTITION", "a"], OK.to_vec()),
        (
            vec!["GET", "a", "k"],
            b"-NOPARTITION partition 'a' does not exist\r\n".to_vec(),
        ),
        (vec!["INCR", "b", "k"], int(2)),
        (
            vec!["CREATE", "PARTITION", "a", "INT", "MEMORY"],
            OK.to_vec(),
        ),
        (vec!["GET", "a", "k"], NULL2.to_vec()),
        (vec!["INCRBY", "a", "k", "5"], int(5)),
        (vec!["DROP", "PARTITION", "b"], OK.to_vec()),
        (
            vec!["INCR", "b", "k"],
            b"-NOPARTITION partition 'b' does not exist\r\n".to_vec(),
        ),
        (
            vec!["CREATE", "PARTITION", "b", "STRING", "MEMORY"],
            OK.to_vec(),
        ),
        (vec!["SET", "b", "k", "vb"], OK.to_vec()),
        (
            vec!["MGET", "b", "k", "x"],
            array(&[bulk(b"vb"), NULL2.to_vec()]),
        ),
        (vec!["GET", "a", "k"], int(5)),
        (vec!["LIST", "PARTITIONS"], array(&[bulk(b"a"), bulk(b"b")])),
    ];
    // Repeat the script under fresh names so it spans several placements.
    for round in 0..10 {
        let rename = |w: &str| -> String {
            match w {
                "a" | "b" => format!("{w}{round}"),
                _ => w.to_string(),
            }
        };
        let mut requests = Vec::new();
        let mut expected = Vec::new();
        for (args, reply) in &steps {
            if args[0] == "LIST" {
                continue; // names differ per round; checked once below
            }
            let args: Vec<String> = args.iter().map(|w| rename(w)).collect();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            requests.push(cmd(&refs));
            let reply = String::from_utf8_lossy(reply)
                .replace("'a'", &format!("'a{round}'"))
                .replace("'b'", &format!("'b{round}'"));
            expected.push(reply.into_bytes());
        }
        let replies = c.pipeline(&requests);
        for (i, (got, want)) in replies.iter().zip(&expected).enumerate() {
            assert_eq!(
                show(got),
                show(want),
                "round {round}, request {}",
                show(&requests[i])
            );
        }
        for name in [format!("a{round}"), format!("b{round}")] {
            c.expect(&cmd(&["DROP", "PARTITION", &name]), OK);
        }
    }
    // And the script verbatim, LIST included.
    let requests: Vec<Vec<u8>> = steps.iter().map(|(args, _)| cmd(args)).collect();
    let replies = c.pipeline(&requests);
    for (i, (got, (_, want))) in replies.iter().zip(&steps).enumerate() {
        assert_eq!(show(got), show(want), "request {}", show(&requests[i]));
    }
}

#[test]
fn catalog_changes_are_visible_to_other_connections_once_acknowledged() {
    let server = Server::start(&["--shards", "2"]);
    // With round-robin assignment these two connections live on different shards.
    let mut a = server.raw();
    let mut b = server.raw();
    assert_ne!(a.shard(), b.shard(), "both connections on one shard");
    for i in 0..40 {
        let p = format!("v{i}");
        let (creator, user) = if i % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        creator.expect(&cmd(&["CREATE", "PARTITION", &p, "STRING", "MEMORY"]), OK);
        user.expect(&cmd(&["SET", &p, "k", "x"]), OK);
        creator.expect(&cmd(&["GET", &p, "k"]), &bulk(b"x"));
        user.expect(&cmd(&["DROP", "PARTITION", &p]), OK);
        creator.expect(
            &cmd(&["GET", &p, "k"]),
            format!("-NOPARTITION partition '{p}' does not exist\r\n").as_bytes(),
        );
        creator.expect(&cmd(&["CREATE", "PARTITION", &p, "INT", "MEMORY"]), OK);
        user.expect(&cmd(&["GET", &p, "k"]), NULL2);
        user.expect(&cmd(&["DROP", "PARTITION", &p]), OK);
    }
}

#[test]
fn large_replies_pipelined_across_shards_arrive_in_order() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    create_on_shard(&mut c, "near", "STRING", 0);
    create_on_shard(&mut c, "far", "STRING", 1);
    // Four distinct 64 KiB values per partition; 400 GETs make ~25 MiB of replies, far more
    // than the socket buffers hold, so the server must pause and resume this connection.
    let value = |p: &str, k: usize| -> Vec<u8> {
        let seed = p.len() * 31 + k;
        (0..64 * 1024)
            .map(|i| ((i * 7 + seed) % 251) as u8)
            .collect()
    };
    for p in ["near", "far"] {
        for k in 0..4 {
            c.expect(
                &cmd_bytes(&[
                    b"SET",
                    p.as_bytes(),
                    format!("k{k}").as_bytes(),
                    &value(p, k),
                ]),
                OK,
            );
        }
    }
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for i in 0..400 {
        let p = if i % 2 == 0 { "near" } else { "far" };
        let k = (i / 2) % 4;
        requests.push(cmd(&["GET", p, &format!("k{k}")]));
        expected.push(bulk(&value(p, k)));
        if i % 40 == 0 {
            requests.push(cmd(&["ECHO", &format!("marker{i}")]));
            expected.push(bulk(format!("marker{i}").as_bytes()));
        }
    }
    let mut all = Vec::new();
    for r in &requests {
        all.extend_from_slice(r);
    }
    let before = forwarded(&mut c);
    let mut writer = c.stream.try_clone().unwrap();
    let handle = std::thread::spawn(move || writer.write_all(&all));
    // Let the output back up before reading anything.
    std::thread::sleep(std::time::Duration::from_millis(200));
    for (i, want) in expected.iter().enumerate() {
        let got = c.read_reply();
        assert!(
            got == *want,
            "reply {i} to {} is wrong or out of order: {}",
            show(&requests[i]),
            show(&got[..got.len().min(64)])
        );
    }
    handle.join().unwrap().unwrap();
    c.expect(&cmd(&["PING"]), b"+PONG\r\n");
    // Half the GETs went to the partition on the other shard.
    let sent = forwarded(&mut c) - before;
    assert!(sent >= 200, "only {sent} of 400 GETs were forwarded");
}

/// A connection whose requests all go to one other shard moves there, keeps its state, and
/// its replies stay correct across the move; with migration off it stays put.
#[test]
fn connection_moves_to_the_shard_it_uses() {
    for migrate in ["true", "false"] {
        let server = Server::start(&["--shards", "2", "--migrate-connections", migrate]);
        let mut admin = server.raw();
        admin.expect(&cmd(&["CREATE", "PARTITION", "p0", "INT", "MEMORY"]), OK);
        admin.expect(&cmd(&["CREATE", "PARTITION", "p1", "INT", "MEMORY"]), OK);
        // Find a connection on shard 0 (connections are dealt round-robin).
        let mut c = loop {
            let mut c = server.raw();
            if c.shard() == "0" {
                break c;
            }
        };
        c.expect(&cmd(&["CLIENT", "SETNAME", "mover"]), OK);
        let id = c.call_value(&["CLIENT", "ID"]).int();
        for i in 1..=300 {
            c.expect(&cmd(&["INCR", "p1", "n"]), &int(i));
        }
        let expected = if migrate == "true" { "1" } else { "0" };
        assert_eq!(c.shard(), expected, "migration {migrate}");
        // The session moved with it.
        assert_eq!(c.call_value(&["CLIENT", "ID"]).int(), id);
        c.expect(&cmd(&["CLIENT", "GETNAME"]), &bulk(b"mover"));
        // Pipelined requests to both shards still answer in order after the move.
        let requests: Vec<Vec<u8>> = (0..200)
            .map(|i| cmd(&["INCR", if i % 2 == 0 { "p0" } else { "p1" }, "n"]))
            .collect();
        let replies = c.pipeline(&requests);
        for (i, reply) in replies.iter().enumerate() {
            let want = if i % 2 == 0 {
                i as i64 / 2 + 1
            } else {
                300 + i as i64 / 2 + 1
            };
            assert_eq!(show(reply), show(&int(want)), "reply {i}");
        }
    }
}

/// A new connection whose first requests all go to one other shard moves there after a few
/// of them (4, `connection::FIRST_MOVE_AFTER`), and one whose first requests use no partition
/// gathers as soon: a benchmark's connections do not spend their start on the wrong shard.
/// Once moved, a connection needs the full streak (64) to move again, so it cannot ping-pong.
#[test]
fn a_new_connection_moves_after_a_few_requests_then_only_after_a_full_streak() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    let (a, b) = admin.one_partition_per_shard();
    let (p0, p1) = if admin.partition_shard(&a) == "0" {
        (a, b)
    } else {
        (b, a)
    };
    let mut c = loop {
        let mut c = server.raw();
        if c.shard() == "0" {
            break c;
        }
    };
    for _ in 0..3 {
        c.expect(&cmd(&["GET", &p1, "k"]), b"$-1\r\n");
    }
    assert_eq!(c.shard(), "0", "three requests do not move it");
    c.expect(&cmd(&["GET", &p1, "k"]), b"$-1\r\n");
    assert_eq!(c.shard(), "1", "the fourth does");
    // Moved once: 63 requests to shard 0 leave it on shard 1, the 64th moves it back.
    for _ in 0..63 {
        c.expect(&cmd(&["GET", &p0, "k"]), b"$-1\r\n");
    }
    assert_eq!(c.shard(), "1");
    c.expect(&cmd(&["GET", &p0, "k"]), b"$-1\r\n");
    assert_eq!(c.shard(), "0");

    let mut pinger = named_on_shard_1(&server, "new-pinger");
    for _ in 0..4 {
        pinger.expect(&cmd(&["PING"]), b"+PONG\r\n");
    }
    assert_eq!(listed_shard(&mut admin, "new-pinger"), "0");
}

/// The shard CLIENT LIST shows the connection named `name` on.
fn listed_shard(admin: &mut RawConn, name: &str) -> String {
    let list = admin.call_value(&["CLIENT", "LIST"]).text();
    let line = list
        .lines()
        .find(|l| l.split_whitespace().any(|f| f == format!("name={name}")))
        .unwrap_or_else(|| panic!("no client named {name} in {list}"));
    line.rsplit("shard=").next().unwrap_or_default().to_string()
}

/// A connection on shard 1 of a two-shard server, named `name`.
fn named_on_shard_1(server: &Server, name: &str) -> RawConn {
    let mut c = loop {
        let mut c = server.raw();
        if c.shard() == "1" {
            break c;
        }
    };
    c.expect(&cmd(&["CLIENT", "SETNAME", name]), OK);
    c
}

/// A connection that uses no partition moves onto shard 0 (`shard::gather`), session and all,
/// and goes on working; with migration off it stays. A subscriber, a connection in the middle
/// of a MULTI, and one that uses a partition of its own shard now and then stay where they
/// are; one gathered while it WATCHes a key keeps its watch.
#[test]
fn a_connection_that_uses_no_partition_gathers_onto_shard_0() {
    for migrate in ["true", "false"] {
        let server = Server::start(&["--shards", "2", "--migrate-connections", migrate]);
        let mut admin = server.raw();
        let mut c = named_on_shard_1(&server, "pinger");
        let id = c.call_value(&["CLIENT", "ID"]).int();
        let before = migrated(&mut admin);
        for _ in 0..100 {
            c.expect(&cmd(&["PING"]), b"+PONG\r\n");
        }
        let expected = if migrate == "true" { "0" } else { "1" };
        assert_eq!(c.shard(), expected, "migration {migrate}");
        assert_eq!(listed_shard(&mut admin, "pinger"), expected);
        let moved = if migrate == "true" { 1 } else { 0 };
        assert_eq!(migrated(&mut admin) - before, moved);
        // The session moved with it, and it goes on working.
        assert_eq!(c.call_value(&["CLIENT", "ID"]).int(), id);
        c.expect(&cmd(&["CLIENT", "GETNAME"]), &bulk(b"pinger"));
        c.expect(&cmd(&["ECHO", "still here"]), &bulk(b"still here"));
        // On shard 0 it stays: there is no lower shard.
        for _ in 0..100 {
            c.expect(&cmd(&["PING"]), b"+PONG\r\n");
        }
        assert_eq!(c.shard(), expected);
    }

    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    let (a, b) = admin.one_partition_per_shard();
    let p1 = if admin.partition_shard(&a) == "1" {
        a
    } else {
        b
    };
    let before = migrated(&mut admin);

    // A subscriber stays where its shard's registry has it, and still gets its messages.
    let mut sub = named_on_shard_1(&server, "subscriber");
    sub.expect(
        &cmd(&["SUBSCRIBE", "news"]),
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    );
    for _ in 0..100 {
        sub.expect(&cmd(&["PING"]), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    }
    admin.expect(&cmd(&["PUBLISH", "news", "hi"]), b":1\r\n");
    sub.expect(&[], b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n");
    assert_eq!(listed_shard(&mut admin, "subscriber"), "1");

    // A publisher that uses no partition gathers too (its messages reach every shard's
    // subscribers from any shard), and the subscriber on shard 1 still gets them all.
    let mut publisher = named_on_shard_1(&server, "publisher");
    for i in 0..100 {
        publisher.expect(&cmd(&["PUBLISH", "news", &format!("m{i}")]), b":1\r\n");
        let frame = format!(
            "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n${}\r\nm{i}\r\n",
            1 + i.to_string().len()
        );
        sub.expect(&[], frame.as_bytes());
    }
    assert_eq!(publisher.shard(), "0", "a publisher gathers");
    publisher.expect(&cmd(&["PUBLISH", "news", "after"]), b":1\r\n");
    sub.expect(&[], b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nafter\r\n");

    // Requests queued in a MULTI count when EXEC runs them, not before: the connection does
    // not move in the middle of its transaction.
    let mut tx = named_on_shard_1(&server, "tx");
    tx.expect(&cmd(&["MULTI"]), OK);
    for _ in 0..100 {
        tx.expect(&cmd(&["PING"]), b"+QUEUED\r\n");
    }
    assert_eq!(listed_shard(&mut admin, "tx"), "1");
    let pongs: Vec<Vec<u8>> = (0..100).map(|_| b"+PONG\r\n".to_vec()).collect();
    tx.expect(&cmd(&["EXEC"]), &array(&pongs));
    assert_eq!(tx.shard(), "0", "gathered once its transaction ran");
    tx.expect(&cmd(&["PING"]), b"+PONG\r\n");

    // A connection gathered while it WATCHes a key of shard 1 keeps its watch: EXEC fails
    // once the key changed, and succeeds when it did not.
    for touched in [true, false] {
        let name = format!("watcher-{touched}");
        let mut w = named_on_shard_1(&server, &name);
        w.expect(&cmd(&["WATCH", &p1, "w"]), OK);
        for _ in 0..100 {
            w.expect(&cmd(&["PING"]), b"+PONG\r\n");
        }
        assert_eq!(w.shard(), "0");
        if touched {
            admin.expect(&cmd(&["SET", &p1, "w", "changed"]), OK);
        }
        w.expect(&cmd(&["MULTI"]), OK);
        w.expect(&cmd(&["SET", &p1, "w", "mine"]), b"+QUEUED\r\n");
        let reply: &[u8] = if touched {
            b"*-1\r\n"
        } else {
            b"*1\r\n+OK\r\n"
        };
        w.expect(&cmd(&["EXEC"]), reply);
        let value: &[u8] = if touched { b"changed" } else { b"mine" };
        admin.expect(&cmd(&["GET", &p1, "w"]), &bulk(value));
    }

    // A connection that also uses its own shard's partition is bound to it.
    let mut user = named_on_shard_1(&server, "user");
    for i in 0..100 {
        user.expect(&cmd(&["PING"]), b"+PONG\r\n");
        if i % 32 == 0 {
            user.expect(&cmd(&["GET", &p1, "k"]), b"$-1\r\n");
        }
    }
    assert_eq!(user.shard(), "1");
    // The publisher's, the transaction's and the watchers' moves, and no other.
    assert_eq!(migrated(&mut admin) - before, 4);
}
