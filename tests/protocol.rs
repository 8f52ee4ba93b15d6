//! Framing: inline commands and their quoting, RESP3 negotiation, requests that arrive a byte
//! at a time, malformed frames (which close only their own connection) and the parser limits.

mod common;

use std::collections::HashMap;
use std::thread;
use std::time::Duration;

use common::*;

#[track_caller]
fn create(c: &mut RawConn, name: &str, schema: &str) {
    c.expect(&cmd(&["CREATE", "PARTITION", name, schema, "MEMORY"]), OK);
}

const PONG: &[u8] = b"+PONG\r\n";

// ------------------------------------------------------------------------------------------
// Inline commands
// ------------------------------------------------------------------------------------------

#[test]
fn inline_commands_with_crlf_or_bare_lf() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    c.expect(b"CREATE PARTITION p STRING MEMORY\r\n", OK);
    c.expect(b"SET p k v\r\n", OK);
    c.expect(b"GET p k\n", b"$1\r\nv\r\n");
    c.expect(b"get   p    k   \r\n", b"$1\r\nv\r\n");
    c.expect(b"SET p k2 longer-value\n", OK);
    c.expect(&cmd(&["GET", "p", "k2"]), &bulk(b"longer-value"));
    c.expect(b"PING\r\n", PONG);
    c.expect(b"ECHO hello\n", &bulk(b"hello"));
    c.expect(b"NOSUCH a b\r\n", b"-ERR unknown command 'NOSUCH'\r\n");
    c.expect(
        b"GET p\r\n",
        b"-ERR wrong number of arguments for 'get' command (GoKV: GET <partition> <key>)\r\n",
    );
}

#[test]
fn inline_empty_lines_are_ignored() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    c.send(b"\r\n\n\r\n\n   \r\nPING\r\n");
    assert_eq!(show(&c.read_reply()), show(PONG));
    // No stray reply was produced for the empty lines: the next reply answers the next request.
    c.expect(&cmd(&["ECHO", "next"]), &bulk(b"next"));
}

#[test]
fn inline_double_quotes_honour_escapes() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    create(&mut c, "p", "STRING");
    c.expect(br#"SET p k "a b\n\r\t\\\"\x41\xfF\x00""#.iter().chain(b"\r\n").copied().collect::<Vec<u8>>().as_slice(), OK);
    c.expect(&cmd(&["GET", "p", "k"]), &bulk(b"a b\n\r\t\\\"A\xff\x00"));
    // A quoted key with a space, and an empty quoted value.
    c.expect(b"SET p \"two words\" \"\"\r\n", OK);
    c.expect(&cmd(&["GET", "p", "two words"]), b"$0\r\n\r\n");
    c.expect(b"EXISTS p \"two words\" two words\r\n", &int(1));
}

#[test]
fn inline_single_quotes_only_escape_the_quote() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    create(&mut c, "p", "STRING");
    c.expect(b"SET p k 'it\\'s a \\n \"x\"'\r\n", OK);
    c.expect(&cmd(&["GET", "p", "k"]), &bulk(b"it's a \\n \"x\""));
    c.expect(b"SET p 'a key' ''\r\n", OK);
    c.expect(&cmd(&["GET", "p", "a key"]), b"$0\r\n\r\n");
}

#[test]
fn inline_unbalanced_quotes_close_the_connection() {
    let server = Server::start(&[]);
    let mut bystander = server.raw();
    bystander.expect(&cmd(&["PING"]), PONG);
    let lines: &[&[u8]] = &[
        b"SET p k \"abc\r\n",
        b"SET p k 'abc\r\n",
        b"ECHO \"\r\n",
        // A closing quote must be followed by a space or the end of the line.
        b"ECHO \"a\"b\r\n",
        b"ECHO 'a'b\n",
    ];
    for line in lines {
        let mut c = server.raw();
        c.expect(
            line,
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        );
        c.expect_closed();
        bystander.expect(&cmd(&["PING"]), PONG);
    }
}

