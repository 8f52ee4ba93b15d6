//! Forwarded replies past 4 GiB in one pass (issue 18, item 1).
//!
//! In a file of its own: it moves more than 4 GiB through the server, which must not run
//! beside other tests. The server peaks near 4.5 GiB (mostly the requester's
//! unwritten output for the client), the run near 20 s on a loaded 2-core machine.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

/// One value and how many forwarded GETs of it: 68 x 64 MiB = 4.25 GiB, past what a `u32`
/// offset can address.
const VALUE_LEN: usize = 64 << 20;
const GETS: usize = 68;

/// One connection on the shard that does not own `p` pipelines GETs of a 64 MiB value, all
/// read in one pass and forwarded in one batch: their replies (more than 4 GiB) overflowed
/// the batch's `u32` offsets and the server died on a slice panic. Every reply must arrive,
/// whole and in order, and the server must keep serving.
#[test]
fn forwarded_replies_past_4_gib_in_one_pass_all_arrive() {
    let server = Server::start(&[
        "--shards",
        "2",
        "--migrate-connections",
        "false",
        "--client-output-limit",
        "8gb",
        "--max-memory",
        "0",
    ]);
    let mut admin = server.raw();
    admin.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    let value = vec![b'v'; VALUE_LEN];
    admin.expect(&cmd_bytes(&[b"SET", b"p", b"big", &value]), OK);
    drop(value);
    let home = admin.partition_shard("p");
    // A plain socket on the other shard, so that 4 GiB of replies are counted, not kept.
    let mut socket = loop {
        let mut probe = server.raw();
        if probe.shard() != home {
            break probe.stream;
        }
    };
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let header = format!("${VALUE_LEN}\r\n");
    let per_reply = header.len() + VALUE_LEN + 2;
    let expected = per_reply * GETS;
    socket
        .write_all(&cmd(&["GET", "p", "big"]).repeat(GETS))
        .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    while total < expected {
        let n = match socket.read(&mut buf) {
            Ok(0) => panic!(
                "the server closed the connection after {total} of {expected} reply bytes \
                 ({} of {GETS} replies); its log:\n{}",
                total / per_reply,
                tail(&server.log_text())
            ),
            Ok(n) => n,
            Err(e) => panic!(
                "reading replies failed after {total} of {expected} bytes: {e}; log:\n{}",
                tail(&server.log_text())
            ),
        };
        // Each reply's header and trailer, where they fall in this chunk.
        for reply in total / per_reply..=(total + n - 1) / per_reply {
            let base = reply * per_reply;
            let framing = (0..header.len())
                .map(|i| (base + i, header.as_bytes()[i]))
                .chain([(base + per_reply - 2, b'\r'), (base + per_reply - 1, b'\n')]);
            for (at, want) in framing {
                if (total..total + n).contains(&at) {
                    assert_eq!(buf[at - total], want, "reply {reply}, stream byte {at}");
                }
            }
        }
        total += n;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "replies too slow: {total} of {expected} bytes in {:?}",
            started.elapsed()
        );
    }
    assert_eq!(total, expected);
    // For whoever sizes this test: the server's peak resident memory.
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", server.pid())) {
        if let Some(peak) = status.lines().find(|l| l.starts_with("VmHWM")) {
            eprintln!("server {peak}, replies took {:?}", started.elapsed());
        }
    }
    // Still serving, on both shards.
    let mut after = RawConn::connect_admin(&server.addr());
    after.expect(&cmd(&["PING"]), b"+PONG\r\n");
    after.expect(&cmd(&["EXISTS", "p", "big"]), b":1\r\n");
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
