//! What a peer that has not logged in can make the server do, against the real binary: the
//! pre-login request limits (a bulk of at most 16 KiB, at most 10 arguments), password lengths
//! checked before any hashing, and a flood of failing logins that must not lock real users
//! out, keep client slots, or flood the log.
//!
//! Each test starts its own server on port 0 (tests/common: killed on drop).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A plain socket with a short read timeout: a server that waits for bytes we never send
/// must show up as a failed read here, not as a 10 s hang.
fn socket(server: &Server, timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until the server closes the connection (EOF or reset) or `timeout` passes; returns
/// what came and whether it closed.
fn read_until_close(s: &mut TcpStream) -> (String, bool) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                return (String::from_utf8_lossy(&got).into_owned(), true)
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// The text of an error reply (empty for any other reply).
fn error_text(reply: &Resp) -> String {
    match reply {
        Resp::Error(text) => String::from_utf8_lossy(text).into_owned(),
        _ => String::new(),
    }
}

/// The server's virtual memory size (what it has reserved, touched or not), in bytes.
fn vm_size(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmSize in /proc/<pid>/status");
    kib * 1024
}

#[test]
fn before_login_a_huge_bulk_header_is_refused_before_its_body_is_sent() {
    let server = Server::start(&["--shards", "1"]);
    let vm_before = vm_size(&server);
    // Four sockets announce a 500 MB password and send none of it.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = socket(&server, Duration::from_secs(5));
        s.write_all(b"*3\r\n$4\r\nAUTH\r\n$5\r\nadmin\r\n$500000000\r\n")
            .unwrap();
        let (got, closed) = read_until_close(&mut s);
        assert!(
            got.starts_with("-ERR Protocol error: ") && got.contains("before login"),
            "a 500 MB bulk before login got {got:?} (closed: {closed})"
        );
        assert!(closed, "the connection stayed open after {got:?}");
        held.push(s);
    }
    let vm_after = vm_size(&server);
    assert!(
        vm_after < vm_before + 256 * 1024 * 1024,
        "VmSize grew from {vm_before} to {vm_after}"
    );
    // More arguments than AUTH or HELLO need, from the array header alone.
    let mut s = socket(&server, Duration::from_secs(5));
    s.write_all(b"*11\r\n").unwrap();
    let (got, closed) = read_until_close(&mut s);
    assert!(
        got.starts_with("-ERR Protocol error: ") && got.contains("before login") && closed,
        "11 arguments before login got {got:?} (closed: {closed})"
    );
    // Inline requests obey the same argument limit.
    let mut s = socket(&server, Duration::from_secs(5));
    s.write_all(b"a b c d e f g h i j k\r\n").unwrap();
    let (got, closed) = read_until_close(&mut s);
    assert!(
        got.starts_with("-ERR Protocol error: ") && closed,
        "11 inline words before login got {got:?} (closed: {closed})"
    );
    // Within the pre-login limits, nothing changes: 10 arguments, a 16 KiB bulk.
    let mut c = server.raw_unauthenticated();
    let ten: Vec<&str> = vec!["GET"; 10];
    c.expect(&cmd(&ten), b"-NOAUTH Authentication required.\r\n");
    // A 16 KiB password passes the frame limits, then its length is refused before any
    // hashing (the connection stays usable).
    let pw = "x".repeat(16 * 1024);
    let reply = c.call_value(&["AUTH", "admin", &pw]);
    assert!(
        error_text(&reply).starts_with("ERR ") && error_text(&reply).contains("at most 4096 bytes"),
        "{reply:?}"
    );
    // Once logged in, the normal limits apply to the same connection.
    c.expect(&cmd(&["AUTH", "admin", ADMIN_PASSWORD]), OK);
    let big = "v".repeat(1024 * 1024);
    c.expect(&cmd(&["ECHO", &big]), &bulk(big.as_bytes()));
    let many: Vec<&str> = std::iter::once("ECHO")
        .chain(std::iter::repeat_n("a", 19))
        .collect();
    assert!(c.call_value(&many).is_error_code("ERR"));
}