#[test]
fn inline_and_resp_mix_in_one_pipeline() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    let requests = [
        b"PING\r\n".to_vec(),
        cmd(&["ECHO", "resp"]),
        b"ECHO inline\n".to_vec(),
        cmd(&["PING", "x"]),
        b"ECHO \"q u\"\r\n".to_vec(),
    ];
    let replies = c.pipeline(&requests);
    let expected = [
        PONG.to_vec(),
        bulk(b"resp"),
        bulk(b"inline"),
        bulk(b"x"),
        bulk(b"q u"),
    ];
    let replies: Vec<String> = replies.iter().map(|r| show(r)).collect();
    let expected: Vec<String> = expected.iter().map(|r| show(r)).collect();
    assert_eq!(replies, expected);
}

/// Requests queued behind a catalog change are framed again once it is answered: escaped
/// inline arguments must come out the same (their unescaping rewrites the read buffer), and a
/// RESP request cut in the middle must be completed, not garbled.
#[test]
fn requests_behind_a_catalog_change_run_unchanged() {
    for shards in ["1", "2"] {
        let server = Server::start(&["--shards", shards]);
        let mut c = server.raw();
        // One batch: CREATE, SET, and half a GET. CREATE holds the rest back until every
        // shard has the partition, so the SET and the half GET are framed again later.
        let mut pipeline = cmd(&["CREATE", "PARTITION", "q", "STRING", "MEMORY"]);
        pipeline.extend_from_slice(&cmd(&["SET", "q", "k2", "resp"]));
        let get_k2 = cmd(&["GET", "q", "k2"]);
        let (head, tail) = get_k2.split_at(9);
        pipeline.extend_from_slice(head);
        c.send(&pipeline);
        thread::sleep(Duration::from_millis(50));
        let mut rest = tail.to_vec();
        rest.extend_from_slice(
            b"CREATE PARTITION r STRING MEMORY\r\nSET r k \"a\\x41\\n\"\r\nGET r k\r\n",
        );
        c.send(&rest);
        assert_eq!(show(&c.read_reply()), show(OK));
        assert_eq!(show(&c.read_reply()), show(OK));
        assert_eq!(show(&c.read_reply()), show(&bulk(b"resp")));
        assert_eq!(show(&c.read_reply()), show(OK));
        assert_eq!(show(&c.read_reply()), show(OK));
        assert_eq!(show(&c.read_reply()), show(&bulk(b"aA\n")));
    }
}

// ------------------------------------------------------------------------------------------
// RESP3
// ------------------------------------------------------------------------------------------

/// Looks up `field` in a HELLO reply.
fn hello_field(reply: &Resp, field: &str) -> Resp {
    reply
        .pairs()
        .into_iter()
        .find(|(k, _)| k.bytes() == field.as_bytes())
        .unwrap_or_else(|| panic!("HELLO reply has no {field}: {reply:?}"))
        .1
}

