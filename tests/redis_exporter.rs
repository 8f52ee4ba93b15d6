//! The Prometheus redis_exporter (Debian's `prometheus-redis-exporter`), unchanged, against
//! GoKV: it logs in as a user of its own, and its scrape says `redis_up 1` with the commands,
//! clients, memory and keys GoKV counted.
//!
//! What the exporter (1.45) sends on each scrape: `CLIENT SETNAME`, `CONFIG GET *`,
//! `INFO ALL`, `SLOWLOG LEN`, `SLOWLOG GET 1`, `LATENCY LATEST`; an error reply to any but
//! INFO only costs that part of its metrics (it logs it once), so a user without ADMIN on
//! `*` (no CONFIG) still gets `redis_up 1`.
//!
//! Without the exporter the test is skipped with a message, unless `GOKV_REQUIRE_REDIS` is
//! set (CI installs it and sets it), where it fails. `REDIS_EXPORTER_BIN` picks the binary.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// The exporter process, killed on drop.
struct Exporter {
    child: Child,
    port: u16,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exporter_bin() -> Option<String> {
    if let Some(bin) = std::env::var_os("REDIS_EXPORTER_BIN") {
        return Some(bin.to_string_lossy().into_owned());
    }
    ["prometheus-redis-exporter", "redis_exporter"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .map(str::to_string)
}

/// Starts the exporter against `server` as `user`, or `None` (with a message) when it is not
/// installed and `GOKV_REQUIRE_REDIS` is unset.
fn start_exporter(test: &str, server: &Server, user: &str, password: &str) -> Option<Exporter> {
    let Some(bin) = exporter_bin() else {
        if std::env::var_os("GOKV_REQUIRE_REDIS").is_some() {
            panic!("{test}: GOKV_REQUIRE_REDIS is set but no redis_exporter is installed");
        }
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped: no prometheus-redis-exporter or redis_exporter on PATH \
             (Debian: apt-get install prometheus-redis-exporter; GOKV_REQUIRE_REDIS=1 makes \
             this a failure)"
        );
        return None;
    };
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .arg("--redis.addr")
            .arg(format!("redis://127.0.0.1:{}", server.port()))
            .args(["--redis.user", user, "--redis.password", password])
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{test}: cannot run {bin}: {e}"));
        let mut exporter = Exporter { child, port };
        let up = poll_until(Duration::from_secs(20), || {
            if let Ok(Some(_)) = exporter.child.try_wait() {
                return Some(false);
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| true)
        });
        if up == Some(true) {
            return Some(exporter);
        }
        // Lost the port to someone else: try another.
        let _ = exporter.child.kill();
    }
    panic!("{test}: redis_exporter did not start");
}

/// The exporter's metrics as (series, value) pairs.
fn scrape(exporter: &Exporter) -> Vec<(String, f64)> {
    let mut s = TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // HTTP/1.0: the body comes whole, up to the close. An HTTP/1.1 reply is chunked, and a
    // chunk boundary falling inside a line (where depends on the body's size) would lose it.
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert!(
        reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200"),
        "{reply}"
    );
    assert!(
        !reply.contains("Transfer-Encoding: chunked"),
        "a chunked reply: {reply}"
    );
    reply
        .lines()
        .filter(|l| l.starts_with("redis_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn metric(metrics: &[(String, f64)], series: &str) -> f64 {
    metrics
        .iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| {
            let names: Vec<&str> = metrics.iter().map(|(s, _)| s.as_str()).collect();
            panic!("the exporter has no {series}: {names:?}")
        })
        .1
}

fn check(test: &str, user: &str, password: &str, admin: bool) {
    let server = Server::start(&["--shards", "2"]);
    let mut c = server.raw();
    // Partition "0" is Redis's db0 to the exporter (INFO keyspace's `db0:` line).
    c.expect(&cmd(&["CREATE", "PARTITION", "0", "STRING", "MEMORY"]), OK);
    c.expect(
        &cmd(&["CREATE", "PARTITION", "named", "STRING", "MEMORY"]),
        OK,
    );
    if user != "admin" {
        c.expect(&cmd(&["CREATE", "USER", user, password]), OK);
        c.expect(&cmd(&["GRANT", "READ", "ON", "*", "TO", user]), OK);
    }
    for i in 0..25 {
        c.expect(&cmd(&["SET", "0", &format!("k{i}"), "value"]), OK);
        c.expect(&cmd(&["SET", "named", &format!("k{i}"), "value"]), OK);
    }
    let Some(exporter) = start_exporter(test, &server, user, password) else {
        return;
    };
    let metrics = scrape(&exporter);
    assert_eq!(metric(&metrics, "redis_up"), 1.0, "{metrics:?}");
    assert!(metric(&metrics, "redis_commands_processed_total") >= 50.0);
    assert_eq!(metric(&metrics, "redis_commands_total{cmd=\"set\"}"), 50.0);
    // This test's connection and the exporter's.
    assert!(metric(&metrics, "redis_connected_clients") >= 2.0);
    assert!(metric(&metrics, "redis_memory_used_bytes") > 0.0);
    assert_eq!(metric(&metrics, "redis_db_keys{db=\"db0\"}"), 25.0);
    assert_eq!(
        metric(&metrics, "redis_exporter_last_scrape_error{err=\"\"}"),
        0.0
    );
    if admin {
        // CONFIG GET answered: the exporter's config metrics.
        assert_eq!(metric(&metrics, "redis_config_maxclients"), 10000.0);
        // SLOWLOG answered: the exporter's slow-log metrics (nothing is slow here).
        assert_eq!(metric(&metrics, "redis_slowlog_length"), 0.0);
    }
    // A second scrape: the counters moved on, the exporter is still up.
    c.expect(&cmd(&["SET", "0", "one-more", "v"]), OK);
    let again = scrape(&exporter);
    assert_eq!(metric(&again, "redis_up"), 1.0);
    assert_eq!(metric(&again, "redis_commands_total{cmd=\"set\"}"), 51.0);
}

#[test]
fn redis_exporter_scrapes_gokv_as_admin() {
    check(
        "redis_exporter_scrapes_gokv_as_admin",
        "admin",
        ADMIN_PASSWORD,
        true,
    );
}

#[test]
fn redis_exporter_scrapes_gokv_as_a_read_only_user() {
    check(
        "redis_exporter_scrapes_gokv_as_a_read_only_user",
        "monitor",
        "monitor-pw",
        false,
    );
}
