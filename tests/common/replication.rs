//! What the replication tests share: loading a primary, starting a replica, logging in to it,
//! reading `INFO`
//! fields, waiting until a replica has applied everything, comparing a partition on both
//! sides, signals, and a primary on a fixed port (so that a restart comes back at the same
//! address).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{poll_until, q_ok, server_bin, DataDir, Server, ADMIN_PASSWORD};

/// How long a replica may take to converge on a loaded 2-core machine (debug build).
pub const CONVERGE: Duration = Duration::from_secs(60);

/// Loads `chunks` x 1,000 keys of `value` into `partition`, one MSET of 1,000 keys per chunk;
/// `key(chunk, i)` names the `i`th key of a chunk.
pub fn mset_load(
    con: &mut redis::Connection,
    partition: &str,
    chunks: usize,
    value: &str,
    key: impl Fn(usize, usize) -> String,
) {
    for chunk in 0..chunks {
        let mut args = vec!["MSET".to_string(), partition.to_string()];
        for i in 0..1000 {
            args.push(key(chunk, i));
            args.push(value.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        q_ok::<()>(con, &args);
    }
}

/// Arguments that make a server a replica of the primary on `primary_port`, then `extra`.
pub fn replica_args(primary_port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--replicaof".into(),
        format!("127.0.0.1:{primary_port}"),
        "--primary-user".into(),
        "admin".into(),
        "--primary-password".into(),
        ADMIN_PASSWORD.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

pub fn start_replica(primary_port: u16, extra: &[&str]) -> Server {
    let args = replica_args(primary_port, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

/// A client of a replica, logged in as admin. Its login may race the full sync's `USERS`
/// (the same password under the primary's hash: a check begun before the swap fails, as for
/// any password change), so it is retried.
pub fn replica_client(replica: &Server) -> redis::Connection {
    let url = replica.url();
    poll_until(Duration::from_secs(30), || {
        redis::Client::open(url.as_str())
            .ok()?
            .get_connection()
            .ok()
    })
    .expect("a login on the replica")
}

/// One field of an INFO section.
pub fn info_field(con: &mut redis::Connection, section: &str, field: &str) -> Option<String> {
    let text: String = q_ok(con, &["INFO", section]);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

/// One field of `INFO replication`.
pub fn repl_info(con: &mut redis::Connection, field: &str) -> Option<String> {
    info_field(con, "replication", field)
}

/// Waits until the replica's link is up and it has applied everything the primary has
/// streamed (its `slave_repl_offset` equals the primary's `master_repl_offset`).
pub fn converge(primary: &mut redis::Connection, replica: &mut redis::Connection) {
    let done = poll_until(CONVERGE, || {
        let want = repl_info(primary, "master_repl_offset")?;
        let status = repl_info(replica, "master_link_status")?;
        let got = repl_info(replica, "slave_repl_offset")?;
        (status == "up" && got == want).then_some(())
    });
    if done.is_none() {
        let p: String = q_ok(primary, &["INFO", "replication"]);
        let r: String = q_ok(replica, &["INFO", "replication"]);
        panic!("the replica did not converge:\nprimary:\n{p}\nreplica:\n{r}");
    }
}

/// Every key of a partition with its value (as text) and, when `deadlines`, whether it has
/// one (else `false` for every key).
pub fn dump(
    con: &mut redis::Connection,
    partition: &str,
    deadlines: bool,
) -> BTreeMap<String, (String, bool)> {
    let mut out = BTreeMap::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, keys): (String, Vec<String>) =
            q_ok(con, &["SCAN", partition, &cursor, "COUNT", "1000"]);
        if !keys.is_empty() {
            let mut args = vec!["MGET", partition];
            args.extend(keys.iter().map(|k| k.as_str()));
            let values: Vec<redis::Value> = q_ok(con, &args);
            for (k, v) in keys.iter().zip(values) {
                let text = match v {
                    redis::Value::Int(n) => n.to_string(),
                    redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                    redis::Value::Nil => continue,
                    other => format!("{other:?}"),
                };
                let has_deadline = deadlines && q_ok::<i64>(con, &["PTTL", partition, k]) >= 0;
                out.insert(k.clone(), (text, has_deadline));
            }
        }
        if next == "0" {
            return out;
        }
        cursor = next;
    }
}

/// `kill <sig> <pid>`.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A primary started by hand on a fixed port and data directory (the harness always asks
/// for port 0), so that a restart comes back at the same address; killed on drop.
pub struct FixedPrimary(std::process::Child);

impl FixedPrimary {
    pub fn start(port: u16, dir: &DataDir) -> FixedPrimary {
        let child = std::process::Command::new(server_bin())
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--data-dir",
            ])
            .arg(dir.path())
            .args(["--admin-password", ADMIN_PASSWORD, "--metrics-port", "0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn gokv-server");
        let up = poll_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "the primary on port {port} did not start");
        FixedPrimary(child)
    }

    pub fn client(port: u16) -> redis::Connection {
        let url = format!("redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{port}/");
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }
}

impl Drop for FixedPrimary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The partition holds the same keys and values on both (and, with `deadlines`, the same
/// keys have deadlines). With deadlines it is compared again for a while when they differ:
/// the two dumps are taken one after the other, and a key whose deadline falls between them
/// is in the first and hidden in the second (a loaded machine hit that).
pub fn same_partition(
    p: &mut redis::Connection,
    r: &mut redis::Connection,
    partition: &str,
    deadlines: bool,
) {
    let tries = if deadlines { 50 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let (a, b) = (dump(p, partition, deadlines), dump(r, partition, deadlines));
        if a == b {
            return;
        }
        last = Some((a, b));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (a, b) = last.expect("compared at least once");
    assert_eq!(a.len(), b.len(), "partition {partition}: key counts differ");
    assert!(a == b, "partition {partition}: contents differ");
}