#[test]
fn hello_3_switches_the_connection_to_resp3() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    create(&mut c, "s", "STRING");
    create(&mut c, "n", "INT");
    c.expect(&cmd(&["SET", "s", "k", "v"]), OK);
    c.expect(&cmd(&["SET", "n", "k", "5"]), OK);

    let raw = c.call(&["HELLO", "3"]);
    assert_eq!(
        raw[0],
        b'%',
        "HELLO 3 must answer a RESP3 map: {}",
        show(&raw)
    );
    let hello = parse_resp(&raw).unwrap().unwrap().0;
    assert_eq!(hello_field(&hello, "server").bytes(), b"gokv");
    assert_eq!(hello_field(&hello, "proto"), Resp::Int(3));

    c.expect(&cmd(&["GET", "s", "absent"]), NULL3);
    c.expect(&cmd(&["GET", "s", "k"]), &bulk(b"v"));
    c.expect(&cmd(&["GET", "n", "k"]), &int(5));
    c.expect(
        &cmd(&["MGET", "s", "k", "absent"]),
        b"*2\r\n$1\r\nv\r\n_\r\n",
    );
    c.expect(&cmd(&["MGET", "n", "absent", "k"]), b"*2\r\n_\r\n:5\r\n");
    c.expect(&cmd(&["CLIENT", "GETNAME"]), NULL3);
    c.expect(&cmd(&["COMMAND", "DOCS"]), b"%0\r\n");
    c.expect(&cmd(&["PING"]), PONG);
    c.expect(&cmd(&["SET", "s", "k2", "w"]), OK);

    for p in ["s", "n"] {
        let describe = c.call(&["DESCRIBE", "PARTITION", p]);
        assert!(
            describe.starts_with(b"%"),
            "DESCRIBE under RESP3: {}",
            show(&describe)
        );
        let fields: Vec<String> = parse_resp(&describe)
            .unwrap()
            .unwrap()
            .0
            .pairs()
            .iter()
            .take(6)
            .map(|(k, _)| k.text())
            .collect();
        assert_eq!(
            fields,
            ["name", "schema", "persist", "shard", "keys", "created_ms"]
        );
        let stats = c.call(&["STATS", "PARTITION", p]);
        assert!(
            stats.starts_with(b"%"),
            "STATS under RESP3: {}",
            show(&stats)
        );
        let fields: Vec<String> = parse_resp(&stats)
            .unwrap()
            .unwrap()
            .0
            .pairs()
            .iter()
            .take(6)
            .map(|(k, _)| k.text())
            .collect();
        assert_eq!(fields, ["ops", "reads", "writes", "keys", "hits", "misses"]);
    }

    // HELLO 2 switches back.
    let raw = c.call(&["HELLO", "2"]);
    assert_eq!(
        raw[0],
        b'*',
        "HELLO 2 must answer a flat array: {}",
        show(&raw)
    );
    let hello = parse_resp(&raw).unwrap().unwrap().0;
    assert_eq!(hello_field(&hello, "proto"), Resp::Int(2));
    c.expect(&cmd(&["GET", "s", "absent"]), NULL2);
    c.expect(&cmd(&["MGET", "s", "absent"]), b"*1\r\n$-1\r\n");
    let describe = c.call(&["DESCRIBE", "PARTITION", "s"]);
    assert!(
        describe.starts_with(b"*"),
        "DESCRIBE under RESP2: {}",
        show(&describe)
    );
}

#[test]
fn hello_with_an_unknown_version_is_noproto_and_keeps_the_protocol() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    create(&mut c, "s", "STRING");
    c.expect_prefix(&cmd(&["HELLO", "4"]), b"-NOPROTO");
    c.expect(&cmd(&["GET", "s", "absent"]), NULL2);
    c.call(&["HELLO", "3"]);
    c.expect_prefix(&cmd(&["HELLO", "4"]), b"-NOPROTO");
    c.expect(&cmd(&["GET", "s", "absent"]), NULL3);
}

#[test]
fn resp3_through_the_redis_crate() {
    let server = Server::start(&["--shards", "2"]);
    let mut con = server.client_resp3();
    q::<()>(&mut con, &["CREATE", "PARTITION", "s", "STRING", "MEMORY"]).unwrap();
    assert_eq!(
        q::<redis::Value>(&mut con, &["GET", "s", "k"]).unwrap(),
        redis::Value::Nil
    );
    q::<()>(&mut con, &["SET", "s", "k", "v"]).unwrap();
    assert_eq!(q::<String>(&mut con, &["GET", "s", "k"]).unwrap(), "v");
    let describe = q::<redis::Value>(&mut con, &["DESCRIBE", "PARTITION", "s"]).unwrap();
    assert!(matches!(describe, redis::Value::Map(_)), "{describe:?}");
    let map: HashMap<String, redis::Value> = q(&mut con, &["DESCRIBE", "PARTITION", "s"]).unwrap();
    assert_eq!(map["keys"], redis::Value::Int(1));
    assert_eq!(map["schema"], redis::Value::BulkString(b"STRING".to_vec()));
}