#[test]
fn a_20_mib_password_is_refused_quickly_and_other_clients_are_not_stalled() {
    let server = Server::start(&["--shards", "1"]);
    let stop = Arc::new(AtomicBool::new(false));
    // A logged-in bystander on the same shard measures its worst round trip meanwhile.
    let bystander = {
        let mut c = server.raw();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.expect(&cmd(&["PING"]), b"+PONG\r\n");
                worst = worst.max(t.elapsed());
                thread::sleep(Duration::from_millis(2));
            }
            worst
        })
    };
    let password = vec![b'p'; 20 * 1024 * 1024];
    let mut request = b"*3\r\n$4\r\nAUTH\r\n$5\r\nadmin\r\n".to_vec();
    request.extend_from_slice(format!("${}\r\n", password.len()).as_bytes());
    request.extend_from_slice(&password);
    request.extend_from_slice(b"\r\n");

    // Before login: a protocol error and a close, whatever part of the body was sent.
    let started = Instant::now();
    let mut s = socket(&server, Duration::from_secs(10));
    let mut writer = s.try_clone().unwrap();
    let body = request.clone();
    let sender = thread::spawn(move || {
        let _ = writer.write_all(&body); // fails once the server has closed: fine
    });
    let (got, closed) = read_until_close(&mut s);
    let took = started.elapsed();
    assert!(
        got.starts_with("-ERR Protocol error: ") && closed,
        "a 20 MiB password before login got {got:?} (closed: {closed})"
    );
    assert!(took < Duration::from_secs(2), "refused only after {took:?}");
    drop(s);
    sender.join().unwrap();

    // After login (the normal limits let the bytes in): refused by length, before any MAC or
    // hash, and the session keeps its user.
    let mut c = server.raw();
    let started = Instant::now();
    let replies = c.pipeline(&[request, cmd(&["WHOAMI"])]);
    let took = started.elapsed();
    let reply = String::from_utf8_lossy(&replies[0]).into_owned();
    assert!(
        reply.starts_with("-ERR ") && reply.contains("at most 4096 bytes"),
        "a 20 MiB password after login got {reply:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "answered only after {took:?}"
    );
    assert_eq!(show(&replies[1]), show(&bulk(b"admin")));

    stop.store(true, Ordering::Relaxed);
    let worst = bystander.join().unwrap();
    assert!(
        worst < Duration::from_millis(750),
        "a bystander's PING took {worst:?}"
    );
}

#[test]
fn a_too_long_new_password_gets_a_clear_error() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    let long = "p".repeat(4097);
    let reply = admin.call_value(&["CREATE", "USER", "u", &long]);
    assert_eq!(
        error_text(&reply),
        "ERR password too long: expected at most 4096 bytes, got 4097"
    );
    assert!(admin
        .call_value(&["DESCRIBE", "USER", "u"])
        .is_error_code("ERR"));
    assert_eq!(admin.call_value(&["CREATE", "USER", "u", "pw"]), Resp::ok());
    let reply = admin.call_value(&["ALTER", "USER", "u", "PASSWORD", &long]);
    assert_eq!(
        error_text(&reply),
        "ERR password too long: expected at most 4096 bytes, got 4097"
    );
    // Exactly at the limit is fine, and the old password stayed until then.
    let mut u = server.login("u", "pw");
    assert_eq!(u.call_value(&["WHOAMI"]), Resp::bulk(b"u"));
    let max = "q".repeat(4096);
    assert_eq!(
        u.call_value(&["ALTER", "USER", "u", "PASSWORD", &max]),
        Resp::ok()
    );
    // A 4096-byte password fits the pre-login limits too.
    let mut again = server.raw_unauthenticated();
    assert_eq!(again.call_value(&["AUTH", "u", &max]), Resp::ok());
}

