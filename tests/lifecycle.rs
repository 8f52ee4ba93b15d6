//! Process lifecycle: the startup log line, SIGTERM (graceful: replies already produced are
//! delivered, exit status 0) and SHUTDOWN.

mod common;

use std::time::Duration;

use common::*;

/// How long a stopping server may take to exit: it only has to flush small buffers.
const EXIT_DEADLINE: Duration = Duration::from_secs(10);

#[test]
fn startup_log_line_names_address_and_shard_count() {
    let server = Server::start(&["--shards", "3"]);
    let line = server.startup_line().to_string();
    assert!(
        line.contains(&format!("listening on {}", server.addr())),
        "{line}"
    );
    // The shard count appears after the address (not inside a timestamp or the port).
    let at = line.find("listening on").unwrap();
    let rest = line[at..].replace(&server.addr(), "");
    assert!(
        rest.to_lowercase().contains("shard"),
        "startup line lacks the shard count: {line}"
    );
    let numbers: Vec<&str> = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .collect();
    assert!(
        numbers.contains(&"3"),
        "startup line lacks the shard count 3: {line}"
    );
    server.raw().expect(&cmd(&["PING"]), b"+PONG\r\n");
}

#[test]
fn default_port_is_7379_in_help_or_config() {
    // The default port is only observable without `--port`; binding 7379 in a test could
    // collide with a developer's running server, so check the documented default via --help.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gokv-server"))
        .arg("--help")
        .output()
        .expect("run gokv-server --help");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "--help failed: {text}");
    assert!(
        text.contains("7379"),
        "--help does not mention the default port 7379:\n{text}"
    );
    for flag in [
        "--shards",
        "--max-bulk-len",
        "--max-args",
        "--max-inline-len",
        "--data-dir",
    ] {
        assert!(
            text.contains(flag),
            "--help does not mention {flag}:\n{text}"
        );
    }
}

#[test]
fn sigterm_exits_zero() {
    let mut server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    c.expect(&cmd(&["PING"]), b"+PONG\r\n");
    // An idle connection must not keep the server alive.
    let mut idle = server.raw();
    server.sigterm();
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("server still running after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
    idle.expect_closed();
}

#[test]
fn sigterm_delivers_replies_in_flight() {
    const REQUESTS: i64 = 2000;
    let mut server = Server::start(&["--shards", "2"]);
    let mut admin = server.raw();
    admin.expect(
        &cmd(&["CREATE", "PARTITION", "filler", "INT", "MEMORY"]),
        OK,
    );
    admin.expect(&cmd(&["CREATE", "PARTITION", "n", "INT", "MEMORY"]), OK);

    // The client writes a whole pipeline and does not read a single reply yet.
    let mut client = server.raw();
    let mut pipeline = Vec::new();
    for _ in 0..REQUESTS {
        pipeline.extend(cmd(&["INCR", "n", "k"]));
    }
    client.send(&pipeline);

    // Wait until the server has executed all of them: their replies are now in flight.
    let done = poll_until(Duration::from_secs(5), || {
        (admin.call(&["GET", "n", "k"]) == int(REQUESTS)).then_some(())
    });
    assert!(done.is_some(), "the pipeline was not executed within 5 s");

    server.sigterm();
    for i in 1..=REQUESTS {
        match client.try_read_reply() {
            Ok(Some(reply)) => assert_eq!(show(&reply), show(&int(i)), "reply #{i}"),
            Ok(None) => panic!("connection closed after {} of {REQUESTS} replies", i - 1),
            Err(e) => panic!("reply #{i} lost after SIGTERM: {e}"),
        }
    }
    // Then a clean close, no stray bytes.
    client.expect_closed();
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("server still running after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
}

#[test]
fn sigterm_with_no_clients_exits_zero_and_frees_the_port() {
    let mut server = Server::start(&[]);
    let addr = server.addr();
    server.sigterm();
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("server still running after SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the port still accepts connections after the server exited"
    );
}

#[test]
fn shutdown_closes_without_reply_and_exits_zero() {
    let mut server = Server::start(&["--shards", "2"]);
    let mut other = server.raw();
    other.expect(&cmd(&["PING"]), b"+PONG\r\n");
    let mut c = server.raw();
    c.send(&cmd(&["SHUTDOWN"]));
    c.expect_closed();
    let status = server
        .wait_exit(EXIT_DEADLINE)
        .expect("server still running after SHUTDOWN");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SHUTDOWN: {status:?}"
    );
    other.expect_closed();
}

#[test]
fn killed_server_is_reaped_by_the_harness() {
    // Guards the harness itself: dropping a Server must not leave the process running.
    let server = Server::start(&[]);
    let pid = server.pid();
    drop(server);
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
    assert!(!alive, "gokv-server {pid} survived Drop");
}