// ------------------------------------------------------------------------------------------
// Fragmented and large requests
// ------------------------------------------------------------------------------------------

#[test]
fn request_split_into_single_bytes_is_answered() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    create(&mut c, "p", "STRING");
    let mut bytes = cmd(&["SET", "p", "key", "value"]);
    bytes.extend(cmd(&["GET", "p", "key"]));
    bytes.extend(b"ECHO \"in line\"\r\n");
    for b in &bytes {
        c.send(&[*b]);
        thread::sleep(Duration::from_micros(500));
    }
    assert_eq!(show(&c.read_reply()), show(OK));
    assert_eq!(show(&c.read_reply()), show(&bulk(b"value")));
    assert_eq!(show(&c.read_reply()), show(&bulk(b"in line")));
}

#[test]
fn large_values_round_trip() {
    let server = Server::start(&[]);
    let mut c = server.raw();
    create(&mut c, "p", "STRING");
    let value: Vec<u8> = (0..(1 << 20) + 7).map(|i| (i * 31 % 251) as u8).collect();
    c.expect(&cmd_bytes(&[b"SET", b"p", b"big", &value]), OK);
    c.expect(&cmd(&["GET", "p", "big"]), &bulk(&value));

    let mut con = server.client();
    let got: Vec<u8> = q(&mut con, &["GET", "p", "big"]).unwrap();
    assert!(
        got == value,
        "1 MiB value corrupted through the redis crate"
    );
}

// ------------------------------------------------------------------------------------------
// Malformed frames and limits
// ------------------------------------------------------------------------------------------

/// Sends `frame` on a fresh connection and asserts a protocol error followed by a close,
/// while `bystander` keeps being served.
#[track_caller]
fn assert_protocol_error(server: &Server, bystander: &mut RawConn, frame: &[u8]) {
    let mut c = server.raw();
    let reply = c.expect_prefix(frame, b"-ERR Protocol error:");
    assert!(reply.ends_with(b"\r\n") && reply.iter().filter(|&&b| b == b'\n').count() == 1);
    c.expect_closed();
    bystander.expect(&cmd(&["PING"]), PONG);
}

#[test]
fn malformed_frames_close_only_that_connection() {
    let server = Server::start(&["--shards", "2"]);
    let mut bystander = server.raw();
    create(&mut bystander, "p", "STRING");
    bystander.expect(&cmd(&["SET", "p", "k", "v"]), OK);
    let frames: &[&[u8]] = &[
        b"*abc\r\n",
        b"*2\r\n:1\r\n",
        b"*1\r\nPING\r\n",
        b"*1\r\n$-5\r\n",
        b"*1\r\n$abc\r\n",
        b"*1\r\n$3\r\nabcd\r\n",
        b"*2\r\n$3\r\nGET\r\n+p\r\n",
    ];
    for frame in frames {
        assert_protocol_error(&server, &mut bystander, frame);
    }
    // A well-formed request ahead of the bad frame is still answered first.
    let mut c = server.raw();
    c.send(&[cmd(&["GET", "p", "k"]), b"*abc\r\n".to_vec()].concat());
    assert_eq!(show(&c.read_reply()), show(&bulk(b"v")));
    let err = c.read_reply();
    assert!(err.starts_with(b"-ERR Protocol error:"), "{}", show(&err));
    c.expect_closed();

    // The server still serves new connections and the data is intact.
    server.raw().expect(&cmd(&["GET", "p", "k"]), &bulk(b"v"));
}

#[test]
fn client_vanishing_mid_request_does_not_disturb_others() {
    let server = Server::start(&["--shards", "2"]);
    let mut bystander = server.raw();
    create(&mut bystander, "p", "STRING");
    for partial in [
        &b"*3\r\n$3\r\nSET\r\n$1\r\np"[..],
        b"*3\r\n$3\r\nSET\r\n$100\r\nabc",
        b"GET p",
    ] {
        let mut c = server.raw();
        c.send(partial);
        drop(c);
        bystander.expect(&cmd(&["PING"]), PONG);
    }
    bystander.expect(&cmd(&["EXISTS", "p", "p"]), &int(0));
}