/// AUTH (answered by the hasher pool, then by the shard's login cache), HELLO AUTH and LOGIN,
/// each followed in the same write by requests only the normal limits allow: they were framed
/// under the pre-login limits and must run as if sent after the login was answered.
#[test]
fn requests_pipelined_after_a_login_get_the_normal_limits() {
    let server = Server::start(&["--shards", "1"]);
    let mut admin = server.raw();
    admin.expect(&cmd(&["CREATE", "PARTITION", "p", "STRING", "MEMORY"]), OK);
    let big = "v".repeat(100 * 1024);
    let mset: Vec<String> = std::iter::once("MSET".to_string())
        .chain(std::iter::once("p".to_string()))
        .chain((0..20).flat_map(|i| [format!("k{i}"), i.to_string()]))
        .collect();
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    for (round, login) in [
        cmd(&["AUTH", "admin", ADMIN_PASSWORD]),
        cmd(&["AUTH", "admin", ADMIN_PASSWORD]),
        cmd(&["LOGIN", "admin", ADMIN_PASSWORD]),
        cmd(&[
            "HELLO",
            "2",
            "AUTH",
            "admin",
            ADMIN_PASSWORD,
            "SETNAME",
            "n",
        ]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = server.raw_unauthenticated();
        let replies = c.pipeline(&[
            login,
            cmd(&["SET", "p", "big", &big]),
            cmd(&mset),
            cmd(&["GET", "p", "big"]),
            cmd(&["GET", "p", "k19"]),
        ]);
        assert!(
            replies[0] == OK || replies[0].starts_with(b"*"),
            "round {round}: login got {}",
            show(&replies[0])
        );
        assert_eq!(show(&replies[1]), show(OK), "round {round}");
        assert_eq!(show(&replies[2]), show(OK), "round {round}");
        assert_eq!(
            show(&replies[3]),
            show(&bulk(big.as_bytes())),
            "round {round}"
        );
        assert_eq!(show(&replies[4]), show(&bulk(b"19")), "round {round}");
    }
    // A failed login keeps the pre-login limits for the requests behind it.
    let mut c = socket(&server, Duration::from_secs(5));
    let mut bytes = cmd(&["AUTH", "admin", "wrong"]);
    bytes.extend(cmd(&["ECHO", &big]));
    c.write_all(&bytes).unwrap();
    let (got, closed) = read_until_close(&mut c);
    assert!(
        got.starts_with("-WRONGPASS") && got.contains("-ERR Protocol error: ") && closed,
        "got {:?} (closed: {closed})",
        &got[..got.len().min(200)]
    );
}

/// `connected_clients` from INFO.
fn connected_clients(server: &Server) -> u64 {
    let mut c = server.raw();
    let text = c.call_value(&["INFO", "clients"]).text();
    text.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no connected_clients in {text:?}"))
}

/// A flood of wrong-password logins for ~2 s from a few threads: some close right after
/// sending AUTH (each would have queued an argon2 job and kept its client slot until it ran),
/// some wait for the answer (each a real failure to log). Meanwhile a first login of another
/// user and a CREATE USER must complete within seconds, and afterwards the client count must
/// fall back and the log must hold far fewer WARN lines than there were failures.
#[test]
fn a_login_flood_does_not_lock_out_real_logins() {
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    admin.expect(&cmd(&["CREATE", "USER", "bob", "bob-pw"]), OK);
    admin.expect(&cmd(&["CREATE", "USER", "carol", "carol-pw"]), OK);
    let flood_for = Duration::from_secs(2);
    // Bounded in count as well as time.
    const MAX_PER_THREAD: usize = 5_000;
    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut flooders = Vec::new();
    for t in 0..4 {
        let addr = server.addr();
        let (sent, answered) = (sent.clone(), answered.clone());
        flooders.push(thread::spawn(move || {
            let request = cmd(&["AUTH", "bob", "wrong"]);
            for _ in 0..MAX_PER_THREAD {
                if started.elapsed() > flood_for {
                    break;
                }
                let Ok(mut s) = TcpStream::connect(&addr) else {
                    continue;
                };
                if s.write_all(&request).is_err() {
                    continue;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                if t % 2 == 1 {
                    // Waits for the answer, so each of these is a failure the server logs.
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut buf = [0u8; 256];
                    if matches!(s.read(&mut buf), Ok(n) if n > 0) {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    thread::sleep(Duration::from_millis(500));

    // A first login of carol (not in any cache) during the flood. A server that is full of
    // live logins may ask to retry; that counts against the same deadline.
    let login_started = Instant::now();
    let mut retries = 0;
    loop {
        let mut c = RawConn::connect(&server.addr());
        c.stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        c.send(&cmd(&["AUTH", "carol", "carol-pw"]));
        let reply = c.try_read_reply();
        let elapsed = login_started.elapsed();
        match reply {
            Ok(Some(r)) if r == OK => break,
            Ok(Some(r)) if r.starts_with(b"-ERR too many logins") && elapsed.as_secs() < 5 => {
                retries += 1;
                thread::sleep(Duration::from_millis(50));
            }
            other => panic!(
                "carol's login during the flood got {other:?} after {elapsed:?} \
                 ({retries} retries)"
            ),
        }
    }
    let login_took = login_started.elapsed();
    // User management hashes too, but not behind the logins.
    let create_started = Instant::now();
    admin
        .stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let reply = admin.call(&["CREATE", "USER", "dave", "dave-pw"]);
    let create_took = create_started.elapsed();
    assert_eq!(show(&reply), show(OK));
    for f in flooders {
        f.join().unwrap();
    }
    let sent = sent.load(Ordering::Relaxed);
    let answered = answered.load(Ordering::Relaxed);
    assert!(
        login_took < Duration::from_secs(5),
        "carol's first login took {login_took:?} during a flood of {sent} logins"
    );
    assert!(
        create_took < Duration::from_secs(5),
        "CREATE USER took {create_took:?} during a flood of {sent} logins"
    );

    // Closed connections give their slots back at once, not when their hash would have run.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // The admin connection and the one asking.
        let clients = connected_clients(&server);
        if clients <= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{clients} clients still connected 5 s after a flood of {sent} logins"
        );
        thread::sleep(Duration::from_millis(100));
    }

    // Failures are counted, not logged one line each.
    eprintln!(
        "flood: {sent} logins sent, {answered} answered; carol's login took {login_took:?} \
         ({retries} retries), CREATE USER {create_took:?}"
    );
    let warns = server
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("failed login"))
        .count();
    assert!(
        warns <= 20 && warns * 5 <= answered.max(20),
        "{warns} WARN lines about failed logins for {answered} answered failures \
         ({sent} sent)"
    );
}

/// A peer that sends its requests and closes its side at once (a health check's
/// `printf 'PING\r\n' | nc`) is answered and then closed, logged in or not: the bytes and
/// the end of input often arrive together, and a short read that takes the bytes leaves the
/// end unread, which the edge-triggered poll never reports again. Each such connection used
/// to stay open for good (CLOSE-WAIT, a client slot), so any peer could fill `max-clients`.
/// A real redis-server answers and closes the same way (no login there: `PING` and `RESET`
/// run for anyone).
#[test]
fn a_peer_that_sends_and_closes_at_once_is_answered_and_closed() {
    if let Some(redis) = RealRedis::start("a_peer_that_sends_and_closes_at_once") {
        for (sent, answer) in [
            (&b"PING\r\n"[..], "+PONG\r\n"),
            (b"*1\r\n$5\r\nRESET\r\nPING\r\n", "+RESET\r\n+PONG\r\n"),
        ] {
            let mut s = redis.socket();
            s.write_all(sent).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            assert_eq!(got, answer, "redis-server, then closed");
        }
    }
    let server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    admin.expect(&cmd(&["CREATE", "USER", "u", "u-pw"]), OK);
    let mut handles = Vec::new();
    for i in 0..60 {
        let mut s = socket(&server, Duration::from_secs(10));
        let handle = thread::spawn(move || {
            let mut sent = Vec::new();
            if i % 2 == 1 {
                // Logged in, then `RESET` logs it out again before the end of input.
                s.write_all(&cmd(&["AUTH", "u", "u-pw"])).unwrap();
                let mut ok = [0u8; 5];
                s.read_exact(&mut ok).unwrap();
                assert_eq!(&ok, b"+OK\r\n");
                sent.extend_from_slice(&cmd(&["RESET"]));
            }
            sent.extend_from_slice(b"PING\r\n");
            s.write_all(&sent).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            read_until_close(&mut s)
        });
        handles.push(handle);
    }
    for handle in handles {
        let (got, closed) = handle.join().unwrap();
        assert!(got.ends_with("+PONG\r\n"), "{got:?}");
        assert!(
            closed,
            "the server kept a half-closed connection open ({got:?})"
        );
    }
    drop(admin);
    // Only the connection that asks is left.
    let settled = poll_until(Duration::from_secs(5), || {
        (connected_clients(&server) == 1).then_some(())
    });
    assert!(settled.is_some(), "{} clients", connected_clients(&server));
}