#[test]
fn max_bulk_len_limit() {
    let server = Server::start(&["--max-bulk-len", "16"]);
    let mut bystander = server.raw();
    create(&mut bystander, "p", "STRING");
    let sixteen = "0123456789abcdef";
    bystander.expect(&cmd(&["SET", "p", "k", sixteen]), OK);
    bystander.expect(&cmd(&["GET", "p", "k"]), &bulk(sixteen.as_bytes()));
    // Only the header of the oversize bulk is sent: the server must refuse on the length
    // alone, before any of the claimed bytes arrive.
    assert_protocol_error(
        &server,
        &mut bystander,
        b"*4\r\n$3\r\nSET\r\n$1\r\np\r\n$1\r\nk\r\n$17\r\n",
    );
    assert_protocol_error(&server, &mut bystander, b"*2\r\n$4\r\nECHO\r\n$1000000\r\n");
    bystander.expect(&cmd(&["GET", "p", "k"]), &bulk(sixteen.as_bytes()));
}

#[test]
fn max_args_limit() {
    let server = Server::start(&["--max-args", "4"]);
    let mut bystander = server.raw();
    // Four arguments are fine (the partition does not exist, which is not a protocol matter).
    bystander.expect(
        &cmd(&["EXISTS", "p", "a", "b"]),
        b"-NOPARTITION partition 'p' does not exist\r\n",
    );
    bystander.expect(&cmd(&["PING"]), PONG);
    // Five are refused from the array header alone.
    assert_protocol_error(&server, &mut bystander, b"*5\r\n");
    assert_protocol_error(&server, &mut bystander, b"*1000000\r\n$6\r\nEXISTS\r\n");
}

#[test]
fn max_inline_len_limit() {
    let server = Server::start(&["--max-inline-len", "32"]);
    let mut bystander = server.raw();
    // A line well under the limit works.
    bystander.expect(b"ECHO 0123456789abcdef\r\n", &bulk(b"0123456789abcdef"));
    // RESP requests are not inline lines: the limit does not apply to them.
    let long = "x".repeat(100);
    bystander.expect(&cmd(&["ECHO", &long]), &bulk(long.as_bytes()));
    // An inline line growing past the limit without a newline is refused.
    assert_protocol_error(&server, &mut bystander, "E".repeat(40).as_bytes());
    assert_protocol_error(
        &server,
        &mut bystander,
        format!("ECHO {}", "y".repeat(200)).as_bytes(),
    );
}

#[test]
fn large_mset_arriving_in_chunks() {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    create(&mut c, "filler", "INT");
    create(&mut c, "p", "INT");
    let keys: Vec<String> = (0..5000).map(|i| format!("key{i}")).collect();
    let values: Vec<String> = (0..5000).map(|i| (i * 7 - 3).to_string()).collect();
    let mut args = vec!["MSET", "p"];
    for (k, v) in keys.iter().zip(&values) {
        args.push(k);
        args.push(v);
    }
    let request = cmd(&args);
    // Uneven chunks, so frame boundaries fall everywhere: inside headers, data and CRLFs.
    for chunk in request.chunks(997) {
        c.send(chunk);
        thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(show(&c.read_reply()), show(OK));
    let mut mget = vec!["MGET", "p"];
    mget.extend(keys.iter().map(String::as_str));
    let reply = c.call_value(&mget);
    let got: Vec<i64> = reply.items().iter().map(Resp::int).collect();
    let want: Vec<i64> = (0..5000).map(|i| i * 7 - 3).collect();
    assert!(got == want, "MGET after a 5000-pair MSET differs");
    c.expect(
        &cmd(&["EXISTS", "p", "key0", "key4999", "key5000"]),
        &int(2),
    );
}
